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


def time_single(model, mu: np.ndarray, n: int, estimate: bool = True, method: str = "certified") -> float:
    """Seconds per single query (solve, or solve_and_estimate with the estimator `method`), cycling
    through the parameters one after the other as an online user would."""
    queries = mu[np.arange(n) % len(mu)]
    call = (lambda q: model.solve_and_estimate(q, method)) if estimate else model.solve
    call(queries[0])  # warm up
    t0 = time.perf_counter()
    for q in queries:
        call(q)
    return (time.perf_counter() - t0) / n


def time_batch(model, mu: np.ndarray, estimate: bool = True, repeat: int = 1, method: str = "certified") -> float:
    """Seconds per query of one batched call over mu (best of `repeat`)."""
    call = (lambda m: model.solve_and_estimate_batch(m, method)) if estimate else model.solve_batch
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
        t = error_table(model, V, X, mu, U, sizes, methods=("certified", "stable", "textbook"))
        norms = t["norm"]
        err, est, est_tb = t["error"], t["estimate_certified"], t["estimate_textbook"]
        single = time_single(model, mu, n_timing)
        single_solve = time_single(model, mu, n_timing, estimate=False)
        batched = time_batch(model, mu_batch)
        eff, eff_tb = est[-1] / err[-1], est_tb[-1] / err[-1]
        data.update({
            f"{kind}_error": (("basis_size", "test_sample"), err, {"long_name": "||u - u_rb||_X (true)"}),
            f"{kind}_estimate": (("basis_size", "test_sample"), est,
                                 {"long_name": "Delta(mu), certified: stable residual norm plus its rounding allowance"}),
            f"{kind}_estimate_stable": (("basis_size", "test_sample"), t["estimate_stable"],
                                        {"long_name": "Delta(mu) without the rounding allowance (stable residual norm)"}),
            f"{kind}_estimate_textbook": (("basis_size", "test_sample"), est_tb,
                                          {"long_name": "Delta(mu), textbook quadratic form (NaN: negative square)"}),
            f"{kind}_rounding_bound": (("basis_size", "test_sample"), t["rounding"],
                                       {"long_name": "worst-case online rounding of the stable Delta"}),
            f"{kind}_alpha_lb": ("test_sample", model.coefficients.alpha_lb(np.atleast_2d(mu)),
                                 {"long_name": "coercivity lower bound alpha_LB(mu) of the bound"}),
        })
        attrs.update({
            f"{kind}_max_error": float(err[-1].max()), f"{kind}_mean_error": float(err[-1].mean()),
            f"{kind}_max_relative_error": float((err[-1] / norms).max()),
            f"{kind}_max_estimate": float(est[-1].max()),
            f"{kind}_effectivity_min": float(eff.min()), f"{kind}_effectivity_max": float(eff.max()),
            f"{kind}_effectivity_min_all_N": float(np.min(est / err)),
            f"{kind}_violations": int(np.sum(est < err)),
            f"{kind}_violations_without_rounding": int(np.sum(t["estimate_stable"] < err)),
            f"{kind}_textbook_effectivity_min": float(np.nanmin(eff_tb)) if np.isfinite(eff_tb).any() else float("nan"),
            f"{kind}_textbook_nan": int(np.isnan(est_tb).sum()),
            f"{kind}_seconds_per_query": single, f"{kind}_seconds_per_solve": single_solve,
            f"{kind}_seconds_per_query_batched": batched,
            f"{kind}_speedup": fom_seconds / single, f"{kind}_speedup_batched": fom_seconds / batched,
        })
        if kind in labels:
            attrs[f"{kind}_eim_bound"] = labels[kind]
        fallback = getattr(model.coefficients, "fallback", None)
        if fallback is not None:  # parameters where SCM gave no positive bound and an eigen-solve did
            attrs[f"{kind}_eigen_fallbacks"] = fallback.solves
    ds = xr.Dataset(data, coords={"basis_size": sizes, "test_sample": sample}, attrs=attrs)
    ds["norm"] = ("test_sample", norms)
    return ds



