"""The shared P1 problem: one mesh, its X and M products, and the stationary solve from the affine terms.

A problem knows its mesh, its parameters and how to assemble, for a row range of the free dofs,
the operator values and right-hand sides. Affine problems expose their components
(`operator_terms`, `theta`, `rhs_terms`, `phi`), so later stages rebuild A(mu) without mesh code.
What each problem can do is declared in `capabilities` (rom.hifi.capabilities); its study-file keys
in `arguments` (JSON-schema properties, checked by the config validator); its parameters by the
classmethod `parameter_space(args)`, which needs no mesh.
"""
from __future__ import annotations

import inspect
from functools import cached_property

import numpy as np

from .. import capabilities as cap
from ..capabilities import ParameterSpace
from ..discretization import fem
from ..discretization.mesh import TriMesh
from .arguments import UNIT_SQUARE_MESH


class P1Problem:
    """Shared implementation of the problems on one P1 mesh (capability `mesh`). Subclasses declare
    `name`, `capabilities`, `arguments` and `parameter_space`."""

    name: str = ""
    capabilities: frozenset = frozenset({cap.PARAMETERS, cap.MESH})
    arguments: dict = {"mesh": UNIT_SQUARE_MESH}
    units = "1"

    def __init__(self, mesh: TriMesh):
        self.mesh = mesh

    @classmethod
    def from_arguments(cls, args: dict):
        """The problem from its validated study-file keys (`mesh.n` is the constructor's `mesh_n`)."""
        args = dict(args)
        mesh = args.pop("mesh", None)
        if "mesh_n" in inspect.signature(cls).parameters:
            if mesh:
                args["mesh_n"] = mesh["n"]
        elif mesh is not None:
            args["mesh"] = mesh
        return cls(**args)

    # -- shorthands of rom.hifi.capabilities.has (the one way to ask), kept for existing readers ------
    @property
    def transient(self) -> bool:
        return cap.TRANSIENT in self.capabilities

    @property
    def affine(self) -> bool:
        return cap.AFFINE in self.capabilities

    @property
    def fixed_mesh(self) -> bool:
        return cap.MESH in self.capabilities

    # -- parameters (subclasses declare the classmethod parameter_space(args)) -----------------
    @cached_property
    def space(self) -> ParameterSpace:
        return self.parameter_space(self.arguments_used())

    def arguments_used(self) -> dict:
        """The study-file keys this object was built with (for its parameter space)."""
        return {}

    @property
    def parameter_names(self) -> list[str]:
        """Names of the parameters, in the order of mu."""
        return list(self.space.names)

    @property
    def default_bounds(self) -> np.ndarray:
        """(d, 2) parameter box used when the study's `parameters` section does not override it."""
        return self.space.bounds

    # -- stationary solve from the affine structure (non-affine problems override these two) -----
    def operator_values(self, mu: np.ndarray, pattern: fem.Pattern) -> np.ndarray:
        return self.theta(np.atleast_2d(mu))[0] @ self.cached_terms(pattern, "A", self.operator_terms)

    def rhs(self, mu: np.ndarray, pattern: fem.Pattern) -> np.ndarray:
        return self.phi(np.atleast_2d(mu))[0] @ self.cached_terms(pattern, "f", self.rhs_terms)

    def cached_terms(self, pattern, tag: str, build):
        """`build(pattern)` (affine terms on the pattern's rows), computed once per (tag, row range) and
        kept on the problem: "A" the operator terms, "f" the load terms, "K" a declared PDE's stiffness
        terms. The solve sequence reads the operator terms from here too (rom.hifi.sequence.driver)."""
        cache = self.__dict__.setdefault("_term_cache", {})
        key = (tag, pattern.row_start, pattern.row_stop)
        if key not in cache:
            cache[key] = build(pattern)
        return cache[key]

    # -- inner products -----------------------------------------------------------------------
    def energy_product(self, pattern: fem.Pattern) -> np.ndarray:
        """Values of the X inner product (H1 seminorm) on `pattern`."""
        return pattern.assemble(fem.stiffness_local(self.mesh))

    def mass_product(self, pattern: fem.Pattern) -> np.ndarray:
        return pattern.assemble(fem.mass_local(self.mesh))

    def full_field(self, mu: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Nodal field (boundary values included) from free-dof values."""
        return self.mesh.full_field(u, 0.0)


# The name users' classes derive from (`class MyProblem(rom.hifi.problems.Problem)`, docs/bring_your_own.md):
# the P1 base class under the name of the protocol it implements (rom.hifi.capabilities.Problem).
Problem = P1Problem
