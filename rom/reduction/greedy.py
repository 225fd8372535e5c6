"""Weak greedy basis generation driven by an a posteriori error estimator.

The greedy only needs two callables and a reductor, so it does not know how the full-order model
is solved (PETSc under MPI, in the commands) nor how the estimator is evaluated:

    fom_solve(mu) -> u (n_dofs,)             one full-order solve
    reductor.extend(u) -> bool                orthonormalize u into the basis (False: dependent)
    reductor.estimate(mu_train) -> (n,)       relative error estimates Delta(mu) / ||u_rb(mu)||_X
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("rom.greedy")


@dataclass
class GreedyHistory:
    selected: list[int] = field(default_factory=list)        # training index chosen at each step
    max_estimate: list[float] = field(default_factory=list)  # max relative estimate with N = 1, 2, ..
    fom_seconds: list[float] = field(default_factory=list)
    stop_reason: str = ""
    warning: str = ""


def stopped(h, estimate: float, tol: float, N: int, max_modes: int, what: str) -> bool:
    """A greedy's stopping test: below the tolerance, or at the basis-size cap (with a warning); sets
    h.stop_reason (and h.warning)."""
    if estimate < tol:
        h.stop_reason = "tolerance"
        return True
    if N >= max_modes:
        h.stop_reason = "N_max"
        h.warning = f"tolerance {tol:g} not reached at N_max = {max_modes} (max_modes): max relative {what} {estimate:.3e}"
        log.warning(h.warning)
        return True
    return False


def weak_greedy(mu_train: np.ndarray, fom_solve, reductor, tol: float, max_modes: int,
                first: int = 0) -> GreedyHistory:
    """Grow the reductor's basis from the snapshot at mu_train[first] by
    mu* = argmax_{mu in Xi} Delta(mu) until max Delta < tol or N = max_modes (stop reason 'N_max').

    An unreachable tolerance is not an error: the greedy stops at the cap and records a warning.
    One log line per step: the basis size, the worst estimate and where, the step's FOM and
    estimator seconds."""
    h = GreedyHistory()
    i = first
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        u = fom_solve(mu_train[i])
        h.fom_seconds.append(time.perf_counter() - t0)
        if not reductor.extend(u):
            h.stop_reason = "dependent"
            h.warning = (f"snapshot at training parameter {i} lies in the span of the basis (N = {reductor.N}); "
                         f"tolerance {tol:g} not reached, max estimate {h.max_estimate[-1] if h.max_estimate else np.nan:.3e}")
            log.warning(h.warning)
            break
        h.selected.append(i)
        est = reductor.estimate(mu_train)
        # A NaN estimate must not hide a parameter: treat it as the worst one.
        est = np.where(np.isfinite(est), est, np.inf)
        i = int(np.argmax(est))
        h.max_estimate.append(float(est[i]))
        now = time.perf_counter()
        log.info("greedy N=%d/%d: max relative estimate %.3e at training parameter %d (FOM %.2f s, basis and "
                 "estimates over %d parameters %.2f s, %.1f s elapsed)", reductor.N, max_modes, est[i], i,
                 h.fom_seconds[-1], len(mu_train), now - t0 - h.fom_seconds[-1], now - t_start)
        if stopped(h, est[i], tol, reductor.N, max_modes, "estimate"):
            break
    return h
