"""cluster, local-bases, adaptive-rom and figures-local (METHODS.md sections 3 and 4).

cluster      dissimilarity matrices of the train trajectories, k-medoids (+ k-means), local POD
             bases on the train set and the a priori efficiency criterion (written before any
             local ROM is built)
local-bases  the dictionary of the chosen clustering, the parameter -> cluster selectors and their
             test accuracy and cost, test projection errors global vs local
adaptive-rom hyper-reduced nonlinear ROM with and without the indicator-driven adaptive loop
"""
from __future__ import annotations

import time

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg


def _single_thread():
    """Small dense algebra: one BLAS thread is much faster than several fighting over two cores."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def register(sub):
    p = sub.add_parser("cluster", help="cluster the train trajectories; a priori gain of local over global bases")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cluster)

    p = sub.add_parser("local-bases", help="local POD dictionary, online selector, test errors global vs local")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--clusters", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=local_bases)

    p = sub.add_parser("adaptive-rom", help="hyper-reduced nonlinear ROM, error indicator, adaptive enrichment")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=adaptive_rom)

    p = sub.add_parser("figures-local", help="figures and report section of the local bases and adaptive ROM")
    add_study_arg(p)
    p.add_argument("--clusters")
    p.add_argument("--local")
    p.add_argument("--adaptive")
    p.add_argument("--figdir", required=True)
    p.add_argument("--section", required=True)
    p.set_defaults(func=figures_local)


def _operators(path):
    from rom.hifi.operators import Operators

    return Operators.from_dataset(artefacts.read(path))


def trajectories(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Converged trajectories without the initial state (n, n_times, n_dofs) and their parameters."""
    ds = artefacts.converged(ds)
    U = ds["u"].values
    if U.ndim == 2:
        U = U[:, None, :]
    elif np.allclose(U[:, 0], 0.0):
        U = U[:, 1:]  # a zero initial state is the same for every sample: it carries no information
    return U, ds["mu"].values


def _flat(U):
    return U.reshape(-1, U.shape[-1])


def _nonzero(err, U, X):
    """Drop snapshots of zero norm (their relative error is undefined) before taking quantiles."""
    flat = _flat(U)
    keep = np.einsum("ij,ij->i", flat, (X @ flat.T).T) > 0
    return err[..., keep]


