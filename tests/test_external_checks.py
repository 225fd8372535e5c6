"""What romflow checks around a black box (rom.hifi.problems.external_checks): the failure reason puts the
error-like lines of stderr before its tail, the node coordinates `x` a command writes are matched to the
mesh (a permutation mapped, a stray node refused by name), the launcher, the command's executable and its
input files are checked when the study is read, and gather counts repeated failure reasons once."""
import textwrap

import numpy as np
import pytest
import xarray as xr

import gmsh_meshes
from conftest import ROOT
from rom import config
from rom.commands.simulate import reason_counts
from rom.hifi.problems.external_checks import failure_reason, launcher_prefix, node_order
from rom.hifi.registry import make_problem
from rom.hifi.solvers.solve import FullOrderModel

BOTH = {"kappa": {"bounds": [0.5, 4.0]}, "x0": {"bounds": [0.3, 0.7]}}


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    return gmsh_meshes.square(tmp_path_factory.mktemp("bbx") / "square.msh", 0.25)


def spec(square, command, **kw):
    return {"name": "external", "command": command, "parameters": ["kappa", "x0"], "mesh": {"file": str(square)}, **kw}


def test_the_failure_reason_shows_error_lines_before_the_tail():
    boilerplate = "\n".join(f"mpiexec noticed that process rank {i} exited on signal 9 (line {i})" for i in range(40))
    stderr = f"starting\nTraceback (most recent call last):\nImportError: libmpich.so.12: cannot open\n{boilerplate}"
    reason = failure_reason(stderr, 300)
    assert reason.startswith("Traceback (most recent call last): | ImportError: libmpich.so.12: cannot open || tail: ")
    assert reason.endswith("exited on signal 9 (line 39)") and "\n" not in reason
    # Short output with its error line in the tail: the tail alone, as before.
    assert failure_reason("solver: Error: matrix is singular") == "solver: Error: matrix is singular"
    assert failure_reason("refusing to solve\n") == "refusing to solve"
    long = failure_reason("fatal: " + "x" * 1000 + "\n" + boilerplate, 300)
    assert long.startswith("fatal: xxx") and len(long.split(" || tail: ")[0]) == 303


def test_node_order_maps_a_permutation_and_names_a_stray_node():
    nodes = np.random.default_rng(0).random((30, 2))
    assert node_order(nodes + 1e-12, nodes) is None
    perm = np.random.default_rng(1).permutation(30)
    order = node_order(np.c_[nodes[perm], np.zeros(30)], nodes)  # a 3D writer's z = 0 column is fine
    np.testing.assert_array_equal(order, perm)
    bad = nodes[perm].copy()
    bad[7] += 1e-3
    with pytest.raises(ValueError, match=r"^x\[7\] = \(.*\) is no node of problem.mesh \(the nearest, node \d+"):
        node_order(bad, nodes)
    twice = nodes.copy()
    twice[3] = twice[4]
    with pytest.raises(ValueError, match=r"x\[3\] = .* and x\[4\] are both mesh node 4"):
        node_order(twice, nodes)


WRITER = textwrap.dedent("""
    import sys, h5py, meshio, numpy as np
    mode, mesh, out, mu = sys.argv[1:5]
    kappa, x0 = (float(v) for v in mu.split(","))
    xy = meshio.read(mesh).points[:, :2]
    u = kappa * xy[:, 0] + x0 * xy[:, 1] ** 2
    p = np.random.default_rng(5).permutation(len(xy)) if mode != "same" else np.arange(len(xy))
    x = xy[p].copy()
    if mode == "wrong":
        x[11] += 0.01
    with h5py.File(out, "w") as h5:
        h5["u"] = u[p]
        h5["x"] = x
""")


