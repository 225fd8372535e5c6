"""Full-order solves of a problem for a batch of parameters, on PETSc (under MPI) or SciPy, or by a
black box (rom.hifi.problems.external: the user's command per sample, under the MPI launcher itself).
Linear steps and stationary solves go through the backend's linear solver, a nonlinear problem's
steps through Newton's method (rom.hifi.solvers.nonlinear).

Only rank 0 receives gathered solutions; every rank takes part in every solve."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import capabilities as cap
from ..capabilities import Sample
from ..discretization import fem
from ..discretization.operators import peak_memory_mb
from .nonlinear import NewtonStepper, newton_stepper


class FullOrderModel:
    """A problem bound to a linear-solver backend on a row range of its free dofs. A black-box problem
    (`black_box`) runs its command per sample instead, on `ranks` MPI ranks; `assembly` holds the
    seconds and peak memory of the pattern and of the first operator and load assembly."""

    def __init__(self, problem, backend: str = "petsc", options: dict | None = None, comm=None, ranks: int = 1):
        self.problem = problem
        n = problem.mesh.n_dofs
        t0 = time.perf_counter()
        self.ranks = int(ranks)
        if getattr(problem, "black_box", False):
            self.comm, self.solver, self.backend = None, None, "external"
            self.pattern = fem.Pattern.build(problem.mesh)
            self.assembly = {"pattern_seconds": time.perf_counter() - t0}
            return
        if backend == "petsc":
            from . import petsc

            petsc.init()
            from petsc4py import PETSc

            self.comm = comm or PETSc.COMM_WORLD
            r0, r1 = petsc.ownership(n, self.comm.size, self.comm.rank)
            self.pattern = fem.Pattern.build(problem.mesh, (r0, r1))
            self.solver = petsc.LinearSolver(self.comm, n, r0, r1, self.pattern.indptr, self.pattern.indices, options)
        elif backend == "scipy":
            from .scipy_backend import ScipyLinearSolver

            self.comm = None
            self.pattern = fem.Pattern.build(problem.mesh)
            self.solver = ScipyLinearSolver(n, self.pattern.indptr, self.pattern.indices, options)
        else:
            raise ValueError(f"backend = {backend!r}: expected 'petsc' or 'scipy'")
        self.backend = backend
        self.assembly = {"pattern_seconds": time.perf_counter() - t0}

    def assembled(self, values_of, mu):
        """The operator values and load of the first solve, timed (later ones come from cached terms)."""
        if "operator_seconds" in self.assembly:
            return values_of(mu, self.pattern)
        t0 = time.perf_counter()
        values = values_of(mu, self.pattern)
        self.assembly["operator_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.problem.rhs(mu, self.pattern)
        self.assembly["rhs_seconds"] = time.perf_counter() - t0
        self.assembly["peak_memory_mb"] = peak_memory_mb()
        return values

    def assembly_report(self) -> dict:
        """`assembly` with the slowest rank's seconds and the largest rank's peak memory."""
        out = dict(self.assembly)
        if self.comm is not None and self.comm.size > 1:
            from mpi4py import MPI

            comm = self.comm.tompi4py()
            out = {k: comm.allreduce(v, op=MPI.MAX) for k, v in sorted(out.items())}
        return out

    def session(self):
        """A context for a run of samples (a chunk): a persistent black box's worker lives through it
        (rom.hifi.problems.external_worker); nothing for any other problem."""
        if getattr(self.problem, "persistent", False):
            return self.problem.session(self.ranks)
        return nullcontext()

    @property
    def rank(self) -> int:
        return 0 if self.comm is None else self.comm.rank

    def solve(self, mu: np.ndarray) -> Sample:
        """Stationary solve A(mu) u = f(mu)."""
        if self.solver is None:
            return self.problem.run(mu, self.ranks)
        t0 = time.perf_counter()
        self.solver.set_values(self.assembled(self.problem.operator_values, mu))
        x, info = self.solver.solve(self.problem.rhs(mu, self.pattern))
        u = self.solver.gather(x)
        return Sample(u, info.converged, info.reason, info.iterations, time.perf_counter() - t0)

    def trajectory(self, mu: np.ndarray) -> Iterator[tuple[int, float, np.ndarray | None, object]]:
        """Implicit Euler steps of a transient problem: yields (step, time, gathered u or None, info)
        as soon as each step is solved, so a streaming client can send it at once."""
        p = self.problem
        if self.solver is None:  # a black box delivers the whole trajectory at once
            s = p.run(mu, self.ranks)
            info = _BlackBoxStep(s.converged, s.reason, s.iterations)
            yield 0, 0.0, s.u[0] if s.converged else None, None
            for k in range(1, p.steps + 1):
                yield k, k * p.dt, s.u[k] if s.converged else None, info
                if not s.converged:
                    return
            return
        if cap.has(p, cap.NONLINEAR):
            yield from self._newton_trajectory(mu)
            return
        # The step matrix M + dt A(mu) is set up again only when it changes (never, for the heat
        # problem, whose theta does not depend on mu): the preconditioner is built once per matrix.
        key = tuple(np.round(p.theta(np.atleast_2d(mu))[0], 15)) if cap.has(p, cap.AFFINE) else tuple(mu)
        if getattr(self, "_step_key", None) != key:
            self.solver.set_values(self.assembled(p.operator_values, mu))
            self._step_key = key
        if not hasattr(self, "_mass"):
            self._mass = self.solver.operator(p.mass_product(self.pattern))
        lift = p.rhs(mu, self.pattern)
        u = p.initial_state(mu, self.pattern.n_rows)
        yield 0, 0.0, self.solver.gather(u), None
        for k in range(1, p.steps + 1):
            u, info = self.solver.solve(self._mass(u) + lift, x0=u)
            yield k, k * p.dt, self.solver.gather(u), info
            if not info.converged:
                return

    @cached_property
    def newton(self) -> NewtonStepper:
        """The Newton solver of a nonlinear problem's implicit Euler step, built once per process."""
        return newton_stepper(self.problem, self)

    def _newton_trajectory(self, mu):
        stepper = self.newton
        stepper.start(mu)
        u = self.problem.initial_state(mu, stepper.n_rows)
        yield 0, 0.0, stepper.gather(u), None
        for k in range(1, self.problem.steps + 1):
            u, info = stepper.step(u, k * self.problem.dt, mu)
            yield k, k * self.problem.dt, stepper.gather(u), info
            if not info.converged:
                return

    def solve_trajectory(self, mu: np.ndarray) -> Sample:
        """A whole transient trajectory, (steps + 1, n_dofs) on rank 0."""
        if self.solver is None:
            return self.problem.run(mu, self.ranks)
        t0 = time.perf_counter()
        fields, its, last = [], 0, None
        for _, _, u, info in self.trajectory(mu):
            fields.append(u)
            if info is not None:
                its, last = its + info.iterations, info
        ok = last is not None and last.converged and len(fields) == self.problem.steps + 1
        U = np.stack(fields) if self.rank == 0 and ok else None
        return Sample(U, ok, last.reason if last else "NO_STEPS", its, time.perf_counter() - t0)

    def solve_sample(self, mu: np.ndarray) -> Sample:
        """One sample: a stationary solve or a whole trajectory, whichever the problem is."""
        return self.solve_trajectory(mu) if cap.has(self.problem, cap.TRANSIENT) else self.solve(mu)

    def solve_samples(self, mus: np.ndarray, each=None) -> list[Sample]:
        """Every sample in order (one PETSc solve or trajectory each); `each(i, sample)` after each."""
        out = []
        for i, mu in enumerate(np.atleast_2d(mus)):
            out.append(self.solve_sample(mu))
            if each is not None:
                each(i, out[-1])
        return out


