"""Morphing of a disk-like mesh onto the unit disk: boundary nodes on the circle by arc length from
the fixed starting node, interior nodes by a barycentric (Tutte/Floater) system, one sparse solve,
or by radial-basis-function interpolation of the boundary displacement (smooth, but may fold).

Barycentric weights (Floater 1997, 2003): every interior node is the weighted mean of its
neighbours, x_i = sum_j w_ij x_j / sum_j w_ij. With positive weights and a convex target boundary
the map never folds (Tutte's theorem as extended by Floater).
- `mean_value` (default): Floater's mean-value weights w_ij = (tan(a_prev / 2) + tan(a_next / 2)) /
  |x_i - x_j|, a_prev, a_next the angles at node i of the two triangles sharing edge ij. They
  reproduce linear functions (on the original mesh, x_i = sum_j w_ij x_j / sum_j w_ij exactly), so
  the map approximates one smooth map of the shape whatever its triangulation: two meshes of the
  same shape morph alike.
- `uniform` (Tutte): w_ij = 1, each node the plain mean of its neighbours; the map depends on the
  connectivity, so two meshes of the same shape morph differently."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .geometry import boundary_loop

METHODS = ("mean_value", "uniform", "rbf", "none")


def circle_positions(nodes: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Boundary nodes of `loop` on the unit circle, angle proportional to arc length."""
    p = nodes[loop]
    seg = np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
    return np.column_stack([np.cos(2 * np.pi * s), np.sin(2 * np.pi * s)])


def barycentric_weights(nodes: np.ndarray, triangles: np.ndarray, kind: str = "mean_value") -> sp.csr_matrix:
    """W (n, n), W_ij the weight of neighbour j in node i's barycentric equation (not symmetric for
    mean-value weights). Assembled from the triangles' corners at once: the corner of triangle t
    at node i, between edges to j and k, adds tan(a / 2) / |x_i - x_j| to W_ij and
    tan(a / 2) / |x_i - x_k| to W_ik, with tan(a / 2) = |e_j x e_k| / (|e_j| |e_k| + e_j . e_k)."""
    n = len(nodes)
    i = triangles.ravel()
    j = np.roll(triangles, -1, axis=1).ravel()
    k = np.roll(triangles, -2, axis=1).ravel()
    if kind == "uniform":
        W = sp.coo_matrix((np.ones(2 * len(i)), (np.concatenate([i, i]), np.concatenate([j, k]))), shape=(n, n)).tocsr()
        W.data[:] = 1.0  # an interior edge is seen by two triangles: one unit weight
        return W
    if kind != "mean_value":
        raise ValueError(f"barycentric weights {kind!r}: expected 'mean_value' or 'uniform'")
    ej, ek = nodes[j] - nodes[i], nodes[k] - nodes[i]
    lj, lk = np.linalg.norm(ej, axis=1), np.linalg.norm(ek, axis=1)
    cross = np.abs(ej[:, 0] * ek[:, 1] - ej[:, 1] * ek[:, 0])
    half_tan = cross / (lj * lk + (ej * ek).sum(axis=1))
    return sp.coo_matrix((np.concatenate([half_tan / lj, half_tan / lk]), (np.concatenate([i, i]), np.concatenate([j, k]))),
                         shape=(n, n)).tocsr()


def barycentric_embedding(nodes: np.ndarray, triangles: np.ndarray, boundary: np.ndarray, boundary_positions: np.ndarray,
                          kind: str = "mean_value") -> np.ndarray:
    """Positions with the `boundary` nodes at `boundary_positions` and every other node the
    barycentric mean of its neighbours (weights from the original mesh): one sparse LU solve of
    (D - W)_II x_I = W_IB x_B."""
    W = barycentric_weights(nodes, triangles, kind)
    L = (sp.diags(np.asarray(W.sum(axis=1)).ravel()) - W).tocsr()
    interior = np.ones(len(nodes), dtype=bool)
    interior[boundary] = False
    out = np.empty((len(nodes), boundary_positions.shape[1]))
    out[boundary] = boundary_positions
    if interior.any():
        out[interior] = spla.splu(L[interior][:, interior].tocsc()).solve(-(L[interior][:, boundary] @ boundary_positions))
    return out


def rbf(nodes: np.ndarray, triangles: np.ndarray, start_point=(0.0, 0.0)) -> np.ndarray:
    """Thin-plate-spline interpolation of the boundary displacement onto the interior nodes,
    in coordinates normalized to the mesh's bounding box."""
    from scipy.interpolate import RBFInterpolator

    loop = boundary_loop(nodes, triangles, start_point)
    center, scale = nodes.mean(axis=0), np.ptp(nodes, axis=0).max() / 2
    x = (nodes - center) / scale
    target = circle_positions(nodes, loop)
    out = x + RBFInterpolator(x[loop], target - x[loop], kernel="thin_plate_spline", degree=1)(x)
    out[loop] = target
    return out


def morph(method: str, nodes: np.ndarray, triangles: np.ndarray, start_point=(0.0, 0.0)) -> np.ndarray:
    """The mesh's nodes on the unit disk (method in METHODS; `none` keeps the physical coordinates)."""
    if method in ("mean_value", "uniform"):
        loop = boundary_loop(nodes, triangles, start_point)
        return barycentric_embedding(nodes, triangles, loop, circle_positions(nodes, loop), method)
    if method == "rbf":
        return rbf(nodes, triangles, start_point)
    if method == "none":
        return np.array(nodes, dtype=float)
    raise ValueError(f"morphing = {method!r}: expected one of {list(METHODS)}")
