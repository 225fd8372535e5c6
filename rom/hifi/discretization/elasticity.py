"""Linear-elasticity element kernels: Voigt material matrices, strain matrices from P1 gradients, and the
sparsity pattern of vector-valued P1 elements (one row per free displacement component)."""
from __future__ import annotations

import numpy as np

from . import fem


def material_matrix(nu: float, dim: int, plane: str = "stress") -> np.ndarray:
    """Voigt material matrix for E = 1 (engineering shear strains): 2D plane stress or strain
    (xx, yy, xy), 3D (xx, yy, zz, yz, xz, xy)."""
    if dim == 2 and plane == "stress":
        return np.array([[1.0, nu, 0.0], [nu, 1.0, 0.0], [0.0, 0.0, (1 - nu) / 2]]) / (1 - nu * nu)
    lam, mu = nu / ((1 + nu) * (1 - 2 * nu)), 1.0 / (2 * (1 + nu))
    n = 2 if dim == 2 else 3
    D = np.zeros((3, 3) if dim == 2 else (6, 6))
    D[:n, :n] = lam
    D[np.arange(n), np.arange(n)] += 2 * mu
    D[np.arange(n, len(D)), np.arange(n, len(D))] = mu
    return D


def strain_matrices(gradients: np.ndarray) -> np.ndarray:
    """B (m, n_voigt, k dim): Voigt strains from vertex displacements (u_0x, u_0y[, u_0z], u_1x, ...)."""
    m, k, dim = gradients.shape
    if dim == 2:
        pairs = [(0, 0, 0), (1, 1, 1), (2, 0, 1), (2, 1, 0)]  # (voigt row, displacement comp, derivative)
        B = np.zeros((m, 3, k * 2))
    else:
        pairs = [(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 1, 2), (3, 2, 1), (4, 0, 2), (4, 2, 0), (5, 0, 1), (5, 1, 0)]
        B = np.zeros((m, 6, k * 3))
    for row, comp, der in pairs:
        B[:, row, comp::dim] = gradients[:, :, der]
    return B


def vector_pattern(dof: np.ndarray, n: int, row_range: tuple[int, int]) -> fem.Pattern:
    """fem.Pattern for elements with 6 dofs each (dof (n_tri, 6), -1 = Dirichlet), rows [r0, r1)."""
    r0, r1 = row_range
    owned = (dof >= r0) & (dof < r1)
    elements = np.flatnonzero(owned.any(axis=1))
    d = dof[elements]
    rows = np.repeat(d, 6, axis=1).ravel()
    cols = np.tile(d, (1, 6)).ravel()
    keep = (rows >= r0) & (rows < r1) & (cols >= 0)
    unique_key, slot = np.unique(rows[keep] * n + cols[keep], return_inverse=True)
    entry_slot = np.full(rows.shape, -1, dtype=np.int64)
    entry_slot[keep] = slot
    indptr = np.zeros(r1 - r0 + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique_key // n - r0, minlength=r1 - r0), out=indptr[1:])
    return fem.Pattern(n, r0, r1, indptr, (unique_key % n).astype(np.int64), elements, entry_slot)
