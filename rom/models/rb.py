"""Certified reduced-basis models for coercive problems A(mu) u = f(mu), and their reductor.

The model is affine in its coefficients: A_rb(mu) = sum_q theta_q(mu) V A_q V^T and
f_rb(mu) = sum_p phi_p(mu) V f_p. Where A(mu) is not affine, theta comes from an EIM
(rom.models.eim_rb) and `op_error` adds the operator approximation error to the bound:

    Delta(mu) = (||f - A_M(mu) V^T c||_{X'} + op_error(mu) ||c||_2) / alpha_LB(mu)

(V is X-orthonormal, so ||u_rb||_X = ||c||_2). The residual data are exact to long-double accuracy
(rom.reduction.estimators); the online double evaluation of ||R w|| errs by at most the allowance
rho(mu) = gamma_k || |R| |w(mu)| ||_2 (estimators.rounding_allowance), which the certified bound (the
default estimator method 'certified') adds:

    Delta(mu) = (||R w||_2 + rho(mu) + op_error(mu) ||c||_2) / alpha_LB(mu).

A load made affine by EIM (a black box's f(mu)) adds its share `rhs_error(mu)` >= ||f - f_M||_{X'} to
the numerator (the coefficients' rhs_error, None where the load is exact, as op_error for the operator).

Without it the bound is not a bound of the computed numbers where it is tight: for the thermal block at
mu = t (1, .., 1), A(mu) = t X and min-theta has effectivity exactly 1, so any rounding below the true
value is a violation. 'stable' is the same evaluation without rho (an accurate estimate, kept for
comparisons and the greedy); `rounding_bound(mu, c)` reports rho / alpha_LB. Delta is the bound of the
error of the returned (computed) c, whatever the rounding of the reduced solve: the residual is formed
from that c. Online work depends on N, Q, P only.

Thread limits are the caller's business (CLI, benchmark): nothing here enters a threadpool context.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy.linalg import lapack

from rom.reduction.estimators import (
    ResidualRiesz,
    dual_norm,
    gamma,
    residual_coefficients,
    rounding_allowance,
    rounding_index,
)
from rom.reduction.galerkin import IncrementalGalerkin, leading_rows

log = logging.getLogger("rom.rb")


class ExtrapolationError(ValueError):
    """A parameter outside the range the reduced model was trained on. A ValueError (bad input),
    so that the library does not depend on the CLI; the command layer reports it in one line."""


def min_theta_valid(X, A_terms) -> bool:
    """Whether min-theta is a coercivity lower bound: X = sum_q A_q (to rounding) and every A_q
    positive semidefinite, so that v^T A(mu) v >= min_q theta_q(mu) v^T X v. Semidefiniteness is
    checked by a sufficient condition (Gershgorin): A_q symmetric with a nonnegative diagonal at least
    the sum of the off-diagonal magnitudes of its row (to 16 eps), which element-wise stiffness
    sums on the project's meshes satisfy (the thermal block's blocks, the heat operator); a problem
    that fails it gets SCM instead (rom.reduction.scm)."""
    if not len(A_terms):
        return False
    X = sp.csr_matrix(X)
    terms = [sp.csr_matrix(A) for A in A_terms]
    if abs(X - sum(terms)).max() > 1e-12 * np.abs(X.data).max():
        return False
    for A in terms:
        if abs(A - A.T).max() > 16 * np.finfo(float).eps * max(np.abs(A.data).max(initial=0.0), np.finfo(float).tiny):
            return False
        d = A.diagonal()
        off = np.asarray(abs(A).sum(axis=1)).ravel() - np.abs(d)
        if np.any(d - off < -16 * np.finfo(float).eps * (np.abs(d) + off)):
            return False
    return True


@dataclass
class AffineCoefficients:
    """theta, phi from an affine problem; coercivity lower bound by min-theta (valid when
    X = sum_q theta_q(mu_ref) A_q with positive semidefinite A_q), or the problem's own bound."""

    problem: object
    theta_ref: np.ndarray | None = None

    def __post_init__(self):
        self._inv_ref = None if self.theta_ref is None else 1.0 / np.asarray(self.theta_ref, dtype=float)

    def theta(self, mu):
        return self.problem.theta(mu)

    def phi(self, mu):
        return self.problem.phi(mu)

    def alpha_lb(self, mu):
        if hasattr(self.problem, "coercivity_lower_bound"):
            return self.problem.coercivity_lower_bound(mu)
        return (self.problem.theta(mu) * self._inv_ref).min(axis=-1)

    op_error = rhs_error = None  # an affine operator and load: nothing approximated


