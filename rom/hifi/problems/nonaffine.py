"""A diffusion problem whose coefficient is not affine in the parameters (EIM test case).

    -div(kappa(x; mu) grad u) = 1 on the unit square, u = 0 on the boundary,
    kappa(x; mu) = 1 + mu_0 g(x; mu),   g(x; mu) = exp(-((x - mu_1)^2 + (y - mu_2)^2) / width)

kappa is evaluated at element centroids (piecewise constant, like the thermal block), so the
discrete operator is A(mu) = sum_e kappa_e(mu) K_e and an EIM of g at the centroids gives the
affine approximation A_M(mu) = K + mu_0 sum_m beta_m(mu) A_m with A_m = sum_e q_m(x_e) K_e.
Coercivity in the H1 seminorm X = K: a(u, u) >= min_x kappa ||u||_X^2 >= (1 + min(mu_0, 0)) ||u||_X^2,
since 0 < g <= 1.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.sparse as sp

from .. import capabilities as cap
from ..capabilities import ParameterSpace
from ..discretization import fem
from ..discretization.mesh import unit_square
from .arguments import UNIT_SQUARE_MESH, number_range
from .base import P1Problem


class NonaffineDiffusion(P1Problem):
    name = "nonaffine_diffusion"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.ENTRY_PROBE, cap.COEFFICIENT_EIM,
                              cap.COERCIVITY_BOUND})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "amplitude_range": number_range((0.1, 10.0), "default bounds of mu_0 (kappa = 1 + mu_0 g > 0 needs mu_0 > -1)"),
        "center_range": number_range((0.4, 0.6), "default bounds of the bump centre mu_1, mu_2"),
        "width": {"type": "number", "exclusiveMinimum": 0, "default": 0.2},
    }

    def __init__(self, mesh_n: int = 32, amplitude_range=(0.1, 10.0), center_range=(0.4, 0.6), width: float = 0.2):
        super().__init__(unit_square(mesh_n))
        self.amplitude_range = tuple(float(v) for v in amplitude_range)
        self.center_range = tuple(float(v) for v in center_range)
        self.width = float(width)
        if self.width <= 0:
            raise ValueError(f"width = {width}: expected > 0")

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        a, c = args.get("amplitude_range", (0.1, 10.0)), args.get("center_range", (0.4, 0.6))
        return ParameterSpace(("mu_0", "mu_1", "mu_2"), [a, c, c], [[-1.0, np.inf], [-np.inf, np.inf], [-np.inf, np.inf]])

    def arguments_used(self):
        return {"amplitude_range": self.amplitude_range, "center_range": self.center_range}

    @property
    def eim_points(self) -> np.ndarray:
        """Where g is interpolated: the element centroids (kappa is piecewise constant)."""
        return self.mesh.centroids

    # -- the non-affine coefficient -----------------------------------------------------------
    def g(self, xy: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """g(x; mu) for points xy (n_points, 2) and parameters mu (n, 3): shape (n, n_points)."""
        mu = np.atleast_2d(mu)
        dx = xy[None, :, 0] - mu[:, 1, None]
        dy = xy[None, :, 1] - mu[:, 2, None]
        return np.exp(-(dx * dx + dy * dy) / self.width)

    # -- what a rigorous EIM error bound needs (rom.reduction.eim.taylor_bound) ------------------
    g_parameters = (1, 2)  # g depends on the centre (mu_1, mu_2) only; mu_0 scales kappa - 1

    def g_derivative(self, xy: np.ndarray, centre: np.ndarray, alpha) -> np.ndarray:
        """d^alpha g / d(mu_1, mu_2)^alpha at points xy (n_points, 2) for centres (k, 2): (k, n_points).
        The Gaussian is separable: d^a/dm^a exp(-(x - m)^2 / w) = w^(-a/2) H_a((x - m) / sqrt w) exp(..),
        H_a the physicists' Hermite polynomial."""
        from scipy.special import eval_hermite

        centre = np.atleast_2d(centre)
        s = np.sqrt(self.width)
        tx = (xy[None, :, 0] - centre[:, 0, None]) / s
        ty = (xy[None, :, 1] - centre[:, 1, None]) / s
        a, b = alpha
        return s ** -(a + b) * eval_hermite(a, tx) * eval_hermite(b, ty) * np.exp(-tx * tx - ty * ty)

    def g_derivative_bound(self, p: int) -> float:
        """C_p >= |D^p g[u, .., u]| for every unit direction u in (mu_1, mu_2), point and centre:
        along u, g = exp(-b^2/w) exp(-(a - t)^2/w) (b the distance across u), so the p-th derivative
        is at most w^(-p/2) max |H_p(tau) exp(-tau^2)| <= w^(-p/2) 1.086435 sqrt(2^p p!) (Cramer's
        inequality |H_p(tau)| exp(-tau^2/2) <= 1.086435 sqrt(2^p p!))."""
        from math import factorial, sqrt

        return self.width ** (-p / 2) * 1.086435 * sqrt(2.0 ** p * factorial(p))

    def kappa(self, mu: np.ndarray) -> np.ndarray:
        """Conductivity per element for one parameter (n_tri,)."""
        mu = np.atleast_2d(mu)
        return 1.0 + mu[0, 0] * self.g(self.mesh.centroids, mu)[0]

    def coercivity_lower_bound(self, mu: np.ndarray) -> np.ndarray:
        return 1.0 + np.minimum(np.atleast_2d(mu)[:, 0], 0.0)

    def kappa_scale(self, mu: np.ndarray) -> np.ndarray:
        """|kappa - kappa_M| = |mu_0| |g - g_M|."""
        return np.abs(np.atleast_2d(mu)[:, 0])

    # -- full-order assembly ------------------------------------------------------------------
    @cached_property
    def unit_stiffness(self) -> np.ndarray:
        return fem.stiffness_local(self.mesh)

    def operator_values(self, mu, pattern):
        return pattern.assemble(self.kappa(mu)[:, None, None] * self.unit_stiffness)

    def rhs_terms(self, pattern):
        return pattern.assemble_vector(self.mesh, fem.load_local(self.mesh, 1.0))[None, :]

    def phi(self, mu):
        return np.ones((len(np.atleast_2d(mu)), 1))

    # -- EIM-affine approximation ---------------------------------------------------------------
    def eim_operator_terms(self, pattern, basis: np.ndarray) -> np.ndarray:
        """(1 + M, nnz): the unit stiffness K and A_m = sum_e q_m(x_e) K_e for a collateral basis
        (M, n_tri) of g at the centroids."""
        K = self.unit_stiffness
        return np.stack([pattern.assemble(K)] + [pattern.assemble(q[:, None, None] * K) for q in basis])

    def eim_theta(self, mu, beta):
        """theta of the EIM-affine operator: [1, mu_0 beta_1, .., mu_0 beta_M]."""
        mu = np.atleast_2d(mu)
        return np.concatenate([np.ones((len(mu), 1)), mu[:, :1] * beta], axis=1)

    def entry_probe(self, pattern: fem.Pattern, slots: np.ndarray) -> ElementEntryProbe:
        return ElementEntryProbe(self, pattern, slots)


