"""Figures and report sections of the foundation stages, and the HTML report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rom import artefacts, config, plots
from rom.cli import add_study_arg
from rom.report import render, write_section


def register(sub):
    p = sub.add_parser("figures-snapshots", help="figures of a few train solutions and the solver statistics")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True)
    p.add_argument("--figure", required=True, help="PNG of a few solutions")
    p.add_argument("--section", required=True, help="section JSON")
    p.set_defaults(func=figures_snapshots)

    p = sub.add_parser("figures-pod", help="figures of the POD: eigenvalue decay, projection error vs N")
    add_study_arg(p)
    p.add_argument("--pod", required=True)
    p.add_argument("--spectrum", required=True, help="PNG")
    p.add_argument("--errors", required=True, help="PNG")
    p.add_argument("--section", required=True)
    p.set_defaults(func=figures_pod)

    p = sub.add_parser("report", help="render report sections into one HTML page")
    add_study_arg(p)
    p.add_argument("sections", nargs="+", help="section JSON files")
    p.add_argument("--out", required=True)
    p.set_defaults(func=report)


def figures_snapshots(args):
    study = config.load(args.study_config)
    problem = config.make_problem(study)
    ops = artefacts.read(args.operators)
    ds = artefacts.read(args.train)
    k = min(study["report"]["n_solutions"], ds.sizes["sample"])
    mu = ds["mu"].values[:k]
    u = ds["u"].values[:k]
    if problem.transient:
        u = u[:, -1]  # last time step
    values = [problem.full_field(m, ui) for m, ui in zip(mu, u)]
    names = list(ds["parameter"].values)
    titles = ["\n".join(", ".join(f"{n}={v:.2g}" for n, v in list(zip(names, m))[i:i + 3])
                         for i in range(0, min(len(names), 6), 3)) for m in mu]
    plots.fields(args.figure, ops["nodes"].values, ops["triangles"].values, values, titles, label=problem.units)
    ok = ds["converged"].values.astype(bool)
    metrics = {
        "train samples": int(ds.sizes["sample"]),
        "failed samples": int((~ok).sum()),
        "free dofs": int(ops.attrs["n_dofs"]),
        "mean solver iterations": float(ds["iterations"].values[ok].mean()) if ok.any() else float("nan"),
        "mean seconds per solve": float(ds["solve_seconds"].values.mean()),
        "MPI ranks": int(ds.attrs.get("mpi_ranks", 1)),
    }
    text = (f"Full-order solutions of problem {problem.name} with PETSc "
            f"({', '.join(f'{k}={v}' for k, v in study['simulate']['petsc_options'].items())}).")
    write_section(args.section, "Full-order simulations", 10, text, metrics,
                  [(args.figure, "A few train solutions" + (" at the final time" if problem.transient else ""))])


def figures_pod(args):
    study = config.load(args.study_config)
    ds = artefacts.read(args.pod)
    lam = ds["eigenvalues"].values
    lam = lam[lam > 0]
    plots.semilogy(args.spectrum, {"eigenvalue / largest": (np.arange(1, len(lam) + 1), lam / lam[0]),
                                   "energy left out": (np.arange(1, len(lam) + 1), ds["energy_left_out"].values[:len(lam)])},
                   "k", "relative value", "POD spectrum (train snapshots, H1 seminorm)")
    err = ds["test_error"].values
    N = ds["basis_size"].values
    curves = {"max over test set": (N, err.max(axis=1)), "mean over test set": (N, err.mean(axis=1))} if err.size else {}
    plots.semilogy(args.errors, curves, "basis size N", "relative projection error (X norm)",
                   "Test-set projection error")
    metrics = {"POD modes": int(ds.attrs["n_modes"]), "POD energy tolerance": float(ds.attrs["tol"]),
               "train snapshots": int(ds.attrs["n_train_snapshots"])}
    if err.size:
        metrics["max test projection error with all modes"] = float(err[-1].max())
    write_section(args.section, "Proper orthogonal decomposition", 20,
                  "Method of snapshots in the H1-seminorm product; projection errors of the test snapshots.",
                  metrics, [(args.spectrum, "Eigenvalue decay of the snapshot correlation"),
                            (args.errors, "Relative projection error of the test set versus basis size")])


def report(args):
    study = config.load(args.study_config)
    missing = [s for s in args.sections if not Path(s).is_file()]
    if missing:
        raise artefacts.ArtefactError(f"{missing[0]}: report section not found")
    render(args.sections, args.out, study)
