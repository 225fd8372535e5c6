"""The affine black box through the real `snakemake` CLI with a third-party solver (scikit-fem,
examples/blackbox/skfem_block.py): the terms exported once, snapshots from the solver, checked against
romflow's solve of the terms at the first sample, min-theta coercivity from affine.x_reference, and a
certified RB whose bounds hold against the solver's own test solutions."""
import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, run, write_yaml

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
SCRIPT = "{python} {root}/examples/blackbox/skfem_block.py"


@pytest.mark.pipeline
def test_affine_black_box_certified_rb(tmp_path):
    pytest.importorskip("skfem")
    d = tmp_path / "study"
    d.mkdir()
    study = {"name": "skfem_affine", "problem": {
        "name": "external", "parameters": ["k_core", "k_shell"],
        "command": f"{SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}} --dirichlet first",
        "terms_command": f"{SCRIPT} --mesh {{mesh}} --export-terms {{terms}} --format hdf5 --dirichlet first",
        "mesh": {"file": "meshes/square.msh", "generate": "{python} {root}/examples/meshes/square.py {file} --size 0.1"},
        "affine": {"operator": {"core": "k_core", "shell": "k_shell"}, "rhs": {"source": 1.0},
                   "x_reference": {"k_core": 1.0, "k_shell": 1.0}, "tolerance": 1e-8}},
        "parameters": {"k_core": {"bounds": [0.1, 10.0], "distribution": "loguniform"}, "k_shell": {"bounds": [0.5, 2.0]}},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 6, "seed": 2}},
        "simulate": {"chunk_size": 6},
        "rb": {"enabled": True, "train_size": 30, "tol": 1e-6, "max_modes": 8, "n_timing": 1, "batch_size": 2}}
    write_yaml(d / "aff.yaml", study)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", d / "aff.yaml", "--cores", "2",
         "results/skfem_affine/rom/rb_metrics.h5"], timeout=300)
    res = tmp_path / "results" / "skfem_affine"
    rb = xr.open_dataset(res / "rom" / "rb.h5")
    assert rb.attrs["coercivity"] == "problem"  # min-theta on X = sum_q theta_q(mu_ref) A_q
    m = xr.open_dataset(res / "rom" / "rb_metrics.h5")
    err, bound = m["affine_error"].values, m["affine_estimate"].values
    assert np.all(bound >= err * (1 - 1e-9))  # effectivities >= 1 against the solver's own solutions
    assert (err / m["norm"].values).max(axis=1)[-1] < 1e-4
    test = xr.open_dataset(res / "snapshots" / "test.h5")
    assert any("terms check: relative difference" in str(r) for r in test["reason"].values)


def test_expressions_are_checked_before_any_job():
    from rom.hifi.problems.external_terms import compile_expression

    f = compile_expression("k_core * exp(-k_shell) + sqrt(4) - 1/2", ["k_core", "k_shell"], "k")
    assert np.isclose(f(np.array([[2.0, 0.0]]))[0], 3.5)
    for bad, what in (("__import__('os')", "call not allowed"), ("k.x", "attribute"), ("foo", "unknown name 'foo'"),
                      ("exp", "without an argument")):
        with pytest.raises(ValueError, match=what):
            compile_expression(bad, ["k"], "problem.affine.operator.core")
    # Arithmetic that fails (a division by zero, an overflow, a complex power, a huge integer power) is a
    # one-line ValueError naming the key and the parameter, never a traceback or a hang.
    for bad in ("1/0", "10.0**400", "(-1)**0.5", "9**9**9", "log(k - 1)"):
        with pytest.raises(ValueError, match=r"problem.affine.operator.core = .*: (inf|-inf|nan) at \{'k': 0.5\}"):
            compile_expression(bad, ["k"], "problem.affine.operator.core")(np.array([[0.5]]))
