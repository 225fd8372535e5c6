"""Proper orthogonal decomposition by the method of snapshots in an inner product X."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .linalg import gram_schmidt, gram_schmidt_rows, x_apply, x_norms


def pod(S: np.ndarray, X: sp.spmatrix | None = None, tol: float = 1e-10, max_modes: int | None = None):
    """Modes (N, n_dofs), X-orthonormal, and all eigenvalues of the correlation S X S^T (descending).

    N is the smallest size whose left-out relative energy sum_{k>N} lambda_k / sum lambda_k is
    below `tol`, capped by `max_modes`. The method of snapshots resolves singular values only down
    to ~sqrt(eps) of the largest, so modes are re-orthonormalized in X (linalg.gram_schmidt)."""
    S = np.asarray(S, dtype=float)
    C = S @ x_apply(X, S).T
    lam, V, N = _spectrum(C, tol, max_modes)
    if N == 0:
        return np.empty((0, S.shape[1])), lam
    modes = (V[:, :N].T @ S) / np.sqrt(lam[:N])[:, None]
    return gram_schmidt(modes, X), lam


def _spectrum(C: np.ndarray, tol: float, max_modes: int | None):
    """Eigenvalues (descending, clipped at 0), eigenvectors and the number of modes kept of the
    correlation C (symmetrized here)."""
    C = 0.5 * (C + C.T)
    lam, V = np.linalg.eigh(C)
    lam, V = lam[::-1], V[:, ::-1]
    lam = np.clip(lam, 0.0, None)
    total = lam.sum()
    if total == 0.0:
        return lam, V, 0
    left_out = 1.0 - np.cumsum(lam) / total  # energy left out with k+1 modes
    N = int(np.argmax(left_out <= tol)) + 1 if np.any(left_out <= tol) else len(lam)
    N = min(N, max_modes or N, int(np.sum(lam > lam[0] * 1e-15 * len(lam))))
    return lam, V, N


BLOCK_BYTES = 256 << 20  # the panel of X-applied snapshots pod_blocks holds (and 1/4 of it streamed)


def _steps(S, block_bytes: int) -> tuple[int, int]:
    """(panel, stream) row counts of the blocked POD: whole samples, the panel within block_bytes."""
    step = getattr(S, "per_sample", 1)
    panel = max(step, block_bytes // max(8 * S.n_dofs, 1) // step * step)
    panel = min(panel, max(step, S.n_rows))
    stream = max(step, panel // 4 // step * step)
    return panel, stream


def gram_blocks(S, X: sp.spmatrix | None = None, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """The correlation S X S^T (m, m) of the rows of S read in blocks (rom.snapshots.SnapshotRows or
    ArrayRows: n_rows, n_dofs, rows(i, j)): a panel of rows P is read once and X applied to it, then every
    later block of rows B is read and G[B, P] = B (X P^T); the upper triangle is the transpose. Memory:
    the panel (block_bytes), one streamed block (a quarter of it) and G; reads: (panels + 1) / 2 passes.
    G is symmetric (a diagonal panel is averaged with its transpose, as `pod` averages C)."""
    m = S.n_rows
    panel, stream = _steps(S, block_bytes)
    G = np.empty((m, m))
    for a in range(0, m, panel):
        b = min(m, a + panel)
        XP = np.empty((b - a, S.n_dofs))
        for c in range(a, b, stream):
            d = min(b, c + stream)
            XP[c - a:d - a] = x_apply(X, S.rows(c, d))
        for c in range(a, m, stream):
            d = min(m, c + stream)
            G[c:d, a:b] = S.rows(c, d) @ XP.T
        del XP
        G[a:b, a:b] = 0.5 * (G[a:b, a:b] + G[a:b, a:b].T)
        G[a:b, b:] = G[b:, a:b].T
    return G


def pod_blocks(S, X: sp.spmatrix | None = None, tol: float = 1e-10, max_modes: int | None = None,
               block_bytes: int = BLOCK_BYTES):
    """`pod` of the rows of S read in blocks (see gram_blocks), never holding S: the same modes and
    eigenvalues to rounding. The modes (eigvecs^T S) / sqrt(lambda) are summed over the blocks of rows
    (in dof slabs, so that no temporary the size of the modes is formed) and X-orthonormalized in place."""
    lam, V, N = _spectrum(gram_blocks(S, X, block_bytes), tol, max_modes)
    if N == 0:
        return np.empty((0, S.n_dofs)), lam
    _, stream = _steps(S, block_bytes)
    n = S.n_dofs
    modes = np.zeros((N, n))
    slab = max(1, n // 8)
    for c in range(0, S.n_rows, stream):
        d = min(S.n_rows, c + stream)
        B, W = S.rows(c, d), np.ascontiguousarray(V[c:d, :N].T)
        for p in range(0, n, slab):
            modes[:, p:p + slab] += W @ B[:, p:p + slab]
    modes /= np.sqrt(lam[:N])[:, None]
    return gram_schmidt_rows(modes, X, inplace=True)[0], lam


def projection_errors_blocks(V: np.ndarray, S, X: sp.spmatrix, sizes, block_bytes: int = BLOCK_BYTES) -> np.ndarray:
    """projection_errors of the rows of S read in blocks (rom.snapshots.SnapshotRows or ArrayRows)."""
    out = np.empty((len(sizes), S.n_rows))
    _, stream = _steps(S, block_bytes)
    for c in range(0, S.n_rows, stream):
        d = min(S.n_rows, c + stream)
        out[:, c:d] = projection_errors(V, S.rows(c, d), X, sizes)
    return out


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