def output_evaluation(output_models: dict, mu: np.ndarray, U: np.ndarray, U_fom: np.ndarray | None = None) -> xr.Dataset:
    """Per output (name -> rom.models.output.OutputModel): the true output of the reference
    solutions U, the plain l^T u_N and corrected outputs, the bound and its effectivity
    bound / |s - s_N| at every test parameter (variables output_<name>_*), and their ranges
    (attributes). The corrected output's error is the product of the primal and dual errors and soon
    falls below the accuracy of an iterative FOM solve: U should be refined (refined_solutions); the
    output error of the plain FOM solutions U_fom, if given, is reported beside it."""
    data, attrs = {}, {}
    for name, om in output_models.items():
        r = om.evaluate(mu)
        s_true = om.output.value(mu, U).astype(float)
        err, err_rb = np.abs(s_true - r["s"]), np.abs(s_true - r["s_rb"])
        with np.errstate(divide="ignore", invalid="ignore"):
            eff = r["bound"] / err
        p = f"output_{name}_"
        data.update({
            f"{p}true": ("test_sample", s_true, {"long_name": f"{name} of the FOM solution"}),
            f"{p}plain": ("test_sample", r["s_rb"], {"long_name": "l^T u_N"}),
            f"{p}corrected": ("test_sample", r["s"], {"long_name": "l^T u_N - z_N^T r(u_N)"}),
            f"{p}bound": ("test_sample", r["bound"], {"long_name": "bound of |s - s_N| (corrected output)"}),
            f"{p}rounding": ("test_sample", r["rounding"],
                             {"long_name": "worst-case rounding of the evaluation of s_N (included in the bound)"}),
            f"{p}effectivity": ("test_sample", eff, {"long_name": "bound / |s - s_N| (inf: exact to rounding)"}),
        })
        finite = eff[np.isfinite(eff)]
        attrs.update({f"{p}N": om.N[0], f"{p}M": om.N[1], f"{p}max_error": float(err.max()),
                      f"{p}max_error_plain": float(err_rb.max()), f"{p}max_bound": float(r["bound"].max()),
                      f"{p}max_rounding": float(r["rounding"].max()),
                      f"{p}effectivity_min": float(finite.min()) if finite.size else float("nan"),
                      f"{p}effectivity_median": float(np.median(finite)) if finite.size else float("nan"),
                      f"{p}effectivity_max": float(finite.max()) if finite.size else float("nan"),
                      f"{p}violations": int(np.sum(r["bound"] < err))})
        if U_fom is not None:
            attrs[f"{p}fom_solution_error"] = float(np.abs(om.output.value(mu, U_fom) - om.output.value(mu, U)).max())
    ds = xr.Dataset(data, attrs=attrs)
    ds.attrs["outputs"] = ",".join(output_models)
    return ds


