"""Black-box solvers: the delivered matrices equal the script's own, the command runs under the MPI
launcher for several ranks, failing or malformed runs are failed samples with their reason, transient
black boxes deliver trajectories, and bad problem sections are refused in one line."""
import importlib.util
import textwrap

import numpy as np
import pytest

from conftest import ROOT, rom_cli
from rom import config
from rom.hifi.discretization import fem
from rom.hifi.registry import make_problem, problem_class
from rom.hifi.solvers.solve import FullOrderModel

SCRIPT = ROOT / "examples" / "blackbox" / "poisson.py"
COMMAND = "{python} " + str(SCRIPT) + " --mu {mu} --mesh {mesh} --out {out} --operator {operator} --rhs {rhs}"


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    path = tmp_path_factory.mktemp("bb") / "square.msh"
    import subprocess
    import sys

    subprocess.run([sys.executable, ROOT / "examples" / "meshes" / "square.py", path, "--size", "0.2"], check=True)
    return path


def spec(square, **kw):
    return {"name": "external", "command": COMMAND, "parameters": ["kappa", "x0"], "mesh": {"file": str(square)},
            "matrices": True, **kw}


def example_module():
    s = importlib.util.spec_from_file_location("bb_poisson", SCRIPT)
    m = importlib.util.module_from_spec(s)
    s.loader.exec_module(m)
    return m


def test_delivered_matrices_equal_the_scripts_own(square):
    p = make_problem(spec(square))
    assert type(p).__name__ == "ExternalMatrices" and p.parameter_names == ["kappa", "x0"]
    pattern = fem.Pattern.build(p.mesh)
    mu = np.array([3.0, 0.4])
    A_ref, b_ref = example_module().assemble(str(square), *mu)
    A = pattern.to_scipy(p.operator_values(mu, pattern))
    # PETSc's binary format stores float64: the values read back are the script's, bit for bit.
    assert abs(A - A_ref).max() == 0.0
    np.testing.assert_array_equal(p.rhs(mu, pattern), b_ref)
    slots = np.random.default_rng(0).choice(pattern.nnz, 10, replace=False)
    mus = np.array([[1.0, 0.5], [3.0, 0.4]])
    probe = p.entry_probe(pattern, slots)(mus)
    np.testing.assert_array_equal(probe[1], A.data[slots] if A.has_sorted_indices else p.operator_values(mu, pattern)[slots])
    assert not np.allclose(probe[0], probe[1])  # the operator depends on mu
    # X = K + M on all nodes: symmetric positive definite.
    X = pattern.to_scipy(p.energy_product(pattern)).toarray()
    np.linalg.cholesky(X)


def test_failed_and_malformed_runs_are_failed_samples(square, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent("""
        import sys, time, h5py, numpy as np
        mode, out = sys.argv[1], sys.argv[2]
        if mode == "shape":
            with h5py.File(out, "w") as h5:
                h5["u"] = np.zeros(3)
        elif mode == "sleep":
            time.sleep(30)
        elif mode == "crash":
            print("solver: matrix is singular", file=sys.stderr)
            sys.exit(7)
    """))
    n = None
    for mode, reason in (("shape", "BAD_OUTPUT: u has shape (3,); expected ({n},)"),
                         ("nothing", "NO_OUTPUT: the command exited 0 but wrote no solution file"),
                         ("crash", "EXIT_7: solver: matrix is singular"),
                         ("sleep", "TIMEOUT: no result after 2 s")):
        timeout = 2 if mode == "sleep" else 600
        p = make_problem({**spec(square, matrices=False, timeout=timeout), "command": f"{{python}} {bad} {mode} {{out}}"})
        n = p.mesh.n_nodes
        s = FullOrderModel(p).solve(np.array([1.0, 0.5]))
        assert not s.converged and s.u is None
        assert s.reason.startswith(reason.format(n=n)), s.reason
    p = make_problem({**spec(square), "command": "no-such-solver {out}"})
    assert FullOrderModel(p).solve(np.array([1.0, 0.5])).reason.startswith("NOT_RUN: no-such-solver")


