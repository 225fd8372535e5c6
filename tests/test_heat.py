"""Transient heat: implicit Euler dissipates energy; a uniform state is steady; backends agree."""
import numpy as np
import pytest

from rom.hifi.discretization import fem
from rom.hifi.problems import Heat
from rom.hifi.solvers.solve import FullOrderModel


def trajectory(problem, mu, backend="petsc"):
    fom = FullOrderModel(problem, backend, {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-13})
    sample = fom.solve_trajectory(np.asarray(mu, dtype=float))
    assert sample.converged, sample.reason
    return sample.u


def test_energy_decays_monotonically_without_sources():
    problem = Heat(mesh_n=16, dt=0.002, steps=40)
    U = trajectory(problem, [1.0, 0.0, 0.0, 0.0, 0.0])  # hot interior, cold walls
    M = fem.Pattern.build(problem.mesh)
    M = M.to_scipy(problem.mass_product(M))
    energy = np.einsum("ti,ti->t", U, (M @ U.T).T)
    assert np.all(np.diff(energy) < 0), "the M-norm must decrease at every step"
    assert energy[-1] < 0.5 * energy[0]


@pytest.mark.parametrize("T", [0.0, 0.7])
def test_uniform_temperature_is_steady(T):
    problem = Heat(mesh_n=12, dt=0.01, steps=10)
    U = trajectory(problem, [T] * 5)
    np.testing.assert_allclose(U, T, atol=1e-11)


def test_boundary_state_is_reached():
    """Boundary temperatures held constant: the long-time limit is the stationary solution
    -Laplace u = 0 with the same boundary data."""
    problem = Heat(mesh_n=12, dt=0.05, steps=200)
    mu = np.array([0.3, 1.0, 1.0, 0.2, 0.2])
    U = trajectory(problem, mu)
    pattern = fem.Pattern.build(problem.mesh)
    K = pattern.to_scipy(problem.energy_product(pattern))
    lift = problem.phi(mu[None])[0] @ problem.rhs_terms(pattern) / (problem.dt * problem.alpha)
    import scipy.sparse.linalg as spla

    steady = spla.spsolve(K.tocsc(), lift)
    np.testing.assert_allclose(U[-1], steady, atol=1e-9)
    assert np.abs(U[-2] - U[-1]).max() < 1e-9


def test_scipy_backend_matches_petsc():
    problem = Heat(mesh_n=10, dt=0.01, steps=8)
    mu = [0.9, 0.1, 0.4, 0.0, 1.0]
    np.testing.assert_allclose(trajectory(problem, mu, "scipy"), trajectory(problem, mu, "petsc"), atol=1e-10)
