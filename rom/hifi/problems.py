"""Parametrized full-order problems on the unit square, all sharing the P1 assembly path.

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

from . import capabilities as cap
from . import fem
from .capabilities import ParameterSpace
from .mesh import TriMesh, side_indicators, unit_square

# Study-file keys shared by the problems on the unit square.
UNIT_SQUARE_MESH = {"type": "object", "default": {}, "additionalProperties": False,
                    "properties": {"n": {"type": "integer", "minimum": 2, "maximum": 4096, "default": 32,
                                         "description": "cells per side of the unit square (n^2 free dofs)"}}}


def positive_range(default, description="") -> dict:
    """Schema of a (lower, upper) range of positive numbers."""
    return {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 2,
            "increasing": True, "default": list(default), "description": description}


def number_range(default, description="") -> dict:
    return {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2, "increasing": True,
            "default": list(default), "description": description}


class Problem:
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

    # -- what the stages ask -----------------------------------------------------------------------
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
        return self.theta(np.atleast_2d(mu))[0] @ self._cached(pattern, "A", self.operator_terms)

    def rhs(self, mu: np.ndarray, pattern: fem.Pattern) -> np.ndarray:
        return self.phi(np.atleast_2d(mu))[0] @ self._cached(pattern, "f", self.rhs_terms)

    def _cached(self, pattern, tag, build):
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


class ThermalBlock(Problem):
    """-div(kappa grad u) = 1 on the unit square, u = 0 on the boundary, kappa = mu_q on block q
    of a B1 x B2 grid (blocks numbered x fastest). Affine: theta_q(mu) = mu_q, one load term."""

    name = "thermal_block"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "blocks": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 64}, "minItems": 2,
                   "maxItems": 2, "default": [2, 2], "description": "B1 x B2 blocks (numbered x fastest)"},
        "mu_range": positive_range((0.1, 1.0), "default bounds of every block conductivity"),
    }
    solution_degree = -1  # u(lambda mu) = u(mu) / lambda: homogeneous of degree -1 (used by POD+GP)

    def __init__(self, mesh_n: int = 64, blocks=(2, 2), mu_range=(0.1, 1.0)):
        super().__init__(unit_square(mesh_n))
        self.blocks = tuple(int(b) for b in blocks)
        self.mu_range = tuple(float(v) for v in mu_range)

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        b1, b2 = args.get("blocks", (2, 2))
        q = b1 * b2
        return ParameterSpace(tuple(f"mu_{i}" for i in range(q)), np.tile(args.get("mu_range", (0.1, 1.0)), (q, 1)),
                              np.tile([0.0, np.inf], (q, 1)), units=("1",) * q)

    def arguments_used(self):
        return {"blocks": self.blocks, "mu_range": self.mu_range}

    @property
    def n_terms(self) -> int:
        return self.blocks[0] * self.blocks[1]

    @cached_property
    def block_of_element(self) -> np.ndarray:
        b1, b2 = self.blocks
        c = self.mesh.centroids
        ix = np.minimum((c[:, 0] * b1).astype(int), b1 - 1)
        iy = np.minimum((c[:, 1] * b2).astype(int), b2 - 1)
        return iy * b1 + ix

    def operator_terms(self, pattern):
        return pattern.assemble_terms(fem.stiffness_local(self.mesh), self.block_of_element, self.n_terms)

    def theta(self, mu):
        return np.asarray(mu, dtype=float)

    def rhs_terms(self, pattern):
        return pattern.assemble_vector(self.mesh, fem.load_local(self.mesh, 1.0))[None, :]

    def phi(self, mu):
        return np.ones((len(mu), 1))

    def kappa(self, mu) -> np.ndarray:
        """Piecewise-constant conductivity per element (for plots)."""
        return np.asarray(mu)[self.block_of_element]


class Heat(Problem):
    """Transient heat equation u_t - alpha * Laplace(u) = 0 on the unit square, implicit Euler.

    Parameters (Melissa: Meyer et al., "Training Deep Surrogate Models with Large Scale Online Learning"): initial temperature T_init and the Dirichlet temperatures
    of the sides left, right, bottom, top (corners take the mean of their two sides). Each step
    solves (M + dt alpha K) u^{n+1} = M u^n + dt alpha * sum_s T_s l_s, with l_s = -K_IB g_s the
    lifting of side s; the matrix is the same for every step and every parameter."""

    name = "heat"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT, cap.AFFINE})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "dt": {"type": "number", "exclusiveMinimum": 0, "default": 0.005, "description": "time step"},
        "steps": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 100},
        "alpha": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "diffusivity"},
        "temperature_range": number_range((0.0, 1.0), "default bounds of the five temperatures"),
    }
    units = "K"

    def __init__(self, mesh_n: int = 32, dt: float = 0.005, steps: int = 100, alpha: float = 1.0,
                 temperature_range=(0.0, 1.0)):
        super().__init__(unit_square(mesh_n))
        self.dt, self.steps, self.alpha = float(dt), int(steps), float(alpha)
        self.temperature_range = tuple(float(v) for v in temperature_range)

    NAMES = ("T_init", "T_left", "T_right", "T_bottom", "T_top")

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        return ParameterSpace(cls.NAMES, np.tile(args.get("temperature_range", (0.0, 1.0)), (5, 1)), units=("K",) * 5)

    def arguments_used(self):
        return {"temperature_range": self.temperature_range}

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    def operator_terms(self, pattern):
        return np.stack([self.mass_product(pattern), self.energy_product(pattern)])

    def theta(self, mu):
        return np.tile([1.0, self.dt * self.alpha], (len(mu), 1))

    def rhs_terms(self, pattern):
        """Liftings of the four sides, (4, n_rows)."""
        K = fem.stiffness_local(self.mesh)
        sides = side_indicators(self.mesh)
        return np.stack([pattern.assemble_vector(self.mesh, fem.boundary_lift_local(self.mesh, K, g)) for g in sides])

    def phi(self, mu):
        return self.dt * self.alpha * np.asarray(mu, dtype=float)[:, 1:]

    def boundary_values(self, mu: np.ndarray) -> np.ndarray:
        return np.asarray(mu, dtype=float)[1:] @ side_indicators(self.mesh)[:, self.mesh.boundary]

    def initial_state(self, mu: np.ndarray, n_rows: int) -> np.ndarray:
        return np.full(n_rows, float(mu[0]))

    def full_field(self, mu, u):
        return self.mesh.full_field(u, self.boundary_values(mu))

