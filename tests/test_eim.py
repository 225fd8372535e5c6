"""Function EIM and nonintrusive matrix EIM on nonaffine_diffusion, and the RB models built on them."""
import numpy as np
import pytest
import scipy.sparse as sp

from rom.design import scale, unit_design
from rom.hifi.discretization import fem
from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems.nonaffine import NonaffineDiffusion
from rom.models.eim_rb import FunctionEIMCoefficients, MatrixEIMCoefficients, operator_errors
from rom.models.rb import CoerciveRBReductor
from rom.reduction.eim import eim, lebesgue_constants, taylor_bound
from rom.reduction.greedy import weak_greedy

EPS = np.finfo(float).eps


def rounding_floor(E, scale):
    """Rounding allowance of an M-term interpolation evaluated in two different orders (the greedy's
    rank-one updates vs beta = B^{-1} g(x_magic) then beta @ q): each of the M update or solve
    steps errs by ~2 eps max|r| with |r| <= (1 + Lambda_M) max|g| (Lambda_M the Lebesgue
    constant), so the two results differ by at most 4 (M + 1) eps (1 + Lambda_M) max|g|."""
    return 4 * (E.M + 1) * EPS * (1 + lebesgue_constants(E)[E.M]) * scale


@pytest.fixture(scope="module")
def setting():
    p = NonaffineDiffusion(12)
    mu = scale(unit_design("lhs", 128, 3, 5), p.default_bounds, ["uniform"] * 3)
    return p, mu, fem.Pattern.build(p.mesh)


def test_function_eim_interpolates_its_training_functions(setting, rounding):
    """Every claim holds on the training parameters as drawn and perturbed at rounding level (the
    greedy's picks may change where two candidates tie; the bounds below must not)."""
    p, mu, _ = setting
    G = p.g(p.mesh.centroids, rounding(mu))
    E = eim(G, 40, 1e-6)
    assert 5 < E.M < 40 and E.max_errors[E.M] <= 1e-6 * np.abs(G).max()
    I = E.interpolate(G[:, E.points])
    floor = rounding_floor(E, np.abs(G).max())
    # Exact at the magic points for every training function ...
    assert np.abs(I[:, E.points] - G[:, E.points]).max() <= floor
    # ... and everywhere for the functions the greedy selected (they lie in the span).
    assert np.abs(I[E.selected] - G[E.selected]).max() <= floor
    # Max training error: non-increasing in the number of terms, and the recorded history is true
    # (the recorded maximum came from the greedy's updates: equal to the rounding floor).
    assert np.all(np.diff(E.max_errors) <= 0), E.max_errors
    assert abs(np.abs(I - G).max() - E.max_errors[E.M]) <= floor
    # B is unit lower triangular; truncations are nested EIMs.
    np.testing.assert_allclose(np.triu(E.B, 1), 0, atol=1e-15)
    np.testing.assert_allclose(np.diag(E.B), 1)
    E5 = E.truncated(5)
    assert abs(np.abs(E5.interpolate(G[:, E5.points]) - G).max() - E.max_errors[5]) <= rounding_floor(E5, 1.0)


