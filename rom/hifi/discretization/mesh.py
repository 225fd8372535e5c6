"""P1 meshes and their dof numbering: uniform triangulations of the unit square (TriMesh) and simplex
meshes in 2D and 3D (SimplexMesh: triangles or tetrahedra, scalar or vector dofs, e.g. read from a
file by rom.hifi.discretization.meshfile). Both expose `cells`, `volumes`, `cell_dofs` and `full_field`, which is
all the vectorized assembly of rom.hifi.discretization.fem needs."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee


@dataclass(frozen=True)
class TriMesh:
    """A 2D triangle mesh: `nodes` (n_nodes, 2), `triangles` (n_tri, 3) counter-clockwise,
    `boundary` a boolean mask of Dirichlet nodes."""

    nodes: np.ndarray
    triangles: np.ndarray
    boundary: np.ndarray

    dim = 2
    components = 1

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def cells(self) -> np.ndarray:
        return self.triangles

    @property
    def fixed(self) -> np.ndarray:
        return self.boundary

    @property
    def volumes(self) -> np.ndarray:
        return self.areas

    @cached_property
    def cell_dofs(self) -> np.ndarray:
        """(n_cells, 3) free dof of each cell vertex, -1 for Dirichlet vertices."""
        return self.dof_of_node[self.triangles]

    @cached_property
    def dof_of_node(self) -> np.ndarray:
        """Interior (free) dof index of each node, -1 on the Dirichlet boundary."""
        dof = np.full(self.n_nodes, -1, dtype=np.int64)
        interior = ~self.boundary
        dof[interior] = np.arange(interior.sum())
        return dof

    @cached_property
    def interior_nodes(self) -> np.ndarray:
        return np.flatnonzero(~self.boundary)

    @property
    def n_dofs(self) -> int:
        return len(self.interior_nodes)

    @cached_property
    def centroids(self) -> np.ndarray:
        return self.nodes[self.triangles].mean(axis=1)

    @cached_property
    def areas(self) -> np.ndarray:
        return simplex_volumes(self.nodes, self.triangles)

    def full_field(self, u_interior: np.ndarray, boundary_values: np.ndarray | float = 0.0) -> np.ndarray:
        """Nodal field from interior dofs (last axis) and Dirichlet values on the boundary nodes."""
        u_interior = np.asarray(u_interior)
        out = np.empty(u_interior.shape[:-1] + (self.n_nodes,), dtype=u_interior.dtype)
        out[..., self.interior_nodes] = u_interior
        out[..., self.boundary] = boundary_values
        return out


def unit_square(n: int) -> TriMesh:
    """n x n squares, each cut into two triangles along its diagonal; nodes numbered row by row
    (x fastest), so interior dofs of consecutive rows are contiguous (good for row-block MPI)."""
    if n < 2:
        raise ValueError(f"mesh.n = {n}: expected at least 2 cells per side")
    x = np.linspace(0.0, 1.0, n + 1)
    X, Y = np.meshgrid(x, x)
    nodes = np.column_stack([X.ravel(), Y.ravel()])
    i, j = np.meshgrid(np.arange(n), np.arange(n))
    ll = (j * (n + 1) + i).ravel()  # lower-left node of each square
    lr, ul, ur = ll + 1, ll + n + 1, ll + n + 2
    triangles = np.concatenate([np.column_stack([ll, lr, ur]), np.column_stack([ll, ur, ul])])
    on_edge = (X.ravel() == 0) | (X.ravel() == 1) | (Y.ravel() == 0) | (Y.ravel() == 1)
    return TriMesh(nodes=nodes, triangles=triangles, boundary=on_edge)


def side_indicators(mesh: TriMesh) -> np.ndarray:
    """(4, n_nodes) weights of the sides left, right, bottom, top on boundary nodes; a corner is
    shared half-half by its two sides, so sum_s T_s * w_s is an affine boundary datum."""
    x, y = mesh.nodes.T
    sides = np.stack([x == 0, x == 1, y == 0, y == 1]).astype(float)
    count = sides.sum(axis=0)
    return np.divide(sides, count, out=np.zeros_like(sides), where=count > 0)


def simplex_volumes(nodes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Signed measures of triangles (2D, counter-clockwise > 0) or tetrahedra (3D, right-handed > 0)."""
    p = nodes[cells]
    e = p[:, 1:] - p[:, :1]  # (m, d, d) edge vectors from vertex 0
    if nodes.shape[1] == 2:
        return 0.5 * (e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0])
    return np.einsum("ij,ij->i", e[:, 0], np.cross(e[:, 1], e[:, 2])) / 6.0


