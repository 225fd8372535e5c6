"""PDEs declared in the study file, on a mesh of the user's (rom.hifi.discretization.meshfile), affine by construction.

    problem:
      name: diffusion                  # -div(k grad u) = s; `transient: {dt, steps, initial}`: u_t - div(k grad u) = s
      mesh: {file: meshes/part.msh}
      conductivity: {core: mu_0, shell: 2.5}     # per region: a parameter name or a number
      source: {core: 1.0}                        # per region
      dirichlet: {outer: 0.0}                    # per boundary group: u = value
      neumann: {inlet: q_in}                     # per boundary group: k du/dn = q (flux into the domain)
      robin: {fins: {h: h_conv, u_inf: 0.0}}     # per boundary group: -k du/dn = h (u - u_inf)

    problem:
      name: elasticity                 # small-strain linear elasticity, 2D (plane stress or strain) or 3D
      mesh: {file: meshes/bracket.msh}
      plane: stress
      young: {steel: E_s, rubber: 0.01}          # Young's modulus per region: a parameter name or a number
      poisson: {steel: 0.3, rubber: 0.45}        # Poisson's ratio per region (numbers)
      body_force: {steel: [0.0, -g]}             # per region, one value per component
      traction: {load: [0.0, p]}                 # per boundary group: sigma n = t
      fixed: {clamp: [0.0, 0.0], roller: [null, 0.0]}   # per boundary group: fixed components (null: free)

Every parameter named in place of a number is declared, with its bounds, in the study's `parameters`
section (ParameterSpace.used_by says where each is used; the space refuses one left undeclared).
Affine structure: one operator term per parameter that enters the operator (a conductivity, a
convection coefficient h, a Young's modulus) plus one constant term for the numbers; one load
term per distinct product of parameters in the loads (sources, fluxes, h u_inf, and the lifting
-A_q[:, B] g_d of each Dirichlet datum by each operator term). The X product is the energy product
at a reference parameter (`reference`, 1 for each parameter by default): X = A(mu_ref) =
sum_q theta_q(mu_ref) A_q with every A_q positive semidefinite, so the min-theta bound
alpha(mu) >= min_q theta_q(mu) / theta_q(mu_ref) is a certified coercivity lower bound.
"""
from __future__ import annotations

import copy
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .. import capabilities as cap
from ..capabilities import ParameterSpace
from ..discretization import fem, meshfile
from ..discretization.elasticity import material_matrix, stiffness_matrices
from ..discretization.mesh import SimplexMesh
from .arguments import MESH_FILE, UNITS
from .base import P1Problem

IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
VALUE = {"type": ["number", "string"], "pattern": IDENT, "finite": True,
         "description": "a number, or the name of a parameter declared in the study's parameters section"}
REFERENCE = {"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "finite": True},
             "description": "parameter values of the X product X = A(reference) (1 for those not given)"}


def per_key(item: dict, description: str) -> dict:
    return {"type": "object", "additionalProperties": item, "default": {}, "description": description}


def vector_of(item: dict) -> dict:
    return {"type": "array", "items": item, "minItems": 2, "maxItems": 3}


@dataclass(frozen=True)
class Value:
    """A coefficient of the declaration: a number, or a parameter (factor 1)."""

    number: float = 1.0
    parameter: str | None = None

    @classmethod
    def of(cls, v) -> Value:
        return cls(1.0, v) if isinstance(v, str) else cls(float(v))


@dataclass
class Declaration:
    """A declared PDE in normal form (no mesh): per region an operator coefficient and a load per
    component, per boundary group fluxes, Robin pairs (h, u_inf) and fixed components, and where each
    parameter is used (`usages`: (key, name, positive))."""

    components: int
    operator: dict[str, Value]
    loads: dict[str, list]
    fluxes: dict[str, list]
    robin: dict[str, tuple[Value, Value]]
    fixed: dict[str, list]
    initial: Value | None = None
    usages: list = field(default_factory=list)

    @property
    def parameters(self) -> list[str]:
        return list(dict.fromkeys(name for _, name, _ in self.usages))

    @property
    def operator_parameters(self) -> list[str]:
        """Parameters that enter A(mu): operator coefficients and convection coefficients h."""
        vals = list(self.operator.values()) + [h for h, _ in self.robin.values()]
        return list(dict.fromkeys(v.parameter for v in vals if v.parameter))


