"""Conforming P1 finite elements on triangles (2D) and tetrahedra (3D), vectorized over elements.

Element matrices are computed for all cells at once with einsum; global assembly maps the
(cell, i, j) entries onto a fixed CSR pattern of the free dofs with one bincount per term, so
every affine component A_q shares the pattern and A(mu) is a dot product of the value arrays.
A mesh is anything with `nodes` (n, d), `cells` (m, d + 1), `volumes` (m,) and `cell_dofs`
(rom.hifi.discretization.mesh.TriMesh, SimplexMesh); boundary facets (f, d) are assembled onto the same pattern.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.special import roots_jacobi

# Degree-2 quadrature on the reference triangle (edge midpoints), exact for quadratics.
QUAD_BARY = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
QUAD_W = np.full(3, 1.0 / 3.0)
# Degree-2 rule on the tetrahedron: 4 points symmetric about the centroid, equal weights.
_ta, _tb = 0.5854101966249685, 0.1381966011250105
_QUAD_BARY_3D = np.full((4, 4), _tb) + np.eye(4) * (_ta - _tb)
_QUAD_W_3D = np.full(4, 0.25)
# Degree-5 rule (7 points, Strang-Fix / Dunavant) for error norms of smooth exact solutions.
_a, _b = 0.059715871789770, 0.470142064105115
_c, _d = 0.797426985353087, 0.101286507323456
_QUAD5_BARY = np.array([[1 / 3, 1 / 3, 1 / 3], [_a, _b, _b], [_b, _a, _b], [_b, _b, _a],
                        [_c, _d, _d], [_d, _c, _d], [_d, _d, _c]])
_QUAD5_W = np.array([0.225, *[0.132394152788506] * 3, *[0.125939180544827] * 3])


def collapsed_rule(dim: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Conical-product Gauss-Jacobi rule on the reference simplex, exact for polynomials of degree
    2 n - 1: barycentric points (n^dim, dim + 1) and weights summing to 1. The Duffy map
    x_1 = t_1, x_2 = t_2 (1 - t_1), x_3 = t_3 (1 - t_1)(1 - t_2) has Jacobian (1 - t_1)^(dim-1) (1 - t_2)^(dim-2),
    absorbed by Jacobi weights (1 - t)^a on [0, 1]."""
    axes, weights = [], []
    for a in range(dim - 1, -1, -1):
        x, w = roots_jacobi(n, a, 0)
        axes.append((1 + x) / 2)
        weights.append(w / 2 ** (a + 1))
    t = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    w = np.prod(np.stack(np.meshgrid(*weights, indexing="ij"), -1).reshape(-1, dim), axis=1)
    x = np.empty_like(t)
    scale = np.ones(len(t))
    for i in range(dim):
        x[:, i] = t[:, i] * scale
        scale = scale * (1 - t[:, i])
    bary = np.column_stack([1 - x.sum(axis=1), x])
    return bary, w / w.sum()