def cluster(args):
    from rom.reduction import clustering as cl
    from rom.reduction.pod import pod, projection_errors

    study = config.load(args.study_config)
    s = study["local"]
    ops = _operators(args.operators)
    U, mu = trajectories(artefacts.read(args.train))
    k = s["n_clusters"]
    if k > len(U):
        raise config.ConfigError(f"local.n_clusters = {k}: expected at most the {len(U)} converged train samples")
    sizes = np.arange(1, s["max_size"] + 1)
    if s["basis_size"] > s["max_size"]:
        raise config.ConfigError(f"local.basis_size = {s['basis_size']}: expected <= local.max_size = {s['max_size']}")
    with _single_thread():
        V, _ = pod(_flat(U), ops.X, 1e-14, s["max_size"])
        glob = _nonzero(projection_errors(V, _flat(U), ops.X, np.minimum(sizes, len(V))), U, ops.X)
        methods = list(s["dissimilarities"]) + (["kmeans"] if s["kmeans"] else [])
        D = {}
        labels, medoids, costs, local_err, seconds = [], [], [], [], []
        for name in methods:  # a handful of clusterings
            t0 = time.perf_counter()
            if name == "kmeans":
                c = cl.kmeans(U, k, ops.X, s["restarts"], s["seed"])
            else:
                D[name] = cl.dissimilarity(name, U, ops.X, rank=s["grassmann_rank"])
                c = cl.kmedoids(D[name], k, s["restarts"], s["seed"])
            seconds.append(time.perf_counter() - t0)
            bases = cl.local_bases(U, c.labels, ops.X, s["tol"], s["max_size"])
            local_err.append(_nonzero(cl.local_projection_errors(bases, U, c.labels, ops.X, sizes), U, ops.X))
            labels.append(c.labels)
            medoids.append(c.medoids)
            costs.append(c.cost)
    local_err = np.stack(local_err)
    gain = cl.efficiency(glob[None], local_err, s["quantile"])  # (method, size)
    i_N = s["basis_size"] - 1
    worth = gain[:, i_N] >= s["gain_threshold"]
    ds = xr.Dataset(
        {
            "dissimilarity": (("metric", "sample", "sample_"), np.stack([D[m] for m in s["dissimilarities"]])),
            "labels": (("method", "sample"), np.array(labels)),
            "medoids": (("method", "cluster"), np.array(medoids)),
            "cost": ("method", np.array(costs)),
            "cluster_seconds": ("method", np.array(seconds), {"units": "s"}),
            "mu": (("sample", "parameter"), mu),
            "train_error_global": (("basis_size", "snapshot"), glob,
                                   {"long_name": "relative X projection error of train snapshots, global POD"}),
            "train_error_local": (("method", "basis_size", "snapshot"), local_err),
            "gain": (("method", "basis_size"), gain, {"long_name": "q-quantile(global) / q-quantile(local)"}),
            "worth_it": ("method", worth.astype(np.int8),
                         {"long_name": f"gain at N = {s['basis_size']} >= {s['gain_threshold']}"}),
        },
        coords={"method": artefacts.strings(methods), "metric": artefacts.strings(s["dissimilarities"]),
                "basis_size": sizes, "cluster": np.arange(k)},
        attrs={"basis_size_compared": s["basis_size"], "quantile": s["quantile"], "gain_threshold": s["gain_threshold"],
               "n_global_modes": len(V)},
    )
    artefacts.write(ds, args.out, study, "clusters")
    for m, g, w in zip(methods, gain[:, i_N], worth):
        print(f"cluster: {m}: gain at N = {s['basis_size']}: {g:.3g} -> {'local dictionary' if w else 'global basis'}")


