"""Empirical interpolation (EIM) of parametrized functions or matrices given by their samples.

Each row of `G` (n_train, n_points) is one function g(.; mu_i) sampled at the points (element
centroids for a coefficient, CSR slots for a matrix). The greedy picks the worst approximated
training function, its "magic point" (where its residual is largest), and the collateral basis
function q_m = residual / residual(x_m). Online, beta(mu) solves the lower-triangular system
B beta = g(x_magic; mu) with B[l, m] = q_m(x_l).

For the nonintrusive matrix EIM the same greedy runs on the entries of A(mu_i); `snapshot_coeffs`
C expresses q_m = sum_l C[m, l] A(mu_l) through the selected training matrices, so
A(mu) ~ sum_m beta_m q_m = sum_l (C^T beta)_l A(mu_l) needs only the delivered matrices A(mu_l)
and the M entries A(mu)[k_m].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular

from .linalg import unit_lower_solve


@dataclass
class EIMBasis:
    """EIM with M terms, plus one more magic point (`next_point`) whose interpolation error
    serves as an online indicator of the M-term error."""

    basis: np.ndarray           # (M, n_points) collateral basis q_m (rows)
    points: np.ndarray          # (M,) magic point indices
    selected: np.ndarray        # (M,) training indices whose residual gave q_m
    snapshot_coeffs: np.ndarray  # (M, M) q_m = sum_l C[m, l] g(.; mu_selected[l])
    max_errors: np.ndarray      # (M_total + 1,) max training error with 0, 1, .. M_total terms
    next_point: int = -1        # magic point M + 1 (-1 when the greedy ran out of training data)
    next_row: np.ndarray | None = None  # (M,) q_m at next_point

    @property
    def M(self) -> int:
        return len(self.points)

    @property
    def B(self) -> np.ndarray:
        """Interpolation matrix B[l, m] = q_m(x_l): lower triangular with unit diagonal."""
        return self.basis[:, self.points].T

    def coefficients(self, values: np.ndarray) -> np.ndarray:
        """beta (n, M) from the values g(x_magic; mu) (n, M) of a batch of functions."""
        values = np.atleast_2d(values)
        return solve_triangular(self.B, values.T, lower=True, unit_diagonal=True, check_finite=False).T

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """The interpolants sum_m beta_m q_m (n, n_points)."""
        return self.coefficients(values) @ self.basis

    def truncated(self, M: int) -> EIMBasis:
        """The first M terms (EIM is nested), with term M + 1 as the error indicator."""
        if not 0 <= M <= self.M:
            raise ValueError(f"M = {M}: expected 0..{self.M}")
        nxt = int(self.points[M]) if M < self.M else self.next_point
        row = self.basis[:M, nxt] if nxt >= 0 else None
        return EIMBasis(self.basis[:M], self.points[:M], self.selected[:M], self.snapshot_coeffs[:M, :M],
                        self.max_errors, nxt, row)


def eim(G: np.ndarray, max_modes: int, tol: float = 0.0) -> EIMBasis:
    """Greedy EIM of the rows of G; stops when the max training error (in the max norm) falls
    below tol * max|G| or at max_modes terms. The last selected point beyond M is kept as the indicator.
    Vectorized: one rank-one update of all training residuals per term. Works in the dtype of G
    (float64, or long double for the extended-precision estimator of eim_estimator)."""
    G = np.asarray(G)
    G = G.astype(np.float64) if G.dtype not in (np.float64, np.longdouble) else G
    n_train, n_points = G.shape
    scale = np.abs(G).max() if G.size else 0.0
    r = G.copy()
    basis, points, selected, errors = [], [], [], []
    C = np.zeros((0, 0), dtype=G.dtype)
    B = np.zeros((0, 0), dtype=G.dtype)  # B[l, m] = q_m(x_l), grown by one row and column per term
    for m in range(min(max_modes, n_train, n_points) + 1):
        err = np.abs(r).max(axis=1)
        i = int(np.argmax(err))
        errors.append(float(err[i]))
        j = int(np.argmax(np.abs(r[i])))
        if m == max_modes or err[i] <= tol * scale or err[i] == 0.0:
            next_point = j if err[i] > 0 else -1
            break
        q = r[i] / r[i, j]
        # q_m in terms of the selected training functions: r_i = g_i - sum_l b_l q_l.
        b = unit_lower_solve(B, G[i, points]) if basis else np.zeros(0, dtype=G.dtype)
        row = np.zeros(m + 1, dtype=G.dtype)
        row[m] = 1.0
        row[:m] -= b @ C if m else 0.0
        C = np.pad(C, ((0, 1), (0, 1)))
        C[m] = row / r[i, j]
        B = np.pad(B, ((0, 1), (0, 1)))
        B[m, :m] = [qk[j] for qk in basis]
        B[m, m] = 1.0
        r -= np.outer(r[:, j], q)
        basis.append(q)
        points.append(j)
        selected.append(i)
    else:
        next_point = -1
    M = len(points)
    basis_arr = np.array(basis, dtype=G.dtype).reshape(M, n_points)
    out = EIMBasis(basis_arr, np.array(points, dtype=np.int64), np.array(selected, dtype=np.int64), C,
                   np.array(errors), next_point, basis_arr[:, next_point] if next_point >= 0 else None)
    return out


# -- a posteriori bounds of the interpolation error ------------------------------------------------
def residual_sup_norms(E: EIMBasis, H: np.ndarray) -> np.ndarray:
    """||h - I_m h||_inf (max over the points) for every row h of H (n, n_points) and every
    m = 0..M: shape (M + 1, n). Nested: I_m h = I_{m-1} h + (h - I_{m-1} h)(x_m) q_m, since q_m
    vanishes at the earlier magic points; one rank-one update of all rows per term."""
    r = np.array(H, dtype=float)
    out = np.empty((E.M + 1, len(r)))
    out[0] = np.abs(r).max(axis=1)
    for m in range(E.M):
        r -= np.outer(r[:, E.points[m]], E.basis[m])
        out[m + 1] = np.abs(r).max(axis=1)
    return out


def lebesgue_constants(E: EIMBasis) -> np.ndarray:
    """Lambda_m = max_x sum_l |ell_l(x)| of the m-term interpolation (cardinal functions
    ell = q^T B^{-T}), m = 0..M: ||I_m h||_inf <= Lambda_m ||h||_inf."""
    out = np.zeros(E.M + 1)
    for m in range(1, E.M + 1):  # a loop over the number of terms only
        Bm = E.basis[:m, E.points[:m]].T
        ell = solve_triangular(Bm, E.basis[:m], lower=True, unit_diagonal=True, trans="T")
        out[m] = np.abs(ell).sum(axis=0).max()
    return out


def multi_indices(d: int, below: int) -> list[tuple[int, ...]]:
    """All multi-indices alpha in N^d with |alpha| < below, by increasing order."""
    out = [()]
    for _ in range(d):
        out = [a + (k,) for a in out for k in range(below)]
    return sorted((a for a in out if sum(a) < below), key=lambda a: (sum(a), a))


@dataclass
class TaylorBound:
    """Uniform bound over a parameter box of the EIM error sup_mu ||g(mu) - I_m g(mu)||_inf, m = 0..M.

    Every mu in the box has a point s of the tensor grid with |mu_i - s_i| <= delta_i (half the
    spacing). Taylor's theorem in mu around s to order p, with (I - I_m) linear and acting on x only:

        ||(I - I_m) g(mu)||_inf <= sum_{|alpha| < p} ||(I - I_m) d^alpha g(s)||_inf delta^alpha / alpha!
                                   + (1 + Lambda_m) C_p |delta|_2^p / p!

    with C_p >= sup |D^p g[u, .., u]| over unit directions u, points x and the box (the problem
    states it analytically). The max over the grid of the first sum plus the remainder bounds the
    error for every mu in the box; the computed norms carry a rounding allowance of
    (1 + Lambda_m)(m + 1) eps max|g|."""

    bound: np.ndarray        # (M + 1,) the uniform bound
    taylor: np.ndarray       # (M + 1,) max over the grid of the Taylor sum (the "training sup" part)
    remainder: np.ndarray    # (M + 1,) (1 + Lambda_m) C_p |delta|^p / p!
    lebesgue: np.ndarray     # (M + 1,)
    grid: int
    order: int


def taylor_bound(E: EIMBasis, lo: np.ndarray, hi: np.ndarray, grid: int, order: int, derivative,
                 derivative_bound: float, chunk: int = 256) -> TaylorBound:
    """TaylorBound of the EIM E for functions g(.; mu) with mu in the box [lo, hi] (the parameters
    g depends on). derivative(s, alpha) -> d^alpha g at the points for grid parameters s (k, d),
    shape (k, n_points); derivative_bound: C_p for p = order. Chunked over the grid."""
    from math import factorial

    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    if grid < 2 or order < 1:
        raise ValueError(f"grid = {grid}, order = {order}: expected grid >= 2 and order >= 1")
    axes = [np.linspace(a, b, grid) for a, b in zip(lo, hi)]
    S = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(lo), -1).T
    delta = (hi - lo) / (2 * (grid - 1))
    alphas = multi_indices(len(lo), order)
    weights = np.array([np.prod(delta ** np.array(a)) / np.prod([factorial(k) for k in a]) for a in alphas])
    taylor = np.zeros(E.M + 1)
    g_max = 0.0
    for start in range(0, len(S), chunk):  # chunks of grid points, each vectorized over points and terms
        s = S[start: start + chunk]
        H = np.concatenate([derivative(s, a) for a in alphas])       # (len(alphas) * k, n_points)
        g_max = max(g_max, float(np.abs(H[: len(s)]).max()))
        norms = residual_sup_norms(E, H).reshape(E.M + 1, len(alphas), len(s))
        taylor = np.maximum(taylor, np.einsum("a,mak->mk", weights, norms).max(axis=1))
    lam = lebesgue_constants(E)
    remainder = (1 + lam) * derivative_bound * float(np.linalg.norm(delta)) ** order / factorial(order)
    rounding = (1 + lam) * (np.arange(E.M + 1) + 1) * np.finfo(float).eps * g_max
    return TaylorBound(taylor + remainder + rounding, taylor, remainder, lam, grid, order)