@dataclass
class _BlackBoxStep:
    """Solver facts of a black-box trajectory, repeated for each of its steps."""

    converged: bool
    reason: str
    iterations: int


def fom_step_function(problem, backend: str = "petsc", options: dict | None = None):
    """A serial callback (u_n, t_next, mu, z_n=None) -> u_{n+1} (full free-dof vectors) of a nonlinear
    problem, for the adaptive ROM; z_n the internal variables of every cell of the mesh before the step (a
    problem with internal variables), those after it, every cell's, in `step.z`. Cells whose dofs are all
    fixed (outside the Newton pattern) are updated at their fixed values."""
    comm = None
    if backend == "petsc":
        from . import petsc

        comm = petsc.init().COMM_SELF
    stepper = FullOrderModel(problem, backend, options, comm=comm).newton
    dofs = problem.element_dofs
    outside = np.setdiff1d(np.arange(len(dofs)), stepper.elems)  # cells with fixed dofs only

    def step(u, t, mu, z=None):
        t0 = time.perf_counter()
        if step.mu is None or not np.array_equal(step.mu, mu):
            stepper.start(mu)  # the fixed dofs' values of mu
            step.mu = np.array(mu, dtype=float)
            step.fixed = problem.fixed_element_values(mu)
        z = problem.initial_internal(len(dofs)) if z is None else np.asarray(z, dtype=float)
        stepper.reset(z[stepper.elems])
        u1, info = stepper.step(np.asarray(u, dtype=float), t, mu)
        if not info.converged:
            raise RuntimeError(f"full-order step to t = {t:.4g} failed: {info.reason}")
        z1 = z.copy()
        z1[stepper.elems] = stepper.z
        if len(outside) and problem.n_internal:
            fixed = step.fixed[outside]
            z1[outside] = problem.element_residual(outside, fixed, fixed, z[outside], mu, t)[1]
        step.z = z1
        step.seconds += time.perf_counter() - t0
        return u1

    step.seconds, step.mu, step.z = 0.0, None, None
    return step
