"""Report figures and section of the uq stage (rom.commands.uq): histograms of the propagated outputs with
the certified brackets (or the predictive quantiles), Sobol' bar charts with their bootstrap intervals,
the statistics, the FOM check and the extrapolated speed-up, with the error treatment stated."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rom import plots

MAX_PANELS = 12  # outputs drawn (all of them are in the tables)

CERTIFIED_TEXT = (
    "Error treatment: certified. Each sampled output is the RB's corrected output s_N with its rigorous bound "
    "Delta >= |s - s_N| (primal-dual, rounding of its evaluation included). On this sample of parameters the "
    "brackets of the sample mean and of the sample quantiles of the TRUE output s are exact statements (no "
    "probability; the rounding of the mean is included). The Monte Carlo error, how far the statistics of this "
    "sample are from those of the parameters' distribution, is stated apart: the standard error std(s_N) / sqrt(n) "
    "of the mean (normal approximation), and distribution-free order-statistic intervals of the population "
    "quantiles at {level:g} (of s_N, and of s with both errors at once).")
PREDICTIVE_TEXT = (
    "Error treatment: predictive (calibrated, not guaranteed). Each sample point's GP predictive distribution "
    "N(m, sigma^2) of the POD coefficients is sampled ({draws} draws per point, independent across points and "
    "outputs: the marginal distributions, their correlations ignored); mean, std and quantiles are those of the "
    "pooled draws. The law of total variance splits the spread into the variation of the predictive mean over "
    "the parameters and the GP's own variance (its share: 'surrogate fraction'). The Monte Carlo standard "
    "error of the mean is over the parameters (std of the per-point draw means / sqrt(n)); no quantile "
    "interval is given (the draws of one point are not independent).")
DESIGN_TEXT = {
    "mc": "The parameters are i.i.d. draws (design mc): the Monte Carlo errors are exact statements about them.",
    "lhs": "The parameters are a Latin hypercube (design lhs): the i.i.d. standard error of the mean is stated, "
           "at most sqrt(n / (n - 1)) below the true one (Owen 1997); the quantile intervals assume i.i.d. draws.",
    "sobol": "The parameters are scrambled Sobol' points (design sobol, QMC): the i.i.d. standard error and "
             "quantile intervals are stated, usually pessimistic for smooth outputs, not guaranteed.",
}


def _fmt(v) -> str:
    return f"{v:.6g}"


def _panels(n):
    n = min(n, MAX_PANELS)
    cols = min(n, 3)
    return n, cols, -(-n // cols)


def histograms(path, ds) -> str:
    """One histogram per output (density) of the sampled surrogate outputs: certified, the bracket of the
    sample mean and the brackets of the sample quantiles of the true output (shaded); predictive, the
    quantiles of the pooled draws; the FOM check's outputs (outline) and mean where they exist."""
    names = [str(v) for v in ds["output"].values]
    n, cols, rows = _panels(len(names))
    fig, axes = plots.figure(cols, rows, size=(4.0, 3.0))
    certified = ds.attrs["kind"] == "certified"
    levels = ds["quantile"].values
    for j, ax in enumerate(axes[:n]):
        v = ds["value"].values[:, j]
        ax.hist(v, bins=min(60, max(10, int(np.sqrt(len(v))))), density=True, alpha=0.55, color="C0",
                label="surrogate outputs")
        if "validation_value" in ds:
            ax.hist(ds["validation_value"].values[:, j], bins=min(30, max(5, int(np.sqrt(ds.sizes["validation_sample"])))),
                    density=True, histtype="step", color="k", lw=1.2, label="FOM check outputs")
            ax.axvline(float(ds["fom_mean"].values[j]), color="k", ls="-.", lw=1.0, label="FOM mean")
        if certified:
            lo, hi = ds["mean_bounds"].values[j]
            ax.axvspan(lo, hi, color="C3", alpha=0.5, lw=0)
            ax.axvline(float(ds["mean"].values[j]), color="C3", lw=1.2, label="mean; its certified bracket")
            for i in range(len(levels)):
                qlo, qhi = ds["quantile_bounds"].values[i, j]
                ax.axvspan(qlo, qhi, color="C2", alpha=0.35, lw=0, label="certified quantile brackets" if i == 0 else None)
                ax.axvline(float(ds["quantiles"].values[i, j]), color="C2", ls="--", lw=0.9)
        else:
            ax.axvline(float(ds["mean"].values[j]), color="C3", lw=1.2, label="mean (pooled draws)")
            for i in range(len(levels)):
                ax.axvline(float(ds["quantiles"].values[i, j]), color="C2", ls="--", lw=0.9,
                           label="quantiles (pooled draws)" if i == 0 else None)
        ax.set_title(names[j], fontsize=9)
        ax.set_xlabel("value")
        ax.set_ylabel("density")
        ax.grid(True, alpha=0.3)
        if j == 0:
            ax.legend(fontsize=6)
    for ax in axes[n:]:
        ax.set_visible(False)
    plots.save(fig, path)
    if certified:
        return ("Histograms of the sampled corrected RB outputs s_N; red: the mean and the certified bracket of the "
                "true output's sample mean (often narrower than a line), green: the certified brackets of its sample "
                "quantiles " + ", ".join(f"{q:g}" for q in levels) + "; black: the FOM check's outputs and mean.")
    return ("Histograms of the sampled GP predictive means; red: the mean of the pooled predictive draws, green: "
            "their quantiles " + ", ".join(f"{q:g}" for q in levels) + "; black: the FOM check's outputs and mean.")


