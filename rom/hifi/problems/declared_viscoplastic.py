"""Small-strain elasto-viscoplasticity under a temperature loading, declared in the study file on a mesh of
the user's (2D plane strain on triangles, 3D on tetrahedra, P1 displacements): the problem class of the
error-indicator-based adaptive ROM (Casenave, Akkari et al., turbine blades near the creep regime).

    problem:
      name: viscoplastic
      mesh: {file: meshes/plate.msh}
      material:                                   # per region: young, hardening, norton_K, norton_n a number or
                                                  # [[T, value], ...] (linear in T); poisson, expansion, yield numbers
        plate: {young: [[20, 200e3], [1000, 150e3]], poisson: 0.3, expansion: 1.3e-5,
                hardening: 20e3, norton_K: [[800, 3000], [1000, 1500]], norton_n: 5, yield: 0}
      temperature:                                # T(x; mu) = base + amplitude exp(-|x - center|^2 / (2 width^2))
        base: 850.0
        reference: 850.0                          # the stress-free temperature of the thermal strain
        hot_spot: {center: [x_hot, 12.0, 2.0], amplitude: dT, width: 6.0}
      fixed: {root: [0.0, 0.0, 0.0]}               # per boundary group, as for elasticity
      traction: {tip: [load, 0.0, 0.0]}           # per boundary group, times the load cycle c(t)
      cycle: {shape: sine, period: 10.0}          # c(t): constant (1), sine, triangle
      dt: 0.5
      steps: 40

Law (rom.hifi.discretization.viscoplasticity): sigma = D(E(T), nu) (eps - eps_vp - alpha (T - T_ref) I),
back stress X = 2/3 C eps_vp, Norton flow dp/dt = <(J2(sigma - X) - sigma_y) / K(T)>^n(T), by implicit Euler
with a radial return at each cell's quadrature point (P1: one point, the strain is constant per cell) and its
consistent tangent. Internal variables per cell: eps_vp (6, engineering shears; plane strain keeps the zz
part) and p. The temperature is constant in time and enters through E, K, n, C and the thermal strain;
every parameter named in place of a number (a traction component, the base temperature, the hot spot's
centre and amplitude) is declared in the study's `parameters` section.

Each step solves R(u) = sum_e vol_e B_e^T sigma_e(u) - c(t) F(mu) = 0 by Newton (rom.hifi.solvers.nonlinear)
from the element kernels below (the `nonlinear` capability), which the hyper-reduced ROM evaluates on a few
cells (rom.models.hyper). The X product is the elastic stiffness at the reference temperature."""
from __future__ import annotations

from functools import cached_property

import numpy as np

from .. import capabilities as cap
from ..discretization import fem
from ..discretization import viscoplasticity as law
from ..discretization.elasticity import material_matrix, stiffness_matrices, strain_matrices
from .arguments import MESH_FILE, UNITS
from .declared import (
    VALUE,
    Declaration,
    DeclaredProblem,
    Value,
    check_displacement_groups,
    per_key,
    value_readers,
    vector_of,
)

_POSITIVE = {"type": "number", "exclusiveMinimum": 0, "finite": True}


def _table(minimum: dict) -> dict:
    """A material constant: a number, or [[T, value], ...] in increasing T, interpolated linearly (held
    constant beyond the first and last temperatures)."""
    pair = {"type": "array", "items": [{"type": "number", "finite": True}, {**minimum, "finite": True}],
            "minItems": 2, "maxItems": 2}
    return {"anyOf": [{**minimum, "finite": True}, {"type": "array", "items": pair, "minItems": 1}],
            "description": "a number, or [[T, value], ...] pairs in increasing T (linear in between)"}


LAW = {
    "type": "object", "additionalProperties": False,
    "required": ["young", "poisson", "hardening", "norton_K", "norton_n"],
    "properties": {
        "young": _table({"type": "number", "exclusiveMinimum": 0}),
        "poisson": {"type": "number", "exclusiveMinimum": -1, "exclusiveMaximum": 0.5},
        "expansion": {"type": "number", "minimum": 0, "default": 0.0, "description": "thermal expansion alpha"},
        "hardening": _table({"type": "number", "minimum": 0}),
        "norton_K": _table({"type": "number", "exclusiveMinimum": 0}),
        "norton_n": _table({"type": "number", "minimum": 1}),
        "yield": {"type": "number", "minimum": 0, "default": 0.0, "description": "threshold sigma_y of the overstress"},
    }}
TEMPERATURE = {
    "type": "object", "additionalProperties": False, "required": ["base", "reference"],
    "properties": {
        "base": VALUE,
        "reference": {"type": "number", "finite": True, "description": "stress-free temperature of the thermal strain"},
        "hot_spot": {"type": "object", "additionalProperties": False, "required": ["center", "amplitude", "width"],
                     "properties": {"center": vector_of(VALUE), "amplitude": VALUE, "width": _POSITIVE}},
    }}
