"""Full-order solves, PETSc CG+GAMG on 1 and 2 MPI ranks side by side with SciPy's sparse direct solver
(spsolve, SuperLU): the 2D thermal block on the unit square, and 3D diffusion declared on a tetrahedral
gmsh mesh (rom.hifi.problems.declared: two conductivity regions, Dirichlet, Robin and a source), with the
assembly's time and peak memory.

    python benchmarks/hifi_solver.py [--sizes 317 1001] [--tet-dofs 2e5 1e6] [--repeats 3] [--only 2d|3d]

Each PETSc time is the wall time of one solve(mu) (matrix values, GAMG set-up and CG to rtol 1e-10)
averaged over `repeats` parameters after a warm-up solve, measured inside an mpiexec run; SciPy solves
the same matrix and right-hand side. 3D: the unit cube meshed by gmsh at an eighth of the target and
refined once (gmsh's 1-to-8 split), written as binary .msh; "read" is rom.hifi.discretization.meshfile.read and the
P1 numbering (reverse Cuthill-McKee), "assembly" the pattern, the affine operator terms and the loads of
the slowest rank, "peak" the largest rank's resident memory after the assembly. spsolve runs in its
own process under a time limit and is skipped, with the reason printed, above --direct-max-dofs
(SuperLU's fill-in of a 3D mesh grows like n^(4/3) or faster). Prints tables and the ratios; the last
line is a JSON object with every figure."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RTOL = 1e-10


def parameters(repeats):
    return np.random.default_rng(0).uniform(0.1, 1.0, (repeats, 4))


def timed_solves(fom, mus):
    """Seconds and iterations of one converged FOM solve per parameter."""
    samples = [fom.solve(mu) for mu in mus]
    bad = [s.reason for s in samples if not s.converged]
    assert not bad, bad
    return [s.seconds for s in samples], [s.iterations for s in samples]


def worker(n, repeats):
    """Run under mpiexec: PETSc solves, timings printed as JSON by rank 0."""
    from rom.hifi.problems import ThermalBlock
    from rom.hifi.solvers.solve import FullOrderModel

    t0 = time.perf_counter()
    problem = ThermalBlock(mesh_n=n, blocks=(2, 2))
    fom = FullOrderModel(problem, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": RTOL})
    fom.solve(parameters(1)[0])  # warm-up: caches the affine terms of this rank's rows
    setup = time.perf_counter() - t0
    times, its = timed_solves(fom, parameters(repeats))
    if fom.rank == 0:
        print(json.dumps({"dofs": problem.mesh.n_dofs, "seconds": float(np.mean(times)), "iterations": float(np.mean(its)),
                          "setup_seconds": setup, "ranks": fom.comm.size}))


def petsc_run(n, repeats, ranks):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1")
    out = subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, __file__, "--worker", "--sizes", str(n),
                          "--repeats", str(repeats)], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scipy_runs(n, repeats, skip_direct_above):
    import scipy.sparse.linalg as spla

    from rom.hifi.discretization import fem
    from rom.hifi.problems import ThermalBlock

    problem = ThermalBlock(mesh_n=n, blocks=(2, 2))
    pattern = fem.Pattern.build(problem.mesh)
    terms, f = problem.operator_terms(pattern), problem.rhs_terms(pattern)[0]
    direct, cg, cg_its = [], [], []
    for mu in parameters(repeats):
        A = pattern.to_scipy(mu @ terms)
        if problem.mesh.n_dofs <= skip_direct_above:
            t0 = time.perf_counter()
            spla.spsolve(A.tocsc(), f)
            direct.append(time.perf_counter() - t0)
        count = [0]
        t0 = time.perf_counter()
        spla.cg(A, f, rtol=RTOL, maxiter=100000, callback=lambda xk: count.__setitem__(0, count[0] + 1))
        cg.append(time.perf_counter() - t0)
        cg_its.append(count[0])
    return (float(np.mean(direct)) if direct else float("nan")), float(np.mean(cg)), float(np.mean(cg_its))


def tet_mesh(dofs: float, folder) -> str:
    """A two-region unit cube (left / right halves, faces x0 and x1) with about `dofs` nodes."""
    import gmsh

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gmsh_meshes

    def build(occ):
        out, _ = occ.fragment([(3, occ.addBox(0, 0, 0, 0.5, 1, 1))], [(3, occ.addBox(0.5, 0, 0, 0.5, 1, 1))])
        occ.synchronize()
        for name, left in (("left", True), ("right", False)):
            gmsh.model.addPhysicalGroup(3, [t for _, t in out if (occ.getCenterOfMass(3, t)[0] < 0.5) == left], name=name)
        for name, x in (("x0", 0.0), ("x1", 1.0)):
            faces = [t for _, t in gmsh.model.getBoundary(out, oriented=False, combined=True)
                     if abs(occ.getCenterOfMass(2, t)[0] - x) < 1e-9]
            gmsh.model.addPhysicalGroup(2, faces, name=name)

    return str(gmsh_meshes.large_cube(os.path.join(folder, f"cube_{int(dofs)}.msh"), dofs, build))


def tet_problem(mesh):
    from rom.hifi.problems.declared import Diffusion

    return Diffusion({"mesh": {"file": mesh}, "conductivity": {"left": "k_left", "right": "k_right"},
                      "source": {"left": 1.0, "right": 1.0}, "dirichlet": {"x0": 0.0},
                      "robin": {"x1": {"h": 2.0, "u_inf": 1.0}}})


def tet_parameters(repeats):
    return np.random.default_rng(1).uniform(0.5, 5.0, (repeats, 2))


def worker3d(mesh, repeats, save):
    """Under mpiexec: mesh read, assembly (pattern, terms, loads) and PETSc solves; JSON from rank 0."""
    from rom.hifi.discretization.operators import peak_memory_mb
    from rom.hifi.solvers.solve import FullOrderModel

    t0 = time.perf_counter()
    problem = tet_problem(mesh)
    read = time.perf_counter() - t0
    fom = FullOrderModel(problem, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": RTOL})
    first = fom.solve(tet_parameters(1)[0])  # warm-up: assembles (timed in fom.assembly) and caches the terms
    assert first.converged, first.reason
    from mpi4py import MPI

    figures = fom.assembly_report()
    comm = fom.comm.tompi4py()
    read = comm.allreduce(read, op=MPI.MAX)
    peak = comm.allreduce(peak_memory_mb(), op=MPI.MAX)
    nnz = comm.allreduce(fom.pattern.nnz)
    times, its = timed_solves(fom, tet_parameters(repeats))
    if fom.rank == 0:
        if save:
            np.save(save, first.u)
        print(json.dumps({"dofs": problem.mesh.n_dofs, "cells": len(problem.mesh.cells), "nnz": nnz, "ranks": fom.comm.size,
            "read_seconds": read, "assembly_seconds": figures["pattern_seconds"] + figures["operator_seconds"] +
            figures["rhs_seconds"], **figures, "peak_memory_mb_assembly": figures["peak_memory_mb"],
            "peak_memory_mb": peak, "seconds": float(np.mean(times)), "iterations": float(np.mean(its))}))


def direct3d(mesh, save):
    """SciPy spsolve of the first parameter's system; JSON with the time, memory and the difference to PETSc."""
    import resource

    import scipy.sparse.linalg as spla

    from rom.hifi.discretization import fem

    problem = tet_problem(mesh)
    pattern = fem.Pattern.build(problem.mesh)
    mu = tet_parameters(1)[0]
    A = pattern.to_scipy(problem.operator_values(mu, pattern)).tocsc()
    b = problem.rhs(mu, pattern)
    t0 = time.perf_counter()
    u = spla.spsolve(A, b)
    seconds = time.perf_counter() - t0
    ref = np.load(save)
    print(json.dumps({"seconds": seconds, "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "relative_difference_to_petsc": float(np.linalg.norm(u - ref) / np.linalg.norm(u))}))


def _env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1")


def run3d(dofs, args, folder):
    mesh = tet_mesh(dofs, folder)
    save = os.path.join(folder, f"u_{int(dofs)}.npy")
    row = {"target_dofs": dofs}
    for ranks in (1, 2):
        out = subprocess.run(["mpiexec", "-n", str(ranks), sys.executable, __file__, "--worker3d", mesh, "--repeats",
                              str(args.repeats), "--save", save], capture_output=True, text=True, env=_env(), check=True)
        row[ranks] = json.loads(out.stdout.strip().splitlines()[-1])
    n = row[1]["dofs"]
    if n > args.direct_max_dofs:
        row["direct"] = {"skipped": f"{n} dofs > --direct-max-dofs {args.direct_max_dofs:g}: SuperLU's fill-in on a "
                                    "3D mesh (n^(4/3) or more) would exceed this machine's memory or the time limit"}
    else:
        try:
            out = subprocess.run([sys.executable, __file__, "--direct3d", mesh, "--save", save], capture_output=True,
                                 text=True, env=_env(), check=True, timeout=args.direct_timeout)
            row["direct"] = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            row["direct"] = {"skipped": f"spsolve ran past --direct-timeout {args.direct_timeout} s"}
        except subprocess.CalledProcessError as exc:
            row["direct"] = {"skipped": f"spsolve failed (exit {exc.returncode}: {exc.stderr.strip()[-200:]})"}
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[317, 1001], help="2D: cells per side (dofs ~ n^2)")
    p.add_argument("--tet-dofs", type=float, nargs="+", default=[2e5, 1e6], help="3D: target dofs")
    p.add_argument("--only", choices=("2d", "3d"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-direct-above", type=int, default=2_000_000, help="2D: dofs above which spsolve is skipped")
    p.add_argument("--direct-max-dofs", type=float, default=4e5, help="3D: dofs above which spsolve is skipped")
    p.add_argument("--direct-timeout", type=float, default=900, help="3D: seconds spsolve may run")
    p.add_argument("--mesh-dir", default=None, help="3D: where the meshes are written (kept for reruns)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker3d", help=argparse.SUPPRESS)
    p.add_argument("--direct3d", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.sizes[0], args.repeats)
    if args.worker3d:
        return worker3d(args.worker3d, args.repeats, args.save)
    if args.direct3d:
        return direct3d(args.direct3d, args.save)
    summary = {"cores": os.cpu_count(), "rtol": RTOL, "repeats": args.repeats, "thermal_block_2d": [], "diffusion_3d": []}
    if args.only != "3d":
        print(f"thermal block 2x2, P1, rtol {RTOL:g}, {args.repeats} parameters per entry, {os.cpu_count()} cores")
        head = f"{'dofs':>9} | {'PETSc 1 rank':>13} {'its':>4} | {'PETSc 2 ranks':>13} | {'spsolve':>9} | {'SciPy CG':>9} {'its':>6} | 1 rank/2 ranks, spsolve/PETSc, CG/PETSc"
        print(head)
        print("-" * len(head))
        for n in args.sizes:
            one, two = petsc_run(n, args.repeats, 1), petsc_run(n, args.repeats, 2)
            direct, cg, cg_its = scipy_runs(n, args.repeats, args.skip_direct_above)
            t1 = one["seconds"]
            print(f"{one['dofs']:>9} | {t1:>12.3f}s {one['iterations']:>4.0f} | {two['seconds']:>12.3f}s | {direct:>8.3f}s | "
                  f"{cg:>8.3f}s {cg_its:>6.0f} | x{t1 / two['seconds']:.2f}, x{direct / t1:.1f}, x{cg / t1:.1f}")
            summary["thermal_block_2d"].append({"dofs": one["dofs"], "petsc_1": t1, "petsc_2": two["seconds"],
                                                "iterations": one["iterations"], "spsolve": direct, "scipy_cg": cg})
    if args.only != "2d":
        import tempfile

        folder = args.mesh_dir or tempfile.mkdtemp(prefix="romflow-bench-")
        os.makedirs(folder, exist_ok=True)
        print(f"\n3D diffusion on tetrahedra (declared: 2 regions, Dirichlet, Robin, source), P1, rtol {RTOL:g}, "
              f"{args.repeats} parameters per entry, {os.cpu_count()} cores")
        head = (f"{'dofs':>9} {'cells':>9} | {'read':>7} {'assembly':>9} {'peak MB':>8} | {'PETSc 1 rank':>13} {'its':>4} | "
                f"{'2 ranks':>8} {'asm 2r':>7} {'peak 2r':>8} | {'spsolve':>9} {'peak MB':>8} | 1r/2r, spsolve/PETSc")
        print(head)
        print("-" * len(head))
        for dofs in args.tet_dofs:
            row = run3d(dofs, args, folder)
            one, two, direct = row[1], row[2], row["direct"]
            t1 = one["seconds"]
            d = (f"{direct['seconds']:>8.2f}s {direct['peak_memory_mb']:>8.0f}" if "seconds" in direct else
                 f"{'skipped':>9} {'':>8}")
            ratio = f"x{direct['seconds'] / t1:.1f}" if "seconds" in direct else "-"
            print(f"{one['dofs']:>9} {one['cells']:>9} | {one['read_seconds']:>6.2f}s {one['assembly_seconds']:>8.2f}s "
                  f"{one['peak_memory_mb_assembly']:>8.0f} | {t1:>12.3f}s {one['iterations']:>4.0f} | "
                  f"{two['seconds']:>7.3f}s {two['assembly_seconds']:>6.2f}s {two['peak_memory_mb_assembly']:>8.0f} | {d} | "
                  f"x{t1 / two['seconds']:.2f}, {ratio}")
            if "skipped" in direct:
                print(f"          spsolve skipped: {direct['skipped']}")
            elif "relative_difference_to_petsc" in direct:
                print(f"          spsolve vs PETSc: relative difference {direct['relative_difference_to_petsc']:.1e}")
            summary["diffusion_3d"].append({"dofs": one["dofs"], "cells": one["cells"], "petsc_1": one, "petsc_2": two,
                                            "spsolve": direct, "speedup_2_ranks": t1 / two["seconds"],
                                            "spsolve_over_petsc": direct["seconds"] / t1 if "seconds" in direct else None})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
