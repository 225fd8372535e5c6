"""Report figures and sections of the certified reduced basis (stationary, with SCM and output
bounds, or parabolic) and of the EIM. Each function draws its figures and returns the section
(title, order, text, metrics, figures, tables) for rom.report.write_section."""
from __future__ import annotations

import numpy as np

from rom import plots
from rom.models.factory import LABELS

EIM_TEXT = {
    "rigorous": "the EIM part of the bound is rigorous over the parameter box (sup of the interpolation error bounded "
                "by a Taylor grid bound with the analytic derivative bound of g and the Lebesgue constant, carried "
                "through ||A - A_M||_{X->X'} <= max_e |kappa_e - kappa_M,e|)",
    "training_sup": "the EIM part of the bound is the largest operator norm ||A(mu_i) - A_M(mu_i)||_{X->X'} computed "
                    "over the EIM's training and test matrices (and, for a black box's load, the largest "
                    "||f(mu_i) - f_M(mu_i)||_{X'}): an estimate of its sup over the box, not a bound (a black-box "
                    "operator states no derivative in mu); the coercivity bound is SCM's of the EIM-affine operator "
                    "(an eigen-solve where SCM's is not positive) minus it",
    "indicator": "the EIM part of the bound is an indicator (the interpolation error at the next magic point), "
                 "not a bound",
}
COERCIVITY_TEXT = {
    "min_theta": "min-theta (X = sum_q A_q with positive semidefinite terms)",
    "problem": "the problem's own coercivity lower bound",
    "scm": "SCM (successive constraint method)",
}


def _coercivity_text(label: str) -> str:
    if label.startswith("max(scm, "):
        return f"the larger of SCM and {COERCIVITY_TEXT[label[9:-1]]}"
    return COERCIVITY_TEXT.get(label, label)


def eim_section(ds, figure) -> dict:
    """Figure of the EIM error vs number of terms and the report section."""
    if ds.attrs.get("kind") == "entries":
        return _entries_eim_section(ds, figure)
    curves = {"function EIM, train": (np.arange(len(ds["train_max_error"])), ds["train_max_error"].values),
              "function EIM, test": (np.arange(len(ds["test_max_error"])), ds["test_max_error"].values)}
    metrics = {"function EIM terms": int(ds.attrs["M"]),
               "function EIM max test error (max norm)": float(ds["test_max_error"].values[-1]),
               "EIM offline seconds": float(ds.attrs["seconds"])}
    if "bound_max_error" in ds:
        curves["function EIM, rigorous bound over the box"] = (np.arange(len(ds["bound_max_error"])),
                                                               ds["bound_max_error"].values)
        metrics["function EIM rigorous error bound (max norm)"] = float(ds["bound_max_error"].values[-1])
    if "matrix_basis" in ds:
        curves["matrix EIM, test (relative)"], m = _matrix_curve(ds)
        metrics.update(m)
    plots.semilogy(figure, curves, "number of EIM terms M", "max interpolation error", "EIM error vs number of terms",
                   integer_x=True)
    text = ("Function EIM of g(x; mu) at element centroids, and the nonintrusive matrix EIM of A(mu) from matrices "
            "delivered by the FOM and a few of its entries online.")
    if "bound_max_error" in ds:
        text += (f" The rigorous bound holds for every parameter of the box: Taylor order {ds.attrs['bound_order']} "
                 f"around a {ds.attrs['bound_grid']}-point grid per axis, with the Lebesgue constant.")
    return {"title": "Empirical interpolation", "order": 31, "text": text, "metrics": metrics, "tables": {},
            "figures": [(figure, "Max interpolation error over training and test parameters (and its rigorous bound) "
                                 "vs number of terms")]}


def _matrix_curve(ds):
    scale = ds["matrix_test_max_error"].values[0]
    curve = (np.arange(len(ds["matrix_test_max_error"])), ds["matrix_test_max_error"].values / scale)
    metrics = {"matrix EIM terms": int(ds.attrs["matrix_M"]),
               "matrix EIM max test error (relative to max entry)": float(ds["matrix_test_max_error"].values[-1] / scale)}
    if "matrix_operator_error" in ds.attrs:
        metrics["matrix EIM max training operator error ||A - A_M||_{X->X'}"] = float(ds.attrs["matrix_operator_error"])
    return curve, metrics


