"""What a full-order problem can do, as explicit contracts.

A problem class declares `capabilities` (a frozenset of the names below) and implements the members
of the protocol of each capability it declares; `check_problem_class` verifies that at registration.
Stages declare the capabilities they need (rom.stage.Stage.needs), and a study whose problem lacks
one is refused at validation time, naming the capability. `has(problem, need)` is the one way to ask
(a problem class or object; a name, or a rom.stage.Needs of alternatives). Built-in problems, problems declared in a
study file, user classes given by import path and black-box commands all meet the same contracts.

Conventions shared by every protocol: parameters `mu` are arrays (d,) for one value or (n, d) for a
batch; vectors live on the free dofs, and a `pattern` (rom.hifi.discretization.fem.Pattern) is the CSR sparsity of
the rows [row_start, row_stop) one MPI rank owns, so assembly is per rank and vectorized.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

# Capability names (stages list them in `needs`).
PARAMETERS = "parameters"
MESH = "mesh"
STATIONARY = "stationary"
TRANSIENT = "transient"
AFFINE = "affine"
ENTRY_PROBE = "entry_probe"
OPERATOR_ENTRIES = "operator_entries"
COEFFICIENT_EIM = "coefficient_eim"
COERCIVITY_BOUND = "coercivity_bound"
NONLINEAR = "nonlinear"
GEOMETRY_FAMILY = "geometry_family"
GEOMETRY_SOLVER = "geometry_solver"
OUTPUT_FUNCTIONALS = "output_functionals"


def has(problem, need) -> bool:
    """Whether a problem (class or object) declares a capability: `need` a capability name, or a
    requirement with `met_by(capabilities)` (rom.stage.Needs: all-of / any-of / none-of)."""
    caps = problem.capabilities
    return need.met_by(caps) if hasattr(need, "met_by") else need in caps


@dataclass(frozen=True)
class ParameterSpace:
    """Names, default box and distributions of a problem's parameters, readable from the problem's
    arguments alone (no mesh is built). `admissible` (d, 2) is the open interval where the problem is
    well posed (a conductivity > 0: (0, inf)); a study's bounds must lie inside it.

    A problem whose parameters are named by the user (a PDE declared in the study file, a black box)
    has no default box: its bounds are NaN and `used_by` says where each name is used
    (`problem.conductivity.core`); the study's `parameters` section must then declare every one of
    them, and only them (`overridden` refuses the others in one line)."""

    names: tuple[str, ...]
    bounds: np.ndarray
    admissible: np.ndarray | None = None
    distributions: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    used_by: tuple[str, ...] = ()

    def __post_init__(self):
        d = len(self.names)
        object.__setattr__(self, "bounds", np.asarray(self.bounds, dtype=float).reshape(d, 2))
        adm = np.tile([-np.inf, np.inf], (d, 1)) if self.admissible is None else self.admissible
        object.__setattr__(self, "admissible", np.asarray(adm, dtype=float).reshape(d, 2))
        object.__setattr__(self, "distributions", tuple(self.distributions) or ("uniform",) * d)
        object.__setattr__(self, "units", tuple(self.units) or ("1",) * d)

    @property
    def dim(self) -> int:
        return len(self.names)

    def __iter__(self):
        """Unpacks as (names, bounds, distributions)."""
        return iter((list(self.names), self.bounds, list(self.distributions)))

    def __getitem__(self, i):
        return tuple(self)[i]

    def overridden(self, parameters: dict) -> ParameterSpace:
        """The space with a study's `parameters` section applied (bounds, distribution per name).
        Raises ValueError naming the parameter for an unknown name or bounds outside `admissible`."""
        bounds, dists = self.bounds.copy(), list(self.distributions)
        for name, spec in parameters.items():
            if name not in self.names and self.used_by:
                raise ValueError(f"parameters.{name}: declared but never used by the problem; it uses: "
                                 f"{', '.join(self.names) or 'no parameter'} (a parameter is a name in place of a "
                                 "number in the problem section)")
            if name not in self.names:
                raise ValueError(f"parameters.{name}: unknown parameter; expected one of {list(self.names)}")
            i = self.names.index(name)
            lo, hi = spec["bounds"]
            if spec.get("distribution") == "loguniform" and lo <= 0:
                raise ValueError(f"parameters.{name}.bounds = {[lo, hi]}: loguniform expects lower > 0")
            a, b = self.admissible[i]
            if not (a < lo and hi < b):
                unit = f" [{self.units[i]}]" if self.units[i] != "1" else ""
                raise ValueError(f"parameters.{name}.bounds = {[lo, hi]}: expected inside the admissible interval "
                                 f"({a:g}, {b:g}) of {name}{unit}, where the problem is well posed")
            bounds[i] = lo, hi
            dists[i] = spec.get("distribution", dists[i])
        undeclared = [i for i in range(self.dim) if np.isnan(bounds[i]).any()]
        if undeclared:
            i = undeclared[0]
            where = f"{self.used_by[i]} = {self.names[i]!r}: " if self.used_by else ""
            raise ValueError(f"{where}parameter {self.names[i]} is not declared in the study's parameters section "
                             f"(it declares: {', '.join(parameters) or 'nothing'}); expected parameters: "
                             f"{{{self.names[i]}: {{bounds: [lower, upper]}}}}")
        return ParameterSpace(self.names, bounds, self.admissible, tuple(dists), self.units, self.used_by)


@dataclass
class Sample:
    """One solved parameter, what every full-order solve returns (rom.hifi.solvers.solve.FullOrderModel,
    a black box's `run(mu, ranks)`): the gathered field on rank 0 (None elsewhere) and solver facts."""

    u: np.ndarray | None
    converged: bool
    reason: str
    iterations: int
    seconds: float


class Problem(Protocol):
    """Every problem (capability `parameters`): a name, its capabilities, the JSON-schema properties of
    its study-file keys (`arguments`: types, shapes, ranges, defaults; the config validator checks the
    study's `problem` section against them) and its parameter space from those arguments."""

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]]
    arguments: ClassVar[dict]

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace: ...


