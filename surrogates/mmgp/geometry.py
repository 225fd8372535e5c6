"""Mesh checks, boundary numbering and the ragged HDF5 layout of a family of meshes.

A family stores every sample's mesh and nodal fields concatenated along `node` / `triangle`, with
per-sample offsets (`node_offset`, `triangle_offset`, length n_samples + 1)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.hifi.discretization.mesh import orient_triangles, simplex_volumes


class MeshError(ValueError):
    """A mesh the morphing cannot handle; the message names the sample."""


@dataclass
class MeshSample:
    nodes: np.ndarray
    triangles: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)


def _edges(triangles: np.ndarray) -> np.ndarray:
    return triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)


def counter_clockwise(nodes: np.ndarray, triangles: np.ndarray, name: str = "mesh") -> np.ndarray:
    """The triangles of a mesh as read, put counter-clockwise. A mesh stored clockwise throughout is
    a legitimate orientation (its normal along -z) and is flipped whole. A mesh of mixed
    orientation is folded: a triangle oriented against the majority disagrees with its neighbours
    across their shared edges (the two overlap), and flipping it alone would hide the fold; it is
    refused, naming the first such triangle (index in the file)."""

    def folded(bad):
        t = int(bad[0])
        raise MeshError(f"{name}: {len(bad)} folded triangles (first: triangle {t}, nodes {triangles[t].tolist()}, "
                        f"oriented against the other {len(triangles) - len(bad)}: inverted); expected a valid "
                        "triangulation")

    return orient_triangles(nodes, triangles, folded)


def median_edge_length(nodes: np.ndarray, triangles: np.ndarray) -> float:
    """The mesh size h: the median length of the triangles' edges."""
    e = nodes[_edges(triangles)]
    return float(np.median(np.linalg.norm(e[:, 1] - e[:, 0], axis=1)))


def boundary_edges(triangles: np.ndarray) -> np.ndarray:
    """Edges (a, b) used by exactly one triangle, oriented as in their (counter-clockwise) triangle,
    so the outer boundary runs counter-clockwise."""
    e = _edges(triangles)
    _, inverse, counts = np.unique(np.sort(e, axis=1), axis=0, return_inverse=True, return_counts=True)
    return e[counts[inverse.ravel()] == 1]


def check_mesh(nodes: np.ndarray, triangles: np.ndarray, name: str = "mesh"):
    """Reject, in one line naming the sample, what morphing onto a disk cannot represent: non-finite
    coordinates, out-of-range or unused nodes, inverted or degenerate triangles, duplicated
    triangles, edges shared by more than two triangles, pinch vertices (the boundary passing twice
    through a node), more than one boundary loop (a hole, two pieces) or a non-disk Euler
    characteristic."""
    nodes, triangles = np.asarray(nodes), np.asarray(triangles)
    if nodes.ndim != 2 or nodes.shape[1] != 2 or triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0:
        raise MeshError(f"{name}: nodes {nodes.shape} and triangles {triangles.shape}; expected (n, 2) planar "
                        "coordinates and at least one (m, 3) triangle")
    bad = np.flatnonzero(~np.isfinite(nodes).all(axis=1))
    if len(bad):
        raise MeshError(f"{name}: {len(bad)} nodes with a non-finite coordinate (first: node {bad[0]} at "
                        f"{nodes[bad[0]].tolist()}); expected finite coordinates")
    out = (triangles < 0) | (triangles >= len(nodes))
    if out.any():
        t = int(np.flatnonzero(out.any(axis=1))[0])
        raise MeshError(f"{name}: triangle {t} references node {int(triangles[t][out[t]][0])}, outside 0..{len(nodes) - 1}")
    used = np.zeros(len(nodes), dtype=bool)
    used[triangles.ravel()] = True
    if not used.all():
        unused = np.flatnonzero(~used)
        raise MeshError(f"{name}: {len(unused)} nodes used by no triangle (first: node {unused[0]}); expected every "
                        "node to belong to a triangle")
    area = simplex_volumes(nodes, triangles)  # signed: counter-clockwise > 0
    scale = np.abs(area).mean()
    bad = np.flatnonzero(area <= 1e-12 * scale)
    if len(bad):
        raise MeshError(f"{name}: {len(bad)} inverted or degenerate triangles (first: triangle {bad[0]}); "
                        "expected counter-clockwise triangles of positive area")
    _, first, counts = np.unique(np.sort(triangles, axis=1), axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        raise MeshError(f"{name}: {int((counts - 1).sum())} duplicated triangles (first: a copy of triangle "
                        f"{first[counts > 1].min()}); expected each triangle once")
    key, edge_counts = np.unique(np.sort(_edges(triangles), axis=1), axis=0, return_counts=True)
    if (edge_counts > 2).any():
        k = int(np.argmax(edge_counts))
        raise MeshError(f"{name}: edge {key[k].tolist()} is shared by {edge_counts[k]} triangles; expected at most two")
    edges = boundary_edges(triangles)
    passes = np.bincount(edges[:, 0], minlength=len(nodes))
    if (passes > 1).any():
        v = int(np.argmax(passes))
        raise MeshError(f"{name}: node {v} is a pinch vertex (the boundary passes {passes[v]} times through it); "
                        "expected a boundary that is one simple closed curve")
    loops = _n_loops(edges)
    euler = len(nodes) - len(key) + len(triangles)
    if loops != 1 or euler != 1:
        raise MeshError(f"{name}: {loops} boundary loops and Euler characteristic {euler}; expected a simply "
                        "connected mesh (one boundary loop, no hole, characteristic 1)")


def _n_loops(edges: np.ndarray) -> int:
    from scipy.sparse.csgraph import connected_components

    nodes, local = np.unique(edges, return_inverse=True)
    local = local.reshape(-1, 2)
    graph = sp.coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(nodes),) * 2)
    return int(connected_components(graph, directed=False)[0])


