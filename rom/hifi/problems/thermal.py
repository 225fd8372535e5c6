"""The thermal block (stationary, affine in the block conductivities) and the transient heat equation
(affine, Dirichlet temperatures on the four sides), on the unit square."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .. import capabilities as cap
from ..capabilities import AffineOutput, ParameterSpace
from ..discretization import fem
from ..discretization.mesh import side_indicators, unit_square
from .arguments import UNIT_SQUARE_MESH, number_range, positive_range
from .base import P1Problem


class ThermalBlock(P1Problem):
    """-div(kappa grad u) = 1 on the unit square, u = 0 on the boundary, kappa = mu_q on block q
    of a B1 x B2 grid (blocks numbered x fastest). Affine: theta_q(mu) = mu_q, one load term."""

    name = "thermal_block"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE, cap.OUTPUT_FUNCTIONALS})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "blocks": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 64}, "minItems": 2,
                   "maxItems": 2, "default": [2, 2], "description": "B1 x B2 blocks (numbered x fastest)"},
        "mu_range": positive_range((0.1, 1.0), "default bounds of every block conductivity"),
    }
    solution_degree = -1  # u(lambda mu) = u(mu) / lambda: homogeneous of degree -1 (used by POD+GP)

    @classmethod
    def parameter_functions(cls, args: dict):
        """An instance without its mesh, for theta(mu) = mu and phi(mu) = 1 (romflow.open); not for solves."""
        self = object.__new__(cls)  # an alternate constructor: no mesh, no solver
        self.blocks = tuple(int(b) for b in args.get("blocks", (2, 2)))
        self.mu_range = tuple(float(v) for v in args.get("mu_range", (0.1, 1.0)))
        return self

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

    # -- outputs (capability output_functionals) ---------------------------------------------------
    @classmethod
    def check_output(cls, args: dict, spec: dict) -> None:
        """{name, kind: region_mean, blocks: [..]} (mean over the listed blocks) or {name, kind:
        boundary_flux, side: left|right|bottom|top}, checked against the study's blocks."""
        b1, b2 = args.get("blocks", (2, 2))
        if spec.get("kind") == "region_mean":
            blocks = spec.get("blocks", [])
            if not blocks or min(blocks) < 0 or max(blocks) >= b1 * b2:
                raise ValueError(f"blocks = {blocks}; expected a non-empty list of block indices in "
                                 f"0..{b1 * b2 - 1} ({b1} x {b2} blocks, numbered x fastest)")
        elif "side" not in spec:
            raise ValueError("kind boundary_flux needs side; expected one of left, right, bottom, top")

    def output_functional(self, spec: dict) -> AffineOutput:
        """The output of a study entry (see check_output)."""
        name, kind = spec.get("name"), spec.get("kind")
        if kind == "region_mean":
            blocks = np.atleast_1d(spec.get("blocks", []))
            if not len(blocks) or blocks.min() < 0 or blocks.max() >= self.n_terms:
                raise ValueError(f"output {name}: blocks = {blocks.tolist()}; expected indices in 0..{self.n_terms - 1}")
            return region_mean(name, self.mesh, np.isin(self.block_of_element, blocks))
        if kind == "boundary_flux":
            K = fem.stiffness_local(self.mesh)
            locals_ = [K * (self.block_of_element == q)[:, None, None] for q in range(self.n_terms)]
            return boundary_flux(name, self.mesh, spec.get("side"), locals_, self.theta,
                                 [fem.load_local(self.mesh, 1.0)], self.phi)
        raise ValueError(f"output {name}: kind = {kind!r}; expected region_mean or boundary_flux")


SIDES = ("left", "right", "bottom", "top")


def _constant(n_terms=1):
    return lambda mu: np.ones((len(np.atleast_2d(mu)), n_terms))


def region_mean(name: str, mesh, element_mask: np.ndarray) -> AffineOutput:
    """Mean of u over the elements where element_mask is True: l_i = int_region phi_i / |region|
    (boundary nodes carry the Dirichlet value 0 and drop out)."""
    element_mask = np.asarray(element_mask, dtype=bool)
    if element_mask.shape != (len(mesh.triangles),) or not element_mask.any():
        raise ValueError(f"output {name}: element mask of shape {element_mask.shape} with {int(element_mask.sum())} "
                         f"elements; expected a non-empty mask of {len(mesh.triangles)} elements")
    area = mesh.areas[element_mask].sum()
    local = fem.load_local(mesh, 1.0) * element_mask[:, None] / area
    pattern = fem.Pattern.build(mesh)
    return AffineOutput(name, pattern.assemble_vector(mesh, local)[None, :], _constant())


def boundary_flux(name: str, mesh, side: str, operator_locals: list, theta, load_locals: list, phi) -> AffineOutput:
    """Outward flux -int_side kappa du/dn psi through a side of the unit square, as the FOM
    residual against the boundary test function psi (weights of `side_indicators`: a corner is
    shared half-half, so the four sides add up to int f exactly).

    operator_locals: element matrices (n_tri, 3, 3) of each operator term (coefficients theta(mu));
    load_locals: element load vectors (n_tri, 3) of each load term (coefficients phi(mu)). With u
    zero on the boundary, the flux is f(psi) - a(u, psi) = sum_p phi_p f_p(psi) - sum_q theta_q a_q(u, psi)."""
    if side not in SIDES:
        raise ValueError(f"output {name}: side = {side!r}; expected one of {list(SIDES)}")
    w = side_indicators(mesh)[SIDES.index(side)]
    pattern = fem.Pattern.build(mesh)
    psi = w[mesh.triangles]  # (n_tri, 3)
    # a_q(phi_i, psi) for the free dofs i: the lifting of psi with the term's element matrices.
    terms = np.stack([-pattern.assemble_vector(mesh, fem.boundary_lift_local(mesh, Kq, w)) for Kq in operator_locals])
    offsets = np.array([float(np.einsum("ei,ei->", f, psi)) for f in load_locals])
    return AffineOutput(name, -terms, theta, offsets, phi)


class Heat(P1Problem):
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

