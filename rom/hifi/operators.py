"""The operators artefact: affine components, inner-product matrices and the mesh, so later
stages rebuild A(mu) = sum_q theta_q(mu) A_q without the assembly code."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import xarray as xr

from . import fem


def operators_dataset(problem) -> xr.Dataset:
    pattern = fem.Pattern.build(problem.mesh)
    m = problem.mesh
    data = {
        "indptr": ("row_ptr", pattern.indptr),
        "indices": ("nnz", pattern.indices),
        "X": ("nnz", problem.energy_product(pattern), {"long_name": "H1-seminorm product matrix values"}),
        "M": ("nnz", problem.mass_product(pattern), {"long_name": "L2 (mass) product matrix values"}),
        "nodes": (("node", "xy"), m.nodes),
        "triangles": (("triangle", "vertex"), m.triangles),
        "interior_nodes": ("dof", m.interior_nodes),
    }
    if problem.affine:
        data["A_terms"] = (("term", "nnz"), problem.operator_terms(pattern), {"long_name": "affine operator components A_q"})
        data["f_terms"] = (("rhs_term", "dof"), problem.rhs_terms(pattern), {"long_name": "affine load components f_p"})
    return xr.Dataset(data, attrs={"n_dofs": m.n_dofs, "affine": int(problem.affine)})


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
    def from_dataset(cls, ds: xr.Dataset) -> "Operators":
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
