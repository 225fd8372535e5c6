"""Sobol' sensitivity indices (first order S1, total ST) with SALib 1.5: the Saltelli design on a
scrambled Sobol' sequence (``SALib.sample.sobol.sample``) and the Saltelli 2010 / Jansen estimators
with bootstrap confidence intervals (``SALib.analyze.sobol.analyze``).

``sobol_design(names, bounds, N, seed=0, dists=None, second_order=False)`` -> ``SobolDesign``
    names: d distinct parameter names. bounds: d rows, one per parameter, read by its distribution
    (``dists``, default all 'unif'; SALib's parameters): 'unif' (low, high), low < high;
    'norm' (mean, std), std > 0; 'lognorm' (mean, std) of ln(mu), std > 0; 'triang' (start, end,
    peak as a fraction of end - start in [0, 1)), start < end. N: base sample size, a power of 2.
    seed: the scrambling seed (same arguments, same design, bitwise). ``design.X`` (n_eval, d) holds
    the points, n_eval = N (d + 2), or N (2 d + 2) with second_order. A caller may evaluate X with
    any model, in any batches or processes, as long as the rows stay in order.
``sobol_analyze(design, Y, conf_level=0.95, num_resamples=100)`` -> ``SobolIndices``
    Y (n_eval, k) or (n_eval,): the outputs on design.X, row for row, all finite.
``evaluate(design, model, chunk_rows=65536)`` -> Y (n_eval, k): a vectorised model(mu (n, d)) ->
    (n, k) or (n,) called on chunks of at most chunk_rows rows in design order; a non-finite output
    is refused naming its design row.
``sobol_indices(names, bounds, model, N, seed=0, dists=None, second_order=False, conf_level=0.95,
    num_resamples=100, chunk_rows=65536)``: the three above in one call.

SobolIndices: S1, S1_conf, ST, ST_conf (k, d) (S2, S2_conf (k, d, d), upper triangle, with
second_order, else None); a *_conf is the half-width of SALib's bootstrap interval at conf_level
(normal approximation: z_{(1+level)/2} times the std of ``num_resamples`` bootstrap estimates;
the resampling seed derives from the design's seed), so S +- conf. The bootstrap treats the
scrambled Sobol' rows as i.i.d., so on smooth models it overstates the error (conservative). An output that is constant on
the design has no variance to split: its indices are NaN and ``constant[j]`` is True.
``evaluations``: the number of model runs, n_eval. Bad input is a one-line ValueError naming the
argument.
"""
from dataclasses import dataclass

import numpy as np
from SALib.analyze import sobol as sobol_analysis
from SALib.sample import sobol as sobol_sampling

DISTRIBUTIONS = {"unif": 2, "norm": 2, "lognorm": 2, "triang": 3}  # name -> number of parameters


@dataclass
class SobolDesign:
    names: list[str]
    problem: dict
    N: int
    seed: int
    second_order: bool
    X: np.ndarray

    @property
    def evaluations(self) -> int:
        return self.X.shape[0]


@dataclass
class SobolIndices:
    names: list[str]
    N: int
    evaluations: int
    conf_level: float
    num_resamples: int
    S1: np.ndarray
    S1_conf: np.ndarray
    ST: np.ndarray
    ST_conf: np.ndarray
    S2: np.ndarray | None
    S2_conf: np.ndarray | None
    constant: np.ndarray


def _check_parameters(names, bounds, dists) -> tuple[list[str], list[list[float]], list[str]]:
    names = [str(n) for n in names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names: expected distinct parameter names, got {names}")
    d = len(names)
    dists = ["unif"] * d if dists is None else [str(x) for x in dists]
    if len(dists) != d:
        raise ValueError(f"dists: {len(dists)} distributions for {d} parameters")
    if len(bounds) != d:
        raise ValueError(f"bounds: {len(bounds)} rows for {d} parameters")
    rows = []
    for i, (name, dist, row) in enumerate(zip(names, dists, bounds)):
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"dists: unknown distribution {dist!r} for {name!r}; choose one of {sorted(DISTRIBUTIONS)}")
        row = [float(v) for v in np.ravel(row)]
        where = f"for {name!r} (row {i}, {dist})"
        if len(row) != DISTRIBUTIONS[dist] or not np.all(np.isfinite(row)):
            raise ValueError(f"bounds: expected {DISTRIBUTIONS[dist]} finite values {where}, got {row}")
        if dist == "unif" and not row[0] < row[1]:
            raise ValueError(f"bounds: reversed or empty interval {where}: low {row[0]} >= high {row[1]}")
        if dist in ("norm", "lognorm") and not row[1] > 0:
            raise ValueError(f"bounds: std {row[1]} {where} must be > 0")
        if dist == "triang" and not (row[0] < row[1] and 0 <= row[2] < 1):
            raise ValueError(f"bounds: need start < end and peak fraction in [0, 1) {where}, got {row}")
        rows.append(row)
    return names, rows, dists


