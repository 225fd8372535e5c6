"""Coefficients of reduced-basis models whose operator is made affine by empirical interpolation.

* FunctionEIMCoefficients: EIM of the coefficient function g(x; mu) at magic points (intrusive:
  the operator terms A_m are assembled from the collateral basis).
* MatrixEIMCoefficients: nonintrusive matrix EIM, A(mu) ~ sum_m beta_m q_m with q_m combinations
  of matrices A(mu_l) delivered by the full-order model and beta from M entries of A(mu).

Both supply theta(mu), phi(mu), alpha_lb(mu) and op_error(mu): an indicator of the operator
error ||A(mu) - A_M(mu)||_{X -> X'}, from the interpolation error at magic point M + 1 (not a
rigorous bound: the EIM error is assumed to be dominated by its next term).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import solve_triangular


def _beta(B, values):
    return solve_triangular(B, values.T, lower=True, unit_diagonal=True, check_finite=False).T


@dataclass
class FunctionEIMCoefficients:
    problem: object        # NonaffineDiffusion-like: g, eim_theta, phi, coercivity_lower_bound, kappa_scale
    xy: np.ndarray         # (M + 1, 2) magic points, the last one the error indicator's
    B: np.ndarray          # (M, M) interpolation matrix
    next_row: np.ndarray   # (M,) q_m at the indicator point

    def _split(self, mu):
        vals = self.problem.g(self.xy, mu)
        M = len(self.B)
        return _beta(self.B, vals[:, :M]), vals[:, M:]

    def theta(self, mu):
        return self.problem.eim_theta(mu, self._split(mu)[0])

    def phi(self, mu):
        return self.problem.phi(mu)

    def alpha_lb(self, mu):
        return self.problem.coercivity_lower_bound(mu)

    def op_error(self, mu):
        beta, nxt = self._split(mu)
        if nxt.shape[1] == 0:
            return np.zeros(len(beta))
        return self.problem.kappa_scale(mu) * np.abs(nxt[:, 0] - beta @ self.next_row)


@dataclass
class MatrixEIMCoefficients:
    problem: object        # only phi and coercivity_lower_bound are used: the operator is a black box
    probe: object          # mu (n, d) -> A(mu) at the M + 1 magic entries (n, M + 1)
    B: np.ndarray          # (M, M)
    next_row: np.ndarray   # (M,) q_m at the indicator entry
    x_next: float          # X at the indicator entry: scales an entry error to a coefficient error

    def theta(self, mu):
        return _beta(self.B, self.probe(mu)[:, : len(self.B)])

    def phi(self, mu):
        return self.problem.phi(mu)

    def alpha_lb(self, mu):
        return self.problem.coercivity_lower_bound(mu)

    def op_error(self, mu):
        a = self.probe(mu)
        M = len(self.B)
        if a.shape[1] == M:
            return np.zeros(len(a))
        return np.abs(a[:, M] - _beta(self.B, a[:, :M]) @ self.next_row) / abs(self.x_next)
