"""Conforming P1 finite elements, vectorized over elements.

Element matrices are computed for all triangles at once with einsum; global assembly maps the
(triangle, i, j) entries onto a fixed CSR pattern of the free dofs with one bincount per term, so
every affine component A_q shares the pattern and A(mu) is a dot product of the value arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .mesh import TriMesh

# Degree-2 quadrature on the reference triangle (edge midpoints), exact for quadratics.
_QUAD_BARY = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
_QUAD_W = np.full(3, 1.0 / 3.0)
# Degree-5 rule (7 points, Strang-Fix / Dunavant) for error norms of smooth exact solutions.
_a, _b = 0.059715871789770, 0.470142064105115
_c, _d = 0.797426985353087, 0.101286507323456
_QUAD5_BARY = np.array([[1 / 3, 1 / 3, 1 / 3], [_a, _b, _b], [_b, _a, _b], [_b, _b, _a],
                        [_c, _d, _d], [_d, _c, _d], [_d, _d, _c]])
_QUAD5_W = np.array([0.225, *[0.132394152788506] * 3, *[0.125939180544827] * 3])


def p1_gradients(mesh: TriMesh) -> np.ndarray:
    """Gradients of the three barycentric basis functions on every triangle, shape (n_tri, 3, 2)."""
    p = mesh.nodes[mesh.triangles]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    if np.any(det <= 0):
        raise ValueError(f"mesh has {(det <= 0).sum()} inverted or degenerate triangles")
    # Rows of the inverse Jacobian give grad(lambda_1), grad(lambda_2); lambda_0 = 1 - lambda_1 - lambda_2.
    g1 = np.column_stack([e2[:, 1], -e2[:, 0]]) / det[:, None]
    g2 = np.column_stack([-e1[:, 1], e1[:, 0]]) / det[:, None]
    return np.stack([-g1 - g2, g1, g2], axis=1)


def stiffness_local(mesh: TriMesh, kappa: np.ndarray | float = 1.0) -> np.ndarray:
    """Element stiffness matrices kappa_e * area_e * grad(phi_i).grad(phi_j), shape (n_tri, 3, 3)."""
    g = p1_gradients(mesh)
    return np.einsum("e,eik,ejk->eij", np.broadcast_to(kappa, mesh.areas.shape) * mesh.areas, g, g)


def mass_local(mesh: TriMesh) -> np.ndarray:
    """Exact P1 element mass matrices area/12 * (1 + delta_ij), shape (n_tri, 3, 3)."""
    ref = (np.ones((3, 3)) + np.eye(3)) / 12.0
    return mesh.areas[:, None, None] * ref


def load_local(mesh: TriMesh, f=1.0) -> np.ndarray:
    """Element load vectors int f phi_i, with f a constant or a callable f(x, y) (degree-2 quadrature)."""
    if not callable(f):
        return np.repeat(mesh.areas[:, None] * (float(f) / 3.0), 3, axis=1)
    xq = np.einsum("qi,eid->eqd", _QUAD_BARY, mesh.nodes[mesh.triangles])
    fq = f(xq[..., 0], xq[..., 1])
    return mesh.areas[:, None] * np.einsum("q,eq,qi->ei", _QUAD_W, fq, _QUAD_BARY)


@dataclass(frozen=True)
class Pattern:
    """CSR sparsity of the free-dof couplings for the rows [row_start, row_stop).

    `entry_slot[k]` is the position in `indices` of the k-th flattened element entry of
    `elements` (n_sel, 3, 3), or -1 when that entry couples to a Dirichlet node or a row
    owned elsewhere. A serial pattern owns all rows."""

    n_dofs: int
    row_start: int
    row_stop: int
    indptr: np.ndarray
    indices: np.ndarray
    elements: np.ndarray
    entry_slot: np.ndarray

    @classmethod
    def build(cls, mesh: TriMesh, row_range: tuple[int, int] | None = None) -> "Pattern":
        n = mesh.n_dofs
        r0, r1 = row_range if row_range is not None else (0, n)
        dof = mesh.dof_of_node[mesh.triangles]  # (n_tri, 3)
        owned = (dof >= r0) & (dof < r1)
        elements = np.flatnonzero(owned.any(axis=1))  # only triangles touching owned rows
        d = dof[elements]
        rows = np.repeat(d, 3, axis=1).ravel()
        cols = np.tile(d, (1, 3)).ravel()
        keep = (rows >= r0) & (rows < r1) & (cols >= 0)
        key = rows[keep] * n + cols[keep]
        unique_key, slot = np.unique(key, return_inverse=True)
        entry_slot = np.full(rows.shape, -1, dtype=np.int64)
        entry_slot[keep] = slot
        urows = unique_key // n
        indptr = np.zeros(r1 - r0 + 1, dtype=np.int64)
        np.cumsum(np.bincount(urows - r0, minlength=r1 - r0), out=indptr[1:])
        return cls(n, r0, r1, indptr, (unique_key % n).astype(np.int64), elements, entry_slot)

    @property
    def nnz(self) -> int:
        return len(self.indices)

    @property
    def n_rows(self) -> int:
        return self.row_stop - self.row_start

    def assemble(self, local: np.ndarray) -> np.ndarray:
        """Sum element matrices (n_tri, 3, 3) of the whole mesh into CSR values (nnz,)."""
        vals = local[self.elements].reshape(-1)
        keep = self.entry_slot >= 0
        return np.bincount(self.entry_slot[keep], weights=vals[keep], minlength=self.nnz)

    def assemble_terms(self, local: np.ndarray, term_of_element: np.ndarray, n_terms: int) -> np.ndarray:
        """Affine components: values (n_terms, nnz) where term q sums the elements labelled q.
        One bincount over (term, slot) pairs, no loop over terms."""
        vals = local[self.elements].reshape(-1)
        term = np.repeat(term_of_element[self.elements], 9)
        keep = self.entry_slot >= 0
        flat = term[keep] * self.nnz + self.entry_slot[keep]
        return np.bincount(flat, weights=vals[keep], minlength=n_terms * self.nnz).reshape(n_terms, self.nnz)

    def assemble_vector(self, mesh: TriMesh, local: np.ndarray) -> np.ndarray:
        """Sum element vectors (n_tri, 3) into the owned rows (n_rows,)."""
        dof = mesh.dof_of_node[mesh.triangles]
        owned = (dof >= self.row_start) & (dof < self.row_stop)
        return np.bincount(dof[owned] - self.row_start, weights=local[owned], minlength=self.n_rows)

    def to_scipy(self, values: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((values, self.indices, self.indptr), shape=(self.n_rows, self.n_dofs))


def boundary_lift_local(mesh: TriMesh, stiffness: np.ndarray, g_nodes: np.ndarray) -> np.ndarray:
    """Element vectors -K_e g_e of a Dirichlet datum g given on all nodes (its interior values
    must be zero): the right-hand side that lifts g into the free-dof system."""
    return -np.einsum("eij,ej->ei", stiffness, g_nodes[mesh.triangles])


def l2_h1_errors(mesh: TriMesh, u_nodes: np.ndarray, exact, grad_exact) -> tuple[float, float]:
    """||u - u_h||_L2 and |u - u_h|_H1 for a nodal P1 field, with a degree-5 quadrature."""
    p = mesh.nodes[mesh.triangles]
    xq = np.einsum("qi,eid->eqd", _QUAD5_BARY, p)
    uh_q = np.einsum("qi,ei->eq", _QUAD5_BARY, u_nodes[mesh.triangles])
    duh = np.einsum("eik,ei->ek", p1_gradients(mesh), u_nodes[mesh.triangles])
    err_l2 = (exact(xq[..., 0], xq[..., 1]) - uh_q) ** 2
    gx, gy = grad_exact(xq[..., 0], xq[..., 1])
    err_h1 = (gx - duh[:, None, 0]) ** 2 + (gy - duh[:, None, 1]) ** 2
    w = mesh.areas[:, None] * _QUAD5_W[None, :]
    return float(np.sqrt((w * err_l2).sum())), float(np.sqrt((w * err_h1).sum()))
