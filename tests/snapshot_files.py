"""Snapshot chunk files as the simulate stage writes them and their merge as the gather stage merges them
(rom.snapshots.gather_files): the inputs of tests/test_pod_scale.py and tests/test_gp_scale.py."""
import numpy as np
import xarray as xr

from rom import artefacts
from rom import snapshots as snap


def chunk_files(folder, U: np.ndarray, chunk: int, failed=(), transient_steps: int = 0, mu=None, name="train",
                seed: int = 5):
    """folder/chunk<c>.h5: the rows of U in a scrambled sample order (drawn from seed), failed samples NaN;
    `transient_steps` > 0 stores (t + 1) U at each time step; mu the parameters by sample (default
    (sample, -sample)); name the set."""
    order = np.random.default_rng(seed).permutation(len(U))
    paths = []
    for c, a in enumerate(range(0, len(U), chunk)):
        idx = order[a:a + chunk]
        ok = np.array([i not in failed for i in idx], dtype=np.int8)
        u = U[idx].copy()
        u[ok == 0] = np.nan
        if transient_steps:
            u = np.stack([u * (t + 1) for t in range(transient_steps)], axis=1)
        dims = ("sample", "time", "dof") if transient_steps else ("sample", "dof")
        ds = xr.Dataset({"u": (dims, u, {"units": "K", "long_name": "solution at the free dofs"}),
                         "mu": (("sample", "parameter"), np.c_[idx, -idx].astype(float) if mu is None else mu[idx]),
                         "converged": ("sample", ok),
                         "reason": ("sample", artefacts.strings(["ok" if o else "diverged" for o in ok])),
                         "iterations": ("sample", np.full(len(idx), 7)),
                         "chunk": ("sample", np.full(len(idx), c))},
                        coords={"sample": idx, "parameter": artefacts.strings(["a", "b"]),
                                **({"time": np.arange(transient_steps) * 0.1} if transient_steps else {})},
                        attrs={"set": name, "chunk": c, "backend": "petsc"})
        paths.append(artefacts.write(ds, folder / f"chunk{c}.h5", None, "snapshots"))
    return paths


def merged(folder, paths, name="new.h5"):
    """folder/name: the chunk files merged as the gather stage merges them."""
    ds, fill = snap.gather_files(paths)
    return artefacts.write(ds, folder / name, None, "snapshots", fill=fill)


def snapshot_file(folder, name, U: np.ndarray, chunk: int, failed=(), mu=None, seed: int = 5):
    """The merged file folder/<name>.h5 of the set's chunk files (chunk_files) in folder/<name>/."""
    (folder / name).mkdir()
    return merged(folder, chunk_files(folder / name, U, chunk, failed, mu=mu, name=name, seed=seed), f"{name}.h5")
