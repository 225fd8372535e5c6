"""The residual dual norm evaluated by empirical interpolation (after Casenave, Ern, Lelievre,
"Accurate and efficient evaluation of the a posteriori error estimator in the reduced basis
method", ESAIM: M2AN 48 (2014)): a second stable evaluation beside the orthonormalized one
(estimators.ResidualRiesz).

Our reading of the method (the paper's abstract and its companion papers on nonintrusive EIM; the
choices below are ours): the quantity whose accuracy is lost is the norm of the residual's Riesz
representer rho(mu) = X^{-1} r(mu), a vector of n dofs that depends on mu. Instead of expanding
||rho||^2 over the N Q + P term representers (the textbook quadratic form, which cancels), rho is
approximated by EIM over the dofs:

    rho(mu) ~ I_d rho(mu) = sum_m lambda_m(mu) q_m,   B lambda(mu) = rho(mu)[i_1 .. i_d],

with magic dofs i_m and a collateral basis q_m built by the EIM greedy from representers at
training parameters, computed directly (one Riesz solve of the assembled residual per training
parameter: the N Q term representers are never formed). Online, the magic values are
rho(mu)[i_m] = y_m . r(mu) with y_m = X^{-1} e_{i_m} (d Riesz solves offline, X symmetric), so they
are a linear map of the residual coefficients w(mu): rho(mu)[i] = P w(mu), P[m, k] = y_m . g_k.
With the q_m orthonormalized in X (q^T = W^T T), ||I_d rho||_X = ||T B^{-1} P w||_2: online the same
kernel as the stable evaluation, a d x K matrix times w and a 2-norm, with no squared cancellation.

Choices: the training representers are normalized (the greedy then controls the relative error,
which is what an error bound needs); the greedy runs in long double and stops at `tol` (relative,
max norm) or at the rank of the representers (tol below linalg.dependent_tol: then I_d is exact on
their span, which contains rho(mu) for every mu when the training set is rich enough, and the
evaluation is a bound to rounding); a smaller d gives an approximation (not a bound) at a lower
online cost. All offline products and solves are in extended precision, as for ResidualRiesz.
The estimator is built for one basis size N (its training representers are those of the N-term
model); evaluations for a truncated model need their own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .eim import eim
from .estimators import residual_coefficients
from .linalg import EXTENDED, RefinedSolver, dependent_tol, gram_schmidt_rows, unit_lower_solve, x_norms


@dataclass
class EIMResidualNorm:
    E: np.ndarray            # (d, K) T B^{-1} P in double: ||r(mu)||_X' ~ ||E w(mu)||_2
    points: np.ndarray       # (d,) magic dofs
    train_error: np.ndarray  # (d + 1,) max relative training error (max norm) with 0..d terms
    seconds: float           # offline time

    @property
    def d(self) -> int:
        return len(self.points)

    def dual_norm(self, w: np.ndarray) -> np.ndarray:
        """||r||_X' for coefficient vectors w (n, K)."""
        return np.linalg.norm(w @ self.E[:, : w.shape[1]].T, axis=1)


def eim_residual_norm(X: sp.spmatrix, A_terms, f_terms: np.ndarray, V: np.ndarray, theta: np.ndarray,
                      phi: np.ndarray, c: np.ndarray, tol: float = 0.0, d_max: int | None = None) -> EIMResidualNorm:
    """Build the EIM evaluation of the residual dual norm for the basis V (N, n) from training
    parameters given by their coefficients theta (n_train, Q), phi (n_train, P) and reduced
    solutions c (n_train, N). tol = 0: up to the rank of the training representers."""
    t0 = time.perf_counter()
    X = sp.csr_matrix(X)
    A_ext = [sp.csr_matrix(A).astype(EXTENDED) for A in A_terms]
    f_ext = np.atleast_2d(f_terms).astype(EXTENDED)
    V_ext = V.astype(EXTENDED)
    P, Q, N = len(f_ext), len(A_ext), len(V)
    solver = RefinedSolver(X)
    X_ext = solver.A_ext
    # Training residuals formed directly in long double, and their representers (refined solves).
    U = np.einsum("ij,jk->ik", c.astype(EXTENDED), V_ext)
    r = phi.astype(EXTENDED) @ f_ext
    for q, A in enumerate(A_ext):
        r -= theta[:, q, None].astype(EXTENDED) * (A @ U.T).T
    rho = solver.solve(r)
    norms = x_norms(rho, X_ext)
    keep = norms > 0
    K = P + N * Q
    d_max = min(d_max or K, K, int(keep.sum()))
    basis = eim(rho[keep] / norms[keep, None], d_max, max(tol, dependent_tol(EXTENDED)))
    pts = basis.points
    # Magic values of rho(mu) = y_m . r(mu), y_m = X^{-1} e_{i_m}: P[m, k] = y_m . g_k.
    e = np.zeros((len(pts), X.shape[0]), dtype=EXTENDED)
    e[np.arange(len(pts)), pts] = 1
    Y = solver.solve(e)
    Pm = np.empty((len(pts), K), dtype=EXTENDED)
    Pm[:, :P] = Y @ f_ext.T
    for q, A in enumerate(A_ext):  # (A_q y_m) . v_n: columns P + n Q + q
        Pm[:, P + q::Q] = np.einsum("mj,nj->mn", (A @ Y.T).T, V_ext)
    # ||I_d rho||_X = ||T lambda||_2 with the collateral basis orthonormalized in X: q^T = W^T T.
    _, T = gram_schmidt_rows(basis.basis, X_ext)
    B = basis.basis[:, pts].T
    E = T @ unit_lower_solve(B, Pm)
    return EIMResidualNorm(np.ascontiguousarray(E, dtype=np.float64), pts, basis.max_errors.astype(float),
                           time.perf_counter() - t0)


def training_coefficients(model, mu: np.ndarray):
    """(theta, phi, c) of a ReducedBasisModel at parameters mu, for eim_residual_norm."""
    co = model.coefficients
    return co.theta(mu), co.phi(mu), model.solve_batch(mu)


def estimate(model, norm: EIMResidualNorm, mu: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Delta(mu) of `model` with the residual norm evaluated by EIM (op_error and alpha_LB as the model's)."""
    co = model.coefficients
    mu = np.atleast_2d(mu)
    r = norm.dual_norm(residual_coefficients(co.phi(mu), co.theta(mu), c))
    if co.op_error is not None:
        r = r + co.op_error(mu) * np.linalg.norm(c, axis=1)
    return r / co.alpha_lb(mu)
