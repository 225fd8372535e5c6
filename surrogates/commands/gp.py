"""gp (POD + GP on a fixed-mesh parametric study) and evaluate-gp (test errors, pointwise variance,
coverage, comparison with the RB model when its metrics exist, figures and report section)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg


def register(sub):
    p = sub.add_parser("gp", help="fit a batched GP from the parameters to the POD coefficients of the train snapshots")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--train", required=True, help="snapshots/train.h5")
    p.add_argument("--pod", required=True, help="rom/pod.h5 (X-orthonormal modes)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    p.add_argument("--out", required=True, help="surrogates/gp.h5")
    p.set_defaults(func=fit)

    p = sub.add_parser("evaluate-gp", help="POD+GP on the test set: errors, variance, coverage, figures, section")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--test", required=True, help="snapshots/test.h5")
    p.add_argument("--gp", required=True, help="surrogates/gp.h5")
    p.add_argument("--rb-metrics", help="rom/rb_metrics.h5 of the RB stage, for the comparison (optional)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--metrics", required=True, help="metrics/gp.h5")
    p.add_argument("--figures", required=True, help="folder of PNG figures")
    p.add_argument("--section", required=True)
    p.set_defaults(func=evaluate)


def _snapshots(path, problem):
    ds = artefacts.read(path)
    if problem.transient or ds["u"].ndim != 2:
        raise UserError(f"{path}: POD+GP expects stationary snapshots (sample, dof); problem {problem.name} is transient")
    ds = artefacts.converged(ds)
    return ds["mu"].values, ds["u"].values


def _homogeneous(mu: np.ndarray, degree: float) -> tuple[np.ndarray, np.ndarray]:
    """GP inputs and output factor of the parameter scaling: when u(lambda mu) = lambda^degree u(mu)
    (thermal block: -div(mu grad u) = 1, u = 0 on the boundary, degree -1), the GP regresses
    ||mu||^-degree u on the direction mu / ||mu|| and multiplies back (exact, not learned)."""
    if degree == 0:
        return mu, np.ones(len(mu))
    r = np.linalg.norm(mu, axis=1)
    return mu / r[:, None], r**degree


def predict(gp, mu: np.ndarray, degree: float) -> tuple[np.ndarray, np.ndarray]:
    """POD coefficients' mean and variance (n, modes) at parameters mu."""
    x, scale = _homogeneous(np.atleast_2d(mu), degree)
    c, var = gp.predict(x)
    return scale[:, None] * c, scale[:, None] ** 2 * var


def fit(args):
    import torch

    from rom.hifi.operators import Operators
    from surrogates.gp import GP

    torch.set_num_threads(max(1, args.threads))
    study = config.load(args.study_config)
    problem = config.make_problem(study)
    s = study["gp"]
    ops = Operators.from_dataset(artefacts.read(args.operators))
    mu, U = _snapshots(args.train, problem)
    V = artefacts.read(args.pod)["modes"].values[:s["n_modes"]]
    if len(V) == 0:
        raise UserError(f"{args.pod}: no POD modes; expected at least one")
    C = (ops.X @ U.T).T @ V.T  # X-orthonormal modes: coefficients are X-inner products
    degree = float(getattr(problem, "solution_degree", 0)) if s["parameter_scaling"] else 0.0
    x, scale = _homogeneous(mu, degree)
    t0 = time.perf_counter()
    try:
        gp = GP(s["restarts"], s["iterations"], study["seed"], input_transform=s["input_transform"]).fit(x, C / scale[:, None])
    except ValueError as exc:  # log of a non-positive parameter
        raise config.ConfigError(f"gp.input_transform: {exc}") from None
    ds = gp.to_dataset("gp")
    ds["modes"] = (("mode", "dof"), V)
    ds.attrs.update(fit_seconds=time.perf_counter() - t0, n_train=len(mu), solution_degree=degree)
    artefacts.write(ds, args.out, study, "gp")


