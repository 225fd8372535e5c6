"""Test-set evaluation of trained surrogates and the report figures and section of the streamed
training, with the comparison the section is about: online against offline at equal training
time, and a warning saying why when online is worse."""
from __future__ import annotations

import numpy as np
import xarray as xr

from rom import artefacts
from rom.hifi import registry


def evaluate(study: dict, test, models: dict[str, str]) -> xr.Dataset:
    """Relative L2 errors per test sample and time step of each model (label -> model file), and
    the final time step of the first test samples for the figure."""
    import torch

    from surrogates.nn import load_model
    from surrogates.offline import snapshot_set

    problem = registry.make_problem(study["problem"])
    errors, preds = [], []
    F = mu = None
    for path in models.values():
        model, scaling, _ = load_model(path)
        X, Y, mu, F = snapshot_set(test, problem, scaling)
        with torch.no_grad():
            P = model(torch.from_numpy(X)).numpy().reshape(F.shape)
        errors.append(np.linalg.norm(P - F, axis=-1) / np.maximum(np.linalg.norm(F, axis=-1), 1e-300))
        preds.append(P[:, -1])
    k = min(study["surrogate"]["evaluate"]["n_fields"], len(mu))
    return xr.Dataset(
        {"relative_l2_error": (("model", "test_sample", "time"), np.stack(errors),
                               {"long_name": "||u_NN - u_FOM|| / ||u_FOM|| over the mesh nodes"}),
         "prediction_final": (("model", "shown", "node"), np.stack(preds)[:, :k]),
         "reference_final": (("shown", "node"), F[:k, -1]),
         "mu": (("test_sample", "parameter"), mu)},
        coords={"model": artefacts.strings(models), "time": problem.times},
        attrs={"mean_error": str({m: float(e.mean()) for m, e in zip(models, errors)})})


def comparison(errors: dict[str, float], hist: dict[str, xr.Dataset]) -> str | None:
    """A warning when the best online run is worse than offline at equal training time, naming
    the likely cause from the runs' own records; None when online is at least as good."""
    online = [k for k in errors if k != "offline" and hist[k].attrs.get("mode") == "online"]
    if "offline" not in errors or not online:
        return None
    best = min(online, key=errors.get)
    if errors[best] <= errors["offline"]:
        return None
    a, off = hist[best].attrs, hist["offline"].attrs
    why = []
    if int(a.get("simulations_received", 0)) < int(a.get("simulations_planned", 0)):
        why.append(f"only {a['simulations_received']} of {a['simulations_planned']} streamed simulations arrived "
                   f"within the run")
    if int(a["distinct_simulations"]) <= int(off["distinct_simulations"]):
        why.append(f"it trained on {a['distinct_simulations']} distinct simulations, offline on "
                   f"{off['distinct_simulations']}: the ensemble was slower than the budget (raise "
                   f"surrogate.budget_seconds or online.max_running)")
    if int(a["batches"]) < int(off["batches"]):
        why.append(f"it took {a['batches']} batches against {off['batches']} offline: the clients shared the "
                   f"processors with the optimizer")
    if int(a.get("dropped", 0)):
        why.append(f"{a['dropped']} messages were dropped ({a.get('dropped_reasons', '')})")
    if not why:
        why.append("more distinct simulations did not make up for fewer passes over each within this budget")
    return (f"Warning: the online model ({best}, test error {errors[best]:.3g}) is worse than the offline one "
            f"({errors['offline']:.3g}) at equal training time: " + "; ".join(why) + ".")


def write(study: dict, hist: dict[str, xr.Dataset], met: xr.Dataset, ops: xr.Dataset, loss, throughput, seen,
          fields, section, log=print):
    """The four figures and the report section."""
    from rom import plots
    from rom.report import write_section

    plots.semilogy(loss, {k: (h["wall"].values, h["val_loss"].values) for k, h in hist.items()},
                   "training wall time [s]", "validation MSE", "Validation loss vs wall time")
    fig, axes = plots.figure(2)
    for i, (k, h) in enumerate(hist.items()):  # one colour per run in every panel
        w = h["wall"].values
        dt = np.maximum(np.diff(w), 1e-9)
        if len(w) > 1:
            axes[0].plot(w[1:], np.diff(h["trained"].values) / dt, "o-", ms=3, color=f"C{i}", label=k)
            if h.attrs["mode"] == "online":
                axes[1].plot(w[1:], np.diff(h["received"].values) / dt, "o-", ms=3, color=f"C{i}", label=k)
    axes[0].set(xlabel="training wall time [s]", ylabel="samples / s", title="training throughput")
    axes[1].set(xlabel="training wall time [s]", ylabel="samples / s", title="ingest throughput (online)")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    plots.save(fig, throughput)
    fig, (ax,) = plots.figure()
    for i, (k, h) in enumerate(hist.items()):
        if "seen_count" in h and h.sizes.get("sample", 0):
            c = h["seen_count"].values
            ax.hist(c, bins=np.arange(c.max() + 2) - 0.5 if c.max() < 60 else 40, alpha=0.6, color=f"C{i}", label=k)
    ax.set(xlabel="times a sample was trained on", ylabel="samples", title="seen counts (online)")
    ax.legend(fontsize=8)
    plots.save(fig, seen)
    labels = list(met["model"].values)
    ref = met["reference_final"].values
    values = [ref[0]] + [met["prediction_final"].values[i, 0] for i in range(len(labels))]
    plots.fields(fields, ops["nodes"].values, ops["triangles"].values, values,
                 ["reference (FOM)"] + [f"{m} surrogate" for m in labels], label="K")
    err = met["relative_l2_error"].values
    errors = {m: float(err[i].mean()) for i, m in enumerate(labels)}
    metrics = {f"{m}: mean relative L2 test error": e for m, e in errors.items()}
    rows = [[k, h.attrs.get("device", ""), int(h.attrs["distinct_simulations"]), int(h.attrs["samples_received"]),
             int(h.attrs["batches"]), float(h.attrs["train_seconds"]),
             float(h.attrs["batches"]) * h.attrs["batch_size"] / max(float(h.attrs["train_seconds"]), 1e-9),
             int(h.attrs.get("duplicates", 0)), int(h.attrs.get("dropped", 0)), int(h.attrs.get("crashes", 0))]
            for k, h in hist.items()]
    cols = ["run", "device", "simulations trained on", "samples received", "batches", "train s", "trained samples/s",
            "duplicates", "dropped", "client crashes"]
    text = ("MLP (mu, t) -> nodal temperature field trained online while the simulation ensemble streams "
            "its time steps over ZeroMQ, against the same model trained offline from the snapshot files "
            "for the same budget.")
    warning = comparison({m: errors[m] for m in errors if m in hist}, hist)
    if warning:
        log(warning)
        text = f"{warning} {text}"
    write_section(section, "Streamed surrogate training", 60, text, metrics,
                  [(loss, "Validation loss vs training wall time"),
                   (throughput, "Training and ingest throughput over time"),
                   (seen, "How often each streamed sample was trained on"),
                   (fields, "Final time step of a test sample: reference and surrogates")],
                  {"runs": {"columns": cols, "rows": rows}})
    return warning
