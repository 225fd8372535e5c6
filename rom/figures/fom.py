"""Figures and report sections of the full-order stages: a few solutions with their solver
statistics, and the POD (spectrum, projection errors)."""
from __future__ import annotations

import numpy as np

from rom import plots


def unit_label(units: str) -> str:
    return units if units and units != "1" else "dimensionless"


def snapshots_section(problem, study: dict, ops, ds, figure) -> dict:
    """Figure of the first few train solutions (every parameter in the titles) and the solver facts."""
    k = min(study["report"]["n_solutions"], ds.sizes["sample"])
    mu = ds["mu"].values[:k]
    u = ds["u"].values[:k]
    if problem.transient:
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
    options = ", ".join(f"{k}={v}" for k, v in study["simulate"]["petsc_options"].items())
    text = f"Full-order solutions of problem {problem.name} with PETSc ({options})."
    caption = "A few train solutions" + (" at the final time" if problem.transient else "")
    return {"title": "Full-order simulations", "order": 10, "text": text, "metrics": metrics,
            "figures": [(figure, caption)]}


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