class FixedMesh(Protocol):
    """One mesh and P1 function space (capability `mesh`): `mesh` (nodes, cells, Dirichlet mask,
    `n_dofs`, `dof_of_node`), the inner products on a pattern and nodal fields from free dofs."""

    mesh: Any
    units: ClassVar[str]

    def energy_product(self, pattern) -> np.ndarray: ...  # X values (nnz,), symmetric positive definite
    def mass_product(self, pattern) -> np.ndarray: ...  # M values (nnz,)
    def full_field(self, mu, u) -> np.ndarray: ...  # nodal values, Dirichlet data included


class Stationary(Protocol):
    """A(mu) u = f(mu) (capability `stationary`): operator values and right-hand side for one mu."""

    def operator_values(self, mu, pattern) -> np.ndarray: ...  # (nnz,)
    def rhs(self, mu, pattern) -> np.ndarray: ...  # (n_rows,)


class Transient(Protocol):
    """Implicit time stepping (capability `transient`): `dt`, `steps`, `times` (steps + 1,), the initial
    state; a linear problem's step is operator_values(mu) u^{k+1} = M u^k + rhs(mu), a nonlinear one's a
    Newton solve on its element kernels (capability `nonlinear`); the FOM (rom.hifi.solvers) drives both."""

    dt: float
    steps: int
    times: np.ndarray

    def initial_state(self, mu, n_rows: int) -> np.ndarray: ...


class Affine(Protocol):
    """A(mu) = sum_q theta_q(mu) A_q and f(mu) = sum_p phi_p(mu) f_p (capability `affine`); the
    components are what the operators artefact stores, so later stages rebuild A(mu) without mesh code."""

    def operator_terms(self, pattern) -> np.ndarray: ...  # (Q, nnz)
    def theta(self, mu) -> np.ndarray: ...  # (n, Q)
    def rhs_terms(self, pattern) -> np.ndarray: ...  # (P, n_rows)
    def phi(self, mu) -> np.ndarray: ...  # (n, P)


