#!/usr/bin/env python3
"""A third-party FEM solver (scikit-fem) that romflow runs as a black box (docs/bring_your_own.md, route 3).

    skfem_block.py --mu A,B --mesh MESH.msh --out U.h5 [--model block|bump] [--operator A.petsc --rhs F.petsc]
    skfem_block.py --mesh MESH.msh --export-terms DIR [--format petsc|hdf5] [--dirichlet each|first]
    skfem_block.py --mesh MESH.msh --serve [--model block|bump]     # a persistent worker (romflow.worker)
    skfem_block.py --mesh MESH.msh --entries REQUEST.h5 --out ENTRIES.h5 [--model block|bump]

Solves -div(k grad u) = 1 on the mesh (P1, scikit-fem), u = 0 on the whole boundary, for
  --model block: a two-region thermal block, k = A in the disc |x - (0.5, 0.5)| < 0.3 (term `core`) and
                 k = B outside (term `shell`): affine, A(mu) = A * A_core + B * A_shell, f = f_source;
  --model bump:  k(x, y) = 1 + A exp(-(x - B)^2 / 0.05): not affine in B.
Writes u at the mesh nodes (in the file's node order) as dataset `u` of an HDF5 file; with --operator and
--rhs also A(mu) and f(mu) in PETSc binary format. --export-terms writes the block's terms into DIR:
operator_core.petsc, operator_shell.petsc, rhs_source.petsc (or terms.h5 with CSR groups). Dirichlet
rows and columns are eliminated symmetrically with the identity on the boundary rows, in every term
(--dirichlet each) or in the first term only (--dirichlet first); the load is zero there. --serve reads
the mesh and assembles the block's terms once, then answers romflow's requests (problem.persistent: true,
romflow/worker.py: one JSON line per sample on stdin, the same HDF5 file per sample, one reply line).
--entries is the entries mode of a non-affine black box (rom/hifi/problems/external_eim.py): it reads mu
(n, d), rows, cols and f_rows from REQUEST.h5 and writes A(mu_i)[rows, cols] and f(mu_i)[f_rows] as
datasets A (n, K) and f (n, L) of ENTRIES.h5 (assembling only the cells around the requested rows).
Needs numpy, scipy, meshio, h5py and scikit-fem only.
"""
import argparse
import sys
from pathlib import Path

import h5py
import meshio
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

# PETSc's binary format written with numpy and the output file: the writers of the example beside this one (its folder is
# this script's first sys.path entry).
from poisson import write_output, write_petsc_mat, write_petsc_vec  # noqa: E402
from skfem import Basis, BilinearForm, ElementTriP1, LinearForm, MeshTri, asm
from skfem.helpers import dot, grad


@BilinearForm
def laplace(u, v, w):
    return dot(grad(u), grad(v))


@BilinearForm
def bump(u, v, w):
    return (1.0 + w["a"] * np.exp(-(w.x[0] - w["b"]) ** 2 / 0.05)) * dot(grad(u), grad(v))


@LinearForm
def unit(v, w):
    return 1.0 * v


def setup(mesh_file):
    m = meshio.read(mesh_file)
    tri = np.concatenate([c.data for c in m.cells if c.type == "triangle"])
    mesh = MeshTri(np.ascontiguousarray(m.points[:, :2].T), np.ascontiguousarray(tri.T))
    basis = Basis(mesh, ElementTriP1())  # P1 dofs are the mesh's vertices, in node order
    keep = np.ones(mesh.p.shape[1])
    keep[mesh.boundary_nodes()] = 0.0
    return mesh, basis, keep


def dirichlet(A, keep, identity=True):
    """Rows and columns of the boundary nodes eliminated symmetrically, the identity on their diagonal."""
    D = sp.diags(keep)
    return (D @ A @ D + (sp.diags(1.0 - keep) if identity else 0 * D)).tocsr()


def block_terms(mesh, basis, keep, each=True):
    c = mesh.p[:, mesh.t].mean(axis=1)
    core = np.hypot(c[0] - 0.5, c[1] - 0.5) < 0.3
    A = {}
    for i, (name, cells) in enumerate((("core", np.nonzero(core)[0]), ("shell", np.nonzero(~core)[0]))):
        A[name] = dirichlet(asm(laplace, Basis(mesh, ElementTriP1(), elements=cells)), keep, each or i == 0)
    return A, {"source": asm(unit, basis) * keep}