def parabolic_evaluation(model, V: np.ndarray, system, mu: np.ndarray, U: np.ndarray, sample, fom_seconds: float,
                         repeat: int = 3) -> xr.Dataset:
    """The rb_metrics artefact of a parabolic model: the true space-time energy errors of the test
    trajectories U (n, K + 1, n_dofs) (energy_errors, formed from the error trajectories) and the
    bounds, at the final time for every basis size and at every time step for the full basis; the
    effectivities, violations and the online seconds per trajectory (batched, with the bound)."""
    from rom.models.parabolic import energy_errors

    mu = np.atleast_2d(mu)
    alpha = model.coefficients.alpha_lb(mu)
    sizes = np.arange(1, model.N + 1)
    err_N, est_N = np.empty((len(sizes), len(mu))), np.empty((len(sizes), len(mu)))
    violations = 0
    eff_min = np.inf
    for row, N in enumerate(sizes):  # a handful of basis sizes, each vectorized over parameters and steps
        mN = model if N == model.N else model.truncated(int(N), V, system.M, system.u0_terms)
        c = mN.solve_batch(mu)
        err = energy_errors(U - np.einsum("ikn,nd->ikd", c, V[:N]), system, alpha)
        est = mN.estimate_batch(mu, c)
        err_N[row], est_N[row] = err[:, -1], est[:, -1]
        # k = 0: the initial projection (zero to rounding when the initial terms are in the basis).
        violations += int(np.sum(est[:, 1:] < err[:, 1:]))
        eff_min = min(eff_min, float((est[:, 1:] / err[:, 1:]).min()))
    norms = energy_errors(U, system, alpha)[:, -1]
    eff_k = est[:, 1:] / err[:, 1:]
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        model.estimate_batch(mu, model.solve_batch(mu))
        best = min(best, time.perf_counter() - t0)
    per_trajectory = best / len(mu)
    times = system.dt * np.arange(model.steps + 1)
    ds = xr.Dataset({
        "parabolic_error": (("basis_size", "test_sample"), err_N,
                            {"long_name": "space-time energy error at the final time (true)"}),
        "parabolic_estimate": (("basis_size", "test_sample"), est_N, {"long_name": "its bound Delta_K"}),
        "parabolic_error_time": (("test_sample", "time"), err, {"long_name": "space-time energy error up to t_k"}),
        "parabolic_estimate_time": (("test_sample", "time"), est, {"long_name": "its bound Delta_k"}),
        "norm": ("test_sample", norms, {"long_name": "space-time energy norm of the FOM trajectory"}),
        "parabolic_alpha_lb": ("test_sample", alpha),
    }, coords={"basis_size": sizes, "test_sample": sample, "time": times})
    ds.attrs.update({
        "kinds": "parabolic", "formulation": "parabolic", "N": int(model.N), "n_test": len(mu),
        "fom_seconds_per_solve": fom_seconds,
        "parabolic_max_error": float(err[:, -1].max()), "parabolic_max_relative_error": float((err[:, -1] / norms).max()),
        "parabolic_max_estimate": float(est[:, -1].max()),
        "parabolic_effectivity_min": float(eff_k.min()), "parabolic_effectivity_max": float(eff_k.max()),
        "parabolic_effectivity_min_all_N": eff_min, "parabolic_violations": violations,
        "parabolic_initial_error_max": float(err[:, 0].max()), "parabolic_initial_estimate_max": float(est[:, 0].max()),
        "parabolic_seconds_per_trajectory": per_trajectory, "parabolic_speedup": fom_seconds / per_trajectory,
    })
    return ds


# -- the evaluate_rom stage -------------------------------------------------------------------------
def query(problem, ops, rb_ds, mu: np.ndarray, extrapolation: str = "refuse", eim_ds=None) -> list[str]:
    """One certified query of an rb artefact, as lines: per model kind N, ||u_rb||_X and the error
    bound (with the label of its EIM share), per output the corrected value and its bound; for a
    parabolic model the bound at the final time."""
    from rom.models.factory import eim_bound_label, load_models, load_outputs, load_parabolic
    from rom.models.rb import check_parameters

    if rb_ds.attrs.get("formulation") == "parabolic":
        model, _ = load_parabolic(problem, ops, rb_ds)
        extrapolated = bool(check_parameters(mu, rb_ds["bounds"].values, rb_ds["parameter"].values, extrapolation)[0])
        c = model.solve_batch(mu)
        delta, norm = model.estimate_batch(mu, c)[0, -1], model.trajectory_norms(mu, c)[0]
        return [f"parabolic: N = {model.N}, {model.steps} steps, space-time norm of u_N {norm:.6g}, error bound at "
                f"the final time {delta:.3e} (relative {delta / norm:.3e}){'  [extrapolated]' if extrapolated else ''}"]
    models = load_models(problem, ops, rb_ds, eim_ds, extrapolation)
    lines = []
    for kind, m in models.items():
        extrapolated = bool(m.check(mu)[0])
        c, delta = m.solve_and_estimate(mu)
        unorm = float(np.linalg.norm(c))
        label = eim_bound_label(kind, rb_ds.attrs.get("eim_bound", "indicator"))
        lines.append(f"{kind}: N = {m.N}, ||u_rb||_X = {unorm:.6g}, error bound {delta:.3e} (relative "
                     f"{delta / unorm:.3e}){'' if label == 'none' else f', EIM share: {label}'}"
                     f"{'  [extrapolated]' if extrapolated else ''}")
    outputs = load_outputs(problem, rb_ds, models["affine"]) if "affine" in models else {}
    for name, om in outputs.items():
        r = om.evaluate(mu)
        lines.append(f"output {name}: {float(r['s'][0]):.15g} +- {float(r['bound'][0]):.3e} (plain l^T u_N "
                     f"{float(r['s_rb'][0]):.15g}; N = {om.N[0]}, dual M = {om.N[1]})")
    return lines


