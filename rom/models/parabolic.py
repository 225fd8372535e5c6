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

Any linear transient affine problem (capabilities `transient` and `affine`) comes in this form by
`affine_system`: its step S(mu) u^k = M u^{k-1} + g(mu), S = sum_q theta_q S_q, g = sum_p phi_p g_p
(what the FOM solves) is M (u^k - u^{k-1}) / dt + A u^k = f with A = (S - M) / dt, f = g / dt.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.models.rb import min_theta_valid
from rom.reduction.galerkin import IncrementalGalerkin, leading_rows
from rom.reduction.greedy import stopped
from rom.reduction.pod import pod

log = logging.getLogger("rom.parabolic")


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


class StepCoefficients:
    """theta, phi of A(mu), f(mu) from the step form of a transient affine problem (see the module
    doc): theta_A = theta_S[:, kept] / dt, with -1 / dt for an explicit mass term when no term of S is
    M itself, and phi = phi_S / dt. alpha_lb is min-theta, theta_A(mu) / theta_ref (valid when
    X = sum of the A terms with positive semidefinite terms); without theta_ref there is no bound of
    its own (SCM supplies one: rom.reduction.scm.SCMCoefficients)."""

    op_error = rhs_error = None

    def __init__(self, problem, kept: np.ndarray, dt: float, mass_term: bool, theta_ref=None):
        self.problem, self.kept, self.dt, self.mass_term = problem, np.asarray(kept, dtype=np.int64), float(dt), mass_term
        self.theta_ref = None if theta_ref is None else np.asarray(theta_ref, dtype=float)

    def theta(self, mu):
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        t = self.problem.theta(mu)[:, self.kept] / self.dt
        return np.column_stack([t, np.full(len(mu), -1.0 / self.dt)]) if self.mass_term else t

    def phi(self, mu):
        return self.problem.phi(np.atleast_2d(np.asarray(mu, dtype=float))) / self.dt

    def alpha_lb(self, mu):
        if self.theta_ref is None:
            raise ValueError(f"problem {self.problem.name}: no coercivity lower bound of A(mu) (min-theta needs "
                             "X = sum_q A_q); expected rb.scm.enabled: auto or true")
        return (self.theta(mu) / self.theta_ref).min(axis=-1)


class AffineInitialState:
    """psi(mu) = [1, mu_0, .., mu_{d-1}][:, kept]: the coefficients of an initial state affine in mu."""

    def __init__(self, kept: np.ndarray):
        self.kept = np.asarray(kept, dtype=np.int64)

    def __call__(self, mu):
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        return np.column_stack([np.ones(len(mu)), mu])[:, self.kept]


def initial_state_terms(problem, n_rows: int, bounds: np.ndarray) -> tuple[np.ndarray, AffineInitialState]:
    """(u0_terms (J, n), psi) with u^0(mu) = psi(mu) @ u0_terms, read off `problem.initial_state`
    at mu = 0 and the unit vectors (exact for a formula linear in mu), terms that are zero dropped.
    Raises ValueError if the initial state is not affine in mu (checked at two points of the box)."""
    d = len(bounds)
    base = np.asarray(problem.initial_state(np.zeros(d), n_rows), dtype=float)
    slopes = np.stack([np.asarray(problem.initial_state(e, n_rows), dtype=float) - base for e in np.eye(d)])
    terms = np.vstack([base, slopes])
    scale = max(np.abs(terms).max(), np.finfo(float).tiny)
    kept = np.flatnonzero(np.abs(terms).max(axis=1) > 0)
    psi = AffineInitialState(kept)
    lo, hi = bounds[:, 0], bounds[:, 1]
    for t in (0.3, 0.8):
        mu = lo + t * (hi - lo)
        direct = np.asarray(problem.initial_state(mu, n_rows), dtype=float)
        if np.abs(psi(mu)[0] @ terms[kept] - direct).max() > 1e-12 * max(scale, np.abs(direct).max()) * (d + 1):
            raise ValueError(f"problem {problem.name}: initial_state(mu) is not affine in mu (it differs from its "
                             f"affine interpolation at mu = {np.round(mu, 6).tolist()}); parabolic RB expects "
                             "u^0(mu) = u0_0 + sum_i mu_i u0_i")
    return terms[kept], psi


