"""Snapshot generation that learns from itself: the whole solve sequence of a simulate stage (64 samples)
with no reuse, the ordering alone, each reuse piece, and all together, on 1 and 2 MPI ranks, side by side;
then the SOR-omega bandit against the best fixed and the default omega on a sequence of 64 solves.

    python benchmarks/data_generation.py [--problems block2d tet3d] [--repeats 3] [--ranks 1 2]

Problems (all variants on the first, the informative subset --variants-3d on the second): the thermal block (2x2 blocks, P1 on the unit square, about 1e5 dofs) and a 3D P1 diffusion with
a piecewise-constant conductivity on 2x2x2 blocks of the unit cube (about 2e5 dofs, 8 parameters) on a
structured tetrahedral mesh built here (BENCHMARK-ONLY MESH BUILDER below: the project's 3D problems are
another helper's work). Solver: the schema's default petsc_options (CG + GAMG, rtol 1e-12, max_it 1000),
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
from types import SimpleNamespace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OPTIONS = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12, "ksp_max_it": 1000}


# -- BENCHMARK-ONLY MESH BUILDER: 3D P1 diffusion on a structured tetrahedral mesh of the unit cube --------
class TetPattern:
    """CSR pattern of the free-dof couplings for rows [row_start, row_stop) of a tetrahedral P1 mesh (the
    3D counterpart of rom.hifi.fem.Pattern, same attributes)."""

    def __init__(self, tets, dof_of_node, n_dofs, r0, r1):
        dof = dof_of_node[tets]
        owned = (dof >= r0) & (dof < r1)
        self.elements = np.flatnonzero(owned.any(axis=1))
        d = dof[self.elements]
        rows, cols = np.repeat(d, 4, axis=1).ravel(), np.tile(d, (1, 4)).ravel()
        keep = (rows >= r0) & (rows < r1) & (cols >= 0)
        unique_key, slot = np.unique(rows[keep] * n_dofs + cols[keep], return_inverse=True)
        self.entry_slot = np.full(rows.shape, -1, dtype=np.int64)
        self.entry_slot[keep] = slot
        self.indptr = np.zeros(r1 - r0 + 1, dtype=np.int64)
        np.cumsum(np.bincount(unique_key // n_dofs - r0, minlength=r1 - r0), out=self.indptr[1:])
        self.indices = (unique_key % n_dofs).astype(np.int64)
        self.n_dofs, self.row_start, self.row_stop = n_dofs, r0, r1
        self._dof = dof[self.elements]

    @property
    def nnz(self):
        return len(self.indices)

    @property
    def n_rows(self):
        return self.row_stop - self.row_start

    def assemble_terms(self, local, term_of_element, n_terms):
        vals = local[self.elements].reshape(-1)
        term = np.repeat(term_of_element[self.elements], 16)
        keep = self.entry_slot >= 0
        flat = term[keep] * self.nnz + self.entry_slot[keep]
        return np.bincount(flat, weights=vals[keep], minlength=n_terms * self.nnz).reshape(n_terms, self.nnz)

    def assemble_vector(self, local):
        owned = (self._dof >= self.row_start) & (self._dof < self.row_stop)
        return np.bincount(self._dof[owned] - self.row_start, weights=local[self.elements][owned],
                           minlength=self.n_rows)


class TetBlock:
    """-div(kappa grad u) = 1 in the unit cube, u = 0 on its boundary, kappa = mu_q on block q of a 2x2x2
    grid; n^3 cubes of 6 tetrahedra each (Kuhn subdivision, conforming). Affine: theta_q(mu) = mu_q."""

    def __init__(self, n: int, blocks=(2, 2, 2)):
        from rom.hifi import capabilities as cap

        self.capabilities = frozenset({cap.PARAMETERS, cap.STATIONARY, cap.AFFINE})
        x = np.linspace(0.0, 1.0, n + 1)
        Z, Y, X = np.meshgrid(x, x, x, indexing="ij")
        self.nodes = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])  # x fastest
        i, j, k = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij"))
        corner = (k * (n + 1) + j) * (n + 1) + i
        step = np.array([1, n + 1, (n + 1) ** 2])
        tets = []
        for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
            v1 = corner + step[perm[0]]
            v2 = v1 + step[perm[1]]
            tets.append(np.column_stack([corner, v1, v2, v2 + step[perm[2]]]))
        self.tets = np.concatenate(tets)
        on_face = np.any((self.nodes == 0.0) | (self.nodes == 1.0), axis=1)
        self.dof_of_node = np.full(len(self.nodes), -1, dtype=np.int64)
        self.dof_of_node[~on_face] = np.arange((~on_face).sum())
        self.n_dofs = int((~on_face).sum())
        c = self.nodes[self.tets].mean(axis=1)
        b = np.minimum((c * np.array(blocks)).astype(int), np.array(blocks) - 1)
        self.block = (b[:, 2] * blocks[1] + b[:, 1]) * blocks[0] + b[:, 0]
        self.n_terms = int(np.prod(blocks))
        self._cache = {}

    def pattern(self, r0, r1):
        return TetPattern(self.tets, self.dof_of_node, self.n_dofs, r0, r1)

    def _local(self, pattern):
        P = self.nodes[self.tets[pattern.elements]]
        M = np.concatenate([np.ones(P.shape[:2] + (1,)), P], axis=2)  # rows [1, x, y, z] per vertex
        G = np.linalg.inv(M)[:, 1:, :]  # gradients of the barycentric functions, (e, 3, 4)
        vol = np.abs(np.linalg.det(M)) / 6.0
        K = np.zeros((len(self.tets), 4, 4))
        K[pattern.elements] = vol[:, None, None] * np.einsum("eki,ekj->eij", G, G)
        f = np.zeros((len(self.tets), 4))
        f[pattern.elements] = np.repeat(vol[:, None] / 4.0, 4, axis=1)
        return K, f

    def operator_terms(self, pattern):
        if "A" not in self._cache:
            K, f = self._local(pattern)
            self._cache["A"] = pattern.assemble_terms(K, self.block, self.n_terms)
            self._cache["f"] = pattern.assemble_vector(f)
        return self._cache["A"]

    def theta(self, mu):
        return np.asarray(mu, dtype=float)

    def operator_values(self, mu, pattern):
        return np.asarray(mu, dtype=float) @ self.operator_terms(pattern)

    def rhs(self, mu, pattern):
        self.operator_terms(pattern)
        return self._cache["f"]


# -- variants ------------------------------------------------------------------------------------------------
def variants():
    from rom.hifi.sequence import SequenceSettings as S

    none = dict(initial_guess="none")
    return {  # name: (ordering, settings, chunk length)
        "plain": ("design", S(**none), None),
        "ordering": ("nearest", S(**none), None),
        "previous": ("nearest", S(initial_guess="previous"), None),
        "fischer": ("nearest", S(initial_guess="fischer", guess_size=16), None),
        "fischer+frozen": ("nearest", S(initial_guess="fischer", guess_size=16, preconditioner_reuse="frozen"), None),
        "projection": ("nearest", S(), None),
        "projection (design order)": ("design", S(), None),
        "frozen PC": ("nearest", S(preconditioner_reuse="frozen", **none), None),
        "frozen PC (cost rule)": ("nearest", S(preconditioner_reuse="frozen", rebuild_rule="cost", **none), None),
        "GAMG interpolation": ("nearest", S(preconditioner_reuse="interpolation", **none), None),
        "deflation": ("nearest", S(deflation="solutions"), None),
        "all": ("nearest", S(preconditioner_reuse="interpolation"), None),
        "all (frozen PC)": ("nearest", S(preconditioner_reuse="frozen"), None),
        "all (frozen PC, cost rule)": ("nearest", S(preconditioner_reuse="frozen", rebuild_rule="cost"), None),
        "all (chunks of 16)": ("nearest", S(preconditioner_reuse="interpolation"), 16),
    }


VARIANTS_3D = ["ordering", "projection", "frozen PC", "GAMG interpolation", "all", "all (frozen PC)"]


def build(problem_name, size):
    from rom.hifi import petsc

    PETSc = petsc.init([])
    comm = PETSc.COMM_WORLD
    if problem_name == "block2d":
        from rom.hifi.problems import ThermalBlock
        from rom.hifi.solve import FullOrderModel

        fom = FullOrderModel(ThermalBlock(mesh_n=size, blocks=(2, 2)), "petsc", OPTIONS)
        fom.solver.destroy()
        return fom, 4, fom.problem.mesh.n_dofs
    problem = TetBlock(size)
    r0, r1 = petsc.ownership(problem.n_dofs, comm.size, comm.rank)
    petsc.set_options(OPTIONS)
    return SimpleNamespace(problem=problem, pattern=problem.pattern(r0, r1), comm=comm, rank=comm.rank,
                           solver=None), problem.n_terms, problem.n_dofs


def worker(problem_name, size, samples, repeats, rotate, names):
    from threadpoolctl import threadpool_limits
    from scipy.stats import qmc

    from rom.hifi import petsc
    from rom.hifi.ordering import unit_coordinates, solve_order
    from rom.hifi.sequence import solve_sequence

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
            its, setup, solve, rebuilt, U = np.zeros(samples, int), 0.0, 0.0, 0, [None] * samples
            mpi.Barrier()
            t0 = time.perf_counter()
            for piece in pieces:  # each piece is one simulate chunk: its own sequence
                res, facts = solve_sequence(fom, mu[piece], settings)
                its[piece] = facts.iterations
                setup, solve = setup + np.nansum(facts.setup_seconds), solve + np.nansum(facts.solve_seconds)
                rebuilt += int((facts.pc_rebuilt == 1).sum())
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
                                              "solve": solve, "rebuilt": rebuilt, "max_rel_diff": diff})
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
                      "pc_builds": int(np.median([r["rebuilt"] for r in reps])),
                      "max_rel_diff_to_plain": float(max(r["max_rel_diff"] for r in reps))}
    return rows


def print_table(title, rows):
    print(f"\n{title}")
    head = (f"{'variant':26s} {'its/sample':>10s} {'x its':>6s} {'wall s':>8s} {'(min-max)':>15s} {'x wall':>7s} "
            f"{'(min-max)':>13s} {'setup s':>8s} {'krylov s':>8s} {'PC builds':>9s} {'max rel diff':>12s}")
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        print(f"{name:26s} {r['iterations_per_sample']:10.1f} {r['iteration_ratio']:6.2f} {r['wall_s']:8.2f} "
              f"{r['wall_s_range'][0]:7.2f}-{r['wall_s_range'][1]:<7.2f} {r['wall_ratio']:7.2f} "
              f"{r['wall_ratio_range'][0]:6.2f}-{r['wall_ratio_range'][1]:<6.2f} {r['setup_s']:8.2f} "
              f"{r['krylov_s']:8.2f} {r['pc_builds']:9d} {r['max_rel_diff_to_plain']:12.1e}")


def bandit_worker(n, solves):
    """CG + SSOR on `solves` thermal-block systems: every fixed omega of the grid, and both policies."""
    from threadpoolctl import threadpool_limits

    from rom.hifi import petsc
    from rom.hifi.problems import ThermalBlock
    from rom.hifi.sequence import SequenceSettings, TuneSettings, solve_sequence
    from rom.hifi.solve import FullOrderModel

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
    p.add_argument("--tet-n", type=int, default=59, help="cubes per side of the cube (58^3 = 195112 dofs)")
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
        return worker(problem, int(size), int(samples), int(repeats), int(rotate), names.split("|"))
    if args.bandit_worker:
        return bandit_worker(*args.bandit_worker)
    names = list(variants()) if args.variants is None else ["plain"] + [v for v in args.variants if v != "plain"]
    names_3d = ["plain"] + [v for v in args.variants_3d if v != "plain"]
    unknown = sorted((set(names) | set(names_3d)) - set(variants()))
    if unknown:
        raise SystemExit(f"--variants {unknown}: expected some of {list(variants())}")
    sizes = {"block2d": args.block_n, "tet3d": args.tet_n}
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
