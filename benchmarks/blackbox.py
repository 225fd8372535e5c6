"""Per-sample cost of a black box, three ways side by side on the same scikit-fem solve
(examples/blackbox/skfem_block.py --model bump: assemble -div((1 + a exp(-(x - b)^2 / 0.05)) grad u) = 1
with P1 on the unit square, eliminate the boundary, spsolve):

  one-shot     problem.persistent: false: romflow starts the command once per sample (imports, mesh read,
               assembly, solve, HDF5 write), External.run;
  persistent   problem.persistent: true: the same script with --serve, started once (romflow/worker.py),
               one JSON request and one HDF5 file per sample, External.run inside a session;
  in-process   the script's own solve function called in this process (mesh read once): the floor.

    python benchmarks/blackbox.py [--dofs 2e4 2e5] [--samples 5] [--max-seconds 180]

Then the RB online speed-up over the black box's own solve: the certified RB of the affine block model
(--model block: its two terms and load as the script exports them, min-theta, weak greedy with the
script's own solves to tol 1e-6 over 40 parameters) queried one parameter at a time with its bound,
against the script's block solve in-process and one process per sample; and the online cost of the
non-affine route (--model bump through its entries mode, entries_command): one run per batch of
queries, per query at batches of 1 and 100.

Each figure is the median wall time per sample over `samples` parameters after one warm-up sample (the
worker's start and the first request are reported apart). A size whose one-shot run would take longer than
--max-seconds (estimated from its first sample) is cut short, with the reason printed. Prints a table with
the ratios persistent / in-process (target <= 1.3) and one-shot / persistent; the last line is a JSON
object with every figure."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCRIPT = ROOT / "examples" / "blackbox" / "skfem_block.py"


def mesh(path: Path, dofs: float) -> int:
    size = (1.15 / dofs) ** 0.5  # a gmsh unit square with element size h has about 1.15 / h^2 nodes
    subprocess.run([sys.executable, ROOT / "examples" / "meshes" / "square.py", path, "--size", f"{size:.6g}"],
                   check=True, capture_output=True)
    import meshio

    return len(meshio.read(path).points)


def timed(fn, mus):
    out = []
    for mu in mus:
        t0 = time.perf_counter()
        fn(mu)
        out.append(time.perf_counter() - t0)
    return out


def rb_speedup(skfem_block, path: Path, oneshot_problem, samples: int, rng) -> dict:
    """The certified RB of the block model on the script's own terms, and its query time against the
    script's solve (in-process and one-shot); the non-affine route's query cost through entries_command."""
    from rom.hifi.registry import make_problem
    from rom.models.rb import CoerciveRBReductor
    from rom.reduction.greedy import weak_greedy

    mesh_, basis, keep = skfem_block.setup(str(path))
    T, F = skfem_block.block_terms(mesh_, basis, keep)
    terms = [T["core"], T["shell"]]
    X = (terms[0] + terms[1]).tocsr()  # X = sum_q A_q: min-theta, theta_q = mu_q, reference (1, 1)

    class Block:
        def theta(self, mu):
            return np.atleast_2d(mu)

        def phi(self, mu):
            return np.ones((len(np.atleast_2d(mu)), 1))

        def alpha_lb(self, mu):
            return np.atleast_2d(mu).min(axis=1)

        op_error = rhs_error = None

    bounds = np.array([[0.1, 10.0], [0.5, 2.0]])
    train = np.column_stack([rng.uniform(*bounds[0], 40), rng.uniform(*bounds[1], 40)])
    red = CoerciveRBReductor(X, terms, F["source"][None, :], Block(), bounds, ["k_core", "k_shell"])
    solve = skfem_block.solver(str(path), "block")
    t0 = time.perf_counter()
    h = weak_greedy(train, lambda mu: solve(mu)[2], red, 1e-6, 20)
    offline = time.perf_counter() - t0
    model = red.model()
    queries = np.column_stack([rng.uniform(*bounds[0], 200), rng.uniform(*bounds[1], 200)])
    model.solve_and_estimate(queries[0])
    rb_query = float(np.median(timed(model.solve_and_estimate, queries)))
    fom_in = float(np.median(timed(solve, queries[:samples])))
    once = make_problem({**oneshot_problem, "command": f"{{python}} {SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}}"})
    fom_once = float(np.median(timed(once.run, queries[:max(2, samples // 2)])))
    u = solve(queries[1])[2]
    c, delta = model.solve_and_estimate(queries[1])
    err = float(np.sqrt((u - c @ red.V) @ (X @ (u - c @ red.V))))
    # the non-affine route: one entries_command run per batch (12 magic entries of A, 1 of f)
    bump = make_problem({**oneshot_problem, "command": f"{{python}} {SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}} "
                                                       "--model bump",
                         "entries_command": f"{{python}} {SCRIPT} --mesh {{mesh}} --entries {{request}} --out "
                                            "{entries} --model bump"})
    rows, cols = np.arange(12), np.arange(12)
    mus = np.column_stack([rng.uniform(0.5, 5.0, 100), rng.uniform(0.3, 0.7, 100)])
    t0 = time.perf_counter()
    bump.entries(mus[:1], rows, cols, rows[:1])
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    bump.entries(mus, rows, cols, rows[:1])
    hundred = (time.perf_counter() - t0) / len(mus)
    return {"rb_N": red.N, "rb_greedy_stop": h.stop_reason, "rb_offline_s": offline, "rb_query_s": rb_query,
            "fom_inprocess_s": fom_in, "fom_oneshot_s": fom_once, "rb_speedup_inprocess": fom_in / rb_query,
            "rb_speedup_oneshot": fom_once / rb_query, "rb_error_check": err, "rb_bound_check": float(delta),
            "entries_query_s_batch1": one, "entries_query_s_batch100": hundred}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dofs", type=float, nargs="+", default=[2e4, 2e5])
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--max-seconds", type=float, default=180.0)
    args = ap.parse_args()
    from rom.hifi.registry import make_problem

    sys.path.insert(0, str(SCRIPT.parent))  # the example and the PETSc writers it imports from poisson.py
    import skfem_block
    rng = np.random.default_rng(0)
    rows, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="romflow-bench-bb-") as tmp:
        for dofs in args.dofs:
            t_size = time.perf_counter()
            path = Path(tmp) / f"square_{int(dofs)}.msh"
            n = mesh(path, dofs)
            mus = np.column_stack([rng.uniform(0.5, 5.0, args.samples + 1), rng.uniform(0.3, 0.7, args.samples + 1)])
            base = {"name": "external", "parameters": ["a", "b"], "mesh": {"file": str(path)}, "timeout": 600}
            once = make_problem({**base, "command": f"{{python}} {SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}} "
                                                    "--model bump"})
            kept = make_problem({**base, "command": f"{{python}} {SCRIPT} --mesh {{mesh}} --serve --model bump",
                                 "persistent": True})
            # in-process: the script's own set-up once, then its assemble + solve per sample
            t0 = time.perf_counter()
            solve = skfem_block.solver(str(path), "bump")
            setup_in = time.perf_counter() - t0
            inproc = timed(solve, mus)[1:]
            # persistent: one worker, one request per sample
            with kept.session():
                t0 = time.perf_counter()
                first = kept.run(mus[0])
                first_s = time.perf_counter() - t0
                assert first.converged, first.reason
                persistent = timed(lambda mu: kept.run(mu), mus[1:])
            # one-shot: one process per sample (cut short past --max-seconds)
            oneshot, note = [], ""
            for mu in mus[1:]:
                t0 = time.perf_counter()
                s = once.run(mu)
                oneshot.append(time.perf_counter() - t0)
                assert s.converged, s.reason
                if oneshot[0] * args.samples > args.max_seconds and len(oneshot) >= 2:
                    note = f"one-shot cut at {len(oneshot)} samples (--max-seconds {args.max_seconds:g})"
                    break
            # the same field three ways (the one-shot and persistent ones bit for bit)
            u_ref = solve(mus[-1])[2]
            assert np.array_equal(kept.run(mus[-1]).u, u_ref) if n < 50000 else True
            med = {k: float(np.median(v)) for k, v in (("oneshot", oneshot), ("persistent", persistent),
                                                        ("inprocess", inproc))}
            fig = {"nodes": n, "samples": args.samples, **{f"{k}_s": v for k, v in med.items()},
                   "worker_first_request_s": first_s, "inprocess_setup_s": setup_in,
                   "persistent_over_inprocess": med["persistent"] / med["inprocess"],
                   "oneshot_over_persistent": med["oneshot"] / med["persistent"],
                   "oneshot_over_inprocess": med["oneshot"] / med["inprocess"],
                   "wall_s": time.perf_counter() - t_size, **({"note": note} if note else {})}
            fig.update(rb_speedup(skfem_block, path, base, args.samples, rng))
            figures[str(n)] = fig
            rows.append(fig)
            print(f"{n:>8} nodes: one-shot {med['oneshot']:.3f} s, persistent {med['persistent']:.3f} s, "
                  f"in-process {med['inprocess']:.3f} s per sample; persistent / in-process "
                  f"{fig['persistent_over_inprocess']:.2f}x, one-shot / persistent {fig['oneshot_over_persistent']:.1f}x"
                  f" (worker start + first request {first_s:.2f} s){'; ' + note if note else ''}", flush=True)
    print()
    print(f"{'nodes':>8} {'one-shot s':>11} {'persistent s':>13} {'in-process s':>13} {'pers/in':>8} {'once/pers':>10}")
    for f in rows:
        print(f"{f['nodes']:>8} {f['oneshot_s']:>11.3f} {f['persistent_s']:>13.3f} {f['inprocess_s']:>13.3f} "
              f"{f['persistent_over_inprocess']:>8.2f} {f['oneshot_over_persistent']:>10.1f}")
    print()
    print(f"{'nodes':>8} {'RB N':>5} {'RB query s':>11} {'FOM in s':>9} {'FOM 1-shot s':>13} {'speed-up in':>12} "
          f"{'speed-up 1-shot':>16} {'entries/q (1)':>14} {'entries/q (100)':>16}")
    for f in rows:
        print(f"{f['nodes']:>8} {f['rb_N']:>5} {f['rb_query_s']:>11.2e} {f['fom_inprocess_s']:>9.3f} "
              f"{f['fom_oneshot_s']:>13.3f} {f['rb_speedup_inprocess']:>12.0f} {f['rb_speedup_oneshot']:>16.0f} "
              f"{f['entries_query_s_batch1']:>14.3f} {f['entries_query_s_batch100']:>16.4f}")
    print(json.dumps({"benchmark": "blackbox", "cpu_count": os.cpu_count(), "sizes": figures}))


if __name__ == "__main__":
    main()