def _entries_eim_section(ds, figure) -> dict:
    """A black box's EIM: the matrix EIM of A(mu) and the EIM of f(mu) from the entries it delivered."""
    curves = {"matrix EIM of A, test (relative)": _matrix_curve(ds)[0]}
    metrics = _matrix_curve(ds)[1]
    scale = ds["rhs_test_max_error"].values[0]
    if scale > 0:
        curves["EIM of f, test (relative)"] = (np.arange(len(ds["rhs_test_max_error"])),
                                               ds["rhs_test_max_error"].values / scale)
    metrics.update({"EIM of f terms": int(ds.attrs["rhs_M"]),
                    "EIM of f max training error ||f - f_M||_{X'}": float(ds.attrs["rhs_error"]),
                    "EIM offline seconds": float(ds.attrs["seconds"]),
                    "seconds in the black box's entries_command": float(ds.attrs["entries_seconds"])})
    plots.semilogy(figure, curves, "number of EIM terms M", "max interpolation error (relative)",
                   "EIM error vs number of terms", integer_x=True)
    text = (f"Nonintrusive EIM of a black box: the entries of A(mu) and f(mu) its entries_command delivered at "
            f"{ds.sizes['train_sample']} training parameters, interpolated as A(mu) ~ sum_m beta_m(mu) A(mu_m) "
            "(Casenave, Ern, Lelievre). The operator and load errors are computed exactly at the training "
            "parameters (a generalized eigenvalue problem and a dual norm with X) and enter the RB bound as "
            "maxima over the training and test parameters: measured there, not bounded over the box.")
    return {"title": "Empirical interpolation", "order": 31, "text": text, "metrics": metrics, "tables": {},
            "figures": [(figure, "Max interpolation error of A and f over the test parameters vs number of terms")]}


def rb_section(rb, m, convergence, effectivity) -> dict:
    """Convergence and effectivity figures and the report section of the rb artefact `rb` and its
    metrics `m` (stationary or parabolic)."""
    if rb.attrs.get("formulation") == "parabolic":
        return _parabolic_section(rb, m, convergence, effectivity)
    return _stationary_section(rb, m, convergence, effectivity)


def _scm_metrics(rb) -> dict:
    if "scm_box" not in rb:
        return {}
    a = rb.attrs
    return {"SCM constraint points": int(a["scm_K"]), "SCM max training gap 1 - LB/UB": float(a["scm_max_gap"]),
            "SCM eigen-solves": int(a["scm_eigen_solves"]), "SCM factorizations": int(a["scm_factorizations"]),
            "SCM LPs": int(a["scm_lps"]), "SCM offline seconds": float(a["scm_seconds"]),
            "SCM seconds in eigen-solves": float(a["scm_seconds_eigen"]), "SCM seconds in LPs": float(a["scm_seconds_lp"])}


def _scm_text(rb) -> str:
    if "scm_box" not in rb:
        return ""
    a = rb.attrs
    return (f" SCM: {int(a['scm_K'])} constraint points chosen on {int(a['scm_train_size'])} training parameters "
            f"(max gap 1 - LB/UB {float(a['scm_max_gap']):.3f}), {int(a['scm_eigen_solves'])} eigen-solves, "
            f"{int(a['scm_lps'])} LPs, {float(a['scm_seconds']):.1f} s offline. Its lower bound is certified at every "
            "parameter of the box (eigenvalue bounds checked by Sylvester inertia, LP values read as dual bounds); "
            "its tightness (the gap) is measured on the training set only.")