def _check_power_of_two(N) -> int:
    if isinstance(N, bool) or int(N) != N or N < 2 or int(N) & (int(N) - 1):
        raise ValueError(f"N: the base sample size must be a power of 2 (>= 2), got {N}")
    return int(N)


def sobol_design(names, bounds, N: int, seed: int = 0, dists=None, second_order: bool = False) -> SobolDesign:
    names, rows, dists = _check_parameters(names, bounds, dists)
    N = _check_power_of_two(N)
    problem = {"num_vars": len(names), "names": names, "bounds": rows, "dists": dists}
    X = sobol_sampling.sample(problem, N, calc_second_order=second_order, scramble=True, seed=int(seed))
    return SobolDesign(names, problem, N, int(seed), bool(second_order), X)


def _outputs(design: SobolDesign, Y, name="Y") -> np.ndarray:
    Y = np.asarray(Y, dtype=float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if Y.ndim != 2 or Y.shape[0] != design.evaluations:
        raise ValueError(f"{name}: expected shape ({design.evaluations}, k) for the design's rows, got {Y.shape}")
    bad = np.flatnonzero(~np.all(np.isfinite(Y), axis=1))
    if bad.size:
        raise ValueError(f"{name}: non-finite output at design row {bad[0]} (mu = {design.X[bad[0]].tolist()})")
    return Y


def sobol_analyze(design: SobolDesign, Y, conf_level: float = 0.95, num_resamples: int = 100) -> SobolIndices:
    Y = _outputs(design, Y)
    if not 0 < conf_level < 1:
        raise ValueError(f"conf_level: must lie in (0, 1), got {conf_level}")
    if int(num_resamples) != num_resamples or num_resamples < 2:
        raise ValueError(f"num_resamples: must be an integer >= 2, got {num_resamples}")
    k, d = Y.shape[1], len(design.names)
    # SALib falls back to the global numpy RNG for seed 0 (`if seed:`): derive a nonzero one.
    boot_seed = int(np.random.SeedSequence([design.seed, 1]).generate_state(1)[0]) | 1
    out = {key: np.full((k, d), np.nan) for key in ("S1", "S1_conf", "ST", "ST_conf")}
    s2 = {key: np.full((k, d, d), np.nan) for key in ("S2", "S2_conf")} if design.second_order else {}
    constant = np.ptp(Y, axis=0) == 0
    problem = dict(design.problem, names=np.asarray(design.names, dtype=object))  # pandas warns on a list
    for j in np.flatnonzero(~constant):  # one SALib call per output
        S = sobol_analysis.analyze(problem, Y[:, j], calc_second_order=design.second_order,
                                   num_resamples=int(num_resamples), conf_level=conf_level, seed=boot_seed)
        for key in (*out, *s2):
            (out | s2)[key][j] = S[key]
    return SobolIndices(design.names, design.N, design.evaluations, conf_level, int(num_resamples),
                        out["S1"], out["S1_conf"], out["ST"], out["ST_conf"], s2.get("S2"), s2.get("S2_conf"),
                        constant)


def evaluate(design: SobolDesign, model, chunk_rows: int = 65536) -> np.ndarray:
    """model(design.X) in chunks of at most chunk_rows rows, in order; outputs (n_eval, k)."""
    X, parts, step = design.X, [], int(chunk_rows)
    if step < 1:
        raise ValueError(f"chunk_rows: must be >= 1, got {chunk_rows}")
    for a in range(0, X.shape[0], step):
        rows = min(step, X.shape[0] - a)
        y = np.asarray(model(X[a:a + rows]), dtype=float)
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[0] != rows or (parts and y.shape[1] != parts[0].shape[1]):
            raise ValueError(f"model: returned shape {y.shape} for {rows} points (expected ({rows}, k), k fixed)")
        parts.append(y)
    return _outputs(design, np.concatenate(parts), name="model")


def sobol_indices(names, bounds, model, N: int, seed: int = 0, dists=None, second_order: bool = False,
                  conf_level: float = 0.95, num_resamples: int = 100, chunk_rows: int = 65536) -> SobolIndices:
    design = sobol_design(names, bounds, N, seed, dists, second_order)
    return sobol_analyze(design, evaluate(design, model, chunk_rows), conf_level, num_resamples)
