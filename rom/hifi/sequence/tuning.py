"""Online choice of one scalar solver parameter (e.g. the SOR relaxation omega) across a sequence of related
linear systems, fed only by the iteration count of each solve (after "Learning to Relax: Setting Solver
Parameters Across a Sequence of Linear System Instances").

The range is discretized into a grid of arms. Policy `bandit`: every arm once, then the arm with the lowest
optimistic cost mean_a - s sqrt(2 ln t / n_a), with s the pooled spread of repeated pulls of one arm (the
noise the sequence's changing systems put on the counts, at least one iteration: counts are integers), so
arms whose first count was far above the best are not tried again. Policy `contextual`: the same with
kernel-weighted means and counts around the current system's parameter (Gaussian kernel in the unit cube of
the parameters), approaching the best value per region of the parameter space.
"""
from __future__ import annotations

import numpy as np

POLICIES = ("bandit", "contextual")
# Options that change what a solve computes (its accuracy or its method), not how fast it gets there.
UNTUNABLE = ("ksp_rtol", "ksp_atol", "ksp_divtol", "ksp_max_it", "ksp_norm_type", "ksp_type", "pc_type")


def grid(lower: float, upper: float, points: int, scale: str = "linear") -> np.ndarray:
    """The arms: `points` values from lower to upper (both included), evenly spaced or geometric."""
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise ValueError(f"simulate.tune.range = {[lower, upper]}: expected two finite numbers, lower < upper")
    if points < 2:
        raise ValueError(f"simulate.tune.points = {points}: expected at least 2")
    if scale == "log":
        if lower <= 0:
            raise ValueError(f"simulate.tune.range = {[lower, upper]}: a log scale expects lower > 0")
        return np.geomspace(lower, upper, points)
    if scale != "linear":
        raise ValueError(f"simulate.tune.scale = {scale!r}: expected linear or log")
    return np.linspace(lower, upper, points)


def check_option(option: str) -> str:
    name = str(option).lstrip("-")
    if not name or name in UNTUNABLE:
        raise ValueError(f"simulate.tune.option = {option!r}: changes what the solve computes; expected a scalar "
                         "solver parameter such as pc_sor_omega")
    return name


class Bandit:
    """Arms `values`; `choose(context)` the arm for the next solve, `observe(arm, iterations, context)` its
    outcome. `context` (d,) is the system's parameter in unit coordinates (used by `contextual`)."""

    def __init__(self, values: np.ndarray, policy: str = "bandit", bandwidth: float = 0.2):
        if policy not in POLICIES:
            raise ValueError(f"simulate.tune.policy = {policy!r}: expected one of {', '.join(POLICIES)}")
        self.values = np.asarray(values, dtype=float)
        self.policy, self.bandwidth = policy, float(bandwidth)
        self.arms: list[int] = []
        self.costs: list[float] = []
        self.contexts: list[np.ndarray] = []

    def _spread(self, arms: np.ndarray, costs: np.ndarray) -> float:
        """Pooled standard deviation of the counts of repeated arms; 1 iteration at least."""
        m = len(self.values)
        n = np.bincount(arms, minlength=m)
        mean = np.bincount(arms, weights=costs, minlength=m) / np.maximum(n, 1)
        dof = int((n - 1).clip(0).sum())
        ss = float(((costs - mean[arms]) ** 2).sum())
        return max(1.0, np.sqrt(ss / dof)) if dof > 0 else 1.0

    def choose(self, context: np.ndarray | None = None) -> int:
        m = len(self.values)
        arms, costs = np.asarray(self.arms, dtype=np.int64), np.asarray(self.costs, dtype=float)
        n = np.bincount(arms, minlength=m).astype(float)
        untried = np.flatnonzero(n == 0)
        if len(untried):
            return int(untried[0])
        t = len(arms) + 1
        s = self._spread(arms, costs)
        if self.policy == "contextual" and context is not None:
            Z = np.asarray(self.contexts, dtype=float)
            w = np.exp(-0.5 * ((Z - np.asarray(context, dtype=float)) ** 2).sum(axis=1) / self.bandwidth ** 2)
            n_eff = np.bincount(arms, weights=w, minlength=m)
            mean_local = np.bincount(arms, weights=w * costs, minlength=m) / np.maximum(n_eff, 1e-300)
            mean_global = np.bincount(arms, weights=costs, minlength=m) / n
            # Where an arm has no weight nearby, its global mean stands in, with one pull's confidence.
            lam = n_eff / (n_eff + 1.0)
            mean = lam * mean_local + (1 - lam) * mean_global
            n = n_eff + 1.0
        else:
            mean = np.bincount(arms, weights=costs, minlength=m) / n
        return int(np.argmin(mean - s * np.sqrt(2.0 * np.log(t) / n)))

    def observe(self, arm: int, iterations: float, context: np.ndarray | None = None):
        self.arms.append(int(arm))
        self.costs.append(float(iterations))
        self.contexts.append(np.zeros(0) if context is None else np.asarray(context, dtype=float))
