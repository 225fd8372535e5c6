"""dolfinx's side of benchmarks/assembly_dolfinx.py, run by dolfinx's own Python (.venv-dolfinx, `make
dolfinx-env`): the matrices of romflow's operators stage for a declared diffusion problem, on the same mesh.

    .venv-dolfinx/bin/python benchmarks/dolfinx_assemble.py MESH.npz [--out MATRICES.npz] [--backend petsc]

MESH.npz (written by assembly_dolfinx.py from romflow's operators artefact): `nodes` (n, 3), `cells` (m, 4),
`cell_region` (m,), `facets` (k, 3) and `facet_group` (k,) of the Robin facets, `regions` and `groups` (the
tags, in the order of the matrices), `x_region` and `x_group` (X's coefficient of each, the reference values).

The mesh is built on COMM_SELF (dolfinx.mesh.create_mesh, no partitioning), P1 Lagrange; then, timed apart:
the forms (JIT compilation, cached by FFCx after the first run), and the assembly of one stiffness matrix per
region (unit conductivity), one boundary mass matrix per Robin group (unit h), the mass matrix M and X (the
operator at the reference values), each with its own sparsity pattern, all kept alive to the end (PETSc AIJ
matrices, or dolfinx's own la.MatrixCSR with --backend native). With --out, the matrices (in dolfinx's dof
numbering) and the dof coordinates are written for the check (after the timings and the peak memory are taken).
The last line of the output is one JSON object."""
import argparse
import json
import resource
import time

T0 = time.perf_counter()
try:
    import dolfinx_solver  # noqa: F401  (the PyPI wheel: loads its MPI before the bindings)
except ImportError:
    pass
import basix.ufl  # noqa: E402
import numpy as np  # noqa: E402
import ufl  # noqa: E402
from dolfinx import fem, graph, io, mesh  # noqa: E402
from mpi4py import MPI  # noqa: E402


def vm_hwm_mb() -> float:
    """Peak resident memory of this process so far (MB), from /proc (getrusage where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mesh")
    p.add_argument("--out")
    p.add_argument("--backend", choices=("petsc", "native"), default="petsc")
    a = p.parse_args()
    r = {"backend": a.backend, "import_s": time.perf_counter() - T0}
    if a.backend == "petsc":
        from dolfinx.fem.petsc import assemble_matrix
    else:
        from dolfinx.fem import assemble_matrix

    # -- the mesh, its cell regions and Robin facets ------------------------------------------------------
    t = time.perf_counter()
    d = np.load(a.mesh)
    x, cells = np.ascontiguousarray(d["nodes"], dtype=np.float64), d["cells"].astype(np.int64)
    regions, groups = [int(v) for v in d["regions"]], [int(v) for v in d["groups"]]
    coord = ufl.Mesh(basix.ufl.element("Lagrange", "tetrahedron", 1, shape=(3,)))
    msh = mesh.create_mesh(MPI.COMM_SELF, cells, coord, x)
    tdim = msh.topology.dim
    n_cells = msh.topology.index_map(tdim).size_local
    region = d["cell_region"].astype(np.int32)[msh.topology.original_cell_index]
    cell_tags = mesh.meshtags(msh, tdim, np.arange(n_cells, dtype=np.int32), region)
    msh.topology.create_entities(tdim - 1)
    msh.topology.create_connectivity(tdim - 1, tdim)
    ents, vals = io.distribute_entity_data(msh, tdim - 1, d["facets"].astype(np.int64),
                                           d["facet_group"].astype(np.int32))
    facet_tags = mesh.meshtags_from_entities(msh, tdim - 1, graph.adjacencylist(ents), vals.astype(np.int32))
    V = fem.functionspace(msh, ("Lagrange", 1))
    r["mesh_s"] = time.perf_counter() - t
    r.update(dofs=int(V.dofmap.index_map.size_local), cells=int(n_cells))
    del d, x, cells

    # -- forms (JIT) ---------------------------------------------------------------------------------------
    t = time.perf_counter()
    u, v = ufl.TrialFunction(V), ufl.TestFunction(V)
    dx = ufl.Measure("dx", domain=msh, subdomain_data=cell_tags)
    ds = ufl.Measure("ds", domain=msh, subdomain_data=facet_tags)
    stiff, mass = ufl.inner(ufl.grad(u), ufl.grad(v)), u * v
    xr, xg = np.load(a.mesh)["x_region"], np.load(a.mesh)["x_group"]
    ufl_forms = {**{f"A_region{tag}": stiff * dx(tag) for tag in regions},
                 **{f"R_group{g}": mass * ds(g) for g in groups},
                 "M": mass * dx,
                 "X": sum(float(c) * stiff * dx(tag) for tag, c in zip(regions, xr))
                 + sum(float(c) * mass * ds(g) for g, c in zip(groups, xg))}
    forms = {k: fem.form(f) for k, f in ufl_forms.items()}
    r["forms_s"] = time.perf_counter() - t

    # -- assembly: every matrix, each with its pattern, all kept -------------------------------------------
    mats, each = {}, {}
    t = time.perf_counter()
    for k, f in forms.items():
        t1 = time.perf_counter()
        A = assemble_matrix(f)
        if a.backend == "petsc":
            A.assemble()
        mats[k] = A
        each[k] = time.perf_counter() - t1
    r["assembly_s"] = time.perf_counter() - t
    r["assembly_each_s"] = each
    r["peak_rss_after_assembly_mb"] = vm_hwm_mb()
    if a.backend == "petsc":
        info = {k: A.getInfo() for k, A in mats.items()}
        r["nnz"] = {k: int(i["nz_used"]) for k, i in info.items()}
    else:
        r["nnz"] = {k: int(A.indices.size) for k, A in mats.items()}
    r["script_to_assembled_s"] = time.perf_counter() - T0

    # -- the matrices and dof coordinates for the check ----------------------------------------------------
    if a.out:
        t = time.perf_counter()
        out = {"dof_coordinates": V.tabulate_dof_coordinates()[:r["dofs"]], "names": np.array(list(mats))}
        for i, A in enumerate(mats.values()):
            if a.backend == "petsc":
                ip, ix, vv = A.getValuesCSR()
            else:
                S = A.to_scipy()
                ip, ix, vv = S.indptr, S.indices, S.data
            out[f"indptr{i}"], out[f"indices{i}"], out[f"data{i}"] = ip, ix, vv
        np.savez(a.out, **out)
        r["export_s"] = time.perf_counter() - t
    r["script_s"] = time.perf_counter() - T0
    r["peak_rss_mb"] = vm_hwm_mb()
    print(json.dumps(r))


if __name__ == "__main__":
    main()