def value_readers(problem: str, dim: int | None):
    """The readers of a declaration's values, and the usages they record: use(key, v, positive) is a Value
    (None for None) and records (key, name, positive) where v names a parameter; vec(key, vals) does so for
    each component of a vector, refusing one whose length is not the mesh's dimension."""
    usages = []

    def use(key, v, positive=False):
        if isinstance(v, str):
            usages.append((key, v, positive))
        return None if v is None else Value.of(v)

    def vec(key, vals):
        if dim is not None and len(vals) != dim:
            raise ValueError(f"problem {problem}: {key} = {vals}: {len(vals)} components; expected {dim} (the mesh "
                             f"is {dim}D)")
        return [use(f"{key}[{i}]", v) for i, v in enumerate(vals)]

    return usages, use, vec


def check_displacement_groups(problem: str, args: dict, decl: Declaration, groups: meshfile.MeshGroups):
    """What a displacement problem's declaration needs of its mesh: no plane assumption on a 3D mesh, at
    least one fixed component."""
    if groups.dim == 3 and "plane" in args:
        raise ValueError(f"problem {problem}: plane = {args['plane']!r}: the mesh is 3D; expected no plane "
                         "assumption (remove the key)")
    if not any(v is not None for vals in decl.fixed.values() for v in vals):
        raise ValueError(f"problem {problem}: fixed: no component is fixed; expected fixed components that "
                         f"prevent rigid motions (mesh boundary groups: {', '.join(groups.boundaries) or 'none'})")