def test_matrix_eim_reproduces_the_delivered_matrices(setting, rounding):
    p, mu, pattern = setting
    mu = rounding(mu)
    A = np.stack([p.operator_values(m, pattern) for m in mu])
    E = eim(A, 30, 1e-8)
    slots = np.append(E.points, E.next_point)
    probe = p.entry_probe(pattern, slots)
    # The probe gives exactly the entries of the assembled matrix, from a few elements only: the
    # same <= 6 element contributions summed in another order (at most 6 u max|A| apart).
    scale_A = np.abs(A).max()
    np.testing.assert_allclose(probe(mu), A[:, slots], rtol=0, atol=3 * EPS * scale_A)
    assert probe.S.shape[1] <= 6 * len(slots)
    # q_m = sum_l C[m, l] A(mu_l): the basis is built from the delivered matrices alone. Row m of
    # both sides carries the rounding of the m-th residual, ~2 m eps (1 + Lambda) max|A|, divided
    # by its pivot max_errors[m - 1] (q_m = r / r(x_m)), plus that of the product |C| |A_l|.
    m = np.arange(1, E.M + 1)
    lam = lebesgue_constants(E)[E.M]
    tol = 4 * m * EPS * ((1 + lam) * scale_A / E.max_errors[: E.M]
                         + (np.abs(E.snapshot_coeffs) @ np.abs(A[E.selected])).max(axis=1))
    assert np.all(np.abs(E.snapshot_coeffs @ A[E.selected] - E.basis).max(axis=1) <= tol)
    # A(mu_m) is reproduced exactly from its M magic entries (to the rounding floor) ...
    floor = rounding_floor(E, scale_A)
    beta = E.coefficients(probe(mu[E.selected])[:, : E.M])
    assert np.abs(beta @ E.basis - A[E.selected]).max() <= floor
    # ... and every training matrix to the EIM tolerance: the recorded max, recomputed in another
    # order (a different BLAS kernel or thread count moves it by ~1e-14 here), to the floor.
    beta_all = E.coefficients(probe(mu)[:, : E.M])
    assert np.abs(beta_all @ E.basis - A).max() <= E.max_errors[E.M] + floor


def test_function_and_matrix_eim_give_the_same_rb_accuracy(setting, rounding):
    from rom.hifi.solvers.solve import FullOrderModel

    p, mu, pattern = setting
    mu = rounding(mu)
    ops = Operators.from_dataset(operators_dataset(p))
    fom = FullOrderModel(p, "petsc")
    fom.solver.ksp.setType("preonly")
    fom.solver.ksp.getPC().setType("lu")

    def csr(values):
        return sp.csr_matrix((values, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2)

    f = p.rhs_terms(pattern)
    Ef = eim(p.g(p.mesh.centroids, mu), 40, 1e-7)
    xy = p.mesh.centroids[np.append(Ef.points, Ef.next_point)]
    lo, hi = p.default_bounds[1:, 0], p.default_bounds[1:, 1]
    T = taylor_bound(Ef, lo, hi, 21, 5, lambda s, a: p.g_derivative(p.mesh.centroids, s, a), p.g_derivative_bound(5))
    coef_f = FunctionEIMCoefficients(p, xy, Ef.B, Ef.next_row, "rigorous", T.bound[Ef.M])
    red_f = CoerciveRBReductor(ops.X, [csr(v) for v in p.eim_operator_terms(pattern, Ef.basis)], f, coef_f,
                               p.default_bounds, p.parameter_names)
    h = weak_greedy(mu, lambda m: fom.solve(m).u, red_f, 1e-4, 20)
    assert red_f.N >= 5 and h.max_estimate[-1] < h.max_estimate[0]

    A = np.stack([p.operator_values(m, pattern) for m in mu])
    Em = eim(A, 40, 1e-7)
    slots = np.append(Em.points, Em.next_point)
    op = operator_errors(Em, A, csr, ops.X)
    coef_m = MatrixEIMCoefficients(p, p.entry_probe(pattern, slots), Em.B, Em.next_row, ops.X.data[slots[-1]],
                                   "training_sup", op.max())
    red_m = CoerciveRBReductor(ops.X, [csr(v) for v in Em.basis], f, coef_m, p.default_bounds, p.parameter_names)
    red_m.set_basis(red_f.V)
    assert red_m.reorthonormalizations == 0

    test = scale(unit_design("random", 10, 3, 9), p.default_bounds, ["uniform"] * 3)
    U = np.array([fom.solve(m).u for m in test])
    norms = np.sqrt(np.einsum("ij,ij->i", U, (ops.X @ U.T).T))
    rel = {}
    for name, red in (("function", red_f), ("matrix", red_m)):
        model = red.model()
        c, delta = model.solve_and_estimate_batch(test)
        E = U - c @ red.V
        err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
        rel[name] = err / norms
        # The estimate includes the EIM part (function: rigorous over the box; matrix: the largest
        # operator error at the training matrices): it bounds the true error.
        assert np.all(delta >= err), (name, delta / err)
    assert rel["function"].max() < 1e-3
    # Same accuracy without touching the assembly: errors agree to a few percent.
    np.testing.assert_allclose(rel["matrix"], rel["function"], rtol=0.05)
