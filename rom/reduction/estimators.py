"""Residual dual norms for reduced-basis error estimators: offline data in extended precision,
online evaluation in double.

For an RB solution u_rb = sum_n c_n v_n of A(mu) u = f(mu), with A(mu) = sum_q theta_q A_q and
f(mu) = sum_p phi_p f_p, the residual is r(mu) = sum_k w_k(mu) g_k with the coefficient vector

    w(mu) = [phi_1 .. phi_P, -c_1 theta_1 .. -c_1 theta_Q, -c_2 theta_1, ..]   (length K = P + N Q)

and the residual terms g_k = f_p, A_q v_n. Their Riesz representers z_k = X^{-1} g_k give
||r||_{X'} = ||sum_k w_k z_k||_X.

* textbook: ||r||^2 = w^T G w with the Gram matrix G = Z X Z^T. The sum cancels: its absolute
  rounding error is ~eps * ||w||^2 ||G||, so relative accuracy is lost once ||r|| falls below
  ~sqrt(eps) times the size of the terms, and the square may even come out negative (NaN here).
* stable: orthonormalize the representers in X, Z^T = W^T R (W rows X-orthonormal, R upper
  triangular), so that ||r||_{X'} = ||R w||_2: a plain 2-norm of a short vector.

Why the offline data are formed in extended precision (docs/reduced_basis.md, "round-off floor"):
the stable evaluation is only as accurate as R, and R is only as accurate as the representers.
In double, three steps each leave an error of ~eps * sqrt(n) relative to ||z_k||_X, i.e. ~1e-13 at
2e4 dofs, which is the size of the residual itself once the RB error reaches 1e-13:
  1. the products A_q v_n: their entries are O(h^2) sums of O(1) stiffness entries (cancellation by
     a factor ~n), so each is rounded with a relative error ~eps n and their X'-norm error is
     ~eps sqrt(n log n);
  2. the Riesz solves: a double LU leaves a backward error ~eps |L||U| that differs from one
     right-hand side to the next;
  3. the Gram-Schmidt: rounding the orthogonalized vectors to double adds noise of X-norm
     ~eps sqrt(n) (high-frequency noise is amplified by the H1 seminorm).
Here the products are formed in long double, the solves are refined with long-double residuals
(linalg.RefinedSolver), and W and R are accumulated in long double; only R (and G) are rounded to
double at the end. What is left is the online evaluation in double, whose error is at most
`rounding_allowance(|w|, |R|)` (worst case, Higham's componentwise dot-product bound); the models'
certified bound (method 'certified', the default) adds it, so that the bound holds for the computed
numbers even where the RB error is at the round-off floor or the bound is exactly tight.

The representers are ordered basis vector by basis vector, so a model truncated to N' < N uses the
leading K' = P + N' Q columns of R and G.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .linalg import EXTENDED, HAS_EXTENDED, RefinedSolver, gram_schmidt_rows

log = logging.getLogger("rom.estimators")

UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2


def residual_coefficients(phi: np.ndarray, theta: np.ndarray, c: np.ndarray) -> np.ndarray:
    """w(mu) for a batch: phi (n, P), theta (n, Q), c (n, N) -> (n, P + N Q)."""
    n = len(c)
    return np.concatenate([phi, -(c[:, :, None] * theta[:, None, :]).reshape(n, -1)], axis=1)


def coefficient_norms(phi: np.ndarray, theta: np.ndarray, c: np.ndarray) -> np.ndarray:
    """||w(mu)||_2 = sqrt(||phi||^2 + ||c||^2 ||theta||^2) without forming w."""
    return np.sqrt(np.einsum("ij,ij->i", phi, phi) + np.einsum("ij,ij->i", c, c) * np.einsum("ij,ij->i", theta, theta))


def gamma(k: int) -> float:
    """Higham's gamma_k = k u / (1 - k u): the relative error bound of k rounded operations."""
    return k * UNIT_ROUNDOFF / (1 - k * UNIT_ROUNDOFF)


