"""P1 plane-stress linear elasticity on a family of notched tensile plates (one gmsh mesh per sample).

The family has no shape parameters: sample k of a set draws its notches from a seed, so the only
scalar inputs are the loading ones (`pressure`, `bending`, `nu`). Every sample is meshed
independently, so node counts differ. Boundary conditions: u_y = 0 on the bottom edge, u_x = 0 at
the bottom-left corner (the x-reaction is zero in equilibrium: no point force), and on the top edge
a normal traction t_y(x) = pressure + bending * (2 x / width - 1). Plane stress with Young's modulus
`young`; K(nu) = young / (1 - nu^2) * (K_1 + nu K_2) is affine on each mesh. Each mesh is discretized
like the declared elasticity problem (rom.hifi.problems.declared.Elasticity): a vector P1 SimplexMesh, the
element kernels of rom.hifi.discretization.elasticity, and rom.hifi.solvers.solve.FullOrderModel solves it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import capabilities as cap
from ..capabilities import ParameterSpace
from ..discretization import fem
from ..discretization.elasticity import PLANE_STRESS_TERMS, material_matrix, stiffness_matrices, strain_matrices
from ..discretization.mesh import SimplexMesh, orient_triangles
from .arguments import number_range
from .base import P1Problem


@dataclass(frozen=True)
class PlateMesh:
    """A triangle mesh of one plate: nodes (n, 2), counter-clockwise triangles (m, 3)."""

    nodes: np.ndarray
    triangles: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)


def notch_profiles(rng: np.random.Generator, height: float, width: float, notches: int, depth: float):
    """Two random smooth inward offsets d_left(y), d_right(y) (callables), zero at both ends:
    `notches` Gaussian notches per side plus a low-frequency waviness."""
    sides = []
    for _ in range(2):
        c = rng.uniform(0.2, 0.8, notches) * height
        w = rng.uniform(0.04, 0.12, notches) * height
        a = rng.uniform(0.3, 1.0, notches) * depth * width
        b = rng.normal(0.0, 0.02 * width, 3) / np.arange(1, 4)

        def d(y, c=c, w=w, a=a, b=b):
            y = np.asarray(y, dtype=float)[..., None]
            bumps = (a * np.exp(-(((y - c) / w) ** 2))).sum(-1)
            wave = (b * np.sin(np.pi * np.arange(1, 4) * y / height)).sum(-1)
            # sin^2 taper: the corners stay where the boundary conditions expect them.
            return (bumps + np.abs(wave)) * np.sin(np.pi * y[..., 0] / height) ** 2

        sides.append(d)
    return sides


def mesh_plate(seed: int, width=1.0, height=2.0, notches=2, depth=0.15, h=0.1) -> PlateMesh:
    """Mesh one plate of the family with gmsh: straight bottom/top edges, notched spline sides."""
    import gmsh

    rng = np.random.default_rng(seed)
    d_left, d_right = notch_profiles(rng, height, width, notches, depth)
    y = np.linspace(0.0, height, max(8, int(round(3 * height / h))) + 1)
    right = np.column_stack([width - d_right(y), y])
    left = np.column_stack([d_left(y), y])[::-1]
    gmsh.initialize(["gmsh"], readConfigFiles=False)
    try:
        gmsh.option.setNumber("General.Terminal", 0)
        gmsh.option.setNumber("Mesh.RandomSeed", 1 + seed % 2**30)
        gmsh.option.setNumber("Mesh.Algorithm", 6)
        gmsh.model.add("plate")
        geo = gmsh.model.geo
        pr = [geo.addPoint(x, yy, 0.0, h) for x, yy in right]  # (width, 0) up to (width, height)
        pl = [geo.addPoint(x, yy, 0.0, h) for x, yy in left]  # (0, height) down to (0, 0)
        bottom_left = pl[-1]
        curves = [geo.addLine(bottom_left, pr[0]), geo.addSpline(pr), geo.addLine(pr[-1], pl[0]),
                  geo.addSpline(pl)]
        geo.addPlaneSurface([geo.addCurveLoop(curves)])
        geo.synchronize()
        gmsh.model.mesh.generate(2)
        tags, coords, _ = gmsh.model.mesh.getNodes()
        etypes, _, enodes = gmsh.model.mesh.getElements(2)
    finally:
        gmsh.finalize()
    tri_nodes = np.asarray(enodes[list(etypes).index(2)], dtype=np.int64).reshape(-1, 3)
    index = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    used = np.unique(tri_nodes)
    index[used] = np.arange(len(used))
    xyz = np.asarray(coords).reshape(-1, 3)
    pos = np.full(int(tags.max()) + 1, -1, dtype=np.int64)
    pos[tags.astype(np.int64)] = np.arange(len(tags))
    nodes = xyz[pos[used], :2]
    # Snap the straight edges exactly (boundary conditions select them by coordinate).
    nodes[np.abs(nodes[:, 1]) < 1e-9 * height, 1] = 0.0
    nodes[np.abs(nodes[:, 1] - height) < 1e-9 * height, 1] = height
    return PlateMesh(nodes, orient_triangles(nodes, index[tri_nodes]))


@dataclass
class ElasticSolution:
    """One solved plate: nodal displacement (n, 2), nodal von Mises stress (n,), scalars."""

    displacement: np.ndarray | None
    von_mises: np.ndarray | None
    max_von_mises: float
    compliance: float
    converged: bool
    reason: str
    iterations: int
    seconds: float

    def fields(self, n_nodes: int) -> dict[str, np.ndarray]:
        """The declared nodal outputs (TensilePlate.output_fields), NaN when the solve failed."""
        U = self.displacement if self.converged and self.displacement is not None else np.full((n_nodes, 2), np.nan)
        vm = self.von_mises if self.converged and self.von_mises is not None else np.full(n_nodes, np.nan)
        return {"u_x": U[:, 0], "u_y": U[:, 1], "von_mises": vm}

    @property
    def scalars(self) -> dict[str, float]:
        """The declared scalar outputs (TensilePlate.output_scalars)."""
        return {"max_von_mises": self.max_von_mises, "compliance": self.compliance}


class PlateSystem(P1Problem):
    """One plate mesh discretized, an affine elasticity problem on that mesh like the declared one
    (rom.hifi.problems.declared.Elasticity), which rom.hifi.solvers.solve.FullOrderModel solves: the
    vector P1 `mesh` (u_y fixed on the bottom edge, u_x at its left corner), K(nu) = sum_q theta_q K_q
    with theta = young / (1 - nu^2) (1, nu) and the plane-stress split of the material matrix, the
    top-edge traction load f = pressure f_1 + bending f_2, and the declared outputs of a solution."""

    capabilities = frozenset({cap.MESH, cap.STATIONARY, cap.AFFINE})

    def __init__(self, problem: TensilePlate, mesh: PlateMesh):
        self.problem, self.plate = problem, mesh
        fixed = np.zeros((mesh.n_nodes, 2), dtype=bool)
        bottom = mesh.nodes[:, 1] == 0.0
        fixed[bottom, 1] = True
        corner = np.flatnonzero(bottom)[np.argmin(mesh.nodes[bottom, 0])]
        fixed[corner, 0] = True
        super().__init__(SimplexMesh(mesh.nodes, mesh.triangles, fixed))

    def theta(self, mu) -> np.ndarray:
        nu = np.atleast_2d(mu)[:, 2]
        return self.problem.young / (1.0 - nu**2)[:, None] * np.column_stack([np.ones_like(nu), nu])

    def phi(self, mu) -> np.ndarray:
        return np.atleast_2d(mu)[:, :2]

    def operator_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """(2, nnz) values of K_1, K_2 on the pattern's rows."""
        cells = self.mesh.cells[pattern.elements]
        return np.stack([pattern.sum_entries(stiffness_matrices(self.mesh.nodes, cells, D)) for D in PLANE_STRESS_TERMS])

    @cached_property
    def nodal_loads(self) -> np.ndarray:
        """(2, n_nodes, 2) nodal forces of the unit pressure and unit bending tractions on the top edge
        (t_y = 1 and t_y = 2 x / width - 1; exact for a linear traction)."""
        p = self.problem
        x, y = self.mesh.nodes.T
        top = np.flatnonzero(np.abs(y - p.height) < 1e-12 * p.height)
        top = top[np.argsort(x[top])]
        L = np.diff(x[top])
        f = np.zeros((2, self.mesh.n_nodes, 2))
        for fk, t in zip(f, (np.ones(len(top)), 2.0 * x[top] / p.width - 1.0)):
            np.add.at(fk[:, 1], top[:-1], L * (2 * t[:-1] + t[1:]) / 6.0)
            np.add.at(fk[:, 1], top[1:], L * (t[:-1] + 2 * t[1:]) / 6.0)
        return f

    def rhs_terms(self, pattern: fem.Pattern) -> np.ndarray:
        """(2, n_rows) load terms on the pattern's rows."""
        return np.stack([pattern.sum_vectors(self.mesh.numbering, f) for f in self.nodal_loads])

    def solution(self, mu, sample) -> ElasticSolution:
        """The outputs of a FullOrderModel solve (`sample.u` the gathered free dofs, None off rank 0)."""
        if sample.u is None:
            return ElasticSolution(None, None, np.nan, np.nan, sample.converged, sample.reason, sample.iterations,
                                   sample.seconds)
        U = self.mesh.full_field(sample.u, 0.0)
        vm = self.von_mises(U, mu[2])
        f = np.tensordot(self.phi(mu)[0], self.nodal_loads, axes=1)
        return ElasticSolution(U, vm, float(vm.max()), float(np.vdot(f, U)), sample.converged, sample.reason,
                               sample.iterations, sample.seconds)

    def von_mises(self, U: np.ndarray, nu: float) -> np.ndarray:
        """Nodal von Mises stress: element values averaged over the triangles of each node (area weights)."""
        tri = self.mesh.cells
        g, det = fem.simplex_gradients(self.mesh.nodes, tri)
        eps = np.einsum("eij,ej->ei", strain_matrices(g), U[tri].reshape(-1, 6))
        s = eps @ (self.problem.young * material_matrix(nu, 2, "stress")).T
        vm_e = np.sqrt(np.maximum(s[:, 0] ** 2 - s[:, 0] * s[:, 1] + s[:, 1] ** 2 + 3.0 * s[:, 2] ** 2, 0.0))
        w = np.repeat(det / 2.0, 3)
        n = self.mesh.n_nodes
        return np.bincount(tri.ravel(), w * np.repeat(vm_e, 3), n) / np.bincount(tri.ravel(), w, n)