def test_a_permuted_field_with_x_is_mapped_and_a_wrong_x_is_a_failed_sample(square, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    mu = np.array([2.0, 0.5])
    fields = {}
    for mode in ("same", "permuted", "wrong"):
        p = make_problem(spec(square, f"{{python}} {script} {mode} {{mesh}} {{out}} {{mu}}"))
        fields[mode] = FullOrderModel(p).solve(mu)
        assert getattr(p, "node_order", None) == ("permuted" if mode == "permuted" else None)
    assert fields["same"].converged and fields["permuted"].converged
    np.testing.assert_array_equal(fields["permuted"].u, fields["same"].u)
    xy = make_problem(spec(square, "{python} x")).mesh.nodes
    np.testing.assert_allclose(fields["same"].u, 2.0 * xy[:, 0] + 0.5 * xy[:, 1] ** 2)
    s = fields["wrong"]
    assert not s.converged and s.u is None
    assert s.reason.startswith("BAD_COORDINATES: x[11] = (") and "is no node of problem.mesh" in s.reason, s.reason


def refused(problem, *parts):
    with pytest.raises(config.ConfigError) as err:
        config.validate({"name": "s", "problem": problem, "parameters": BOTH}, "s.yaml")
    msg = str(err.value)
    assert "\n" not in msg, msg
    for part in parts:
        assert part in msg, msg


def test_launcher_command_and_inputs_are_checked_when_the_study_is_read(square, tmp_path):
    ok = "{python} -c pass {out}"
    refused(spec(square, ok, launcher="/opt/nowhere/bin/mpiexec -n {ranks}"),
            "problem external: launcher = '/opt/nowhere/bin/mpiexec -n {ranks}': /opt/nowhere/bin/mpiexec: no such file")
    refused(spec(square, ok, launcher="mpiexec -np {nranks}"),
            "problem external: launcher: unknown placeholder {nranks}; expected some of {ranks}")
    refused(spec(square, ok, launcher="no-such-launcher-xyz"), "no-such-launcher-xyz: not found on PATH")
    refused(spec(square, "./my_solver {out}"), "problem external: command = './my_solver {out}': ./my_solver: no such file")
    refused(spec(square, "no-such-solver-xyz {out}"), "no-such-solver-xyz: not found on PATH")
    refused(spec(square, ok, inputs=["missing.py"]), "problem external: inputs[0] = ", "missing.py': no such file")
    for value in ("mpiexec", "none", "srun" if __import__("shutil").which("srun") else "mpiexec"):
        config.validate({"name": "s", "problem": spec(square, ok, launcher=value), "parameters": BOTH}, "s.yaml")
    # {study_dir}, the study file's folder, in the command and the launcher; inputs relative to it, digested.
    (tmp_path / "solver.py").write_text("print('v1')\n")
    (tmp_path / "run.sh").write_text("#!/bin/sh\nexec \"$@\"\n")
    (tmp_path / "run.sh").chmod(0o755)
    study = config.validate({"name": "s", "parameters": BOTH, "problem": spec(
        square, "{python} {study_dir}/solver.py {out}", launcher="{study_dir}/run.sh -n {ranks}",
        inputs=["solver.py"])}, "s.yaml", tmp_path)
    prob = study["problem"]
    assert prob["command"] == f"{{python}} {tmp_path}/solver.py {{out}}"
    assert prob["launcher"] == f"{tmp_path}/run.sh -n {{ranks}}"
    assert prob["inputs"][0]["file"] == str(tmp_path / "solver.py") and len(prob["inputs"][0]["digest"]) == 64
    again = config.validate(study, "results/s/study.yaml", tmp_path / "elsewhere")  # the resolved study re-read
    assert again["problem"] == prob
    assert launcher_prefix(prob["launcher"], 2, {}) == [f"{tmp_path}/run.sh", "-n", "2"]
    assert launcher_prefix(prob["launcher"], 1, {}) == [] and launcher_prefix("none", 4, {}) == []
    # ... and in every command line the study may give, the affine black box's terms_command included
    from rom.hifi.problems.external_checks import resolve_inputs

    args = {"command": "{study_dir}/a", "operator_command": "{study_dir}/b", "terms_command": "{study_dir}/c {terms}"}
    resolve_inputs(args, tmp_path)
    assert args == {"command": f"{tmp_path}/a", "operator_command": f"{tmp_path}/b", "terms_command": f"{tmp_path}/c {{terms}}"}


def test_gather_counts_each_failure_reason_once():
    reasons = ["EXIT_16: boom", "EXTERNAL", "EXIT_16: boom", "TIMEOUT: 2 s", "EXIT_16: boom"]
    ds = xr.Dataset({"converged": ("sample", np.array([0, 1, 0, 0, 0])), "reason": ("sample", np.array(reasons))})
    assert reason_counts(ds) == ["3 x EXIT_16: boom", "1 x TIMEOUT: 2 s"]


def test_an_operator_outside_the_p1_pattern_is_refused_naming_the_first_entry(square, tmp_path):
    from rom.hifi.discretization import fem

    script = tmp_path / "coupled.py"
    script.write_text(textwrap.dedent(f"""
        import sys, importlib.util, h5py, meshio, numpy as np, scipy.sparse as sp
        spec = importlib.util.spec_from_file_location("poisson", {str(ROOT / "examples" / "blackbox" / "poisson.py")!r})
        poisson = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(poisson)
        mesh, out, op, rhs = sys.argv[1:5]
        xy = meshio.read(mesh).points[:, :2]
        far = int(np.argmax(np.linalg.norm(xy - xy[0], axis=1)))
        A = sp.identity(len(xy), format="lil")
        A[0, far] = 1.0  # nodes 0 and `far` share no cell
        poisson.write_petsc_mat(op, A.tocsr())
        poisson.write_petsc_vec(rhs, np.ones(len(xy)))
        with h5py.File(out, "w") as h5:
            h5["u"] = np.zeros(len(xy))
    """))
    p = make_problem(spec(square, f"{{python}} {script} {{mesh}} {{out}} {{operator}} {{rhs}}", matrices=True))
    far = int(np.argmax(np.linalg.norm(p.mesh.nodes - p.mesh.nodes[0], axis=1)))
    with pytest.raises(Exception, match=rf"1 nonzeros coupling nodes that share no cell, the first at \(row, col\) = "
                                        rf"\(0, {far}\)"):
        p.operator_values(np.array([1.0, 0.5]), fem.Pattern.build(p.mesh))


def test_dirichlet_rows_of_a_third_party_matrix_are_checked(square):
    """scikit-fem's P1 operator with symmetrically eliminated boundary rows passes; the same matrix in
    another node order (a code's own dof numbering) is refused naming an interior node."""
    pytest.importorskip("skfem")
    import sys

    from rom.hifi.discretization import meshfile
    from rom.hifi.problems.external_checks import dirichlet_rows

    sys.path.insert(0, str(ROOT / "examples" / "blackbox"))
    import skfem_block

    mesh, basis, keep = skfem_block.setup(str(square))
    A = skfem_block.dirichlet(skfem_block.asm(skfem_block.laplace, basis), keep)
    mf = meshfile.read(str(square), "external")
    assert dirichlet_rows(A, mf.nodes, mf.cells, "A") == int((keep == 0).sum())
    perm = np.random.default_rng(3).permutation(A.shape[0])
    with pytest.raises(ValueError, match=r"^A: row \d+ holds only its diagonal \(a Dirichlet row\) but node \d+ at "
                                         r"\(.*\) is inside problem.mesh"):
        dirichlet_rows(A[perm][:, perm], mf.nodes, mf.cells, "A")


def test_a_command_starts_without_romflows_mpi_wiring(monkeypatch):
    """Under romflow's mpiexec (the reduced_basis stage on several ranks) a black box's command must not
    inherit the launcher's wiring: MPICH aborts on Open MPI's PMIx variables (found with dolfinx's wheel).
    The user's own MPI settings pass."""
    from rom.hifi.problems.external_checks import command_environment

    for k, v in {"PMIX_RANK": "0", "PMIX_SERVER_URI41": "x", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_MCA_ess": "pmi",
                 "OMPI_MCA_orte_hnp_uri": "y", "PMI_FD": "3", "OMPI_ALLOW_RUN_AS_ROOT": "1",
                 "OMPI_MCA_btl": "self,vader", "MY_SOLVER_HOME": "/opt/s"}.items():
        monkeypatch.setenv(k, v)
    env = command_environment()
    assert not [k for k in env if k.startswith(("PMIX_", "PMI_", "OMPI_COMM_WORLD_", "OMPI_MCA_ess", "OMPI_MCA_orte"))]
    assert env["OMPI_ALLOW_RUN_AS_ROOT"] == "1" and env["OMPI_MCA_btl"] == "self,vader"
    assert env["MY_SOLVER_HOME"] == "/opt/s"
