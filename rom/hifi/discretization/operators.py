"""The operators artefact: affine components, inner-product matrices and the mesh, so later
stages rebuild A(mu) = sum_q theta_q(mu) A_q without the assembly code."""
from __future__ import annotations

import resource
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import xarray as xr

from . import fem
from .mesh import view_triangles


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
    if m.nodes.shape[1] == 3:
        data["cells"] = (("cell", "cell_vertex"), cells)
    if getattr(m, "components", 1) > 1:
        data["dof_component"] = ("dof", m.dof_component)
    if problem.affine:
        data["A_terms"] = (("term", "nnz"), problem.operator_terms(pattern), {"long_name": "affine operator components A_q"})
        data["f_terms"] = (("rhs_term", "dof"), problem.rhs_terms(pattern), {"long_name": "affine load components f_p"})
    attrs = {"n_dofs": m.n_dofs, "affine": int(problem.affine), "dim": int(m.nodes.shape[1]),
             "assembly_seconds": time.perf_counter() - t0, "peak_memory_mb": peak_memory_mb()}
    return xr.Dataset(data, attrs=attrs)


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