def node_order(n_nodes: int, cells: np.ndarray) -> np.ndarray:
    """Reverse Cuthill-McKee order of the nodes (graph of the cell edges): consecutive dofs are
    neighbours, so the contiguous row blocks PETSc gives each MPI rank are compact and touch few
    cells of other ranks, whatever order the mesh file lists its nodes in."""
    k = cells.shape[1]
    i, j = np.triu_indices(k, 1)
    a = cells[:, i].ravel().astype(np.int32)
    b = cells[:, j].ravel().astype(np.int32)
    graph = sp.csr_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n_nodes, n_nodes))
    return reverse_cuthill_mckee((graph + graph.T).tocsr(), symmetric_mode=True).astype(np.int64)


@dataclass(frozen=True)
class SimplexMesh:
    """A P1 space on a simplex mesh: `nodes` (n_nodes, dim), positively oriented `cells`
    (n_cells, dim + 1), and `fixed` (n_nodes, components) the Dirichlet dofs (one component: a scalar
    field; dim components: a displacement). Free dofs are numbered node by node in `order`
    (reverse Cuthill-McKee by default), the components of a node consecutively."""

    nodes: np.ndarray
    cells: np.ndarray
    fixed: np.ndarray
    order: np.ndarray | None = None

    def __post_init__(self):
        fixed = np.asarray(self.fixed, dtype=bool)
        object.__setattr__(self, "fixed", fixed.reshape(len(self.nodes), -1))
        if self.order is None:
            object.__setattr__(self, "order", node_order(len(self.nodes), self.cells))

    @property
    def dim(self) -> int:
        return self.nodes.shape[1]

    @property
    def components(self) -> int:
        return self.fixed.shape[1]

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def triangles(self) -> np.ndarray:
        if self.dim != 2:
            raise AttributeError("a 3D mesh has tetrahedra (cells), not triangles")
        return self.cells

    @property
    def boundary(self) -> np.ndarray:
        """Nodes with a Dirichlet condition (any component)."""
        return self.fixed.any(axis=1)

    @cached_property
    def numbering(self) -> np.ndarray:
        """Free dof of each (node, component), (n_nodes, components) for any field, -1 where fixed
        (`dof_of_node` drops the component axis of a scalar field)."""
        free = ~self.fixed[self.order]  # (n_nodes, c) in dof order
        dof = np.full(self.fixed.shape, -1, dtype=np.int64)
        dof[self.order[:, None].repeat(self.components, 1)[free], np.nonzero(free)[1]] = np.arange(free.sum())
        return dof

    @property
    def dof_of_node(self) -> np.ndarray:
        """Free dof of each node (n_nodes,) for a scalar field, of each (node, component) (n_nodes, c)
        otherwise; -1 where fixed."""
        return self.numbering[:, 0] if self.components == 1 else self.numbering

    @cached_property
    def _dof_node_component(self) -> np.ndarray:
        """(2, n_dofs): node and component of each free dof, the inverse of `numbering`."""
        node, comp = np.nonzero(self.numbering >= 0)
        out = np.empty((2, self.n_dofs), dtype=np.int64)
        out[:, self.numbering[node, comp]] = node, comp
        return out

    @property
    def dof_node(self) -> np.ndarray:
        """Node of each free dof (n_dofs,)."""
        return self._dof_node_component[0]

    @property
    def dof_component(self) -> np.ndarray:
        """Component of each free dof (n_dofs,)."""
        return self._dof_node_component[1]

    @property
    def interior_nodes(self) -> np.ndarray:
        """Node of each free dof (a scalar field: the nodes without a Dirichlet condition, in dof order)."""
        return self.dof_node

    @cached_property
    def n_dofs(self) -> int:
        return int((~self.fixed).sum())

    @cached_property
    def cell_dofs(self) -> np.ndarray:
        """(n_cells, (dim + 1) * components) free dofs of each cell, vertex by vertex, -1 where fixed."""
        return self.numbering[self.cells].reshape(len(self.cells), -1)

    @cached_property
    def volumes(self) -> np.ndarray:
        return simplex_volumes(self.nodes, self.cells)

    @cached_property
    def centroids(self) -> np.ndarray:
        return self.nodes[self.cells].mean(axis=1)

    def full_field(self, u: np.ndarray, fixed_values: np.ndarray | float = 0.0) -> np.ndarray:
        """Nodal field (..., n_nodes) or (..., n_nodes, c) from free dofs (last axis) and the values of
        the fixed dofs (in the order of np.nonzero(fixed))."""
        u = np.asarray(u)
        out = np.empty(u.shape[:-1] + self.fixed.shape, dtype=u.dtype)
        free = self.numbering >= 0
        out[..., free] = u[..., self.numbering[free]]
        out[..., self.fixed] = fixed_values
        return out[..., 0] if self.components == 1 else out


