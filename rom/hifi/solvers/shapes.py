"""Shape families solved: one mesh and one solve per sample (capability `geometry_solver`, e.g.
tensile_plate). Under MPI rank 0 meshes each shape and broadcasts it, so every rank assembles the same
mesh; the outputs, the problem's declared fields and scalars, are gathered on rank 0. The problem
discretizes a mesh (`discretize(mesh)`: free dofs per element, operator, load, outputs); `ShapeModel`
binds that system to PETSc (row-distributed, MPI) or SciPy."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..discretization.elasticity import vector_pattern


class ShapeModel:
    """The FOM of one mesh of a shape family on PETSc (row-distributed, MPI) or SciPy."""

    def __init__(self, problem, mesh, backend="petsc", options=None, comm=None):
        self.problem, self.mesh = problem, mesh
        self.system = problem.discretize(mesh)
        n = self.system.n
        if backend == "petsc":
            from . import petsc

            petsc.init()
            from petsc4py import PETSc

            self.comm = comm or PETSc.COMM_WORLD
            r0, r1 = petsc.ownership(n, self.comm.size, self.comm.rank)
            self.pattern = vector_pattern(self.system.element_dofs, n, (r0, r1))
            self.solver = petsc.LinearSolver(self.comm, n, r0, r1, self.pattern.indptr, self.pattern.indices, options)
        elif backend == "scipy":
            from .scipy_backend import ScipyLinearSolver

            self.comm = None
            self.pattern = vector_pattern(self.system.element_dofs, n, (0, n))
            self.solver = ScipyLinearSolver(n, self.pattern.indptr, self.pattern.indices, options)
        else:
            raise ValueError(f"backend = {backend!r}: expected 'petsc' or 'scipy'")

    @cached_property
    def stiffness_terms(self) -> np.ndarray:
        return self.system.stiffness_terms(self.pattern)

    def solve(self, mu):
        """The solution's outputs (the system's `solution`: fields and scalars on rank 0)."""
        mu = np.asarray(mu, dtype=float)
        t0 = time.perf_counter()
        self.solver.set_values(self.system.operator_values(mu, self.stiffness_terms))
        f = self.system.load(mu)
        x, info = self.solver.solve(f[self.pattern.row_start:self.pattern.row_stop])
        u = self.solver.gather(x)
        return self.system.solution(u, f, mu, info, time.perf_counter() - t0)

    def destroy(self):
        self.solver.destroy()


def solve_geometry(problem, mesh, mu, backend="petsc", options=None, comm=None):
    """One sample of a family: its mesh solved at the load parameters mu."""
    model = ShapeModel(problem, mesh, backend, options, comm)
    try:
        return model.solve(mu)
    finally:
        model.destroy()


@dataclass
class ShapeSolution:
    """One solved shape: its geometry seed, mesh, declared nodal fields and scalars, solver record."""

    seed: int
    nodes: np.ndarray
    triangles: np.ndarray
    fields: dict[str, np.ndarray]
    scalars: dict[str, float]
    converged: bool
    reason: str
    iterations: int
    seconds: float


def broadcast_mesh(make_mesh, comm=None):
    """The mesh made by rank 0 on every rank (`make_mesh` runs on rank 0 only)."""
    rank = comm.rank if comm is not None else 0
    mesh = make_mesh() if rank == 0 else None
    if comm is not None and comm.size > 1:
        mesh = comm.bcast(mesh, root=0)
    return mesh


def solve_shapes(problem, mu: np.ndarray, set_name: str, study_seed: int, backend: str = "petsc",
                 options: dict | None = None, comm=None, progress=None) -> list[ShapeSolution] | None:
    """Sample i of set `set_name` is the shape of geometry_seed(study_seed, set_name, i) under the
    inputs mu[i]; `comm` (mpi4py, None for serial) is the communicator PETSc runs on; `progress`
    (iterable, what) -> iterable wraps the loop over shapes (progress lines in the log).
    Returns the solutions on rank 0, None on the other ranks."""
    rank = comm.rank if comm is not None else 0
    out = []
    shapes = enumerate(np.atleast_2d(mu))
    if progress is not None and rank == 0:
        shapes = progress(shapes, "shapes", total=len(np.atleast_2d(mu)))
    for i, m in shapes:  # one mesh and one solve per shape
        seed = geometry_seed(study_seed, set_name, i)
        mesh = broadcast_mesh(lambda: problem.geometry(seed), comm)
        r = solve_geometry(problem, mesh, m, backend, options)  # on PETSc.COMM_WORLD
        if rank == 0:
            out.append(ShapeSolution(seed, mesh.nodes, mesh.triangles, r.fields(mesh.n_nodes), r.scalars, r.converged,
                                     r.reason, r.iterations, r.seconds))
    return out if rank == 0 else None


def geometry_seed(study_seed: int, set_name: str, index: int) -> int:
    """The seed of the shape of sample `index` of a set: independent of chunking and of the other sets."""
    set_id = {"train": 0, "test": 1, "validation": 2}[set_name]
    return int(np.random.SeedSequence([study_seed, 7919, set_id, index]).generate_state(1)[0])
