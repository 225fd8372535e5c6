"""Incremental POD (Brand's rank-one SVD update) in an inner product X: the basis grows by one
snapshot at a time without revisiting the old snapshots, as the adaptive ROM needs online.

The snapshots seen so far are kept in factored form S^T = basis^T K Y^T (Y orthogonal, never
needed): `basis` is an X-orthonormal set of rows that only gains rows, one per new direction, and
K a small square core. Brand's update borders K with the new snapshot's coefficients,
K <- [[K, c], [0, rho]], and diagonalizes; here the diagonalization (an SVD of K, O(r^3)) is
deferred until the modes or singular values are asked for, so an update costs O(n r) (two
projections and one axpy). A reduced model can work in `basis` directly (the span of the modes plus
any direction the truncation drops), so its projected operators grow by one bordering row and
column per update instead of being recomputed in a rotated basis."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .linalg import orthogonalize


class IncrementalPOD:
    """Modes V (r, n), X-orthonormal, and singular values sigma (r,) of all snapshots seen so far.

    update(s): with c = basis X s and the X-orthogonal rest e = s - c basis (linalg.orthogonalize,
    twice iterated), rho = ||e||_X, the core becomes [[K, c], [0, rho]] and e / rho joins the basis
    (or, when rho <= tol ||s||_X, the core [K, c] is brought back to square by a QR). `tol` is a
    rank-truncation setting (default 1e-10), above the dependence threshold linalg.dependent_tol. V and sigma come from the SVD of K; modes whose
    singular value falls below `tol` times the largest are left out, and at most `max_modes` kept."""

    def __init__(self, V: np.ndarray, sigma: np.ndarray, X: sp.spmatrix | None = None, tol: float = 1e-10,
                 max_modes: int | None = None):
        V = np.array(V, dtype=float)
        self._buffer = np.empty((max(2 * len(V), 8), V.shape[1]))  # spare rows: appends copy nothing
        self._buffer[: len(V)] = V
        self.r = len(V)
        self.K = np.diag(np.asarray(sigma, dtype=float))
        self.X, self.tol, self.max_modes = X, tol, max_modes
        self._svd = None

    @classmethod
    def from_snapshots(cls, S, X=None, tol=1e-10, max_modes=None, energy_tol: float | None = None):
        """Start from a POD of S; `energy_tol` truncates the start basis on the relative energy."""
        from .pod import pod

        V, lam = pod(S, X, energy_tol if energy_tol is not None else tol ** 2, max_modes)
        return cls(V, np.sqrt(lam[: len(V)]), X, tol, max_modes)

    @property
    def basis(self) -> np.ndarray:
        """The X-orthonormal rows spanning everything seen so far, in the order they were added."""
        return self._buffer[: self.r]

    def _diagonalized(self):
        if self._svd is None:
            Q, sig, _ = np.linalg.svd(self.K)
            keep = sig > self.tol * sig[0] if len(sig) else sig > 0
            keep[self.max_modes or len(sig):] = False
            self._svd = Q[:, keep], sig[keep]
        return self._svd

    @property
    def sigma(self) -> np.ndarray:
        return self._diagonalized()[1]

    @property
    def V(self) -> np.ndarray:
        """The POD modes, ordered by singular value (formed on demand: O(n r^2))."""
        return self._diagonalized()[0].T @ self.basis

    def update(self, s: np.ndarray) -> np.ndarray | None:
        """Add one snapshot. Returns the new X-orthonormal direction appended to `basis`, or None
        when the snapshot lies in the span (to `tol`)."""
        c, e, rho, norm = orthogonalize(np.asarray(s, dtype=float), self.basis, self.X)
        rho, norm = float(rho), float(norm)
        r = len(self.K)
        self._svd = None
        if norm > 0 and rho > self.tol * norm:
            K = np.zeros((r + 1, r + 1))
            K[:r, :r], K[:r, r], K[r, r] = self.K, c, rho
            self.K = K
            if self.r == len(self._buffer):  # amortized O(n) per append
                self._buffer = np.vstack([self._buffer, np.empty_like(self._buffer)])
            self._buffer[r] = e / rho
            self.r += 1
            return self._buffer[r]
        # In the span: [K, c] has the same left singular vectors and values as the square factor
        # R^T of its transpose's QR.
        self.K = np.linalg.qr(np.hstack([self.K, c[:, None]]).T, mode="r").T
        return None
