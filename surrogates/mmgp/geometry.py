"""Mesh checks, boundary numbering and the ragged HDF5 layout of a family of meshes.

A family stores every sample's mesh and nodal fields concatenated along `node` / `triangle`, with
per-sample offsets (`node_offset`, `triangle_offset`, length n_samples + 1)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import xarray as xr


class MeshError(ValueError):
    """A mesh the morphing cannot handle; the message names the sample."""


@dataclass
class MeshSample:
    nodes: np.ndarray
    triangles: np.ndarray
    fields: dict[str, np.ndarray] = field(default_factory=dict)


def signed_areas(nodes, triangles) -> np.ndarray:
    p = nodes[triangles]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    return 0.5 * (e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])


def boundary_edges(triangles: np.ndarray) -> np.ndarray:
    """Edges (a, b) used by exactly one triangle, oriented as in their (counter-clockwise) triangle,
    so the outer boundary runs counter-clockwise."""
    e = triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    key = np.sort(e, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return e[counts[inverse.ravel()] == 1]


def check_mesh(nodes: np.ndarray, triangles: np.ndarray, name: str = "mesh"):
    """Reject what morphing onto a disk cannot represent: inverted or degenerate triangles, more than
    one boundary loop (a hole, two pieces), or a non-disk Euler characteristic."""
    area = signed_areas(nodes, triangles)
    scale = np.abs(area).mean() if len(area) else 1.0
    bad = np.flatnonzero(area <= 1e-12 * scale)
    if len(bad):
        raise MeshError(f"{name}: {len(bad)} inverted or degenerate triangles (first: triangle {bad[0]}); "
                        "expected counter-clockwise triangles of positive area")
    edges = boundary_edges(triangles)
    loops = _n_loops(edges)
    n_edges = len(np.unique(np.sort(triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0))
    euler = len(np.unique(triangles)) - n_edges + len(triangles)
    if loops != 1 or euler != 1:
        raise MeshError(f"{name}: {loops} boundary loops and Euler characteristic {euler}; expected a simply "
                        "connected mesh (one boundary loop, no hole, characteristic 1)")


def _n_loops(edges: np.ndarray) -> int:
    from scipy.sparse.csgraph import connected_components

    nodes, local = np.unique(edges, return_inverse=True)
    local = local.reshape(-1, 2)
    graph = sp.coo_matrix((np.ones(len(local)), (local[:, 0], local[:, 1])), shape=(len(nodes),) * 2)
    return int(connected_components(graph, directed=False)[0])


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
def family_dataset(samples: list[MeshSample], attrs: dict | None = None) -> xr.Dataset:
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
        data[name] = ("node", np.concatenate([s.fields[name] for s in samples]))
    return xr.Dataset(data, attrs=attrs or {})


def read_family(ds: xr.Dataset) -> list[MeshSample]:
    no, to = ds["node_offset"].values, ds["triangle_offset"].values
    nodes, tri = ds["nodes"].values, ds["triangles"].values
    names = [v for v in ds.data_vars if ds[v].dims == ("node",)]
    values = {n: ds[n].values for n in names}
    return [MeshSample(nodes[no[i]:no[i + 1]], tri[to[i]:to[i + 1]], {n: values[n][no[i]:no[i + 1]] for n in names})
            for i in range(len(no) - 1)]


def plate_sample(mesh, displacement: np.ndarray, von_mises: np.ndarray) -> MeshSample:
    """The nodal fields of a tensile-plate solution (rom.hifi.elasticity) as an MMGP sample."""
    return MeshSample(mesh.nodes, mesh.triangles,
                      {"u_x": displacement[:, 0], "u_y": displacement[:, 1], "von_mises": von_mises})


def solve_family(problem, n: int, set_name: str, seed: int, backend: str = "petsc", options: dict | None = None):
    """n shapes of a tensile-plate family with uniform random loads, solved serially (tests and
    benchmarks; the pipeline's simulate-geometries adds MPI and failure records):
    (samples, mu (n, d), scalars (n, 2) = max von Mises, compliance)."""
    from rom.hifi.elasticity import PlateModel, geometry_seed

    lo, hi = problem.default_bounds.T
    mu = lo + (hi - lo) * np.random.default_rng(seed).uniform(size=(n, len(lo)))
    samples, scalars = [], []
    for i in range(n):  # one mesh and one solve per shape
        mesh = problem.geometry(geometry_seed(0, set_name, i))
        r = PlateModel(problem, mesh, backend, options).solve(mu[i])
        samples.append(plate_sample(mesh, r.displacement, r.von_mises))
        scalars.append([r.max_von_mises, r.compliance])
    return samples, mu, np.array(scalars)
