"""Initial guesses recycled from earlier solves of a sequence: the Galerkin projection of the new system on
the span of previous solutions (and of a reduced basis, when one is given),

    x0 = V (V^T A(mu) V)^{-1} V^T b(mu),

with the current matrix A(mu) and V an orthonormal basis of that span on the rows this MPI rank owns
(inner products are local sums and one allreduce). For an SPD A this x0 is the A-norm-best vector of the
span, so the Krylov solver starts from the error that the span cannot represent.

PETSc's own KSPGuess does the same projection, but PETSc 3.18 resets it whenever the matrix values change
(KSPGuessSetUp: "Resetting KSPGuess since matrix state has changed"), which happens for every new parameter:
measured, it gave the plain iteration counts and was removed (docs/data_generation.md). Hence this
projection with the current A.

Costs per solve: for an affine A(mu) = sum_q theta_q(mu) A_q, the reduced matrices V^T A_q V are updated
when a vector enters the span (2 Q matvecs), so a guess costs two passes over V; otherwise A(mu) V is one
MatMatMult with the k columns of V (k matvecs).
"""
from __future__ import annotations

import numpy as np


class SolutionSpace:
    """An orthonormal basis V (n_rows, k) of earlier solutions (the newest `capacity`, oldest dropped first)
    after the columns of a fixed `basis` (never dropped), on one rank's rows.

    `solver` is a rom.hifi.solvers.petsc.LinearSolver (its `multiply` and communicator). `terms`, the affine
    components' values (Q, nnz) on the solver's pattern, switches on the incremental reduced matrices; then
    `guess` needs `theta`, the coefficients of the current A(mu)."""

    def __init__(self, solver, capacity: int, basis: np.ndarray | None = None, terms: np.ndarray | None = None):
        if capacity < 0:
            raise ValueError(f"simulate.guess_size = {capacity}: expected an integer >= 0")
        self.solver, self.capacity = solver, int(capacity)
        self._mpi = solver.comm.tompi4py()
        self.n_rows = solver.row_stop - solver.row_start
        n_basis = 0 if basis is None else len(basis)
        # Columns stored contiguously (Fortran order) and preallocated: V is a view of the first `dim`.
        self._store = np.zeros((self.n_rows, n_basis + self.capacity + 1), order="F")
        self.dim = 0
        self.n_fixed = 0
        self._terms = [solver.matrix(v) for v in terms] if terms is not None else None
        self._G = np.empty((len(self._terms), 0, 0)) if self._terms is not None else None
        if basis is not None:
            basis = np.asarray(basis, dtype=float)
            if basis.ndim != 2 or basis.shape[1] != solver.n:
                raise ValueError(f"reduced basis of shape {basis.shape}: expected (r, {solver.n}) rows over the free dofs")
            for row in basis[:, solver.row_start:solver.row_stop]:
                self._append(row)
            self.n_fixed = self.dim

    @property
    def V(self) -> np.ndarray:
        return self._store[:, :self.dim]

    def _sum(self, local: np.ndarray) -> np.ndarray:
        from mpi4py import MPI

        local = np.ascontiguousarray(local, dtype=float)
        out = np.empty_like(local)
        self._mpi.Allreduce(local, out, op=MPI.SUM)
        return out

    def _dot(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        return self._sum(A.T @ B)

    def _append(self, x: np.ndarray) -> bool:
        """Orthonormalize x against V (classical Gram-Schmidt, twice: 'twice is enough') and append it,
        unless it lies in the span to rounding (its remainder below 1e-10 of its norm)."""
        x = np.asarray(x, dtype=float).copy()
        norm0 = np.sqrt(self._sum(np.array([x @ x]))[0])
        if norm0 == 0.0:
            return False
        V = self.V
        for _ in range(2):
            x -= V @ self._dot(V, x)
        norm = np.sqrt(self._sum(np.array([x @ x]))[0])
        if norm <= 1e-10 * norm0:
            return False
        v = x / norm
        if self._terms is not None:
            # New row and column of each V^T A_q V: V^T (A_q v) and (A_q^T v)^T V.
            k = self.dim
            Av = np.stack([self.solver.apply(M, v) for M in self._terms])
            Atv = np.stack([self.solver.apply(M, v, transpose=True) for M in self._terms])
            Q = len(self._terms)
            both = self._sum(np.concatenate([np.vstack([Av, Atv]) @ V, np.vstack([Av, Atv]) @ v[:, None]], axis=1))
            col, row, diag = both[:Q, :k], both[Q:, :k], both[:Q, k]  # V^T A_q v, v^T A_q V, v^T A_q v
            G = np.zeros((len(self._terms), k + 1, k + 1))
            G[:, :k, :k] = self._G
            G[:, :k, k] = col
            G[:, k, :k] = row
            G[:, k, k] = diag
            self._G = G
        self._store[:, self.dim] = v
        self.dim += 1
        return True

    def add(self, x: np.ndarray) -> bool:
        """Take a new solution into the span; when full, the oldest solution direction leaves it."""
        if self.capacity == 0:
            return False
        if self.dim - self.n_fixed >= self.capacity:
            keep = np.r_[0:self.n_fixed, self.n_fixed + 1:self.dim]
            self._store[:, :self.dim - 1] = self._store[:, keep]  # a subset of orthonormal columns stays orthonormal
            self.dim -= 1
            if self._G is not None:
                self._G = self._G[:, keep][:, :, keep]
        return self._append(x)

    def reduced_matrix(self, theta: np.ndarray | None = None) -> np.ndarray:
        """V^T A(mu) V: from the affine pieces with `theta`, else with the solver's current matrix."""
        if self._G is not None:
            if theta is None:
                raise ValueError("SolutionSpace.reduced_matrix: affine terms were given, so theta is expected")
            return np.tensordot(np.asarray(theta, dtype=float), self._G, axes=1)
        return self._dot(self.V, self.solver.multiply(self.V))

    def guess(self, b: np.ndarray, theta: np.ndarray | None = None) -> np.ndarray | None:
        """The Galerkin initial guess for A(mu) x = b on the span (None while the span is empty). A singular
        reduced matrix (possible for a nonsymmetric A) falls back to least squares."""
        if self.dim == 0:
            return None
        G = self.reduced_matrix(theta)
        r = self._dot(self.V, np.asarray(b, dtype=float))
        try:
            c = np.linalg.solve(G, r)
        except np.linalg.LinAlgError:
            c = np.linalg.lstsq(G, r, rcond=None)[0]
        return self.V @ c

    def destroy(self):
        for M in self._terms or ():
            M.destroy()
        self._terms = None