def simplex_gradients(nodes: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the d + 1 barycentric functions on every cell (m, d + 1, d) and the Jacobian
    determinants (m,) (d! times the signed volume)."""
    p = nodes[cells]
    e = p[:, 1:] - p[:, :1]
    if nodes.shape[1] == 2:
        e1, e2 = e[:, 0], e[:, 1]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        # Rows of the inverse Jacobian give grad(lambda_1), grad(lambda_2); lambda_0 = 1 - lambda_1 - lambda_2.
        g = np.stack([np.column_stack([e2[:, 1], -e2[:, 0]]), np.column_stack([-e1[:, 1], e1[:, 0]])], axis=1)
    else:
        # grad(lambda_i) = (e_j x e_k) / det for (i, j, k) cyclic: the rows of the inverse Jacobian.
        e1, e2, e3 = e[:, 0], e[:, 1], e[:, 2]
        g = np.stack([np.cross(e2, e3), np.cross(e3, e1), np.cross(e1, e2)], axis=1)
        det = np.einsum("ij,ij->i", e1, g[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        g = g / det[:, None, None]
    return np.concatenate([-g.sum(axis=1, keepdims=True), g], axis=1), det


def p1_gradients(mesh) -> np.ndarray:
    """Gradients of the barycentric basis functions on every cell, shape (n_cells, d + 1, d)."""
    g, det = simplex_gradients(mesh.nodes, mesh.cells)
    if np.any(det <= 0):
        raise ValueError(f"mesh has {(det <= 0).sum()} inverted or degenerate cells")
    return g


def stiffness_local(mesh, kappa: np.ndarray | float = 1.0) -> np.ndarray:
    """Element stiffness matrices kappa_e * vol_e * grad(phi_i).grad(phi_j), shape (n_cells, k, k)."""
    return simplex_stiffness(mesh.nodes, mesh.cells, kappa)


def simplex_stiffness(nodes: np.ndarray, cells: np.ndarray, kappa: np.ndarray | float = 1.0) -> np.ndarray:
    """Stiffness matrices of the given cells (positively oriented), (len(cells), k, k)."""
    g, det = simplex_gradients(nodes, cells)
    vol = det / math.factorial(nodes.shape[1])
    return np.einsum("e,eik,ejk->eij", np.broadcast_to(kappa, vol.shape) * vol, g, g)


def simplex_mass(measure: np.ndarray, k: int) -> np.ndarray:
    """Exact P1 mass matrices of simplices with k vertices: measure / (k (k + 1)) * (1 + delta_ij)."""
    return measure[:, None, None] * ((np.ones((k, k)) + np.eye(k)) / (k * (k + 1)))


def mass_local(mesh) -> np.ndarray:
    """Exact P1 element mass matrices (n_cells, k, k)."""
    return simplex_mass(mesh.volumes, mesh.cells.shape[1])


def quadrature(dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The degree-2 rule of the reference cell (barycentric points, weights summing to 1)."""
    return (QUAD_BARY, QUAD_W) if dim == 2 else (_QUAD_BARY_3D, _QUAD_W_3D)


def load_local(mesh, f=1.0) -> np.ndarray:
    """Element load vectors int f phi_i, with f a constant or a callable f(x, y[, z]) (degree-2 quadrature)."""
    k = mesh.cells.shape[1]
    if not callable(f):
        return np.repeat(mesh.volumes[:, None] * (float(f) / k), k, axis=1)
    bary, w = quadrature(mesh.nodes.shape[1])
    xq = np.einsum("qi,eid->eqd", bary, mesh.nodes[mesh.cells])
    fq = f(*np.moveaxis(xq, -1, 0))
    return mesh.volumes[:, None] * np.einsum("q,eq,qi->ei", w, fq, bary)


def facet_measures(nodes: np.ndarray, facets: np.ndarray) -> np.ndarray:
    """Lengths of boundary edges (2D) or areas of boundary triangles (3D), (f,)."""
    p = nodes[facets]
    if nodes.shape[1] == 2:
        return np.linalg.norm(p[:, 1] - p[:, 0], axis=1)
    return 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)


PACK_BITS = 63  # bits of a packed (key, entry) sort key: an int64's (tests lower it to force the argsort)


