"""Uncertainty propagation and sensitivity through surrogates, as functions on arrays (no I/O).

- ``statistics``: Monte Carlo statistics of surrogate outputs with the surrogate's own error stated
  apart from the sampling error: ``certified_statistics`` (RB outputs and rigorous bounds Delta:
  exact brackets of the sample mean and quantiles of the true output, kind 'certified'),
  ``predictive_statistics`` (GP mean and marginal std, propagated by sampling, kind 'predictive'),
  ``order_statistic_ranks`` (distribution-free quantile confidence intervals).
- ``sensitivity``: Sobol' indices with SALib: ``sobol_design`` (the design, to evaluate anywhere),
  ``sobol_analyze`` (indices of given outputs), ``evaluate`` (a vectorised model on a design, in
  chunks), ``sobol_indices`` (all three).

Each module's docstring states its contracts (shapes, guarantees, seeds, errors).
"""
from rom.uq.sensitivity import SobolDesign, SobolIndices, evaluate, sobol_analyze, sobol_design, sobol_indices
from rom.uq.statistics import (
    CertifiedStatistics,
    PredictiveStatistics,
    certified_statistics,
    order_statistic_ranks,
    predictive_statistics,
)

__all__ = [
    "CertifiedStatistics", "PredictiveStatistics", "SobolDesign", "SobolIndices", "certified_statistics",
    "evaluate", "order_statistic_ranks", "predictive_statistics", "sobol_analyze", "sobol_design", "sobol_indices",
]
