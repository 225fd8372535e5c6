"""P1 finite-element transfer operators between meshes that share a (morphed) domain.

`p1_transfer(nodes, triangles, points)` is the sparse matrix T (n_points, n_nodes) with
(T f)(p) = the P1 interpolant of f at p. Points outside the source mesh (the polygonal boundaries of
two discretized disks differ) are clamped to the nearest point of the source boundary."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .geometry import boundary_edges


def locate(nodes: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Triangle containing each point, -1 outside (trapezoid-map search, O(log n) per point)."""
    import matplotlib.tri as mtri

    tri = mtri.Triangulation(nodes[:, 0], nodes[:, 1], triangles)
    return np.asarray(mtri.TrapezoidMapTriFinder(tri)(points[:, 0], points[:, 1]), dtype=np.int64)


def p1_transfer(nodes: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> sp.csr_matrix:
    points = np.asarray(points, dtype=float)
    n_pts = len(points)
    tri = locate(nodes, triangles, points)
    inside = tri >= 0
    rows, cols, vals = [], [], []
    if inside.any():
        t = triangles[tri[inside]]
        p = nodes[t]
        e1, e2, r = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], points[inside] - p[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        l1 = (r[:, 0] * e2[:, 1] - r[:, 1] * e2[:, 0]) / det
        l2 = (e1[:, 0] * r[:, 1] - e1[:, 1] * r[:, 0]) / det
        lam = np.clip(np.column_stack([1 - l1 - l2, l1, l2]), 0.0, 1.0)  # round-off at edges
        lam /= lam.sum(axis=1, keepdims=True)
        rows.append(np.repeat(np.flatnonzero(inside), 3))
        cols.append(t.ravel())
        vals.append(lam.ravel())
    outside = np.flatnonzero(~inside)
    if len(outside):
        # Clamp: the nearest point on the boundary edges, linear weights on that edge.
        be = boundary_edges(triangles)
        a, b = nodes[be[:, 0]], nodes[be[:, 1]]
        ab = b - a
        q = points[outside][:, None, :]
        s = np.clip(((q - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)  # (n_out, n_edges)
        d2 = (((a + s[..., None] * ab) - q) ** 2).sum(-1)
        k = np.argmin(d2, axis=1)
        sk = s[np.arange(len(outside)), k]
        rows.append(np.repeat(outside, 2))
        cols.append(be[k].ravel())
        vals.append(np.column_stack([1 - sk, sk]).ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_pts, len(nodes)))
