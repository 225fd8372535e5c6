"""The snapshots artefact (snapshots/<set>/chunk<i>.h5 and the gathered snapshots/<set>.h5): solutions at
the free dofs per sample (and time step), with every sample's solver facts, failed samples kept with NaN
fields and their reason.

A large study's fields are never held whole: `gather_files` merges the chunks' small variables in memory
and copies their fields `u` sample by sample into a chunked HDF5 dataset of the merged file, and
`SnapshotRows` reads the converged rows of a snapshots file in blocks of samples (h5py slabs), as the POD
(rom.reduction.pod.pod_blocks) and the projection errors read them."""
from __future__ import annotations

import math
from pathlib import Path

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
    for var in ds.variables.values():  # the first chunk's string width would truncate the others' reasons
        if var.dtype.kind in "OSU":
            var.encoding.pop("dtype", None)
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


# -- large sets: merged and read without holding the fields ------------------------------------------
FIELD_CHUNK = 1 << 17  # dofs per HDF5 chunk of the merged fields (1 MiB of float64): one sample's row is
# read whole by the POD, and a dof range of many samples reads only the chunks it covers
COPY_BYTES = 64 << 20  # the slab of a chunk file's fields held at once while gathering


def gather_files(paths) -> tuple[xr.Dataset, callable]:
    """The merged artefact of chunk files without holding their fields: (the small variables merged as
    `gather` merges them, `fill`) where fill(file) (rom.artefacts.write's `fill`) creates the field `u` in
    the merged file, chunked by sample, and copies every chunk file's rows into their places in sample
    order, COPY_BYTES at a time. The chunks' field attributes are kept where they agree."""
    import h5py

    parts, u_meta = [], []
    for p in paths:
        with xr.open_dataset(p, engine="h5netcdf") as ds:
            u = ds["u"]
            u_meta.append((u.dims, u.shape, dict(u.attrs)))
            parts.append(ds.drop_vars("u").load())
    dims = {d for d, _, _ in u_meta}
    trailing = {shape[1:] for _, shape, _ in u_meta}
    if len(dims) != 1 or len(trailing) != 1:
        raise ValueError(f"gather: the chunks' fields differ in dimensions {sorted(dims)} or shape {sorted(trailing)}")
    merged = gather(parts)
    samples = np.concatenate([np.asarray(part["sample"].values) for part in parts])
    destination = np.empty(len(samples), dtype=np.int64)
    destination[np.argsort(samples, kind="stable")] = np.arange(len(samples))  # xarray's sortby: stable
    starts = np.concatenate([[0], np.cumsum([len(part["sample"]) for part in parts])])
    (dims,), (trailing,) = dims, trailing
    attrs = dict(u_meta[0][2])
    for _, _, a in u_meta[1:]:  # combine_attrs="drop_conflicts"
        attrs = {k: v for k, v in attrs.items() if k not in a or np.array_equal(np.asarray(a[k]), np.asarray(v))}
    attrs.pop("_FillValue", None)

    def fill(f):
        for name, size in zip(dims[1:], trailing):
            if name not in f.dimensions:
                f.dimensions[name] = size
        chunks = (1,) * (len(dims) - 1) + (max(1, min(trailing[-1], FIELD_CHUNK)),)
        var = f.create_variable("u", dims, dtype=np.float64, chunks=chunks if len(samples) else None,
                                fillvalue=np.nan)
        var.attrs.update(attrs)
        row_bytes = 8 * math.prod(trailing)
        step = max(1, COPY_BYTES // max(row_bytes, 1))
        for k, p in enumerate(paths):
            with h5py.File(p, "r") as src:
                u = src["u"]
                for a in range(0, len(u), step):
                    slab = u[a:min(len(u), a + step)]
                    for r, row in enumerate(slab):
                        var[destination[starts[k] + a + r]] = row

    return merged, fill


class SnapshotRows:
    """The snapshot matrix (n_rows, n_dofs) of the converged samples of a snapshots file (time steps
    flattened into rows, as `snapshot_rows`), read lazily: rows(i, j) reads rows i:j (whole samples)
    through h5py. `meta` is the file's other variables (rom.artefacts.read(path, drop=("u",)))."""

    def __init__(self, path, meta: xr.Dataset | None = None):
        import h5py

        from rom import artefacts

        self.path = Path(path)
        meta = artefacts.read(path, drop=("u",)) if meta is None else meta
        self.samples = np.flatnonzero(meta["converged"].values.astype(bool))
        with h5py.File(self.path, "r") as f:
            self.field_shape = tuple(f["u"].shape[1:])
        self.per_sample = math.prod(self.field_shape[:-1])
        self.n_dofs = self.field_shape[-1]
        self.n_rows = len(self.samples) * self.per_sample
        self.shape = (self.n_rows, self.n_dofs)
        self._file = None

    def __len__(self) -> int:
        return self.n_rows

    @property
    def nbytes(self) -> int:
        return 8 * self.n_rows * self.n_dofs

    def rows(self, i: int, j: int) -> np.ndarray:
        """Rows i:j (float64, a new array), i and j on sample boundaries (multiples of per_sample)."""
        import h5py

        if i % self.per_sample or j % self.per_sample:
            raise ValueError(f"rows({i}, {j}): expected whole samples of {self.per_sample} rows")
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        u = self._file["u"]
        picked = self.samples[i // self.per_sample: j // self.per_sample]
        out = np.empty((len(picked),) + self.field_shape)
        if len(picked):
            breaks = np.flatnonzero(np.diff(picked) != 1) + 1  # runs of consecutive samples: one slab each
            for run in np.split(np.arange(len(picked)), breaks):
                a, b = picked[run[0]], picked[run[-1]] + 1
                u.read_direct(out, np.s_[a:b], np.s_[run[0]: run[-1] + 1])
        return out.reshape(-1, self.n_dofs)

    def __getitem__(self, k: int) -> np.ndarray:
        """Row k (one sample's field when per_sample == 1), read alone."""
        k = int(k) + (self.n_rows if int(k) < 0 else 0)
        if not 0 <= k < self.n_rows:
            raise IndexError(f"row {k} of {self.n_rows}")
        if self.per_sample != 1:
            raise TypeError("SnapshotRows[k]: rows of transient snapshots are read with rows(i, j)")
        return self.rows(k, k + 1)[0]

    def take(self, positions) -> SnapshotRows:
        """The rows of the converged samples at `positions` (indices into the converged samples, in that
        order), read lazily from the same file (its own handle: close it too)."""
        import copy

        out = copy.copy(self)
        out.samples = self.samples[np.asarray(positions, dtype=np.int64)]
        out.n_rows = len(out.samples) * self.per_sample
        out.shape = (out.n_rows, self.n_dofs)
        out._file = None
        return out

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class ArrayRows:
    """An in-memory snapshot matrix with SnapshotRows' interface (tests, small sets)."""

    per_sample = 1

    def __init__(self, S: np.ndarray):
        self.S = np.asarray(S, dtype=float)
        self.n_rows, self.n_dofs = self.S.shape
        self.shape = self.S.shape

    def __len__(self) -> int:
        return self.n_rows

    @property
    def nbytes(self) -> int:
        return self.S.nbytes

    def rows(self, i: int, j: int) -> np.ndarray:
        return self.S[i:j]

    def __getitem__(self, k: int) -> np.ndarray:
        return self.S[int(k)]

    def take(self, positions) -> ArrayRows:
        return ArrayRows(self.S[np.asarray(positions, dtype=np.int64)])

    def close(self):
        pass