def local_bases(args):
    from rom.models.local import MLPSelector, NearestMedoidSelector
    from rom.reduction import clustering as cl
    from rom.reduction.pod import pod, projection_errors

    study = config.load(args.study_config)
    s = study["local"]
    ops = _operators(args.operators)
    U, mu = trajectories(artefacts.read(args.train))
    T, mu_test = trajectories(artefacts.read(args.test))
    C = artefacts.read(args.clusters)
    methods = [str(m) for m in C["method"].values]
    if s["dictionary"] not in methods:
        raise config.ConfigError(f"local.dictionary = {s['dictionary']}: expected one of the clusterings run: {methods}")
    _, bounds, _ = config.parameter_space(study)
    sizes = C["basis_size"].values
    with _single_thread():
        V, _ = pod(_flat(U), ops.X, 1e-14, int(sizes.max()))
        glob = _nonzero(projection_errors(V, _flat(T), ops.X, np.minimum(sizes, len(V))), T, ops.X)
        out_err, accuracy, bases_of = [], {}, {}
        for i, m in enumerate(methods):  # a handful of clusterings
            labels, med = C["labels"].values[i], C["medoids"].values[i]
            bases = cl.local_bases(U, labels, ops.X, s["tol"], int(sizes.max()))
            bases_of[m] = (bases, labels, med)
            # The test trajectory's true cluster: its nearest train medoid in the clustering's own sense.
            metric = "euclidean" if m == "kmeans" else m
            truth = np.argmin(cl.dissimilarity(metric, T, ops.X, U[med], rank=s["grassmann_rank"]), axis=1)
            out_err.append(_nonzero(cl.local_projection_errors(bases, T, truth, ops.X, sizes), T, ops.X))
            accuracy[m] = truth
        bases, labels, med = bases_of[s["dictionary"]]
        truth = accuracy[s["dictionary"]]
        mlp = MLPSelector.train(mu, labels, bounds, s["classifier_hidden"], s["seed"])
        nearest = NearestMedoidSelector(mu[med], bounds[:, 0], bounds[:, 1])
        timing = {}
        for name, sel in (("mlp", mlp), ("nearest_medoid_mu", nearest)):
            t0 = time.perf_counter()
            for row in mu_test:  # online: one query at a time, as a ROM would select
                sel.predict(row)
            timing[name] = (time.perf_counter() - t0) / max(len(mu_test), 1)
        pred = {"mlp": mlp.predict(mu_test), "nearest_medoid_mu": nearest.predict(mu_test)}
        # Nearest medoid on full states (needs the FOM solution: the reference the selectors replace).
        t0 = time.perf_counter()
        metric = "euclidean" if s["dictionary"] == "kmeans" else s["dictionary"]
        cl.dissimilarity(metric, T, ops.X, U[med], rank=s["grassmann_rank"])
        timing["nearest_medoid_state"] = (time.perf_counter() - t0) / max(len(T), 1)
        sel_err = _nonzero(cl.local_projection_errors(bases, T, pred["mlp"], ops.X, sizes), T, ops.X)
    q = s["quantile"]
    N = int(C.attrs["basis_size_compared"])
    n_max = max(len(b) for b in bases)
    padded = np.zeros((len(bases), n_max, U.shape[-1]))
    for c, b in enumerate(bases):  # k clusters
        padded[c, :len(b)] = b
    test_gain = np.quantile(glob, q, axis=-1) / np.maximum(np.quantile(np.stack(out_err), q, axis=-1), 1e-300)
    ds = xr.Dataset(
        {
            "bases": (("cluster", "mode", "dof"), padded, {"long_name": "X-orthonormal local POD modes (zero padded)"}),
            "n_modes": ("cluster", np.array([len(b) for b in bases])),
            "test_error_global": (("basis_size", "snapshot"), glob),
            "test_error_local": (("method", "basis_size", "snapshot"), np.stack(out_err),
                                 {"long_name": "test projection error, cluster = nearest train medoid"}),
            "test_error_selected": (("basis_size", "snapshot"), sel_err,
                                    {"long_name": "test projection error, cluster chosen by the MLP from mu"}),
            "test_gain": (("method", "basis_size"), test_gain),
            "predicted_gain": (("method", "basis_size"), C["gain"].values),
            "test_cluster": ("test_sample", truth),
            "test_cluster_mlp": ("test_sample", pred["mlp"]),
            "test_cluster_nearest_medoid_mu": ("test_sample", pred["nearest_medoid_mu"]),
            "selection_seconds": ("selector", np.array(list(timing.values())), {"units": "s per query"}),
            "selection_accuracy": ("selector", np.array([np.mean(pred["mlp"] == truth),
                                                         np.mean(pred["nearest_medoid_mu"] == truth), 1.0])),
        },
        coords={"method": artefacts.strings(methods), "basis_size": sizes,
                "selector": artefacts.strings(list(timing))},
        attrs={"dictionary": s["dictionary"], "basis_size_compared": N, "quantile": q},
    )
    artefacts.write(ds, args.out, study, "local_bases")
    i = methods.index(s["dictionary"])
    print(f"local-bases: {s['dictionary']}: test gain at N = {N}: {test_gain[i, N - 1]:.3g} "
          f"(predicted {C['gain'].values[i, N - 1]:.3g}); MLP accuracy {np.mean(pred['mlp'] == truth):.2f}")


