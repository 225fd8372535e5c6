"""Parametrized full-order problems on the unit square, all sharing the P1 assembly path.

A problem knows its mesh, its parameters and how to assemble, for a row range of the free dofs,
the operator values and right-hand sides. Affine problems expose their components
(`operator_terms`, `theta`, `rhs_terms`, `phi`), so later stages rebuild A(mu) without mesh code.
"""
from __future__ import annotations

import abc
from functools import cached_property

import numpy as np

from . import fem
from .mesh import TriMesh, side_indicators, unit_square


class Problem(abc.ABC):
    name: str = ""
    transient = False
    affine = True
    # False for problems whose every sample has its own mesh (geometry families): they skip the
    # fixed-mesh stages (operators, simulate, gather, pod) and bring their own rules.
    fixed_mesh = True
    units = "1"

    def __init__(self, mesh: TriMesh):
        self.mesh = mesh

    # -- parameters ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def parameter_names(self) -> list[str]:
        """Names of the parameters, in the order of mu."""

    @property
    @abc.abstractmethod
    def default_bounds(self) -> np.ndarray:
        """(d, 2) parameter box used when the study's `parameters` section does not override it."""

    # -- affine structure (non-affine problems override operator_values / rhs instead) ----------
    def _not_affine(self):
        return TypeError(f"problem {self.name} has no affine decomposition; use operator_values(mu, pattern)")

    def operator_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """(Q, nnz) values of A_q on `pattern`."""
        raise self._not_affine()

    def theta(self, mu: np.ndarray) -> np.ndarray:
        """(n, Q) coefficients of the operator terms for parameters mu (n, d)."""
        raise self._not_affine()

    def rhs_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """(P, n_rows) load vectors f_p on the owned rows."""
        raise self._not_affine()

    def phi(self, mu: np.ndarray) -> np.ndarray:
        """(n, P) coefficients of the load terms."""
        raise self._not_affine()

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
    solution_degree = -1  # u(lambda mu) = u(mu) / lambda: homogeneous of degree -1 (used by POD+GP)

    def __init__(self, mesh_n: int = 64, blocks=(2, 2), mu_range=(0.1, 1.0)):
        super().__init__(unit_square(mesh_n))
        self.blocks = tuple(int(b) for b in blocks)
        self.mu_range = tuple(float(v) for v in mu_range)

    @property
    def n_terms(self) -> int:
        return self.blocks[0] * self.blocks[1]

    @property
    def parameter_names(self):
        return [f"mu_{q}" for q in range(self.n_terms)]

    @property
    def default_bounds(self):
        return np.tile(self.mu_range, (self.n_terms, 1))

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

    Parameters (METHODS.md section 5): initial temperature T_init and the Dirichlet temperatures
    of the sides left, right, bottom, top (corners take the mean of their two sides). Each step
    solves (M + dt alpha K) u^{n+1} = M u^n + dt alpha * sum_s T_s l_s, with l_s = -K_IB g_s the
    lifting of side s; the matrix is the same for every step and every parameter."""

    name = "heat"
    transient = True
    units = "K"

    def __init__(self, mesh_n: int = 32, dt: float = 0.005, steps: int = 100, alpha: float = 1.0,
                 temperature_range=(0.0, 1.0)):
        super().__init__(unit_square(mesh_n))
        self.dt, self.steps, self.alpha = float(dt), int(steps), float(alpha)
        self.temperature_range = tuple(float(v) for v in temperature_range)

    @property
    def parameter_names(self):
        return ["T_init", "T_left", "T_right", "T_bottom", "T_top"]

    @property
    def default_bounds(self):
        return np.tile(self.temperature_range, (5, 1))

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


PROBLEMS = {cls.name: cls for cls in (ThermalBlock, Heat)}


def register(cls):
    """Class decorator for problems defined in other modules."""
    PROBLEMS[cls.name] = cls
    return cls


def make_problem(spec: dict) -> Problem:
    """Problem from the study config's `problem` section."""
    spec = dict(spec)
    name = spec.pop("name")
    if name not in PROBLEMS:
        raise ValueError(f"problem.name = {name!r}: expected one of {sorted(PROBLEMS)}")
    mesh = spec.pop("mesh", {})
    return PROBLEMS[name](mesh_n=mesh.get("n", 32), **spec)