class ExtrapolationPolicy:
    REFUSE, FLAG = "refuse", "flag"


def outside(mu: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(n, d) mask of the components of mu (n, d) outside the box `bounds` (d, 2), with a relative slack of
    1e-12 that keeps parameters on the boundary (up to rounding) inside."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    slack = 1e-12 * (hi - lo)
    return (mu < lo - slack) | (mu > hi + slack)


def check_parameters(mu: np.ndarray, bounds: np.ndarray, names=(), extrapolation: str = "refuse") -> np.ndarray:
    """Boolean mask of the parameters (rows of mu) outside the trained box `bounds` (d, 2); raises
    ExtrapolationError for a wrong number of components, and under 'refuse' for one outside."""
    mu = np.atleast_2d(np.asarray(mu, dtype=float))
    names = list(names)
    if mu.shape[1] != len(bounds):
        raise ExtrapolationError(f"mu has {mu.shape[1]} components: expected {len(bounds)} ({', '.join(names)})")
    lo, hi = bounds[:, 0], bounds[:, 1]
    out = outside(mu, bounds)
    if out.any() and extrapolation == ExtrapolationPolicy.REFUSE:
        i, j = np.argwhere(out)[0]
        name = names[j] if names else f"mu_{j}"
        raise ExtrapolationError(f"{name} = {mu[i, j]:g} (query {i}) is outside the trained range "
                                 f"[{lo[j]:g}, {hi[j]:g}]; set rb.extrapolation: flag to evaluate it anyway "
                                 "(the error bound then still holds only if the coercivity bound does)")
    return out.any(axis=1)


@dataclass
class ReducedBasisModel:
    A_rb: np.ndarray          # (Q, N, N)
    f_rb: np.ndarray          # (P, N)
    R: np.ndarray             # (K_rows, K) stable residual factor
    G: np.ndarray             # (K, K) textbook Gram matrix
    coefficients: object      # theta(mu), phi(mu), alpha_lb(mu), op_error(mu) and rhs_error(mu) or None
    bounds: np.ndarray        # (d, 2) trained parameter range
    parameter_names: list = field(default_factory=list)
    extrapolation: str = ExtrapolationPolicy.REFUSE

    def __post_init__(self):
        # Online data laid out once, so that a single query is a handful of small BLAS calls.
        # The residual coefficients are w = [phi, -(c theta^T).ravel()], so R w = R_f phi + S(theta) c
        # with S(theta) = -sum_q R_{A,q} theta_q: one product theta @ B gives both A_N(theta) and S.
        Q, N = self.A_rb.shape[:2]
        P = self.f_rb.shape[0]
        K = P + N * Q
        self._A_flat = np.ascontiguousarray(self.A_rb.reshape(Q, N * N))
        self._R = np.ascontiguousarray(self.R[:, :K])
        R_A = self._R[:, P:].reshape(-1, N, Q)
        self._B = np.ascontiguousarray(np.hstack([self._A_flat, -R_A.transpose(2, 0, 1).reshape(Q, -1)]))
        self._R_f = np.ascontiguousarray(self._R[:, :P])
        self._lo, self._hi = self.bounds[:, 0], self.bounds[:, 1]
        # Rounding allowance rho = gamma_k || |R| |w| ||_2 = gamma_k || |R_f| |phi| + |S|(|theta|) |c| ||_2
        # with |S|(|theta|) = sum_q |R_{A,q}| |theta_q|: the same layout as the residual, in magnitudes.
        self._R_abs = np.abs(self._R)
        self._R_f_abs = np.ascontiguousarray(self._R_abs[:, :P])
        self._B_abs = np.ascontiguousarray(np.abs(self._B[:, N * N:]))
        self._gamma = gamma(rounding_index(self._R))

    @property
    def N(self) -> int:
        return self.A_rb.shape[1]

    def truncated(self, N: int) -> ReducedBasisModel:
        """The model with the first N basis vectors (the greedy basis is hierarchical)."""
        if not 0 < N <= self.N:
            raise ValueError(f"N = {N}: expected 1..{self.N}")
        P, Q = self.f_rb.shape[0], self.A_rb.shape[0]
        K = P + N * Q
        # R is built column by column (echelon form): rows that are zero on the first K columns
        # contribute nothing to R w, so they are dropped from the online work (galerkin.leading_rows).
        return replace(self, A_rb=np.ascontiguousarray(self.A_rb[:, :N, :N]), f_rb=np.ascontiguousarray(self.f_rb[:, :N]),
                       R=leading_rows(self.R, K), G=np.ascontiguousarray(self.G[:K, :K]))

    # -- parameter checks ---------------------------------------------------------------------
    def check(self, mu: np.ndarray) -> np.ndarray:
        """Boolean mask of extrapolated parameters; raises ExtrapolationError under 'refuse'."""
        return check_parameters(mu, self.bounds, self.parameter_names, self.extrapolation)

    # -- online: one parameter ------------------------------------------------------------------
    def _single(self, mu):
        mu = np.asarray(mu, dtype=float).reshape(1, -1)
        if mu.shape[1] != len(self._lo) or not ((self._lo <= mu) & (mu <= self._hi)).all():
            self.check(mu)  # raises, or flags, with the full message
        co = self.coefficients
        theta, phi = co.theta(mu)[0], co.phi(mu)[0]
        N = self.N
        TB = theta @ self._B
        lu, piv, c, info = lapack.dgesv(TB[: N * N].reshape(N, N), phi @ self.f_rb)
        if info != 0:
            raise np.linalg.LinAlgError(f"reduced system singular at mu = {mu[0].tolist()}")
        return mu, theta, phi, TB, c

    def solve(self, mu: np.ndarray) -> np.ndarray:
        """Reduced coefficients c (N,) for one parameter (no estimate: one product and one dgesv)."""
        return self._single(mu)[4]

    def solve_and_estimate(self, mu: np.ndarray, method: str = "certified") -> tuple[np.ndarray, float]:
        """(c, Delta) for one parameter with the least overhead (the product theta @ B gives the
        reduced operator and the residual factor, LAPACK called directly). method: 'certified'
        (the bound, with its rounding allowance), 'stable' (without it) or 'textbook'."""
        mu, theta, phi, TB, c = self._single(mu)
        co = self.coefficients
        if method not in ("certified", "stable"):
            return c, float(self._estimate(mu, theta[None], phi[None], c[None, :], method)[0])
        N = self.N
        Rw = self._R_f @ phi + TB[N * N:].reshape(-1, N) @ c
        r = math.sqrt(Rw @ Rw)
        if method == "certified":
            Rw_abs = self._R_f_abs @ np.abs(phi) + (np.abs(theta) @ self._B_abs).reshape(-1, N) @ np.abs(c)
            r += self._gamma * math.sqrt(Rw_abs @ Rw_abs)
        if co.op_error is not None:
            r += co.op_error(mu)[0] * math.sqrt(c @ c)
        if co.rhs_error is not None:
            r += co.rhs_error(mu)[0]
        alpha = float(co.alpha_lb(mu)[0])
        return c, r / alpha if alpha > 0 else math.inf

    # -- online: batches --------------------------------------------------------------------------
    def _system(self, mu):
        theta = self.coefficients.theta(mu)
        phi = self.coefficients.phi(mu)
        N = self.N
        A = (theta @ self._A_flat).reshape(-1, N, N)
        f = phi @ self.f_rb
        return theta, phi, A, f

    def solve_batch(self, mu: np.ndarray) -> np.ndarray:
        """c (n, N) for a batch of parameters: one stacked LAPACK solve, no loop over parameters."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        self.check(mu)
        _, _, A, f = self._system(mu)
        return np.linalg.solve(A, f[..., None])[..., 0]

    def solve_and_estimate_batch(self, mu: np.ndarray, method: str = "certified") -> tuple[np.ndarray, np.ndarray]:
        """(c (n, N), Delta (n,)) for a batch of parameters."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        extrapolated = self.check(mu)
        theta, phi, A, f = self._system(mu)
        c = np.linalg.solve(A, f[..., None])[..., 0]
        delta = self._estimate(mu, theta, phi, c, method)
        if extrapolated.any():
            log.warning("%d of %d queries extrapolate beyond the trained parameter range", extrapolated.sum(), len(mu))
        return c, delta

    def estimate_batch(self, mu: np.ndarray, c: np.ndarray, method: str = "certified") -> np.ndarray:
        """Delta (n,) for given reduced solutions c (n, N)."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        return self._estimate(mu, self.coefficients.theta(mu), self.coefficients.phi(mu), c, method)

    def _estimate(self, mu, theta, phi, c, method):
        w = residual_coefficients(phi, theta, c)
        r = dual_norm(w, self._R, self.G, "stable" if method == "certified" else method)
        if method == "certified":
            r = r + rounding_allowance(np.abs(w), self._R_abs)
        if self.coefficients.op_error is not None:
            r = r + self.coefficients.op_error(mu) * np.linalg.norm(c, axis=1)
        if self.coefficients.rhs_error is not None:
            r = r + self.coefficients.rhs_error(mu)
        alpha = self.coefficients.alpha_lb(mu)
        # No certificate where alpha_LB <= 0 (an extrapolated parameter where a theta_q <= 0, SCM or the EIM error
        # leaving none): +inf, as the single query says, never a negative number or 0/0.
        return np.where(alpha > 0, r / np.where(alpha > 0, alpha, 1.0), np.inf)

    def rounding_bound(self, mu: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Worst-case bound (n,) of the online rounding error of the stable Delta for reduced
        solutions c (n, N): rho(mu) / alpha_LB(mu), rho = gamma_k || |R| |w(mu)| ||_2 (the term the
        certified Delta adds)."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        co = self.coefficients
        w = residual_coefficients(co.phi(mu), co.theta(mu), c)
        return rounding_allowance(np.abs(w), self._R_abs) / co.alpha_lb(mu)

    # -- artefact -----------------------------------------------------------------------------
    def to_dataset(self, prefix: str = "") -> xr.Dataset:
        # Every dimension carries the prefix: models of different basis sizes (a dual basis, another
        # kind) share one artefact without a clash of their mode dimensions.
        p = prefix
        return xr.Dataset({
            f"{p}A_rb": ((f"{p}term", f"{p}mode", f"{p}mode_"), self.A_rb, {"long_name": "V A_q V^T"}),
            f"{p}f_rb": ((f"{p}rhs_term", f"{p}mode"), self.f_rb, {"long_name": "V f_p"}),
            f"{p}R": ((f"{p}riesz_row", f"{p}riesz"), self.R,
                      {"long_name": "stable residual factor: Riesz representers Z^T = W^T R, W X-orthonormal "
                                    "(formed in extended precision)"}),
            f"{p}G": ((f"{p}riesz", f"{p}riesz_"), self.G,
                      {"long_name": "textbook residual Gram matrix Z X Z^T"}),
        })

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, coefficients, bounds, names=(), extrapolation="refuse",
                     prefix: str = "") -> ReducedBasisModel:
        p = prefix
        return cls(ds[f"{p}A_rb"].values, ds[f"{p}f_rb"].values, ds[f"{p}R"].values, ds[f"{p}G"].values,
                   coefficients, np.asarray(bounds, dtype=float), list(names), extrapolation)


class CoerciveRBReductor(IncrementalGalerkin):
    """Galerkin projection onto an X-orthonormal basis grown one snapshot at a time, with the
    residual estimator data kept in step (rows of V are basis vectors; galerkin.IncrementalGalerkin,
    re-orthonormalized when the basis loses X-orthonormality).

    precision: 'extended' (default) or 'double' for the residual data (estimators.ResidualRiesz);
    solver: the X solver of the residual data (galerkin.IncrementalGalerkin)."""

    def __init__(self, X: sp.spmatrix, A_terms, f_terms: np.ndarray, coefficients, bounds, names=(),
                 extrapolation="refuse", estimator_method: str = "stable", precision: str = "extended",
                 solver=None):
        self.coefficients, self.bounds, self.names = coefficients, np.asarray(bounds, float), list(names)
        self.extrapolation, self.estimator_method = extrapolation, estimator_method
        super().__init__(X, A_terms, f_terms, precision, log, solver)

    def model(self) -> ReducedBasisModel:
        return ReducedBasisModel(self.A_rb.copy(), self.f_rb.copy(), self.riesz.R.copy(), self.riesz.G.copy(),
                                 self.coefficients, self.bounds, self.names, self.extrapolation)

    def model_in_precision(self, precision: str) -> ReducedBasisModel:
        """The same reduced model with its residual data formed again from the basis in `precision`
        ('double' or 'extended'): to measure what the precision of those data does to the bound."""
        riesz = ResidualRiesz(self.X, self.A_terms, self.f_terms, precision, self.solver)
        for v in self.V:
            riesz.extend(v)
        return replace(self.model(), R=riesz.R, G=riesz.G)

    def estimate(self, mu: np.ndarray) -> np.ndarray:
        """Relative estimates Delta(mu) / ||u_rb(mu)||_X over a training set (for the greedy);
        training points are inside the range by construction, so no extrapolation check."""
        m = replace(self.model(), extrapolation=ExtrapolationPolicy.FLAG)
        c = m.solve_batch(mu)
        # 'stable' (rb.estimator) names the residual evaluation; the greedy ranks by the bound itself.
        method = "certified" if self.estimator_method == "stable" else self.estimator_method
        delta = m.estimate_batch(mu, c, method)
        return delta / np.maximum(np.linalg.norm(c, axis=1), np.finfo(float).tiny)
