#!/usr/bin/env python3
"""A FEniCSx (dolfinx) solver run by romflow as an affine black box (docs/bring_your_own.md, the walkthrough;
tests/test_dolfinx.py runs it where a dolfinx environment exists: make dolfinx-env).

-div(k grad u) = 1, u = 0 on the boundary, k = k_core on cells CORE, k_shell on cells SHELL.
dolfinx_block.py --mu K_CORE,K_SHELL --mesh M.msh --out U.h5  |  dolfinx_block.py --mesh M.msh --terms DIR (one rank)"""
import argparse

try:
    import dolfinx_solver  # noqa: F401  (the PyPI wheel: loads its MPI before the bindings)
except ImportError:
    pass
import h5py
import numpy as np
import scipy.sparse as sp
import ufl
from dolfinx import fem, mesh
from dolfinx.fem.petsc import assemble_matrix, assemble_vector, set_bc
from mpi4py import MPI
from petsc4py import PETSc

try:
    from dolfinx.io import gmsh as gmshio  # dolfinx >= 0.10
except ImportError:
    from dolfinx.io import gmshio  # dolfinx 0.8, 0.9

CORE, SHELL = 1, 2                                           # your physical group tags
p = argparse.ArgumentParser()
for a in ("--mu", "--mesh", "--out", "--terms"):
    p.add_argument(a)
args, comm = p.parse_args(), MPI.COMM_WORLD
data = gmshio.read_from_msh(args.mesh, comm, 0, gdim=2)      # gdim=3 for a 3D mesh
msh, cell_tags = data[0], data[1]
V = fem.functionspace(msh, ("Lagrange", 1))
tdim, im, geo = msh.topology.dim, V.dofmap.index_map, msh.geometry
msh.topology.create_connectivity(tdim - 1, tdim)
bdofs = fem.locate_dofs_topological(V, tdim - 1, mesh.exterior_facet_indices(msh.topology))
bc = fem.dirichletbc(PETSc.ScalarType(0), bdofs, V)
node = np.empty(im.size_local + im.num_ghosts, dtype=np.int64)          # romflow's node of each local dof
node[V.dofmap.list.ravel()] = geo.input_global_indices[geo.dofmap.ravel()]
u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
dx = ufl.Measure("dx", domain=msh, subdomain_data=cell_tags)
g = ufl.inner(ufl.grad(u), ufl.grad(v))
L = fem.form(1.0 * v * dx)
if args.terms:                                               # one rank: no ghosts, node is a permutation
    n = im.size_local
    keep = np.ones(n)
    keep[node[bdofs]] = 0.0
    D = sp.diags(keep)
    with h5py.File(f"{args.terms}/terms.h5", "w") as h5:
        for name, tag in (("core", CORE), ("shell", SHELL)):
            A = assemble_matrix(fem.form(g * dx(tag)))       # no bcs: eliminated below
            A.assemble()
            ai, aj, av = A.getValuesCSR()
            A = sp.csr_matrix((av, aj, ai), shape=(n, n)).tocoo()
            A = sp.csr_matrix((A.data, (node[A.row], node[A.col])), shape=(n, n))   # node order
            A = (D @ A @ D + sp.diags(1.0 - keep)).tocsr()   # identity rows, in every term
            grp = h5.create_group(f"operator/{name}")
            grp["data"], grp["indices"], grp["indptr"], grp["shape"] = A.data, A.indices, A.indptr, A.shape
        f = np.empty(n)
        f[node] = assemble_vector(L).array
        h5["rhs/source"] = f * keep
else:
    kc, ks = (fem.Constant(msh, PETSc.ScalarType(float(s))) for s in args.mu.split(","))
    A = assemble_matrix(fem.form(kc * g * dx(CORE) + ks * g * dx(SHELL)), bcs=[bc])  # every cell
    A.assemble()
    b = assemble_vector(L)
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    set_bc(b, [bc])
    ksp = PETSc.KSP().create(comm)
    ksp.setOperators(A)
    ksp.setType("cg")
    ksp.getPC().setType("gamg")
    ksp.setTolerances(rtol=1e-10)                            # well below affine.tolerance
    x = A.createVecRight()                                   # owned dofs, in local order
    ksp.solve(b, x)
    n = im.size_local
    parts = comm.gather((node[:n], x.array.copy(), V.tabulate_dof_coordinates()[:n]), root=0)
    if comm.rank == 0:
        nodes = np.concatenate([q[0] for q in parts])
        uu, xx = np.empty(im.size_global), np.empty((im.size_global, 3))
        uu[nodes], xx[nodes] = np.concatenate([q[1] for q in parts]), np.concatenate([q[2] for q in parts])
        with h5py.File(args.out, "w") as h5:
            h5["u"], h5["x"] = uu, xx                        # x: romflow checks the order (2D: z = 0)
            h5.attrs["converged"] = int(ksp.getConvergedReason() > 0)
            h5.attrs["iterations"] = ksp.getIterationNumber()