class EntryProbe(Protocol):
    """A few entries of a non-affine A(mu) (capability `entry_probe`): what the nonintrusive matrix EIM
    needs online. `entry_probe(pattern, slots)(mu)` -> (n, len(slots)) at CSR positions `slots`."""

    def entry_probe(self, pattern, slots) -> Any: ...


class OperatorEntries(Protocol):
    """Entries of a non-affine A(mu) and f(mu) at any positions, for many parameters in one call
    (capability `operator_entries`: a black box's entries mode): what the matrix EIM of A and f needs
    offline (all entries at the training parameters) and online (the magic entries).
    `entries(mu (n, d), rows (K,), cols (K,), f_rows (L,))` -> (A (n, K), f (n, L)), node numbering;
    `matrices_at(mu, pattern)` -> (A on the P1 pattern (n, nnz), f (n, n_nodes)), checked."""

    def entries(self, mu, rows, cols, f_rows) -> tuple: ...
    def matrices_at(self, mu, pattern) -> tuple: ...


class CoefficientEIM(Protocol):
    """A non-affine coefficient g(x; mu) to interpolate (capability `coefficient_eim`): values at points,
    the operator terms of a collateral basis, the EIM-affine theta, and the factor that turns an
    interpolation error of g into one of the coefficient."""

    eim_points: np.ndarray

    def g(self, xy, mu) -> np.ndarray: ...  # (n, n_points)
    def eim_operator_terms(self, pattern, basis) -> np.ndarray: ...
    def eim_theta(self, mu, beta) -> np.ndarray: ...
    def kappa_scale(self, mu) -> np.ndarray: ...


class CoercivityBound(Protocol):
    """A certified lower bound of the coercivity constant in the X norm (capability `coercivity_bound`)."""

    def coercivity_lower_bound(self, mu) -> np.ndarray: ...  # (n,)


class Nonlinear(Protocol):
    """A nonlinear transient problem in element form (capability `nonlinear`): each implicit step solves

        R(u) = sum_e A_e r_e(u_e, u_e^n, z_e^n; mu, t_{n+1}) - F(mu, t_{n+1}) = 0

    for the free dofs u, A_e the assembly of cell e's dofs (`element_dofs`, -1 where fixed; the fixed
    dofs' values come from `fixed_element_values`), z_e the `n_internal` internal variables of the cell's
    quadrature points (viscoplastic strain, ...; none for a heat problem), which the step updates, and
    F(mu, t) = sum_p c_p(mu, t) F_p the external load, affine (`external_terms(pattern)` (P, n_rows),
    `external_coefficients(mu, t)` (P,); P = 0 when every load is an element term). `element_residual(elems, ue, ue_prev, z_prev, mu, t, tangent)`
    gives (r_e (n_sel, k), z_e after the step (n_sel, n_internal), dr_e/du_e (n_sel, k, k) or None) for any
    subset of cells: what Newton (rom.hifi.solvers.nonlinear) assembles on each rank's cells and what the
    hyper-reduced ROM (rom.models.hyper) evaluates on its reduced cells, with weights relative to
    `element_weights` (each cell's quadrature weight). `dual_field(elems, ue, z, mu)` is the dual quantity
    of the error indicator (a heat flux, a stress) per cell."""

    n_internal: int

    @property
    def element_dofs(self) -> np.ndarray: ...
    @property
    def element_weights(self) -> np.ndarray: ...
    def initial_internal(self, n: int) -> np.ndarray: ...
    def fixed_element_values(self, mu) -> np.ndarray: ...
    def element_residual(self, elems, ue, ue_prev, z_prev, mu, t, tangent: bool = False) -> tuple: ...
    def external_terms(self, pattern) -> np.ndarray: ...
    def external_coefficients(self, mu, t: float) -> np.ndarray: ...
    def dual_field(self, elems, ue, z, mu) -> np.ndarray: ...


