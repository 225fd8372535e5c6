"""The operators artefact: affine components, inner-product matrices and the mesh, so later
stages rebuild A(mu) = sum_q theta_q(mu) A_q without the assembly code.

For a problem on a mesh file (a declared PDE: its `file` is a meshfile.MeshFile) the artefact also
holds that mesh as read and checked, with the node order of its dof numbering (`mesh_*` variables,
`cells` in 2D too, attributes `mesh_file`, `mesh_digest`, `mesh_regions`, `mesh_boundaries`):
`read_mesh` gives it back, bit for bit, so the stages after `operators` build the same problem (same
numbering, same matrices) without parsing the file again, in the time HDF5 reads the arrays."""
from __future__ import annotations

import json
import resource
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import xarray as xr

from . import fem
from .mesh import view_triangles
from .meshfile import MeshFile, MeshFileError


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def operators_dataset(problem) -> xr.Dataset:
    """The artefact of a problem on one mesh. `nodes` are the mesh's coordinates (xy or xyz), `cells`
    its triangles or tetrahedra, `triangles` the 2D triangulation the report draws fields on (the cells
    in 2D; in 3D the boundary faces seen from +z, rom.hifi.discretization.mesh.view_triangles), `interior_nodes` the
    node of each free dof (and `dof_component` its component for a vector field). Attributes
    `assembly_seconds` and `peak_memory_mb` report what the assembly cost."""
    t0 = time.perf_counter()
    pattern = fem.Pattern.build(problem.mesh)
    m = problem.mesh
    cells = m.cells
    xyz = "xy" if m.nodes.shape[1] == 2 else "xyz"
    data = {
        "indptr": ("row_ptr", pattern.indptr),
        "indices": ("nnz", pattern.indices),
        "X": ("nnz", problem.energy_product(pattern), {"long_name": "energy (X) product matrix values"}),
        "M": ("nnz", problem.mass_product(pattern), {"long_name": "L2 (mass) product matrix values"}),
        "nodes": (("node", xyz), m.nodes),
        "triangles": (("triangle", "vertex"), view_triangles(m.nodes, cells)),
        "interior_nodes": ("dof", m.interior_nodes),
    }
    mesh_file = getattr(problem, "file", None)
    if m.nodes.shape[1] == 3 or isinstance(mesh_file, MeshFile):
        data["cells"] = (("cell", "cell_vertex"), cells)
    if getattr(m, "components", 1) > 1:
        data["dof_component"] = ("dof", m.dof_component)
    if problem.affine:
        data["A_terms"] = (("term", "nnz"), problem.operator_terms(pattern), {"long_name": "affine operator components A_q"})
        data["f_terms"] = (("rhs_term", "dof"), problem.rhs_terms(pattern), {"long_name": "affine load components f_p"})
    attrs = {"n_dofs": m.n_dofs, "affine": int(problem.affine), "dim": int(m.nodes.shape[1]),
             "assembly_seconds": time.perf_counter() - t0, "peak_memory_mb": peak_memory_mb()}
    if isinstance(mesh_file, MeshFile):
        digest = (getattr(problem, "args", {}).get("mesh") or {}).get("digest", "")
        mesh_data, mesh_attrs = mesh_variables(mesh_file, m.order, digest)
        data.update(mesh_data)
        attrs.update(mesh_attrs)
    return xr.Dataset(data, attrs=attrs)


def _small_int(a: np.ndarray) -> np.ndarray:
    """Indices stored as int32 where they fit (read back as int64, the same values)."""
    return a.astype(np.int32) if not len(a) or (a.min() >= 0 and a.max() < 2**31) else a


