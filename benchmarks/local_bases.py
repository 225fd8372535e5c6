"""Global vs local bases (each dissimilarity) at equal size, and the adaptive hyper-reduced ROM vs
the full-order model, on the nonlinear heat problem. Prints one table; no assertions.

    .venv/bin/python benchmarks/local_bases.py [--mesh 24 48] [--train 24] [--test 12]"""
from __future__ import annotations

import argparse
import copy
import platform
import time

import numpy as np
from scipy.stats import qmc
from threadpoolctl import threadpool_limits

from rom.hifi.discretization import fem
from rom.hifi.problems.nonlinear_heat import NonlinearHeat
from rom.hifi.solvers.solve import FullOrderModel, fom_step_function
from rom.models.adaptive import HyperReducedROM, relative_errors, run_adaptive
from rom.models.local import MLPSelector
from rom.reduction import clustering as cl
from rom.reduction.pod import pod, projection_errors


def trajectories(p, fom, n, seed):
    lo, hi = p.default_bounds.T
    mu = qmc.scale(qmc.LatinHypercube(d=3, seed=seed).random(n), lo, hi)
    return np.stack([fom.solve_trajectory(m).u for m in mu]), mu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", type=int, nargs="+", default=[24, 48])
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--test", type=int, default=12)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--N", type=int, default=8)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}; one BLAS thread")
    rows = []
    for n in args.mesh:  # a couple of mesh sizes
        p = NonlinearHeat(mesh_n=n)
        fom = FullOrderModel(p, "petsc", {})
        pat = fem.Pattern.build(p.mesh)
        X, M = pat.to_scipy(p.energy_product(pat)), pat.to_scipy(p.mass_product(pat))
        t0 = time.perf_counter()
        S, mu = trajectories(p, fom, args.train, 1)
        fom_traj = (time.perf_counter() - t0) / args.train
        T, mu_t = trajectories(p, fom, args.test, 2)
        U, Tt = S[:, 1:], T[:, 1:]
        with threadpool_limits(1):
            V, _ = pod(U.reshape(-1, U.shape[-1]), X, 1e-14, args.N)
            g = np.quantile(projection_errors(V, Tt.reshape(-1, U.shape[-1]), X, [args.N]), 0.9)
            rows.append((n, "global POD", f"N={args.N}", f"{g:.3g}", "-", "-"))
            for name in ("euclidean", "angle", "grassmann_geodesic", "grassmann_chordal"):
                c = cl.kmedoids(cl.dissimilarity(name, U, X), args.k, 8, 0)
                bases = cl.local_bases(U, c.labels, X, 1e-12, args.N)
                truth = np.argmin(cl.dissimilarity(name, Tt, X, U[c.medoids]), axis=1)
                sel = MLPSelector.train(mu, c.labels, p.default_bounds)
                t1 = time.perf_counter()
                for m in mu_t:
                    sel.predict(m)
                t_sel = (time.perf_counter() - t1) / len(mu_t)
                acc = np.mean(sel.predict(mu_t) == truth)
                q = np.quantile(cl.local_projection_errors(bases, Tt, sel.predict(mu_t), X, [args.N]), 0.9)
                rows.append((n, f"local {name}", f"k={args.k} N={args.N}", f"{q:.3g}", f"{g / q:.2f}",
                             f"MLP acc {acc:.2f}, {t_sel * 1e6:.0f} us/query"))
            rom = HyperReducedROM.from_snapshots(p, M, X, S, mu)
            step = fom_step_function(p, "petsc", {})
            m_out = np.array([0.5, 0.7, 170.0])
            t1 = time.perf_counter()
            ref = fom.solve_trajectory(m_out).u
            t_fom = time.perf_counter() - t1
            st = run_adaptive(copy.deepcopy(rom), m_out)
            ad = run_adaptive(copy.deepcopy(rom), m_out, 1e-2, step)
        e_st, e_ad = relative_errors(st.states, ref, X).max(), relative_errors(ad.states, ref, X).max()
        rows.append((n, "hyper-reduced ROM", f"N={rom.N} m={rom.m} |E|={len(rom.E)}", f"max err {e_st:.3g}",
                     f"x{t_fom / st.online_seconds:.2f}", f"FOM {t_fom:.3f}s ROM {st.online_seconds:.3f}s, "
                     f"indicator ops {rom.indicator_operation_count}"))
        ad_s = ad.online_seconds + ad.fom_seconds
        rows.append((n, "adaptive ROM", f"tol 1e-2, {ad.fom_steps}/{p.steps} FOM steps", f"max err {e_ad:.3g}",
                     f"x{t_fom / ad_s:.2f}", f"ROM+enrichments {ad.online_seconds:.3f}s FOM steps {ad.fom_seconds:.3f}s; "
                     f"FOM {fom_traj:.3f}s/train traj"))
    head = ("mesh", "model", "size", "q90 test proj. err / error", "gain / speed-up", "notes")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    main()
