"""The GP's hyperparameter optimizer side by side: romflow's batched L-BFGS (all outputs in one
batched Cholesky per evaluation, a stopping test that knows the loss's rounding level) against
SciPy's L-BFGS-B run once per output and restart on the same loss and analytic gradient, from the
same starting points.

Per case and optimizer: wall time, the best loss reached (per-sample negative log likelihood:
the largest excess of romflow's over SciPy's and of SciPy's over romflow's), and the fraction of (output, copy) fits reported
converged over the data as given and `--copies` perturbations of it by 1e-14 relative (what
another CPU's summation order does). SciPy's verdict is its `success` flag: an abnormal line-search
termination counts as not converged, as it does for a user reading SciPy's result. The last line
is a JSON object. Usage:
    .venv/bin/python benchmarks/gp_optimizer.py [--copies 4 --restarts 4 --iterations 300 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
from scipy.optimize import minimize

from surrogates.gp import GP, _negative_log_likelihood, restart_point


def case(name: str, n: int, d: int, m: int, seed: int):
    """Smooth outputs of d inputs, one informative pair per output, in the ranges the POD+GP and
    MMGP stages meet (n = 24 to 200 samples, up to 20 outputs)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, (n, d))
    W = rng.normal(size=(m, d)) * (rng.random((m, d)) < 0.5)
    Y = np.sin(X @ W.T) + 0.3 * np.cos(2 * X[:, :1]) * np.exp(X[:, -1:])
    return name, X, Y


def scipy_fit(X, Y, restarts: int, iterations: int, seed: int, gtol: float, ftol: float):
    """Per output and restart, L-BFGS-B on the loss GP.fit minimizes; the best restart per output."""
    gp = GP(restarts=restarts, iterations=iterations, seed=seed)
    gp._standardize(X, Y)
    Xt = gp._x(X)
    Yt = torch.as_tensor((Y.T - gp.y_mean[:, None]) / gp.y_std[:, None], dtype=torch.float64)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    starts = [restart_point(r, d, rng) for r in range(restarts)]
    best_f, success = np.full(Y.shape[1], np.inf), np.zeros(Y.shape[1], dtype=bool)
    for k in range(Y.shape[1]):
        def fun(theta):
            f, g, _ = _negative_log_likelihood(torch.as_tensor(theta[None]), Xt, Yt[k:k + 1], gp.noise_floor)
            f = float(f[0])
            return (f, g[0].numpy()) if np.isfinite(f) else (1e300, np.zeros_like(theta))

        for x0 in starts:
            r = minimize(fun, x0, jac=True, method="L-BFGS-B",
                         options={"maxiter": iterations, "gtol": gtol, "ftol": ftol})
            if r.fun < best_f[k]:
                best_f[k], success[k] = r.fun, r.success
    return best_f, success


def romflow_fit(X, Y, restarts: int, iterations: int, seed: int):
    gp = GP(restarts=restarts, iterations=iterations, seed=seed, calibrate=False).fit(X, Y)
    return -gp.log_marginal_likelihood / len(X), gp.converged


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cases = [case("pod_gp 24x4 -> 12", 24, 4, 12, 0), case("pod_gp 120x4 -> 12", 120, 4, 12, 1),
             case("mmgp 200x9 -> 20", 200, 9, 20, 2)]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {a.threads} thread(s), "
          f"{a.restarts} restarts x {a.iterations} iterations, data as given + {a.copies} copies perturbed by 1e-14")
    print(f"{'case':22s} {'romflow s':>10s} {'scipy s':>9s} {'scipy/romflow':>14s} {'romflow>scipy':>13s} {'scipy>romflow':>13s} "
          f"{'romflow conv':>13s} {'scipy conv':>11s}")
    rows = []
    for name, X, Y in cases:
        rng = np.random.default_rng(99)
        t = {"romflow": 0.0, "scipy": 0.0}
        conv = {"romflow": [], "scipy": []}
        worse = {"romflow": 0.0, "scipy": 0.0}  # largest excess of one's best loss over the other's
        for c in range(a.copies + 1):
            Xc, Yc = (X, Y) if c == 0 else (X * (1 + 1e-14 * rng.standard_normal(X.shape)),
                                           Y * (1 + 1e-14 * rng.standard_normal(Y.shape)))
            t0 = time.perf_counter()
            f_r, ok_r = romflow_fit(Xc, Yc, a.restarts, a.iterations, 0)
            t["romflow"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            f_s, ok_s = scipy_fit(Xc, Yc, a.restarts, a.iterations, 0, 1e-5, 1e-9)
            t["scipy"] += time.perf_counter() - t0
            conv["romflow"].append(ok_r)
            conv["scipy"].append(ok_s)
            worse["romflow"] = max(worse["romflow"], float((f_r - f_s).max()))
            worse["scipy"] = max(worse["scipy"], float((f_s - f_r).max()))
        row = {"case": name, "romflow_s": t["romflow"] / (a.copies + 1), "scipy_s": t["scipy"] / (a.copies + 1),
               "romflow_loss_above_scipy": worse["romflow"], "scipy_loss_above_romflow": worse["scipy"],
               "romflow_converged": float(np.mean(conv["romflow"])),
               "scipy_converged": float(np.mean(conv["scipy"]))}
        rows.append(row)
        print(f"{name:22s} {row['romflow_s']:10.2f} {row['scipy_s']:9.2f} {row['scipy_s'] / row['romflow_s']:14.2f} "
              f"{worse['romflow']:13.1e} {worse['scipy']:13.1e} {row['romflow_converged']:13.2f} {row['scipy_converged']:11.2f}")
    print(json.dumps({"benchmark": "gp_optimizer", "copies": a.copies, "cases": rows}))


if __name__ == "__main__":
    main()
