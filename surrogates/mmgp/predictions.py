"""The predictions artefact of MMGP (ragged, like a family: reference, mean and standard deviation
per node; scalars; optional quantiles and posterior draws; out-of-range scores) and its metrics."""
from __future__ import annotations

import numpy as np
import xarray as xr

from surrogates.gp import CALIBRATION_GRID

from .family import Family
from .geometry import MeshSample, family_dataset
from .metrics import prediction_metrics


def predictions_dataset(model, fam: Family, out: dict, quantiles=(), fit_seconds: float = np.nan):
    """(dataset, per-sample MeshSample with reference, `_pred` and `_std` fields)."""
    F = model.fields
    pred = [MeshSample(s.nodes, s.triangles, {**{f: s.fields[f] for f in F}, **{f"{f}_pred": m[f] for f in F},
                                              **{f"{f}_std": np.sqrt(v[f]) for f in F}})
            for s, m, v in zip(fam.samples, out["fields_mean"], out["fields_var"])]
    units = {**{f: model.units[f] for f in F}, **{f"{f}_pred": model.units[f] for f in F}, **{f"{f}_std": model.units[f] for f in F}}
    ds = family_dataset(pred, {"set": fam.attrs.get("set", ""), "morphing": model.morphing, "fields": ",".join(F),
                               "predict_seconds": model.timings["predict_s"], "fit_seconds": fit_seconds,
                               "gp_converged": int(model.gp.converged.sum()), "gp_outputs": len(model.gp.converged),
                               "out_of_range_level": model.out_of_range_level}, units)
    ds["mu"] = (("sample", "parameter"), fam.inputs)
    ds["sample_name"] = ("sample", np.array(fam.names, dtype=object))
    ds["scalars"] = (("sample", "scalar"), fam.scalars)
    ds["scalars_pred"] = (("sample", "scalar"), out["scalars_mean"])
    ds["scalars_std"] = (("sample", "scalar"), np.sqrt(out["scalars_var"]))
    ds["scalar_units"] = ("scalar", np.array([model.units[s] for s in model.scalar_names], dtype=object))
    ds["out_of_range_p"] = ("sample", out["out_of_range_p"], {"long_name": "conformal p-value of belonging to the training family"})
    ds["out_of_range"] = ("sample", out["out_of_range"].astype(np.int8))
    ds["outside_training_range"] = (("sample", "gp_input"), out["outside"].astype(np.int8),
                                    {"long_name": "GP input outside the training box (informative)"})
    ds["mesh_size_ratio"] = ("sample", out["mesh_size_ratio"],
                             {"long_name": "median edge length over the nearest end of the training range"})
    ds["mesh_outside"] = ("sample", out["mesh_outside"].astype(np.int8),
                          {"long_name": "mesh size outside the training range: pointwise extrema extrapolated"})
    if len(quantiles):
        ds = ds.assign_coords(quantile=np.asarray(quantiles, dtype=float))
        for f in F:
            ds[f"{f}_quantiles"] = (("quantile", "node"), np.concatenate([q[f] for q in out["fields_quantiles"]], axis=1))
        ds["scalars_quantiles"] = (("sample", "quantile", "scalar"), out["scalars_quantiles"])
    if "fields_draws" in out:
        for f in F:
            ds[f"{f}_draws"] = (("draw", "node"), np.concatenate([d[f] for d in out["fields_draws"]], axis=1))
        ds["scalars_draws"] = (("sample", "draw", "scalar"), out["scalars_draws"])
    outputs = F + model.scalar_names
    ds["interval_factor"] = (("output", "calibration_level"), np.stack([out["interval_factors"][o] for o in outputs]),
                             {"long_name": "calibrated half-width of the central interval, in predicted standard deviations"})
    inputs = [f"geometry_{k}" for k in range(out["geometry_coefficients"].shape[1])] + model.input_names
    ds = ds.assign_coords(scalar=np.array(model.scalar_names, dtype=object), gp_input=np.array(inputs, dtype=object),
                          parameter=np.array(model.input_names, dtype=object), output=np.array(outputs, dtype=object),
                          calibration_level=CALIBRATION_GRID)
    return ds, pred


def metrics_of(ds: xr.Dataset) -> dict:
    """PLAID RRMSE, Q2, 95% coverage and calibration per field and scalar of a predictions artefact;
    `excluded`: output -> the samples left out for a non-finite reference."""
    F = [f for f in str(ds.attrs["fields"]).split(",") if f]
    scalars = [str(s) for s in ds["scalar"].values]
    m = prediction_metrics({f: ds[f].values for f in F}, {f: ds[f"{f}_pred"].values for f in F},
                           {f: ds[f"{f}_std"].values ** 2 for f in F}, ds["node_offset"].values, scalars,
                           ds["scalars"].values, ds["scalars_pred"].values, ds["scalars_std"].values ** 2,
                           dict(zip([str(o) for o in ds["output"].values], ds["interval_factor"].values)))
    n = len(ds["node_offset"]) - 1
    names = [str(x) for x in ds["sample_name"].values]
    m["excluded"] = {o: [names[i] for i in idx] for o, idx in m["excluded"].items()}
    m.update(n_test=int(n), morphing=str(ds.attrs.get("morphing", "")), n_out_of_range=int(ds["out_of_range"].values.sum()),
             n_mesh_outside=int(ds["mesh_outside"].values.sum()),
             n_outside_training_box=int(ds["outside_training_range"].values.any(axis=1).sum()),
             gp_converged=f"{int(ds.attrs.get('gp_converged', 0))} of {int(ds.attrs.get('gp_outputs', 0))}",
             fit_seconds=float(ds.attrs.get("fit_seconds", np.nan)),
             predict_seconds_per_sample=float(ds.attrs["predict_seconds"]) / max(n, 1))
    return m
