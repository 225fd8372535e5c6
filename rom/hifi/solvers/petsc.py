"""PETSc linear solves on a row-distributed AIJ matrix: the one place that touches petsc4py.

Command-line PETSc options (`-ksp_monitor`, `-pc_type lu`, ...) win over the config's
`petsc_options`, which win over the built-in defaults below. Each solver reads its options under its
own prefix (`romflow_<serial>_`), so the options of one solver never reach another solver of the
process; the process-wide (un-prefixed) database holds the command line's alone.
"""
from __future__ import annotations

import itertools
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_initialized = False
PREFIX = "romflow_"
# Solvers are created collectively, in the same order on every rank: the serial, hence the prefix, agrees.
_serial = itertools.count()


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


def _value(value) -> str:
    """An option's value as the PETSc database takes it (a flag is an empty string)."""
    return "" if value is True or value is None else ("false" if value is False else str(value))


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
    pattern, reused across parameters (the matrix values are replaced in place).

    Its options live under its own prefix (`prefix`, the view `db`) until `destroy`: options that PETSc
    reads late (a factorization package's, at set-up) still find them, and no other solver sees them.
    A PETSc object built around this solver (the SNES of a nonlinear problem) takes the same prefix."""

    def __init__(self, comm, n: int, row_start: int, row_stop: int, indptr, indices, options: dict | None = None,
                 command_line: bool = True):
        """command_line: the process's un-prefixed PETSc options (the command line) apply to this solver too,
        over `options` (False: a solver whose options are the caller's alone, e.g. the RB's X solves)."""
        PETSc = init()
        self.PETSc, self.comm = PETSc, comm
        self.n, self.row_start, self.row_stop = n, row_start, row_stop
        self.prefix = f"{PREFIX}{next(_serial)}_"
        self.db = PETSc.Options(self.prefix)
        self._config = {str(k).lstrip("-"): _value(v) for k, v in (options or {}).items()}
        # The command line (the un-prefixed options of the process) wins over the config.
        outer = ({k: _value(v) for k, v in PETSc.Options().getAll().items() if not k.startswith(PREFIX)}
                 if command_line else {})
        for key, value in {**self._config, **outer}.items():
            self.db[key] = value
        self._indptr = np.asarray(indptr, dtype=PETSc.IntType)
        self._indices = np.asarray(indices, dtype=PETSc.IntType)
        self.A = self._aij()
        self.ksp = PETSc.KSP().create(comm=comm)
        self.ksp.setOptionsPrefix(self.prefix)
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

    # -- reuse along a sequence of solves (rom.hifi.sequence) ------------------------------------
    @contextmanager
    def options(self, options: dict, override: bool = False):
        """PETSc options of this solver only while the block runs; names it already has (the command line,
        the config's petsc_options) win unless `override`. Yields the options that were put in."""
        db = self.db
        applied, saved = {}, {}
        for key, value in options.items():
            key = key.lstrip("-")
            if db.hasName(key):
                if not override:
                    continue
                saved[key] = db.getString(key)
            db[key] = _value(value)
            applied[key] = value
        try:
            yield applied
        finally:
            for key in applied:
                if key in saved:
                    db[key] = saved[key]
                else:
                    db.delValue(key)

    def configure(self, options: dict, override: bool = False) -> dict:
        """Apply PETSc options to this KSP (KSPSetFromOptions) without keeping them among the solver's
        options (a later set-from-options does not apply them again). Names the solver already has (the
        command line, or the config's petsc_options) win unless `override`. Returns what was applied."""
        with self.options(options, override) as applied:
            if applied:
                self.ksp.setFromOptions()
        return applied

    def setup(self):
        """Build what the next solve needs (the preconditioner): KSPSetUp."""
        self.ksp.setUp()

    def pc_type(self) -> str:
        return self.ksp.getPC().getType()

    def matrix(self, values: np.ndarray):
        """A PETSc matrix on this solver's pattern (e.g. an affine component A_q), for `multiply`."""
        M = self._aij()
        M.setValuesCSR(self._indptr, self._indices, np.asarray(values, dtype=self.PETSc.ScalarType))
        M.assemble()
        return M

    def apply(self, matrix, x_local: np.ndarray, transpose: bool = False) -> np.ndarray:
        """matrix x (or matrix^T x) for one vector of local rows, on the solver's work vectors."""
        self.x.array[:] = x_local
        (matrix.multTranspose if transpose else matrix.mult)(self.x, self.b)
        return self.b.array.copy()

    def multiply(self, V: np.ndarray, transpose: bool = False, matrix=None) -> np.ndarray:
        """A V (or A^T V) for a block of local rows V (n_rows, k): one MatMatMult with a dense block.
        `matrix` (from `matrix()`) applies another matrix on the same pattern instead of A."""
        PETSc = self.PETSc
        nloc, k = V.shape
        if k == 0:
            return np.empty((nloc, 0))
        A = self.A if matrix is None else matrix
        D = PETSc.Mat().createDense(((nloc, self.n), (None, k)), array=np.asfortranarray(V, dtype=PETSc.ScalarType),
                                    comm=self.comm)
        P = A.transposeMatMult(D) if transpose else A.matMult(D)
        out = np.array(P.getDenseArray(), copy=True).reshape(nloc, k)
        P.destroy()
        D.destroy()
        return out

    def solve(self, rhs_local: np.ndarray, x0: np.ndarray | None = None) -> tuple[np.ndarray, SolveInfo]:
        self.b.array[:] = rhs_local
        self.ksp.setInitialGuessNonzero(x0 is not None)
        if x0 is not None:
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

    def unused_options(self) -> list[str]:
        """Names of the config options that no PETSc object of this solver's prefix has read
        (PetscOptionsUsed); one the command line also set counts as read when its value was."""
        from .petsc_options import used

        return [n for n, u in used(list(self._config), prefix=self.prefix).items() if not u]

    def destroy(self):
        for obj in (self.ksp, self.A, self.b, self.x):
            obj.destroy()
        for key in self.db.getAll():
            self.db.delValue(key)
