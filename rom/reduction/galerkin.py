"""Incremental Galerkin projection: an X-orthonormal basis (rows of V) grown one vector at a time, with
the projections of affine operator terms (V A_q V^T), of load terms (V f_p) and the stable residual
factor (estimators.ResidualRiesz) kept in step; and the truncation of its residual factor to a leading
sub-basis. The reductors of the stationary (rom.models.rb) and parabolic (rom.models.parabolic) reduced
bases are this projection with their own terms."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from rom.reduction.estimators import ResidualRiesz
from rom.reduction.linalg import (
    RefinedSolver,
    dependent_tol,
    gram_schmidt,
    orthogonalize,
    orthonormality_error,
    x_norms,
)

# Basis vectors whose X-Gram matrix deviates from the identity by more than this are
# re-orthonormalized (twice-iterated Gram-Schmidt) and the event is logged.
ORTHO_TOL = 1e-10


def leading_rows(R: np.ndarray, K: int) -> np.ndarray:
    """The residual factor of a leading sub-basis: R is built column by column (echelon form), so its
    first K columns serve; rows that are zero on them contribute nothing and are dropped."""
    nonzero = np.flatnonzero(np.abs(R[:, :K]).max(axis=1) > 0)
    rows = nonzero[-1] + 1 if len(nonzero) else 0
    return np.ascontiguousarray(R[:rows, :K])


class IncrementalGalerkin:
    """Galerkin projection onto an X-orthonormal basis grown one vector at a time (rows of V are basis
    vectors): `A_rb` (Q, N, N) = V A_q V^T, `f_rb` (P, N) = V f_p and `riesz` (the residual factor of
    the terms A_q, f_p) kept in step. A basis that lost X-orthonormality (an added vector, or one set
    by `set_basis`, off the identity by more than ORTHO_TOL) is re-orthonormalized, its projections
    rebuilt, and the event logged on `log` and counted in `reorthonormalizations`.

    precision: 'extended' (default) or 'double' for the residual data (estimators.ResidualRiesz);
    solver: the X solver of the residual data (linalg.RefinedSolver; None: one SuperLU factorization of
    X, made here once and kept through re-orthonormalizations)."""

    def __init__(self, X: sp.spmatrix, A_terms, f_terms: np.ndarray, precision: str = "extended",
                 log: logging.Logger | None = None, solver: RefinedSolver | None = None):
        self.X = sp.csr_matrix(X)
        self.solver = solver if solver is not None else RefinedSolver(self.X)
        self.A_terms = [sp.csr_matrix(A) for A in A_terms]
        self.f_terms = np.atleast_2d(np.asarray(f_terms, dtype=float))
        self.precision = precision
        self.log = log or logging.getLogger(__name__)
        self.reorthonormalizations = 0
        self._reset(np.empty((0, self.X.shape[0])))

    def _reset(self, V):
        self.V = np.empty((0, self.X.shape[0]))
        self.A_rb = np.zeros((len(self.A_terms), 0, 0))
        self.f_rb = np.zeros((len(self.f_terms), 0))
        self.riesz = ResidualRiesz(self.X, self.A_terms, self.f_terms, self.precision, self.solver)
        for v in V:
            self._append(v)

    @property
    def N(self) -> int:
        return len(self.V)

    def extend(self, u: np.ndarray) -> bool:
        """Orthonormalize u against the basis (twice-iterated Gram-Schmidt in X) and add it;
        False if it adds no new direction (linalg.dependent_tol)."""
        _, v, norm, norm0 = orthogonalize(np.asarray(u, dtype=float), self.V, self.X)
        if norm0 == 0 or norm <= dependent_tol(np.float64) * norm0:
            return False
        v /= norm
        loss = max(np.abs(self.V @ (self.X @ v)).max(initial=0.0), abs(float(x_norms(v, self.X)) - 1.0))
        if loss > ORTHO_TOL:
            self._reorthonormalize(np.vstack([self.V, v]), loss)
            return True
        self._append(v)
        return True

    def set_basis(self, V: np.ndarray):
        """Use a given basis (rows), e.g. POD modes; re-orthonormalized (and logged) if its X-Gram
        matrix is not the identity to ORTHO_TOL."""
        V = np.atleast_2d(np.asarray(V, dtype=float))
        loss = orthonormality_error(V, self.X)
        if loss > ORTHO_TOL:
            self._reorthonormalize(V, loss)
        else:
            self._reset(V)

    def _reorthonormalize(self, V, loss):
        W = gram_schmidt(V, self.X)
        self.reorthonormalizations += 1
        self.log.warning("basis lost X-orthonormality (max |V X V^T - I| = %.2e > %.0e): re-orthonormalized "
                         "%d vectors (kept %d) and rebuilt the reduced operators", loss, ORTHO_TOL, len(V), len(W))
        self._reset(W)

    def _append(self, v):
        N = self.N
        AV = np.stack([A @ v for A in self.A_terms])               # (Q, n)
        VtA = np.stack([A.T @ v for A in self.A_terms])            # (Q, n)
        A_rb = np.zeros((len(self.A_terms), N + 1, N + 1))
        A_rb[:, :N, :N] = self.A_rb
        A_rb[:, :N, N] = AV @ self.V.T if N else 0.0
        A_rb[:, N, :N] = VtA @ self.V.T if N else 0.0
        A_rb[:, N, N] = AV @ v
        self.A_rb = A_rb
        self.f_rb = np.column_stack([self.f_rb, self.f_terms @ v])
        self.V = np.vstack([self.V, v])
        self.riesz.extend(v)