class ElementEntryProbe:
    """A few entries A(mu)[slots] of the operator (CSR positions of `pattern`) for a batch of
    parameters, from the elements touching those entries only: what a black-box solver would
    expose for the nonintrusive matrix EIM. Cost O(len(slots)), not O(n_dofs)."""

    def __init__(self, problem: NonaffineDiffusion, pattern: fem.Pattern, slots: np.ndarray):
        slots = np.asarray(slots, dtype=np.int64)
        position = np.full(pattern.nnz, -1, dtype=np.int64)
        position[slots] = np.arange(len(slots))
        target = np.where(pattern.entry_slot >= 0, position[np.maximum(pattern.entry_slot, 0)], -1)
        k = np.flatnonzero(target >= 0)              # flattened (element, i, j) entries that hit a slot
        elements = pattern.elements[k // 9]
        values = problem.unit_stiffness[elements].reshape(len(k), 9)[np.arange(len(k)), k % 9]
        self.problem = problem
        self.xy = problem.mesh.centroids[elements]
        self.S = sp.csr_matrix((values, (target[k], np.arange(len(k)))), shape=(len(slots), len(k)))

    def __call__(self, mu: np.ndarray) -> np.ndarray:
        mu = np.atleast_2d(mu)
        kappa = 1.0 + mu[:, :1] * self.problem.g(self.xy, mu)   # (n, n_contributions)
        return (self.S @ kappa.T).T