def affine_system(problem, ops=None, bounds: np.ndarray | None = None) -> ParabolicSystem:
    """The ParabolicSystem of a linear transient affine problem from its operators `ops`
    (rom.hifi.discretization.operators.Operators: X, M, the step terms S_q, the step loads g_p; assembled from the
    problem if None): a step term equal to M with theta_q = 1 is the mass part (the heat problem's),
    otherwise -M / dt joins the terms of A. Coercivity: min-theta where X = sum of the A terms
    (heat: A = alpha K, X = K, alpha_LB = alpha exactly), else none of its own (SCM). bounds: the
    parameter box (default: the problem's)."""
    if ops is None:
        from rom.hifi.discretization.operators import Operators, operators_dataset

        ops = Operators.from_dataset(operators_dataset(problem))
    bounds = problem.default_bounds if bounds is None else np.asarray(bounds, dtype=float)
    M = sp.csr_matrix(ops.M)
    scale = np.abs(M.data).max()
    probe = bounds[:, 0] + np.array([[0.25], [0.75]]) * (bounds[:, 1] - bounds[:, 0])
    theta = problem.theta(probe)
    mass = [q for q, S in enumerate(ops.A_terms)
            if np.all(theta[:, q] == 1.0) and abs(sp.csr_matrix(S) - M).max() <= 1e-12 * scale]
    kept = np.array([q for q in range(len(ops.A_terms)) if q not in mass[:1]], dtype=np.int64)
    A_terms = [ops.A_terms[q] for q in kept] + ([] if mass else [M])
    u0_terms, psi = initial_state_terms(problem, M.shape[0], bounds)
    theta_ref = np.ones(len(A_terms)) if min_theta_valid(ops.X, A_terms) else None
    co = StepCoefficients(problem, kept, problem.dt, not mass, theta_ref)
    return ParabolicSystem(ops.X, M, A_terms, ops.f_terms, u0_terms, co, psi, problem.dt, problem.steps)


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

    def truncated(self, N: int, V: np.ndarray, M: sp.spmatrix, u0_terms: np.ndarray) -> ParabolicRBModel:
        """The model on the first N basis vectors (rows of V; the POD-greedy basis is hierarchical).
        The initial projection depends on N: recomputed from the initial terms (explicitly)."""
        if not 0 < N <= self.N:
            raise ValueError(f"N = {N}: expected 1..{self.N}")
        K = self.f_rb.shape[0] + N * (self.A_rb.shape[0] + 1)
        u0_rb, G0 = initial_projection(V[:N], M, self.M_rb[:N, :N], u0_terms)
        return replace(self, M_rb=self.M_rb[:N, :N].copy(), A_rb=self.A_rb[:, :N, :N].copy(),
                       f_rb=self.f_rb[:, :N].copy(), u0_rb=u0_rb, R=leading_rows(self.R, K), G0=G0)

    # -- artefact -------------------------------------------------------------------------------
    def to_dataset(self, prefix: str = "parabolic_") -> xr.Dataset:
        p = prefix
        return xr.Dataset({
            f"{p}M_rb": ((f"{p}mode", f"{p}mode_"), self.M_rb, {"long_name": "V M V^T"}),
            f"{p}A_rb": ((f"{p}term", f"{p}mode", f"{p}mode_"), self.A_rb, {"long_name": "V A_q V^T"}),
            f"{p}f_rb": ((f"{p}rhs_term", f"{p}mode"), self.f_rb, {"long_name": "V f_p"}),
            f"{p}u0_rb": ((f"{p}initial_term", f"{p}mode"), self.u0_rb,
                          {"long_name": "M-projection coefficients of the initial terms"}),
            f"{p}R": ((f"{p}riesz_row", f"{p}riesz"), self.R,
                      {"long_name": "stable time-step residual factor, terms f_p, [A_q v_n, M v_n] (extended precision)"}),
            f"{p}G0": ((f"{p}initial_term", f"{p}initial_term_"), self.G0,
                       {"long_name": "M-Gram matrix of the initial projection errors"}),
        }, attrs={f"{p}dt": self.dt, f"{p}steps": int(self.steps)})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, coefficients, psi, prefix: str = "parabolic_") -> ParabolicRBModel:
        p = prefix
        return cls(ds[f"{p}M_rb"].values, ds[f"{p}A_rb"].values, ds[f"{p}f_rb"].values, ds[f"{p}u0_rb"].values,
                   ds[f"{p}R"].values, ds[f"{p}G0"].values, coefficients, psi, float(ds.attrs[f"{p}dt"]),
                   int(ds.attrs[f"{p}steps"]))


def initial_projection(V: np.ndarray, M: sp.spmatrix, M_rb: np.ndarray, u0_terms: np.ndarray):
    """(u0_rb (J, N), G0 (J, J)): M-projection coefficients of the initial terms onto the rows of V
    (M_rb = V M V^T) and the M-Gram matrix of their projection errors, formed explicitly."""
    u0_terms = np.atleast_2d(u0_terms)
    MU0 = (M @ u0_terms.T).T
    u0_rb = np.linalg.solve(M_rb, V @ MU0.T).T if len(V) else np.zeros((len(u0_terms), 0))
    E = u0_terms - u0_rb @ V
    G0 = E @ (M @ E.T)
    return u0_rb, 0.5 * (G0 + G0.T)


