"""A FEniCSx (dolfinx) solver as an affine black box through the real `snakemake` CLI: the walkthrough of
docs/bring_your_own.md (examples/blackbox/dolfinx_block.py) run by dolfinx's own stack (the PyPI wheel
dolfinx-solver-real: Python >= 3.12, its own PETSc and MPICH, in .venv-dolfinx made by `make dolfinx-env`),
two MPI ranks under its own mpiexec (problem.launcher), its dof order mapped back through the coordinates
it writes, its exported terms checked against its solutions, and a certified RB whose bounds hold against
dolfinx's own test solutions. Skipped, with the reason, where no such environment could be built."""
import os
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, run, write_yaml

SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
VENV = Path(os.environ.get("ROMFLOW_DOLFINX_VENV", ROOT / ".venv-dolfinx"))


def dolfinx_python() -> Path:
    python = VENV / "bin" / "python"
    unavailable = Path(f"{VENV}.unavailable")
    if unavailable.is_file():
        pytest.skip(f"no dolfinx environment: {unavailable.read_text().strip()}")
    if not python.exists():
        pytest.skip(f"no dolfinx environment at {VENV} (make dolfinx-env builds one)")
    return python


@pytest.mark.pipeline
def test_dolfinx_affine_black_box_under_its_own_mpi(tmp_path):
    import gmsh_meshes

    python = dolfinx_python()
    d = tmp_path / "study"
    d.mkdir()
    gmsh_meshes.box(2, 0.05, d / "block.msh", regions=2)  # cells: group 1 (left: "core"), 2 (right: "shell")
    script = ROOT / "examples" / "blackbox" / "dolfinx_block.py"
    study = {"name": "dolfinx_block", "problem": {
        "name": "external", "parameters": ["k_core", "k_shell"],
        "command": f"{python} {script} --mu {{mu}} --mesh {{mesh}} --out {{out}}",
        "terms_command": f"{python} {script} --mesh {{mesh}} --terms {{terms}}",
        "launcher": f"{VENV / 'bin' / 'mpiexec'} -n {{ranks}}",
        "inputs": [str(script)], "mesh": {"file": "block.msh"},
        "affine": {"operator": {"core": "k_core", "shell": "k_shell"}, "rhs": {"source": 1.0},
                   "x_reference": {"k_core": 1.0, "k_shell": 1.0}, "tolerance": 1e-6}},
        "parameters": {"k_core": {"bounds": [0.1, 10.0], "distribution": "loguniform"},
                       "k_shell": {"bounds": [0.5, 2.0]}},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 4, "seed": 2}},
        "simulate": {"chunk_size": 4, "mpi_ranks": 2},
        "rb": {"enabled": True, "train_size": 30, "tol": 1e-6, "max_modes": 8, "n_timing": 1, "batch_size": 2}}
    write_yaml(d / "dolfinx.yaml", study)
    run([SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", d / "dolfinx.yaml", "--cores", "2",
         "results/dolfinx_block/rom/rb_metrics.h5"], timeout=600)
    res = tmp_path / "results" / "dolfinx_block"
    test = xr.open_dataset(res / "snapshots" / "test.h5")
    assert test["converged"].values.all()
    # dolfinx numbers its dofs its own way; the walkthrough maps them to the mesh's nodes (input_global_indices)
    # and writes their coordinates x, which romflow compares with the mesh: the same order (no permutation
    # left to map; a wrong one would be mapped or refused naming the node). The terms, exported in node
    # order, reproduce its solution to its CG tolerance (measured 6e-11 < affine.tolerance 1e-6).
    assert "node_order" not in test.attrs
    assert any("terms check: relative difference" in str(r) for r in test["reason"].values)
    m = xr.open_dataset(res / "rom" / "rb_metrics.h5")
    err, bound = m["affine_error"].values, m["affine_estimate"].values
    # Against dolfinx's own solutions, which carry its CG error (rtol 1e-10 in the residual): the bound
    # holds for errors above that level.
    assert np.all(bound[-1] >= err[-1] - 1e-8 * m["norm"].values)
    assert (err[-1] / m["norm"].values).max() < 1e-4
