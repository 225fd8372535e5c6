"""Time per full-order solve of the thermal block: PETSc CG+GAMG on 1 and 2 MPI ranks side by side
with SciPy's sparse direct solver (spsolve, SuperLU) and SciPy CG without preconditioner.

    python benchmarks/hifi_solver.py [--sizes 317 1001] [--repeats 3]

Each PETSc time is the wall time of one solve(mu) (matrix values, GAMG set-up and CG to
rtol 1e-10) averaged over `repeats` parameters, measured inside an mpiexec run; SciPy solves the same
matrix and right-hand side. Prints one table and the ratios to PETSc on 1 rank."""
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


def worker(n, repeats):
    """Run under mpiexec: PETSc solves, timings printed as JSON by rank 0."""
    from rom.hifi.problems import ThermalBlock
    from rom.hifi.solve import FullOrderModel

    t0 = time.perf_counter()
    problem = ThermalBlock(mesh_n=n, blocks=(2, 2))
    fom = FullOrderModel(problem, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": RTOL})
    fom.solve(parameters(1)[0])  # warm-up: caches the affine terms of this rank's rows
    setup = time.perf_counter() - t0
    times, its = [], []
    for mu in parameters(repeats):
        s = fom.solve(mu)
        assert s.converged, s.reason
        times.append(s.seconds)
        its.append(s.iterations)
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

    from rom.hifi import fem
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[317, 1001], help="cells per side (dofs ~ n^2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-direct-above", type=int, default=2_000_000, help="dofs above which spsolve is skipped")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.sizes[0], args.repeats)
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


if __name__ == "__main__":
    main()
