"""Newton's method on the implicit step of a nonlinear problem (capability `nonlinear`):

    R(u) = sum_e A_e r_e(u_e, u_e^n, z_e^n; mu, t_{n+1}) - F(mu, t_{n+1}) = 0,

assembled from the problem's element kernels (`element_residual`: the element residual, the internal
variables z it updates and its tangent; the affine external load) on the rows a rank owns: PETSc SNES on a
row-distributed AIJ Jacobian (the MPI path), or a serial SciPy Newton loop as the fallback. The internal
variables of the cells a rank touches live on that rank (a cell on two ranks is updated on both, from the
same values); they are committed once a step has converged, from a last evaluation at the solution."""
from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as spla

from ..discretization import fem
from .petsc import SolveInfo


def newton_stepper(problem, fom) -> NewtonStepper:
    """The Newton solver of `problem` on the backend and rows of a FullOrderModel."""
    return (SnesStepper if fom.backend == "petsc" else ScipyNewtonStepper)(problem, fom)


class NewtonStepper:
    """Residual and Jacobian of one implicit step on the rows [r0, r1) of a Pattern, and the internal
    variables of the pattern's cells: `start(mu)` before a trajectory, `step` after it."""

    def __init__(self, problem, pattern: fem.Pattern):
        self.p, self.pattern = problem, pattern
        self.n_rows = pattern.n_rows
        self.elems = pattern.elements
        dof = problem.element_dofs[self.elems]  # (n_sel, k)
        # Dofs these elements touch (owned and ghost): the vector each rank needs to evaluate R.
        self.needed = np.unique(dof[dof >= 0])
        self.slot = np.where(dof >= 0, np.searchsorted(self.needed, np.maximum(dof, 0)), -1)
        self.row_mask = (dof >= pattern.row_start) & (dof < pattern.row_stop)
        self.row = dof[self.row_mask] - pattern.row_start
        self._keep = pattern.entry_slot >= 0
        self.start(None)

    def start(self, mu):
        """A new trajectory at mu: the initial internal variables and the fixed dofs' element values."""
        self.z = self.p.initial_internal(len(self.elems))
        self.fixed_e = 0.0 if mu is None else self.p.fixed_element_values(mu)[self.elems]
        self._last = None

    def reset(self, z: np.ndarray):
        """Continue from the internal variables z of the pattern's cells (the adaptive ROM's full-order step)."""
        self.z = np.array(z, dtype=float)
        self._last = None

    def element_values(self, u_needed: np.ndarray) -> np.ndarray:
        return np.where(self.slot >= 0, np.append(u_needed, 0.0)[self.slot], self.fixed_e)

    def _evaluate(self, ue: np.ndarray, ue_prev: np.ndarray, mu, t: float):
        """The element residuals, internal variables and tangents at ue, kept for the Jacobian that
        follows the residual at the same iterate."""
        if self._last is None or not np.array_equal(self._last[0], ue):
            self._last = (ue.copy(), *self.p.element_residual(self.elems, ue, ue_prev, self.z, mu, t, tangent=True))
        return self._last[1:]

    def residual(self, ue: np.ndarray, ue_prev: np.ndarray, mu, t: float) -> np.ndarray:
        re, _, _ = self._evaluate(ue, ue_prev, mu, t)
        r = np.bincount(self.row, weights=re[self.row_mask], minlength=self.n_rows)
        c = self.p.external_coefficients(mu, t)
        return r - c @ self.p.external_terms(self.pattern) if len(c) else r

    def jacobian_values(self, ue: np.ndarray, ue_prev: np.ndarray, mu, t: float) -> np.ndarray:
        _, _, Je = self._evaluate(ue, ue_prev, mu, t)
        return np.bincount(self.pattern.entry_slot[self._keep], weights=Je.reshape(-1)[self._keep],
                           minlength=self.pattern.nnz)

    def commit(self, ue: np.ndarray, ue_prev: np.ndarray, mu, t: float):
        """The internal variables at the converged state become the step's."""
        _, z, _ = self._evaluate(ue, ue_prev, mu, t)
        self.z = z
        self._last = None


