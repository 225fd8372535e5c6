"""POD + GP on a fixed-mesh parametric study: the fit (independent GPs from the parameters to the POD
coefficients, intervals calibrated by cross-validation of the whole chain or leave-one-out), and its
evaluation on the test snapshots (errors, exact pointwise variance, coverage, calibration, the
comparison with the RB model), with the figures and the report section."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import xarray as xr

from surrogates.gp import CALIBRATION_GRID, CALIBRATION_LEVELS, gaussian_factors, interval_factors


def fit_study(s: dict, seed: int, problem, X, mu: np.ndarray, U: np.ndarray, V: np.ndarray) -> xr.Dataset:
    """The gp artefact for the `gp` settings s: snapshots U (n, dofs) at mu (n, d), X-orthonormal modes V.
    Raises ValueError (one line) for inputs the GP cannot take."""
    from surrogates.gp import calibrate_pod_gp, fit_pod_gp, pod_coefficients, pod_gp_cross_validation

    if len(V) == 0:
        raise ValueError("no POD modes; expected at least one")
    degree = float(getattr(problem, "solution_degree", 0)) if s["parameter_scaling"] else 0.0
    options = dict(restarts=s["restarts"], iterations=s["iterations"], seed=seed, gtol=s["gtol"],
                   input_transform=s["input_transform"])
    t0 = time.perf_counter()
    gp = fit_pod_gp(mu, pod_coefficients(U, X, V), degree, **options)
    if s["calibration"] == "cv":
        if len(mu) < 2 * s["folds"]:
            raise ValueError(f"gp.folds = {s['folds']}: {len(mu)} train snapshots; expected at least "
                             f"{2 * s['folds']} (or gp.calibration: loo)")
        coef_f, node_f, _ = calibrate_pod_gp(gp, V, *pod_gp_cross_validation(mu, U, X, V, degree, s["folds"], **options))
    else:
        z = gp.loo_z()
        coef_f, node_f = np.stack([interval_factors(z[:, j]) for j in range(z.shape[1])]), gaussian_factors()
    ds = gp.to_dataset("gp")
    ds["modes"] = (("mode", "dof"), V)
    ds["coefficient_interval_factor"] = (("mode", "calibration_level"), coef_f)
    ds["nodal_interval_factor"] = ("calibration_level", node_f)
    ds = ds.assign_coords(calibration_level=CALIBRATION_GRID)
    ds.attrs.update(fit_seconds=time.perf_counter() - t0, n_train=len(mu), solution_degree=degree,
                    calibration=s["calibration"], n_converged=int(gp.converged.sum()))
    return ds


def evaluate_study(s: dict, problem, X, model: xr.Dataset, mu: np.ndarray, U: np.ndarray, ops_ds: xr.Dataset,
                   rb: xr.Dataset | None, fig_dir) -> tuple[xr.Dataset, dict]:
    """(metrics artefact, report section) of a fitted POD+GP on the test snapshots; figures in fig_dir."""
    from rom import plots
    from surrogates.gp import GP, pod_gp_test_metrics, predict_pod_gp

    gp, V = GP.from_dataset(model, "gp"), model["modes"].values
    degree = float(model.attrs.get("solution_degree", 0.0))
    t0 = time.perf_counter()
    predict_pod_gp(gp, mu, degree)
    batched = (time.perf_counter() - t0) / len(mu)
    t0 = time.perf_counter()
    for m in mu[: min(len(mu), 10)]:  # one query at a time: the online cost of a single parameter
        predict_pod_gp(gp, m[None, :], degree)
    single = (time.perf_counter() - t0) / min(len(mu), 10)
    r = pod_gp_test_metrics(gp, V, X, mu, U, degree, model["coefficient_interval_factor"].values,
                            model["nodal_interval_factor"].values, s["out_of_range_level"])
    err, proj, u_mean, u_sd = r["relative_error"], r["projection_error"], r["u_mean"], r["u_sd"]
    attrs = {"gp_max_relative_error": float(err.max()), "gp_mean_relative_error": float(err.mean()),
             "projection_max_relative_error": float(proj.max()),
             "coverage95_coefficients_min": float(r["coverage95_modes"].min()),
             "coverage95_field": r["coverage95_field"],
             "field_calibration_max_deviation": float(np.abs(r["nodal_calibration"] - CALIBRATION_LEVELS).max()),
             "z_sd_max": float(r["z_sd"].max()), "gp_seconds_per_query": single, "gp_seconds_per_query_batched": batched,
             "n_modes": len(V), "n_test": len(mu), "n_out_of_range": int(r["out_of_range"].sum()),
             "n_outside_training_box": int(r["outside_training_box"].sum()),
             "calibration": str(model.attrs.get("calibration", "")),
             "gp_converged": f"{int(model.attrs.get('n_converged', 0))} of {len(V)}",
             "fit_seconds": float(model.attrs.get("fit_seconds", np.nan))}
    if rb is not None:
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

    fig_dir = Path(fig_dir)
    n = np.arange(len(mu))
    curves = {"POD+GP": (n, np.sort(err)), f"projection on {len(V)} POD modes": (n, np.sort(proj))}
    if rb is not None:
        curves[f"RB ({attrs['rb_kind']}), max"] = (n, np.full(len(mu), attrs["rb_max_relative_error"]))
    plots.semilogy(fig_dir / "gp_errors.png", curves, "test sample (sorted)", "relative X-norm error",
                   "POD+GP test errors", integer_x=True)
    i = int(np.argmax(err))
    full = lambda v: problem.full_field(mu[i], v)  # noqa: E731
    from rom.figures.fom import unit_label

    plots.fields(fig_dir / "gp_fields.png", ops_ds["nodes"].values, ops_ds["triangles"].values,
                 [full(U[i]), full(u_mean[i]), full(np.abs(U[i] - u_mean[i])), full(u_sd[i])],
                 ["reference", "POD+GP mean", "|error|", "predicted std"], label=f"u [{unit_label(problem.units)}]")
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
    warnings = []
    dev = attrs["field_calibration_max_deviation"]
    if not 0.9 <= attrs["coverage95_field"] <= 0.99 or dev > 0.1:
        warnings.append(f"POD+GP intervals are not calibrated on the test set: 95% intervals cover "
                        f"{attrs['coverage95_field']:.2f} of the nodal values, calibration curve up to {dev:.2f} from the "
                        "diagonal (few train snapshots make the cross-validated factors noisy)")
    section = {"title": "POD + Gaussian process", "order": 40,
               "text": "Independent GPs (Matern 5/2, ARD, learned noise, restarts, convergence checked per output) from "
                       "the parameters to the POD coefficients; pointwise variance by exact linear propagation; intervals "
                       "calibrated by K-fold cross-validation of the whole POD + GP chain.",
               "metrics": {k: v for k, v in attrs.items() if not k.startswith("rb_")},
               "figures": [(fig_dir / "gp_errors.png", "Relative X-norm test errors of POD+GP, the POD projection and the RB model"),
                           (fig_dir / "gp_fields.png", "Worst test sample: reference, POD+GP mean, error and predicted std"),
                           (fig_dir / "gp_calibration.png", "Calibration of the predictive intervals on the test set")],
               "tables": {"POD+GP vs RB on the test set": {"columns": ["model", "max rel. error", "mean rel. error",
                                                                       "seconds per query"], "rows": rows},
                          "Calibration per POD mode": {"columns": ["mode", "test z-score s.d.", "95% coverage"],
                                                       "rows": [[k, z, c] for k, (z, c) in
                                                                enumerate(zip(r["z_sd"], r["coverage95_modes"]))]}},
               "warnings": warnings}
    return ds, section
