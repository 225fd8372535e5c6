"""Full-order solves of a problem for a batch of parameters, on PETSc (under MPI) or SciPy.

Only rank 0 receives gathered solutions; every rank takes part in every solve."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import capabilities as cap
from . import fem


@dataclass
class Sample:
    """One solved parameter: the gathered field on rank 0 (None elsewhere) and solver facts."""

    u: np.ndarray | None
    converged: bool
    reason: str
    iterations: int
    seconds: float


class FullOrderModel:
    """A problem bound to a linear-solver backend on a row range of its free dofs."""

    def __init__(self, problem, backend: str = "petsc", options: dict | None = None, comm=None):
        self.problem = problem
        n = problem.mesh.n_dofs
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

    @property
    def rank(self) -> int:
        return 0 if self.comm is None else self.comm.rank

    def solve(self, mu: np.ndarray) -> Sample:
        """Stationary solve A(mu) u = f(mu)."""
        t0 = time.perf_counter()
        self.solver.set_values(self.problem.operator_values(mu, self.pattern))
        x, info = self.solver.solve(self.problem.rhs(mu, self.pattern))
        u = self.solver.gather(x)
        return Sample(u, info.converged, info.reason, info.iterations, time.perf_counter() - t0)

    def trajectory(self, mu: np.ndarray) -> Iterator[tuple[int, float, np.ndarray | None, object]]:
        """Implicit Euler steps of a transient problem: yields (step, time, gathered u or None, info)
        as soon as each step is solved, so a streaming client can send it at once."""
        p = self.problem
        if cap.NONLINEAR in p.capabilities:  # nonlinear problems bring their own (Newton) time stepping
            yield from p.trajectory(self, mu)
            return
        # The step matrix M + dt A(mu) is set up again only when it changes (never, for the heat
        # problem, whose theta does not depend on mu): the preconditioner is built once per matrix.
        key = tuple(np.round(p.theta(np.atleast_2d(mu))[0], 15)) if cap.AFFINE in p.capabilities else tuple(mu)
        if getattr(self, "_step_key", None) != key:
            self.solver.set_values(p.operator_values(mu, self.pattern))
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

    def solve_trajectory(self, mu: np.ndarray) -> Sample:
        """A whole transient trajectory, (steps + 1, n_dofs) on rank 0."""
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
        return self.solve_trajectory(mu) if cap.TRANSIENT in self.problem.capabilities else self.solve(mu)

    def solve_samples(self, mus: np.ndarray, each=None) -> list[Sample]:
        """Every sample in order (one PETSc solve or trajectory each); `each(i, sample)` after each."""
        out = []
        for i, mu in enumerate(np.atleast_2d(mus)):
            out.append(self.solve_sample(mu))
            if each is not None:
                each(i, out[-1])
        return out
