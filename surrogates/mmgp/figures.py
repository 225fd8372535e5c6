"""Figures and report section of MMGP: per field reference / mean / error / std on three test shapes,
parity of the scalars with calibrated intervals, calibration curves of every output."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rom import plots


def mmgp_section(ds, m: dict, fig_dir) -> dict:
    """The report section of the MMGP predictions `ds` with their metrics `m` (predictions.metrics_of)."""
    figs = list(plots_of(ds, m, Path(fig_dir)))
    rows = [[f, v["rrmse"], v["q2"], v["coverage95"], v["calibration_max_deviation"]]
            for f, v in {**m["fields"], **m["scalars"]}.items()]
    metrics = {"test shapes": m["n_test"], "morphing": m["morphing"],
               "test shapes flagged out of the training family": m["n_out_of_range"],
               "GP outputs converged": m["gp_converged"], "fit seconds": m["fit_seconds"],
               "prediction seconds per shape": m["predict_seconds_per_sample"]}
    warnings = [f"{name}: 95% intervals cover {v['coverage95']:.2f} of the test values (expected 0.90-0.99)"
                for name, v in {**m["fields"], **m["scalars"]}.items() if not 0.9 <= v["coverage95"] <= 0.99]
    warnings += [f"{name}: {len(bad)} test shapes left out of its metrics for a non-finite reference (first: {bad[0]})"
                 for name, bad in m["excluded"].items()]
    metrics["test shapes with a mesh size outside the training range"] = m["n_mesh_outside"]
    return {"title": "Mesh-morphing GP (MMGP) on a shape family", "order": 60,
            "text": "Each test shape is morphed onto the unit disk (barycentric weights), transferred to the common "
                    "support, compressed with POD and predicted by independent GPs with exact variance propagation "
                    "(PLAID metrics; calibration: observed coverage of the central intervals at every level).",
            "metrics": metrics, "figures": figs, "warnings": warnings,
            "tables": {"MMGP test metrics": {"columns": ["output", "RRMSE", "Q2", "95% coverage",
                                                         "max calibration deviation"], "rows": rows}}}


def plots_of(ds, m, fig_dir: Path):
    """(path, caption) of the figures: per field reference / mean / error / std on three test
    shapes, parity of the scalars, calibration curves of every output."""
    from surrogates.mmgp.geometry import read_family

    fields = [f for f in str(ds.attrs["fields"]).split(",") if f]
    scalars = [str(s) for s in ds["scalar"].values]
    samples = read_family(ds)[:3]
    for f in fields:
        fig, axes = plots.figure(4, len(samples), size=(2.4, 3.6))
        for r, s in enumerate(samples):
            panels = [(s.fields[f], f"{f} reference"), (s.fields[f"{f}_pred"], "MMGP mean"),
                      (np.abs(s.fields[f] - s.fields[f"{f}_pred"]), "|error|"), (s.fields[f"{f}_std"], "predicted std")]
            vmin, vmax = s.fields[f].min(), s.fields[f].max()
            for c, (v, t) in enumerate(panels):
                ax = axes[r * 4 + c]
                im = ax.tripcolor(s.nodes[:, 0], s.nodes[:, 1], s.triangles, v, shading="gouraud",
                                  **({"vmin": vmin, "vmax": vmax} if c < 2 else {}))
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(t, fontsize=8)
                fig.colorbar(im, ax=ax, shrink=0.7)
        path = fig_dir / f"mmgp_{f}.png"
        plots.save(fig, path)
        unit = ds[f].attrs.get("units", "")
        yield path, f"Test shapes: reference, MMGP mean, error and predicted standard deviation of {f} ({unit})"
    from surrogates.gp import half_width

    fig, axes = plots.figure(max(len(scalars), 1), size=(3.6, 3.4))
    factors = dict(zip([str(o) for o in ds["output"].values], ds["interval_factor"].values))
    for j, (ax, name) in enumerate(zip(axes, scalars)):
        ref, pred, std = (ds[v].values[:, j] for v in ("scalars", "scalars_pred", "scalars_std"))
        ax.errorbar(ref, pred, yerr=half_width(factors[name], 0.95) * std, fmt="o", ms=3, capsize=2)
        lim = [min(ref.min(), pred.min()), max(ref.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"{name} reference")
        ax.set_ylabel("MMGP (95% interval)")
    if not scalars:  # the rule expects the figure: say why it is empty
        axes[0].text(0.5, 0.5, "no output scalars declared (mmgp.scalars)", ha="center", va="center")
    path = fig_dir / "mmgp_parity.png"
    plots.save(fig, path)
    yield path, "Parity of the output scalars on the test shapes, with calibrated 95% intervals"
    fig, (ax,) = plots.figure()
    for name, v in {**m["fields"], **m["scalars"]}.items():
        ax.plot(m["levels"], v["calibration"], "o-", ms=3, label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize=7)
    path = fig_dir / "mmgp_calibration.png"
    plots.save(fig, path)
    yield path, "Calibration: observed coverage of the central intervals versus their nominal level, per output"


