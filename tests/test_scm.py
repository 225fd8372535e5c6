"""SCM: certified coercivity lower bounds against independent references (LAPACK dense solves, spectrum
slicing with PETSc's own sparse Cholesky inertia, the closed form of the thermal block), and the RB
error bound certified by SCM where min-theta does not apply.

Runtime about 20 s on 2 cores (two SCM greedies at 3969 dofs, two RB greedies with PETSc solves)."""
import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from rom.hifi import capabilities as cap
from rom.hifi.discretization import fem
from rom.hifi.discretization.mesh import unit_square
from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import Problem, ThermalBlock
from rom.hifi.solvers import petsc
from rom.hifi.solvers.solve import FullOrderModel
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.greedy import weak_greedy
from rom.reduction.scm import (
    InnerProduct,
    NotCoerciveError,
    SCMBounds,
    SCMCoefficients,
    scm_greedy,
    smallest_eigenvalue,
)


class AnisotropicReaction(Problem):
    """-div(T(mu) grad u) + mu_3 u = 1, u = 0 on the boundary, T = [[mu_0, mu_2], [mu_2, mu_1]]:
    A(mu) = mu_0 K_xx + mu_1 K_yy + mu_2 (K_xy + K_yx) + mu_3 M. With X the H1-seminorm product,
    X is not a positive combination of the terms (K_xy is indefinite, the reaction may be negative),
    so min-theta gives no bound; alpha(mu) is near lambda_min(T(mu)) and comes from SCM."""

    name = "anisotropic_reaction"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE})

    def __init__(self, mesh_n=64):
        super().__init__(unit_square(mesh_n))

    @property
    def parameter_names(self):
        return ["kxx", "kyy", "kxy", "reaction"]

    @property
    def default_bounds(self):
        return np.array([[0.3, 1.0], [0.3, 1.0], [-0.2, 0.2], [-1.0, 1.0]])

    def element_terms(self):
        g, a = fem.p1_gradients(self.mesh), self.mesh.areas
        kxx = np.einsum("e,ei,ej->eij", a, g[..., 0], g[..., 0])
        kyy = np.einsum("e,ei,ej->eij", a, g[..., 1], g[..., 1])
        kxy = np.einsum("e,ei,ej->eij", a, g[..., 0], g[..., 1])
        return [kxx, kyy, kxy + kxy.transpose(0, 2, 1), fem.mass_local(self.mesh)]

    def operator_terms(self, pattern):
        return np.stack([pattern.assemble(local) for local in self.element_terms()])

    def theta(self, mu):
        return np.asarray(mu, dtype=float)

    def rhs_terms(self, pattern):
        return pattern.assemble_vector(self.mesh, fem.load_local(self.mesh, 1.0))[None, :]

    def phi(self, mu):
        return np.ones((len(mu), 1))


def draw(bounds, n, seed):
    lo, hi = np.asarray(bounds, dtype=float).T
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, len(lo)))


def exact_fom(problem):
    """PETSc with a direct solve (options set on the KSP: the options database is process-wide)."""
    fom = FullOrderModel(problem, "petsc")
    fom.solver.ksp.setType("preonly")
    fom.solver.ksp.getPC().setType("lu")
    return fom


def petsc_negative_eigenvalues(H: sp.spmatrix) -> int:
    """Negative eigenvalues of a symmetric matrix from PETSc's own sparse Cholesky (Sylvester's
    inertia): a reference independent of the SuperLU factorization SCM certifies with."""
    PETSc = petsc.init()
    H = sp.csr_matrix(H)
    A = PETSc.Mat().createAIJ(size=H.shape, csr=(H.indptr.astype(PETSc.IntType), H.indices.astype(PETSc.IntType), H.data),
                              comm=PETSc.COMM_SELF)
    A.assemble()
    A.setOption(PETSc.Mat.Option.SYMMETRIC, True)
    ksp = PETSc.KSP().create(comm=PETSc.COMM_SELF)
    ksp.setOperators(A)
    ksp.setType("preonly")
    pc = ksp.getPC()
    pc.setType("cholesky")
    pc.setFactorSolverType("petsc")
    ksp.setUp()
    neg, _, _ = pc.getFactorMatrix().getInertia()
    ksp.destroy()
    A.destroy()
    return int(neg)


def sliced_lambda_min(A, X, lo, hi, rtol=1e-4):
    """lambda_min(A, X) by spectrum slicing: bisection on the number of negative eigenvalues of
    A - s X (PETSc's Cholesky inertia) between a point lo with none and a point hi with some."""
    assert petsc_negative_eigenvalues(A - lo * X) == 0
    assert petsc_negative_eigenvalues(A - hi * X) > 0
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        if petsc_negative_eigenvalues(A - mid * X) == 0:
            lo = mid
        else:
            hi = mid
    return lo, hi


