"""Snapshot generation that learns from itself: the whole solve sequence of a simulate stage (64 samples)
with no reuse, the ordering alone and each initial guess, on 1 and 2 MPI ranks, side by side;
then the SOR-omega bandit against the best fixed and the default omega on a sequence of 64 solves.

    python benchmarks/data_generation.py [--problems block2d tet3d] [--repeats 3] [--ranks 1 2]

Problems (all variants on the first, the informative subset --variants-3d on the second): the thermal block (2x2 blocks, P1 on the unit square, about 1e5 dofs) and a 3D P1 diffusion with
a piecewise-constant conductivity on 2x2x2 blocks of the unit cube (about 2e5 dofs, 8 parameters): the
study-file problem `diffusion` (rom.hifi.problems.declared) on a gmsh tetrahedral mesh made here. Solver: the schema's default petsc_options (CG + GAMG, rtol 1e-12, max_it 1000),
64 LHS samples of [0.1, 1]^d. Each variant solves the same 64 samples with a fresh KSP in one MPI worker;
the variants run interleaved (the order rotates with the repeat) and each worker repeats them, so drift
of the shared machine hits all of them alike; ratios to "plain" are taken within a worker, then the
median and the range over repeats are printed. Wall time: the whole solve sequence (barrier to barrier),
everything a simulate chunk does after building the model. OpenMP runs on one thread per rank.

The last line is a JSON object with the figures."""
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
OPTIONS = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12, "ksp_max_it": 1000}


# -- the 3D problem: romflow's declared diffusion on a gmsh tetrahedral mesh ---------------------------------
def block_cube_mesh(dofs: float, folder: str) -> str:
    """The unit cube split into 2x2x2 blocks (physical volumes b0..b7, x fastest) with its boundary as one
    physical surface `wall`; about `dofs` nodes, cached in `folder`."""
    import gmsh

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import gmsh_meshes

    def build(occ):
        boxes = [(3, occ.addBox(0.5 * i, 0.5 * j, 0.5 * k, 0.5, 0.5, 0.5)) for k in (0, 1) for j in (0, 1) for i in (0, 1)]
        out, _ = occ.fragment(boxes[:1], boxes[1:])
        occ.synchronize()
        for _, tag in out:
            x, y, z = occ.getCenterOfMass(3, tag)
            gmsh.model.addPhysicalGroup(3, [tag], name=f"b{int(x > 0.5) + 2 * int(y > 0.5) + 4 * int(z > 0.5)}")
        faces = [t for _, t in gmsh.model.getBoundary(out, oriented=False, combined=True)]
        gmsh.model.addPhysicalGroup(2, faces, name="wall")

    return str(gmsh_meshes.large_cube(os.path.join(folder, f"block_cube_{int(dofs)}.msh"), dofs, build))


def block_cube_problem(mesh: str):
    """-div(k grad u) = 1, u = 0 on the wall, k = k_q on block q: the study file's `problem` section of a
    declared diffusion (rom.hifi.problems.declared), 8 affine parameters."""
    from rom.hifi.problems.declared import Diffusion

    return Diffusion({"mesh": {"file": mesh}, "conductivity": {f"b{q}": f"k{q}" for q in range(8)},
                      "source": {f"b{q}": 1.0 for q in range(8)}, "dirichlet": {"wall": 0.0}})


# -- variants ------------------------------------------------------------------------------------------------
def variants():
    from rom.hifi.sequence.driver import SequenceSettings as S

    none = dict(initial_guess="none")
    return {  # name: (ordering, settings, chunk length)
        "plain": ("design", S(**none), None),
        "ordering": ("nearest", S(**none), None),
        "previous": ("nearest", S(initial_guess="previous"), None),
        "projection": ("nearest", S(), None),
        "projection (design order)": ("design", S(), None),
        "projection (chunks of 16)": ("nearest", S(), 16),
    }


VARIANTS_3D = ["ordering", "projection"]


