"""Residual dual norms for reduced-basis error estimators, in two evaluations.

For an RB solution u_rb = sum_n c_n v_n of A(mu) u = f(mu), with A(mu) = sum_q theta_q A_q and
f(mu) = sum_p phi_p f_p, the residual is r(mu) = sum_k w_k(mu) g_k with the coefficient vector

    w(mu) = [phi_1 .. phi_P, -c_1 theta_1 .. -c_1 theta_Q, -c_2 theta_1, ..]   (length K = P + N Q)

and the residual terms g_k = f_p, A_q v_n. Their Riesz representers z_k = X^{-1} g_k give
||r||_{X'} = ||sum_k w_k z_k||_X.

* textbook: ||r||^2 = w^T G w with the Gram matrix G = Z X Z^T. The sum cancels: its absolute
  rounding error is ~eps * ||w||^2 ||G||, so relative accuracy is lost once ||r|| falls below
  ~sqrt(eps) times the size of the terms, and the square may even come out negative (NaN here).
* stable: orthonormalize the representers in X, Z^T = W^T R (W rows X-orthonormal, R upper
  triangular), so that ||r||_{X'} = ||R w||_2: a plain 2-norm of a short vector, accurate to eps
  relative to ||r|| itself.

The representers are ordered basis vector by basis vector, so a model truncated to N' < N uses the
leading K' = P + N' Q columns of R and G.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

log = logging.getLogger("rom.estimators")

# A representer whose X-norm drops below this fraction of its original norm during the
# orthogonalization lies in the span of the earlier ones (to rounding) and adds no new direction.
DEPENDENT_TOL = 1e-13


def residual_coefficients(phi: np.ndarray, theta: np.ndarray, c: np.ndarray) -> np.ndarray:
    """w(mu) for a batch: phi (n, P), theta (n, Q), c (n, N) -> (n, P + N Q)."""
    n = len(c)
    return np.concatenate([phi, -(c[:, :, None] * theta[:, None, :]).reshape(n, -1)], axis=1)


class ResidualRiesz:
    """Offline data of both residual-norm evaluations, extended one basis vector at a time.

    X: inner-product matrix (sparse SPD); A_terms: list of Q sparse matrices; f_terms (P, n)."""

    def __init__(self, X: sp.spmatrix, A_terms, f_terms: np.ndarray):
        self.X = sp.csr_matrix(X)
        self.A_terms = [sp.csr_matrix(A) for A in A_terms]
        self.P, self.Q = len(f_terms), len(self.A_terms)
        n = self.X.shape[0]
        # One sparse factorization of the fixed inner-product matrix serves every representer.
        self._X_lu = spla.splu(self.X.tocsc())
        self.W = np.empty((0, n))  # X-orthonormal rows spanning the representers
        self.R = np.empty((0, 0))  # Z^T = W^T R
        self.Z = np.empty((0, n))  # the representers themselves (for the textbook Gram matrix)
        self.G = np.empty((0, 0))
        self._add(np.atleast_2d(np.asarray(f_terms, dtype=float)))

    @property
    def K(self) -> int:
        return self.R.shape[1]

    @property
    def N(self) -> int:
        return (self.K - self.P) // self.Q

    def riesz(self, G: np.ndarray) -> np.ndarray:
        """X^{-1} g for the rows g of G (k, n)."""
        return self._X_lu.solve(np.ascontiguousarray(G.T)).T.reshape(G.shape)

    def extend(self, v: np.ndarray):
        """Add the representers of A_q v for a new basis vector v."""
        self._add(np.stack([A @ v for A in self.A_terms]))

    def _add(self, G_new: np.ndarray):
        Z_new = self.riesz(G_new)
        XZ_new = (self.X @ Z_new.T).T
        # Textbook Gram matrix G = Z X Z^T, grown by its new rows and columns.
        cross = self.Z @ XZ_new.T
        corner = Z_new @ XZ_new.T
        self.G = np.block([[self.G, cross], [cross.T, 0.5 * (corner + corner.T)]])
        self.Z = np.vstack([self.Z, Z_new])
        # Stable factor: Gram-Schmidt of the new representers against W (re-orthogonalized as
        # needed), one after the other; R collects the coefficients.
        k_old, k_new = self.R.shape[1], len(Z_new)
        R_cols = np.zeros((len(self.W) + k_new, k_new))
        W_new = []
        for j, z in enumerate(Z_new):
            z = z.copy()
            norm0 = np.sqrt(z @ (self.X @ z))
            basis = np.vstack([self.W, *W_new]) if W_new else self.W
            h = np.zeros(len(basis))
            norm = norm0
            for _ in range(4):  # repeat while a pass cancels more than half of the norm
                g = basis @ (self.X @ z)
                z -= g @ basis
                h += g
                previous, norm = norm, np.sqrt(z @ (self.X @ z))
                if norm > 0.5 * previous:
                    break
            R_cols[: len(h), j] = h
            if norm0 > 0 and norm > DEPENDENT_TOL * norm0:
                R_cols[len(h), j] = norm
                W_new.append(z / norm)
        rows = len(self.W) + len(W_new)
        R = np.zeros((rows, k_old + k_new))
        R[: self.R.shape[0], :k_old] = self.R
        R[:, k_old:] = R_cols[:rows]
        self.R = R
        if W_new:
            self.W = np.vstack([self.W, *W_new])

    def orthonormality_loss(self) -> float:
        """max |W X W^T - I|: how far the residual basis is from X-orthonormal."""
        if not len(self.W):
            return 0.0
        return float(np.abs(self.W @ (self.X @ self.W.T) - np.eye(len(self.W))).max())


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


def min_theta(theta: np.ndarray, theta_ref: np.ndarray) -> np.ndarray:
    """Min-theta coercivity lower bound alpha_LB(mu) = min_q theta_q(mu) / theta_q(mu_ref), valid
    when X = sum_q theta_q(mu_ref) A_q with every A_q positive semidefinite (thermal block)."""
    return np.min(np.asarray(theta) / np.asarray(theta_ref), axis=-1)
