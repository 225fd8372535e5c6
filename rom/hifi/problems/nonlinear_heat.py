"""Nonlinear transient heat conduction with a moving heat source (Casenave, Akkari et al., error-indicator-based adaptive ROM for turbine blades).

    rho_c u_t - div(k(u) grad u) = q(x, t; mu)  on the unit square,  u = 0 on the boundary,  u(0) = 0,
    k(u) = k0 (1 + beta u^2),
    q(x, t; mu) = q0 exp(-|x - c(t)|^2 / (2 s^2)),  c(t) = (x_source + travel * t / T, y_source).

The start of the source (x_source, y_source) decides where the heat goes: the solutions form a
family dominated by translation, whose Kolmogorov n-width is large for one global basis and small
inside each region (the regimes that local bases exploit); q0 sets the temperature, hence how
strongly the conductivity departs from k0 (the nonlinear regime).

Discretization: P1 elements, k evaluated per element at the mean of its three nodal values, and
implicit Euler. Each step solves the nonlinear system
    R(u) = rho_c M (u - u_n) + dt (N(u) - F(t_{n+1})) = 0,   N(u) = sum_e k(ubar_e) K_e u_e,
by Newton's method (rom.hifi.solvers.nonlinear: PETSc SNES under MPI, a serial SciPy loop as the
fallback) from the element kernels below, which the hyper-reduced ROM evaluates on a few elements only."""
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

_POSITIVE = {"type": "number", "exclusiveMinimum": 0}


