"""Plane-stress elasticity: the P1 patch test (uniform tension is reproduced exactly), MPI == serial."""
import numpy as np
import pytest

from rom.hifi.discretization.mesh import unit_square
from rom.hifi.problems.elasticity import PlateMesh, TensilePlate
from rom.hifi.solvers.shapes import ShapeModel


def _rectangle(n, width=1.0, height=2.0):
    m = unit_square(n)
    return PlateMesh(m.nodes * [width, height], m.triangles)


@pytest.mark.parametrize("backend", ["petsc", "scipy"])
def test_uniform_tension_patch_test(backend):
    p = TensilePlate(mesh_n=6, young=100.0)
    mesh = _rectangle(6)
    pressure, nu = 1.3, 0.3
    r = ShapeModel(p, mesh, backend, {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-13}).solve([pressure, 0.0, nu])
    x, y = mesh.nodes.T
    exact = np.column_stack([-nu * pressure * x / 100.0, pressure * y / 100.0])
    assert r.converged
    assert np.abs(r.displacement - exact).max() < 1e-10
    assert np.abs(r.von_mises - pressure).max() < 1e-9
    assert r.compliance == pytest.approx(pressure**2 * 1.0 * 2.0 / 100.0, rel=1e-10)


def test_family_meshes_differ_and_are_valid():
    p = TensilePlate(mesh_n=8)
    meshes = [p.geometry(s) for s in (1, 2)]
    assert meshes[0].n_nodes != meshes[1].n_nodes
    for m in meshes:
        p1 = m.nodes[m.triangles]
        area = np.cross(p1[:, 1] - p1[:, 0], p1[:, 2] - p1[:, 0]) / 2
        assert area.min() > 0 and area.sum() < 2.0  # notches remove material from the 1 x 2 plate


@pytest.mark.mpi
def test_two_ranks_equal_one_rank(tmp_path):
    from conftest import PYTHON, run

    script = tmp_path / "solve.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from rom.hifi.problems.elasticity import TensilePlate\n"
        "from rom.hifi.solvers.shapes import ShapeModel\n"
        "p = TensilePlate(mesh_n=8); m = p.geometry(5)\n"
        "r = ShapeModel(p, m, 'petsc', {'ksp_type': 'cg', 'pc_type': 'gamg', 'ksp_rtol': 1e-12}).solve([1.0, 0.3, 0.25])\n"
        "if r.displacement is not None: np.save(sys.argv[1], r.displacement)\n")
    for n in (1, 2):
        run(["mpiexec", "-n", n, PYTHON, script, tmp_path / f"u{n}.npy"])
    u1, u2 = np.load(tmp_path / "u1.npy"), np.load(tmp_path / "u2.npy")
    assert np.abs(u1 - u2).max() < 1e-8 * np.abs(u1).max()