class SnesStepper(NewtonStepper):
    """PETSc SNES (Newton line search by default; every -snes_* / -ksp_* / -pc_* option applies) with
    a ghost scatter that brings each rank the dof values of the elements touching its rows."""

    def __init__(self, problem, fom):
        from . import petsc

        super().__init__(problem, fom.pattern)
        PETSc = petsc.init()
        self.PETSc, self.comm = PETSc, fom.comm
        n, nloc = problem.mesh.n_dofs, self.n_rows
        self.x = PETSc.Vec().createMPI((nloc, n), comm=self.comm)
        self.r = self.x.duplicate()
        self.ghost = PETSc.Vec().createSeq(len(self.needed))
        index = PETSc.IS().createGeneral(self.needed.astype(PETSc.IntType), comm=PETSc.COMM_SELF)
        self.scatter = PETSc.Scatter().create(self.x, index, self.ghost, None)
        self._indptr = np.asarray(self.pattern.indptr, dtype=PETSc.IntType)
        self._indices = np.asarray(self.pattern.indices, dtype=PETSc.IntType)
        self.J = petsc.aij(self.comm, n, self.pattern.row_start, self.pattern.row_stop, self._indptr, self._indices)
        self.snes = PETSc.SNES().create(comm=self.comm)
        self.snes.setOptionsPrefix(fom.solver.prefix)  # the FOM's options (config and command line)
        self.snes.setFunction(self._residual, self.r)
        self.snes.setJacobian(self._jacobian, self.J)
        if hasattr(problem, "near_null_space"):  # rigid-body modes: what GAMG needs for a vector problem
            modes = problem.near_null_space()[:, self.pattern.row_start:self.pattern.row_stop]
            vecs = []
            for m in modes:
                v = self.x.duplicate()
                v.array[:] = m
                vecs.append(v)
            for i, v in enumerate(vecs):  # Gram-Schmidt: MatNullSpace expects orthonormal vectors
                for u in vecs[:i]:
                    v.axpy(-v.dot(u), u)
                v.normalize()
            self.J.setNearNullSpace(PETSc.NullSpace().create(vectors=vecs, comm=self.comm))
        # Defaults for a nonsymmetric Jacobian; the options database (config, command line) wins.
        self.snes.setTolerances(rtol=1e-10, atol=1e-12, max_it=30)
        self.snes.getKSP().setType("gmres")
        self.snes.getKSP().getPC().setType("bjacobi" if self.comm.size > 1 else "ilu")
        self.snes.getKSP().setTolerances(rtol=1e-10)
        self.snes.setFromOptions()
        self._names = petsc.reason_names(PETSc.SNES.ConvergedReason)
        self._mu, self._t, self._ue_prev = None, 0.0, None

    def _ghosted(self, X) -> np.ndarray:
        self.scatter.scatter(X, self.ghost, addv=False, mode=self.PETSc.ScatterMode.FORWARD)
        return self.element_values(self.ghost.array)

    def _residual(self, snes, X, F):
        F.array[:] = self.residual(self._ghosted(X), self._ue_prev, self._mu, self._t)

    def _jacobian(self, snes, X, J, P):
        P.zeroEntries()
        P.setValuesCSR(self._indptr, self._indices,
                       self.jacobian_values(self._ghosted(X), self._ue_prev, self._mu, self._t))
        P.assemble()
        if J != P:
            J.assemble()

    def step(self, u_local: np.ndarray, t: float, mu) -> tuple[np.ndarray, SolveInfo]:
        self._last = None  # nothing of an earlier step (another t, z or u_n) is reused
        self.x.array[:] = u_local
        self._ue_prev = self._ghosted(self.x)
        self._mu, self._t = np.asarray(mu, dtype=float), t
        self.snes.solve(None, self.x)  # the previous state is the initial guess
        reason = int(self.snes.getConvergedReason())
        if reason > 0:
            self.commit(self._ghosted(self.x), self._ue_prev, self._mu, t)
        its = int(self.snes.getLinearSolveIterations())
        norm = float(self.snes.getFunctionNorm())
        return self.x.array.copy(), SolveInfo(reason > 0, self._names.get(reason, str(reason)), its, norm)

    def gather(self, x_local, root: int = 0):
        parts = self.comm.tompi4py().gather(np.asarray(x_local), root=root)
        return np.concatenate(parts) if parts is not None else None


class ScipyNewtonStepper(NewtonStepper):
    """Serial fallback: Newton's method with a sparse LU of the Jacobian at every iteration."""

    def __init__(self, problem, fom, rtol: float = 1e-10, max_it: int = 30, stol: float = 1e-12):
        super().__init__(problem, fom.pattern)
        self.rtol, self.max_it, self.stol = rtol, max_it, stol

    def step(self, u: np.ndarray, t: float, mu) -> tuple[np.ndarray, SolveInfo]:
        """Newton until the residual falls by rtol from the step's start or, as SNES's step test, the update
        is below stol of the state (a step whose starting residual is already near rounding: a hold)."""
        self._last = None
        mu = np.asarray(mu, dtype=float)
        ue_prev = self.element_values(u)
        u = u.copy()
        r0 = None
        for it in range(self.max_it + 1):
            ue = self.element_values(u)
            r = self.residual(ue, ue_prev, mu, t)
            norm = float(np.linalg.norm(r))
            r0 = norm if r0 is None else r0
            if norm <= self.rtol * max(r0, 1e-300) or norm < 1e-12:
                self.commit(ue, ue_prev, mu, t)
                return u, SolveInfo(True, "CONVERGED_FNORM_RELATIVE", it, norm)
            if it == self.max_it:
                break
            J = self.pattern.to_scipy(self.jacobian_values(ue, ue_prev, mu, t))
            du = spla.spsolve(J.tocsc(), r)
            u -= du
            if not np.all(np.isfinite(u)):
                return u, SolveInfo(False, "DIVERGED_NANORINF", it, float("nan"))
            if np.linalg.norm(du) <= self.stol * np.linalg.norm(u):
                ue = self.element_values(u)
                norm = float(np.linalg.norm(self.residual(ue, ue_prev, mu, t)))
                self.commit(ue, ue_prev, mu, t)
                return u, SolveInfo(True, "CONVERGED_SNORM_RELATIVE", it + 1, norm)
        return u, SolveInfo(False, "DIVERGED_MAX_IT", self.max_it, norm)

    def gather(self, x_local, root: int = 0):
        return x_local