class ParabolicReductor:
    """X-orthonormal basis (rows of V) of a ParabolicSystem, with reduced operators and the
    time-step residual factor kept in step: the incremental Galerkin projection
    (galerkin.IncrementalGalerkin, re-orthonormalized when the basis loses X-orthonormality) of the
    terms A_1 .. A_Q, M and f_p."""

    def __init__(self, system: ParabolicSystem, initial_in_basis: bool = True, solver=None):
        """solver: the X solver of the residual data (galerkin.IncrementalGalerkin)."""
        self.system = s = system
        self.M = sp.csr_matrix(s.M)
        self.galerkin = IncrementalGalerkin(s.X, list(s.A_terms) + [self.M], s.f_terms, log=log, solver=solver)
        self.X, self.f_terms = self.galerkin.X, self.galerkin.f_terms
        self.A_terms = self.galerkin.A_terms[:-1]
        self.u0_terms = np.atleast_2d(np.asarray(s.u0_terms, dtype=float))
        if initial_in_basis:
            self.extend(self.u0_terms)

    @property
    def N(self) -> int:
        return self.galerkin.N

    @property
    def V(self) -> np.ndarray:
        return self.galerkin.V

    @property
    def A_rb(self) -> np.ndarray:
        return self.galerkin.A_rb[:-1]

    @property
    def M_rb(self) -> np.ndarray:
        return self.galerkin.A_rb[-1]

    @property
    def riesz(self):
        return self.galerkin.riesz

    @property
    def reorthonormalizations(self) -> int:
        return self.galerkin.reorthonormalizations

    def extend(self, U: np.ndarray) -> int:
        """Orthonormalize the rows of U against the basis (linalg.orthogonalize: twice-iterated
        Gram-Schmidt in X, one dependence threshold) and add the independent ones; returns how many
        were added."""
        return sum(self.galerkin.extend(u) for u in np.atleast_2d(np.asarray(U, dtype=float)))

    def initial_projection(self, N: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(u0_rb (J, N), G0 (J, J)) of the first N basis vectors (`initial_projection`)."""
        N = self.N if N is None else N
        return initial_projection(self.V[:N], self.M, self.M_rb[:N, :N], self.u0_terms)

    def model(self, N: int | None = None) -> ParabolicRBModel:
        """The model on the first N basis vectors (all by default; the POD-greedy basis is
        hierarchical, and R is built column by column, so its leading columns serve)."""
        N = self.N if N is None else N
        if not 0 < N <= self.N:
            raise ValueError(f"N = {N}: expected 1..{self.N}")
        s = self.system
        u0_rb, G0 = self.initial_projection(N)
        K = len(self.f_terms) + N * (len(self.A_terms) + 1)
        return ParabolicRBModel(self.M_rb[:N, :N].copy(), self.A_rb[:, :N, :N].copy(), self.galerkin.f_rb[:, :N].copy(),
                                u0_rb, leading_rows(self.riesz.R, K), G0, s.coefficients, s.psi, s.dt, s.steps)


@dataclass
class PODGreedyHistory:
    selected: list[int] = field(default_factory=list)        # training index of each FOM trajectory
    max_estimate: list[float] = field(default_factory=list)  # max relative Delta_K over the training set, before each step
    basis_size: list[int] = field(default_factory=list)      # N at which max_estimate was measured
    fom_seconds: list[float] = field(default_factory=list)
    stop_reason: str = ""
    warning: str = ""


def pod_greedy(mu_train: np.ndarray, fom_trajectory, reductor: ParabolicReductor, tol: float, max_modes: int,
               modes_per_step: int = 1) -> PODGreedyHistory:
    """Grow the basis by the leading POD modes of the worst trajectory's projection error until
    max_train Delta_K / ||u_N|| < tol or N >= max_modes (stop reason 'N_max').

    fom_trajectory(mu) -> (K + 1, n_dofs) the FOM states u^0..u^K. One log line per step (basis
    size, worst bound and where, the seconds of the estimates and of the step's FOM trajectory)."""
    if modes_per_step < 1:
        raise ValueError(f"modes_per_step = {modes_per_step}: expected at least 1")
    mu_train = np.atleast_2d(np.asarray(mu_train, dtype=float))
    h = PODGreedyHistory()
    X = reductor.X
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
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
        log.info("POD-greedy N=%d/%d: max relative space-time bound %.3e at training parameter %d (estimates over %d "
                 "trajectories %.2f s%s, %.1f s elapsed)", reductor.N, max_modes, est[i], i, len(mu_train),
                 time.perf_counter() - t0, f", last FOM trajectory {h.fom_seconds[-1]:.2f} s" if h.fom_seconds else "",
                 time.perf_counter() - t_start)
        if stopped(h, est[i], tol, reductor.N, max_modes, "bound"):
            break
        t0 = time.perf_counter()
        U = np.asarray(fom_trajectory(mu_train[i]), dtype=float)
        h.fom_seconds.append(time.perf_counter() - t0)
        E = U.copy()
        for _ in range(2):  # the X-orthogonal complement, re-projected against rounding
            E -= ((reductor.V @ (X @ E.T)).T) @ reductor.V
        modes, _ = pod(E, X, tol=0.0, max_modes=min(modes_per_step, max_modes - reductor.N))
        if reductor.extend(modes) == 0:
            h.stop_reason = "dependent"
            h.warning = (f"trajectory at training parameter {i} adds no direction to the basis (N = {reductor.N}); "
                         f"max relative bound {est[i]:.3e}")
            log.warning(h.warning)
            break
        h.selected.append(i)
    return h
