"""Snapshot data for the surrogate (nodal fields from the `simulate` HDF5 artefacts) and the
offline baseline: the same model trained from those files with a DataLoader for the same budget."""
from __future__ import annotations

import time

import numpy as np
import torch

from rom.artefacts import ArtefactError


def nodal_fields(problem, mu: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Full nodal fields (samples, times, nodes) from free-dof snapshots (samples, times, dofs).
    The boundary datum is affine in mu, so it is evaluated for all samples at once from its values
    at mu = 0 and at the unit vectors (d + 1 evaluations, not one per sample)."""
    mesh = problem.mesh
    d = mu.shape[1]
    if not hasattr(problem, "boundary_values"):
        bv = np.zeros((len(mu), int(mesh.boundary.sum())))
    else:
        b0 = problem.boundary_values(np.zeros(d))
        B = np.stack([problem.boundary_values(e) for e in np.eye(d)]) - b0
        bv = b0 + mu @ B
    return mesh.full_field(U, bv[:, None, :])


def snapshot_set(path, problem, scaling) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X inputs (n*T, d+1), Y fields (n*T, nodes), mu (n, d), fields (n, T, nodes)) of the
    converged samples of one snapshots artefact."""
    from rom import artefacts

    ds = artefacts.read(path)
    if "time" not in ds.dims:
        raise ArtefactError(f"{path}: snapshots without a time axis; expected a transient problem (e.g. heat)")
    ds = artefacts.converged(ds)
    mu, U, times = ds["mu"].values, ds["u"].values, ds["time"].values
    F = nodal_fields(problem, mu, U).astype(np.float32)
    X = scaling.inputs(np.repeat(mu, len(times), axis=0), np.tile(times, len(mu)))
    return X, F.reshape(-1, F.shape[-1]), mu, F


def train_offline(trainer, X: np.ndarray, Y: np.ndarray, batch_size: int, budget_seconds: float, seed: int,
                  validation=None, validate_every: float = 2.0, budget_batches: int = 0, num_workers: int = 0,
                  log=print):
    """Epochs of shuffled mini-batches from the snapshot files until the budget is spent.
    Returns the History of the run (same records as the online server)."""
    from torch.utils.data import DataLoader, TensorDataset

    from .streaming.server import History

    g = torch.Generator().manual_seed(seed)
    pin = trainer.device.type == "cuda"
    loader = DataLoader(TensorDataset(torch.from_numpy(X), torch.from_numpy(Y)), batch_size=batch_size,
                        shuffle=True, drop_last=len(X) >= batch_size, generator=g, num_workers=num_workers,
                        pin_memory=pin)
    hist, losses, seen = History(), [], 0
    t0 = time.perf_counter()
    next_val, epochs = 0.0, 0
    done = False
    while not done:
        for x, y in loader:
            x, y = x.to(trainer.device, non_blocking=True), y.to(trainer.device, non_blocking=True)
            losses.append(trainer.step(x, y))
            seen += len(x)
            t = time.perf_counter() - t0
            done = t >= budget_seconds or (budget_batches and trainer.batches >= budget_batches)
            if t >= next_val or done:
                val = trainer.evaluate(*validation) if validation is not None else float("nan")
                tl = float(torch.stack(losses).mean())
                hist.add(wall=t, batches=trainer.batches, train_loss=tl, val_loss=val, received=len(X),
                         bytes=Y.nbytes, trained=seen, lr=trainer.lr())
                log(f"t={t:7.1f}s epoch={epochs} batches={trainer.batches:6d} train={tl:.3e} val={val:.3e}")
                losses, next_val = [], t + validate_every
            if done:
                break
        epochs += 1
    return hist, epochs