def rounding_index(R: np.ndarray) -> int:
    """k of the allowance gamma_k || |R| |w| ||_2 that bounds the whole online rounding of
    ||R w||_2 for R (rows, K) rounded to double and w formed in double:
      K + 2  each component of R w: a dot product of length K in any summation order (Higham,
             Thm 3.5; the single-query order, theta first, then c, is one of them), one u more
             each for rounding w (c_n theta_q) and R;
      rows + 2  the 2-norm of the computed vector: a sum of `rows` squares and a square root,
             relative to ||R w||_2 <= || |R| |w| ||_2;
      4      the allowance's own evaluation, the sum r + allowance and the division by alpha_LB."""
    rows, K = R.shape
    return K + rows + 8


def rounding_allowance(w_abs: np.ndarray, R_abs: np.ndarray) -> np.ndarray:
    """Worst-case |fl(||R w||_2) - ||R_exact w_exact||_2| for a batch |w| (n, K'), |R| (rows, K >= K'):
    gamma_k || |R| |w| ||_2 (rounding_index). First order in u, like every such bound; the
    neglected terms are O(k^2 u^2), absorbed by the 4 spare roundings."""
    K = w_abs.shape[1]
    return gamma(rounding_index(R_abs[:, :K])) * np.linalg.norm(w_abs @ R_abs[:, :K].T, axis=1)


def rounding_constant(R: np.ndarray) -> float:
    """C with |fl(||R w||_2) - ||R_exact w||_2| <= C ||w||_2 for any w (K,) formed in double
    (the norm-wise form of rounding_allowance, for a bound without |R| |w|; looser by up to ~sqrt(rows)):
    (K + 2) u ||R||_F, u the unit round-off (a dot product of length K in any summation order
    errs by at most K u |R||w| / (1 - K u) (Higham, Thm 3.5); one u more each for rounding w and R)."""
    K = R.shape[1]
    return float((K + 2) * UNIT_ROUNDOFF / (1 - (K + 2) * UNIT_ROUNDOFF) * np.linalg.norm(R))