class Monomials:
    """Distinct products of at most two parameters (indices into mu; () is the constant 1)."""

    def __init__(self):
        self.keys: list[tuple[int, ...]] = []
        self._index: dict = {}

    def __call__(self, *params: int) -> int:
        key = tuple(sorted(p for p in params if p >= 0))
        if key not in self._index:
            self._index[key] = len(self.keys)
            self.keys.append(key)
        return self._index[key]

    def __len__(self):
        return len(self.keys)

    def values(self, mu: np.ndarray) -> np.ndarray:
        """(n, P) values of every monomial."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        ext = np.column_stack([mu, np.ones(len(mu))])  # index -1: the constant factor 1
        idx = np.full((len(self.keys), 2), -1)
        for j, key in enumerate(self.keys):
            idx[j, :len(key)] = key
        return ext[:, idx].prod(axis=2)


class _NoMesh:
    """The mesh-file fields the declared problems' affine tables read, empty: the tables' parameter
    parts (operator terms, load monomials) depend on the declaration alone."""

    def __init__(self, decl, dim: int):
        self.dim = dim
        self.regions = tuple(decl.operator)  # validation made the mesh's regions exactly these
        self.cell_region = np.empty(0, dtype=np.int64)
        self.cells = np.empty((0, dim + 1), dtype=np.int64)

    def region_cells(self, name):
        return np.empty(0, dtype=np.int64)

    def group_facets(self, name):
        return np.empty((0, self.dim), dtype=np.int64)


class DeclaredProblem(P1Problem, metaclass=ABCMeta):
    """What the declared PDEs share: the mesh file, parameters named by the user, the affine engine."""

    units = "1"
    operator_key = ""     # the per-region operator coefficient's key (conductivity, young)
    transient_form = False

    @classmethod
    def parameter_functions(cls, args: dict):
        """An instance with the affine tables built on an empty mesh, for theta(mu), phi(mu) and the
        min-theta coercivity bound without the mesh file (romflow.open): equal to the full problem's, bit
        for bit (the tables' parameter parts depend on the declaration alone). Not for solves."""
        self = object.__new__(cls)  # an alternate constructor: no mesh, no solver
        self.args = copy.deepcopy(args)
        self.units = args.get("units", "1")
        # The declaration's vectors have one value per space dimension (validated against the mesh).
        vectors = [v for key in ("body_force", "traction", "fixed") for v in args.get(key, {}).values()]
        dim = len(vectors[0]) if vectors else None
        decl = cls.declaration(args, dim)
        self.decl, self.names = decl, decl.parameters
        self.index = {n: i for i, n in enumerate(self.names)}
        self.c = decl.components
        items = [(g, comp, v) for g, vals in decl.fixed.items() for comp, v in enumerate(vals) if v is not None]
        self.W = sp.csr_matrix((0, len(items)))
        self.fixed_items = [(self._coef(v), g, comp) for g, comp, v in items]
        self._build_affine_tables(_NoMesh(decl, dim or 2), decl)
        return self

    def __init__(self, args: dict, mesh_file: meshfile.MeshFile | None = None):
        """The problem of validated keys on the mesh of `args["mesh"]["file"]`, or on `mesh_file`, a mesh
        already read and checked (the operators artefact's, rom.hifi.discretization.operators.read_mesh:
        the same arrays and node order, so the same numbering and matrices, without the file)."""
        self.args = copy.deepcopy(args)
        self.units = args.get("units", "1")
        mf = mesh_file if mesh_file is not None else meshfile.read(args["mesh"]["file"], self.name)
        self.file = mf
        decl = self.declaration(args, mf.dim)
        self.check_groups(args, decl, mf.groups)
        self.decl = decl
        self.names = decl.parameters
        self.index = {n: i for i, n in enumerate(self.names)}
        c = decl.components
        self.c = c
        # Fixed dofs: one item per (group, component) with a value; W[(node, comp), item] the weight of the
        # item's value at that dof (1 / the number of items fixing it: a shared edge takes the mean).
        items = [(g, comp, v) for g, vals in decl.fixed.items() for comp, v in enumerate(vals) if v is not None]
        rows, cols = [], []
        for i, (g, comp, _) in enumerate(items):
            nodes = np.unique(mf.group_facets(g))
            rows.append(nodes * c + comp)
            cols.append(np.full(len(nodes), i))
        rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        cols = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
        count = np.bincount(rows, minlength=len(mf.nodes) * c)
        self.W = sp.csr_matrix((1.0 / count[rows], (rows, cols)), shape=(len(mf.nodes) * c, len(items)))
        self.fixed_items = [(self._coef(v), g, comp) for g, comp, v in items]
        super().__init__(SimplexMesh(mf.nodes, mf.cells, (count > 0).reshape(-1, c), mf.node_order))
        self._build_affine_tables(mf, decl)

    # -- declaration (no mesh) ---------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def declaration(cls, args: dict, dim: int | None = None) -> Declaration:
        """The parameters, regions and boundary parts the study file's arguments declare (no mesh)."""

    @classmethod
    def from_arguments(cls, args: dict):
        """The problem of validated keys, in the form they call for (`variant`)."""
        return (cls.variant(args) if hasattr(cls, "variant") else cls)(args)

    @classmethod
    def from_mesh_file(cls, args: dict, mesh_file: meshfile.MeshFile):
        """`from_arguments` on a mesh already read and checked (the operators artefact's), without
        opening the mesh file (rom.config.make_problem)."""
        return (cls.variant(args) if hasattr(cls, "variant") else cls)(args, mesh_file)

    def arguments_used(self):
        return self.args

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        decl = cls.declaration(args)
        names = decl.parameters
        where = {n: k for k, n, _ in reversed(decl.usages)}  # the first use of each name
        positive = {n for _, n, pos in decl.usages if pos}
        adm = [[0.0, np.inf] if n in positive else [-np.inf, np.inf] for n in names]
        return ParameterSpace(tuple(names), np.full((len(names), 2), np.nan), np.array(adm).reshape(-1, 2),
                              used_by=tuple(f"problem.{where[n]}" for n in names))

    @classmethod
    def check_arguments(cls, args: dict):
        """Validation before any job: the mesh file (made by mesh.generate when missing, its digest
        recorded in args), its group names (read cheaply) against every region and boundary group the
        declaration names, and the values' signs."""
        if "mesh" not in args:
            raise ValueError(f"problem {cls.name}: mesh: missing; expected mesh: {{file: part.msh}} (a gmsh or meshio "
                             "file with named physical groups)")
        path = meshfile.ensure_mesh(args["mesh"], cls.name)
        groups = meshfile.mesh_groups(path, cls.name)
        args["mesh"]["digest"] = meshfile.file_digest(path)
        decl = cls.declaration(args, groups.dim)
        cls.check_groups(args, decl, groups)

    @classmethod
    def check_groups(cls, args: dict, decl: Declaration, groups: meshfile.MeshGroups):
        name, file = cls.name, Path(args["mesh"]["file"]).name
        regions, bounds = list(groups.regions), list(groups.boundaries)
        for key in (cls.operator_key, *cls.region_keys):
            for r in args.get(key, {}):
                if r not in regions:
                    raise ValueError(f"problem {name}: {key}.{r}: no region {r!r} in mesh {file}; it has regions: "
                                     f"{', '.join(regions)}")
        lacking = [r for r in regions if r not in decl.operator]
        if lacking:
            raise ValueError(f"problem {name}: {cls.operator_key}: region {lacking[0]!r} of mesh {file} has none; "
                             f"expected one (a number or a parameter name) for every region: {', '.join(regions)}")
        seen: dict[str, str] = {}
        for key in cls.group_keys:
            for g in args.get(key, {}):
                if g not in bounds:
                    has = (f"it has boundary groups: {', '.join(bounds)}" if bounds else
                           f"it has no boundary group (physical group of dimension {groups.dim - 1})")
                    raise ValueError(f"problem {name}: {key}.{g}: no boundary group {g!r} in mesh {file}; {has}")
                if g in seen:
                    raise ValueError(f"problem {name}: boundary group {g!r} is in both {seen[g]} and {key}; expected "
                                     "one condition per boundary group")
                seen[g] = key
        for key, v in cls.numbers(args):
            if v <= 0:
                raise ValueError(f"problem {name}: {key} = {v:g}: expected a value > 0")
        if not decl.fixed and not decl.robin and not cls.transient_form:
            raise ValueError(f"problem {name}: no {cls.anchor_keys} boundary group: the stationary problem is singular "
                             f"(its solution is defined up to {cls.kernel}); expected at least one (mesh {file} has "
                             f"boundary groups: {', '.join(bounds) or 'none'})")
        ops = decl.operator_parameters
        for p in args.get("reference", {}):
            if p not in ops:
                raise ValueError(f"problem {name}: reference.{p}: not a parameter of the operator; expected some of: "
                                 f"{', '.join(ops) or 'none (the operator has no parameter)'}")

    region_keys: tuple[str, ...] = ()
    group_keys: tuple[str, ...] = ()
    anchor_keys = ""
    kernel = ""

    @classmethod
    def numbers(cls, args: dict):
        """(key, number) of the numbers that must be positive."""
        return [(f"{cls.operator_key}.{r}", float(v)) for r, v in args.get(cls.operator_key, {}).items()
                if not isinstance(v, str)]

    # -- the affine engine --------------------------------------------------------------------------
    def _coef(self, v: Value) -> tuple[float, int]:
        return v.number, (self.index[v.parameter] if v.parameter else -1)

    def _build_affine_tables(self, mf: meshfile.MeshFile, decl: Declaration):
        c = self.c
        ops = [self.index[p] for p in decl.operator_parameters]
        numeric = any(v.parameter is None for v in decl.operator.values()) or \
            any(h.parameter is None for h, _ in decl.robin.values()) or self.transient_form
        self.op_params = ([-1] if numeric else []) + ops
        term_of = {p: i for i, p in enumerate(self.op_params)}
        reg = [self._coef(decl.operator[r]) for r in mf.regions]
        self.cell_factor = np.array([f for f, _ in reg])[mf.cell_region]
        self.cell_term = np.array([term_of[p] for _, p in reg])[mf.cell_region]
        mono = Monomials()
        # Loads per (cell, component); fluxes (Neumann, traction) per (facet, component), and Robin's h u_inf.
        self.loads = _cat(*self._per_component(decl.loads, mf.region_cells, mono))
        ff, fcomp, fmono, ffac = self._per_component(decl.fluxes, mf.group_facets, mono)
        rf, rterm, rfac = [], [], []
        for g, (h, u_inf) in decl.robin.items():
            facets = mf.group_facets(g)
            (fh, ph), (fu, pu) = self._coef(h), self._coef(u_inf)
            rf.append(facets), rterm.append(np.full(len(facets), term_of[ph])), rfac.append(np.full(len(facets), fh))
            if fu != 0 or pu >= 0:
                ff.append(facets), fcomp.append(np.zeros(len(facets), dtype=np.int64))
                fmono.append(np.full(len(facets), mono(ph, pu))), ffac.append(np.full(len(facets), fh * fu))
        self.fluxes = _cat(ff, fcomp, fmono, ffac, width=mf.dim)
        self.robin = _cat(rf, rterm, rfac, width=mf.dim)
        # Liftings: monomial of (operator term q, fixed item i) = theta_q * g_i.
        self.lift_mono = np.array([[mono(p, pi) for (_, pi), _, _ in self.fixed_items]
                                   for p in self.op_params], dtype=np.int64).reshape(len(self.op_params), -1)
        self.lift_factor = np.array([f for (f, _), _, _ in self.fixed_items])
        touched = np.asarray(self.W.sum(axis=1)).ravel().reshape(-1, c).any(axis=1)
        self.lift_cells = np.flatnonzero(touched[mf.cells].any(axis=1))
        self.lift_robin = np.flatnonzero(touched[self.robin[0]].any(axis=1)) if len(self.robin[0]) else np.empty(0, int)
        self.monomials = mono

    def _per_component(self, values: dict, entities_of, mono):
        """(entities, component, monomial, factor) lists of the declared values per named group and component
        (None: not declared), one entry per group and component."""
        ent, comp, mon, fac = [], [], [], []
        for name, vals in values.items():
            idx = entities_of(name)
            for c, v in enumerate(vals):
                if v is None:
                    continue
                f, p = self._coef(v)
                ent.append(idx), comp.append(np.full(len(idx), c))
                mon.append(np.full(len(idx), mono(p))), fac.append(np.full(len(idx), f))
        return ent, comp, mon, fac

    @property
    def parameter_names(self) -> list[str]:
        return list(self.names)

    @cached_property
    def mu_ref(self) -> np.ndarray:
        ref = self.args.get("reference", {})
        return np.array([float(ref.get(n, 1.0)) for n in self.names])

    @property
    def n_terms(self) -> int:
        return len(self.op_params)

    def theta(self, mu):
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        ext = np.column_stack([mu, np.ones(len(mu))])
        return ext[:, self.op_params]

    def phi(self, mu):
        return self.monomials.values(mu)

    def coercivity_lower_bound(self, mu) -> np.ndarray:
        """min-theta: X = A(mu_ref) with positive semidefinite terms, theta_q > 0 on the admissible set."""
        return (self.theta(mu) / self.theta(self.mu_ref[None])).min(axis=1)

    # element matrices with unit coefficient: (m, k c, k c)
    @abstractmethod
    def cell_matrices(self, cells: np.ndarray) -> np.ndarray:
        """Element matrices of the operator with a unit coefficient."""

    def _cell_mass(self, cells: np.ndarray) -> np.ndarray:
        k = self.mesh.cells.shape[1]
        Ms = fem.simplex_mass(self.mesh.volumes[cells], k)
        if self.c == 1:
            return Ms  # the einsum below with eye(1): the same values
        return np.einsum("eab,cd->eacbd", Ms, np.eye(self.c)).reshape(len(cells), k * self.c, k * self.c)

    def stiffness_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """The operator's terms without the time step (Q, nnz): operator coefficients and Robin terms."""
        cells = pattern.elements
        K = self.cell_matrices(cells) * self.cell_factor[cells][:, None, None]
        values = pattern.sum_entries(K, self.cell_term[cells], self.n_terms)
        facets, term, factor = self.robin
        if len(facets):
            d = facets.shape[1]
            R = fem.simplex_mass(fem.facet_measures(self.mesh.nodes, facets) * factor, d)
            values += pattern.sum_at(pattern.slots(self.mesh.dof_of_node[facets]), R, term, self.n_terms)
        return values

    def operator_terms(self, pattern):
        return self.cached_terms(pattern, "K", self.stiffness_terms)

    def rhs_terms(self, pattern):
        P, mesh, c = len(self.monomials), self.mesh, self.c
        numbering = mesh.numbering
        out = np.zeros((P, pattern.n_rows))
        cells, comp, mono, factor = self.loads
        if len(cells):
            k = mesh.cells.shape[1]
            dof = numbering[mesh.cells[cells], comp[:, None]]
            local = np.repeat((mesh.volumes[cells] * factor / k)[:, None], k, axis=1)
            out += pattern.sum_vectors(dof, local, mono, P)
        facets, comp, mono, factor = self.fluxes
        if len(facets):
            d = facets.shape[1]
            dof = numbering[facets, comp[:, None]]
            local = np.repeat((fem.facet_measures(mesh.nodes, facets) * factor / d)[:, None], d, axis=1)
            out += pattern.sum_vectors(dof, local, mono, P)
        G = self.W.shape[1]
        if G and len(self.lift_cells):
            # -A_q[:, fixed] W_i: element matrices times the fixed items' weights at their dofs.
            lc = self.lift_cells
            K = self.cell_matrices(lc) * self.cell_factor[lc][:, None, None]
            rows = (mesh.cells[lc][:, :, None] * c + np.arange(c)).reshape(len(lc), -1)
            We = self.W[rows.ravel()].toarray().reshape(rows.shape + (G,))
            lift = -np.einsum("eij,ejg->egi", K, We) * self.lift_factor[None, :, None]
            dof = np.repeat(mesh.cell_dofs[lc], G, axis=0)
            out += pattern.sum_vectors(dof, lift.reshape(-1, rows.shape[1]),
                                       self.lift_mono[self.cell_term[lc]].ravel(), P)
            rf, rterm, rfac = self.robin
            if len(self.lift_robin):
                lr = self.lift_robin
                f = rf[lr]
                d = f.shape[1]
                R = fem.simplex_mass(fem.facet_measures(mesh.nodes, f) * rfac[lr], d)
                Wf = self.W[f.ravel()].toarray().reshape(f.shape + (G,))
                lift = -np.einsum("eij,ejg->egi", R, Wf) * self.lift_factor[None, :, None]
                out += pattern.sum_vectors(np.repeat(mesh.dof_of_node[f], G, axis=0), lift.reshape(-1, d),
                                           self.lift_mono[rterm[lr]].ravel(), P)
        return out * self.rhs_scale

    rhs_scale = 1.0

    def fixed_values(self, mu) -> np.ndarray:
        """Values of the fixed dofs (in the order of np.nonzero(mesh.fixed)) for one mu."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))[0]
        g = np.array([f * (mu[p] if p >= 0 else 1.0) for (f, p), _, _ in self.fixed_items])
        vals = self.W @ g if len(g) else np.zeros(self.W.shape[0])
        return vals.reshape(-1, self.c)[self.mesh.fixed]

    def energy_product(self, pattern):
        """X = A(mu_ref) without the time step (see the module docstring)."""
        return self.theta(self.mu_ref[None])[0] @ self.cached_terms(pattern, "K", self.stiffness_terms)

    def mass_product(self, pattern):
        cells = pattern.elements
        return pattern.sum_entries(self._cell_mass(cells))


def _cat(*lists, width=None):
    """Concatenated index arrays (empty ones of the right shape when nothing was declared)."""
    out = []
    for i, parts in enumerate(lists):
        if parts:
            out.append(np.concatenate(parts))
        elif i == 0 and width is not None:
            out.append(np.empty((0, width), dtype=np.int64))
        else:
            out.append(np.empty(0, dtype=np.int64 if i != len(lists) - 1 else float))
    return tuple(out)


# -- diffusion ---------------------------------------------------------------------------------------
class Diffusion(DeclaredProblem):
    """-div(k grad u) = s with Dirichlet, Neumann and Robin conditions per boundary group (module docstring)."""

    name = "diffusion"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE, cap.COERCIVITY_BOUND})
    arguments = {
        "mesh": MESH_FILE,
        "conductivity": per_key(VALUE, "conductivity k per region (every region of the mesh)"),
        "source": per_key(VALUE, "volumetric source s per region (0 where not given)"),
        "dirichlet": per_key(VALUE, "u = value per boundary group"),
        "neumann": per_key(VALUE, "flux into the domain, k du/dn = q, per boundary group"),
        "robin": per_key({"type": "object", "additionalProperties": False, "required": ["h"],
                          "properties": {"h": VALUE, "u_inf": {**VALUE, "default": 0.0}}},
                         "convection -k du/dn = h (u - u_inf) per boundary group"),
        "transient": {"type": "object", "additionalProperties": False, "required": ["dt", "steps"],
                      "description": "u_t - div(k grad u) = s by implicit Euler from u = initial",
                      "properties": {"dt": {"type": "number", "exclusiveMinimum": 0},
                                     "steps": {"type": "integer", "minimum": 1, "maximum": 100000},
                                     "initial": {**VALUE, "default": 0.0}}},
        "reference": REFERENCE,
        "units": UNITS,
    }
    operator_key = "conductivity"
    region_keys = ("source",)
    group_keys = ("dirichlet", "neumann", "robin")
    anchor_keys = "dirichlet or robin"
    kernel = "a constant"

    @classmethod
    def variant(cls, spec: dict):
        return TransientDiffusion if spec.get("transient") else cls

    @classmethod
    def declaration(cls, args, dim=None) -> Declaration:
        V = Value.of
        usages = []

        def use(key, v, positive=False):
            if isinstance(v, str):
                usages.append((key, v, positive))
            return V(v)

        op = {r: use(f"conductivity.{r}", v, True) for r, v in args.get("conductivity", {}).items()}
        loads = {r: [use(f"source.{r}", v)] for r, v in args.get("source", {}).items()}
        fixed = {g: [use(f"dirichlet.{g}", v)] for g, v in args.get("dirichlet", {}).items()}
        fluxes = {g: [use(f"neumann.{g}", v)] for g, v in args.get("neumann", {}).items()}
        robin = {g: (use(f"robin.{g}.h", r["h"], True), use(f"robin.{g}.u_inf", r.get("u_inf", 0.0)))
                 for g, r in args.get("robin", {}).items()}
        tr = args.get("transient")
        initial = use("transient.initial", tr.get("initial", 0.0)) if tr else None
        return Declaration(1, op, loads, fluxes, robin, fixed, initial, usages)

    @classmethod
    def numbers(cls, args):
        return super().numbers(args) + [(f"robin.{g}.h", float(r["h"])) for g, r in args.get("robin", {}).items()
                                        if not isinstance(r["h"], str)]

    def cell_matrices(self, cells):
        return fem.simplex_stiffness(self.mesh.nodes, self.mesh.cells[cells])

    def boundary_values(self, mu) -> np.ndarray:
        """Dirichlet values at the boundary nodes (node order), affine in mu."""
        return self.fixed_values(mu)

    def full_field(self, mu, u):
        return self.mesh.full_field(u, self.fixed_values(mu))


class TransientDiffusion(Diffusion):
    """u_t - div(k grad u) = s by implicit Euler: each step solves (M + dt A(mu)) u^{k+1} = M u^k + dt f(mu);
    the constant term holds M, and the liftings use A only (M's boundary columns cancel for data constant
    in time)."""

    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.TRANSIENT, cap.AFFINE})
    transient_form = True

    def __init__(self, args, mesh_file=None):
        tr = args["transient"]
        self.dt, self.steps = float(tr["dt"]), int(tr["steps"])
        super().__init__(args, mesh_file)

    @property
    def rhs_scale(self):
        return self.dt

    @property
    def times(self) -> np.ndarray:
        return self.dt * np.arange(self.steps + 1)

    def operator_terms(self, pattern):
        terms = self.dt * self.cached_terms(pattern, "K", self.stiffness_terms)  # a new array: the cache stays
        terms[0] += self.mass_product(pattern)  # the constant term (op_params[0] == -1)
        return terms

    def energy_product(self, pattern):
        """X = A(mu_ref), plus M when no Dirichlet or Robin group makes A definite."""
        X = super().energy_product(pattern)
        return X + self.mass_product(pattern) if not self.decl.fixed and not self.decl.robin else X

    def initial_state(self, mu, n_rows: int) -> np.ndarray:
        f, p = self._coef(self.decl.initial)
        mu = np.atleast_2d(np.asarray(mu, dtype=float))[0]
        return np.full(n_rows, f * (mu[p] if p >= 0 else 1.0))


# -- linear elasticity -------------------------------------------------------------------------------
class Elasticity(DeclaredProblem):
    """Small-strain linear elasticity -div sigma(u) = b, sigma = E D(nu) eps(u) (module docstring)."""

    name = "elasticity"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE, cap.COERCIVITY_BOUND})
    arguments = {
        "mesh": MESH_FILE,
        "plane": {"enum": ["stress", "strain"], "description": "2D: plane stress (default) or plane strain"},
        "young": per_key(VALUE, "Young's modulus per region (every region of the mesh)"),
        "poisson": per_key({"type": "number", "exclusiveMinimum": -1, "exclusiveMaximum": 0.5},
                           "Poisson's ratio per region (every region of the mesh)"),
        "body_force": per_key(vector_of(VALUE), "body force per region, one value per component"),
        "traction": per_key(vector_of(VALUE), "traction sigma n per boundary group, one value per component"),
        "fixed": per_key(vector_of({"anyOf": [VALUE, {"type": "null"}]}),
                         "fixed displacement components per boundary group (null: free)"),
        "reference": REFERENCE,
        "units": UNITS,
    }
    operator_key = "young"
    region_keys = ("poisson", "body_force")
    group_keys = ("traction", "fixed")
    anchor_keys = "fixed"
    kernel = "a rigid motion"

    @classmethod
    def declaration(cls, args, dim=None) -> Declaration:
        usages, use, vec = value_readers(cls.name, dim)
        op = {r: use(f"young.{r}", v, True) for r, v in args.get("young", {}).items()}
        loads = {r: vec(f"body_force.{r}", v) for r, v in args.get("body_force", {}).items()}
        fluxes = {g: vec(f"traction.{g}", v) for g, v in args.get("traction", {}).items()}
        fixed = {g: vec(f"fixed.{g}", v) for g, v in args.get("fixed", {}).items()}
        return Declaration(dim or 2, op, loads, fluxes, {}, fixed, None, usages)

    @classmethod
    def check_groups(cls, args, decl, groups):
        super().check_groups(args, decl, groups)
        lacking = [r for r in groups.regions if r not in args.get("poisson", {})]
        if lacking:
            raise ValueError(f"problem elasticity: poisson: region {lacking[0]!r} has none; expected a Poisson ratio "
                             f"for every region: {', '.join(groups.regions)}")
        check_displacement_groups(cls.name, args, decl, groups)

    @cached_property
    def _material(self) -> np.ndarray:
        """Material matrix (E = 1) of each region, (n_regions, n_voigt, n_voigt)."""
        plane = self.args.get("plane", "stress")
        return np.stack([material_matrix(float(self.args["poisson"][r]), self.mesh.dim, plane)
                         for r in self.file.regions])

    def cell_matrices(self, cells):
        return stiffness_matrices(self.mesh.nodes, self.mesh.cells[cells], self._material[self.file.cell_region[cells]])

    def displacement(self, mu, u) -> np.ndarray:
        """Nodal displacements (..., n_nodes, dim), fixed components included."""
        return self.mesh.full_field(u, self.fixed_values(mu))

    def full_field(self, mu, u):
        """The displacement magnitude at the nodes (what the report plots)."""
        return np.linalg.norm(self.displacement(mu, u), axis=-1)
