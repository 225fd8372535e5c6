"""Proper orthogonal decomposition by the method of snapshots in an inner product X."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .linalg import gram_schmidt, x_apply, x_norms


def pod(S: np.ndarray, X: sp.spmatrix | None = None, tol: float = 1e-10, max_modes: int | None = None):
    """Modes (N, n_dofs), X-orthonormal, and all eigenvalues of the correlation S X S^T (descending).

    N is the smallest size whose left-out relative energy sum_{k>N} lambda_k / sum lambda_k is
    below `tol`, capped by `max_modes`. The method of snapshots resolves singular values only down
    to ~sqrt(eps) of the largest, so modes are re-orthonormalized in X (linalg.gram_schmidt)."""
    S = np.asarray(S, dtype=float)
    C = S @ x_apply(X, S).T
    C = 0.5 * (C + C.T)
    lam, V = np.linalg.eigh(C)
    lam, V = lam[::-1], V[:, ::-1]
    lam = np.clip(lam, 0.0, None)
    total = lam.sum()
    if total == 0.0:
        return np.empty((0, S.shape[1])), lam
    left_out = 1.0 - np.cumsum(lam) / total  # energy left out with k+1 modes
    N = int(np.argmax(left_out <= tol)) + 1 if np.any(left_out <= tol) else len(lam)
    N = min(N, max_modes or N, int(np.sum(lam > lam[0] * 1e-15 * len(lam))))
    modes = (V[:, :N].T @ S) / np.sqrt(lam[:N])[:, None]
    return gram_schmidt(modes, X), lam


def projection_errors(V: np.ndarray, S: np.ndarray, X: sp.spmatrix, sizes) -> np.ndarray:
    """Relative X-norm errors ||s - P_N s||_X / ||s||_X of the X-orthogonal projection of every
    snapshot onto the first N modes, for every N in `sizes`: shape (len(sizes), n_snapshots).
    The residual is formed explicitly (not as ||s||^2 - sum c_k^2, which cancels below ~1e-8)."""
    XS = x_apply(X, S)
    norms = np.sqrt(np.einsum("ij,ij->i", S, XS))
    coef = V @ XS.T  # (N_max, n)
    out = np.empty((len(sizes), len(S)))
    for row, N in enumerate(sizes):  # a handful of basis sizes; each is vectorized over snapshots and dofs
        out[row] = x_norms(S - coef[:N].T @ V[:N], X)
    return out / np.where(norms > 0, norms, 1.0)
