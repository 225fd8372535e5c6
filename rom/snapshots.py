"""The snapshots artefact (snapshots/<set>/chunk<i>.h5 and the gathered snapshots/<set>.h5): solutions at
the free dofs per sample (and time step), with every sample's solver facts, failed samples kept with NaN
fields and their reason."""
from __future__ import annotations

import numpy as np
import xarray as xr

from rom.artefacts import converged, strings
from rom.hifi import capabilities as cap


def snapshots_dataset(problem, index: np.ndarray, mu: np.ndarray, results: list, attrs: dict) -> xr.Dataset:
    """One chunk: `results` are rom.hifi.capabilities.Sample objects gathered on rank 0, in the order of `index`."""
    transient = cap.has(problem, cap.TRANSIENT)
    shape = ((problem.steps + 1,) if transient else ()) + (problem.mesh.n_dofs,)
    U = np.full((len(index),) + shape, np.nan)
    for i, r in enumerate(results):
        if r.converged:
            U[i] = r.u
    dims = ("sample", "time", "dof") if transient else ("sample", "dof")
    coords = {"sample": np.asarray(index), "parameter": strings(problem.parameter_names)}
    if transient:
        coords["time"] = problem.times
    return xr.Dataset(
        {
            "u": (dims, U, {"units": problem.units, "long_name": "solution at the free dofs"}),
            "mu": (("sample", "parameter"), np.asarray(mu, dtype=float).reshape(len(index), len(problem.parameter_names))),
            "converged": ("sample", np.array([r.converged for r in results], dtype=np.int8)),
            "reason": ("sample", strings(r.reason for r in results)),
            "iterations": ("sample", np.array([r.iterations for r in results], dtype=np.int64)),
            "solve_seconds": ("sample", np.array([r.seconds for r in results], dtype=float), {"units": "s"}),
        },
        coords=coords, attrs=attrs)


def gather(parts: list[xr.Dataset]) -> xr.Dataset:
    """The chunks of one set merged in sample order, with the failure count."""
    ds = xr.concat(parts, dim="sample", data_vars="minimal", coords="minimal", combine_attrs="drop_conflicts")
    ds = ds.sortby("sample")
    ds.attrs.update(n_failed=int((ds["converged"] == 0).sum()), chunks=len(parts))
    return ds


def failures(ds: xr.Dataset) -> tuple[int, int, list[str]]:
    """(failed, total, distinct reasons) of a snapshots artefact."""
    ok = ds["converged"].values.astype(bool)
    return int((~ok).sum()), len(ok), sorted(set(ds["reason"].values[~ok]))


def snapshot_rows(ds: xr.Dataset) -> np.ndarray:
    """Snapshot matrix (n, n_dofs) of the converged samples (time steps flattened into rows)."""
    U = converged(ds)["u"].values
    return U.reshape(-1, U.shape[-1])
