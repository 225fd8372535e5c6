"""Figures and report sections of the full-order stages: a few solutions with their solver
statistics, and the POD (spectrum, projection errors)."""
from __future__ import annotations

import numpy as np

from rom import plots
from rom.hifi import capabilities as cap


def unit_label(units: str) -> str:
    return units if units and units != "1" else "dimensionless"


def solve_sequence_figure(path, ds) -> dict:
    """Krylov iterations per sample along each chunk's solve order (rom.hifi.sequence.driver): the first solve of
    a chunk starts cold, the later ones from what the earlier ones left. Returns the section's metrics."""
    fig, (ax,) = plots.figure()
    position, its = ds["solve_position"].values, ds["iterations"].values
    chunks = ds["chunk"].values if "chunk" in ds else np.zeros(len(its), dtype=int)
    ok = ds["converged"].values.astype(bool)
    for i, c in enumerate(np.unique(chunks)):
        mine = np.flatnonzero((chunks == c) & ok)
        mine = mine[np.argsort(position[mine])]
        ax.plot(position[mine], its[mine], plots.STYLES[i % len(plots.STYLES)], ms=3, lw=1,
                label=f"chunk {c}" if i < 6 else None, alpha=0.8)
    ax.set_xlabel("position in the chunk's solve order")
    ax.set_ylabel("Krylov iterations")
    guess = ds.attrs.get("sequence_initial_guess", "none")
    ax.set_title(f"order {ds.attrs.get('ordering', 'design')}, guess {guess}", fontsize=9)
    ax.grid(True, alpha=0.3)
    plots.integer_ticks(ax)
    plots.integer_ticks(ax, "y")
    if len(np.unique(chunks)) > 1:
        ax.legend(fontsize=8)
    plots.save(fig, path)
    cold, warm = ok & (position == 0), ok & (position > 0)
    metrics = {"solve order": str(ds.attrs.get("ordering", "design")), "initial guess": str(guess),
               "mean iterations, first solve of a chunk (cold start)": float(its[cold].mean()) if cold.any() else float("nan"),
               "mean iterations, later solves": float(its[warm].mean()) if warm.any() else float("nan"),
               "mean set-up seconds per sample": _mean_of_finite(ds["setup_seconds"].values),
               "mean Krylov seconds per sample": _mean_of_finite(ds["krylov_seconds"].values)}
    if ds.attrs.get("sequence_tune_option"):
        metrics[f"mean tuned {ds.attrs['sequence_tune_option']}"] = float(np.nanmean(ds["tuned_value"].values))
    return metrics


def _mean_of_finite(x) -> float:
    """The mean of the finite values (NaN, without a warning, when there are none: a Newton solve records
    no set-up or Krylov split)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def snapshots_section(problem, study: dict, ops, ds, figure, sequence=None) -> dict:
    """Figure of the first few train solutions (every parameter in the titles) and the solver facts;
    with `sequence` (a PNG path) the iterations along the solve order too."""
    k = min(study["report"]["n_solutions"], ds.sizes["sample"])
    mu = ds["mu"].values[:k]
    u = ds["u"].values[:k]
    if cap.has(problem, cap.TRANSIENT):
        u = u[:, -1]  # last time step
    names = list(ds["parameter"].values)
    values = [problem.full_field(m, ui) for m, ui in zip(mu, u)]
    titles = [plots.parameter_title(names, m) for m in mu]
    plots.fields(figure, ops["nodes"].values, ops["triangles"].values, values, titles,
                 label=f"u [{unit_label(problem.units)}]")
    ok = ds["converged"].values.astype(bool)
    metrics = {
        "train samples": int(ds.sizes["sample"]),
        "failed samples": int((~ok).sum()),
        "free dofs": int(ops.attrs["n_dofs"]),
        "mean solver iterations": float(ds["iterations"].values[ok].mean()) if ok.any() else float("nan"),
        "mean seconds per solve": float(ds["solve_seconds"].values.mean()) if len(ok) else float("nan"),
        "MPI ranks": int(ds.attrs.get("mpi_ranks", 1)),
    }
    if getattr(problem, "black_box", False):
        # romflow's PETSc options never reach a black box: name the solver and its own wall time instead.
        import shlex

        seconds = ds["solve_seconds"].values[ok]
        median = f"{np.median(seconds):.3g} s" if seconds.size else "n/a"
        text = (f"Full-order solutions of problem {problem.name} by a black box: {shlex.split(problem.command)[0]}, "
                f"median wall time per sample {median}.")
        metrics["median wall seconds per sample"] = float(np.median(seconds)) if seconds.size else float("nan")
    else:
        options = ", ".join(f"{k}={v}" for k, v in study["simulate"]["petsc_options"].items())
        text = f"Full-order solutions of problem {problem.name} with PETSc ({options})."
    caption = "A few train solutions" + (" at the final time" if cap.has(problem, cap.TRANSIENT) else "")
    figures = [(figure, caption)]
    if sequence is not None and "solve_position" in ds:
        metrics.update(solve_sequence_figure(sequence, ds))
        figures.append((sequence, "Krylov iterations per train sample along each chunk's solve order: the first "
                                  "solve of a chunk starts cold (the count without reuse), later ones start "
                                  "from what the earlier solves left (simulate.initial_guess)"))
    return {"title": "Full-order simulations", "order": 10, "text": text, "metrics": metrics, "figures": figures}


def pod_section(ds, spectrum, errors) -> dict:
    lam = ds["eigenvalues"].values
    k = np.arange(1, len(lam) + 1)
    # Eigenvalues below round-off of the largest are noise and exact zeros are not drawn (log axis).
    floor = 1e-18
    plots.semilogy(spectrum, {"eigenvalue / largest": (k, lam / lam[0] if lam.size and lam[0] > 0 else lam),
                              "energy left out": (k, ds["energy_left_out"].values)},
                   "k", "relative value", "POD spectrum (train snapshots, H1 seminorm)", integer_x=True, floor=floor)
    err = ds["test_error"].values
    N = ds["basis_size"].values
    curves = {"max over test set": (N, err.max(axis=1)), "mean over test set": (N, err.mean(axis=1))} if err.size else {}
    plots.semilogy(errors, curves, "basis size N", "relative projection error (X norm)", "Test-set projection error",
                   integer_x=True)
    metrics = {"POD modes": int(ds.attrs["n_modes"]), "POD energy tolerance": float(ds.attrs["tol"]),
               "train snapshots": int(ds.attrs["n_train_snapshots"])}
    if err.size:
        metrics["max test projection error with all modes"] = float(err[-1].max())
    return {"title": "Proper orthogonal decomposition", "order": 20,
            "text": "Method of snapshots in the H1-seminorm product; projection errors of the test snapshots.",
            "metrics": metrics, "figures": [(spectrum, "Eigenvalue decay of the snapshot correlation"),
                                            (errors, "Relative projection error of the test set versus basis size")]}
