"""HDF5 artefacts written as netCDF4 (h5netcdf): `xarray.open_dataset(path)` opens every one with
named dimensions, units and provenance attributes. Writes are atomic: a temporary name in the same
folder, renamed when complete, so a crash never leaves a file that looks finished."""
from __future__ import annotations

import datetime as _dt
import functools
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from rom.errors import ArtefactError
from rom.paths import ROOT, atomic_path, digest, problem_label

__all__ = ["ArtefactError", "atomic_path", "converged", "provenance", "read", "strings", "write"]

_PACKAGES = ("romflow", "numpy", "scipy", "petsc4py", "mpi4py", "torch", "h5py", "xarray", "snakemake")


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.lru_cache(maxsize=1)
def _versions() -> str:
    found = []
    for name in _PACKAGES:
        try:
            found.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return " ".join(found)


def provenance(study: dict | None, kind: str) -> dict:
    """Attributes every artefact carries. The creation time is the only field that changes
    between reruns of the same config; the data never do."""
    attrs = {
        "romflow_artefact": kind,
        "package_versions": _versions(),
        "git_commit": _git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if study is not None:
        problem = problem_label(study)
        attrs.update(study=study["name"], problem=problem, config_digest=digest(study))
    return attrs


def write(ds: xr.Dataset, path: str | Path, study: dict | None = None, kind: str = "", fill=None) -> Path:
    """Write `ds` atomically with provenance attributes and the peak memory of every rank so far
    (`peak_rss_mb_per_rank`, `ranks`: rom.memory; rom.cli.Context.write sets them itself).

    `fill(file)`, when given, adds variables too large to hold in memory before the file is renamed into
    place: it receives the open h5netcdf.File (dimensions of `ds` already there; create others with
    `file.dimensions[name] = size`) and writes its variables slab by slab (rom.snapshots.gather_files)."""
    from rom import memory

    ds = ds.copy()
    ds.attrs.update(provenance(study, kind or Path(path).stem))
    if "peak_rss_mb_per_rank" not in ds.attrs:
        ds.attrs.update(memory.attrs(memory.per_rank()))
    for key, value in list(ds.attrs.items()):  # netCDF attributes: no None, no bools, no dicts
        if isinstance(value, bool):
            ds.attrs[key] = int(value)
        elif value is None or isinstance(value, (dict, list)) and not value:
            ds.attrs[key] = str(value)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", invalid_netcdf=True)
        if fill is not None:
            import h5netcdf

            with h5netcdf.File(tmp, "a", invalid_netcdf=True) as f:
                fill(f)
    return Path(path)


def read(path: str | Path, drop=()) -> xr.Dataset:
    """Load an artefact fully into memory (the file is closed on return), less the variables named in
    `drop` (a large one read lazily instead: rom.snapshots.SnapshotRows)."""
    path = Path(path)
    if not path.is_file():
        raise ArtefactError(f"{path}: artefact not found; expected the output of an earlier stage")
    try:
        with xr.open_dataset(path, engine="h5netcdf", drop_variables=list(drop) or None) as ds:
            return ds.load()
    except (OSError, ValueError) as exc:
        raise ArtefactError(f"{path}: not a readable romflow artefact ({exc})") from None


def converged(snapshots: xr.Dataset) -> xr.Dataset:
    """The converged samples of a snapshots artefact (failed samples are kept in the artefact with
    NaN fields and their solver reason, and dropped here)."""
    return snapshots.isel(sample=np.flatnonzero(snapshots["converged"].values.astype(bool)))


def strings(values) -> np.ndarray:
    """A string array netCDF stores portably."""
    return np.asarray([str(v) for v in values], dtype=object)