def rb_metrics(problem, ops, rb_ds, test, settings: dict, eim_ds=None) -> xr.Dataset:
    """The rb_metrics artefact of an rb artefact on converged test snapshots `test` (settings: the
    rb section: extrapolation, train_seed, batch_size, n_timing). Outputs are compared with
    references refined in extended precision (output_evaluation)."""
    from rom.models.factory import eim_bound_label, load_models, load_outputs, load_parabolic

    mu, U = test["mu"].values, test["u"].values
    fom_seconds = float(test["solve_seconds"].values.mean())
    if rb_ds.attrs.get("formulation") == "parabolic":
        model, system = load_parabolic(problem, ops, rb_ds)
        return parabolic_evaluation(model, rb_ds["basis"].values, system, mu, U, test["sample"].values, fom_seconds)
    s = settings
    models = load_models(problem, ops, rb_ds, eim_ds, s["extrapolation"])
    rng = np.random.default_rng(s["train_seed"] + 1)
    lo, hi = rb_ds["bounds"].values.T
    mu_batch = lo + (hi - lo) * rng.random((s["batch_size"], len(lo)))
    labels = {k: eim_bound_label(k, rb_ds.attrs.get("eim_bound", "indicator")) for k in models if k != "affine"}
    ds = evaluation_dataset(models, rb_ds["basis"].values, ops.X, mu, U, test["sample"].values, fom_seconds, mu_batch,
                            s["n_timing"], labels)
    outputs = load_outputs(problem, rb_ds, models["affine"]) if "affine" in models else {}
    if outputs:
        U_ref = refined_solutions(ops.A_terms, ops.f_terms, problem.theta(mu), problem.phi(mu))
        out = output_evaluation(outputs, mu, U_ref, U).assign_coords(test_sample=ds["test_sample"])
        ds = ds.merge(out, combine_attrs="no_conflicts")
    return ds


def summary(ds: xr.Dataset) -> tuple[list[str], list[str]]:
    """(log lines, warnings) of an rb_metrics artefact: per model its errors, effectivities and
    timings, per output its errors and effectivities; a warning for every violated bound."""
    a, lines, warnings = ds.attrs, [], []
    if a.get("formulation") == "parabolic":
        lines.append(f"parabolic: N = {a['N']}, max relative space-time error {a['parabolic_max_relative_error']:.2e}, "
                     f"effectivity [{a['parabolic_effectivity_min']:.2f}, {a['parabolic_effectivity_max']:.2f}], "
                     f"{a['parabolic_violations']} violations, {a['parabolic_seconds_per_trajectory'] * 1e3:.2f} ms per "
                     f"trajectory with bound (FOM {a['fom_seconds_per_solve'] * 1e3:.2f} ms)")
        if a["parabolic_violations"]:
            warnings.append(f"parabolic: the error bound is below the true error in {a['parabolic_violations']} cases")
        return lines, warnings
    for kind in a["kinds"].split(","):
        lines.append(f"{kind}: N = {a['N']}, max rel error {a[f'{kind}_max_relative_error']:.2e}, effectivity "
                     f"[{a[f'{kind}_effectivity_min']:.2f}, {a[f'{kind}_effectivity_max']:.2f}], "
                     f"{a[f'{kind}_violations']} violations, {a[f'{kind}_seconds_per_solve'] * 1e6:.1f} us/solve, "
                     f"{a[f'{kind}_seconds_per_query'] * 1e6:.1f} us/query with bound, "
                     f"{1 / a[f'{kind}_seconds_per_query_batched']:.3g} queries/s batched")
        if a[f"{kind}_violations"]:
            warnings.append(f"{kind}: the error bound is below the true error in {a[f'{kind}_violations']} cases (all N)")
    for name in [o for o in a.get("outputs", "").split(",") if o]:
        p = f"output_{name}_"
        lines.append(f"output {name}: max |s - s_N| {a[f'{p}max_error']:.2e} (plain {a[f'{p}max_error_plain']:.2e}; "
                     f"FOM solutions {a[f'{p}fom_solution_error']:.2e}), effectivity [{a[f'{p}effectivity_min']:.2f}, "
                     f"{a[f'{p}effectivity_max']:.2f}], {a[f'{p}violations']} violations")
        if a[f"{p}violations"]:
            warnings.append(f"output {name}: the bound is below the true output error at {a[f'{p}violations']} "
                            "test parameters")
    return lines, warnings
