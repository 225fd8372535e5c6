"""Coefficients of reduced-basis models whose operator is made affine by empirical interpolation.

* FunctionEIMCoefficients: EIM of the coefficient function g(x; mu) at magic points (intrusive:
  the operator terms A_m are assembled from the collateral basis).
* MatrixEIMCoefficients: nonintrusive matrix EIM, A(mu) ~ sum_m beta_m q_m with q_m combinations
  of matrices A(mu_l) delivered by the full-order model and beta from M entries of A(mu).
* BlackBoxEIMCoefficients: the same for A(mu) and f(mu) of a black box with an entries mode
  (rom.hifi.problems.external_eim); its coercivity lower bound comes from SCM of the EIM-affine
  operator A_M (rom.reduction.scm.SCMCoefficients subtracts op_error), and `rhs_error(mu)`, the load's
  share ||f(mu) - f_M(mu)||_{X'}, enters the RB bound besides op_error:

      Delta(mu) = (||f_M - A_M V^T c||_{X'} + op_error ||c|| + rhs_error) / (alpha_LB^SCM(A_M) - op_error).

  What is rigorous: the residual of the EIM-affine model and SCM's alpha_LB of A_M (for every mu in
  the box; a certified eigen-solve where SCM's is not positive). What is measured: op_error and
  rhs_error are the largest errors computed at the EIM's training and test parameters (a generalized
  eigenvalue problem to ARPACK's relative 1e-10 and a dual norm, 'training_sup'): an estimate of the
  sup over the box, not a bound of it, so the bound as a whole is an estimate away from those points.

Both supply theta(mu), phi(mu), alpha_lb(mu) and op_error(mu), a bound or estimate of the operator
error ||A(mu) - A_M(mu)||_{X -> X'} that the RB bound carries times ||u_rb||_X. Its kind is the
attribute `bound`:

* 'rigorous' (function EIM, default): A - A_M = sum_e (kappa_e - kappa_M,e) K_e with X = sum_e K_e
  and every K_e positive semidefinite, so by Cauchy-Schwarz on each element
  ||A - A_M||_{X -> X'} <= max_e |kappa_e - kappa_M,e| = |mu_0| ||g(mu) - I_M g(mu)||_inf, and
  sup over the parameter box of ||g - I_M g||_inf is bounded by eim.taylor_bound (a grid, Taylor's
  theorem with the problem's analytic derivative bound, and the Lebesgue constant). Rigorous for
  every mu in the box, assuming the problem's derivative bound and exact assembly (the matrices'
  own rounding, ~eps |K|, is not included).
* 'training_sup' (matrix EIM, default): max over the EIM training and test matrices of the operator
  norm ||A(mu_i) - A_M(mu_i)||_{X -> X'} (a symmetric generalized eigenvalue problem with X, offline,
  to ARPACK's relative 1e-10). A black-box operator states no derivative in mu, so this is an
  estimate of the sup over the box (reported as such), exact to that tolerance at those matrices.
* 'indicator': the interpolation error at the next magic point, |mu_0| |g - g_M|(x_{M+1}) or the
  entry error at the next magic entry divided by the X entry there: an estimate that assumes the
  EIM error is dominated by its next term (measured effectivities down to 0.03).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import solve_triangular

BOUNDS = ("rigorous", "training_sup", "indicator")


def _beta(B, values):
    return solve_triangular(B, values.T, lower=True, unit_diagonal=True, check_finite=False).T


def _next_term(values, B, next_row, scale) -> np.ndarray:
    """The indicator: scale times the interpolation error at the entry after the M magic ones (values
    (n, M + 1)), or 0 where the EIM had no further entry (values (n, M))."""
    M = len(B)
    if values.shape[1] == M:
        return np.zeros(len(values))
    return scale * np.abs(values[:, M] - _beta(B, values[:, :M]) @ next_row)


def _check_bound(bound, value, what):
    if bound not in BOUNDS:
        raise ValueError(f"EIM bound = {bound!r}: expected one of {', '.join(BOUNDS)}")
    if bound != "indicator" and not np.isfinite(value):
        raise ValueError(f"EIM bound {bound!r} needs {what} (a finite number); got {value}")


@dataclass
class FunctionEIMCoefficients:
    problem: object        # NonaffineDiffusion-like: g, eim_theta, phi, coercivity_lower_bound, kappa_scale
    xy: np.ndarray         # (M + 1, 2) magic points, the last one the error indicator's
    B: np.ndarray          # (M, M) interpolation matrix
    next_row: np.ndarray   # (M,) q_m at the indicator point
    bound: str = "rigorous"
    g_error: float = np.nan  # sup over the box of ||g - I_M g||_inf (eim.taylor_bound), for 'rigorous'
    rhs_error = None         # the problem's load is affine: exact

    def __post_init__(self):
        _check_bound(self.bound, self.g_error, "g_error = sup_mu ||g - I_M g||_inf (rom.reduction.eim.taylor_bound)")
        if self.bound == "training_sup":
            raise ValueError("EIM bound 'training_sup' is the matrix EIM's; expected 'rigorous' or 'indicator'")

    def _split(self, mu):
        vals = self.problem.g(self.xy, mu)
        M = len(self.B)
        return _beta(self.B, vals[:, :M]), vals[:, M:]

    def theta(self, mu):
        return self.problem.eim_theta(mu, self._split(mu)[0])

    def phi(self, mu):
        return self.problem.phi(mu)

    def alpha_lb(self, mu):
        return self.problem.coercivity_lower_bound(mu)

    def op_error(self, mu):
        if self.bound == "rigorous":
            return self.problem.kappa_scale(mu) * self.g_error
        beta, nxt = self._split(mu)
        if nxt.shape[1] == 0:
            return np.zeros(len(beta))
        return self.problem.kappa_scale(mu) * np.abs(nxt[:, 0] - beta @ self.next_row)


@dataclass
class MatrixEIMCoefficients:
    problem: object        # only phi and coercivity_lower_bound are used: the operator is a black box
    probe: object          # mu (n, d) -> A(mu) at the M + 1 magic entries (n, M + 1)
    B: np.ndarray          # (M, M)
    next_row: np.ndarray   # (M,) q_m at the indicator entry
    x_next: float          # X at the indicator entry: scales an entry error to a coefficient error
    bound: str = "training_sup"
    op_norm: float = np.nan  # max_i ||A(mu_i) - A_M(mu_i)||_{X -> X'} over the training matrices
    rhs_error = None         # the problem's load is affine: exact

    def __post_init__(self):
        _check_bound(self.bound, self.op_norm, "op_norm = max_i ||A(mu_i) - A_M(mu_i)||_{X->X'} "
                     "(rom.models.eim_rb.operator_errors)")
        if self.bound == "rigorous":
            raise ValueError("EIM bound 'rigorous' needs an analytic coefficient; the matrix EIM offers "
                             "'training_sup' or 'indicator'")

    def theta(self, mu):
        return _beta(self.B, self.probe(mu)[:, : len(self.B)])

    def phi(self, mu):
        return self.problem.phi(mu)

    def alpha_lb(self, mu):
        return self.problem.coercivity_lower_bound(mu)

    def op_error(self, mu):
        a = self.probe(mu)
        if self.bound == "training_sup":
            return np.full(len(a), self.op_norm)
        return _next_term(a, self.B, self.next_row, 1.0 / abs(self.x_next))


@dataclass
class BlackBoxEIMCoefficients:
    """theta = beta_A(mu), phi = beta_f(mu) of a black box's matrix EIM of A and EIM of f, from one
    entries_command batch per query batch (positions: the M + 1 magic entries of each)."""

    problem: object        # capability operator_entries: entries(mu, rows, cols, f_rows) -> (A, f)
    rows: np.ndarray       # (M_A + 1,) or (M_A,): magic entries of A (node numbering), the indicator's last
    cols: np.ndarray
    f_rows: np.ndarray     # (M_f + 1,) or (M_f,): magic rows of f
    B: np.ndarray          # (M_A, M_A)
    B_f: np.ndarray        # (M_f, M_f)
    next_row: np.ndarray   # (M_A,) q_m at the indicator entry
    next_row_f: np.ndarray  # (M_f,) load basis at the indicator row
    x_next: float          # X at the indicator entry of A
    f_scale: float         # training max ||f - f_M||_{X'} / max |f - f_M|_inf: an entry error to a dual norm
    bound: str = "training_sup"
    op_norm: float = np.nan   # max_i ||A(mu_i) - A_M(mu_i)||_{X -> X'} over the training parameters
    rhs_norm: float = np.nan  # max_i ||f(mu_i) - f_M(mu_i)||_{X'} over the training parameters

    def __post_init__(self):
        if self.bound not in ("training_sup", "indicator"):
            raise ValueError(f"EIM bound = {self.bound!r}: a black box's EIM offers 'training_sup' or 'indicator'")
        if self.bound == "training_sup" and not (np.isfinite(self.op_norm) and np.isfinite(self.rhs_norm)):
            raise ValueError("EIM bound 'training_sup' needs the training maxima op_norm and rhs_norm (finite)")

    def _values(self, mu):
        return self.problem.entries(np.atleast_2d(mu), self.rows, self.cols, self.f_rows)

    def theta(self, mu):
        return _beta(self.B, self._values(mu)[0][:, : len(self.B)])

    def phi(self, mu):
        return _beta(self.B_f, self._values(mu)[1][:, : len(self.B_f)])

    def alpha_lb(self, mu):
        """No coercivity bound of its own: 0 (SCM of the EIM-affine operator supplies it)."""
        return np.zeros(len(np.atleast_2d(mu)))

    def op_error(self, mu):
        a = self._values(mu)[0]
        if self.bound == "training_sup":
            return np.full(len(a), self.op_norm)
        return _next_term(a, self.B, self.next_row, 1.0 / abs(self.x_next))

    def rhs_error(self, mu):
        f = self._values(mu)[1]
        if self.bound == "training_sup":
            return np.full(len(f), self.rhs_norm)
        return _next_term(f, self.B_f, self.next_row_f, self.f_scale)


def operator_errors(E, A: np.ndarray, csr, X: sp.spmatrix, tol: float = 1e-10) -> np.ndarray:
    """||A_i - I_M A_i||_{X -> X'} for the rows A_i (n, nnz) of CSR values of symmetric matrices
    and the matrix EIM E: the largest |lambda| of (A_i - A_M,i) v = lambda X v (Lanczos with one
    factorization of X; ARPACK to relative accuracy tol, so the value is exact to tol, not a bound
    from above by construction). csr(values) builds a matrix on the pattern."""
    lu = spla.splu(sp.csc_matrix(X))
    Minv = spla.LinearOperator(X.shape, matvec=lu.solve, dtype=float)
    D = A - E.interpolate(A[:, E.points])
    out = np.empty(len(A))
    for i, d in enumerate(D):  # one small eigenvalue problem per training matrix
        Ei = csr(d)
        if not np.any(d):
            out[i] = 0.0
            continue
        lam = spla.eigsh(Ei, k=1, M=sp.csr_matrix(X), Minv=Minv, which="LM", tol=tol,
                         return_eigenvectors=False, v0=np.ones(X.shape[0]))
        out[i] = abs(lam[0])
    return out