def solver(mesh_file, model="block", each=True):
    """The per-sample solve, set up once: mu -> (A(mu), f, u) (--serve keeps it for every request)."""
    mesh, basis, keep = setup(mesh_file)
    if model == "block":
        T, F = block_terms(mesh, basis, keep, each)

    def solve(mu):
        a, b = (float(v) for v in mu)
        if model == "block":
            A, rhs = a * T["core"] + b * T["shell"], F["source"]
        else:
            A = dirichlet(asm(bump, basis, a=a, b=b), keep)
            rhs = asm(unit, basis) * keep
        return A, rhs, spla.spsolve(A.tocsc(), rhs)

    return solve


def serve(mesh_file, model, each=True):
    try:
        from romflow.worker import serve as serve_requests
    except ImportError:  # romflow's repository, not installed with `pip install -e .` since romflow/ came
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from romflow.worker import serve as serve_requests
    solve = solver(mesh_file, model, each)
    return serve_requests(lambda mu: {"u": solve(mu)[2], "converged": 1, "reason": "SKFEM_SPSOLVE"})


def entries(mesh_file, model, request, out):
    """The entries mode: the operator and load this solver solves with, at the requested positions. Only
    the cells around the requested rows are assembled (an entry (i, j) sums the cells that hold node i),
    so a query's few magic entries cost microseconds of assembly, not a whole matrix."""
    with h5py.File(request, "r") as h5:
        mu, rows, cols, f_rows = (np.asarray(h5[k]) for k in ("mu", "rows", "cols", "f_rows"))
    mesh, basis, keep = setup(mesh_file)
    cells = np.flatnonzero(np.isin(mesh.t, np.union1d(rows, f_rows)).any(axis=0))
    local = Basis(mesh, ElementTriP1(), elements=cells)
    f = asm(unit, local) * keep  # the load is the same for every parameter
    if model == "block":
        T, _ = block_terms(mesh, basis, keep)
    A_out, f_out = np.empty((len(mu), len(rows))), np.empty((len(mu), len(f_rows)))
    for i, m in enumerate(mu):
        a, b = (float(v) for v in m)
        A = a * T["core"] + b * T["shell"] if model == "block" else dirichlet(asm(bump, local, a=a, b=b), keep)
        A_out[i] = np.asarray(A.tocsr()[rows, cols]).ravel() if len(rows) else []
        f_out[i] = f[f_rows]
    with h5py.File(out, "w") as h5:
        h5["A"], h5["f"] = A_out, f_out
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mu")
    p.add_argument("--mesh", required=True)
    p.add_argument("--out")
    p.add_argument("--model", choices=("block", "bump"), default="block")
    p.add_argument("--operator")
    p.add_argument("--rhs")
    p.add_argument("--export-terms")
    p.add_argument("--format", choices=("petsc", "hdf5"), default="petsc")
    p.add_argument("--dirichlet", choices=("each", "first"), default="each")
    p.add_argument("--serve", action="store_true", help="a persistent worker: romflow's requests on stdin")
    p.add_argument("--entries", help="the entries mode: a request file (mu, rows, cols, f_rows); writes --out")
    args = p.parse_args()
    if args.entries:
        return entries(args.mesh, args.model, args.entries, args.out)
    if args.serve:
        return serve(args.mesh, args.model, args.dirichlet == "each")
    if args.export_terms:
        mesh, basis, keep = setup(args.mesh)
        A, f = block_terms(mesh, basis, keep, args.dirichlet == "each")
        out = Path(args.export_terms)
        if args.format == "hdf5":
            with h5py.File(out / "terms.h5", "w") as h5:
                for name, Aq in A.items():
                    g = h5.create_group(f"operator/{name}")
                    g["data"], g["indices"], g["indptr"], g["shape"] = Aq.data, Aq.indices, Aq.indptr, Aq.shape
                for name, fp in f.items():
                    h5[f"rhs/{name}"] = fp
        else:
            for name, Aq in A.items():
                write_petsc_mat(out / f"operator_{name}.petsc", Aq)
            for name, fp in f.items():
                write_petsc_vec(out / f"rhs_{name}.petsc", fp)
        return 0
    A, rhs, u = solver(args.mesh, args.model, args.dirichlet == "each")([float(v) for v in args.mu.split(",")])
    write_output(args.out, u, "SKFEM_SPSOLVE", args.operator, args.rhs, A, rhs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
