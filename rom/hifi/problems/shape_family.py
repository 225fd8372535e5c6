"""Shape families read, not solved (problems with fixed_mesh = False): the `mesh_family` problem of
families read from files or PLAID datasets, and the uniform inputs tests and benchmarks draw for a
family (rom.hifi.solvers.shapes solves the families that mesh themselves, e.g. tensile_plate)."""
from __future__ import annotations

import numpy as np

from .. import capabilities as cap
from ..capabilities import ParameterSpace
from .base import P1Problem


def uniform_inputs(problem, n: int, seed: int) -> np.ndarray:
    """n inputs drawn uniformly in the problem's default box (tests and benchmarks)."""
    lo, hi = problem.default_bounds.T
    return lo + (hi - lo) * np.random.default_rng(seed).uniform(size=(n, len(lo)))


class MeshFamily(P1Problem):
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
