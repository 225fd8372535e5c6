"""Nonlinear transient heat conduction with a moving heat source (Casenave, Akkari et al., error-indicator-based adaptive ROM for turbine blades).

    rho_c u_t - div(k(u) grad u) = q(x, t; mu)  on the unit square,  u = 0 on the boundary,  u(0) = 0,
    k(u) = k0 (1 + beta u^2),
    q(x, t; mu) = q0 exp(-|x - c(t)|^2 / (2 s^2)),  c(t) = (x_source + travel * t / T, y_source).

The start of the source (x_source, y_source) decides where the heat goes: the solutions form a
family dominated by translation, whose Kolmogorov n-width is large for one global basis and small
inside each region (the regimes that local bases exploit); q0 sets the temperature, hence how
strongly the conductivity departs from k0 (the nonlinear regime).

Discretization: P1 elements, k evaluated per element at the mean of its three nodal values, and
implicit Euler. Each step solves the nonlinear system
    R(u) = rho_c M (u - u_n) + dt (N(u) - F(t_{n+1})) = 0,   N(u) = sum_e k(ubar_e) K_e u_e,
by Newton's method: PETSc SNES on a row-distributed AIJ Jacobian (the MPI path), or a serial SciPy
Newton loop as the fallback. The element kernels below are shared with the hyper-reduced ROM,
which evaluates them on a few elements only."""
from __future__ import annotations

import time
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from . import capabilities as cap
from . import fem
from .capabilities import ParameterSpace
from .mesh import unit_square
from .petsc import SolveInfo
from .problems import UNIT_SQUARE_MESH, Problem, number_range

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}