def adaptive_rom(args):
    from rom.hifi.nonlinear_heat import NonlinearHeat, fom_step_function
    from rom.hifi.solve import FullOrderModel
    from rom.models.adaptive import HyperReducedROM, relative_errors, run_adaptive

    study = config.load(args.study_config)
    a = study["adaptive_rom"]
    problem = config.make_problem(study)
    if not isinstance(problem, NonlinearHeat):
        raise config.ConfigError(f"adaptive_rom.enabled = true: expected problem.name = nonlinear_heat, "
                                 f"got {problem.name}")
    ops = _operators(args.operators)
    train = artefacts.converged(artefacts.read(args.train))
    S, mu_train = train["u"].values, train["mu"].values
    mus = np.array(a["mu"], dtype=float) if a["mu"] else artefacts.read(args.test)["mu"].values[:1]
    if mus.ndim != 2 or mus.shape[1] != len(problem.parameter_names):
        raise config.ConfigError(f"adaptive_rom.mu = {a['mu']}: expected lists of {len(problem.parameter_names)} "
                                 f"values ({', '.join(problem.parameter_names)})")
    sim = study["simulate"]
    fom = FullOrderModel(problem, sim["backend"], sim["petsc_options"])
    step = fom_step_function(problem, sim["backend"], sim["petsc_options"])
    import copy

    with _single_thread():
        t0 = time.perf_counter()
        rom0 = HyperReducedROM.from_snapshots(problem, ops.M, ops.X, S, mu_train, a["tol_state"], a["tol_nonlinear"],
                                              a["tol_flux"], a["max_modes"], a["hyper_reduction"])
        offline = time.perf_counter() - t0
        rows = {k: [] for k in ("err_static", "err_adaptive", "eta_static", "eta_adaptive", "enriched", "basis_size")}
        fom_seconds, online_static, online_adaptive, fom_step_seconds, fom_steps = [], [], [], [], []
        for m in mus:  # a few parameters
            t1 = time.perf_counter()
            ref = fom.solve_trajectory(m)
            fom_seconds.append(time.perf_counter() - t1)
            if not ref.converged:
                raise UserError(f"adaptive_rom.mu = {list(m)}: the full-order reference failed ({ref.reason})")
            static = run_adaptive(copy.deepcopy(rom0), m)
            step.seconds = 0.0
            adapt = run_adaptive(copy.deepcopy(rom0), m, a["indicator_tol"], step)
            rows["err_static"].append(relative_errors(static.states, ref.u, ops.X))
            rows["err_adaptive"].append(relative_errors(adapt.states, ref.u, ops.X))
            rows["eta_static"].append(static.indicator)
            rows["eta_adaptive"].append(adapt.indicator)
            rows["enriched"].append(adapt.enriched)
            rows["basis_size"].append(adapt.basis_size)
            online_static.append(static.online_seconds)
            online_adaptive.append(adapt.online_seconds)
            fom_step_seconds.append(step.seconds)
            fom_steps.append(adapt.fom_steps)
    from scipy.stats import spearmanr

    rank_corr = [spearmanr(e[1:], h[1:]).correlation for e, h in zip(rows["err_static"], rows["eta_static"])]
    dims = ("case", "time")
    ds = xr.Dataset(
        {
            "mu": (("case", "parameter"), mus),
            "error_static": (dims, np.array(rows["err_static"]), {"long_name": "relative X error, no enrichment"}),
            "error_adaptive": (dims, np.array(rows["err_adaptive"])),
            "indicator_static": (dims, np.array(rows["eta_static"]), {"long_name": "Gappy-POD flux residual"}),
            "indicator_adaptive": (dims, np.array(rows["eta_adaptive"])),
            "enriched": (dims, np.array(rows["enriched"]), {"long_name": "1 where a full-order step was taken"}),
            "basis_size": (dims, np.array(rows["basis_size"])),
            "fom_steps": ("case", np.array(fom_steps)),
            "rank_correlation": ("case", np.array(rank_corr), {"long_name": "Spearman(indicator, error), no enrichment"}),
            "fom_seconds": ("case", np.array(fom_seconds), {"units": "s"}),
            "rom_seconds_static": ("case", np.array(online_static), {"units": "s"}),
            "rom_seconds_adaptive": ("case", np.array(online_adaptive), {"units": "s", "long_name": "ROM + enrichments"}),
            "fom_step_seconds_adaptive": ("case", np.array(fom_step_seconds), {"units": "s"}),
        },
        coords={"time": problem.times, "parameter": artefacts.strings(problem.parameter_names)},
        attrs={"N": rom0.N, "m": rom0.m, "reduced_elements": len(rom0.E), "flux_modes": len(rom0.Wpod.V),
               "n_elements": len(problem.mesh.triangles), "n_dofs": problem.mesh.n_dofs,
               "indicator_operations": rom0.indicator_operation_count, "indicator_tol": a["indicator_tol"],
               "error_tol": a["error_tol"], "offline_seconds": offline, "hyper_reduction": a["hyper_reduction"]},
    )
    artefacts.write(ds, args.out, study, "adaptive_rom")
    for i, m in enumerate(mus):
        print(f"adaptive-rom: mu = {list(m)}: max error {ds['error_static'].values[i].max():.3g} static, "
              f"{ds['error_adaptive'].values[i].max():.3g} adaptive with {fom_steps[i]} FOM steps")


