"""Designs of experiments for the train / test / validation parameter sets, their artefact
(parameters.h5) and how a set is cut into simulate chunks."""
from __future__ import annotations

import math

import numpy as np
import xarray as xr
from scipy.stats import qmc

SETS = ("train", "test", "validation")


def unit_design(method: str, size: int, dim: int, seed: int, grid_points: int = 3) -> np.ndarray:
    """Points in [0, 1]^dim."""
    if method == "lhs":
        return qmc.LatinHypercube(d=dim, seed=seed).random(size)
    if method == "sobol":
        # Scrambled Sobol; a size that is not a power of two loses balance, which is fine for a design.
        return qmc.Sobol(d=dim, scramble=True, seed=seed).random(size)
    if method == "random":
        return np.random.default_rng(seed).random((size, dim))
    if method == "grid":
        axes = np.meshgrid(*[np.linspace(0.0, 1.0, grid_points)] * dim, indexing="ij")
        return np.column_stack([a.ravel() for a in axes])
    raise ValueError(f"design.method = {method!r}: expected lhs, sobol, random or grid")


def scale(unit: np.ndarray, bounds: np.ndarray, distributions: list[str]) -> np.ndarray:
    """Map unit-cube points to the parameter box (log-uniform axes are scaled in log space)."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    log = np.array([d == "loguniform" for d in distributions])
    lin = lo + unit * (hi - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.exp(np.log(lo) + unit * (np.log(hi) - np.log(lo)))
    return np.where(log, logv, lin)


def csv_parameters(path, names: list[str], key: str, extra_columns: bool = True) -> np.ndarray:
    """(n, d) parameters of a CSV file whose header names them (in any order, other columns ignored unless
    extra_columns is False); ValueError in one line starting with `key` (the setting or flag that named
    the file) for a missing or unknown column, a row that is not numbers, no rows, a non-finite value."""
    import csv

    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{key}: empty file; expected a header naming the parameters ({', '.join(names)}) and one "
                         "row per sample")
    header = [h.strip() for h in rows[0]]
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(f"{key}: no column {missing[0]!r}; expected the header {', '.join(names)} (got "
                         f"{', '.join(header)})")
    extra = [h for h in header if h not in names]
    if extra and not extra_columns:
        raise ValueError(f"{key}: column {extra[0]!r} is no parameter of the study; expected {', '.join(names)}")
    cols = [header.index(n) for n in names]
    try:
        mu = np.array([[float(r[c]) for c in cols] for r in rows[1:]], dtype=float).reshape(-1, len(names))
    except (ValueError, IndexError) as exc:
        raise ValueError(f"{key}: {exc}; expected numbers, one per parameter on every row") from None
    if len(mu) == 0:
        raise ValueError(f"{key}: no sample rows; expected at least one row under the header")
    if not np.isfinite(mu).all():
        i, j = np.argwhere(~np.isfinite(mu))[0]
        raise ValueError(f"{key}: row {i + 1} {names[j]} = {mu[i, j]}: expected a finite number")
    return mu


def read_list(path: str, names: list[str], bounds: np.ndarray) -> np.ndarray:
    """An explicit design: CSV with a header naming the parameters, one sample a row, inside the bounds."""
    mu = csv_parameters(path, names, f"design.file = {path}")
    outside = (mu < bounds[:, 0]) | (mu > bounds[:, 1])
    if outside.any():
        i, j = np.argwhere(outside)[0]
        raise ValueError(f"design.file = {path}: row {i + 1} {names[j]} = {mu[i, j]}: expected within {list(bounds[j])}")
    return mu


def sample_sets(study: dict, space) -> dict[str, np.ndarray]:
    """train / test / validation parameters of a study in its parameter space (the list design feeds
    the train set; test and validation sets are always drawn, so a list design can still be evaluated)."""
    names, bounds, dists = list(space.names), space.bounds, list(space.distributions)
    d = study["design"]
    out = {}
    for index, name in enumerate(("train", "test", "validation")):
        spec = d[name]
        size, seed = spec.get("size", 0), spec.get("seed", study["seed"] + index + 1)
        if name == "train" and d["method"] == "list":
            out[name] = read_list(d["file"], names, bounds)
            continue
        if name == "train" and d["method"] == "grid":
            unit = unit_design("grid", 0, len(names), seed, d["grid_points"])
        else:
            # Test and validation sets use independent random draws, so they do not mirror the train design.
            method = d["method"] if name == "train" else "random"
            unit = unit_design(method, size, len(names), seed) if size else np.empty((0, len(names)))
        out[name] = scale(unit, bounds, dists)
    return out


def parameters_dataset(study: dict, space) -> xr.Dataset:
    """The parameters artefact: one (n_set, d) array per set, the box and the distributions."""
    from rom.artefacts import strings

    sets = sample_sets(study, space)
    data = {f"mu_{s}": ((f"{s}_sample", "parameter"), sets[s]) for s in SETS}
    data["bounds"] = (("parameter", "bound"), space.bounds)
    data["distribution"] = ("parameter", strings(space.distributions))
    return xr.Dataset(data, coords={"parameter": strings(space.names), "bound": strings(["lower", "upper"]),
                                    "parameter_units": ("parameter", strings(space.units))})


def n_chunks(n_samples: int, chunk_size: int) -> int:
    """simulate jobs of a set (one, even for an empty set: its artefact records zero samples)."""
    return max(1, math.ceil(n_samples / chunk_size))


def chunk_indices(n_samples: int, chunk_size: int, chunk: int) -> np.ndarray:
    """The sample indices of one chunk."""
    return np.arange(chunk * chunk_size, min((chunk + 1) * chunk_size, n_samples))