class TensilePlate(P1Problem):
    """A family of notched plates under tension (module docstring). `mesh.n` is the number of
    mesh cells across the plate width (h = width / mesh_n)."""

    name = "tensile_plate"
    capabilities = frozenset({cap.PARAMETERS, cap.GEOMETRY_FAMILY, cap.GEOMETRY_SOLVER})
    arguments = {
        "mesh": {"type": "object", "default": {}, "additionalProperties": False,
                 "properties": {"n": {"type": "integer", "minimum": 4, "maximum": 400, "default": 12,
                                      "description": "mesh cells across the plate width"}}},
        "width": {"type": "number", "exclusiveMinimum": 0, "default": 1.0},
        "height": {"type": "number", "exclusiveMinimum": 0, "default": 2.0},
        "notches": {"type": "integer", "minimum": 0, "maximum": 8, "default": 1},
        "notch_depth": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.35, "default": 0.15,
                        "description": "fraction of the width"},
        "young": {"type": "number", "exclusiveMinimum": 0, "default": 100.0, "description": "MPa"},
        "pressure_range": number_range((0.5, 1.5)), "bending_range": number_range((-0.5, 0.5)),
        "nu_range": number_range((0.2, 0.4)),
    }
    # Units: lengths in mm, Young's modulus, loads and stresses in MPa; compliance f . u in N
    # (per mm of thickness: plane stress).
    output_fields = {"u_x": "mm", "u_y": "mm", "von_mises": "MPa"}
    output_scalars = {"max_von_mises": "MPa", "compliance": "N"}
    # Linear elasticity: every output is positively homogeneous in the load amplitudes, of degree 1
    # (displacements, stresses) or 2 (compliance = f . u); MMGP's load scaling uses it.
    load_parameters = ("pressure", "bending")
    output_degrees = {"u_x": 1, "u_y": 1, "von_mises": 1, "max_von_mises": 1, "compliance": 2}

    def __init__(self, mesh_n: int = 12, width: float = 1.0, height: float = 2.0, notches: int = 1,
                 notch_depth: float = 0.15, young: float = 100.0, pressure_range=(0.5, 1.5),
                 bending_range=(-0.5, 0.5), nu_range=(0.2, 0.4)):
        super().__init__(None)
        if not 0.0 < notch_depth < 0.35:
            raise ValueError(f"notch_depth = {notch_depth}: expected a value in (0, 0.35) (fraction of the width)")
        if mesh_n < 4:
            raise ValueError(f"mesh.n = {mesh_n}: expected at least 4 cells across the plate")
        self.mesh_n, self.width, self.height = int(mesh_n), float(width), float(height)
        self.notches, self.notch_depth, self.young = int(notches), float(notch_depth), float(young)
        self.ranges = [tuple(map(float, r)) for r in (pressure_range, bending_range, nu_range)]

    @classmethod
    def parameter_space(cls, args: dict) -> ParameterSpace:
        keys = ("pressure_range", "bending_range", "nu_range")
        defaults = ((0.5, 1.5), (-0.5, 0.5), (0.2, 0.4))
        return ParameterSpace(("pressure", "bending", "nu"), [args.get(k, d) for k, d in zip(keys, defaults)],
                              [[-np.inf, np.inf], [-np.inf, np.inf], [-1.0, 0.5]], units=("MPa", "MPa", "1"))

    def arguments_used(self):
        return dict(zip(("pressure_range", "bending_range", "nu_range"), self.ranges))

    def discretize(self, mesh: PlateMesh) -> PlateSystem:
        """One sample of the family discretized on its mesh (solved by rom.hifi.solvers.shapes)."""
        return PlateSystem(self, mesh)

    @property
    def h(self) -> float:
        return self.width / self.mesh_n

    def geometry(self, seed: int) -> PlateMesh:
        return mesh_plate(seed, self.width, self.height, self.notches, self.notch_depth, self.h)
