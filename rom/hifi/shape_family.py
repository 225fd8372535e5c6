"""Shape families (problems with fixed_mesh = False): solving one (e.g. tensile_plate: one mesh and
one solve per sample; under MPI rank 0 meshes each shape and broadcasts it, so every rank
assembles the same mesh, and the outputs, the problem's declared fields and scalars, are gathered
on rank 0), and the `mesh_family` problem of families read from files or PLAID datasets."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import capabilities as cap
from .capabilities import ParameterSpace
from .problems import Problem


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
    from .elasticity import PlateMesh, PlateModel, geometry_seed

    rank = comm.rank if comm is not None else 0
    out = []
    shapes = enumerate(np.atleast_2d(mu))
    if progress is not None and rank == 0:
        shapes = progress(shapes, "shapes", total=len(np.atleast_2d(mu)))
    for i, m in shapes:  # one mesh and one solve per shape
        seed = geometry_seed(study_seed, set_name, i)
        mesh = broadcast_mesh(lambda: problem.geometry(seed), comm)
        fom = PlateModel(problem, PlateMesh(mesh.nodes, mesh.triangles), backend, options)  # PETSc.COMM_WORLD
        r = fom.solve(m)
        fom.destroy()
        if rank == 0:
            out.append(ShapeSolution(seed, mesh.nodes, mesh.triangles, r.fields(mesh.n_nodes), r.scalars, r.converged,
                                     r.reason, r.iterations, r.seconds))
    return out if rank == 0 else None


def uniform_inputs(problem, n: int, seed: int) -> np.ndarray:
    """n inputs drawn uniformly in the problem's default box (tests and benchmarks)."""
    lo, hi = problem.default_bounds.T
    return lo + (hi - lo) * np.random.default_rng(seed).uniform(size=(n, len(lo)))


class MeshFamily(Problem):
    """A shape family read, not solved: user mesh files (`source: files`, a folder with an index
    CSV: file, set, inputs, output scalars) or a PLAID dataset (`source: plaid`, its problem
    definition's train / test splits). `inputs` names the scalar inputs; the outputs are declared
    in the mmgp section. The design's parameters do not apply (default_bounds is a placeholder box):
    simulate-geometries reads each set's inputs from the family itself."""

    name = "mesh_family"
    capabilities = frozenset({cap.PARAMETERS, cap.GEOMETRY_FAMILY})
    SOURCES = ("files", "plaid")
    arguments = {
        "source": {"enum": list(SOURCES), "default": "files",
                   "description": "files: a folder of mesh files with an index CSV; plaid: a PLAID dataset"},
        "path": {"type": "string", "x-path": True, "description": "the family's folder (relative to the study file)"},
        "inputs": {"type": "array", "items": {"type": "string"}, "default": [],
                   "description": "names of the scalar inputs (columns of the index, or PLAID scalars)"},
        "index": {"type": "string", "default": "samples.csv"},
        "problem_definition": {"type": ["string", "null"], "default": None},
    }
    # The outputs of a read family are declared in the study's mmgp section (fields, scalars, units).
    output_fields: dict = {}
    output_scalars: dict = {}

    def __init__(self, mesh_n: int = 0, source: str = "files", path: str = "", inputs=(), index: str = "samples.csv",
                 problem_definition: str | None = None):
        super().__init__(None)
        if source not in self.SOURCES:
            raise ValueError(f"source = {source!r}: expected one of {list(self.SOURCES)}")
        if not path:
            raise ValueError("path: missing; expected the folder of the family (mesh files + index, or a PLAID dataset)")
        self.source, self.path, self.index = source, str(path), str(index)
        self.inputs, self.problem_definition = [str(n) for n in inputs], problem_definition

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        names = tuple(str(n) for n in args.get("inputs", ()))
        return ParameterSpace(names, np.tile([0.0, 1.0], (len(names), 1)))

    def arguments_used(self):
        return {"inputs": self.inputs}
