"""The local-bases study (METHODS: local reduced bases by clustering): cluster the train trajectories under
several dissimilarities, compare local with global POD bases by the a priori efficiency criterion, then
build the dictionary of the chosen clustering, its online selectors, and the test errors. Returns the
`clusters` and `local_bases` artefacts."""
from __future__ import annotations

import time

import numpy as np
import xarray as xr

from rom.artefacts import converged, strings

from . import clustering as cl
from .pod import pod, projection_errors


def trajectories(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Converged trajectories without the initial state (n, n_times, n_dofs) and their parameters."""
    ds = converged(ds)
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


def cluster_study(U: np.ndarray, mu: np.ndarray, X, s: dict, log=None) -> xr.Dataset:
    """Every clustering of the `local` settings s, its local POD errors on the train set and the a
    priori gain over the global basis at equal size."""
    k = s["n_clusters"]
    sizes = np.arange(1, s["max_modes"] + 1)
    V, _ = pod(_flat(U), X, 1e-14, s["max_modes"])
    glob = _nonzero(projection_errors(V, _flat(U), X, np.minimum(sizes, len(V))), U, X)
    methods = list(s["dissimilarities"]) + (["kmeans"] if s["kmeans"] else [])
    D, labels, medoids, costs, local_err, seconds = {}, [], [], [], [], []
    for name in methods:  # a handful of clusterings
        t0 = time.perf_counter()
        if name == "kmeans":
            c = cl.kmeans(U, k, X, s["restarts"], s["seed"])
        else:
            D[name] = cl.dissimilarity(name, U, X, rank=s["grassmann_rank"])
            c = cl.kmedoids(D[name], k, s["restarts"], s["seed"])
        seconds.append(time.perf_counter() - t0)
        bases = cl.local_bases(U, c.labels, X, s["tol"], s["max_modes"])
        local_err.append(_nonzero(cl.local_projection_errors(bases, U, c.labels, X, sizes), U, X))
        labels.append(c.labels)
        medoids.append(c.medoids)
        costs.append(c.cost)
        if log is not None:
            log.info("clustering %s: cost %.4g in %.2f s", name, c.cost, seconds[-1])
    local_err = np.stack(local_err)
    gain = cl.efficiency(glob[None], local_err, s["quantile"])  # (method, size)
    worth = gain[:, s["basis_size"] - 1] >= s["gain_threshold"]
    return xr.Dataset(
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
        coords={"method": strings(methods), "metric": strings(s["dissimilarities"]), "basis_size": sizes,
                "cluster": np.arange(k)},
        attrs={"basis_size_compared": s["basis_size"], "quantile": s["quantile"], "gain_threshold": s["gain_threshold"],
               "n_global_modes": len(V)},
    )


def local_bases_study(U, mu, T, mu_test, X, C: xr.Dataset, bounds: np.ndarray, s: dict) -> xr.Dataset:
    """The dictionary of the chosen clustering (`local.dictionary`), its selectors (MLP from mu, nearest
    medoid in mu) with their accuracy and cost per query, and the test projection errors global vs local.
    The selectors themselves are stored (MLPSelector.to_dataset: `selector_*`, NearestMedoidSelector.to_dataset:
    `medoid_*`) with the test parameters `test_mu`, so that a reader evaluates them without scikit-learn and
    checks them against `test_cluster_mlp` / `test_cluster_nearest_medoid_mu` (romflow.api.LocalBases)."""
    from rom.models.local import MLPSelector, NearestMedoidSelector

    methods = [str(m) for m in C["method"].values]
    sizes = C["basis_size"].values
    V, _ = pod(_flat(U), X, 1e-14, int(sizes.max()))
    glob = _nonzero(projection_errors(V, _flat(T), X, np.minimum(sizes, len(V))), T, X)
    out_err, truth_of, bases_of = [], {}, {}
    for i, m in enumerate(methods):  # a handful of clusterings
        labels, med = C["labels"].values[i], C["medoids"].values[i]
        bases = cl.local_bases(U, labels, X, s["tol"], int(sizes.max()))
        bases_of[m] = (bases, labels, med)
        # The test trajectory's true cluster: its nearest train medoid in the clustering's own sense.
        metric = "euclidean" if m == "kmeans" else m
        truth = np.argmin(cl.dissimilarity(metric, T, X, U[med], rank=s["grassmann_rank"]), axis=1)
        out_err.append(_nonzero(cl.local_projection_errors(bases, T, truth, X, sizes), T, X))
        truth_of[m] = truth
    bases, labels, med = bases_of[s["dictionary"]]
    truth = truth_of[s["dictionary"]]
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
    cl.dissimilarity(metric, T, X, U[med], rank=s["grassmann_rank"])
    timing["nearest_medoid_state"] = (time.perf_counter() - t0) / max(len(T), 1)
    sel_err = _nonzero(cl.local_projection_errors(bases, T, pred["mlp"], X, sizes), T, X)
    q = s["quantile"]
    N = int(C.attrs["basis_size_compared"])
    padded = np.zeros((len(bases), max(len(b) for b in bases), U.shape[-1]))
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
            "test_mu": (("test_sample", "parameter"), np.asarray(mu_test, dtype=float)),
            "test_cluster": ("test_sample", truth),
            "test_cluster_mlp": ("test_sample", pred["mlp"]),
            "test_cluster_nearest_medoid_mu": ("test_sample", pred["nearest_medoid_mu"]),
            "selection_seconds": ("selector", np.array(list(timing.values())), {"units": "s per query"}),
            "selection_accuracy": ("selector", np.array([np.mean(pred["mlp"] == truth),
                                                         np.mean(pred["nearest_medoid_mu"] == truth), 1.0])),
        },
        coords={"method": strings(methods), "basis_size": sizes, "selector": strings(list(timing))},
        attrs={"dictionary": s["dictionary"], "basis_size_compared": N, "quantile": q},
    )
    for sel in (mlp.to_dataset("selector"), nearest.to_dataset("medoid")):
        ds.update(sel)
        ds.attrs.update(sel.attrs)
    return ds