def _deviation(stable, textbook):
    """Max over the test set of |textbook - stable| / stable per basis size (NaN: a negative square)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        dev = np.abs(textbook - stable) / stable
    return np.where(np.isnan(textbook).any(axis=1), np.inf, np.nanmax(dev, axis=1))


def _stationary_section(rb, m, convergence, effectivity) -> dict:
    kinds = m.attrs["kinds"].split(",")
    N = m["basis_size"].values
    k0 = kinds[0]
    tb = m[f"{k0}_estimate_textbook"].values
    # Left: true errors and bounds. The stable and textbook evaluations agree to many digits until
    # round-off dominates the textbook one, so their curves coincide there: distinct line styles
    # and open markers keep both visible, and the right panel shows their relative deviation.
    fig, (ax, ax_dev) = plots.figure(2, 1, size=(5.2, 3.9))
    i = 0
    for kind in kinds:
        for label, y in ((f"{LABELS[kind]}: max true error", m[f"{kind}_error"].values.max(axis=1)),
                         (f"{LABELS[kind]}: max bound (certified)", m[f"{kind}_estimate"].values.max(axis=1))):
            ax.semilogy(N, plots.positive(y), plots.STYLES[i % len(plots.STYLES)], ms=5, lw=1.6, label=label)
            i += 1
    with np.errstate(invalid="ignore"):
        tb_max = np.where(np.isnan(tb).any(axis=1), np.nan, np.nanmax(np.where(np.isnan(tb), 0.0, tb), axis=1))
    ax.semilogy(N, plots.positive(tb_max), "x:", ms=7, mew=1.4, lw=1.2, color="black", zorder=3,
                label=f"{LABELS[k0]}: max bound (textbook; gaps: negative square)")
    plots.basis_axes(ax, "X-norm error / bound (max over test set)", "True error and error bounds")
    # Textbook against the same evaluation without the rounding allowance (older artefacts: the bound).
    stable_name = f"{k0}_estimate_stable" if f"{k0}_estimate_stable" in m else f"{k0}_estimate"
    dev = _deviation(m[stable_name].values, tb)
    finite = np.isfinite(dev)
    ax_dev.semilogy(N[finite], plots.positive(dev[finite]), "o-", ms=4, label="max |textbook - stable| / stable")
    if (~finite).any():
        ax_dev.semilogy(N[~finite], np.full((~finite).sum(), 1.0), "v", ms=6, color="red", ls="",
                        label="textbook NaN (negative square)")
    ax_dev.axhline(np.finfo(float).eps, color="gray", lw=0.8, ls="--", label="machine epsilon")
    plots.basis_axes(ax_dev, "relative deviation", "Textbook vs stable evaluation")
    plots.save(fig, convergence)

    fig, (ax,) = plots.figure(size=(6.0, 4.2))
    err = m[f"{k0}_error"].values.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        eff_stable, eff_tb = m[f"{k0}_estimate"].values.ravel() / err, tb.ravel() / err
    ax.loglog(err, eff_stable, "o", ms=5, mfc="none", ls="", label="certified bound (stable + rounding allowance)")
    ax.loglog(err, np.where(np.isfinite(eff_tb), eff_tb, np.nan), "x", ms=4, ls="", label="textbook evaluation")
    bad = ~np.isfinite(eff_tb)
    if bad.any():
        ax.loglog(err[bad], np.full(bad.sum(), 0.1), "v", ms=4, ls="", color="red",
                  label=f"textbook: negative square (NaN), {bad.sum()} cases")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("true error ||u - u_rb||_X")
    ax.set_ylabel("effectivity Delta / true error")
    ax.set_title("Effectivity: 1 is the rigorous limit", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    plots.save(fig, effectivity)

    a = m.attrs
    metrics = {"basis size N": int(rb.attrs["N"]), "method": rb.attrs["method"], "stop reason": rb.attrs["stop_reason"],
               "offline seconds": float(rb.attrs["offline_seconds"]), "FOM seconds per solve": a["fom_seconds_per_solve"],
               "coercivity lower bound": rb.attrs.get("coercivity", "min_theta"), **_scm_metrics(rb)}
    if rb.attrs.get("warning"):
        metrics["warning"] = rb.attrs["warning"]
    rows = [[LABELS[kind], a.get(f"{kind}_eim_bound", "none"), a[f"{kind}_max_error"], a[f"{kind}_mean_error"],
             a[f"{kind}_max_relative_error"], a[f"{kind}_max_estimate"], a[f"{kind}_effectivity_min"],
             a[f"{kind}_effectivity_max"], a.get(f"{kind}_violations", -1), a[f"{kind}_seconds_per_solve"] * 1e6,
             a[f"{kind}_seconds_per_query"] * 1e6, 1.0 / a[f"{kind}_seconds_per_query_batched"], a[f"{kind}_speedup"]]
            for kind in kinds]
    tables = {"Online evaluation": {
        "columns": ["model", "EIM share of the bound", "max error", "mean error", "max rel. error", "max estimate",
                    "effectivity min", "effectivity max", "bound violations (all N)", "us per solve",
                    "us per solve + estimate", "queries/s batched", "speed-up"], "rows": rows}}
    outputs = [o for o in a.get("outputs", "").split(",") if o]
    if outputs:
        tables["Output bounds (corrected output s_N = l^T u_N - z_N^T r(u_N))"] = {
            "columns": ["output", "N primal", "M dual", "max |s - s_N|", "max |s - l^T u_N|", "max bound",
                        "of which rounding of s_N (max)", "effectivity min", "effectivity median", "effectivity max",
                        "bound violations"],
            "rows": [[o, a[f"output_{o}_N"], a[f"output_{o}_M"], a[f"output_{o}_max_error"],
                      a[f"output_{o}_max_error_plain"], a[f"output_{o}_max_bound"], a[f"output_{o}_max_rounding"],
                      a[f"output_{o}_effectivity_min"], a[f"output_{o}_effectivity_median"],
                      a[f"output_{o}_effectivity_max"], a[f"output_{o}_violations"]] for o in outputs]}
        for o in outputs:
            metrics[f"output {o}: effectivity min"] = a[f"output_{o}_effectivity_min"]
    coercivity = rb.attrs.get("coercivity", "min_theta")
    text = (f"Certified reduced basis ({rb.attrs['method']}, estimator {rb.attrs['estimator']}) evaluated on "
            f"{a['n_test']} test snapshots. Errors in the H1-seminorm X; bounds Delta = ||r||_X' / alpha_LB with "
            f"alpha_LB from {_coercivity_text(coercivity)}; the stable evaluation uses Riesz representers "
            "orthonormalized in extended precision, the textbook one the quadratic form (negative squares at N = "
            f"{int(rb.attrs['N'])}: {a[f'{k0}_textbook_nan']}).") + _scm_text(rb)
    labels = {a[f"{k}_eim_bound"] for k in kinds if f"{k}_eim_bound" in a}
    if labels:
        text += " True errors include the EIM interpolation error; " + "; ".join(
            f"{LABELS[k]}: {EIM_TEXT[a[f'{k}_eim_bound']]}" for k in kinds if f"{k}_eim_bound" in a) + "."
    if outputs:
        text += (" Outputs: the corrected output carries the bound ||r_pr||_X' ||r_du||_X' / alpha_LB (primal and dual "
                 "residual norms, each evaluated stably) plus the worst-case rounding of the evaluation of s_N, "
                 "rigorous where the primal bound is; true outputs from references refined in extended precision.")
    return {"title": "Certified reduced basis", "order": 30, "text": text, "metrics": metrics, "tables": tables,
            "figures": [(convergence, "Max true error and max error bounds over the test set vs basis size; relative "
                                      "deviation of the textbook from the stable evaluation"),
                        (effectivity, "Effectivity vs true error, all basis sizes and test parameters")]}


def _parabolic_section(rb, m, convergence, effectivity) -> dict:
    N = m["basis_size"].values
    err, est = m["parabolic_error"].values, m["parabolic_estimate"].values
    norms = m["norm"].values
    plots.semilogy(convergence, {"max true space-time error (final time)": (N, err.max(axis=1)),
                                 "max bound Delta_K": (N, est.max(axis=1)),
                                 "max relative true error": (N, (err / norms).max(axis=1))},
                   "basis size N", "space-time energy error / bound (test set)", "Parabolic RB: true error and bound",
                   integer_x=True)
    t = m["time"].values[1:]
    eff = m["parabolic_estimate_time"].values[:, 1:] / m["parabolic_error_time"].values[:, 1:]
    fig, (ax,) = plots.figure(size=(6.0, 4.2))
    ax.semilogy(t, eff.min(axis=0), "o-", ms=3, label="min over test trajectories")
    ax.semilogy(t, np.median(eff, axis=0), "s--", ms=3, label="median")
    ax.semilogy(t, eff.max(axis=0), "^:", ms=3, label="max")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("time t_k")
    ax.set_ylabel("effectivity Delta_k / true error")
    ax.set_title(f"Effectivity of the space-time bound at every step (N = {int(m.attrs['N'])})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    plots.save(fig, effectivity)
    a = m.attrs
    metrics = {"basis size N": int(rb.attrs["N"]), "method": "POD-greedy", "stop reason": rb.attrs["stop_reason"],
               "offline seconds": float(rb.attrs["offline_seconds"]), "time steps": int(rb.attrs["parabolic_steps"]),
               "coercivity lower bound": rb.attrs["coercivity"], **_scm_metrics(rb),
               "max relative space-time error": a["parabolic_max_relative_error"],
               "effectivity min": a["parabolic_effectivity_min"], "effectivity max": a["parabolic_effectivity_max"],
               "bound violations (all N, all steps)": a["parabolic_violations"],
               "RB seconds per trajectory with bound": a["parabolic_seconds_per_trajectory"],
               "FOM seconds per trajectory": a["fom_seconds_per_solve"], "speed-up": a["parabolic_speedup"]}
    if rb.attrs.get("warning"):
        metrics["warning"] = rb.attrs["warning"]
    text = (f"Parabolic reduced basis by POD-greedy over FOM trajectories (implicit Euler, {int(rb.attrs['parabolic_steps'])} "
            f"steps), evaluated on {a['n_test']} test trajectories. Error norm: the space-time energy norm "
            "sqrt(||e^k||_M^2 + alpha_LB dt sum_j<=k ||e^j||_X^2); its bound Delta_k^2 = ||e^0||_M^2 + (dt / alpha_LB) "
            f"sum_j<=k ||R^j||_X'^2 holds at every step k (alpha_LB from {_coercivity_text(rb.attrs['coercivity'])}), "
            "with the time-step residual norms evaluated stably.") + _scm_text(rb)
    return {"title": "Certified reduced basis (parabolic)", "order": 30, "text": text, "metrics": metrics, "tables": {},
            "figures": [(convergence, "Max space-time error and bound at the final time over the test trajectories vs "
                                      "basis size"),
                        (effectivity, "Effectivity of the bound at every time step (full basis)")]}