class HeatKernels(Protocol):
    """The nonlinear heat problem's own kernels, which its DEIM hyper-reduced ROM (rom.models.adaptive,
    `adaptive_rom.hyper_reduction: qdeim | deim`) evaluates: rho_c u_t - div(k(u) grad u) = q(x, t; mu), k
    per element at the mean of its nodal values; g(u) = N(u) - F(t) per element and on the whole mesh,
    the heat flux for the Gappy-POD indicator. Not a capability: the ROM asks for these members (HEAT_KERNELS,
    readable on the class; rho_c is an instance attribute)."""

    rho_c: float

    def k_of(self, ubar) -> np.ndarray: ...
    def dk_of(self, ubar) -> np.ndarray: ...
    def element_load(self, elems, mu, t) -> np.ndarray: ...
    def element_g(self, elems, ue, mu, t) -> np.ndarray: ...
    def element_g_jacobian(self, elems, ue) -> np.ndarray: ...
    def g_vectors(self, U, mu, t) -> np.ndarray: ...
    def g_vector(self, u, mu, t) -> np.ndarray: ...
    def flux_field(self, U) -> np.ndarray: ...


HEAT_KERNELS = ("k_of", "dk_of", "stiffness_e", "mass_e", "gradients_e", "element_load", "element_g",
                "element_g_jacobian", "g_vectors", "g_vector", "flux_field")


def has_heat_kernels(problem) -> bool:
    """Whether a problem (class or object) has the kernels the DEIM ROM of the heat problem evaluates."""
    return all(hasattr(problem, m) for m in HEAT_KERNELS)


class GeometryFamily(Protocol):
    """One mesh per sample (capability `geometry_family`), with output fields and scalars declared by
    name and unit (a family read from files declares them in the study's mmgp section instead)."""

    output_fields: ClassVar[dict[str, str]]
    output_scalars: ClassVar[dict[str, str]]


class GeometrySolver(Protocol):
    """A family whose samples romflow meshes and solves (capability `geometry_solver`):
    `geometry(seed)` meshes sample `seed`, `discretize(mesh)` is the linear system on that mesh: a problem
    on that one mesh (`mesh`, `operator_values(mu, pattern)`, `rhs(mu, pattern)`), which
    rom.hifi.solvers.shapes solves with solve.FullOrderModel, and `solution(mu, sample)`, the outputs of
    a solve (`fields(n_nodes)`, `scalars`, solver facts)."""

    def geometry(self, seed: int) -> Any: ...
    def discretize(self, mesh) -> Any: ...


@dataclass
class AffineOutput:
    """A linear output s(mu) = sum_j lam_j(mu) l_j^T u + sum_p kappa_p(mu) o_p on the free dofs u (what
    `OutputFunctionals.output_functional` returns; rom.models.output certifies it)."""

    name: str
    terms: np.ndarray                 # (L, n_dofs) l_j
    lam: object                       # mu (n, d) -> (n, L)
    offset_terms: np.ndarray | None = None  # (P0,) o_p
    offset_coef: object | None = None       # mu (n, d) -> (n, P0)

    def offset(self, mu: np.ndarray) -> np.ndarray:
        mu = np.atleast_2d(mu)
        if self.offset_terms is None:
            return np.zeros(len(mu))
        return self.offset_coef(mu) @ self.offset_terms

    def value(self, mu: np.ndarray, U: np.ndarray) -> np.ndarray:
        """s(mu_i) for FOM (or any) fields U (n, n_dofs), one per parameter."""
        mu = np.atleast_2d(mu)
        return np.einsum("il,il->i", self.lam(mu), np.atleast_2d(U) @ self.terms.T) + self.offset(mu)


class OutputFunctionals(Protocol):
    """Linear outputs a study names in rb.outputs (capability `output_functionals`, on a stationary affine
    problem): `check_output(args, spec)` (classmethod, no mesh built) raises ValueError, one line without
    the key, for an entry the problem does not define; `output_functional(spec)` is its AffineOutput."""

    @classmethod
    def check_output(cls, args: dict, spec: dict) -> None: ...
    def output_functional(self, spec: dict) -> AffineOutput: ...


@dataclass(frozen=True)
class Capability:
    name: str
    protocol: type
    members: tuple[str, ...]
    implies: tuple[str, ...] = field(default=())


