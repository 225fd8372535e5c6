"""Uniform triangulations of the unit square and their Dirichlet dof numbering."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class TriMesh:
    """A 2D triangle mesh: `nodes` (n_nodes, 2), `triangles` (n_tri, 3) counter-clockwise,
    `boundary` a boolean mask of Dirichlet nodes."""

    nodes: np.ndarray
    triangles: np.ndarray
    boundary: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

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
        p = self.nodes[self.triangles]
        e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])

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
