"""PLAID metrics of MMGP predictions on ragged families (fields concatenated over the samples'
nodes, `offsets` of length n_samples + 1), with coverage and calibration of the intervals. The one
implementation used by the pipeline (evaluate-mmgp), the tests and the benchmark."""
from __future__ import annotations

import numpy as np

from surrogates.gp import CALIBRATION_LEVELS, calibrated_coverage, calibration_curve, q2


def ragged(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(concatenation, offsets) of per-sample nodal arrays."""
    return np.concatenate(arrays), np.concatenate([[0], np.cumsum([len(a) for a in arrays])])


def field_rrmse(ref: np.ndarray, pred: np.ndarray, offsets: np.ndarray) -> float:
    """PLAID field RRMSE: sqrt(mean_i ||U_ref,i - U_pred,i||^2 / (N_i ||U_ref,i||_inf^2))."""
    n_i = np.diff(offsets)
    sample = np.repeat(np.arange(len(n_i)), n_i)
    inf = np.maximum.reduceat(np.abs(ref), offsets[:-1])
    sq = np.bincount(sample, (ref - pred) ** 2, len(n_i))
    return float(np.sqrt(np.mean(sq / (n_i * inf**2))))


def scalar_rrmse(ref: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """PLAID scalar RRMSE per column: sqrt(mean_i |w_ref - w_pred|^2 / |w_ref|^2)."""
    ref, pred = np.asarray(ref), np.asarray(pred)
    return np.sqrt(np.mean((ref - pred) ** 2 / ref**2, axis=0))


def _entry(rrmse, ref, pred, var, factors=None) -> dict:
    """factors: the model's calibrated half-width factors (surrogates.gp.interval_factors);
    None: Gaussian intervals. The Gaussian curve is reported too (the variance alone). Values
    predicted exactly with zero variance (Dirichlet nodes) are left out of the coverage: they are
    inside every interval and would lift the curve at every level."""
    r2 = q2(ref, pred)
    exact = (var == 0) & (ref == pred)
    ref, pred, var = ref[~exact], pred[~exact], var[~exact]
    gauss = calibration_curve(ref, pred, var)
    curve = gauss if factors is None else np.array([calibrated_coverage(ref, pred, np.sqrt(var), factors, a)
                                                    for a in CALIBRATION_LEVELS])
    return {"rrmse": float(rrmse), "q2": r2, "coverage95": float(curve[list(CALIBRATION_LEVELS).index(0.95)]),
            "calibration": curve.tolist(), "calibration_max_deviation": float(np.abs(curve - CALIBRATION_LEVELS).max()),
            "calibration_gaussian": gauss.tolist()}


def prediction_metrics(fields_ref: dict, fields_pred: dict, fields_var: dict, offsets: np.ndarray,
                       scalar_names: list[str], scalars_ref: np.ndarray, scalars_pred: np.ndarray,
                       scalars_var: np.ndarray, factors: dict | None = None) -> dict:
    """Per output: PLAID RRMSE, Q2, 95% coverage, the calibration curve at CALIBRATION_LEVELS and
    its largest distance to the diagonal, with the model's intervals (`factors`: output ->
    half-width factors; Gaussian where absent). Fields pooled over all nodes of all samples.
    A sample whose reference is not finite (anywhere, for a field) is left out of that output's
    metrics and listed in `excluded` (output -> sample indices): a NaN would make every score NaN."""
    factors = factors or {}
    out = {"levels": CALIBRATION_LEVELS.tolist(), "fields": {}, "scalars": {}, "excluded": {}}
    n_i = np.diff(offsets)
    for f in fields_ref:
        ref, pred, var = fields_ref[f], fields_pred[f], fields_var[f]
        good = np.logical_and.reduceat(np.isfinite(ref), offsets[:-1])
        node = np.repeat(good, n_i)
        if not good.all():
            out["excluded"][f] = np.flatnonzero(~good).tolist()
        kept = np.concatenate([[0], np.cumsum(n_i[good])])
        out["fields"][f] = _entry(field_rrmse(ref[node], pred[node], kept), ref[node], pred[node], var[node], factors.get(f))
    for j, name in enumerate(scalar_names):
        good = np.isfinite(scalars_ref[:, j])
        if not good.all():
            out["excluded"][name] = np.flatnonzero(~good).tolist()
        ref, pred, var = scalars_ref[good, j], scalars_pred[good, j], scalars_var[good, j]
        out["scalars"][name] = _entry(scalar_rrmse(ref, pred), ref, pred, var, factors.get(name))
    return out
