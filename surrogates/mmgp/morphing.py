"""Morphing of a disk-like mesh onto the unit disk: boundary nodes on the circle by arc length from
the fixed starting node, interior nodes either by Tutte/Floater's barycentric system (each interior
node the mean of its neighbours: one sparse solve, never folds for a convex target) or by
radial-basis-function interpolation of the boundary displacement (smooth, but may fold)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .geometry import boundary_loop

METHODS = ("tutte", "rbf", "none")


def circle_positions(nodes: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Boundary nodes of `loop` on the unit circle, angle proportional to arc length."""
    p = nodes[loop]
    seg = np.linalg.norm(np.roll(p, -1, axis=0) - p, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)[:-1]]) / seg.sum()
    return np.column_stack([np.cos(2 * np.pi * s), np.sin(2 * np.pi * s)])


def tutte(nodes: np.ndarray, triangles: np.ndarray, start_point=(0.0, 0.0)) -> np.ndarray:
    loop = boundary_loop(nodes, triangles, start_point)
    n = len(nodes)
    e = triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A = ((A + A.T) > 0).astype(float)  # graph adjacency (uniform Tutte weights)
    L = sp.diags(np.asarray(A.sum(axis=1)).ravel()) - A
    interior = np.ones(n, dtype=bool)
    interior[loop] = False
    out = np.empty((n, 2))
    out[loop] = circle_positions(nodes, loop)
    L = L.tocsr()
    out[interior] = spla.splu(L[interior][:, interior].tocsc()).solve(-(L[interior][:, loop] @ out[loop]))
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
    if method == "tutte":
        return tutte(nodes, triangles, start_point)
    if method == "rbf":
        return rbf(nodes, triangles, start_point)
    if method == "none":
        return np.array(nodes, dtype=float)
    raise ValueError(f"morphing = {method!r}: expected one of {list(METHODS)}")
