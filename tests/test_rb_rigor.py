"""Rigor of the RB error bound at a realistic size, down to the round-off floor: thermal block 2x2
on 19,881 dofs, weak greedy over the 5^4 grid until the basis stops growing, against references
refined in extended precision (a plain double solve errs by 5e-14..1.2e-13 here itself).

Runtime ~35 s on 2 idle cores (marked slow; it runs in `make test`)."""
import numpy as np
import pytest
import scipy.sparse.linalg as spla

from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.models.evaluate import error_table, refined_solutions
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.greedy import weak_greedy
from rom.reduction.linalg import EXTENDED, HAS_EXTENDED, RefinedSolver, x_norms


@pytest.mark.slow
@pytest.mark.skipif(not HAS_EXTENDED, reason="needs an extended long double (80-bit on x86)")
def test_bound_holds_down_to_the_round_off_floor_at_2e4_dofs():
    p = ThermalBlock(142)
    ops = Operators.from_dataset(operators_dataset(p))
    assert p.mesh.n_dofs == 19881
    Q = p.n_terms
    A_ext = [A.astype(EXTENDED) for A in ops.A_terms]
    coef = AffineCoefficients(p, np.ones(Q))
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, coef, p.default_bounds, p.parameter_names)
    g = np.linspace(0.1, 1.0, 5)
    train = np.array(np.meshgrid(g, g, g, g, indexing="ij")).reshape(Q, -1).T

    def fom(mu):  # a plain double solve: the basis may be anything, only the references must be exact
        return spla.spsolve(ops.assemble(mu).tocsc(), ops.f_terms[0], permc_spec="MMD_AT_PLUS_A")

    # Unreachable tolerance: the greedy runs until a snapshot adds no direction (the floor) or N_max.
    h = weak_greedy(train, fom, red, 1e-16, 45)
    test = 0.1 + 0.9 * np.random.default_rng(11).random((30, Q))
    U = refined_solutions(ops.A_terms, ops.f_terms, test, np.ones((len(test), 1)))
    t = error_table(red.model(), red.V, ops.X, test, U, methods=("stable",))
    rel, err, est = t["relative_error"], t["error"], t["estimate_stable"]
    # The basis reaches the floor: the last size has true relative errors of a few 1e-14, five sizes
    # are below 1e-10 (where the textbook evaluation and double-precision data fail).
    assert rel[-1].max() < 2e-13, (h.stop_reason, rel.max(axis=1))
    assert np.sum(rel.max(axis=1) < 1e-10) >= 5, rel.max(axis=1)
    # Every N, every test parameter: Delta >= true error. Min-theta gives effectivities between 1
    # and the contrast 10 times the residual's continuity ratio (< 20), at every accuracy.
    eff = est / err
    assert eff.min() >= 1.0, (eff.min(axis=1), rel.max(axis=1))
    assert eff.max() < 20.0, eff.max()
    # The reported worst-case bound of the online rounding holds: |Delta - Delta_exact| <= bound,
    # with Delta_exact = ||X^{-1} r||_X / alpha_LB from the residual formed and solved in long double.
    X_ext = ops.X.astype(EXTENDED)
    riesz_X = RefinedSolver(ops.X)
    model = red.model()
    for row in (len(t["sizes"]) // 2, -3, -2, -1):  # half way, and the last sizes (the floor)
        N = t["sizes"][row]
        c = model.truncated(int(N)).solve_batch(test)
        u_rb = c.astype(EXTENDED) @ red.V[:N].astype(EXTENDED)
        r = np.array([ops.f_terms[0] - sum(EXTENDED(m) * (A @ u) for m, A in zip(mu, A_ext))
                      for mu, u in zip(test, u_rb)])
        exact = (x_norms(riesz_X.solve(r), X_ext) / test.min(axis=1)).astype(float)
        assert np.all(np.abs(est[row] - exact) <= t["rounding"][row]), (N, np.abs(est[row] / exact - 1).max())

    # The same basis with the residual data formed in double loses the bound near the floor:
    # the test is able to fail.
    double = red.model_in_precision("double")
    t2 = error_table(double, red.V, ops.X, test, U, methods=("stable",))
    assert (t2["estimate_stable"] / t2["error"]).min() < 1.0