@dataclass(frozen=True)
class Pattern:
    """CSR sparsity of the free-dof couplings for the rows [row_start, row_stop).

    `entry_slot[k]` is the position in `indices` of the k-th flattened element entry of
    `elements` (n_sel, k, k) (k dofs per cell), or -1 when that entry couples to a Dirichlet dof
    or a row owned elsewhere. Only cells touching owned rows are selected, so each MPI rank
    assembles its own part. A serial pattern owns all rows."""

    n_dofs: int
    row_start: int
    row_stop: int
    indptr: np.ndarray
    indices: np.ndarray
    elements: np.ndarray
    entry_slot: np.ndarray

    @classmethod
    def build(cls, mesh, row_range: tuple[int, int] | None = None) -> Pattern:
        return cls.from_cell_dofs(mesh.cell_dofs, mesh.n_dofs, row_range)

    @classmethod
    def from_cell_dofs(cls, dof: np.ndarray, n: int, row_range: tuple[int, int] | None = None) -> Pattern:
        """The pattern of cells with dofs `dof` (n_cells, k) (-1 = Dirichlet) on the rows [r0, r1).

        One sort of the element entries, no global unique: each entry (row, col) gets the key
        (row - r0) W + (col - row - lo), lo and W the band of the couplings (ordered like row * n + col,
        fewer bits); the entry's index is packed into the low bits so that one value sort (np.sort, a
        vectorized quicksort) gives both the sorted keys and the permutation. Keys too wide for the
        packing fall back to an argsort. The same indptr, indices and entry_slot as np.unique gives."""
        r0, r1 = row_range if row_range is not None else (0, n)
        nr = r1 - r0
        k = dof.shape[1]
        dof = np.asarray(dof, dtype=np.int64)
        owned = (dof >= r0) & (dof < r1)
        touching = owned.any(axis=1)  # only cells touching owned rows
        if touching.all():
            elements, d = np.arange(len(dof), dtype=np.int64), dof
        else:
            elements = np.flatnonzero(touching)
            d = dof[elements]
            owned = owned[elements]
        m = len(d)
        valid = (owned[:, :, None] & (d >= 0)[:, None, :]).reshape(-1)  # row owned, column free
        key = (d[:, None, :] - d[:, :, None]).reshape(-1)  # col - row
        if valid.all():
            lo, hi = (int(key.min()), int(key.max())) if len(key) else (0, 0)
        else:
            lo = int(np.min(key, where=valid, initial=np.iinfo(np.int64).max)) if valid.any() else 0
            hi = int(np.max(key, where=valid, initial=np.iinfo(np.int64).min)) if valid.any() else 0
        width = hi - lo + 1
        key -= lo
        key.reshape(m, k, k)[...] += ((d - r0) * width)[:, :, None]
        sentinel = nr * width  # past every valid key: the -1 entries sort last
        nv = int(np.count_nonzero(valid))
        if nv < len(key):
            key[~valid] = sentinel
        n_entries = len(key)
        ibits = max(int(n_entries - 1).bit_length(), 1)
        if int(sentinel).bit_length() + ibits <= PACK_BITS:
            key <<= ibits
            key |= np.arange(n_entries, dtype=np.int64)
            key.sort()
            order = key & ((1 << ibits) - 1)
            key >>= ibits
        else:
            order = np.argsort(key)
            key = key[order]
        new = np.empty(n_entries, dtype=bool)
        new[:1] = True
        np.not_equal(key[1:], key[:-1], out=new[1:])
        unique_key = key[new]
        if nv < n_entries:  # the sentinel's group
            unique_key = unique_key[:-1]
        slot = np.cumsum(new, out=key)  # the sorted keys' buffer, no longer needed
        slot -= 1
        slot[nv:] = -1
        entry_slot = np.empty(n_entries, dtype=np.int64)
        entry_slot[order] = slot
        del key, slot, order, new
        urows = unique_key // width
        indices = unique_key - urows * width
        indices += urows
        indices += r0 + lo
        indptr = np.zeros(nr + 1, dtype=np.int64)
        np.cumsum(np.bincount(urows, minlength=nr), out=indptr[1:])
        return cls(n, r0, r1, indptr, indices, elements, entry_slot)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def n_rows(self) -> int:
        return self.row_stop - self.row_start

    def sum_entries(self, local: np.ndarray, term: np.ndarray | None = None, n_terms: int = 1) -> np.ndarray:
        """CSR values of element matrices given for the selected `elements` only, (n_sel, k, k); with
        `term` (n_sel,) the values (n_terms, nnz) of each term. One bincount, no loop over terms.

        Entries that are not stored (slot -1) go to one extra bin past the last, dropped: no compression
        of the entries, and each stored value sums the same numbers in the same order as a bincount of
        the stored entries alone."""
        vals = local.reshape(-1)
        size = n_terms * self.nnz
        dropped = None if self._all_stored else self.entry_slot < 0
        if term is None:
            bins = self.entry_slot if dropped is None else np.where(dropped, size, self.entry_slot)
        else:
            kk = local.shape[1] * local.shape[2]
            bins = np.repeat(np.asarray(term, dtype=np.int64) * self.nnz, kk)
            bins += self.entry_slot
            if dropped is not None:
                bins[dropped] = size
        out = np.bincount(bins, weights=vals, minlength=size + 1)[:size]
        return out if term is None else out.reshape(n_terms, self.nnz)

    @cached_property
    def _all_stored(self) -> bool:
        """Whether every element entry is stored (no Dirichlet dof, every row owned)."""
        return bool(len(self.entry_slot) == 0 or self.entry_slot.min() >= 0)

    def assemble(self, local: np.ndarray) -> np.ndarray:
        """Sum element matrices (n_cells, k, k) of the whole mesh into CSR values (nnz,)."""
        return self.sum_entries(local[self.elements])

    def assemble_terms(self, local: np.ndarray, term_of_element: np.ndarray, n_terms: int) -> np.ndarray:
        """Affine components: values (n_terms, nnz) where term q sums the elements labelled q."""
        return self.sum_entries(local[self.elements], term_of_element[self.elements], n_terms)

    def assemble_vector(self, mesh, local: np.ndarray) -> np.ndarray:
        """Sum element vectors (n_cells, k) into the owned rows (n_rows,)."""
        return self.sum_vectors(mesh.cell_dofs, local)

    def sum_vectors(self, dof: np.ndarray, local: np.ndarray, term: np.ndarray | None = None,
                    n_terms: int = 1) -> np.ndarray:
        """Sum vectors (m, k) of cells or facets with dofs `dof` (m, k) into the owned rows; with
        `term` (m,) one row block per term, (n_terms, n_rows)."""
        owned = (dof >= self.row_start) & (dof < self.row_stop)
        rows = dof[owned] - self.row_start
        if term is None:
            return np.bincount(rows, weights=local[owned], minlength=self.n_rows)
        flat = np.broadcast_to(term[:, None], dof.shape)[owned] * self.n_rows + rows
        return np.bincount(flat, weights=local[owned], minlength=n_terms * self.n_rows).reshape(n_terms, self.n_rows)

    @cached_property
    def _keys(self) -> np.ndarray:
        """Sorted global keys row * n + col of the stored entries (CSR order)."""
        rows = np.repeat(np.arange(self.row_start, self.row_stop, dtype=np.int64), np.diff(self.indptr))
        return rows * self.n_dofs + self.indices

    def positions(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR positions of global entries (rows, cols) (arrays of one shape) whose row this pattern owns
        and whose column is free: (positions, found), -1 elsewhere; `found` is False for such an entry
        the pattern lacks."""
        use = (rows >= self.row_start) & (rows < self.row_stop) & (cols >= 0)
        key = rows[use] * self.n_dofs + cols[use]
        pos = np.minimum(np.searchsorted(self._keys, key), max(self.nnz - 1, 0))
        hit = self._keys[pos] == key if self.nnz else np.zeros(len(key), dtype=bool)
        out = np.full(rows.shape, -1, dtype=np.int64)
        out[use] = np.where(hit, pos, -1)
        found = np.ones(rows.shape, dtype=bool)
        found[use] = hit
        return out, found

    def slots(self, dof: np.ndarray) -> np.ndarray:
        """CSR positions (m, k, k) of the couplings of `dof` (m, k) (facets, subsets of cells), -1 where
        the row is owned elsewhere or either dof is fixed. Raises ValueError for a coupling the
        pattern lacks (dofs that share no cell)."""
        k = dof.shape[1]
        rows = np.repeat(dof, k, axis=1).reshape(-1, k, k)
        cols = np.tile(dof, (1, k)).reshape(-1, k, k)
        out, found = self.positions(rows, cols)
        if not found.all():
            raise ValueError(f"{(~found).sum()} facet couplings are not in the cell pattern: the facets are not "
                             "faces of the mesh's cells")
        return out

    def sum_at(self, slots: np.ndarray, local: np.ndarray, term: np.ndarray | None = None,
               n_terms: int = 1) -> np.ndarray:
        """CSR values of matrices `local` (m, k, k) at their `slots` (from `slots`), per term."""
        keep = slots >= 0
        if term is None:
            return np.bincount(slots[keep], weights=local[keep], minlength=self.nnz)
        flat = np.broadcast_to(term[:, None, None], slots.shape)[keep] * self.nnz + slots[keep]
        return np.bincount(flat, weights=local[keep], minlength=n_terms * self.nnz).reshape(n_terms, self.nnz)

    def to_scipy(self, values: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((values, self.indices, self.indptr), shape=(self.n_rows, self.n_dofs))


def boundary_lift_local(mesh, stiffness: np.ndarray, g_nodes: np.ndarray) -> np.ndarray:
    """Element vectors -K_e g_e of a Dirichlet datum g given on all nodes (its interior values
    must be zero): the right-hand side that lifts g into the free-dof system."""
    return -np.einsum("eij,ej->ei", stiffness, g_nodes[mesh.cells])


def l2_h1_errors(mesh, u_nodes: np.ndarray, exact, grad_exact) -> tuple[float, float]:
    """||u - u_h||_L2 and |u - u_h|_H1 for a nodal P1 field, with a degree-5 quadrature; `exact(x, y[, z])`
    and `grad_exact(x, y[, z])` (a tuple of d arrays) take coordinate arrays."""
    dim = mesh.nodes.shape[1]
    bary, wq = (_QUAD5_BARY, _QUAD5_W) if dim == 2 else collapsed_rule(3, 3)
    p = mesh.nodes[mesh.cells]
    xq = np.moveaxis(np.einsum("qi,eid->eqd", bary, p), -1, 0)
    ue = u_nodes[mesh.cells]
    uh_q = np.einsum("qi,ei->eq", bary, ue)
    duh = np.einsum("eik,ei->ek", p1_gradients(mesh), ue)
    err_l2 = (exact(*xq) - uh_q) ** 2
    err_h1 = sum((gk - duh[:, None, k]) ** 2 for k, gk in enumerate(grad_exact(*xq)))
    w = mesh.volumes[:, None] * wq[None, :]
    return float(np.sqrt((w * err_l2).sum())), float(np.sqrt((w * err_h1).sum()))