def figures_local(args):
    from rom import plots
    from rom.report import write_section

    study = config.load(args.study_config)
    from pathlib import Path

    figdir = Path(args.figdir)
    figures, metrics, tables, text = [], {}, {}, []
    if args.clusters:
        C = artefacts.read(args.clusters)
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
                       f"{q:.0%} quantile of relative X projection error", "Train: global vs local bases")
        figures += [(figdir / "local_dissimilarity.png", "Dissimilarity matrices of the train trajectories, sorted by cluster"),
                    (figdir / "local_assignments.png", "Cluster of each train sample over the first two parameters (x: medoids)"),
                    (figdir / "local_errors_train.png", "A priori criterion: train projection error quantiles, global vs local")]
        k = int(C.attrs["basis_size_compared"])
        tables["A priori efficiency criterion"] = {
            "columns": ["clustering", f"gain at N = {k}", "decision"],
            "rows": [[m, float(C["gain"].values[i, k - 1]), "local dictionary" if C["worth_it"].values[i] else "global basis"]
                     for i, m in enumerate(methods)]}
    if args.local:
        L = artefacts.read(args.local)
        methods = [str(m) for m in L["method"].values]
        N = L["basis_size"].values
        q = float(L.attrs["quantile"])
        curves = {"global": (N, np.quantile(L["test_error_global"].values, q, axis=-1))}
        for i, m in enumerate(methods):
            curves[f"local ({m})"] = (N, np.quantile(L["test_error_local"].values[i], q, axis=-1))
        curves[f"local ({L.attrs['dictionary']}, MLP-selected)"] = (N, np.quantile(L["test_error_selected"].values, q, axis=-1))
        plots.semilogy(figdir / "local_errors_test.png", curves, "basis size N (per cluster)",
                       f"{q:.0%} quantile of relative X projection error", "Test: global vs local bases")
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
    if args.adaptive:
        A = artefacts.read(args.adaptive)
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
        metrics.update({"ROM size N": int(A.attrs["N"]), "DEIM points m": int(A.attrs["m"]),
                        "reduced elements": f"{int(A.attrs['reduced_elements'])} of {int(A.attrs['n_elements'])}",
                        "indicator operations": int(A.attrs["indicator_operations"]),
                        "indicator tolerance": float(A.attrs["indicator_tol"])})
        text.append("Hyper-reduced (DEIM) POD-Galerkin ROM; indicator = relative residual of the Gappy-POD fit of the "
                    "heat flux on the reduced elements; a FOM step and an incremental-POD enrichment when it exceeds the tolerance.")
    if args.clusters:
        text.insert(0, "Train trajectories clustered with k-medoids on each dissimilarity (k-means as the Euclidean "
                       "baseline); the a priori criterion compares quantiles of train projection errors at equal basis size.")
    write_section(args.section, "Local reduced bases and adaptive nonlinear ROM", 40, " ".join(text), metrics,
                  figures, tables)