class NonlinearHeat(Problem):
    name = "nonlinear_heat"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT, cap.NONLINEAR})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "dt": {**_POSITIVE, "default": 0.002}, "steps": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 25},
        "rho_c": {**_POSITIVE, "default": 1.0}, "k0": {**_POSITIVE, "default": 1.0},
        "beta": {"type": "number", "minimum": 0, "default": 1.0}, "source_width": {**_POSITIVE, "default": 0.1},
        "travel": {"type": "number", "default": 0.2},
        "x_source_range": number_range((0.2, 0.5)), "y_source_range": number_range((0.2, 0.8)),
        "q0_range": number_range((40.0, 120.0)),
    }
    units = "K"

    def __init__(self, mesh_n: int = 24, dt: float = 0.002, steps: int = 25, rho_c: float = 1.0, k0: float = 1.0,
                 beta: float = 1.0, source_width: float = 0.1, travel: float = 0.2,
                 x_source_range=(0.2, 0.5), y_source_range=(0.2, 0.8), q0_range=(40.0, 120.0)):
        super().__init__(unit_square(mesh_n))
        self.dt, self.steps = float(dt), int(steps)
        self.rho_c, self.k0, self.beta = float(rho_c), float(k0), float(beta)
        self.source_width, self.travel = float(source_width), float(travel)
        self.ranges = np.array([x_source_range, y_source_range, q0_range], dtype=float)

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        keys = ("x_source_range", "y_source_range", "q0_range")
        defaults = ((0.2, 0.5), (0.2, 0.8), (40.0, 120.0))
        return ParameterSpace(("x_source", "y_source", "q0"), [args.get(k, d) for k, d in zip(keys, defaults)],
                              units=("1", "1", "K/s"))

    def arguments_used(self):
        return dict(zip(("x_source_range", "y_source_range", "q0_range"), map(tuple, self.ranges)))

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    # -- element kernels (any subset of elements; vectorized over it) -------------------------
    @cached_property
    def stiffness_e(self) -> np.ndarray:
        return fem.stiffness_local(self.mesh)

    @cached_property
    def mass_e(self) -> np.ndarray:
        return fem.mass_local(self.mesh)

    @cached_property
    def gradients_e(self) -> np.ndarray:
        return fem.p1_gradients(self.mesh)

    @cached_property
    def quadrature_points(self) -> np.ndarray:
        """Degree-2 quadrature points of every element, (n_tri, 3, 2)."""
        return np.einsum("qi,eid->eqd", fem._QUAD_BARY, self.mesh.nodes[self.mesh.triangles])

    def k_of(self, ubar: np.ndarray) -> np.ndarray:
        """k(ubar) = k0 (1 + beta ubar^2) at element mean temperatures ubar."""
        return self.k0 * (1.0 + self.beta * ubar ** 2)

    def dk_of(self, ubar: np.ndarray) -> np.ndarray:
        """dk/dubar = 2 k0 beta ubar."""
        return 2.0 * self.k0 * self.beta * ubar

    def conductivity(self, ue: np.ndarray) -> np.ndarray:
        """k(ubar_e) per element from element nodal values ue (..., 3)."""
        return self.k_of(ue.mean(axis=-1))

    def source_centre(self, mu, t) -> np.ndarray:
        """Centre of the source, (..., 2) for parameters mu (..., 3) and times t (...)."""
        mu = np.asarray(mu, dtype=float)
        T = self.dt * self.steps
        return np.stack([mu[..., 0] + self.travel * np.asarray(t) / T, mu[..., 1]], axis=-1)

    def element_load(self, elems: np.ndarray, mu, t) -> np.ndarray:
        """int q(., t; mu) phi_i on the elements `elems`: (n_sel, 3) for one (mu, t), (b, n_sel, 3) for
        parameters mu (b, 3) and times t (b,)."""
        mu = np.asarray(mu, dtype=float)
        c = self.source_centre(mu, t)[..., None, None, :]
        xq = self.quadrature_points[elems]
        q = mu[..., 2, None, None] * np.exp(-((xq - c) ** 2).sum(axis=-1) / (2 * self.source_width ** 2))
        return self.mesh.areas[elems, None] * (q @ (fem._QUAD_W[:, None] * fem._QUAD_BARY))

    def element_g(self, elems: np.ndarray, ue: np.ndarray, mu, t: float) -> np.ndarray:
        """Element vectors of the nonlinear term g(u, t) = N(u) - F(t), (n_sel, 3)."""
        k = self.conductivity(ue)
        return k[:, None] * np.einsum("eij,ej->ei", self.stiffness_e[elems], ue) - self.element_load(elems, mu, t)

    def element_g_jacobian(self, elems: np.ndarray, ue: np.ndarray) -> np.ndarray:
        """d g_e / d u_e, (n_sel, 3, 3): k K_e + (K_e u_e) (dk/du_j), dk/du_j = 2 k0 beta ubar / 3."""
        Ke = self.stiffness_e[elems]
        ubar = ue.mean(axis=-1)
        Ku = np.einsum("eij,ej->ei", Ke, ue)
        dk = self.dk_of(ubar) / 3.0
        return self.k_of(ubar)[:, None, None] * Ke + Ku[:, :, None] * dk[:, None, None]

    # -- whole-mesh evaluations (snapshots of the nonlinear term and of the flux) ---------------
    def element_values(self, u: np.ndarray) -> np.ndarray:
        """Element nodal values (..., n_tri, 3) of free-dof vectors u (..., n_dofs); 0 on the boundary."""
        return self.mesh.full_field(u, 0.0)[..., self.mesh.triangles]

    @cached_property
    def assembly(self) -> sp.csr_matrix:
        """(n_dofs, 3 n_tri) sum of element vectors into free dofs (boundary rows dropped)."""
        dof = self.mesh.dof_of_node[self.mesh.triangles].ravel()
        keep = np.flatnonzero(dof >= 0)
        return sp.csr_matrix((np.ones(len(keep)), (dof[keep], keep)), shape=(self.mesh.n_dofs, len(dof)))

    def g_vectors(self, U: np.ndarray, mu: np.ndarray, t: np.ndarray, chunk: int = 32) -> np.ndarray:
        """g(u_b, t_b; mu_b) = N(u_b) - F(t_b; mu_b) at every free dof, for states U (b, n_dofs),
        parameters mu (b, 3) and times t (b,)."""
        U, mu, t = np.atleast_2d(U), np.atleast_2d(mu), np.atleast_1d(t)
        allel = np.arange(len(self.mesh.triangles))
        out = np.empty_like(U, dtype=float)
        for s in range(0, len(U), chunk):  # chunks bound the (chunk, n_tri, 3) temporaries
            ue = self.element_values(U[s:s + chunk])
            ge = self.conductivity(ue)[..., None] * np.einsum("eij,bej->bei", self.stiffness_e, ue)
            ge -= self.element_load(allel, mu[s:s + chunk], t[s:s + chunk])
            out[s:s + chunk] = (self.assembly @ ge.reshape(len(ue), -1).T).T
        return out

    def g_vector(self, u: np.ndarray, mu, t: float) -> np.ndarray:
        """g(u, t) = N(u) - F(t) at every free dof."""
        return self.g_vectors(u[None], np.asarray(mu, dtype=float)[None], np.array([t]))[0]

    def flux_field(self, U: np.ndarray) -> np.ndarray:
        """Heat flux of states U (n, n_dofs) on every element, flattened to (n, 2 n_tri)."""
        ue = self.element_values(np.atleast_2d(U))  # (n, n_tri, 3)
        grad = np.einsum("eik,nei->nek", self.gradients_e, ue)
        return (-self.conductivity(ue)[..., None] * grad).reshape(len(ue), -1)

    def initial_state(self, mu, n_rows: int) -> np.ndarray:
        return np.zeros(n_rows)

    # -- full-order time stepping ---------------------------------------------------------------
    def stepper(self, fom) -> "Stepper":
        """The Newton solver bound to a FullOrderModel (cached on it: built once per process)."""
        if getattr(fom, "_nonlinear_stepper", None) is None:
            cls = SnesStepper if fom.backend == "petsc" else ScipyNewtonStepper
            fom._nonlinear_stepper = cls(self, fom)
        return fom._nonlinear_stepper

    def trajectory(self, fom, mu):
        """Implicit Euler steps: yields (step, time, gathered u or None, info) as each is solved."""
        stepper = self.stepper(fom)
        u = np.zeros(stepper.n_rows)
        yield 0, 0.0, stepper.gather(u), None
        for k in range(1, self.steps + 1):
            u, info = stepper.step(u, k * self.dt, mu)
            yield k, k * self.dt, stepper.gather(u), info
            if not info.converged:
                return