@pytest.fixture(scope="module")
def anisotropic():
    p = AnisotropicReaction(64)
    ops = Operators.from_dataset(operators_dataset(p))
    train = draw(p.default_bounds, 80, 1)
    scm, history = scm_greedy(ops.X, ops.A_terms, p.theta, train, tol=0.2, K_max=30)
    return p, ops, scm, history


@pytest.fixture(scope="module")
def thermal():
    p = ThermalBlock(64, (2, 2))
    ops = Operators.from_dataset(operators_dataset(p))
    train = draw(p.default_bounds, 80, 4)
    scm, history = scm_greedy(ops.X, ops.A_terms, p.theta, train, tol=0.2, K_max=30)
    return p, ops, scm, history


def test_certified_eigenvalue_holds_even_when_the_solver_has_not_converged():
    """(K, M) at 225 dofs against LAPACK's dense generalized solve: with a single LOBPCG iteration the
    Ritz value is far off, yet the inertia-certified bound stays below lambda_min."""
    m = unit_square(16)
    pattern = fem.Pattern.build(m)
    K = pattern.to_scipy(pattern.assemble(fem.stiffness_local(m)))
    M = pattern.to_scipy(pattern.assemble(fem.mass_local(m)))
    lams = sla.eigh(K.toarray(), M.toarray(), eigvals_only=True)
    lam = lams[0]
    rounding = len(lams) * np.finfo(float).eps * lams[-1]  # of the dense reference (backward stable)
    metric = InnerProduct(M)
    lam_M = sla.eigh(M.toarray(), eigvals_only=True, subset_by_index=[0, 0])[0]
    assert metric.lambda_min <= lam_M and metric.lambda_min >= lam_M * (1 - 2e-3)
    precond = spla.LinearOperator(K.shape, matvec=spla.splu(K.tocsc()).solve)
    good = smallest_eigenvalue(K, metric, precond, rtol=1e-3)
    assert good.lower <= lam <= good.ritz + rounding
    assert good.lower >= lam * (1 - 2e-3)
    crude = smallest_eigenvalue(K, metric, None, rtol=1e-3, maxiter=1, attempts=1)
    assert crude.ritz > lam * 1.01  # the solver is far from converged ...
    assert crude.lower <= lam       # ... and the bound is still certified


def test_scm_lower_bound_on_a_problem_without_min_theta(anisotropic):
    p, ops, scm, h = anisotropic
    assert h.stop_reason == "tolerance" and h.max_gap[-1] <= 0.2
    assert h.eigen_solves == 1 + 2 * 4 + scm.K and h.lps >= scm.K
    # The box holds the Rayleigh quotients: K_xx, K_yy in [0, 1], M in [0, 1 / lambda_1(K, M)].
    assert scm.box[0, 0] <= 0 <= 1 <= scm.box[0, 1] and scm.box[2, 0] < 0 < scm.box[2, 1]
    test = draw(p.default_bounds, 12, 2)
    lb, lb_lp, ub = scm.lower_bound(test), scm.lower_bound_lp(test), scm.upper_bound(test)
    assert np.all(lb_lp >= lb)
    for mu, low, low_lp, up in zip(test, lb, lb_lp, ub):
        A = ops.assemble(p.theta(mu[None])[0])
        # Independent of any eigen-solver: no eigenvalue of (A, X) below LB (PETSc's Cholesky of
        # A - LB X), at least one below UB (1 + 1e-8); then alpha to 1e-4 by bisection.
        a_lo, a_hi = sliced_lambda_min(A, ops.X, low_lp, up * (1 + 1e-8))
        # Tightness: within the training gap tolerance, with a margin for parameters between the
        # training points.
        assert low >= 0.5 * a_hi, (mu, low, a_hi)


