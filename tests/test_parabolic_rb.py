"""Parabolic RB on the `heat` problem (32 x 32, 961 dofs, 100 implicit Euler steps): POD-greedy over
trajectories, and the space-time energy bound against independent PETSc FOM trajectories at every
time step of every test parameter, with and without the initial state in the basis.

Runtime about 8 s on 2 cores."""
import numpy as np
import pytest

from rom.hifi.problems import Heat
from rom.hifi.solvers.solve import FullOrderModel
from rom.models.parabolic import ParabolicRBModel, ParabolicReductor, affine_system, energy_errors, pod_greedy


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
    system = affine_system(p)
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


def test_adapter_reads_the_heat_problem_in_closed_form():
    """affine_system on `heat` against the closed form assembled here: A = alpha K (one term), X = K,
    f_s = alpha x the lifting of side s, u^0 = T_init (one term), alpha_LB = alpha exactly."""
    from rom.hifi.discretization import fem
    from rom.hifi.discretization.mesh import side_indicators

    p = Heat(10, dt=0.01, steps=5, alpha=0.7)
    system = affine_system(p)
    pattern = fem.Pattern.build(p.mesh)
    K = pattern.to_scipy(pattern.assemble(fem.stiffness_local(p.mesh)))
    lifts = np.stack([pattern.assemble_vector(p.mesh, fem.boundary_lift_local(p.mesh, fem.stiffness_local(p.mesh), g))
                      for g in side_indicators(p.mesh)])
    assert len(system.A_terms) == 1 and abs(system.A_terms[0] - K).max() == 0 and abs(system.X - K).max() == 0
    mu = np.random.default_rng(4).random((3, 5))
    co = system.coefficients
    np.testing.assert_allclose(co.theta(mu), 0.7, rtol=1e-15)
    np.testing.assert_allclose(co.phi(mu) @ system.f_terms, 0.7 * mu[:, 1:] @ lifts, rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(system.psi(mu) @ system.u0_terms, mu[:, :1] * np.ones((1, p.mesh.n_dofs)))
    np.testing.assert_allclose(co.alpha_lb(mu), 0.7, rtol=1e-15)
    assert (system.dt, system.steps) == (0.01, 5)


class SteppedHeat(Heat):
    """The heat problem with its step operator as one term S = M + dt alpha K (theta = 1): no term is
    M itself, so A = (S - M) / dt carries an explicit mass term, X is not the sum of the terms and
    min-theta does not apply: the coercivity bound comes from SCM (alpha = alpha exactly)."""

    def operator_terms(self, pattern):
        return (self.mass_product(pattern) + self.dt * self.alpha * self.energy_product(pattern))[None]

    def theta(self, mu):
        return np.ones((len(mu), 1))


def test_generic_step_form_with_scm_keeps_the_bound():
    from rom.reduction.scm import SCMCoefficients, scm_greedy

    p = SteppedHeat(12, dt=0.01, steps=20)
    system = affine_system(p)
    assert len(system.A_terms) == 2 and system.coefficients.theta_ref is None
    np.testing.assert_allclose(system.coefficients.theta(np.zeros((1, 5))), [[100.0, -100.0]], rtol=1e-15)
    with pytest.raises(ValueError, match="no coercivity lower bound"):
        system.coefficients.alpha_lb(np.zeros((1, 5)))
    rng = np.random.default_rng(5)
    scm, _ = scm_greedy(system.X, system.A_terms, system.coefficients.theta, rng.random((20, 5)), tol=0.1)
    system.coefficients = SCMCoefficients(system.coefficients, scm)
    test = rng.random((4, 5))
    lb = system.coefficients.alpha_lb(test)
    assert np.all(lb <= 1.0) and np.all(lb >= 0.9)  # alpha(A = K, X = K) = 1
    fom = FullOrderModel(p, "scipy")
    traj = lambda mu: fom.solve_trajectory(np.asarray(mu, dtype=float)).u  # noqa: E731
    red = ParabolicReductor(system)
    h = pod_greedy(rng.random((30, 5)), traj, red, 1e-4, 25)
    assert h.stop_reason == "tolerance"
    U = np.stack([traj(m) for m in test])
    err, est = errors_and_bounds(red.model(), red.V, system, test, U)
    assert np.all(est[:, 1:] >= err[:, 1:]), (est[:, 1:] / err[:, 1:]).min()


def test_model_dataset_round_trip_and_truncation(heat, tmp_path):
    from rom import artefacts

    p, system, traj, train, test, U = heat
    red = ParabolicReductor(system)
    pod_greedy(train, traj, red, 1e-30, 8)
    model = red.model()
    artefacts.write(model.to_dataset(), tmp_path / "rb.h5")
    back = ParabolicRBModel.from_dataset(artefacts.read(tmp_path / "rb.h5"), system.coefficients, system.psi)
    c = model.solve_batch(test)
    np.testing.assert_array_equal(back.solve_batch(test), c)
    np.testing.assert_array_equal(back.estimate_batch(test, c), model.estimate_batch(test, c))
    for N in (1, 4, 8):
        cut, ref = model.truncated(N, red.V, system.M, system.u0_terms), red.model(N)
        cN = ref.solve_batch(test)
        np.testing.assert_allclose(cut.solve_batch(test), cN, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cut.estimate_batch(test, cN), ref.estimate_batch(test, cN), rtol=1e-12, atol=1e-15)