# -- topology of simplex meshes (vectorized: lexicographic sorts of node-index rows) ---------------------
def _packed(rows: np.ndarray, n: int) -> list[np.ndarray]:
    """Rows (m, k) of integers in [0, n) packed into as few int64 keys as hold them (most significant
    first): one key for k = 3 up to 2^21 nodes, so most comparisons are 1D sorts."""
    per = max(1, 62 // max(int(n - 1).bit_length(), 1))
    keys = []
    for start in range(0, rows.shape[1], per):
        key = np.zeros(len(rows), dtype=np.int64)
        for c in range(start, min(start + per, rows.shape[1])):
            key = key * n + rows[:, c]
        keys.append(key)
    return keys


def _sorted_groups(keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lexicographic order of rows given by their packed keys and the group number of each sorted row
    (equal rows share one)."""
    order = np.argsort(keys[0], kind="stable") if len(keys) == 1 else np.lexsort(keys[::-1])
    new = np.zeros(len(order), dtype=bool)
    new[0] = True
    for key in keys:
        s = key[order]
        new[1:] |= s[1:] != s[:-1]
    return order, np.cumsum(new) - 1


def _node_sets(rows: np.ndarray, n: int | None = None) -> list[np.ndarray]:
    rows = np.sort(np.asarray(rows, dtype=np.int64), axis=1)
    return _packed(rows, n if n is not None else int(rows.max(initial=0)) + 1)


def rows_once(rows: np.ndarray) -> np.ndarray:
    """Whether each row of `rows` (m, k) occurs once only (as a set of nodes), (m,): `row_counts(rows) ==
    1`, with one value sort and a search of the few single rows where the node sets pack into one key."""
    if not len(rows):
        return np.zeros(0, dtype=bool)
    keys = _node_sets(rows)
    if len(keys) > 1:
        return row_counts(rows) == 1
    key = keys[0]
    s = np.sort(key)
    differs = s[1:] != s[:-1]
    single = np.ones(len(s), dtype=bool)
    single[1:] &= differs
    single[:-1] &= differs
    s = s[single]
    if not len(s):
        return np.zeros(len(key), dtype=bool)
    pos = np.searchsorted(s, key)
    np.minimum(pos, len(s) - 1, out=pos)
    return s[pos] == key


def row_counts(rows: np.ndarray) -> np.ndarray:
    """How often each row of `rows` (m, k) occurs (as a set of nodes: rows are compared sorted), (m,)."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    order, group = _sorted_groups(_node_sets(rows))
    out = np.empty(len(rows), dtype=np.int64)
    out[order] = np.bincount(group)[group]
    return out


def first_of_rows(rows: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct node set among `rows`, ascending."""
    if not len(rows):
        return np.zeros(0, dtype=np.int64)
    order, group = _sorted_groups(_node_sets(rows))
    first = np.full(group[-1] + 1, len(rows), dtype=np.int64)
    np.minimum.at(first, group, order)
    return np.sort(first)


def rows_in(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each row of `a` equals (as a node set) some row of `b`, (len(a),)."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    n = int(max(a.max(), b.max(initial=0))) + 1
    ka, kb = _node_sets(a, n), _node_sets(b, n)
    if len(ka) == 1:  # np.isin's merge sort of both, as a value sort of b and a search
        sb = np.sort(kb[0])
        if not len(sb):
            return np.zeros(len(a), dtype=bool)
        pos = np.minimum(np.searchsorted(sb, ka[0]), len(sb) - 1)
        return sb[pos] == ka[0]
    # Several keys: sort a and b together, rows of b first among equal rows.
    keys = [np.concatenate([y, x]) for x, y in zip(ka, kb)]
    tag = np.r_[np.zeros(len(b), dtype=np.int64), np.ones(len(a), dtype=np.int64)]
    order = np.lexsort([tag] + keys[::-1])
    new = np.zeros(len(order), dtype=bool)
    new[0] = True
    for key in keys:
        s = key[order]
        new[1:] |= s[1:] != s[:-1]
    group = np.cumsum(new) - 1
    has_b = tag[order][new] == 0
    out = np.empty(len(order), dtype=bool)
    out[order] = has_b[group]
    return out[len(b):]


def cell_faces(cells: np.ndarray) -> np.ndarray:
    """The d + 1 faces of every cell, vertex i left out in block i: (m * (d + 1), d)."""
    k = cells.shape[1]
    return np.concatenate([cells[:, [j for j in range(k) if j != i]] for i in range(k)])


def boundary_faces(nodes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Faces that belong to one cell only, oriented with the outward normal (counter-clockwise seen from
    outside in 3D; the domain on the left in 2D)."""
    k = cells.shape[1]
    faces = cell_faces(cells)
    once = rows_once(faces)
    f = faces[once]
    opposite = cells[np.tile(np.arange(len(cells)), k)[once], np.repeat(np.arange(k), len(cells))[once]]
    p = nodes[f]
    if nodes.shape[1] == 2:
        t = p[:, 1] - p[:, 0]
        normal = np.column_stack([t[:, 1], -t[:, 0]])
    else:
        normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    inward = np.einsum("ij,ij->i", normal, nodes[opposite] - p[:, 0]) > 0
    f = f.copy()
    f[inward] = f[inward][:, ::-1] if nodes.shape[1] == 2 else f[inward][:, [0, 2, 1]]
    return f


def view_triangles(nodes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """A 2D triangulation for plots of nodal fields in the xy plane: the cells of a 2D mesh; for a 3D mesh
    the boundary faces seen from +z (outward normal up), ordered from the lowest to the highest, so that
    drawing them in order shows the surface a viewer above the part sees."""
    if nodes.shape[1] == 2:
        return cells
    f = boundary_faces(nodes, cells)
    p = nodes[f]
    up = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])[:, 2] > 0
    f = f[up]
    return f[np.argsort(nodes[f, 2].mean(axis=1), kind="stable")]


def orient_triangles(nodes: np.ndarray, triangles: np.ndarray, folded=None, groups: np.ndarray | None = None) -> np.ndarray:
    """Triangles reordered counter-clockwise (positive `simplex_volumes`): gmsh orients each surface by
    its normal, which may be -z. Without `folded`, every clockwise triangle is flipped. With `folded`, the
    majority orientation of each group of triangles (`groups` (m,) labels; default one group: the whole
    mesh) is its normal and is flipped whole; a triangle oriented against it disagrees with its
    neighbours across their shared edges (the two overlap) and flipping it alone would hide the fold, so
    `folded(indices)` is called with those triangles (to refuse the mesh, naming them) before any flip."""
    tri = np.array(triangles)
    area = simplex_volumes(nodes, tri)
    if folded is None:
        flip = area < 0
    else:
        _, group = np.unique(np.zeros(len(tri), dtype=np.int64) if groups is None else groups, return_inverse=True)
        group = group.ravel()
        clockwise = np.bincount(group, weights=area < 0) > np.bincount(group, weights=area > 0)
        against = np.flatnonzero(np.where(clockwise[group], area > 0, area < 0))
        if len(against):
            folded(against)
        flip = clockwise[group]
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return tri
