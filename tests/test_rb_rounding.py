"""The certified RB bound where min-theta is exactly tight: thermal block 3x3 on 19,881 dofs, contrast
[1e-3, 1], test parameters on the diagonal mu = t (1, .., 1). There A(mu) = t sum_q A_q = t X (to the
rounding of the assembly, 3e-15 relative here) and alpha_LB = min_q mu_q = t is the exact coercivity
constant, so the effectivity is 1 with no margin: any rounding of the online evaluation below the
true value would be a violation. The certified bound adds the worst-case rounding allowance
rho = gamma_k || |R| |w| ||_2 (rom.reduction.estimators.rounding_allowance).

The basis: 12 snapshots at random parameters ever closer to the diagonal (its relative errors fall
from 0.9 to 1e-8 over N = 1..12), then u(1, .., 1) (the whole diagonal is in its span, u(t 1) = u(1) / t: from N = 13 on the diagonal
error is the round-off floor, the double FOM solve's own error), then 2 more random snapshots.
References refined in extended precision, errors formed in long double.

Before the fix (the stable evaluation alone, as shipped) 86 of the 120 (N, t) pairs violated the
bound: by up to 5e-10 relative at relative errors of 4e-8, by 5e-3 at the floor.
Runtime ~15 s on 2 idle cores."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.models.evaluate import error_table, refined_solutions
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.estimators import gamma, rounding_index
from rom.reduction.linalg import HAS_EXTENDED


@pytest.fixture(scope="module")
def diagonal_table():
    p = ThermalBlock(142, (3, 3), mu_range=(1e-3, 1.0))
    ops = Operators.from_dataset(operators_dataset(p))
    assert p.mesh.n_dofs == 19881
    Q = p.n_terms
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, AffineCoefficients(p, np.ones(Q)),
                             p.default_bounds, p.parameter_names)
    # Snapshots ever closer to the diagonal (log-distance 3 * 4^-j): the diagonal errors fall over
    # many orders of magnitude with N, as in a greedy, before u(1, .., 1) brings them to the floor.
    rng = np.random.default_rng(5)
    near = 10.0 ** (-3.0 * 4.0 ** -np.arange(14)[:, None] * rng.random((14, Q)))
    for mu in [*near[:12], np.ones(Q), *near[12:]]:
        red.extend(spla.spsolve(ops.assemble(mu).tocsc(), ops.f_terms[0], permc_spec="MMD_AT_PLUS_A"))
    assert red.N == 15
    t = np.array([1e-3, 2.7e-3, 1e-2, 0.043, 0.2, 0.5, 0.77, 1.0])
    test = t[:, None] * np.ones(Q)
    U = refined_solutions(ops.A_terms, ops.f_terms, test, np.ones((len(test), 1)))
    return red, error_table(red.model(), red.V, ops.X, test, U, methods=("certified", "stable"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EXTENDED, reason="needs an extended long double (80-bit on x86)")
def test_certified_bound_holds_where_min_theta_is_exactly_tight(diagonal_table):
    red, tab = diagonal_table
    rel, err = tab["relative_error"], tab["error"]
    certified, stable, rho = tab["estimate_certified"], tab["estimate_stable"], tab["rounding"]
    # The basis covers both regimes: well above the floor up to N = 12, at the floor from N = 13.
    assert rel[:12].min() > 1e-9 and rel[11].max() < 1e-7 and rel[12:].max() < 1e-12, rel.max(axis=1)
    # The certified bound is the stable evaluation plus the reported allowance ...
    np.testing.assert_allclose(certified, stable + rho, rtol=8 * np.finfo(float).eps)
    # ... and bounds the true error at every N and every diagonal parameter, at the floor included.
    eff = certified / err
    assert eff.min() >= 1.0, (eff.min(axis=1), rel.max(axis=1))
    # Not inflated: on the diagonal the exact effectivity is 1, so eff - 1 is the allowance (plus the
    # stable evaluation's deviation, far smaller), rho / (alpha err) = gamma_k || |R| |w| || / (alpha ||u||)
    # / (relative error), and || |R| |w| || / (alpha ||u||) is a modest constant (|w| ~ |c| |theta|,
    # ||c|| = ||u_rb||_X, the columns of R of X'-norm ||A_q||): measured ~2; allowed 100.
    k_gamma = gamma(rounding_index(red.model().R))
    assert k_gamma < 3.4e-14  # k < 300 roundings
    assert np.all(eff - 1.0 <= 100 * k_gamma / rel), ((eff - 1.0) * rel / k_gamma).max()
    # So the bound stays useful: within 1e-4 of the error down to relative errors of 1e-8 ...
    assert np.all(eff[rel > 1e-8] <= 1.0 + 1e-4)
    # ... and within a factor 100 at the floor, where the allowance dominates.
    assert eff[12:].max() < 100.0
