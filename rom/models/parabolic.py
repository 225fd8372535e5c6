"""Certified reduced basis for linear parabolic problems: implicit Euler, POD-greedy and a
space-time energy error bound.

Full-order model, for k = 1..K with A(mu) = sum_q theta_q(mu) A_q coercive in X (alpha_LB(mu)),
f(mu) = sum_p phi_p(mu) f_p and u^0(mu) = sum_j psi_j(mu) u0_j:

    M (u^k - u^{k-1}) / dt + A(mu) u^k = f(mu).

The RB trajectory u_N^k = V^T c^k (V X-orthonormal) solves the Galerkin projection of the same
steps, from c^0 = the M-orthogonal projection of u^0. Its time-step residual is
R^k = f - A u_N^k - M (u_N^k - u_N^{k-1}) / dt, and the error e^k = u^k - u_N^k solves
M (e^k - e^{k-1}) / dt + A e^k = R^k. Testing with e^k, using 2 (a - b) a >= a^2 - b^2,
coercivity and Young's inequality R(e) <= ||R||^2_X' / (2 alpha) + alpha ||e||^2_X / 2:

    ||e^k||_M^2 - ||e^{k-1}||_M^2 + dt alpha ||e^k||_X^2 <= dt ||R^k||_X'^2 / alpha,

and summed over the steps, for every k (alpha = alpha_LB(mu) <= the coercivity constant):

    ||e^k||_M^2 + alpha dt sum_{j<=k} ||e^j||_X^2  <=  Delta_k^2
        = ||e^0||_M^2 + (dt / alpha) sum_{j<=k} ||R^j||_X'^2.

The left side is the space-time energy norm of the error (M-norm at the time k, X-norm integrated
over time with weight alpha). ||R^j||_X' is the stable evaluation ||R w^j||_2 of a
`ResidualRiesz` whose terms are A_q v_n and M v_n; ||e^0||_M comes from the M-Gram matrix of the
projection errors of the initial terms, formed explicitly (zero up to rounding when the initial
terms are in the basis, the default).

POD-greedy (Haasdonk-Ohlberger 2008): at each step the training parameter with the largest
relative bound Delta_K / ||u_N||, its FOM trajectory projected onto the X-orthogonal complement of
the basis, and the leading POD mode(s) of that projection error added.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from rom.hifi import fem
from rom.reduction.estimators import ResidualRiesz
from rom.reduction.pod import pod

log = logging.getLogger("rom.parabolic")

# A new direction whose X-norm after orthogonalization to the basis is below this fraction of its
# norm is dependent (to rounding) and not added.
DEPENDENT_TOL = 1e-12


@dataclass
class ParabolicSystem:
    """A linear parabolic problem in the form above, on the free dofs."""

    X: sp.spmatrix
    M: sp.spmatrix
    A_terms: list
    f_terms: np.ndarray      # (P, n)
    u0_terms: np.ndarray     # (J, n)
    coefficients: object     # theta(mu) (n, Q), phi(mu) (n, P), alpha_lb(mu) (n,), op_error None or (n,)
    psi: object              # mu (n, d) -> (n, J) initial-state coefficients
    dt: float
    steps: int


class HeatCoefficients:
    """The `heat` problem as M u_t + alpha K u = alpha sum_s T_s l_s: one operator term K with
    theta = alpha, load terms the side liftings with phi_s = alpha T_s, and X = K, so the
    coercivity constant is alpha exactly."""

    op_error = None

    def __init__(self, alpha: float):
        self.alpha = float(alpha)

    def theta(self, mu):
        return np.full((len(np.atleast_2d(mu)), 1), self.alpha)

    def phi(self, mu):
        return self.alpha * np.atleast_2d(np.asarray(mu, dtype=float))[:, 1:]

    def alpha_lb(self, mu):
        return np.full(len(np.atleast_2d(mu)), self.alpha)

    @staticmethod
    def psi(mu):
        return np.atleast_2d(np.asarray(mu, dtype=float))[:, :1]


def heat_system(problem) -> ParabolicSystem:
    """The ParabolicSystem of rom.hifi.problems.Heat (its step operator M + dt alpha K, step load
    dt alpha sum_s T_s l_s and uniform initial temperature T_init on the free dofs)."""
    pattern = fem.Pattern.build(problem.mesh)
    K = pattern.to_scipy(problem.energy_product(pattern))
    M = pattern.to_scipy(problem.mass_product(pattern))
    co = HeatCoefficients(problem.alpha)
    return ParabolicSystem(K, M, [K], problem.rhs_terms(pattern), np.ones((1, pattern.n_rows)), co, co.psi,
                           problem.dt, problem.steps)


def energy_errors(E: np.ndarray, system: ParabolicSystem, alpha: np.ndarray) -> np.ndarray:
    """sqrt(||e^k||_M^2 + alpha dt sum_{1<=j<=k} ||e^j||_X^2) (n, K + 1) of error trajectories
    E (n, K + 1, n_dofs), formed from the errors themselves."""
    n, K1, nd = E.shape
    flat = E.reshape(-1, nd)
    m2 = np.einsum("ij,ij->i", flat, (system.M @ flat.T).T).reshape(n, K1)
    x2 = np.einsum("ij,ij->i", flat, (system.X @ flat.T).T).reshape(n, K1)
    x2[:, 0] = 0.0
    return np.sqrt(np.clip(m2 + np.asarray(alpha)[:, None] * system.dt * np.cumsum(x2, axis=1), 0.0, None))


@dataclass
class ParabolicRBModel:
    M_rb: np.ndarray     # (N, N)
    A_rb: np.ndarray     # (Q, N, N)
    f_rb: np.ndarray     # (P, N)
    u0_rb: np.ndarray    # (J, N) c^0 = psi @ u0_rb
    R: np.ndarray        # (rows, P + N (Q + 1)) stable residual factor, terms [A_1 v_n .. A_Q v_n, M v_n]
    G0: np.ndarray       # (J, J) M-Gram matrix of the initial projection errors
    coefficients: object
    psi: object
    dt: float
    steps: int

    @property
    def N(self) -> int:
        return self.M_rb.shape[0]

    def solve_batch(self, mu: np.ndarray) -> np.ndarray:
        """RB trajectories c (n, K + 1, N): one factorization per parameter (stacked), then a loop
        over the time steps only, vectorized over parameters."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        co = self.coefficients
        theta, phi = co.theta(mu), co.phi(mu)
        N = self.N
        S = self.M_rb[None] + self.dt * np.einsum("iq,qab->iab", theta, self.A_rb)
        rhs = np.concatenate([np.broadcast_to(self.M_rb, (len(mu), N, N)), self.dt * (phi @ self.f_rb)[:, :, None]], axis=2)
        TG = np.linalg.solve(S, rhs)
        T, g = TG[:, :, :N], TG[:, :, N]
        c = np.empty((len(mu), self.steps + 1, N))
        c[:, 0] = self.psi(mu) @ self.u0_rb
        for k in range(1, self.steps + 1):  # the time loop is inherent to the time stepping
            c[:, k] = np.einsum("iab,ib->ia", T, c[:, k - 1]) + g
        return c

    def residual_norms(self, mu: np.ndarray, c: np.ndarray) -> np.ndarray:
        """||R^k||_X' (n, K) for k = 1..K (plus op_error ||c^k|| where the operator is approximate)."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        co = self.coefficients
        theta, phi = co.theta(mu), co.phi(mu)
        n, K1, N = c.shape
        ck, dc = c[:, 1:], (c[:, 1:] - c[:, :-1]) / self.dt
        block = np.concatenate([ck[..., None] * theta[:, None, None, :], dc[..., None]], axis=-1)  # (n, K, N, Q+1)
        w = np.concatenate([np.broadcast_to(phi[:, None, :], (n, K1 - 1, phi.shape[1])),
                            -block.reshape(n, K1 - 1, -1)], axis=-1)
        r = np.linalg.norm(w @ self.R[:, : w.shape[-1]].T, axis=-1)
        if co.op_error is not None:
            r = r + co.op_error(mu)[:, None] * np.linalg.norm(ck, axis=-1)
        return r

    def initial_error(self, mu: np.ndarray) -> np.ndarray:
        """||e^0||_M (n,) of the initial projection."""
        p = self.psi(np.atleast_2d(mu))
        return np.sqrt(np.clip(np.einsum("ij,jk,ik->i", p, self.G0, p), 0.0, None))

    def estimate_batch(self, mu: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Delta_k (n, K + 1): bounds of sqrt(||e^k||_M^2 + alpha_LB dt sum_{j<=k} ||e^j||_X^2)."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        alpha = self.coefficients.alpha_lb(mu)
        r = self.residual_norms(mu, c)
        e0 = self.initial_error(mu)
        with np.errstate(divide="ignore"):
            acc = np.cumsum((self.dt / np.where(alpha > 0, alpha, 0.0))[:, None] * r ** 2, axis=1)
        return np.sqrt(np.concatenate([e0[:, None] ** 2, e0[:, None] ** 2 + acc], axis=1))

    def trajectory_norms(self, mu: np.ndarray, c: np.ndarray) -> np.ndarray:
        """sqrt(||u_N^K||_M^2 + alpha_LB dt sum_k ||u_N^k||_X^2) (n,): the scale of relative bounds."""
        alpha = self.coefficients.alpha_lb(np.atleast_2d(mu))
        m2 = np.einsum("ia,ab,ib->i", c[:, -1], self.M_rb, c[:, -1])
        return np.sqrt(m2 + alpha * self.dt * (c[:, 1:] ** 2).sum(axis=(1, 2)))


class ParabolicReductor:
    """X-orthonormal basis (rows of V) of a ParabolicSystem, with reduced operators and the
    time-step residual factor kept in step."""

    def __init__(self, system: ParabolicSystem, initial_in_basis: bool = True):
        self.system = s = system
        self.X, self.M = sp.csr_matrix(s.X), sp.csr_matrix(s.M)
        self.A_terms = [sp.csr_matrix(A) for A in s.A_terms]
        self.f_terms = np.atleast_2d(np.asarray(s.f_terms, dtype=float))
        self.u0_terms = np.atleast_2d(np.asarray(s.u0_terms, dtype=float))
        n = self.X.shape[0]
        self.V = np.empty((0, n))
        self.M_rb = np.zeros((0, 0))
        self.A_rb = np.zeros((len(self.A_terms), 0, 0))
        self.riesz = ResidualRiesz(self.X, self.A_terms + [self.M], self.f_terms)
        if initial_in_basis:
            self.extend(self.u0_terms)

    @property
    def N(self) -> int:
        return len(self.V)

    def _X_norm(self, v):
        return float(np.sqrt(v @ (self.X @ v)))

    def extend(self, U: np.ndarray) -> int:
        """Orthonormalize the rows of U against the basis (twice-iterated Gram-Schmidt in X) and add
        the independent ones; returns how many were added."""
        added = 0
        for u in np.atleast_2d(np.asarray(U, dtype=float)):
            v = u.copy()
            norm0 = norm = self._X_norm(v)
            if norm0 == 0:
                continue
            for _ in range(3):  # again while a pass cancels more than half of the norm
                v -= (self.V @ (self.X @ v)) @ self.V
                previous, norm = norm, self._X_norm(v)
                if norm > 0.5 * previous:
                    break
            if norm <= DEPENDENT_TOL * norm0:
                continue
            self._append(v / norm)
            added += 1
        return added

    def _append(self, v):
        N = self.N
        Mv = self.M @ v
        AV = np.stack([A @ v for A in self.A_terms])
        AtV = np.stack([A.T @ v for A in self.A_terms])
        M_rb = np.zeros((N + 1, N + 1))
        M_rb[:N, :N] = self.M_rb
        M_rb[:N, N] = M_rb[N, :N] = self.V @ Mv
        M_rb[N, N] = v @ Mv
        A_rb = np.zeros((len(self.A_terms), N + 1, N + 1))
        A_rb[:, :N, :N] = self.A_rb
        A_rb[:, :N, N] = AV @ self.V.T
        A_rb[:, N, :N] = AtV @ self.V.T
        A_rb[:, N, N] = AV @ v
        self.M_rb, self.A_rb = M_rb, A_rb
        self.V = np.vstack([self.V, v])
        self.riesz.extend(v)

    def initial_projection(self, N: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(u0_rb (J, N), G0 (J, J)): M-projection coefficients of the initial terms onto the first
        N basis vectors and the M-Gram matrix of their projection errors (formed explicitly)."""
        N = self.N if N is None else N
        V = self.V[:N]
        MU0 = (self.M @ self.u0_terms.T).T
        u0_rb = np.linalg.solve(self.M_rb[:N, :N], V @ MU0.T).T if N else np.zeros((len(self.u0_terms), 0))
        E = self.u0_terms - u0_rb @ V
        G0 = E @ (self.M @ E.T)
        return u0_rb, 0.5 * (G0 + G0.T)

    def model(self, N: int | None = None) -> ParabolicRBModel:
        """The model on the first N basis vectors (all by default; the POD-greedy basis is
        hierarchical, and R is built column by column, so its leading columns serve)."""
        N = self.N if N is None else N
        if not 0 < N <= self.N:
            raise ValueError(f"N = {N}: expected 1..{self.N}")
        s = self.system
        u0_rb, G0 = self.initial_projection(N)
        K = len(self.f_terms) + N * (len(self.A_terms) + 1)
        R = self.riesz.R[:, :K]
        rows = np.flatnonzero(np.abs(R).max(axis=1) > 0)
        return ParabolicRBModel(self.M_rb[:N, :N].copy(), self.A_rb[:, :N, :N].copy(), self.f_terms @ self.V[:N].T,
                                u0_rb, R[: rows[-1] + 1 if len(rows) else 0].copy(), G0, s.coefficients, s.psi, s.dt, s.steps)


