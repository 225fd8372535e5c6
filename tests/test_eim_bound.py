"""The EIM share of the RB bound on nonaffine_diffusion: rigorous (Taylor grid bound over the
parameter box, carried through ||A - A_M||_{X->X'} <= max_e |kappa_e - kappa_M,e|) at every term
count M from 1 up, against exact FOM solutions; the next-point indicator is not a bound; the
matrix EIM's operator norms equal a dense generalized eigenvalue solve. Runtime ~15 s."""
from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg as sl
import scipy.sparse as sp

from rom.design import scale, unit_design
from rom.hifi.discretization import fem
from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems.nonaffine import NonaffineDiffusion
from rom.models.eim_rb import FunctionEIMCoefficients, operator_errors
from rom.models.evaluate import true_errors
from rom.models.rb import CoerciveRBReductor
from rom.reduction.eim import eim, residual_sup_norms, taylor_bound
from rom.reduction.linalg import RefinedSolver, gram_schmidt


@pytest.fixture(autouse=True)
def one_blas_thread():
    # Small dense problems: threaded BLAS only adds overhead (the caller sets thread limits).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def setting():
    p = NonaffineDiffusion(16)
    pattern = fem.Pattern.build(p.mesh)
    ops = Operators.from_dataset(operators_dataset(p))
    box = p.default_bounds
    mu = scale(unit_design("lhs", 128, 3, 5), box, ["uniform"] * 3)
    E = eim(p.g(p.mesh.centroids, mu), 16, 1e-10)
    T = taylor_bound(E, box[1:, 0], box[1:, 1], 21, 5, lambda s, a: p.g_derivative(p.mesh.centroids, s, a),
                     p.g_derivative_bound(5))

    def csr(values):
        return sp.csr_matrix((values, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2)

    return p, pattern, ops, box, mu, E, T, csr


def test_taylor_bound_holds_between_the_grid_points(setting):
    p, _, _, box, _, E, T, _ = setting
    # 4000 random parameters, none of them a grid or training point.
    test = scale(unit_design("random", 4000, 3, 17), box, ["uniform"] * 3)
    err = residual_sup_norms(E, p.g(p.mesh.centroids, test)).max(axis=1)
    assert np.all(T.bound >= err), (T.bound / err).min()
    # Sharp where the EIM converges: within a factor 10 of the sampled sup for M >= 4.
    assert np.all(T.bound[4:] <= 10 * err[4:]), (T.bound / err)[4:].max()


def test_rigorous_eim_share_bounds_the_error_at_every_term_count(setting):
    p, pattern, ops, box, mu, E, T, csr = setting
    f = p.rhs_terms(pattern)
    test = scale(unit_design("random", 50, 3, 9), box, ["uniform"] * 3)
    # Exact references: the true non-affine operator, refined in extended precision.
    U = np.array([RefinedSolver(csr(p.operator_values(m, pattern))).solve(f[0]) for m in test])
    # One RB basis for all M, rich enough (20 snapshots) that the EIM error dominates at small M.
    snaps = scale(unit_design("lhs", 20, 3, 23), box, ["uniform"] * 3)
    V = gram_schmidt(np.array([RefinedSolver(csr(p.operator_values(m, pattern))).solve_double(f[0]) for m in snaps]),
                     ops.X)
    eff = {"rigorous": [], "indicator": []}
    for M in range(1, E.M + 1):  # every term count, each a small model
        Em = E.truncated(M)
        xy = p.mesh.centroids[np.append(Em.points, Em.next_point)]
        terms = [csr(v) for v in p.eim_operator_terms(pattern, Em.basis)]
        red = CoerciveRBReductor(ops.X, terms, f, FunctionEIMCoefficients(p, xy, Em.B, Em.next_row, "indicator"),
                                 box, p.parameter_names)
        red.set_basis(V)
        for bound in eff:
            coef = FunctionEIMCoefficients(p, xy, Em.B, Em.next_row, bound, T.bound[M])
            model = replace(red.model(), coefficients=coef)
            c, delta = model.solve_and_estimate_batch(test)
            eff[bound].append(delta / true_errors(U, c, red.V, ops.X))
    rigorous, indicator = np.array(eff["rigorous"]), np.array(eff["indicator"])
    assert rigorous.min() >= 1.0, rigorous.min(axis=1)
    # The next-point indicator underestimates at some term counts: it is not a bound.
    assert indicator.min() < 1.0, indicator.min(axis=1)


def test_matrix_eim_operator_errors_equal_a_dense_eigensolve(setting):
    p, pattern, ops, _, mu, _, _, csr = setting
    A = np.stack([p.operator_values(m, pattern) for m in mu[:24]])
    Em = eim(A, 8, 0.0)
    op = operator_errors(Em, A, csr, ops.X)
    D = A - Em.interpolate(A[:, Em.points])
    X = ops.X.toarray()
    dense = np.array([np.abs(sl.eigh(csr(d).toarray(), X, eigvals_only=True)).max() for d in D])
    # ARPACK at tol 1e-10 against LAPACK: relative agreement to the solver tolerance.
    np.testing.assert_allclose(op, dense, rtol=1e-9)
    # The matrix EIM is A_M = sum_l gamma_l A(mu_l) with gamma = beta C, i.e. the conductivity
    # kappa_M = sum_l gamma_l kappa(mu_l) per element; the element-wise Cauchy-Schwarz bound
    # max_e |kappa_e - kappa_M,e| (which a black box cannot state) is an upper reference.
    kappa = np.array([p.kappa(m) for m in mu[:24]])
    gamma = Em.coefficients(A[:, Em.points]) @ Em.snapshot_coeffs
    kappa_err = np.abs(kappa - gamma @ kappa[Em.selected]).max(axis=1)
    # (At the selected matrices both are rounding noise, ~1e-15: compared elsewhere only.)
    rest = np.setdiff1d(np.arange(len(op)), Em.selected)
    assert np.all(op[rest] <= kappa_err[rest] * (1 + 1e-9)), (op / kappa_err)[rest].max()
    assert np.all(op[rest] >= 0.05 * kappa_err[rest]), (op / kappa_err)[rest].min()
