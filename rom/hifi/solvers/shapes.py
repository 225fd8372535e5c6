"""Shape families solved: one mesh and one solve per sample (capability `geometry_solver`, e.g.
tensile_plate). Under MPI rank 0 meshes each shape and broadcasts it, so every rank assembles the same
mesh; the outputs, the problem's declared fields and scalars, are gathered on rank 0. The problem
discretizes a mesh (`discretize(mesh)`: a problem on that one mesh, with its affine terms and outputs);
`ShapeModel` solves it with the one full-order model (solve.FullOrderModel) on PETSc (row-distributed,
MPI) or SciPy."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .solve import FullOrderModel


class ShapeModel:
    """The FOM of one mesh of a shape family: the problem's system on that mesh bound to PETSc
    (row-distributed, MPI) or SciPy by FullOrderModel."""

    def __init__(self, problem, mesh, backend="petsc", options=None, comm=None):
        self.problem, self.mesh = problem, mesh
        self.system = problem.discretize(mesh)
        self.fom = FullOrderModel(self.system, backend, options, comm)

    @property
    def pattern(self):
        return self.fom.pattern

    def solve(self, mu):
        """The solution's outputs (the system's `solution`: fields and scalars on rank 0)."""
        mu = np.asarray(mu, dtype=float)
        return self.system.solution(mu, self.fom.solve(mu))

    def destroy(self):
        self.fom.solver.destroy()


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