def test_scm_lower_bound_against_a_dense_solve(rounding):
    """At 441 dofs every eigenvalue is in reach of LAPACK: LB <= alpha at 40 parameters. The
    greedy's verdict and every bound hold on the parameters as drawn and perturbed at rounding level."""
    p = AnisotropicReaction(22)
    ops = Operators.from_dataset(operators_dataset(p))
    scm, h = scm_greedy(ops.X, ops.A_terms, p.theta, rounding(draw(p.default_bounds, 60, 5)), tol=0.1)
    assert h.stop_reason == "tolerance" and h.max_gap[-1] <= 0.1
    assert h.eigen_solves == 1 + 2 * 4 + scm.K
    test = rounding(draw(p.default_bounds, 40, 6))
    Xd = ops.X.toarray()
    L = np.linalg.cholesky(Xd)
    Ct = [sla.solve_triangular(L, sla.solve_triangular(L, A.toarray(), lower=True).T, lower=True) for A in ops.A_terms]
    alpha = np.array([np.linalg.eigvalsh(sum(t * C for t, C in zip(th, Ct)))[0] for th in p.theta(test)])
    lb = scm.lower_bound(test)
    assert np.all(lb <= alpha), (lb - alpha).max()
    assert np.all(scm.upper_bound(test) >= alpha * (1 - 1e-12))
    assert np.all(lb >= 0.5 * alpha)


def test_scm_round_trips_through_its_dataset(anisotropic):
    p, ops, scm, _ = anisotropic
    back = SCMBounds.from_dataset(scm.to_dataset(), p.theta)
    test = draw(p.default_bounds, 50, 3)
    np.testing.assert_array_equal(back.lower_bound(test), scm.lower_bound(test))
    np.testing.assert_array_equal(back.upper_bound(test), scm.upper_bound(test))


def test_rb_bound_certified_by_scm(anisotropic):
    p, ops, scm, _ = anisotropic
    fom = exact_fom(p)
    coef = SCMCoefficients(AffineCoefficients(p), scm)
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, coef, p.default_bounds, p.parameter_names)
    h = weak_greedy(draw(p.default_bounds, 100, 7), lambda m: fom.solve(m).u, red, 1e-4, 25)
    assert h.max_estimate[-1] < 1e-4
    test = draw(p.default_bounds, 20, 8)
    U = np.array([fom.solve(m).u for m in test])
    model = red.model()
    for N in (max(1, red.N // 3), red.N):
        mN = model.truncated(N)
        c = mN.solve_batch(test)
        E = U - c @ red.V[:N]
        err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
        eff = mN.estimate_batch(test, c) / err
        assert eff.min() >= 1.0, eff.min()
        # alpha_LB within a factor 2 of alpha (previous test) and the residual's continuity ratio.
        assert eff.max() < 60, eff.max()


def test_thermal_block_scm_against_min_theta(thermal):
    """X = sum_q A_q and block-supported functions give alpha(mu) = min_q mu_q exactly (= min-theta):
    SCM stays below it, within its tolerance on the training set, and its RB bound is certified."""
    p, ops, scm, h = thermal
    assert h.stop_reason == "tolerance"
    np.testing.assert_allclose(scm.box, np.tile([0.0, 1.0], (4, 1)), atol=2e-3)
    test = draw(p.default_bounds, 200, 9)
    alpha = test.min(axis=1)
    lb = scm.lower_bound(test)
    assert np.all(lb <= alpha)
    assert np.all(lb >= 0.5 * alpha)
    fom = exact_fom(p)
    base = AffineCoefficients(p, np.ones(4))
    reds = {name: CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, co, p.default_bounds)
            for name, co in (("min_theta", base), ("scm", SCMCoefficients(base, scm)))}
    mu_train = draw(p.default_bounds, 100, 10)
    weak_greedy(mu_train, lambda m: fom.solve(m).u, reds["min_theta"], 1e-3, 20)
    reds["scm"].set_basis(reds["min_theta"].V)
    U = np.array([fom.solve(m).u for m in test[:20]])
    eff = {}
    for name, red in reds.items():
        m = red.model()
        c = m.solve_batch(test[:20])
        E = U - c @ red.V
        err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
        eff[name] = m.estimate_batch(test[:20], c) / err
    assert eff["scm"].min() >= eff["min_theta"].min() >= 1.0
    # Same residuals, alpha_LB ratio min-theta / SCM = alpha / LB in [1, 2].
    ratio = eff["scm"] / eff["min_theta"]
    assert np.all(ratio >= 1.0 - 1e-12) and np.all(ratio <= 2.0)


def test_not_coercive_parameter_is_refused():
    p = AnisotropicReaction(16)
    ops = Operators.from_dataset(operators_dataset(p))
    bad = np.array([[0.3, 0.3, 0.5, 0.0]])  # mu_2^2 > mu_0 mu_1: T(mu) indefinite
    with pytest.raises(NotCoerciveError, match=r"not coercive at training parameter 0, mu = \[0.3, 0.3, 0.5, 0.0\]"):
        scm_greedy(ops.X, ops.A_terms, p.theta, bad)
    with pytest.raises(ValueError, match=r"expected \(1, 4\)"):
        scm_greedy(ops.X, ops.A_terms, lambda mu: mu[:, :3], bad)