def mesh_variables(mf: MeshFile, order: np.ndarray, digest: str = "") -> tuple[dict, dict]:
    """The artefact's variables and attributes of a mesh file's content (its `nodes` and `cells` are
    the artefact's own) and the node order of the dof numbering."""
    data = {
        "mesh_cell_region": ("cell", _small_int(mf.cell_region)),
        "mesh_facets": (("facet", "facet_vertex"), mf.facets),
        "mesh_facet_group": ("facet", _small_int(mf.facet_group)),
        "mesh_node_order": ("node", _small_int(np.asarray(order))),
    }
    attrs = {"mesh_file": str(mf.path), "mesh_digest": digest, "mesh_regions": json.dumps(list(mf.regions)),
             "mesh_boundaries": json.dumps(list(mf.boundaries))}
    return data, attrs


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_mesh(path, digest: str | None = None) -> MeshFile | None:
    """The mesh file's content stored in an operators artefact (`mesh_variables`), its `node_order`
    set, reading those arrays only (h5py, not the affine terms); None for an artefact without one (a
    problem on a built-in mesh, an artefact of an older romflow). With `digest` (the study's
    `mesh.digest`), an artefact made from another mesh file is refused (MeshFileError, one line)."""
    import h5py

    with h5py.File(path, "r") as f:
        if "mesh_node_order" not in f:
            return None
        a = f.attrs
        stored = _text(a.get("mesh_digest", ""))
        if digest and stored and stored != digest:
            raise MeshFileError(f"{path}: assembled on mesh {_text(a['mesh_file'])} with digest {stored[:12]}..., "
                                f"the study's mesh has digest {digest[:12]}...; expected the operators artefact "
                                "of this mesh (rerun the operators stage)")

        def ints(name):
            return np.asarray(f[name][()]).astype(np.int64, copy=False)

        return MeshFile(_text(a["mesh_file"]), np.asarray(f["nodes"][()], dtype=float), ints("cells"),
                        ints("mesh_cell_region"), tuple(json.loads(_text(a["mesh_regions"]))), ints("mesh_facets"),
                        ints("mesh_facet_group"), tuple(json.loads(_text(a["mesh_boundaries"]))),
                        ints("mesh_node_order"))


# Variables of the operators artefact that only rebuild the problem's mesh (read_mesh): a stage that needs
# the matrices alone drops them when it reads the artefact (at 1e6 3D dofs, ~0.3 GB).
MESH_ONLY = ("cells", "mesh_cell_region", "mesh_facets", "mesh_facet_group", "mesh_node_order")
# And what a stage that needs only the inner product X (pod, gp) drops besides (at 1e6 3D dofs, ~0.7 GB).
X_ONLY = MESH_ONLY + ("M", "A_terms", "f_terms")


def n_dofs(path) -> int:
    """The number of free dofs of an operators artefact, without loading it."""
    import h5py

    with h5py.File(path, "r") as f:
        return len(f["indptr"]) - 1


def x_rows(path, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows [r0, r1) of X from an operators artefact, read as h5py slabs (one MPI rank's rows only):
    (indptr shifted to 0, column indices, values)."""
    import h5py

    with h5py.File(path, "r") as f:
        ip = f["indptr"][r0: r1 + 1].astype(np.int64)
        lo, hi = int(ip[0]), int(ip[-1])
        return ip - lo, f["indices"][lo:hi], f["X"][lo:hi]


def x_product(ds: xr.Dataset) -> sp.csr_matrix:
    """The inner-product matrix X of an operators artefact (read with drop=X_ONLY)."""
    n = int(ds.attrs["n_dofs"])
    return sp.csr_matrix((ds["X"].values, ds["indices"].values, ds["indptr"].values), shape=(n, n))


@dataclass
class Operators:
    """Scipy view of the operators artefact."""

    X: sp.csr_matrix
    M: sp.csr_matrix
    A_terms: list[sp.csr_matrix]
    f_terms: np.ndarray
    nodes: np.ndarray
    triangles: np.ndarray
    interior_nodes: np.ndarray

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Operators:
        n = int(ds.attrs["n_dofs"])
        ip, ix = ds["indptr"].values, ds["indices"].values

        def csr(v):
            return sp.csr_matrix((v, ix, ip), shape=(n, n))

        A = [csr(v) for v in ds["A_terms"].values] if "A_terms" in ds else []
        f = ds["f_terms"].values if "f_terms" in ds else np.empty((0, n))
        return cls(csr(ds["X"].values), csr(ds["M"].values), A, f, ds["nodes"].values, ds["triangles"].values,
                   ds["interior_nodes"].values)

    def assemble(self, theta: np.ndarray) -> sp.csr_matrix:
        """A(mu) from its coefficients theta (Q,)."""
        return sum(t * A for t, A in zip(theta, self.A_terms))