def build(problem_name, size):
    from rom.hifi.solvers import petsc

    petsc.init([])
    if problem_name == "block2d":
        from rom.hifi.problems import ThermalBlock
        from rom.hifi.solvers.solve import FullOrderModel

        fom = FullOrderModel(ThermalBlock(mesh_n=size, blocks=(2, 2)), "petsc", OPTIONS)
        fom.solver.destroy()
        return fom, 4, fom.problem.mesh.n_dofs
    from rom.hifi.solvers.solve import FullOrderModel

    fom = FullOrderModel(block_cube_problem(size), "petsc", OPTIONS)
    fom.solver.destroy()
    return fom, 8, fom.problem.mesh.n_dofs


def worker(problem_name, size, samples, repeats, rotate, names):
    from scipy.stats import qmc
    from threadpoolctl import threadpool_limits

    from rom.hifi.sequence.driver import solve_sequence
    from rom.hifi.sequence.ordering import solve_order, unit_coordinates
    from rom.hifi.solvers import petsc

    threadpool_limits(1, user_api="openmp")
    fom, d, n_dofs = build(problem_name, size)
    mpi = fom.comm.tompi4py()
    mu = 0.1 + 0.9 * qmc.LatinHypercube(d=d, seed=2024).random(samples)
    unit = unit_coordinates(mu, np.tile([0.1, 1.0], (d, 1)), ["uniform"] * d)
    orders = {"design": np.arange(samples), "nearest": solve_order(unit, "nearest")}
    table = variants()
    fom.problem.operator_values(mu[0], fom.pattern)  # assemble (and cache) the affine terms outside the timings
    fom.problem.rhs(mu[0], fom.pattern)
    out = {"dofs": n_dofs, "ranks": fom.comm.size, "variants": {n: [] for n in names}}
    reference = None
    for rep in range(repeats):
        k = (rotate + rep) % len(names)
        for name in names[k:] + names[:k]:
            ordering, settings, chunk = table[name]
            order = orders[ordering]
            fom.solver = petsc.LinearSolver(fom.comm, n_dofs, fom.pattern.row_start, fom.pattern.row_stop,
                                            fom.pattern.indptr, fom.pattern.indices, OPTIONS)
            pieces = [order] if chunk is None else [order[i:i + chunk] for i in range(0, samples, chunk)]
            its, setup, solve, U = np.zeros(samples, int), 0.0, 0.0, [None] * samples
            mpi.Barrier()
            t0 = time.perf_counter()
            for piece in pieces:  # each piece is one simulate chunk: its own sequence
                res, facts = solve_sequence(fom, mu[piece], settings)
                its[piece] = facts.iterations
                setup, solve = setup + np.nansum(facts.setup_seconds), solve + np.nansum(facts.solve_seconds)
                for j, r in zip(piece, res):
                    U[j] = r.u
                    assert r.converged, (name, r.reason)
            mpi.Barrier()
            wall = time.perf_counter() - t0
            fom.solver.destroy()
            if fom.rank == 0:
                U = np.array(U)
                if reference is None and name == "plain":
                    reference = U
                diff = (float(np.max(np.linalg.norm(U - reference, axis=1) / np.linalg.norm(reference, axis=1)))
                        if reference is not None else float("nan"))
                out["variants"][name].append({"wall": wall, "iterations": its.tolist(), "setup": setup,
                                              "solve": solve, "max_rel_diff": diff})
    if fom.rank == 0:
        print(json.dumps(out))


