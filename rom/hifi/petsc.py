"""PETSc linear solves on a row-distributed AIJ matrix: the one place that touches petsc4py.

Command-line PETSc options (`-ksp_monitor`, `-pc_type lu`, ...) win over the config's
`petsc_options`, which win over the built-in defaults below.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

_initialized = False


def init(argv: list[str] | None = None):
    """Initialize petsc4py once, handing it the PETSc options found on the command line."""
    global _initialized
    import petsc4py

    if not _initialized:
        petsc4py.init([sys.argv[0], *(argv or [])])
        _initialized = True
    from petsc4py import PETSc

    return PETSc


def comm_world():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def ownership(n: int, size: int, rank: int) -> tuple[int, int]:
    """PETSc's default contiguous row split (PetscSplitOwnership)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def set_options(options: dict | None):
    """Put config options in the PETSc database unless the command line already set them."""
    PETSc = init()
    db = PETSc.Options()
    for key, value in (options or {}).items():
        key = key.lstrip("-")
        if db.hasName(key):
            continue
        db[key] = "" if value is True else ("false" if value is False else str(value))


@dataclass
class SolveInfo:
    converged: bool
    reason: str
    iterations: int
    residual_norm: float


def reason_names(reasons) -> dict[int, str]:
    """Names of a PETSc ConvergedReason enum (KSP or SNES) by value."""
    return {getattr(reasons, k): k for k in dir(reasons) if k.startswith(("CONVERGED", "DIVERGED"))}


def aij(comm, n: int, row_start: int, row_stop: int, indptr, indices):
    """A row-distributed AIJ matrix preallocated on the local CSR pattern of rows [row_start, row_stop)."""
    PETSc = init()
    nloc = row_stop - row_start
    A = PETSc.Mat().createAIJ(size=((nloc, n), (nloc, n)), comm=comm)
    A.setPreallocationCSR((np.asarray(indptr, dtype=PETSc.IntType), np.asarray(indices, dtype=PETSc.IntType)))
    # The same pattern is refilled for every parameter or Newton step: a new nonzero would be a bug.
    A.setOption(PETSc.Mat.Option.NEW_NONZERO_ALLOCATION_ERR, True)
    return A


class LinearSolver:
    """KSP on the rows [row_start, row_stop) of a global CSR pattern; one instance per operator
    pattern, reused across parameters (the matrix values are replaced in place)."""

    def __init__(self, comm, n: int, row_start: int, row_stop: int, indptr, indices, options: dict | None = None):
        PETSc = init()
        self.PETSc, self.comm = PETSc, comm
        self.n, self.row_start, self.row_stop = n, row_start, row_stop
        set_options(options)
        self._indptr = np.asarray(indptr, dtype=PETSc.IntType)
        self._indices = np.asarray(indices, dtype=PETSc.IntType)
        self.A = self._aij()
        self.ksp = PETSc.KSP().create(comm=comm)
        self.ksp.setOperators(self.A)
        self.ksp.setFromOptions()
        self.x, self.b = self.A.createVecs()
        self._names = reason_names(PETSc.KSP.ConvergedReason)

    def _aij(self):
        return aij(self.comm, self.n, self.row_start, self.row_stop, self._indptr, self._indices)

    def operator(self, values: np.ndarray):
        """A second matrix on the same pattern (e.g. the mass matrix of a time step); returns
        a function x_local -> (M x)_local."""
        M = self._aij()
        M.setValuesCSR(self._indptr, self._indices, np.asarray(values, dtype=self.PETSc.ScalarType))
        M.assemble()
        x, y = M.createVecs()

        def apply(x_local):
            x.array[:] = x_local
            M.mult(x, y)
            return y.array.copy()

        return apply

    def set_values(self, values: np.ndarray):
        """Replace the matrix values (local CSR order) and mark the preconditioner for rebuild."""
        self.A.zeroEntries()
        self.A.setValuesCSR(self._indptr, self._indices, np.asarray(values, dtype=self.PETSc.ScalarType))
        self.A.assemble()
        self.ksp.setOperators(self.A)

    def solve(self, rhs_local: np.ndarray, x0: np.ndarray | None = None) -> tuple[np.ndarray, SolveInfo]:
        self.b.array[:] = rhs_local
        if x0 is not None:
            self.ksp.setInitialGuessNonzero(True)
            self.x.array[:] = x0
        else:
            self.x.set(0.0)
        self.ksp.solve(self.b, self.x)
        reason = int(self.ksp.getConvergedReason())
        info = SolveInfo(reason > 0, self._names.get(reason, str(reason)), int(self.ksp.getIterationNumber()),
                         float(self.ksp.getResidualNorm()))
        return self.x.array.copy(), info

    def gather(self, x_local: np.ndarray, root: int = 0) -> np.ndarray | None:
        """Global vector on `root` (rank order = global row order), None elsewhere."""
        parts = self.comm.tompi4py().gather(np.asarray(x_local), root=root)
        return np.concatenate(parts) if parts is not None else None

    def destroy(self):
        for obj in (self.ksp, self.A, self.b, self.x):
            obj.destroy()


def unused_options(options: dict | None) -> list[str]:
    """Names of config options that PETSc has not read in this process (PetscOptionsUsed), unless the
    command line set them (then the command line's value was the one used)."""
    from .petsc_options import used

    names = [str(k).lstrip("-") for k in (options or {})]
    return [n for n, u in used(names, prefix="").items() if not u]