class NonlinearHeat(P1Problem):
    name = "nonlinear_heat"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT, cap.NONLINEAR})
    arguments = {
        "mesh": UNIT_SQUARE_MESH,
        "dt": {**_POSITIVE, "default": 0.002}, "steps": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 25},
        "rho_c": {**_POSITIVE, "default": 1.0}, "k0": {**_POSITIVE, "default": 1.0},
        "beta": {"type": "number", "minimum": 0, "default": 1.0}, "source_width": {**_POSITIVE, "default": 0.1},
        "travel": {"type": "number", "default": 0.2},
        "x_source_range": number_range((0.2, 0.5)), "y_source_range": number_range((0.2, 0.8)),
        "q0_range": number_range((40.0, 120.0)),
    }
    units = "K"

    def __init__(self, mesh_n: int = 24, dt: float = 0.002, steps: int = 25, rho_c: float = 1.0, k0: float = 1.0,
                 beta: float = 1.0, source_width: float = 0.1, travel: float = 0.2,
                 x_source_range=(0.2, 0.5), y_source_range=(0.2, 0.8), q0_range=(40.0, 120.0)):
        super().__init__(unit_square(mesh_n))
        self.dt, self.steps = float(dt), int(steps)
        self.rho_c, self.k0, self.beta = float(rho_c), float(k0), float(beta)
        self.source_width, self.travel = float(source_width), float(travel)
        self.ranges = np.array([x_source_range, y_source_range, q0_range], dtype=float)

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        keys = ("x_source_range", "y_source_range", "q0_range")
        defaults = ((0.2, 0.5), (0.2, 0.8), (40.0, 120.0))
        return ParameterSpace(("x_source", "y_source", "q0"), [args.get(k, d) for k, d in zip(keys, defaults)],
                              units=("1", "1", "K/s"))

    def arguments_used(self):
        return dict(zip(("x_source_range", "y_source_range", "q0_range"), map(tuple, self.ranges)))

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    # -- element kernels (any subset of elements; vectorized over it) -------------------------
    @cached_property
    def stiffness_e(self) -> np.ndarray:
        return fem.stiffness_local(self.mesh)

    @cached_property
    def mass_e(self) -> np.ndarray:
        return fem.mass_local(self.mesh)

    @cached_property
    def gradients_e(self) -> np.ndarray:
        return fem.p1_gradients(self.mesh)

    @cached_property
    def quadrature_points(self) -> np.ndarray:
        """Degree-2 quadrature points of every element, (n_tri, 3, 2)."""
        return np.einsum("qi,eid->eqd", fem.QUAD_BARY, self.mesh.nodes[self.mesh.triangles])

    def k_of(self, ubar: np.ndarray) -> np.ndarray:
        """k(ubar) = k0 (1 + beta ubar^2) at element mean temperatures ubar."""
        return self.k0 * (1.0 + self.beta * ubar ** 2)

    def dk_of(self, ubar: np.ndarray) -> np.ndarray:
        """dk/dubar = 2 k0 beta ubar."""
        return 2.0 * self.k0 * self.beta * ubar

    def conductivity(self, ue: np.ndarray) -> np.ndarray:
        """k(ubar_e) per element from element nodal values ue (..., 3)."""
        return self.k_of(ue.mean(axis=-1))

    def source_centre(self, mu, t) -> np.ndarray:
        """Centre of the source, (..., 2) for parameters mu (..., 3) and times t (...)."""
        mu = np.asarray(mu, dtype=float)
        T = self.dt * self.steps
        return np.stack([mu[..., 0] + self.travel * np.asarray(t) / T, mu[..., 1]], axis=-1)

    def element_load(self, elems: np.ndarray, mu, t) -> np.ndarray:
        """int q(., t; mu) phi_i on the elements `elems`: (n_sel, 3) for one (mu, t), (b, n_sel, 3) for
        parameters mu (b, 3) and times t (b,)."""
        mu = np.asarray(mu, dtype=float)
        c = self.source_centre(mu, t)[..., None, None, :]
        xq = self.quadrature_points[elems]
        q = mu[..., 2, None, None] * np.exp(-((xq - c) ** 2).sum(axis=-1) / (2 * self.source_width ** 2))
        return self.mesh.areas[elems, None] * (q @ (fem.QUAD_W[:, None] * fem.QUAD_BARY))

    def element_g(self, elems: np.ndarray, ue: np.ndarray, mu, t: float) -> np.ndarray:
        """Element vectors of the nonlinear term g(u, t) = N(u) - F(t), (n_sel, 3)."""
        k = self.conductivity(ue)
        return k[:, None] * np.einsum("eij,ej->ei", self.stiffness_e[elems], ue) - self.element_load(elems, mu, t)

    def element_g_jacobian(self, elems: np.ndarray, ue: np.ndarray) -> np.ndarray:
        """d g_e / d u_e, (n_sel, 3, 3): k K_e + (K_e u_e) (dk/du_j), dk/du_j = 2 k0 beta ubar / 3."""
        Ke = self.stiffness_e[elems]
        ubar = ue.mean(axis=-1)
        Ku = np.einsum("eij,ej->ei", Ke, ue)
        dk = self.dk_of(ubar) / 3.0
        return self.k_of(ubar)[:, None, None] * Ke + Ku[:, :, None] * dk[:, None, None]

    # -- the generic element form of the `nonlinear` capability (rom.hifi.solvers.nonlinear, rom.models.hyper) --
    n_internal = 0  # no internal variables

    @property
    def element_dofs(self) -> np.ndarray:
        return self.mesh.cell_dofs

    @property
    def element_weights(self) -> np.ndarray:
        return self.mesh.areas

    def initial_internal(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def fixed_element_values(self, mu) -> np.ndarray:
        return np.zeros(self.mesh.cell_dofs.shape)  # u = 0 on the boundary

    def element_residual(self, elems, ue, ue_prev, z_prev, mu, t, tangent: bool = False):
        """The implicit Euler step's element residual rho_c M_e (u_e - u_e^n) + dt g_e(u_e, t) (the load is
        inside g), no internal variables, and with `tangent` rho_c M_e + dt dg_e/du_e."""
        Me = self.mass_e[elems]
        re = self.rho_c * np.einsum("eij,ej->ei", Me, ue - ue_prev) + self.dt * self.element_g(elems, ue, mu, t)
        J = self.rho_c * Me + self.dt * self.element_g_jacobian(elems, ue) if tangent else None
        return re, z_prev, J

    def external_terms(self, pattern) -> np.ndarray:
        return np.zeros((0, pattern.n_rows))  # the moving source is an element term of g

    def external_coefficients(self, mu, t: float) -> np.ndarray:
        return np.zeros(0)

    def dual_field(self, elems, ue, z, mu) -> np.ndarray:
        """The heat flux -k(ubar) grad u of the cells `elems`, (n_sel, 2)."""
        grad = np.einsum("eik,ei->ek", self.gradients_e[elems], ue)
        return -self.conductivity(ue)[:, None] * grad

    # -- whole-mesh evaluations (snapshots of the nonlinear term and of the flux) ---------------
    def element_values(self, u: np.ndarray) -> np.ndarray:
        """Element nodal values (..., n_tri, 3) of free-dof vectors u (..., n_dofs); 0 on the boundary."""
        return self.mesh.full_field(u, 0.0)[..., self.mesh.triangles]

    @cached_property
    def assembly(self) -> sp.csr_matrix:
        """(n_dofs, 3 n_tri) sum of element vectors into free dofs (boundary rows dropped)."""
        dof = self.mesh.dof_of_node[self.mesh.triangles].ravel()
        keep = np.flatnonzero(dof >= 0)
        return sp.csr_matrix((np.ones(len(keep)), (dof[keep], keep)), shape=(self.mesh.n_dofs, len(dof)))

    def g_vectors(self, U: np.ndarray, mu: np.ndarray, t: np.ndarray, chunk: int = 32) -> np.ndarray:
        """g(u_b, t_b; mu_b) = N(u_b) - F(t_b; mu_b) at every free dof, for states U (b, n_dofs),
        parameters mu (b, 3) and times t (b,)."""
        U, mu, t = np.atleast_2d(U), np.atleast_2d(mu), np.atleast_1d(t)
        allel = np.arange(len(self.mesh.triangles))
        out = np.empty_like(U, dtype=float)
        for s in range(0, len(U), chunk):  # chunks bound the (chunk, n_tri, 3) temporaries
            ue = self.element_values(U[s:s + chunk])
            ge = self.conductivity(ue)[..., None] * np.einsum("eij,bej->bei", self.stiffness_e, ue)
            ge -= self.element_load(allel, mu[s:s + chunk], t[s:s + chunk])
            out[s:s + chunk] = (self.assembly @ ge.reshape(len(ue), -1).T).T
        return out

    def g_vector(self, u: np.ndarray, mu, t: float) -> np.ndarray:
        """g(u, t) = N(u) - F(t) at every free dof."""
        return self.g_vectors(u[None], np.asarray(mu, dtype=float)[None], np.array([t]))[0]

    def flux_field(self, U: np.ndarray) -> np.ndarray:
        """Heat flux of states U (n, n_dofs) on every element, flattened to (n, 2 n_tri)."""
        ue = self.element_values(np.atleast_2d(U))  # (n, n_tri, 3)
        grad = np.einsum("eik,nei->nek", self.gradients_e, ue)
        return (-self.conductivity(ue)[..., None] * grad).reshape(len(ue), -1)

    def initial_state(self, mu, n_rows: int) -> np.ndarray:
        return np.zeros(n_rows)
