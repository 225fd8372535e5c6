"""SciPy fallback with the LinearSolver interface of rom.hifi.solvers.petsc, for machines without PETSc
(the GPU machine): serial, sparse LU factorized once per operator."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .petsc import SolveInfo


class ScipyLinearSolver:
    def __init__(self, n: int, indptr, indices, options: dict | None = None):
        self.n, self.row_start, self.row_stop = n, 0, n
        self.indptr, self.indices = indptr, indices
        self._lu = None

    def _csr(self, values):
        return sp.csr_matrix((values, self.indices, self.indptr), shape=(self.n, self.n))

    def operator(self, values):
        M = self._csr(values)
        return lambda x: M @ x

    def set_values(self, values):
        self._lu = spla.splu(self._csr(values).tocsc())

    def solve(self, rhs, x0=None):
        x = self._lu.solve(np.asarray(rhs, dtype=float))
        ok = bool(np.all(np.isfinite(x)))
        return x, SolveInfo(ok, "SCIPY_SPLU" if ok else "DIVERGED_NANORINF", 1, 0.0)

    def gather(self, x_local, root=0):
        return x_local

    def destroy(self):
        self._lu = None