def evaluate(args):
    import torch

    from rom import plots
    from rom.hifi.operators import Operators
    from rom.report import write_section
    from surrogates.gp import GP, coverage

    torch.set_num_threads(max(1, args.threads))
    study = config.load(args.study_config)
    problem = config.make_problem(study)
    ops = Operators.from_dataset(artefacts.read(args.operators))
    model = artefacts.read(args.gp)
    gp, V = GP.from_dataset(model, "gp"), model["modes"].values
    degree = float(model.attrs.get("solution_degree", 0.0))
    mu, U = _snapshots(args.test, problem)
    X = ops.X
    t0 = time.perf_counter()
    c, var = predict(gp, mu, degree)
    batched = (time.perf_counter() - t0) / len(mu)
    t0 = time.perf_counter()
    for m in mu[: min(len(mu), 10)]:  # one query at a time: the online cost of a single parameter
        predict(gp, m[None, :], degree)
    single = (time.perf_counter() - t0) / min(len(mu), 10)
    u_mean, u_var = c @ V, var @ V**2  # exact: independent GP outputs, linear decompression
    norm = lambda A: np.sqrt(np.clip(np.einsum("ij,ij->i", A, (X @ A.T).T), 0, None))  # noqa: E731
    unorm = norm(U)
    err = norm(U - u_mean) / unorm
    C_ref = (X @ U.T).T @ V.T
    proj = norm(U - C_ref @ V) / unorm  # best the POD space allows
    outside = gp.outside(_homogeneous(mu, degree)[0]).any(axis=1)
    cov_c, cov_u = coverage(C_ref, c, var), coverage(U, u_mean, u_var)
    attrs = {"gp_max_relative_error": float(err.max()), "gp_mean_relative_error": float(err.mean()),
             "projection_max_relative_error": float(proj.max()), "coverage95_coefficients": cov_c,
             "coverage95_field": cov_u, "gp_seconds_per_query": single, "gp_seconds_per_query_batched": batched,
             "n_modes": len(V), "n_test": len(mu), "n_outside_training_range": int(outside.sum()),
             "fit_seconds": float(model.attrs.get("fit_seconds", np.nan))}
    rb = None
    if args.rb_metrics and Path(args.rb_metrics).is_file():
        rb = artefacts.read(args.rb_metrics)
        kind = str(rb.attrs["kinds"]).split(",")[0]
        attrs.update(rb_kind=kind, rb_max_relative_error=float(rb.attrs[f"{kind}_max_relative_error"]),
                     rb_seconds_per_query=float(rb.attrs[f"{kind}_seconds_per_query"]))
    ds = xr.Dataset({"relative_error": ("test_sample", err), "projection_error": ("test_sample", proj),
                     "coefficients_mean": (("test_sample", "mode"), c), "coefficients_var": (("test_sample", "mode"), var),
                     "coefficients_ref": (("test_sample", "mode"), C_ref), "outside_training_range": ("test_sample", outside.astype(np.int8))},
                    attrs=attrs)
    artefacts.write(ds, args.metrics, study, "gp_metrics")

    fig_dir = Path(args.figures)
    curves = {"POD+GP": (np.arange(len(mu)), np.sort(err)), f"projection on {len(V)} POD modes": (np.arange(len(mu)), np.sort(proj))}
    if rb is not None:
        curves[f"RB ({attrs['rb_kind']}), max"] = (np.arange(len(mu)), np.full(len(mu), attrs["rb_max_relative_error"]))
    plots.semilogy(fig_dir / "gp_errors.png", curves, "test sample (sorted)", "relative X-norm error", "POD+GP test errors")
    ops_ds = artefacts.read(args.operators)
    i = int(np.argmax(err))
    full = lambda v: problem.full_field(mu[i], v)  # noqa: E731
    plots.fields(fig_dir / "gp_fields.png", ops_ds["nodes"].values, ops_ds["triangles"].values,
                 [full(U[i]), full(u_mean[i]), full(np.abs(U[i] - u_mean[i])), full(np.sqrt(u_var[i]))],
                 ["reference", "POD+GP mean", "|error|", "predicted std"], label=problem.units)
    levels = np.linspace(0.1, 0.99, 12)
    fig, (ax,) = plots.figure()
    ax.plot(levels, [coverage(C_ref, c, var, a) for a in levels], "o-", label="POD coefficients")
    ax.plot(levels, [coverage(U, u_mean, u_var, a) for a in levels], "s-", label="nodal values")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize=8)
    plots.save(fig, fig_dir / "gp_calibration.png")
    rows = [["POD+GP", attrs["gp_max_relative_error"], attrs["gp_mean_relative_error"], single]]
    if rb is not None:
        rows.append([f"RB ({attrs['rb_kind']})", attrs["rb_max_relative_error"], "", attrs["rb_seconds_per_query"]])
    metrics = {k: v for k, v in attrs.items() if not k.startswith("rb_")}
    write_section(args.section, "POD + Gaussian process", 40,
                  "Batched independent GPs (Matern 5/2, ARD, learned noise, restarts) from the parameters to the "
                  "POD coefficients; pointwise variance by exact linear propagation.", metrics,
                  [(fig_dir / "gp_errors.png", "Relative X-norm test errors of POD+GP, the POD projection and the RB model"),
                   (fig_dir / "gp_fields.png", "Worst test sample: reference, POD+GP mean, error and predicted std"),
                   (fig_dir / "gp_calibration.png", "Calibration of the predictive intervals on the test set")],
                  {"POD+GP vs RB on the test set": {"columns": ["model", "max rel. error", "mean rel. error",
                                                                "seconds per query"], "rows": rows}})