class ResidualRiesz:
    """Offline data of both residual-norm evaluations, extended one basis vector at a time.

    X: inner-product matrix (sparse SPD); A_terms: list of Q sparse matrices; f_terms (P, n).
    precision: 'extended' (long double products, refined Riesz solves, long-double Gram-Schmidt)
    or 'double' (everything in double: kept for comparisons, floor ~eps sqrt(n)).
    solver: the X solver (linalg.RefinedSolver of X: SuperLU, or an iterative solve on the MPI ranks),
    shared by every ResidualRiesz of one stage; None: a SuperLU factorization of X made here."""

    def __init__(self, X: sp.spmatrix, A_terms, f_terms: np.ndarray, precision: str = "extended",
                 solver: RefinedSolver | None = None):
        if precision not in ("extended", "double"):
            raise ValueError(f"precision = {precision!r}: expected 'extended' or 'double'")
        if precision == "extended" and not HAS_EXTENDED:
            log.warning("long double is plain double on this platform: residual data in double, "
                        "round-off floor ~eps sqrt(n_dofs) (docs/reduced_basis.md)")
        self.precision = precision
        self.dtype = EXTENDED if precision == "extended" else np.float64
        self.X = sp.csr_matrix(X)
        self.A_terms = [sp.csr_matrix(A) for A in A_terms]
        self.P, self.Q = len(f_terms), len(self.A_terms)
        # One solver of the fixed inner-product matrix serves every representer; its long-double copy of X
        # serves the Gram-Schmidt too (one copy per stage: at 1e6 3D dofs each is ~0.3 GB).
        self._solver = solver if solver is not None else RefinedSolver(self.X)
        self._X_work = self._solver.A_ext if self.precision == "extended" else self.X
        n = self.X.shape[0]
        self._W = np.empty((0, n), dtype=self.dtype)  # X-orthonormal rows spanning the representers
        self._rank = 0
        self._R = np.zeros((0, 0), dtype=self.dtype)  # Z^T = W^T R
        self._G = np.zeros((0, 0), dtype=self.dtype)  # Z X Z^T = R^T R, grown by its new columns
        self._cache = None
        self._add(np.atleast_2d(np.asarray(f_terms, dtype=float)).astype(self.dtype))

    @property
    def K(self) -> int:
        return self._R.shape[1]

    @property
    def N(self) -> int:
        return (self.K - self.P) // self.Q

    @property
    def R(self) -> np.ndarray:
        """Stable factor (rank, K), rounded to double."""
        return self._double()[0]

    @property
    def G(self) -> np.ndarray:
        """Textbook Gram matrix Z X Z^T = R^T R (K, K), accumulated in the working precision."""
        return self._double()[1]

    def _double(self):
        if self._cache is None:
            self._cache = (np.ascontiguousarray(self._R, dtype=np.float64),
                           np.ascontiguousarray(self._G, dtype=np.float64))
        return self._cache

    def riesz(self, G: np.ndarray) -> np.ndarray:
        """X^{-1} g for the rows g of G (k, n), in the working precision."""
        if self.precision == "extended":
            return self._solver.solve(G)
        return self._solver.solve_double(G)

    def extend(self, v: np.ndarray):
        """Add the representers of A_q v for a new basis vector v."""
        v = np.asarray(v, dtype=np.float64).astype(self.dtype)
        # A_q in the working precision one term at a time (a transient copy, not Q kept ones).
        self._add(np.stack([A.astype(self.dtype) @ v for A in self.A_terms]))

    def _add(self, G_new: np.ndarray):
        Z_new = self.riesz(G_new)
        W_new, R_cols = gram_schmidt_rows(Z_new, self._X_work, self._W[: self._rank])
        k_old, k_new = self.K, len(Z_new)
        rows = self._rank + len(W_new)
        R = np.zeros((rows, k_old + k_new), dtype=self.dtype)
        R[: self._R.shape[0], :k_old] = self._R
        R[:, k_old:] = R_cols
        self._R = R
        cross = np.einsum("ik,il->kl", R, R_cols)  # (K, k_new): new columns of R^T R
        G = np.empty((k_old + k_new,) * 2, dtype=self.dtype)
        G[:k_old, :k_old] = self._G
        G[:, k_old:] = cross
        G[k_old:, :k_old] = cross[:k_old].T
        G[k_old:, k_old:] = 0.5 * (cross[k_old:] + cross[k_old:].T)
        self._G = G
        if len(W_new):
            if rows > len(self._W):  # amortized growth: appends copy nothing most of the time
                grown = np.empty((max(2 * len(self._W), rows, 8), self._W.shape[1]), dtype=self.dtype)
                grown[: self._rank] = self._W[: self._rank]
                self._W = grown
            self._W[self._rank: rows] = W_new
            self._rank = rows
        self._cache = None


def dual_norm(w: np.ndarray, R: np.ndarray | None = None, G: np.ndarray | None = None,
              method: str = "stable") -> np.ndarray:
    """||r(mu)||_{X'} for a batch of coefficient vectors w (n, K') from the leading K' columns.

    stable: ||R w||_2; textbook: sqrt(w^T G w), NaN where the quadratic form comes out negative."""
    K = w.shape[1]
    if method == "stable":
        return np.linalg.norm(w @ R[:, :K].T, axis=1)
    if method == "textbook":
        sq = np.einsum("ik,kl,il->i", w, G[:K, :K], w)
        with np.errstate(invalid="ignore"):
            return np.where(sq >= 0, np.sqrt(np.abs(sq)), np.nan)
    raise ValueError(f"estimator method = {method!r}: expected 'stable' or 'textbook'")
