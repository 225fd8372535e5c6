"""Report figures and sections of the certified reduced basis and of the EIM."""
from __future__ import annotations

import numpy as np

from rom import plots
from rom.report import write_section

from .factory import LABELS

EIM_TEXT = {
    "rigorous": "the EIM part of the bound is rigorous over the parameter box (sup of the interpolation error bounded "
                "by a Taylor grid bound with the analytic derivative bound of g and the Lebesgue constant, carried "
                "through ||A - A_M||_{X->X'} <= max_e |kappa_e - kappa_M,e|)",
    "training_sup": "the EIM part of the bound is the largest operator norm ||A(mu_i) - A_M(mu_i)||_{X->X'} over the "
                    "training matrices: certified at the training parameters, an estimate elsewhere (black-box operator)",
    "indicator": "the EIM part of the bound is an indicator (the interpolation error at the next magic point), "
                 "not a bound",
}


def eim_figures(ds, figure: str, section: str):
    """Figure of the EIM error vs number of terms and the report section."""
    curves = {"function EIM, train": (np.arange(len(ds["train_max_error"])), ds["train_max_error"].values),
              "function EIM, test": (np.arange(len(ds["test_max_error"])), ds["test_max_error"].values)}
    metrics = {"function EIM terms": int(ds.attrs["M"]),
               "function EIM max test error (max norm)": float(ds["test_max_error"].values[-1])}
    if "bound_max_error" in ds:
        curves["function EIM, rigorous bound over the box"] = (np.arange(len(ds["bound_max_error"])),
                                                               ds["bound_max_error"].values)
        metrics["function EIM rigorous error bound (max norm)"] = float(ds["bound_max_error"].values[-1])
    if "matrix_basis" in ds:
        scale = ds["matrix_test_max_error"].values[0]
        curves["matrix EIM, test (relative)"] = (np.arange(len(ds["matrix_test_max_error"])),
                                                 ds["matrix_test_max_error"].values / scale)
        metrics.update({"matrix EIM terms": int(ds.attrs["matrix_M"]),
                        "matrix EIM max test error (relative to max entry)": float(ds["matrix_test_max_error"].values[-1] / scale)})
        if "matrix_operator_error" in ds.attrs:
            metrics["matrix EIM max training operator error ||A - A_M||_{X->X'}"] = float(ds.attrs["matrix_operator_error"])
    plots.semilogy(figure, curves, "number of EIM terms M", "max interpolation error", "EIM error vs number of terms")
    text = ("Function EIM of g(x; mu) at element centroids, and the nonintrusive matrix EIM of A(mu) from matrices "
            "delivered by the FOM and a few of its entries online.")
    if "bound_max_error" in ds:
        text += (f" The rigorous bound holds for every parameter of the box: Taylor order {ds.attrs['bound_order']} "
                 f"around a {ds.attrs['bound_grid']}-point grid per axis, with the Lebesgue constant.")
    write_section(section, "Empirical interpolation", 31, text, metrics,
                  [(figure, "Max interpolation error over training and test parameters (and its rigorous bound) vs number of terms")])


def rb_figures(rb, m, convergence: str, effectivity: str, section: str):
    """Convergence and effectivity figures and the report section of the rb artefact `rb` and its
    metrics `m`."""
    import matplotlib.pyplot as plt

    kinds = m.attrs["kinds"].split(",")
    N = m["basis_size"].values
    curves = {}
    for kind in kinds:
        curves[f"{LABELS[kind]}: max true error"] = (N, m[f"{kind}_error"].values.max(axis=1))
        curves[f"{LABELS[kind]}: max estimate (stable)"] = (N, m[f"{kind}_estimate"].values.max(axis=1))
    k0 = kinds[0]
    tb = m[f"{k0}_estimate_textbook"].values
    curves[f"{LABELS[k0]}: max estimate (textbook)"] = (N, np.nanmax(np.where(np.isnan(tb), np.inf, tb), axis=1))
    plots.semilogy(convergence, curves, "basis size N", "X-norm error / bound (test set)",
                   "Reduced basis: true error and error bounds")
    fig, (ax,) = plots.figure(size=(6.0, 4.2))
    err = m[f"{k0}_error"].values.ravel()
    for name, est, marker in (("stable", m[f"{k0}_estimate"].values.ravel(), "o"), ("textbook", tb.ravel(), "x")):
        eff = est / err
        ax.loglog(err, np.where(np.isfinite(eff), eff, np.nan), marker, ms=3, ls="", label=f"{name} evaluation")
        bad = ~np.isfinite(eff)
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
    plt.close("all")
    a = m.attrs
    metrics = {"basis size N": int(rb.attrs["N"]), "method": rb.attrs["method"], "stop reason": rb.attrs["stop_reason"],
               "offline seconds": float(rb.attrs["offline_seconds"]), "FOM seconds per solve": a["fom_seconds_per_solve"]}
    if rb.attrs.get("warning"):
        metrics["warning"] = rb.attrs["warning"]
    rows = []
    for kind in kinds:
        rows.append([LABELS[kind], a.get(f"{kind}_eim_bound", "none"), a[f"{kind}_max_error"], a[f"{kind}_mean_error"],
                     a[f"{kind}_max_relative_error"], a[f"{kind}_max_estimate"], a[f"{kind}_effectivity_min"],
                     a[f"{kind}_effectivity_max"], a.get(f"{kind}_violations", -1), a[f"{kind}_seconds_per_solve"] * 1e6,
                     a[f"{kind}_seconds_per_query"] * 1e6, 1.0 / a[f"{kind}_seconds_per_query_batched"], a[f"{kind}_speedup"]])
    table = {"columns": ["model", "EIM share of the bound", "max error", "mean error", "max rel. error", "max estimate",
                         "effectivity min", "effectivity max", "bound violations (all N)", "us per solve",
                         "us per solve + estimate", "queries/s batched", "speed-up"], "rows": rows}
    text = (f"Certified reduced basis ({rb.attrs['method']}, estimator {rb.attrs['estimator']}) evaluated on "
            f"{a['n_test']} test snapshots. Errors in the H1-seminorm X; estimates Delta = ||r||_X' / alpha_LB "
            "(min-theta or the problem's bound); the stable evaluation uses Riesz representers orthonormalized in "
            "extended precision, the textbook one the quadratic form (negative squares at N = "
            f"{int(rb.attrs['N'])}: {a[f'{k0}_textbook_nan']}).")
    labels = {a[f"{k}_eim_bound"] for k in kinds if f"{k}_eim_bound" in a}
    if labels:
        text += " True errors include the EIM interpolation error; " + "; ".join(
            f"{LABELS[k]}: {EIM_TEXT[a[f'{k}_eim_bound']]}" for k in kinds if f"{k}_eim_bound" in a) + "."
    write_section(section, "Certified reduced basis", 30, text, metrics,
                  [(convergence, "Max true error and max error bounds over the test set vs basis size"),
                   (effectivity, "Effectivity vs true error, all basis sizes and test parameters")],
                  {"Online evaluation": table})