CYCLE = {"type": "object", "additionalProperties": False, "default": {},
         "properties": {"shape": {"enum": ["constant", "sine", "triangle"], "default": "constant"},
                        "period": {**_POSITIVE, "default": 1.0}}}
N_INTERNAL = 7  # eps_vp (6) and p per cell
VOIGT_IDENTITY = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])


def rigid_body_modes(x: np.ndarray, comp: np.ndarray, dim: int | None = None) -> np.ndarray:
    """The rigid-body motions (translations, then rotations in the (i, j) planes: u_i = -x_j, u_j = x_i) at
    dofs of positions x (n, dim) and components comp (n,): (3 or 6, n)."""
    dim = dim or x.shape[1]
    modes = [(comp == c).astype(float) for c in range(dim)]
    for i, j in ([(0, 1)] if dim == 2 else [(0, 1), (1, 2), (0, 2)]):
        modes.append(np.where(comp == i, -x[:, j], 0.0) + np.where(comp == j, x[:, i], 0.0))
    return np.array(modes)


def load_cycle(shape: str, period: float, t) -> np.ndarray:
    """c(t): 1 (constant), sin(2 pi t / period) (sine), the triangle wave of the same period, amplitude
    1 and zero at t = 0 (triangle)."""
    t = np.asarray(t, dtype=float)
    if shape == "constant":
        return np.ones_like(t)
    if shape == "sine":
        return np.sin(2 * np.pi * t / period)
    s = (t / period + 0.25) % 1.0  # the triangle wave: 0 at t = 0, rising
    return 1.0 - 4.0 * np.abs(s - 0.5)