CAPABILITIES = {c.name: c for c in (
    Capability(PARAMETERS, Problem, ("name", "capabilities", "arguments", "parameter_space")),
    Capability(MESH, FixedMesh, ("mesh", "units", "energy_product", "mass_product", "full_field")),
    Capability(STATIONARY, Stationary, ("operator_values", "rhs"), (MESH,)),
    Capability(TRANSIENT, Transient, ("dt", "steps", "times", "initial_state"), (MESH,)),
    Capability(AFFINE, Affine, ("operator_terms", "theta", "rhs_terms", "phi")),
    Capability(ENTRY_PROBE, EntryProbe, ("entry_probe",), (STATIONARY,)),
    Capability(OPERATOR_ENTRIES, OperatorEntries, ("entries", "matrices_at"), (STATIONARY, ENTRY_PROBE)),
    Capability(COEFFICIENT_EIM, CoefficientEIM, ("eim_points", "g", "eim_operator_terms", "eim_theta", "kappa_scale"),
               (STATIONARY,)),
    Capability(COERCIVITY_BOUND, CoercivityBound, ("coercivity_lower_bound",)),
    Capability(NONLINEAR, Nonlinear, ("n_internal", "element_dofs", "element_weights", "initial_internal",
                                      "fixed_element_values", "element_residual", "external_terms", "external_coefficients",
                                      "dual_field"),
               (TRANSIENT,)),
    Capability(GEOMETRY_FAMILY, GeometryFamily, ("output_fields", "output_scalars")),
    Capability(GEOMETRY_SOLVER, GeometrySolver, ("geometry", "discretize"), (GEOMETRY_FAMILY,)),
    Capability(OUTPUT_FUNCTIONALS, OutputFunctionals, ("check_output", "output_functional"), (STATIONARY, AFFINE)),
)}


class ProblemContractError(TypeError):
    """A problem class that does not implement what it declares."""


def check_problem_class(cls) -> type:
    """Verify that `cls` implements every member of every capability it declares (and the capabilities
    those imply); returns cls. Members that are instance attributes set in __init__ (`mesh`, `dt`, ...)
    are checked by the conformance tests on instances, not here."""
    caps = getattr(cls, "capabilities", None)
    if not isinstance(caps, frozenset) or PARAMETERS not in caps:
        raise ProblemContractError(f"{cls.__qualname__}: expected a class attribute `capabilities`, a frozenset "
                                   f"containing {PARAMETERS!r} (known: {sorted(CAPABILITIES)})")
    unknown = sorted(caps - set(CAPABILITIES))
    if unknown:
        raise ProblemContractError(f"{cls.__qualname__}: unknown capabilities {unknown}; expected some of "
                                   f"{sorted(CAPABILITIES)}")
    for cap in sorted(caps):
        missing_caps = [c for c in CAPABILITIES[cap].implies if c not in caps]
        if missing_caps:
            raise ProblemContractError(f"{cls.__qualname__}: capability {cap!r} needs {missing_caps} declared too")
    instance_attributes = {"mesh", "dt", "steps", "times", "eim_points", "rho_c"}
    for cap in sorted(caps):
        missing = [m for m in CAPABILITIES[cap].members if m not in instance_attributes and not hasattr(cls, m)]
        if missing:
            raise ProblemContractError(f"{cls.__qualname__}: declares capability {cap!r} but lacks {missing} "
                                       f"(see rom.hifi.capabilities.{CAPABILITIES[cap].protocol.__name__})")
    if not isinstance(cls.__dict__.get("parameter_space", None), classmethod) and not any(
            isinstance(b.__dict__.get("parameter_space"), classmethod) for b in cls.__mro__):
        raise ProblemContractError(f"{cls.__qualname__}: parameter_space must be a classmethod (readable "
                                   "without building the mesh)")
    return cls


def check_problem_instance(problem) -> None:
    """The instance-attribute members of the declared capabilities (conformance tests, user classes)."""
    for cap in sorted(problem.capabilities):
        missing = [m for m in CAPABILITIES[cap].members if not hasattr(problem, m)]
        if missing:
            raise ProblemContractError(f"problem {problem.name}: declares capability {cap!r} but lacks {missing}")