def check_values(values: np.ndarray, what: str, names: list[str], columns: list[str] | None = None):
    """Refuse non-finite values (rows = samples named by `names`) in one line naming the first."""
    values = np.asarray(values, dtype=float)
    bad = np.argwhere(~np.isfinite(values.reshape(len(values), -1)))
    if len(bad):
        i, j = bad[0]
        col = f" {columns[j]}" if columns is not None else ""
        raise ValueError(f"{names[i]}: non-finite {what}{col} ({values.reshape(len(values), -1)[i, j]}); "
                         f"expected finite {what}s")


def boundary_loop(nodes: np.ndarray, triangles: np.ndarray, start_point=(0.0, 0.0)) -> np.ndarray:
    """Boundary nodes in counter-clockwise order, starting at the boundary node nearest
    `start_point` (the fixed starting node that makes the numbering consistent across samples).
    Ordered by pointer jumping (log2 n vectorized steps) along the successor map of the edges."""
    edges = boundary_edges(triangles)
    on = edges[:, 0]
    s = on[np.argmin(((nodes[on] - np.asarray(start_point)) ** 2).sum(axis=1))]
    nxt = np.arange(len(nodes))
    nxt[edges[:, 0]] = edges[:, 1]
    nxt[s] = s  # the walk stops at the start
    d = np.zeros(len(nodes), dtype=np.int64)
    d[on] = 1
    d[s] = 0
    for _ in range(int(np.ceil(np.log2(max(len(on), 2)))) + 1):
        d = d + d[nxt]
        nxt = nxt[nxt]
    return on[np.argsort((len(on) - d[on]) % len(on), kind="stable")]


# -- ragged family artefact ------------------------------------------------------------------------
def family_dataset(samples: list[MeshSample], attrs: dict | None = None, units: dict | None = None) -> xr.Dataset:
    n_nodes = np.array([len(s.nodes) for s in samples])
    n_tri = np.array([len(s.triangles) for s in samples])
    data = {
        "node_offset": ("sample_edge", np.concatenate([[0], np.cumsum(n_nodes)])),
        "triangle_offset": ("sample_edge", np.concatenate([[0], np.cumsum(n_tri)])),
        "nodes": (("node", "xy"), np.concatenate([s.nodes for s in samples])),
        "triangles": (("triangle", "vertex"), np.concatenate([s.triangles for s in samples]),
                      {"long_name": "node indices local to each sample"}),
    }
    for name in samples[0].fields if samples else []:
        data[name] = ("node", np.concatenate([s.fields[name] for s in samples]), {"units": (units or {}).get(name, "")})
    return xr.Dataset(data, attrs=attrs or {})


def read_family(ds: xr.Dataset) -> list[MeshSample]:
    no, to = ds["node_offset"].values, ds["triangle_offset"].values
    nodes, tri = ds["nodes"].values, ds["triangles"].values
    names = [v for v in ds.data_vars if ds[v].dims == ("node",)]
    values = {n: ds[n].values for n in names}
    return [MeshSample(nodes[no[i]:no[i + 1]], tri[to[i]:to[i + 1]], {n: values[n][no[i]:no[i + 1]] for n in names})
            for i in range(len(no) - 1)]
