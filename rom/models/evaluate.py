"""Evaluation of reduced-basis models against full-order solutions: true errors, estimates,
effectivities and online timings, for evaluate-rom, the benchmark and the tests alike.

True errors are formed explicitly (u - V^T c, never from an expansion of the squared norm) and in
the precision of the reference: with references refined in extended precision
(`refined_solutions`) the error of the RB solution is measured to ~1e-18 relative, below the
5e-14..1.2e-13 that a plain double solve at 2e4 dofs carries itself.
"""
from __future__ import annotations

import time

import numpy as np
import xarray as xr

from rom.reduction.linalg import EXTENDED, RefinedSolver, x_norms


def refined_solutions(A_terms, f_terms, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Solutions (n, n_dofs) of sum_q theta_q A_q u = sum_p phi_p f_p, in long double: one double LU
    per parameter and iterative refinement whose residuals apply sum_q theta_q A_q in long double
    (the affine operator itself, not its assembly rounded to double: linalg.RefinedSolver)."""
    f_ext = np.asarray(f_terms, dtype=float).astype(EXTENDED)
    A_ext = [Aq.astype(EXTENDED) for Aq in A_terms]
    out = []
    for t, p in zip(np.atleast_2d(theta), np.atleast_2d(phi)):  # one factorization per parameter
        A = sum(float(tq) * Aq for tq, Aq in zip(t, A_terms))
        exact = sum(EXTENDED(tq) * Aq for tq, Aq in zip(t, A_ext))
        out.append(RefinedSolver(A, A_ext=exact).solve(p.astype(EXTENDED) @ f_ext))
    return np.array(out)


def true_errors(U: np.ndarray, c: np.ndarray, V: np.ndarray, X) -> np.ndarray:
    """||u_i - V^T c_i||_X for references U (n, n_dofs), in the dtype of U (V^T c formed in it too;
    pass V and X in that dtype to avoid a conversion per call)."""
    E = U - np.einsum("ij,jk->ik", c.astype(U.dtype), V[: c.shape[1]].astype(U.dtype, copy=False))
    return x_norms(E, X if X.dtype == U.dtype else X.astype(U.dtype)).astype(float)


def error_table(model, V, X, mu, U, sizes=None, methods=("stable", "textbook")) -> dict:
    """True errors and estimates for every basis size in `sizes` (default 1..N): arrays
    (len(sizes), n) under 'error', 'estimate_<method>', 'rounding' (worst-case online rounding of
    the stable estimate), and the relative errors under 'relative_error'."""
    sizes = np.arange(1, model.N + 1) if sizes is None else np.asarray(sizes)
    X_ref = X.astype(U.dtype) if U.dtype != X.dtype else X
    V = V.astype(U.dtype, copy=False)
    norms = x_norms(U, X_ref).astype(float)
    out = {"sizes": sizes, "norm": norms, "error": np.empty((len(sizes), len(mu))),
           "rounding": np.empty((len(sizes), len(mu)))}
    for m in methods:
        out[f"estimate_{m}"] = np.empty((len(sizes), len(mu)))
    for row, N in enumerate(sizes):  # a handful of basis sizes, each vectorized over the parameters
        mN = model.truncated(int(N))
        c = mN.solve_batch(mu)
        out["error"][row] = true_errors(U, c, V, X_ref)
        out["rounding"][row] = mN.rounding_bound(mu, c)
        for m in methods:
            out[f"estimate_{m}"][row] = mN.estimate_batch(mu, c, m)
    out["relative_error"] = out["error"] / norms
    return out


def time_single(model, mu: np.ndarray, n: int, estimate: bool = True) -> float:
    """Seconds per single query (solve, or solve_and_estimate), cycling through the parameters
    one after the other as an online user would."""
    queries = mu[np.arange(n) % len(mu)]
    call = model.solve_and_estimate if estimate else model.solve
    call(queries[0])  # warm up
    t0 = time.perf_counter()
    for q in queries:
        call(q)
    return (time.perf_counter() - t0) / n


def time_batch(model, mu: np.ndarray, estimate: bool = True, repeat: int = 1) -> float:
    """Seconds per query of one batched call over mu (best of `repeat`)."""
    call = model.solve_and_estimate_batch if estimate else model.solve_batch
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        call(mu)
        best = min(best, time.perf_counter() - t0)
    return best / len(mu)


def evaluation_dataset(models: dict, V: np.ndarray, X, mu: np.ndarray, U: np.ndarray, sample,
                       fom_seconds: float, mu_batch: np.ndarray, n_timing: int, labels: dict | None = None) -> xr.Dataset:
    """The rb_metrics artefact: errors, stable and textbook estimates for every N and test sample of
    each model kind, and the summary attributes (error ranges, effectivities, timings, speed-ups).
    `labels` maps a kind to the label of its EIM contribution (rigorous | training_sup | indicator)."""
    labels = labels or {}
    data, attrs = {}, {"fom_seconds_per_solve": fom_seconds, "n_test": len(mu), "N": int(V.shape[0]),
                       "kinds": ",".join(models)}
    sizes = np.arange(1, V.shape[0] + 1)
    norms = None
    for kind, model in models.items():
        t = error_table(model, V, X, mu, U, sizes)
        norms = t["norm"]
        err, est, est_tb = t["error"], t["estimate_stable"], t["estimate_textbook"]
        single = time_single(model, mu, n_timing)
        single_solve = time_single(model, mu, n_timing, estimate=False)
        batched = time_batch(model, mu_batch)
        eff, eff_tb = est[-1] / err[-1], est_tb[-1] / err[-1]
        data.update({
            f"{kind}_error": (("basis_size", "test_sample"), err, {"long_name": "||u - u_rb||_X (true)"}),
            f"{kind}_estimate": (("basis_size", "test_sample"), est, {"long_name": "Delta(mu), stable residual norm"}),
            f"{kind}_estimate_textbook": (("basis_size", "test_sample"), est_tb,
                                          {"long_name": "Delta(mu), textbook quadratic form (NaN: negative square)"}),
            f"{kind}_rounding_bound": (("basis_size", "test_sample"), t["rounding"],
                                       {"long_name": "worst-case online rounding of the stable Delta"}),
        })
        attrs.update({
            f"{kind}_max_error": float(err[-1].max()), f"{kind}_mean_error": float(err[-1].mean()),
            f"{kind}_max_relative_error": float((err[-1] / norms).max()),
            f"{kind}_max_estimate": float(est[-1].max()),
            f"{kind}_effectivity_min": float(eff.min()), f"{kind}_effectivity_max": float(eff.max()),
            f"{kind}_effectivity_min_all_N": float(np.min(est / err)),
            f"{kind}_violations": int(np.sum(est < err)),
            f"{kind}_textbook_effectivity_min": float(np.nanmin(eff_tb)) if np.isfinite(eff_tb).any() else float("nan"),
            f"{kind}_textbook_nan": int(np.isnan(est_tb).sum()),
            f"{kind}_seconds_per_query": single, f"{kind}_seconds_per_solve": single_solve,
            f"{kind}_seconds_per_query_batched": batched,
            f"{kind}_speedup": fom_seconds / single, f"{kind}_speedup_batched": fom_seconds / batched,
        })
        if kind in labels:
            attrs[f"{kind}_eim_bound"] = labels[kind]
    ds = xr.Dataset(data, coords={"basis_size": sizes, "test_sample": sample}, attrs=attrs)
    ds["norm"] = ("test_sample", norms)
    return ds

