"""The nonlinear heat problem: Newton (SNES) steps, Jacobian, linear limit, MPI == serial."""
import numpy as np
import pytest

from conftest import rom_cli, tiny_study, write_yaml
from rom import artefacts
from rom.hifi.discretization import fem
from rom.hifi.problems.nonlinear_heat import NonlinearHeat
from rom.hifi.solvers.solve import FullOrderModel

MU = np.array([0.3, 0.5, 120.0])


def test_element_jacobian_matches_finite_differences():
    p = NonlinearHeat(mesh_n=6)
    rng = np.random.default_rng(0)
    elems = np.arange(len(p.mesh.triangles))
    ue = rng.uniform(0.2, 1.5, (len(elems), 3))
    J = p.element_g_jacobian(elems, ue)
    h = 1e-6
    for j in range(3):  # three vertex directions, central differences
        d = np.zeros(3)
        d[j] = h
        fd = (p.element_g(elems, ue + d, MU, 0.01) - p.element_g(elems, ue - d, MU, 0.01)) / (2 * h)
        assert np.abs(fd - J[:, :, j]).max() < 1e-7 * np.abs(J).max()


def test_beta_zero_is_the_linear_implicit_euler_scheme_and_newton_converges_quadratically():
    p = NonlinearHeat(mesh_n=12, beta=0.0, steps=5)
    fom = FullOrderModel(p, "petsc", {})
    U = fom.solve_trajectory(MU).u
    pat = fem.Pattern.build(p.mesh)
    K, M = pat.to_scipy(p.energy_product(pat)), pat.to_scipy(p.mass_product(pat))
    import scipy.sparse.linalg as spla

    u = np.zeros(p.mesh.n_dofs)
    allel = np.arange(len(p.mesh.triangles))
    dof = p.mesh.dof_of_node[p.mesh.triangles]
    for k in range(1, 6):
        load = p.element_load(allel, MU, k * p.dt)
        F = np.bincount(dof[dof >= 0], weights=load[dof >= 0], minlength=p.mesh.n_dofs)
        u = spla.spsolve((p.rho_c * M + p.dt * p.k0 * K).tocsc(), p.rho_c * M @ u + p.dt * F)
        assert np.linalg.norm(U[k] - u) < 1e-9 * np.linalg.norm(u)
    # Nonlinear: Newton from the previous step converges in a few iterations (quadratic rate).
    q = NonlinearHeat(mesh_n=12, steps=5, q0_range=(40.0, 200.0))
    step = FullOrderModel(q, "scipy").newton
    u1, info = step.step(np.zeros(q.mesh.n_dofs), q.dt, np.array([0.3, 0.5, 200.0]))
    assert info.converged and info.iterations <= 5, info
    assert u1.max() > 0.1  # hot enough that k(u) departs from k0


def test_petsc_snes_equals_the_scipy_newton_fallback():
    p = NonlinearHeat(mesh_n=12, steps=6)
    a = FullOrderModel(p, "petsc", {}).solve_trajectory(MU)
    b = FullOrderModel(p, "scipy").solve_trajectory(MU)
    assert a.converged and b.converged
    assert np.abs(a.u - b.u).max() < 1e-9 * np.abs(b.u).max()
    assert a.u.shape == (7, 11 * 11)


@pytest.mark.mpi
def test_two_ranks_equal_one_rank(tmp_path):
    cfg = write_yaml(tmp_path / "nl.yaml", tiny_study(
        name="nl_tiny", problem={"name": "nonlinear_heat", "mesh": {"n": 10}, "steps": 5},
        simulate={"chunk_size": 4, "petsc_options": {"ksp_type": "gmres", "pc_type": "bjacobi"}}))
    study = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    rom_cli("sample", "--study-config", study, "--out", tmp_path / "p.h5")
    for ranks in (1, 2):
        rom_cli("simulate", "--study-config", study, "--parameters", tmp_path / "p.h5", "--set", "test",
                "--chunk", "0", "--out", tmp_path / f"n{ranks}.h5", mpi=ranks)
    one, two = artefacts.read(tmp_path / "n1.h5"), artefacts.read(tmp_path / "n2.h5")
    assert two.attrs["mpi_ranks"] == 2 and two["converged"].values.all()
    u1, u2 = one["u"].values, two["u"].values
    assert u1.shape == (3, 6, 81)
    assert np.abs(u1 - u2).max() < 1e-9 * np.abs(u1).max()
