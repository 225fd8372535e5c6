"""gp (POD + GP on a fixed-mesh parametric study) and evaluate-gp (test errors, pointwise variance,
coverage, comparison with the RB model when its metrics exist, figures and report section)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg
from surrogates.gp import CALIBRATION_GRID, CALIBRATION_LEVELS, gaussian_factors, interval_factors


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


def fit(args):
    import torch

    from rom.hifi.operators import Operators
    from surrogates.gp import calibrate_pod_gp, fit_pod_gp, pod_coefficients, pod_gp_cross_validation

    torch.set_num_threads(max(1, args.threads))
    study = config.load(args.study_config)
    problem = config.make_problem(study)
    s = study["gp"]
    ops = Operators.from_dataset(artefacts.read(args.operators))
    mu, U = _snapshots(args.train, problem)
    V = artefacts.read(args.pod)["modes"].values[:s["n_modes"]]
    if len(V) == 0:
        raise UserError(f"{args.pod}: no POD modes; expected at least one")
    degree = float(getattr(problem, "solution_degree", 0)) if s["parameter_scaling"] else 0.0
    options = dict(restarts=s["restarts"], iterations=s["iterations"], seed=study["seed"], gtol=s["gtol"],
                   input_transform=s["input_transform"])
    t0 = time.perf_counter()
    try:
        gp = fit_pod_gp(mu, pod_coefficients(U, ops.X, V), degree, **options)
        if s["calibration"] == "cv":
            if len(mu) < 2 * s["folds"]:
                raise config.ConfigError(f"gp.folds = {s['folds']}: {len(mu)} train snapshots; expected at least "
                                         f"{2 * s['folds']} (or gp.calibration: loo)")
            coef_f, node_f, _ = calibrate_pod_gp(gp, V, *pod_gp_cross_validation(mu, U, ops.X, V, degree, s["folds"],
                                                                                  **options))
        else:
            z = gp.loo_z()
            coef_f, node_f = np.stack([interval_factors(z[:, j]) for j in range(z.shape[1])]), gaussian_factors()
    except ValueError as exc:  # log of a non-positive parameter, non-finite snapshots
        raise UserError(f"gp: {exc}") from None
    ds = gp.to_dataset("gp")
    ds["modes"] = (("mode", "dof"), V)
    ds["coefficient_interval_factor"] = (("mode", "calibration_level"), coef_f)
    ds["nodal_interval_factor"] = ("calibration_level", node_f)
    ds = ds.assign_coords(calibration_level=CALIBRATION_GRID)
    ds.attrs.update(fit_seconds=time.perf_counter() - t0, n_train=len(mu), solution_degree=degree,
                    calibration=s["calibration"], n_converged=int(gp.converged.sum()))
    artefacts.write(ds, args.out, study, "gp")


def evaluate(args):
    import torch

    from rom import plots
    from rom.hifi.operators import Operators
    from rom.report import write_section
    from surrogates.gp import GP, pod_gp_test_metrics, predict_pod_gp

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
    predict_pod_gp(gp, mu, degree)
    batched = (time.perf_counter() - t0) / len(mu)
    t0 = time.perf_counter()
    for m in mu[: min(len(mu), 10)]:  # one query at a time: the online cost of a single parameter
        predict_pod_gp(gp, m[None, :], degree)
    single = (time.perf_counter() - t0) / min(len(mu), 10)
    r = pod_gp_test_metrics(gp, V, X, mu, U, degree, model["coefficient_interval_factor"].values,
                            model["nodal_interval_factor"].values, study["gp"]["out_of_range_level"])
    err, proj, u_mean, u_sd = r["relative_error"], r["projection_error"], r["u_mean"], r["u_sd"]
    attrs = {"gp_max_relative_error": float(err.max()), "gp_mean_relative_error": float(err.mean()),
             "projection_max_relative_error": float(proj.max()),
             "coverage95_coefficients_min": float(r["coverage95_modes"].min()),
             "coverage95_field": r["coverage95_field"],
             "field_calibration_max_deviation": float(np.abs(r["nodal_calibration"] - CALIBRATION_LEVELS).max()),
             "z_sd_max": float(r["z_sd"].max()), "gp_seconds_per_query": single, "gp_seconds_per_query_batched": batched,
             "n_modes": len(V), "n_test": len(mu), "n_out_of_range": int(r["out_of_range"].sum()),
             "n_outside_training_box": int(r["outside_training_box"].sum()), "calibration": str(model.attrs.get("calibration", "")),
             "gp_converged": f"{int(model.attrs.get('n_converged', 0))} of {len(V)}",
             "fit_seconds": float(model.attrs.get("fit_seconds", np.nan))}
    rb = None
    if args.rb_metrics and Path(args.rb_metrics).is_file():
        rb = artefacts.read(args.rb_metrics)
        kind = str(rb.attrs["kinds"]).split(",")[0]
        attrs.update(rb_kind=kind, rb_max_relative_error=float(rb.attrs[f"{kind}_max_relative_error"]),
                     rb_seconds_per_query=float(rb.attrs[f"{kind}_seconds_per_query"]))
    ds = xr.Dataset({"relative_error": ("test_sample", err), "projection_error": ("test_sample", proj),
                     "coefficients_mean": (("test_sample", "mode"), r["coefficients_mean"]),
                     "coefficients_var": (("test_sample", "mode"), r["coefficients_var"]),
                     "coefficients_ref": (("test_sample", "mode"), r["coefficients_ref"]),
                     "z_sd": ("mode", r["z_sd"]), "coverage95_modes": ("mode", r["coverage95_modes"]),
                     "nodal_calibration": ("level", r["nodal_calibration"]),
                     "out_of_range_p": ("test_sample", r["out_of_range_p"]),
                     "out_of_range": ("test_sample", r["out_of_range"].astype(np.int8)),
                     "outside_training_range": ("test_sample", r["outside_training_box"].astype(np.int8))},
                    coords={"level": CALIBRATION_LEVELS}, attrs=attrs)
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
                 [full(U[i]), full(u_mean[i]), full(np.abs(U[i] - u_mean[i])), full(u_sd[i])],
                 ["reference", "POD+GP mean", "|error|", "predicted std"], label=problem.units)
    fig, (ax,) = plots.figure()
    ax.plot(CALIBRATION_LEVELS, r["nodal_calibration"], "s-", label="nodal values (calibrated intervals)")
    ax.plot(CALIBRATION_LEVELS, r["nodal_calibration_gaussian"], "o--", label="nodal values (Gaussian intervals)")
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
                  "Independent GPs (Matern 5/2, ARD, learned noise, restarts, convergence checked per output) from the "
                  "parameters to the POD coefficients; pointwise variance by exact linear propagation; intervals "
                  "calibrated by K-fold cross-validation of the whole POD + GP chain.", metrics,
                  [(fig_dir / "gp_errors.png", "Relative X-norm test errors of POD+GP, the POD projection and the RB model"),
                   (fig_dir / "gp_fields.png", "Worst test sample: reference, POD+GP mean, error and predicted std"),
                   (fig_dir / "gp_calibration.png", "Calibration of the predictive intervals on the test set")],
                  {"POD+GP vs RB on the test set": {"columns": ["model", "max rel. error", "mean rel. error",
                                                                "seconds per query"], "rows": rows},
                   "Calibration per POD mode": {"columns": ["mode", "test z-score s.d.", "95% coverage"],
                                                "rows": [[k, z, c] for k, (z, c) in
                                                         enumerate(zip(r["z_sd"], r["coverage95_modes"]))]}})
