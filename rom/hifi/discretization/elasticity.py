"""Linear-elasticity element kernels: Voigt material matrices (the plane-stress one also split affinely in
nu), strain matrices from P1 gradients and the element stiffness matrices of P1 displacements. The
sparsity pattern of vector-valued P1 elements is fem.Pattern.from_cell_dofs (SimplexMesh.cell_dofs)."""
from __future__ import annotations

import numpy as np

from . import fem

# Plane-stress material matrix (E = 1) split affinely in nu: D(nu) = (D_1 + nu D_2) / (1 - nu^2); Voigt (xx, yy, xy).
PLANE_STRESS_TERMS = (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.5]]),
                      np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -0.5]]))


def material_matrix(nu: float, dim: int, plane: str = "stress") -> np.ndarray:
    """Voigt material matrix for E = 1 (engineering shear strains): 2D plane stress or strain
    (xx, yy, xy), 3D (xx, yy, zz, yz, xz, xy)."""
    if dim == 2 and plane == "stress":
        D1, D2 = PLANE_STRESS_TERMS
        return (D1 + nu * D2) / (1 - nu * nu)
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


def stiffness_matrices(nodes: np.ndarray, cells: np.ndarray, D: np.ndarray) -> np.ndarray:
    """Element stiffness matrices int B^T D B (m, k dim, k dim) of P1 displacements on the (positively
    oriented) `cells`, with the material matrix D (m, n_voigt, n_voigt) of each cell or one for all."""
    g, det = fem.simplex_gradients(nodes, cells)
    B = strain_matrices(g)
    vol = det / (2.0 if nodes.shape[1] == 2 else 6.0)
    D = np.broadcast_to(D, (len(cells),) + np.shape(D)[-2:])
    return np.einsum("e,eai,eab,ebj->eij", vol, B, D, B)
