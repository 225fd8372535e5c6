"""Figures and report section of the local bases (clusterings, a priori criterion, dictionary and
selectors) and of the adaptive hyper-reduced ROM."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rom import plots


def local_section(figdir, C=None, L=None, A=None) -> dict:
    """C: clusters artefact, L: local_bases artefact, A: adaptive_rom artefact (each optional)."""
    figdir = Path(figdir)
    figures, metrics, tables, text = [], {}, {}, []
    if C is not None:
        methods = [str(m) for m in C["method"].values]
        metrics_D = [str(m) for m in C["metric"].values]
        fig, axes = plots.figure(len(metrics_D), 1, size=(3.4, 3.2))
        for ax, i in zip(axes, range(len(metrics_D))):
            lab = C["labels"].values[methods.index(metrics_D[i])]
            order = np.argsort(lab, kind="stable")
            im = ax.imshow(C["dissimilarity"].values[i][np.ix_(order, order)], cmap="viridis")
            ax.set_title(f"{metrics_D[i]} (sorted by cluster)", fontsize=8)
            plots.plt.colorbar(im, ax=ax, shrink=0.7)
        plots.save(fig, figdir / "local_dissimilarity.png")
        mu = C["mu"].values
        fig, axes = plots.figure(len(methods), 1, size=(3.0, 2.9))
        for ax, i in zip(axes, range(len(methods))):
            ax.scatter(mu[:, 0], mu[:, 1], c=C["labels"].values[i], cmap="tab10", s=18)
            ax.scatter(mu[C["medoids"].values[i], 0], mu[C["medoids"].values[i], 1], marker="x", c="k", s=40)
            ax.set_title(methods[i], fontsize=8)
            ax.set_xlabel(str(C["parameter"].values[0]) if "parameter" in C else "mu_0", fontsize=7)
        plots.save(fig, figdir / "local_assignments.png")
        N = C["basis_size"].values
        q = float(C.attrs["quantile"])
        curves = {"global": (N, np.quantile(C["train_error_global"].values, q, axis=-1))}
        for i, m in enumerate(methods):
            curves[f"local ({m})"] = (N, np.quantile(C["train_error_local"].values[i], q, axis=-1))
        plots.semilogy(figdir / "local_errors_train.png", curves, "basis size N (per cluster)",
                       f"{q:.0%} quantile of relative X projection error", "Train: global vs local bases",
                       integer_x=True)
        figures += [(figdir / "local_dissimilarity.png", "Dissimilarity matrices of the train trajectories, sorted by cluster"),
                    (figdir / "local_assignments.png", "Cluster of each train sample over the first two parameters (x: medoids)"),
                    (figdir / "local_errors_train.png", "A priori criterion: train projection error quantiles, global vs local")]
        k = int(C.attrs["basis_size_compared"])
        tables["A priori efficiency criterion"] = {
            "columns": ["clustering", f"gain at N = {k}", "decision"],
            "rows": [[m, float(C["gain"].values[i, k - 1]), "local dictionary" if C["worth_it"].values[i] else "global basis"]
                     for i, m in enumerate(methods)]}
    if L is not None:
        methods = [str(m) for m in L["method"].values]
        N = L["basis_size"].values
        q = float(L.attrs["quantile"])
        curves = {"global": (N, np.quantile(L["test_error_global"].values, q, axis=-1))}
        for i, m in enumerate(methods):
            curves[f"local ({m})"] = (N, np.quantile(L["test_error_local"].values[i], q, axis=-1))
        curves[f"local ({L.attrs['dictionary']}, MLP-selected)"] = (N, np.quantile(L["test_error_selected"].values, q, axis=-1))
        plots.semilogy(figdir / "local_errors_test.png", curves, "basis size N (per cluster)",
                       f"{q:.0%} quantile of relative X projection error", "Test: global vs local bases",
                       integer_x=True)
        figures.append((figdir / "local_errors_test.png", "Test projection error quantiles, global vs local (each dissimilarity)"))
        k = int(L.attrs["basis_size_compared"])
        tables["Local vs global at equal size (test set)"] = {
            "columns": ["clustering", "predicted gain (train)", "measured gain (test)"],
            "rows": [[m, float(L["predicted_gain"].values[i, k - 1]), float(L["test_gain"].values[i, k - 1])]
                     for i, m in enumerate(methods)]}
        tables["Online selection"] = {
            "columns": ["selector", "accuracy on test", "seconds per query"],
            "rows": [[str(s), float(a), float(t)] for s, a, t in zip(L["selector"].values, L["selection_accuracy"].values,
                                                                    L["selection_seconds"].values)]}
    if A is not None:
        t = A["time"].values
        fig, axes = plots.figure(A.sizes["case"], 1, size=(4.6, 3.4))
        for i, ax in enumerate(axes):
            ax.semilogy(t[1:], A["error_static"].values[i, 1:], "C0-", label="error, no enrichment")
            ax.semilogy(t[1:], A["indicator_static"].values[i, 1:], "C0--", label="indicator, no enrichment")
            ax.semilogy(t[1:], np.maximum(A["error_adaptive"].values[i, 1:], 1e-16), "C1-", label="error, adaptive")
            ax.semilogy(t[1:], A["indicator_adaptive"].values[i, 1:], "C1--", label="indicator, adaptive")
            ev = t[A["enriched"].values[i] == 1]
            ax.vlines(ev, *ax.get_ylim(), colors="C3", alpha=0.25, label="FOM step + enrichment")
            ax.axhline(A.attrs["indicator_tol"], color="k", lw=0.8, ls=":")
            ax.set_xlabel("t")
            ax.set_title("mu = " + ", ".join(f"{v:.3g}" for v in A["mu"].values[i]), fontsize=8)
            ax.legend(fontsize=6)
        plots.save(fig, figdir / "adaptive_indicator.png")
        cases = [", ".join(f"{v:.3g}" for v in m) for m in A["mu"].values]
        fig, (ax,) = plots.figure()
        x = np.arange(len(cases))
        ax.bar(x - 0.2, A["fom_seconds"].values / A["rom_seconds_static"].values, 0.4, label="ROM, no enrichment")
        ax.bar(x + 0.2, A["fom_seconds"].values / (A["rom_seconds_adaptive"].values + A["fom_step_seconds_adaptive"].values),
               0.4, label="adaptive ROM (incl. FOM steps)")
        ax.set_xticks(x, cases, fontsize=7)
        ax.set_ylabel("speed-up vs FOM")
        ax.legend(fontsize=7)
        plots.save(fig, figdir / "adaptive_speedup.png")
        figures += [(figdir / "adaptive_indicator.png", "Gappy-POD indicator and true error over time; red: FOM steps"),
                    (figdir / "adaptive_speedup.png", "Speed-up of the hyper-reduced ROM vs the full-order model")]
        tables["Adaptive hyper-reduced ROM"] = {
            "columns": ["mu", "max error static", "max error adaptive", "FOM steps", "rank corr.", "FOM s", "ROM s (adaptive)"],
            "rows": [[c, float(A["error_static"].values[i].max()), float(A["error_adaptive"].values[i].max()),
                      int(A["fom_steps"].values[i]), float(A["rank_correlation"].values[i]), float(A["fom_seconds"].values[i]),
                      float(A["rom_seconds_adaptive"].values[i] + A["fom_step_seconds_adaptive"].values[i])]
                     for i, c in enumerate(cases)]}
        ecm = A.attrs.get("hyper_reduction") == "ecm"
        metrics.update({"ROM size N": int(A.attrs["N"]), f"{'cubature' if ecm else 'DEIM'} points m": int(A.attrs["m"]),
                        "reduced elements": f"{int(A.attrs['reduced_elements'])} of {int(A.attrs['n_elements'])}",
                        "indicator operations": int(A.attrs["indicator_operations"]),
                        "indicator tolerance": float(A.attrs["indicator_tol"])})
        text.append(f"Hyper-reduced ({'empirical cubature, internal variables on the reduced cells' if ecm else 'DEIM'}) "
                    "POD-Galerkin ROM; indicator = relative residual of the Gappy-POD fit of the dual quantity (heat flux, "
                    "stress) on the reduced elements, an indicator, not a bound; a FOM step and an incremental-POD "
                    "enrichment when it exceeds the tolerance.")
    if C is not None:
        text.insert(0, "Train trajectories clustered with k-medoids on each dissimilarity (k-means as the Euclidean "
                       "baseline); the a priori criterion compares quantiles of train projection errors at equal basis size.")
    return {"title": "Local reduced bases and adaptive nonlinear ROM", "order": 40, "text": " ".join(text),
            "metrics": metrics, "figures": figures, "tables": tables}
