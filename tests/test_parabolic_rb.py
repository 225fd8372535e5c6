"""Parabolic RB on the `heat` problem (32 x 32, 961 dofs, 100 implicit Euler steps): POD-greedy over
trajectories, and the space-time energy bound against independent PETSc FOM trajectories at every
time step of every test parameter, with and without the initial state in the basis.

Runtime about 8 s on 2 cores."""
import numpy as np
import pytest

from rom.hifi.problems import Heat
from rom.hifi.solve import FullOrderModel
from rom.models.parabolic import ParabolicReductor, energy_errors, heat_system, pod_greedy


def petsc_trajectories(problem):
    """FOM trajectories with CG preconditioned by an exact LU (converges in one step to ~1e-15;
    the KSP is set explicitly: the options database is process-wide)."""
    fom = FullOrderModel(problem, "petsc")
    fom.solver.ksp.setType("cg")
    fom.solver.ksp.getPC().setType("lu")
    fom.solver.ksp.setTolerances(rtol=1e-14, atol=1e-300)

    def trajectory(mu):
        s = fom.solve_trajectory(np.asarray(mu, dtype=float))
        assert s.converged, s.reason
        return s.u

    return trajectory


@pytest.fixture(scope="module")
def heat():
    p = Heat(32)
    traj = petsc_trajectories(p)
    system = heat_system(p)
    rng = np.random.default_rng(0)
    train, test = rng.random((40, 5)), rng.random((10, 5))
    U = np.stack([traj(m) for m in test])
    return p, system, traj, train, test, U


def errors_and_bounds(model, V, system, test, U):
    c = model.solve_batch(test)
    E = U - np.einsum("ikn,nd->ikd", c, V[: model.N])
    return energy_errors(E, system, model.coefficients.alpha_lb(test)), model.estimate_batch(test, c)


def test_pod_greedy_and_space_time_bound(heat):
    p, system, traj, train, test, U = heat
    red = ParabolicReductor(system)
    assert red.N == 1  # the uniform initial state
    h = pod_greedy(train, traj, red, 1e-4, 30)
    assert h.stop_reason == "tolerance" and h.max_estimate[-1] < 1e-4
    # Each POD-greedy step lowers the worst training bound (measured: by 2 % to 74 % per step).
    assert np.all(np.diff(h.max_estimate) < 0), h.max_estimate
    assert h.basis_size == list(range(1, red.N + 1))
    for N in (5, 10, red.N):
        model = red.model(N)
        err, est = errors_and_bounds(model, red.V, system, test, U)
        # The initial state is in the basis: e^0 = 0 up to rounding, in the error and in the bound.
        assert est[:, 0].max() < 1e-12 and err[:, 0].max() < 1e-12
        eff = est[:, 1:] / err[:, 1:]
        assert eff.min() >= 1.0, eff.min()
        # alpha_LB = alpha exactly (X = K): the only slack is Young's inequality and the dropped
        # ||e^k - e^{k-1}||_M^2 (measured 1.1 - 1.9).
        assert eff.max() < 10.0, eff.max()
    # Relative to the trajectory's own space-time norm (the same formula applied to U).
    rel = err[:, -1] / energy_errors(U, system, model.coefficients.alpha_lb(test))[:, -1]
    assert rel.max() < 1e-3


def test_bound_includes_the_initial_projection_error(heat):
    """Without the initial state in the basis, ||e^0||_M > 0 enters the bound and the bound
    still holds at every step, from k = 0."""
    p, system, traj, train, test, U = heat
    red = ParabolicReductor(system, initial_in_basis=False)
    h = pod_greedy(train, traj, red, 1e-30, 6)
    assert h.stop_reason == "N_max" and red.N == 6 and "not reached" in h.warning
    err, est = errors_and_bounds(red.model(), red.V, system, test, U)
    assert err[:, 0].min() > 1e-6  # T_init * 1 is not in the span
    # At k = 0 both are ||e^0||_M, the bound's from the Gram matrix of the projection errors.
    np.testing.assert_allclose(est[:, 0], err[:, 0], rtol=1e-8)
    assert np.all(est[:, 1:] >= err[:, 1:])


def test_bad_input_is_refused(heat):
    p, system, traj, train, test, U = heat
    red = ParabolicReductor(system)
    with pytest.raises(ValueError, match="modes_per_step = 0: expected at least 1"):
        pod_greedy(train, traj, red, 1e-4, 5, modes_per_step=0)
    with pytest.raises(ValueError, match=r"N = 3: expected 1..1"):
        red.model(3)
