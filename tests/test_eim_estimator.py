"""The residual dual norm evaluated by empirical interpolation (Casenave-Ern-Lelievre) against an
extended-precision reference: exact to its rounding bound with d = rank, an approximation with
fewer terms, and a bound at the round-off floor where the textbook form is not. Runtime ~10 s."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.models.evaluate import refined_solutions, true_errors
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.eim_estimator import eim_residual_norm, estimate, training_coefficients
from rom.reduction.estimators import coefficient_norms, rounding_constant
from rom.reduction.greedy import weak_greedy
from rom.reduction.linalg import EXTENDED, HAS_EXTENDED, RefinedSolver, x_norms


@pytest.mark.skipif(not HAS_EXTENDED, reason="needs an extended long double (80-bit on x86)")
def test_eim_evaluation_of_the_estimator():
    p = ThermalBlock(24)
    ops = Operators.from_dataset(operators_dataset(p))
    Q = p.n_terms
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, AffineCoefficients(p, np.ones(Q)), p.default_bounds,
                             p.parameter_names)
    rng = np.random.default_rng(0)
    weak_greedy(0.1 + 0.9 * rng.random((300, Q)), lambda m: spla.spsolve(ops.assemble(m).tocsc(), ops.f_terms[0]),
                red, 1e-14, 30)
    model = red.model()
    test = 0.1 + 0.9 * rng.random((30, Q))
    U = refined_solutions(ops.A_terms, ops.f_terms, test, np.ones((len(test), 1)))
    riesz, A_ext = RefinedSolver(ops.X), [A.astype(EXTENDED) for A in ops.A_terms]
    for N in (8, red.N):  # moderate accuracy, and the round-off floor
        m = model.truncated(N)
        K = 1 + N * Q
        train = 0.1 + 0.9 * rng.random((3 * K, Q))
        c = m.solve_batch(test)
        # Reference: the residual of c formed and Riesz-solved in long double.
        u_rb = c.astype(EXTENDED) @ red.V[:N].astype(EXTENDED)
        r = np.array([ops.f_terms[0] - sum(EXTENDED(t) * (A @ u) for t, A in zip(mu, A_ext)) for mu, u in zip(test, u_rb)])
        exact = (x_norms(riesz.solve(r), riesz.A_ext) / test.min(axis=1)).astype(float)
        w_norm = coefficient_norms(np.ones((len(test), 1)), test, c) / test.min(axis=1)
        full = eim_residual_norm(ops.X, ops.A_terms, ops.f_terms, red.V[:N], *training_coefficients(m, train))
        assert full.d == K  # the rank of the representers: I_d is exact on their span
        est = estimate(m, full, test, c)
        assert np.all(np.abs(est - exact) <= rounding_constant(full.E) * w_norm), (N, np.abs(est / exact - 1).max())
        assert np.all(est >= true_errors(U, c, red.V, ops.X))
        # Fewer terms: an approximation at a lower online cost.
        short = eim_residual_norm(ops.X, ops.A_terms, ops.f_terms, red.V[:N], *training_coefficients(m, train), tol=1e-3)
        if N == 8:
            assert short.d < K / 2, (short.d, K)
            assert np.abs(estimate(m, short, test, c) / exact - 1).max() < 1e-2
    # The textbook quadratic form at the floor: not a bound (NaN or below the true error).
    tb = m.estimate_batch(test, c, "textbook")
    assert np.any(~np.isfinite(tb) | (tb < true_errors(U, c, red.V, ops.X)))