@dataclass
class PODGreedyHistory:
    selected: list[int] = field(default_factory=list)        # training index of each FOM trajectory
    max_estimate: list[float] = field(default_factory=list)  # max relative Delta_K over the training set, before each step
    basis_size: list[int] = field(default_factory=list)      # N at which max_estimate was measured
    fom_seconds: list[float] = field(default_factory=list)
    stop_reason: str = ""
    warning: str = ""


def pod_greedy(mu_train: np.ndarray, fom_trajectory, reductor: ParabolicReductor, tol: float, N_max: int,
               modes_per_step: int = 1) -> PODGreedyHistory:
    """Grow the basis by the leading POD modes of the worst trajectory's projection error until
    max_train Delta_K / ||u_N|| < tol or N >= N_max.

    fom_trajectory(mu) -> (K + 1, n_dofs) the FOM states u^0..u^K."""
    if modes_per_step < 1:
        raise ValueError(f"modes_per_step = {modes_per_step}: expected at least 1")
    mu_train = np.atleast_2d(np.asarray(mu_train, dtype=float))
    h = PODGreedyHistory()
    X = reductor.X
    while True:
        if reductor.N:
            m = reductor.model()
            c = m.solve_batch(mu_train)
            est = m.estimate_batch(mu_train, c)[:, -1] / np.maximum(m.trajectory_norms(mu_train, c), np.finfo(float).tiny)
            est = np.where(np.isfinite(est), est, np.inf)
        else:
            est = np.full(len(mu_train), np.inf)
        i = int(np.argmax(est))
        h.max_estimate.append(float(est[i]))
        h.basis_size.append(reductor.N)
        log.info("POD-greedy N=%d max relative space-time bound %.3e at training parameter %d", reductor.N, est[i], i)
        if est[i] < tol:
            h.stop_reason = "tolerance"
            break
        if reductor.N >= N_max:
            h.stop_reason = "N_max"
            h.warning = f"tolerance {tol:g} not reached at N_max = {N_max}: max relative bound {est[i]:.3e}"
            log.warning(h.warning)
            break
        t0 = time.perf_counter()
        U = np.asarray(fom_trajectory(mu_train[i]), dtype=float)
        h.fom_seconds.append(time.perf_counter() - t0)
        E = U.copy()
        for _ in range(2):  # the X-orthogonal complement, re-projected against rounding
            E -= ((reductor.V @ (X @ E.T)).T) @ reductor.V
        modes, _ = pod(E, X, tol=0.0, max_modes=min(modes_per_step, N_max - reductor.N))
        if reductor.extend(modes) == 0:
            h.stop_reason = "dependent"
            h.warning = (f"trajectory at training parameter {i} adds no direction to the basis (N = {reductor.N}); "
                         f"max relative bound {est[i]:.3e}")
            log.warning(h.warning)
            break
        h.selected.append(i)
    return h