class Viscoplastic(DeclaredProblem):
    """Elasto-viscoplastic structure under a temperature field and a cyclic traction (module docstring)."""

    name = "viscoplastic"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT, cap.NONLINEAR})
    arguments = {
        "mesh": MESH_FILE,
        "plane": {"enum": ["strain"], "description": "2D: plane strain (the only plane assumption with a 3D flow)"},
        "material": per_key(LAW, "the law per region (every region of the mesh)"),
        "temperature": TEMPERATURE,
        "traction": per_key(vector_of(VALUE), "traction sigma n per boundary group, times the load cycle"),
        "fixed": per_key(vector_of({"anyOf": [VALUE, {"type": "null"}]}),
                         "fixed displacement components per boundary group (null: free)"),
        "cycle": CYCLE,
        "dt": {**_POSITIVE, "default": 1.0},
        "steps": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 20},
        "units": UNITS,
    }
    operator_key = "material"
    group_keys = ("traction", "fixed")
    anchor_keys = "fixed"
    kernel = "a rigid motion"
    n_internal = N_INTERNAL

    def __init__(self, args: dict, mesh_file=None):
        self.dt, self.steps = float(args.get("dt", 1.0)), int(args.get("steps", 20))
        cyc = args.get("cycle", {})
        self.cycle_shape, self.period = cyc.get("shape", "constant"), float(cyc.get("period", 1.0))
        super().__init__(args, mesh_file)
        self.units = args.get("units", "1")
        self._check_rigid_motions()

    def _check_rigid_motions(self):
        """The fixed components must stop every rigid motion (3 in 2D, 6 in 3D), or the tangent is singular:
        the rigid-body modes restricted to the fixed dofs have full rank."""
        mesh = self.mesh
        node, comp = np.nonzero(mesh.fixed)
        x = mesh.nodes - mesh.nodes.mean(axis=0)
        x /= np.sqrt((x * x).sum(axis=1).mean())  # the body's RMS radius: rotations and translations alike O(1)
        R = rigid_body_modes(x[node], comp, mesh.dim)
        s = np.linalg.svd(R, compute_uv=False) if R.size else np.zeros(0)
        free = len(R) - int(np.sum(s > 1e-8 * max(s.max(initial=0.0), 1.0)))
        if free:
            raise ValueError(f"problem viscoplastic: fixed: {free} rigid motion(s) of the {mesh.dim}D body left free by "
                             f"the fixed components {self.args.get('fixed', {})}; expected fixed components that stop "
                             "every translation and rotation")

    # -- declaration (no mesh) ---------------------------------------------------------------------
    @classmethod
    def declaration(cls, args, dim=None) -> Declaration:
        usages, use, vec = value_readers(cls.name, dim)
        temp = args.get("temperature", {})
        use("temperature.base", temp.get("base", 0.0))
        hot = temp.get("hot_spot")
        if hot is not None:
            vec("temperature.hot_spot.center", hot["center"])
            use("temperature.hot_spot.amplitude", hot["amplitude"])
        op = {r: Value(1.0) for r in args.get("material", {})}
        fluxes = {g: vec(f"traction.{g}", v) for g, v in args.get("traction", {}).items()}
        fixed = {g: vec(f"fixed.{g}", v) for g, v in args.get("fixed", {}).items()}
        return Declaration(dim or 2, op, {}, fluxes, {}, fixed, None, usages)

    @classmethod
    def numbers(cls, args):
        return []  # the law's constants are checked by the schema and check_groups

    @classmethod
    def check_groups(cls, args, decl, groups):
        super().check_groups(args, decl, groups)
        check_displacement_groups(cls.name, args, decl, groups)
        for r, m in args.get("material", {}).items():
            for key, v in m.items():
                if isinstance(v, list) and np.any(np.diff([T for T, _ in v]) <= 0):
                    raise ValueError(f"problem viscoplastic: material.{r}.{key}: temperatures {[T for T, _ in v]} "
                                     "not increasing; expected [[T, value], ...] in increasing T")

    # -- the law per cell -----------------------------------------------------------------------------
    @cached_property
    def _regions(self) -> list[dict]:
        return [self.args["material"][r] for r in self.file.regions]

    def _per_cell(self, key: str, T: np.ndarray, default=None) -> np.ndarray:
        """A material constant at each cell's temperature T (n_cells,)."""
        out = np.empty(len(T))
        region = self.file.cell_region
        for i, m in enumerate(self._regions):
            v = m.get(key, default)
            cells = region == i
            if isinstance(v, list):
                table = np.asarray(v, dtype=float)
                out[cells] = np.interp(T[cells], table[:, 0], table[:, 1])
            else:
                out[cells] = float(v)
        return out

    def temperature(self, mu, points: np.ndarray | None = None) -> np.ndarray:
        """T(x; mu) at `points` (default: the cell centroids, the quadrature points of P1)."""
        x = self.mesh.centroids if points is None else np.asarray(points, dtype=float)
        mu = np.atleast_2d(np.asarray(mu, dtype=float))[0]
        temp = self.args["temperature"]

        def value(v):
            f, p = self._coef(Value.of(v))
            return f * (mu[p] if p >= 0 else 1.0)

        T = np.full(len(x), value(temp["base"]))
        hot = temp.get("hot_spot")
        if hot is not None:
            c = np.array([value(v) for v in hot["center"]])
            T += value(hot["amplitude"]) * np.exp(-((x - c) ** 2).sum(axis=1) / (2 * float(hot["width"]) ** 2))
        return T

    def coefficients(self, mu) -> dict:
        """The law's constants at every cell for parameter mu (the temperature does not change in time),
        cached for the last mu (a trajectory evaluates them once)."""
        key = tuple(np.atleast_2d(np.asarray(mu, dtype=float))[0])
        if getattr(self, "_coef_key", None) != key:
            T = self.temperature(mu)
            alpha = self._per_cell("expansion", T, 0.0)
            self._coef_cache = {
                "E": self._per_cell("young", T), "nu": self._per_cell("poisson", T),
                "C": self._per_cell("hardening", T), "K": self._per_cell("norton_K", T),
                "n_exp": self._per_cell("norton_n", T), "sigma_y": self._per_cell("yield", T, 0.0),
                "eps_th": alpha * (T - float(self.args["temperature"]["reference"])), "T": T}
            self._coef_key = key
        return self._coef_cache

    # -- X product: the elastic stiffness at the reference temperature --------------------------------
    @cached_property
    def _reference_material(self) -> np.ndarray:
        """E(T_ref) D(nu) per region (n_regions, n_voigt, n_voigt)."""
        T_ref = np.array([float(self.args["temperature"]["reference"])])
        out = []
        for m in self._regions:
            E = np.interp(T_ref, *np.asarray(m["young"], float).T)[0] if isinstance(m["young"], list) else m["young"]
            out.append(float(E) * material_matrix(float(m["poisson"]), self.mesh.dim, "strain"))
        return np.stack(out)

    def cell_matrices(self, cells):
        return stiffness_matrices(self.mesh.nodes, self.mesh.cells[cells],
                                  self._reference_material[self.file.cell_region[cells]])

    # -- element kernels (the `nonlinear` capability) ---------------------------------------------------
    @cached_property
    def _strain_matrices(self) -> np.ndarray:
        """B (n_cells, n_voigt, k dim) of every cell: Voigt strains (engineering shears) of its dofs."""
        g, _ = fem.simplex_gradients(self.mesh.nodes, self.mesh.cells)
        return strain_matrices(g)

    @property
    def element_dofs(self) -> np.ndarray:
        return self.mesh.cell_dofs

    @property
    def element_weights(self) -> np.ndarray:
        """Quadrature weight of each cell's one point: its volume (area in 2D)."""
        return self.mesh.volumes

    def initial_internal(self, n: int) -> np.ndarray:
        return np.zeros((n, N_INTERNAL))

    def initial_state(self, mu, n_rows: int) -> np.ndarray:
        return np.zeros(n_rows)

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    def fixed_element_values(self, mu) -> np.ndarray:
        """Values at each cell's dof slots of the fixed dofs (0 at free slots), (n_cells, k dim)."""
        nodal = self.mesh.full_field(np.zeros(self.mesh.n_dofs), self.fixed_values(mu))
        return nodal[self.mesh.cells].reshape(len(self.mesh.cells), -1)

    def _strain3(self, elems, ue) -> np.ndarray:
        eps = np.einsum("eij,ej->ei", self._strain_matrices[elems], ue)
        return law.embed_plane_strain(eps) if self.mesh.dim == 2 else eps

    @property
    def _rows(self) -> np.ndarray:
        return law.plane_strain_rows if self.mesh.dim == 2 else np.arange(6)

    def _update(self, elems, ue, z_prev, mu, tangent: bool):
        c = {k: v[elems] for k, v in self.coefficients(mu).items()}
        state = law.State(z_prev[:, :6], z_prev[:, 6])
        sigma, new, D = law.update(self._strain3(elems, ue), state, self.dt, c["E"], c["nu"], c["C"], c["K"],
                                   c["n_exp"], sigma_y=c["sigma_y"], eps_th=c["eps_th"], tangent=tangent)
        return sigma, np.column_stack([new.eps_vp, new.p]), D

    def element_residual(self, elems, ue, ue_prev, z_prev, mu, t, tangent: bool = False):
        """Element internal forces vol_e B_e^T sigma_e of one implicit step from internal variables z_prev,
        (n_sel, k dim), the updated internal variables (n_sel, 7), and with `tangent` the element tangents
        vol_e B_e^T D_alg B_e (n_sel, k dim, k dim) (else None). ue_prev is not used (quasi-static)."""
        sigma, z, D = self._update(elems, ue, z_prev, mu, tangent)
        rows, B, vol = self._rows, self._strain_matrices[elems], self.mesh.volumes[elems]
        re = vol[:, None] * np.matmul(sigma[:, None, rows], B)[:, 0]
        J = None
        if tangent:
            DB = np.matmul(D[:, rows][:, :, rows], B)
            J = np.matmul(B.transpose(0, 2, 1), DB)
            J *= vol[:, None, None]
        return re, z, J

    def external_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """The declared tractions' terms F_p on the pattern's rows, one per monomial of the parameters."""
        return self.cached_terms(pattern, "traction", self._traction_terms)

    def external_coefficients(self, mu, t: float) -> np.ndarray:
        """c(t) phi_p(mu): the load cycle times the tractions' monomials."""
        return float(load_cycle(self.cycle_shape, self.period, t)) * self.phi(np.atleast_2d(mu))[0]

    def _traction_terms(self, pattern) -> np.ndarray:
        out = np.zeros((len(self.monomials), pattern.n_rows))
        facets, comp, mono, factor = self.fluxes
        if len(facets):
            d = facets.shape[1]
            dof = self.mesh.numbering[facets, comp[:, None]]
            local = np.repeat((fem.facet_measures(self.mesh.nodes, facets) * factor / d)[:, None], d, axis=1)
            out += pattern.sum_vectors(dof, local, mono, len(self.monomials))
        return out

    def dual_field(self, elems, ue, z, mu) -> np.ndarray:
        """The stress (the dual quantity of the error indicator) of the cells `elems` for element values ue
        and internal variables z after the step, (n_sel, 6) in 3D Voigt order."""
        c = {k: v[elems] for k, v in self.coefficients(mu).items()}
        eps_e = self._strain3(elems, ue) - z[:, :6] - c["eps_th"][:, None] * VOIGT_IDENTITY
        return np.einsum("eab,eb->ea", law.elastic_matrix(c["E"], c["nu"]), eps_e)

    def near_null_space(self) -> np.ndarray:
        """The rigid-body modes on the free dofs (3 in 2D, 6 in 3D), (m, n_dofs): the near-null space of the
        tangent, which algebraic multigrid (GAMG) needs for a vector problem."""
        mesh = self.mesh
        return rigid_body_modes(mesh.nodes[mesh.dof_node] - mesh.nodes.mean(axis=0), mesh.dof_component)

    # -- report fields ------------------------------------------------------------------------------
    def displacement(self, mu, u) -> np.ndarray:
        return self.mesh.full_field(u, self.fixed_values(mu))

    def full_field(self, mu, u):
        """The displacement magnitude at the nodes (what the report plots)."""
        return np.linalg.norm(self.displacement(mu, u), axis=-1)