def sobol_bars(path, ds) -> str:
    """Per output, first-order and total Sobol' indices per parameter with their bootstrap half-widths."""
    names, params = [str(v) for v in ds["output"].values], [str(v) for v in ds["parameter"].values]
    n, cols, rows = _panels(len(names))
    fig, axes = plots.figure(cols, rows, size=(max(3.0, 0.55 * len(params) + 1.5), 3.0))
    x = np.arange(len(params))
    for j, ax in enumerate(axes[:n]):
        ax.bar(x - 0.2, ds["S1"].values[j], 0.4, yerr=ds["S1_conf"].values[j], capsize=2, label="first order S1")
        ax.bar(x + 0.2, ds["ST"].values[j], 0.4, yerr=ds["ST_conf"].values[j], capsize=2, label="total ST")
        ax.set_xticks(x)
        ax.set_xticklabels(params, rotation=45 if len(params) > 4 else 0, fontsize=8)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(names[j], fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        if j == 0:
            ax.legend(fontsize=7)
    for ax in axes[n:]:
        ax.set_visible(False)
    plots.save(fig, path)
    return (f"Sobol' indices of each output (first order and total, Saltelli 2010 / Jansen estimators with SALib) "
            f"from {int(ds.attrs['sobol_evaluations'])} surrogate evaluations (N = {int(ds.attrs['sobol_N'])}); error "
            f"bars: {ds.attrs['sobol_conf_level']:g} bootstrap half-widths.")


def _statistics_tables(ds) -> dict:
    names, levels = [str(v) for v in ds["output"].values], ds["quantile"].values
    certified = ds.attrs["kind"] == "certified"
    if certified:
        cols = ["output", "mean of s_N", "true sample mean >= (certified)", "true sample mean <= (certified)",
                "Monte Carlo std error of the mean", "std of s_N", "|std(s) - std(s_N)| <=", "max Delta"]
        rows = [[n, float(ds["mean"].values[j]), float(ds["mean_bounds"].values[j, 0]),
                 float(ds["mean_bounds"].values[j, 1]), float(ds["mean_se"].values[j]), float(ds["std"].values[j]),
                 float(ds["std_bound"].values[j]), float(ds["error"].values[:, j].max())] for j, n in enumerate(names)]
        qcols = ["output", "level", "sample quantile of s_N", "true sample quantile >= (certified)",
                 "true sample quantile <= (certified)", f"population quantile of s in ({ds.attrs['ci_level']:g}, "
                 "Monte Carlo + certified): lower", "upper"]
        qrows = [[n, float(q), float(ds["quantiles"].values[i, j]), float(ds["quantile_bounds"].values[i, j, 0]),
                  float(ds["quantile_bounds"].values[i, j, 1]), float(ds["quantile_ci_certified"].values[i, j, 0]),
                  float(ds["quantile_ci_certified"].values[i, j, 1])] for j, n in enumerate(names)
                 for i, q in enumerate(levels)]
    else:
        cols = ["output", "mean (pooled draws)", "Monte Carlo std error of the mean", "std (pooled draws)",
                "variance of the means", "mean predictive variance", "surrogate fraction of the variance"]
        rows = [[n, float(ds["mean"].values[j]), float(ds["mean_se"].values[j]), float(ds["std"].values[j]),
                 float(ds["var_of_means"].values[j]), float(ds["mean_of_variances"].values[j]),
                 float(ds["surrogate_fraction"].values[j])] for j, n in enumerate(names)]
        qcols = ["output", "level", "quantile (pooled draws)"]
        qrows = [[n, float(q), float(ds["quantiles"].values[i, j])] for j, n in enumerate(names)
                 for i, q in enumerate(levels)]
    return {"Statistics of the outputs": {"columns": cols, "rows": rows},
            "Quantiles": {"columns": qcols, "rows": qrows}}


def _sobol_table(ds) -> dict:
    names, params = [str(v) for v in ds["output"].values], [str(v) for v in ds["parameter"].values]
    rows = [[n, p, float(ds["S1"].values[j, i]), float(ds["S1_conf"].values[j, i]), float(ds["ST"].values[j, i]),
             float(ds["ST_conf"].values[j, i])] for j, n in enumerate(names) for i, p in enumerate(params)]
    return {"columns": ["output", "parameter", "S1", "S1 +-", "ST", "ST +-"], "rows": rows}


def _check_table(ds) -> dict:
    names, levels = [str(v) for v in ds["output"].values], ds["quantile"].values
    rows = []
    for j, n in enumerate(names):
        lo, hi = ds["check_mean_interval"].values[j]
        rows.append([n, "mean", float(ds["fom_mean"].values[j]), f"+- {_fmt(float(ds['fom_mean_se'].values[j]))} (se)",
                     f"[{_fmt(lo)}, {_fmt(hi)}]", "yes" if ds["check_mean_ok"].values[j] else "NO"])
        for i, q in enumerate(levels):
            flo, fhi = ds["fom_quantile_ci"].values[i, j]
            slo, shi = ds["check_quantile_interval"].values[i, j]
            rows.append([n, f"quantile {q:g}", float(ds["fom_quantiles"].values[i, j]), f"[{_fmt(flo)}, {_fmt(fhi)}]",
                         f"[{_fmt(slo)}, {_fmt(shi)}]", "yes" if ds["check_quantile_ok"].values[i, j] else "NO"])
    return {"columns": ["output", "statistic", "FOM estimate", "FOM Monte Carlo error / interval",
                        "surrogate interval", "contains / meets"], "rows": rows}


def uq_section(ds, fig_dir) -> dict:
    """The figures (in fig_dir) and the report section of a uq artefact."""
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    a, certified = ds.attrs, ds.attrs["kind"] == "certified"
    n = int(a["samples"])
    text = [f"Uncertainty propagation through the {'certified RB outputs' if certified else 'POD + GP'} (model "
            f"{a['model']}): {n} parameters drawn from their distributions (design {a['design']}, seed {a['seed']}).",
            CERTIFIED_TEXT.format(level=float(a["ci_level"])) if certified else PREDICTIVE_TEXT.format(draws=a["draws"]),
            DESIGN_TEXT[str(a["design"])]]
    metrics = {"uq model": str(a["model"]), "uq error treatment": str(a["kind"]), "uq samples": n,
               "uq design": str(a["design"]), "uq outputs": str(a["outputs"]),
               "uq surrogate seconds (whole sample)": float(a["surrogate_seconds"]),
               "uq surrogate seconds per query": float(a["surrogate_seconds_per_query"])}
    if "speedup_extrapolated" in a:
        metrics.update({"uq FOM seconds per solve (measured)": float(a["fom_seconds_per_solve"]),
                        "uq FOM seconds per solve, from": str(a["fom_seconds_source"]),
                        "uq FOM Monte Carlo seconds, same size (extrapolated)":
                            float(a["fom_monte_carlo_seconds_extrapolated"]),
                        "uq speed-up over a FOM Monte Carlo of the same size (extrapolated)":
                            float(a["speedup_extrapolated"])})
        text.append(f"Speed-up (extrapolated, not run): a FOM Monte Carlo of the same {n} samples would take "
                    f"{n} x {float(a['fom_seconds_per_solve']):.3g} s (the mean FOM seconds per solve measured on the "
                    f"{a['fom_seconds_source']}) = {float(a['fom_monte_carlo_seconds_extrapolated']):.3g} s, against "
                    f"{float(a['surrogate_seconds']):.3g} s of surrogate queries: "
                    f"x{float(a['speedup_extrapolated']):.3g} (the offline cost of the surrogate not included).")
    figures = [(fig_dir / "uq_histograms.png", histograms(fig_dir / "uq_histograms.png", ds))]
    tables = _statistics_tables(ds)
    if "S1" in ds:
        figures.append((fig_dir / "uq_sobol.png", sobol_bars(fig_dir / "uq_sobol.png", ds)))
        tables["Sobol' indices"] = _sobol_table(ds)
        metrics.update({"uq Sobol' evaluations": int(a["sobol_evaluations"]),
                        "uq Sobol' max error / std on the design": float(np.max(ds["sobol_error_ratio"].values))})
        text.append(f"Sobol' indices are those of the surrogate's output ({'s_N' if certified else 'the GP mean'}) as a "
                    "function of the parameters, from Saltelli's design on scrambled Sobol' points (the unit cube mapped "
                    "to the parameters' distributions, which leaves the indices unchanged); the largest error measure "
                    "on the design relative to the output's std is given as 'max error / std'.")
    if "validation_solves" in a:
        metrics.update({"uq FOM check solves": int(a["validation_solves"]),
                        "uq FOM check converged": int(a["validation_converged"])})
    if "check_mean_ok" in ds:
        metrics["uq FOM check passed"] = "yes" if int(a["validation_passed"]) else "no"
        tables["Check against FOM solves"] = _check_table(ds)
        what = ("the certified bracket of the mean" if certified
                else f"the mean of the {float(a['n_sigma']):g}-sigma predictive envelope m +- {float(a['n_sigma']):g} sigma")
        text.append(f"Check against {int(a['validation_converged'])} FOM solves of an independent i.i.d. sample from the "
                    f"same distribution: {what}, widened by {float(a['n_sigma']):g} standard errors of both sample means "
                    f"combined (sqrt(se_surrogate^2 + se_FOM^2)), must contain the FOM mean; per quantile, the "
                    f"order-statistic intervals of the population quantile from both samples (each at level "
                    f"{float(a['check_level']):g}) must meet. A failure is a warning at the top of the report.")
    return {"title": "Uncertainty propagation and sensitivity", "order": 55, "text": " ".join(text),
            "metrics": metrics, "figures": [(str(p), c) for p, c in figures], "tables": tables}