def test_the_command_runs_under_the_mpi_launcher_and_trajectories_are_read(square, tmp_path):
    script = tmp_path / "mpi_box.py"
    script.write_text(textwrap.dedent("""
        import sys, h5py, numpy as np
        from mpi4py import MPI
        out, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        size = MPI.COMM_WORLD.allreduce(1)  # every rank takes part
        if MPI.COMM_WORLD.rank == 0:
            with h5py.File(out, "w") as h5:
                h5["u"] = np.outer(np.arange(steps + 1), np.full(n, float(size)))
                h5["times"] = 0.5 * np.arange(steps + 1)
                h5.attrs["iterations"] = 4
    """))
    n = make_problem(spec(square)).mesh.n_nodes
    p = make_problem({**spec(square, matrices=False), "transient": {"dt": 0.5, "steps": 3},
                      "command": f"{{python}} {script} {{out}} {n} 3"})
    assert type(p).__name__ == "ExternalTransient"
    for ranks in (1, 2):
        s = FullOrderModel(p, ranks=ranks).solve_trajectory(np.array([1.0, 0.5]))
        assert s.converged and s.iterations == 4
        np.testing.assert_array_equal(s.u, np.outer(np.arange(4), np.full(n, float(ranks))))
    steps = list(FullOrderModel(p).trajectory(np.array([1.0, 0.5])))
    assert [k for k, *_ in steps] == [0, 1, 2, 3] and steps[-1][1] == 1.5


def test_the_simulate_stage_of_a_black_box_refuses_to_run_under_mpiexec(square, tmp_path):
    study = {"name": "bb", "problem": spec(square), "parameters": {"kappa": {"bounds": [0.5, 4.0]},
                                                                   "x0": {"bounds": [0.3, 0.7]}},
             "design": {"train": {"size": 2, "seed": 1}, "test": {"size": 0}}, "simulate": {"mpi_ranks": 2}}
    from rom import artefacts
    from rom.design import parameters_dataset

    resolved = config.validate(study, "bb.yaml")
    config.write_study(resolved, tmp_path / "s.yaml")
    artefacts.write(parameters_dataset(resolved, config.parameter_space(resolved)), tmp_path / "p.h5", resolved,
                    "parameters")
    proc = rom_cli("simulate", "--study-config", tmp_path / "s.yaml", "--parameters", tmp_path / "p.h5", "--out",
                   tmp_path / "c.h5", mpi=2, check=False)
    assert proc.returncode != 0
    assert ("problem external: simulate runs the black box's command under the MPI launcher itself "
            "(simulate.mpi_ranks = 2); expected this stage on one rank") in proc.stderr


def refused(square, problem, parameters, *parts):
    study = {"name": "s", "problem": problem, "parameters": parameters}
    with pytest.raises(config.ConfigError) as err:
        config.validate(study, "s.yaml")
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


def test_bad_black_box_sections_are_refused_in_one_line(square):
    both = {"kappa": {"bounds": [0.5, 4.0]}, "x0": {"bounds": [0.3, 0.7]}}
    config.validate({"name": "s", "problem": spec(square), "parameters": both}, "s.yaml")
    refused(square, {**spec(square), "command": "./solver {mu} {output}"}, both,
            "problem external: command: unknown placeholder {output}; expected some of {mu}, {out}")
    refused(square, {**spec(square), "parameters": ["kappa", "out"]}, both,
            "problem external: parameters: 'out' is a placeholder name")
    refused(square, {**spec(square), "transient": {"dt": 0.1, "steps": 2}}, both,
            "problem external: matrices: true with a transient form")
    refused(square, spec(square), {"kappa": {"bounds": [0.5, 4.0]}},
            "problem.parameters[1] = 'x0': parameter x0 is not declared in the study's parameters section")
    refused(square, {k: v for k, v in spec(square).items() if k != "command"}, both,
            "problem external: command: missing")
    refused(square, {**spec(square), "command": "./solver {mu"}, both, "problem external: command = './solver {mu'")
    assert problem_class(spec(square)).black_box
