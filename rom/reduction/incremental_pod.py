"""Incremental POD (Brand's rank-one SVD update) in an inner product X: the basis grows by one
snapshot at a time without revisiting the old snapshots, as the adaptive ROM needs online."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class IncrementalPOD:
    """Modes V (r, n), X-orthonormal, and singular values sigma (r,) of all snapshots seen so far.

    update(s): with p = V X s and the X-orthogonal rest e = s - p V, rho = ||e||_X, the new
    singular triplets come from the SVD of the small (r+1, r+1) matrix [[diag(sigma), p], [0, rho]].
    Modes whose singular value falls below `tol` times the largest are dropped."""

    def __init__(self, V: np.ndarray, sigma: np.ndarray, X: sp.spmatrix | None = None, tol: float = 1e-10,
                 max_modes: int | None = None):
        self.V = np.array(V, dtype=float)
        self.sigma = np.array(sigma, dtype=float)
        self.X, self.tol, self.max_modes = X, tol, max_modes

    @classmethod
    def from_snapshots(cls, S, X=None, tol=1e-10, max_modes=None, energy_tol: float | None = None):
        """Start from a POD of S; `energy_tol` truncates the start basis on the relative energy."""
        from .pod import pod

        V, lam = pod(S, X, energy_tol if energy_tol is not None else tol ** 2, max_modes)
        return cls(V, np.sqrt(lam[: len(V)]), X, tol, max_modes)

    def _X(self, v):
        return v if self.X is None else self.X @ v

    def update(self, s: np.ndarray) -> bool:
        """Add one snapshot; returns whether the basis gained a direction."""
        s = np.asarray(s, dtype=float)
        p = self.V @ self._X(s)
        e = s - p @ self.V
        p2 = self.V @ self._X(e)  # second Gram-Schmidt pass: orthogonality to round-off
        e -= p2 @ self.V
        p = p + p2
        rho = float(np.sqrt(max(e @ self._X(e), 0.0)))
        norm = float(np.sqrt(max(s @ self._X(s), 0.0)))
        r = len(self.sigma)
        new_direction = norm > 0 and rho > self.tol * norm
        K = np.zeros((r + 1, r + 1))
        K[:r, :r] = np.diag(self.sigma)
        K[:r, r] = p
        K[r, r] = rho if new_direction else 0.0
        Q, sig, _ = np.linalg.svd(K)
        stacked = np.vstack([self.V, e / rho if new_direction else np.zeros_like(s)])
        keep = sig > self.tol * sig[0]
        if self.max_modes is not None:
            keep[self.max_modes:] = False
        self.V = Q[:, keep].T @ stacked
        self.sigma = sig[keep]
        return bool(new_direction)
