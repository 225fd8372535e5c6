#!/usr/bin/env python3
"""A stand-alone solver that romflow runs as a black box (config/studies/blackbox.yaml).

    poisson.py --mu KAPPA,X0 --mesh MESH.msh --out U.h5 [--operator A.petsc --rhs B.petsc] [--fail-above K]

Solves -div(k grad u) = 1 with P1 elements on a gmsh mesh, u = 0 on its boundary group `wall`, for the
conductivity k(x, y) = 1 + KAPPA exp(-((x - X0)^2 + (y - 0.5)^2) / 0.02) (a bump at a moving centre: not
affine in X0). Writes the solution at the mesh nodes (in the file's order) as dataset `u` of an HDF5
file and, if asked, the matrix and right-hand side in PETSc's binary format (the Dirichlet rows and
columns replaced by the identity, so the matrix stays symmetric). `--fail-above K` exits with status 3
when KAPPA > K (to show how romflow records a failing sample). Needs numpy, scipy, meshio, h5py only.
"""
import argparse
import sys

import h5py
import meshio
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

MAT_FILE_CLASSID, VEC_FILE_CLASSID = 1211216, 1211214  # PETSc's binary headers


def write_petsc_mat(path, A):
    A = sp.csr_matrix(A)
    A.sort_indices()
    with open(path, "wb") as fh:
        np.array([MAT_FILE_CLASSID, *A.shape, A.nnz], dtype=">i4").tofile(fh)
        np.diff(A.indptr).astype(">i4").tofile(fh)
        A.indices.astype(">i4").tofile(fh)
        A.data.astype(">f8").tofile(fh)


def write_petsc_vec(path, b):
    with open(path, "wb") as fh:
        np.array([VEC_FILE_CLASSID, len(b)], dtype=">i4").tofile(fh)
        np.asarray(b, dtype=">f8").tofile(fh)


def assemble(mesh_file, kappa, x0):
    m = meshio.read(mesh_file)
    xy = m.points[:, :2]
    tri = np.concatenate([c.data for c in m.cells if c.type == "triangle"])
    tag = m.field_data["wall"][0]
    wall = np.unique(np.concatenate([c.data[m.cell_data["gmsh:physical"][i] == tag].ravel()
                                     for i, c in enumerate(m.cells) if c.type == "line"]))
    p = xy[tri]
    e1, e2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    g = np.stack([np.stack([e1[:, 1] - e2[:, 1], e2[:, 0] - e1[:, 0]], 1),
                  np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
    c = p.mean(axis=1)
    k = 1.0 + kappa * np.exp(-((c[:, 0] - x0) ** 2 + (c[:, 1] - 0.5) ** 2) / 0.02)
    area = np.abs(det) / 2
    Ke = np.einsum("e,eik,ejk->eij", k * area, g, g)
    n = len(xy)
    A = sp.csr_matrix((Ke.ravel(), (np.repeat(tri, 3, axis=1).ravel(), np.tile(tri, (1, 3)).ravel())), shape=(n, n))
    b = np.bincount(tri.ravel(), weights=np.repeat(area / 3, 3), minlength=n)
    keep = np.ones(n)
    keep[wall] = 0.0
    D = sp.diags(keep)
    A = (D @ A @ D + sp.diags(1.0 - keep)).tocsr()
    return A, b * keep


def write_output(out, u, reason, operator=None, rhs=None, A=None, b=None):
    """What romflow reads from a black box: u at the mesh nodes in an HDF5 file (with converged and reason),
    and with --operator/--rhs the matrix and right-hand side in PETSc's binary format."""
    with h5py.File(out, "w") as h5:
        h5["u"] = u
        h5.attrs["converged"] = 1
        h5.attrs["reason"] = reason
    if operator:
        write_petsc_mat(operator, A)
        write_petsc_vec(rhs, b)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mu", required=True, help="KAPPA,X0")
    p.add_argument("--mesh", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--operator")
    p.add_argument("--rhs")
    p.add_argument("--fail-above", type=float)
    args = p.parse_args()
    kappa, x0 = (float(v) for v in args.mu.split(","))
    if args.fail_above is not None and kappa > args.fail_above:
        print(f"poisson.py: kappa = {kappa} above {args.fail_above}: refusing to solve", file=sys.stderr)
        return 3
    A, b = assemble(args.mesh, kappa, x0)
    write_output(args.out, spla.spsolve(A.tocsc(), b), "SPSOLVE", args.operator, args.rhs, A, b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