def run_worker(problem, size, samples, repeats, ranks, rotate, names):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")
    cmd = ["mpiexec", "-n", str(ranks), sys.executable, __file__, "--worker", problem, str(size), str(samples),
           str(repeats), str(rotate), "|".join(names)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarize(result):
    """Per variant: medians and ranges over repeats of iterations per sample, wall and ratios to plain."""
    runs = result["variants"]
    base = runs["plain"]
    rows = {}
    for name, reps in runs.items():
        its = np.array([np.mean(r["iterations"]) for r in reps])
        wall = np.array([r["wall"] for r in reps])
        it_ratio = np.array([np.mean(b["iterations"]) / np.mean(r["iterations"]) for b, r in zip(base, reps)])
        wall_ratio = np.array([b["wall"] / r["wall"] for b, r in zip(base, reps)])
        rows[name] = {"iterations_per_sample": float(np.median(its)), "wall_s": float(np.median(wall)),
                      "wall_s_range": [float(wall.min()), float(wall.max())],
                      "iteration_ratio": float(np.median(it_ratio)),
                      "wall_ratio": float(np.median(wall_ratio)),
                      "wall_ratio_range": [float(wall_ratio.min()), float(wall_ratio.max())],
                      "setup_s": float(np.median([r["setup"] for r in reps])),
                      "krylov_s": float(np.median([r["solve"] for r in reps])),
                      "max_rel_diff_to_plain": float(max(r["max_rel_diff"] for r in reps))}
    return rows


def print_table(title, rows):
    print(f"\n{title}")
    head = (f"{'variant':26s} {'its/sample':>10s} {'x its':>6s} {'wall s':>8s} {'(min-max)':>15s} {'x wall':>7s} "
            f"{'(min-max)':>13s} {'setup s':>8s} {'krylov s':>8s} {'max rel diff':>12s}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:26s} {r['iterations_per_sample']:10.1f} {r['iteration_ratio']:6.2f} {r['wall_s']:8.2f} "
              f"{r['wall_s_range'][0]:7.2f}-{r['wall_s_range'][1]:<7.2f} {r['wall_ratio']:7.2f} "
              f"{r['wall_ratio_range'][0]:6.2f}-{r['wall_ratio_range'][1]:<6.2f} {r['setup_s']:8.2f} "
              f"{r['krylov_s']:8.2f} {r['max_rel_diff_to_plain']:12.1e}")


def bandit_worker(n, solves):
    """CG + SSOR on `solves` thermal-block systems: every fixed omega of the grid, and both policies."""
    from threadpoolctl import threadpool_limits

    from rom.hifi.problems import ThermalBlock
    from rom.hifi.sequence.driver import SequenceSettings, TuneSettings, solve_sequence
    from rom.hifi.solvers import petsc
    from rom.hifi.solvers.solve import FullOrderModel

    threadpool_limits(1, user_api="openmp")
    PETSc = petsc.init([])
    opts = {"ksp_type": "cg", "pc_type": "sor", "pc_sor_symmetric": True, "ksp_rtol": 1e-8, "ksp_max_it": 5000}
    problem = ThermalBlock(mesh_n=n, blocks=(2, 2))
    mu = np.random.default_rng(64).uniform(0.1, 1.0, (solves, 4))
    tune = TuneSettings("pc_sor_omega", (1.0, 1.95))
    fom = FullOrderModel(problem, "petsc", opts)
    out = {"dofs": problem.mesh.n_dofs, "omega": tune.values.tolist(), "fixed": [], "policies": {}}

    def fresh():
        fom.solver.destroy()
        fom.solver = petsc.LinearSolver(fom.comm, problem.mesh.n_dofs, 0, problem.mesh.n_dofs, fom.pattern.indptr,
                                        fom.pattern.indices, opts)

    for w in tune.values:
        fresh()
        fom.solver.configure({"pc_sor_omega": w}, override=True)
        t0 = time.perf_counter()
        _, facts = solve_sequence(fom, mu, SequenceSettings.plain())
        out["fixed"].append({"iterations": int(facts.iterations.sum()), "wall": time.perf_counter() - t0})
    for policy in ("bandit", "contextual"):
        fresh()
        t0 = time.perf_counter()
        _, facts = solve_sequence(fom, mu, SequenceSettings(initial_guess="none", tune=TuneSettings(
            "pc_sor_omega", (1.0, 1.95), policy=policy)))
        out["policies"][policy] = {"iterations": int(facts.iterations.sum()), "wall": time.perf_counter() - t0,
                                   "chosen": facts.tuned_value.tolist()}
    PETSc.COMM_WORLD.barrier()
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", nargs="+", default=["block2d", "tet3d"], choices=["block2d", "tet3d"])
    p.add_argument("--block-n", type=int, default=317, help="cells per side of the square (316^2 = 99856 dofs)")
    p.add_argument("--tet-dofs", type=float, default=2e5, help="nodes of the 3D mesh (about)")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="repeats of every variant (interleaved)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variants", nargs="+", default=None, help="subset of the variants (plain always runs)")
    p.add_argument("--variants-3d", nargs="+", default=VARIANTS_3D,
                   help="variants of the 3D problem (1.8 s a solve here: the informative subset by default)")
    p.add_argument("--bandit-n", type=int, default=128, help="cells per side for the bandit sequence")
    p.add_argument("--bandit-solves", type=int, default=64)
    p.add_argument("--worker", nargs=6, help=argparse.SUPPRESS)
    p.add_argument("--bandit-worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        problem, size, samples, repeats, rotate, names = args.worker
        return worker(problem, int(size) if problem == "block2d" else size, int(samples), int(repeats), int(rotate),
                      names.split("|"))
    if args.bandit_worker:
        return bandit_worker(*args.bandit_worker)
    names = list(variants()) if args.variants is None else ["plain"] + [v for v in args.variants if v != "plain"]
    names_3d = ["plain"] + [v for v in args.variants_3d if v != "plain"]
    unknown = sorted((set(names) | set(names_3d)) - set(variants()))
    if unknown:
        raise SystemExit(f"--variants {unknown}: expected some of {list(variants())}")
    folder = os.path.join(os.path.expanduser("~"), ".cache", "romflow", "benchmarks")
    os.makedirs(folder, exist_ok=True)
    sizes = {"block2d": args.block_n, "tet3d": block_cube_mesh(args.tet_dofs, folder) if "tet3d" in args.problems else ""}
    print(f"{args.samples} samples per sequence, {args.repeats} repeats, CG + GAMG rtol 1e-12, "
          f"{os.cpu_count()} cores (shared), load {os.getloadavg()[0]:.1f}")
    figures = {"samples": args.samples, "repeats": args.repeats, "problems": {}}
    t_start = time.perf_counter()
    for problem in args.problems:
        for ranks in args.ranks:
            # 'plain' first in the worker's first repeat gives the reference snapshots for the differences.
            result = run_worker(problem, sizes[problem], args.samples, args.repeats, ranks, 0,
                                names_3d if problem == "tet3d" else names)
            rows = summarize(result)
            print_table(f"{problem}: {result['dofs']} dofs, {ranks} rank(s)", rows)
            figures["problems"].setdefault(problem, {"dofs": result["dofs"]})[f"{ranks}_ranks"] = rows
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, __file__, "--bandit-worker", str(args.bandit_n), str(args.bandit_solves)],
                          capture_output=True, text=True, env=env, check=True)
    b = json.loads(proc.stdout.strip().splitlines()[-1])
    fixed = np.array([f["iterations"] for f in b["fixed"]])
    best = int(np.argmin(fixed))
    print(f"\nSOR omega on {args.bandit_solves} thermal-block solves ({b['dofs']} dofs, CG + SSOR, rtol 1e-8): "
          "total iterations")
    print("  fixed: " + ", ".join(f"{w:.3f}: {f}" for w, f in zip(b["omega"], fixed)))
    for policy, r in b["policies"].items():
        print(f"  {policy:10s}: {r['iterations']} ({r['iterations'] / fixed[best]:.3f} x best fixed omega "
              f"{b['omega'][best]:.3f}, {r['iterations'] / fixed[0]:.3f} x default omega 1)")
    figures["bandit"] = {"dofs": b["dofs"], "solves": args.bandit_solves, "omega": b["omega"],
                         "fixed_iterations": fixed.tolist(), "best_fixed_omega": b["omega"][best],
                         "best_fixed_iterations": int(fixed[best]), "default_iterations": int(fixed[0]),
                         **{f"{k}_iterations": v["iterations"] for k, v in b["policies"].items()},
                         **{f"{k}_over_best": v["iterations"] / fixed[best] for k, v in b["policies"].items()}}
    figures["seconds"] = time.perf_counter() - t_start
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