class Stepper:
    """Residual and Jacobian of one implicit Euler step on the rows [r0, r1) of a Pattern."""

    def __init__(self, problem: NonlinearHeat, pattern: fem.Pattern):
        self.p, self.pattern = problem, pattern
        self.n_rows = pattern.n_rows
        self.elems = pattern.elements
        dof = problem.mesh.dof_of_node[problem.mesh.triangles[self.elems]]  # (n_sel, 3)
        # Dofs these elements touch (owned and ghost): the vector each rank needs to evaluate R.
        self.needed = np.unique(dof[dof >= 0])
        self.slot = np.where(dof >= 0, np.searchsorted(self.needed, np.maximum(dof, 0)), -1)
        self.row_mask = (dof >= pattern.row_start) & (dof < pattern.row_stop)
        self.row = dof[self.row_mask] - pattern.row_start
        self.Me = problem.mass_e[self.elems]

    def element_values(self, u_needed: np.ndarray) -> np.ndarray:
        return np.where(self.slot >= 0, np.append(u_needed, 0.0)[self.slot], 0.0)

    def residual(self, ue: np.ndarray, ue_prev: np.ndarray, mu, t: float) -> np.ndarray:
        p = self.p
        re = p.rho_c * np.einsum("eij,ej->ei", self.Me, ue - ue_prev) + p.dt * p.element_g(self.elems, ue, mu, t)
        return np.bincount(self.row, weights=re[self.row_mask], minlength=self.n_rows)

    def jacobian_values(self, ue: np.ndarray) -> np.ndarray:
        p = self.p
        Je = p.rho_c * self.Me + p.dt * p.element_g_jacobian(self.elems, ue)
        keep = self.pattern.entry_slot >= 0
        return np.bincount(self.pattern.entry_slot[keep], weights=Je.reshape(-1)[keep], minlength=self.pattern.nnz)


class SnesStepper(Stepper):
    """PETSc SNES (Newton line search by default; every -snes_* / -ksp_* / -pc_* option applies) with
    a ghost scatter that brings each rank the dof values of the elements touching its rows."""

    def __init__(self, problem: NonlinearHeat, fom):
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
        P.setValuesCSR(self._indptr, self._indices, self.jacobian_values(self._ghosted(X)))
        P.assemble()
        if J != P:
            J.assemble()

    def step(self, u_local: np.ndarray, t: float, mu) -> tuple[np.ndarray, SolveInfo]:
        self.x.array[:] = u_local
        self._ue_prev = self._ghosted(self.x)
        self._mu, self._t = np.asarray(mu, dtype=float), t
        self.snes.solve(None, self.x)  # the previous state is the initial guess
        reason = int(self.snes.getConvergedReason())
        its = int(self.snes.getLinearSolveIterations())
        norm = float(self.snes.getFunctionNorm())
        return self.x.array.copy(), SolveInfo(reason > 0, self._names.get(reason, str(reason)), its, norm)

    def gather(self, x_local, root: int = 0):
        parts = self.comm.tompi4py().gather(np.asarray(x_local), root=root)
        return np.concatenate(parts) if parts is not None else None


class ScipyNewtonStepper(Stepper):
    """Serial fallback: Newton's method with a sparse LU of the Jacobian at every iteration."""

    def __init__(self, problem: NonlinearHeat, fom, rtol: float = 1e-10, max_it: int = 30):
        super().__init__(problem, fom.pattern)
        self.rtol, self.max_it = rtol, max_it

    def step(self, u: np.ndarray, t: float, mu) -> tuple[np.ndarray, SolveInfo]:
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
                return u, SolveInfo(True, "CONVERGED_FNORM_RELATIVE", it, norm)
            if it == self.max_it:
                break
            J = self.pattern.to_scipy(self.jacobian_values(ue))
            u -= spla.spsolve(J.tocsc(), r)
            if not np.all(np.isfinite(u)):
                return u, SolveInfo(False, "DIVERGED_NANORINF", it, float("nan"))
        return u, SolveInfo(False, "DIVERGED_MAX_IT", self.max_it, norm)

    def gather(self, x_local, root: int = 0):
        return x_local


def fom_step_function(problem: NonlinearHeat, backend: str = "petsc", options: dict | None = None):
    """A serial callback (u_n, t_next, mu) -> u_{n+1} (full free-dof vectors) for the adaptive ROM."""
    from .solve import FullOrderModel

    comm = None
    if backend == "petsc":
        from . import petsc

        comm = petsc.init().COMM_SELF
    stepper = problem.stepper(FullOrderModel(problem, backend, options, comm=comm))

    def step(u, t, mu):
        t0 = time.perf_counter()
        u1, info = stepper.step(np.asarray(u, dtype=float), t, mu)
        if not info.converged:
            raise RuntimeError(f"full-order step to t = {t:.4g} failed: {info.reason}")
        step.seconds += time.perf_counter() - t0
        return u1

    step.seconds = 0.0
    return step
