"""Successive constraint method (SCM): certified coercivity lower bounds for any affine problem.

For A(mu) = sum_q theta_q(mu) A_q and an inner product X, the coercivity constant
alpha(mu) = min_v v^T A(mu) v / v^T X v is the smallest generalized eigenvalue of the symmetric
part. With the Rayleigh-quotient vector y(v) = (v^T A_q^s v / v^T X v)_q, alpha(mu) is the minimum
of theta(mu)^T y over the set Y of all such vectors. SCM (Huynh, Rozza, Sen, Patera 2007) relaxes Y
to a polytope that contains it:

* the box B = prod_q [lambda_min(A_q^s, X), lambda_max(A_q^s, X)];
* at constraint points mu_k picked by a greedy, theta(mu_k)^T y >= alpha(mu_k).

LB(mu) = min of theta(mu)^T y over the polytope <= alpha(mu) (a linear program in Q unknowns), and
UB(mu) = min_k theta(mu)^T y(v_k) >= alpha(mu) for the vectors v_k met in the eigen-solves.

Rigour: every number entering the relaxation is a certified bound, not a solver output.

* An eigenvalue estimate (LOBPCG) becomes a lower bound s by a Sylvester-inertia check: if
  B - s X factors as L D L^T with positive pivots, no eigenvalue of (B, X) lies below s, however
  well the solver converged. The factorization is backward stable, (B - s X) + E = L D L^T with
  ||E||_2 <= gamma_c trace(L D L^T) (gamma_c = c u / (1 - c u), c the longest inner product), so
  the bound is lowered by that over lambda_min(X), itself bounded the same way against the identity.
* HiGHS solves the LP to its own tolerances; the value kept is the Lagrangian dual value of the
  multipliers it returns, lambda^T a + sum_q min(d_q y_q^-, d_q y_q^+) with d = theta - G^T lambda,
  a lower bound of the LP minimum for every lambda >= 0 (weak duality), equal to it at the optimum.

A multiplier vector stays a valid certificate at every other parameter and after more constraints
are added, so the online lower bound is the largest dual value over all multipliers stored by the
offline LPs: one vectorized expression in theta(mu), no LP online (`SCMBounds.lower_bound`);
`lower_bound_lp` solves the classic per-parameter LP as well and keeps the larger value.
The same fact drives a lazy greedy: stored certificates give an upper estimate of every training
point's gap 1 - LB/UB, and an LP is solved only where that estimate could be the largest.
"""
from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import xarray as xr
from scipy.optimize import linprog

log = logging.getLogger("rom.scm")

_U = np.finfo(float).eps / 2  # unit round-off


class NotCoerciveError(ValueError):
    """The symmetric part of A(mu) is not positive definite at a training parameter."""


# -- certified extreme eigenvalues ------------------------------------------------------------------
@dataclass
class SPDFactor:
    """L D L^T of a sparse symmetric matrix H, no pivoting (SuperLU in symmetric mode), with all
    pivots positive: H + E = L D L^T for some E with ||E||_2 <= backward_error."""

    lu: object
    backward_error: float

    def solve(self, b: np.ndarray) -> np.ndarray:
        return self.lu.solve(np.asarray(b, dtype=float))

    def operator(self) -> spla.LinearOperator:
        n = self.lu.shape[0]
        return spla.LinearOperator((n, n), matvec=self.solve, matmat=self.solve, dtype=float)


def spd_factor(H: sp.spmatrix) -> SPDFactor | None:
    """The factor of H if every pivot is positive (H + E is then positive definite), else None."""
    try:
        lu = spla.splu(sp.csc_matrix(H), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                       options={"SymmetricMode": True})
    except RuntimeError:  # an exactly zero pivot
        return None
    d = lu.U.diagonal()
    # A row interchange would void the symmetric reading of the pivots.
    if not np.array_equal(lu.perm_r, lu.perm_c) or not np.all(d > 0):
        return None
    L = lu.L.tocsc()
    trace = float(d @ np.asarray(L.multiply(L).sum(axis=0)).ravel())  # trace(L D L^T)
    # Longest inner product of the factorization: the most entries in a row of L or column of U.
    c = int(max(np.diff(lu.L.tocsr().indptr).max(), np.diff(lu.U.tocsc().indptr).max())) + 1
    return SPDFactor(lu, c * _U / (1 - c * _U) * trace)


@dataclass
class CertifiedEigenvalue:
    """lower <= lambda_min(B, X) <= ritz; vectors (k, n) are X-normalized Ritz vectors (rows)."""

    lower: float
    ritz: float
    residual: float       # ||B x - ritz X x||_{X^-1} of the first Ritz vector, ||x||_X = 1
    vectors: np.ndarray
    factorizations: int
    seconds: float


class InnerProduct:
    """The inner-product matrix X with its factor and a certified lower bound of lambda_min(X)
    (against the identity), which converts a factorization's backward error into X units."""

    def __init__(self, X: sp.spmatrix, rtol: float = 1e-3):
        self.X = sp.csr_matrix(X)
        self.factor = spd_factor(self.X)
        if self.factor is None:
            raise ValueError("the inner-product matrix X is not positive definite (a pivot of its "
                             "L D L^T factorization is not positive); expected an SPD X")
        self.n = self.X.shape[0]
        self.lambda_min = 1.0
        self.identity = True  # only while bounding lambda_min(X) itself
        eig = smallest_eigenvalue(self.X, self, self.factor.operator(), rtol)
        self.identity = False
        if eig.lower <= 0:
            raise ValueError(f"lambda_min(X) could not be bounded away from 0 (lower bound {eig.lower:.3e}); "
                             "expected an SPD X")
        self.lambda_min = eig.lower
        self.eigenvalue = eig

    def apply(self, V: np.ndarray) -> np.ndarray:
        return V if self.identity else self.X @ V

    def solve(self, r: np.ndarray) -> np.ndarray:
        return r if self.identity else self.factor.solve(r)

    def shifted(self, B: sp.spmatrix, s: float) -> sp.spmatrix:
        return B - s * (sp.identity(self.n, format="csr") if self.identity else self.X)


def smallest_eigenvalue(B: sp.spmatrix, metric: InnerProduct, precond, rtol: float, scale: float | None = None,
                        x0: np.ndarray | None = None, block: int = 3, maxiter: int = 15,
                        attempts: int = 5, seed: int = 0) -> CertifiedEigenvalue:
    """Certified lower bound of lambda_min(B, X) for symmetric B, within about rtol * scale
    (scale: |ritz| by default) of the smallest Ritz value.

    LOBPCG (block `block`, preconditioner `precond`, warm start from the rows of x0) gives a Ritz
    pair (theta, x) and its residual eps = ||B x - theta X x||_{X^-1}. The candidates theta - eps
    (an eigenvalue lies within eps of theta) and theta - rtol * scale are certified by an inertia
    check of B - s X; if neither passes, LOBPCG goes on from its current block with twice the
    iterations (`attempts` times), then the shift steps down geometrically until a check passes.
    Tolerance: only the tightness (rtol) is asked of the solver, never the validity."""
    t0 = time.perf_counter()
    n = B.shape[0]
    rng = np.random.default_rng(seed)
    start = rng.standard_normal((n, block))
    if x0 is not None and len(x0):
        k = min(len(x0), block - 1)  # keep one random direction
        start[:, :k] = np.asarray(x0[:k]).T
    factorizations = 0

    def certify(s):
        nonlocal factorizations
        factorizations += 1
        f = spd_factor(metric.shifted(B, s))
        return None if f is None else s - f.backward_error / metric.lambda_min

    for attempt in range(attempts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is handled by the certification
            w, V = spla.lobpcg(B, start, B=None if metric.identity else metric.X, M=precond, largest=False,
                               tol=1e-12, maxiter=maxiter * 2 ** attempt)
        order = np.argsort(w)
        w, V = w[order], V[:, order]
        V = V / np.sqrt(np.einsum("ij,ij->j", V, metric.apply(V)))
        theta, x = float(w[0]), V[:, 0]
        r = B @ x - theta * metric.apply(x)
        eps = float(np.sqrt(max(r @ metric.solve(r), 0.0)))
        tol = rtol * (abs(theta) if scale is None else scale)
        # Before the last attempt only a bound within the asked tightness is accepted: a looser
        # theta - eps is kept for the end, when more iterations did not help.
        candidates = {theta - eps, theta - tol} if attempt == attempts - 1 else {max(theta - eps, theta - tol)}
        for s in sorted(candidates, reverse=True):
            lower = certify(s)
            if lower is not None:
                return CertifiedEigenvalue(lower, theta, eps, V.T.copy(), factorizations, time.perf_counter() - t0)
        log.info("eigenvalue %.6e (residual %.1e) not certified; LOBPCG on with %d more iterations",
                 theta, eps, maxiter * 2 ** (attempt + 1))
        start = V
    step = max(eps, tol, np.finfo(float).tiny)
    for j in range(1, 40):
        lower = certify(theta - step * 4.0 ** j)
        if lower is not None:
            log.warning("eigen-solver did not reach the bottom of the spectrum (Ritz value %.6e): certified "
                        "lower bound %.6e from a shifted inertia check", theta, lower)
            return CertifiedEigenvalue(lower, theta, eps, V.T.copy(), factorizations, time.perf_counter() - t0)
    raise RuntimeError(f"no certified lower bound of the smallest eigenvalue below the Ritz value {theta:.6e}")


def rayleigh_quotients(V: np.ndarray, terms: list, metric: InnerProduct) -> np.ndarray:
    """y_q(v) = v^T A_q v / v^T X v for the rows v of V: (k, Q)."""
    V = np.atleast_2d(V)
    xx = np.einsum("ij,ij->i", V, metric.apply(V.T).T)
    return np.column_stack([np.einsum("ij,ij->i", V, (A @ V.T).T) for A in terms]) / xx[:, None]


# -- online bounds ----------------------------------------------------------------------------------
def dual_values(lam: np.ndarray, a: np.ndarray, G: np.ndarray, theta: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Lagrangian lower bounds of min {theta^T y : y in box, G y >= a}: for multipliers lam >= 0
    (..., m) on constraint rows a (..., m), G (..., m, Q) and theta (..., Q),
    lam^T a + sum_q min(d_q y_q^-, d_q y_q^+) with d = theta - G^T lam, less its rounding error."""
    lo, hi = box[:, 0], box[:, 1]
    offset = (lam * a).sum(axis=-1)
    d = theta - (lam[..., None, :] @ G)[..., 0, :]
    size = np.abs(offset) + (np.abs(d) * np.maximum(np.abs(lo), np.abs(hi))).sum(axis=-1)
    return offset + np.minimum(d * lo, d * hi).sum(axis=-1) - 4 * (G.shape[-1] + G.shape[-2] + 2) * _U * size


@dataclass
class Certificate:
    """Multipliers of one solved LP as a function of theta: on the constraint rows `rows`
    (-1: unused), lam(theta) = max(lam0 + W theta, 0). Inside the LP's optimal basis region
    W theta are the exact optimal multipliers, elsewhere any lam >= 0 still gives a lower bound."""

    rows: np.ndarray   # (Q,) constraint indices
    lam0: np.ndarray   # (Q,)
    W: np.ndarray      # (Q, Q)


def lp_certificate(theta: np.ndarray, G: np.ndarray, a: np.ndarray, box: np.ndarray) -> Certificate | None:
    """Certificate of min theta^T y, G y >= a, y in box, from HiGHS' solution; None if HiGHS does
    not report an optimum (the stored certificates then stand).

    At a nondegenerate vertex, Q constraints are active: the rows S with positive multipliers and
    the box faces F with nonzero reduced cost, and theta = G_S^T lam_S + E_F nu_F. Solving that
    Q x Q system for every theta gives lam_S(theta) = W theta. A degenerate vertex keeps the
    multipliers HiGHS returned, constant in theta."""
    res = linprog(theta, A_ub=-G, b_ub=-a, bounds=box, method="highs")
    if res.status != 0:
        return None
    Q = len(theta)
    lam = np.maximum(-np.asarray(res.ineqlin.marginals, dtype=float), 0.0)
    nu = np.asarray(res.lower.marginals, dtype=float) + np.asarray(res.upper.marginals, dtype=float)
    S = np.flatnonzero(lam > 0)[:Q]
    F = np.flatnonzero(nu != 0)
    rows = np.full(Q, -1)
    rows[: len(S)] = S
    lam0, W = np.zeros(Q), np.zeros((Q, Q))
    if len(S) + len(F) == Q:
        M = np.hstack([G[S].T, np.eye(Q)[:, F]])
        if np.linalg.cond(M) < 1e10:
            Wfull = np.linalg.inv(M)[: len(S)]
            if np.allclose(Wfull @ theta, lam[S], rtol=1e-6, atol=1e-9 * max(np.abs(lam).max(), 1.0)):
                W[: len(S)] = Wfull
                return Certificate(rows, lam0, W)
    lam0[: len(S)] = lam[S]
    return Certificate(rows, lam0, W)


@dataclass
class SCMBounds:
    """SCM data: the box, the constraint points with certified alpha lower bounds, the Rayleigh-
    quotient vectors of the upper bound and the stored LP certificates."""

    theta: object                 # callable: mu (n, d) -> (n, Q)
    box: np.ndarray               # (Q, 2) certified [lower, upper] of each Rayleigh quotient
    mu_constraints: np.ndarray    # (K, d)
    theta_constraints: np.ndarray  # (K, Q)
    alpha_constraints: np.ndarray  # (K,) certified lower bounds of alpha(mu_k)
    ub_vectors: np.ndarray        # (J, Q) Rayleigh-quotient vectors y(v_j)
    cert_rows: np.ndarray         # (C, Q) constraint rows of each certificate (-1: unused)
    cert_lam0: np.ndarray         # (C, Q)
    cert_W: np.ndarray            # (C, Q, Q)
    n_constraints: int | None = None  # LP with the M nearest constraint points (None: all)
    distance_scale: np.ndarray | None = None  # (d,) parameter scaling for "nearest"
    chunk: int = 256

    @property
    def K(self) -> int:
        return len(self.alpha_constraints)

    @property
    def n_certificates(self) -> int:
        return len(self.cert_rows)

    def _theta(self, mu):
        return np.asarray(self.theta(np.atleast_2d(np.asarray(mu, dtype=float))), dtype=float)

    def append(self, cert: Certificate, map_rows: np.ndarray):
        rows = np.where(cert.rows >= 0, map_rows[np.maximum(cert.rows, 0)], -1)
        self.cert_rows = np.vstack([self.cert_rows, rows[None]])
        self.cert_lam0 = np.vstack([self.cert_lam0, cert.lam0[None]])
        self.cert_W = np.concatenate([self.cert_W, cert.W[None]])
        self.__dict__.pop("_gathered", None)

    def _gather(self):
        """Per certificate: its constraint rows' alpha (C, Q) and theta (C, Q, Q), zero on unused
        slots, and W flattened for one matrix product; cached until the next append."""
        g = self.__dict__.get("_gathered")
        if g is None or g[0] != (self.n_certificates, self.K):
            used = self.cert_rows >= 0
            r = np.maximum(self.cert_rows, 0)
            a = np.where(used, self.alpha_constraints[r], 0.0) if self.K else np.zeros(used.shape)
            G = np.where(used[..., None], self.theta_constraints[r], 0.0) if self.K else np.zeros(used.shape + (used.shape[1],))
            Q = self.box.shape[0]
            W = (self.cert_W * used[..., None]).reshape(-1, Q)
            g = ((self.n_certificates, self.K), a, np.ascontiguousarray(G), W, self.cert_lam0 * used)
            self.__dict__["_gathered"] = g
        return g[1:]

    def certificate_values(self, theta: np.ndarray, which=slice(None)) -> np.ndarray:
        """Dual values (n, C) of the stored certificates `which` (a slice) at theta (n, Q)."""
        a, G, W, lam0 = self._gather()
        C, Q = lam0.shape
        a, G, W, lam0 = a[which], G[which], W.reshape(C, Q, Q)[which], lam0[which]  # slices: views
        lam = np.maximum((theta @ W.reshape(-1, Q).T).reshape(len(theta), len(lam0), Q) + lam0, 0.0)
        return dual_values(lam, a, G, theta[:, None, :], self.box)

    def lower_bound(self, mu: np.ndarray) -> np.ndarray:
        """Certified alpha_LB(mu) (n,): the best stored certificate, or the box alone (vectorized)."""
        th = self._theta(mu)
        lo, hi = self.box[:, 0], self.box[:, 1]
        out = np.minimum(th * lo, th * hi).sum(axis=1) - 4 * (th.shape[1] + 2) * _U * (np.abs(th) * np.maximum(np.abs(lo), np.abs(hi))).sum(axis=1)
        if self.n_certificates:
            for i in range(0, len(th), self.chunk):  # bounded memory: chunk x C x Q x Q
                out[i:i + self.chunk] = np.maximum(out[i:i + self.chunk],
                                                   self.certificate_values(th[i:i + self.chunk]).max(axis=1))
        return out

    def upper_bound(self, mu: np.ndarray, theta_mu: np.ndarray | None = None) -> np.ndarray:
        """alpha_UB(mu) (n,) = min_j theta(mu)^T y(v_j) (an upper bound: Rayleigh quotients);
        `theta_mu`: theta(mu) (n, Q) when already evaluated."""
        th = self._theta(mu) if theta_mu is None else theta_mu
        return (th @ self.ub_vectors.T).min(axis=1)

    def nearest(self, mu):
        """Indices (n, M) of the constraint points used by the LP at each parameter."""
        if self.n_constraints is None or self.n_constraints >= self.K:
            return np.broadcast_to(np.arange(self.K), (len(mu), self.K))
        scale = self.distance_scale if self.distance_scale is not None else np.ones(mu.shape[1])
        d2 = (((mu[:, None, :] - self.mu_constraints[None]) / scale) ** 2).sum(axis=-1)
        return np.argsort(d2, axis=1, kind="stable")[:, : self.n_constraints]

    def lower_bound_lp(self, mu: np.ndarray) -> np.ndarray:
        """Classic SCM: the per-parameter LP (HiGHS, a loop over parameters; its certified dual
        value), or the stored certificates where they are larger."""
        mu = np.atleast_2d(np.asarray(mu, dtype=float))
        th = self._theta(mu)
        near = self.nearest(mu)
        own = np.full(len(mu), -np.inf)
        for i in range(len(mu)):  # one LP per parameter is inherent; the setup is above
            cert = lp_certificate(th[i], self.theta_constraints[near[i]], self.alpha_constraints[near[i]], self.box)
            if cert is not None:
                used = cert.rows >= 0
                rows = near[i][np.maximum(cert.rows, 0)]
                lam = np.maximum(cert.lam0 + cert.W @ th[i], 0.0) * used
                own[i] = dual_values(lam, self.alpha_constraints[rows] * used,
                                     self.theta_constraints[rows] * used[:, None], th[i], self.box)
        return np.maximum(own, self.lower_bound(mu))

    def to_dataset(self, prefix: str = "scm_") -> xr.Dataset:
        p = prefix
        return xr.Dataset({
            f"{p}box": ((f"{p}term", f"{p}end"), self.box, {"long_name": "certified range of each Rayleigh quotient"}),
            f"{p}mu": ((f"{p}constraint", "parameter"), self.mu_constraints),
            f"{p}theta": ((f"{p}constraint", f"{p}term"), self.theta_constraints),
            f"{p}alpha": ((f"{p}constraint",), self.alpha_constraints,
                          {"long_name": "certified lower bounds of alpha at the constraint points"}),
            f"{p}ub_vectors": ((f"{p}ub_vector", f"{p}term"), self.ub_vectors,
                               {"long_name": "Rayleigh-quotient vectors of the upper bound"}),
            f"{p}cert_rows": ((f"{p}certificate", f"{p}slot"), self.cert_rows,
                              {"long_name": "constraint rows of each LP certificate (-1: unused)"}),
            f"{p}cert_lam0": ((f"{p}certificate", f"{p}slot"), self.cert_lam0),
            f"{p}cert_W": ((f"{p}certificate", f"{p}slot", f"{p}term"), self.cert_W,
                           {"long_name": "multipliers lam = max(lam0 + W theta, 0)"}),
        }, attrs={f"{p}n_constraints": -1 if self.n_constraints is None else int(self.n_constraints)})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, theta, prefix: str = "scm_", distance_scale=None) -> SCMBounds:
        p = prefix
        m = int(ds.attrs.get(f"{p}n_constraints", -1))
        return cls(theta, ds[f"{p}box"].values, ds[f"{p}mu"].values, ds[f"{p}theta"].values, ds[f"{p}alpha"].values,
                   ds[f"{p}ub_vectors"].values, ds[f"{p}cert_rows"].values.astype(np.int64),
                   ds[f"{p}cert_lam0"].values, ds[f"{p}cert_W"].values, None if m < 0 else m, distance_scale)


# -- offline greedy ---------------------------------------------------------------------------------
@dataclass
class SCMHistory:
    selected: list[int] = field(default_factory=list)   # training index of each constraint point
    max_gap: list[float] = field(default_factory=list)  # max_train 1 - LB/UB with 1, 2, .. constraints
    eigen_solves: int = 0
    factorizations: int = 0
    lps: int = 0
    seconds_eigen: float = 0.0
    seconds_lp: float = 0.0
    seconds: float = 0.0
    stop_reason: str = ""
    warning: str = ""
    refined: list[int] = field(default_factory=list)     # each refined point: its index in the training set,
                                                         # then the check set (n_train + k for check[k])
    nonpositive: int = 0                                  # check points left with LB <= 0 after refinement


def symmetric_parts(A_terms) -> list:
    return [sp.csr_matrix(0.5 * (A + A.T)) for A in A_terms]


def box_corners(bounds: np.ndarray, max_dims: int = 12) -> np.ndarray:
    """The 2^d corners (2^d, d) of the parameter box bounds (d, 2); none beyond max_dims parameters."""
    bounds = np.asarray(bounds, dtype=float)
    d = len(bounds)
    if d > max_dims:
        log.warning("SCM: %d parameters, the 2^%d box corners are not checked (training set only)", d, d)
        return np.empty((0, d))
    bits = (np.arange(2 ** d)[:, None] >> np.arange(d)) & 1
    return np.where(bits == 1, bounds[:, 1], bounds[:, 0])


def scm_greedy(X: sp.spmatrix, A_terms, theta, mu_train: np.ndarray, tol: float = 0.5, K_max: int = 40,
               n_constraints: int | None = None, eig_rtol: float = 1e-3, first: int = 0,
               final_certificates: bool = True, check: np.ndarray | None = None) -> tuple[SCMBounds, SCMHistory]:
    """SCM offline stage on a training set: box, then constraint points added where the gap
    1 - LB/UB is largest until max_train gap <= tol or K_max points.

    theta: callable mu (n, d) -> (n, Q) (the coefficients of A_terms); n_constraints: M nearest
    constraint points per LP (None: all of them); eig_rtol: relative slack of the certified
    eigenvalue bounds (their tightness, not their validity); final_certificates: one LP per
    training point at the end, so that the online bound has a certificate next to every point.

    check: parameters (e.g. box_corners) where a non-positive LB is refined after the greedy,
    together with the training set: the gap tolerance says nothing where LB <= 0 (the RB bound is
    infinite there), and the box corners, where theta is extreme, are where the relaxation is
    loosest (where theta is monotone in mu). Each such point where A_s(mu) is positive definite becomes
    a constraint point itself (then LB(mu) >= its certified alpha_LB > 0), worst first, until LB > 0 at
    every coercive point or K_max points were added; the points where that fails (not coercive, alpha
    too small to certify, or beyond the K_max more points) are counted in
    `history.nonpositive` and named in one warning (`history.warning`)."""
    t_all = time.perf_counter()
    mu_train = np.atleast_2d(np.asarray(mu_train, dtype=float))
    theta_T = np.asarray(theta(mu_train), dtype=float)
    if theta_T.shape != (len(mu_train), len(A_terms)):
        raise ValueError(f"theta(mu_train) has shape {theta_T.shape}: expected ({len(mu_train)}, {len(A_terms)}) "
                         "(one coefficient per operator term)")
    if not 0 < tol < 1:
        raise ValueError(f"scm tol = {tol}: expected a relative gap in (0, 1)")
    h = SCMHistory()
    terms = symmetric_parts(A_terms)
    metric = InnerProduct(X, eig_rtol)
    h.eigen_solves, h.factorizations = 1, 1 + metric.eigenvalue.factorizations
    precond_X = metric.factor.operator()
    Q = len(terms)
    t0 = time.perf_counter()
    box = np.empty((Q, 2))
    vectors = []
    for q, A in enumerate(terms):
        if not np.any(A.data):  # a skew term (convection): its Rayleigh quotient is 0
            box[q] = 0.0
            continue
        top = smallest_eigenvalue(-A, metric, precond_X, eig_rtol, seed=q)
        box[q, 1] = -top.lower
        scale = max(abs(top.ritz), np.finfo(float).tiny)
        bottom = smallest_eigenvalue(A, metric, precond_X, eig_rtol, scale=scale, seed=Q + q)
        box[q, 0] = bottom.lower
        vectors += [top.vectors, bottom.vectors]
        h.factorizations += top.factorizations + bottom.factorizations
    h.eigen_solves += 2 * sum(bool(np.any(A.data)) for A in terms)
    h.seconds_eigen = time.perf_counter() - t0
    log.info("SCM box %s in %.2f s", np.round(box, 6).tolist(), h.seconds_eigen)

    scale = np.ptp(mu_train, axis=0)
    bounds = SCMBounds(theta, box, np.empty((0, mu_train.shape[1])), np.empty((0, Q)), np.empty(0),
                       rayleigh_quotients(np.vstack(vectors), terms, metric), np.empty((0, Q), dtype=np.int64),
                       np.empty((0, Q)), np.empty((0, Q, Q)), n_constraints, np.where(scale > 0, scale, 1.0))
    kept_vectors = []
    LB = bounds.lower_bound(mu_train)
    UB = bounds.upper_bound(mu_train, theta_T)
    lp_done = np.zeros(len(mu_train), dtype=bool)

    def gaps():
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(UB > 0, 1.0 - LB / UB, np.inf)

    def add_certificate(i):
        nonlocal LB
        t = time.perf_counter()
        near = bounds.nearest(mu_train[i:i + 1])[0]
        cert = lp_certificate(theta_T[i], bounds.theta_constraints[near], bounds.alpha_constraints[near], box)
        h.lps += 1
        lp_done[i] = True
        if cert is not None:
            bounds.append(cert, near)
            LB = np.maximum(LB, bounds.certificate_values(theta_T, slice(-1, None))[:, 0])
        h.seconds_lp += time.perf_counter() - t

    def coercive_factor(i):
        h.factorizations += 1
        return spd_factor(sum(c * T for c, T in zip(theta_T[i], terms)))

    def add_constraint(i, f):
        """Constraint point i (A_s(mu_i) = L D L^T, f): certified alpha(mu_i), warm-started from the
        nearest earlier point."""
        nonlocal UB
        t = time.perf_counter()
        A = sum(c * T for c, T in zip(theta_T[i], terms))
        x0 = kept_vectors[int(bounds.nearest(mu_train[i:i + 1])[0][0])] if kept_vectors else None
        eig = smallest_eigenvalue(A, metric, f.operator(), eig_rtol, x0=x0, seed=1000 + len(h.selected))
        h.eigen_solves += 1
        h.factorizations += eig.factorizations
        h.seconds_eigen += time.perf_counter() - t
        kept_vectors.append(eig.vectors)
        h.selected.append(i)
        bounds.mu_constraints = np.vstack([bounds.mu_constraints, mu_train[i]])
        bounds.theta_constraints = np.vstack([bounds.theta_constraints, theta_T[i]])
        bounds.alpha_constraints = np.append(bounds.alpha_constraints, eig.lower)
        y = rayleigh_quotients(eig.vectors, terms, metric)
        bounds.ub_vectors = np.vstack([bounds.ub_vectors, y])
        UB = bounds.upper_bound(mu_train, theta_T)
        lp_done[:] = False

    i = first
    while True:
        f = coercive_factor(i)
        if f is None:
            raise NotCoerciveError(f"A(mu) is not coercive at training parameter {i}, mu = "
                                   f"{np.round(mu_train[i], 6).tolist()} (its symmetric part has a non-positive pivot); "
                                   "SCM needs a problem coercive on the whole parameter box")
        add_constraint(i, f)
        # Lazy greedy: a certificate's dual value never exceeds the current LP's, so the gap it gives
        # is an upper estimate; LPs are solved from the top until the largest estimate belongs to a
        # point whose LP is solved with the current constraints.
        g = gaps()
        while not lp_done[j := int(np.argmax(g))]:
            add_certificate(j)
            g = gaps()
        h.max_gap.append(float(g[j]))
        log.info("SCM K=%d max gap %.3e at training parameter %d (%d LPs so far)", bounds.K, g[j], j, h.lps)
        if g[j] <= tol:
            h.stop_reason = "tolerance"
            break
        if bounds.K >= K_max:
            h.stop_reason = "K_max"
            h.warning = f"SCM tolerance {tol:g} not reached at K_max = {K_max}: max gap {g[j]:.3e}"
            log.warning(h.warning)
            break
        i = j
    if final_certificates:
        for j in np.flatnonzero(~lp_done):
            add_certificate(j)
    if check is not None:
        check = np.atleast_2d(np.asarray(check, dtype=float)).reshape(-1, mu_train.shape[1])
        mu_train = np.vstack([mu_train, check])
        theta_T = np.vstack([theta_T, np.asarray(theta(check), dtype=float).reshape(len(check), Q)])
        LB = bounds.lower_bound(mu_train)
        UB = bounds.upper_bound(mu_train, theta_T)
        lp_done = np.concatenate([lp_done, np.zeros(len(check), dtype=bool)])
        hopeless = np.zeros(len(mu_train), dtype=bool)  # not coercive, or alpha not certified > 0
        while (bad := np.flatnonzero((LB <= 0) & ~hopeless)).size:
            for j in bad[~lp_done[bad]]:  # an LP at the point itself may already be positive
                add_certificate(j)
            bad = bad[(LB[bad] <= 0)]
            if not bad.size:
                break
            if len(h.refined) >= K_max:  # the cost bound: K_max more points at most, then the warning below
                break
            j = int(bad[np.argmin(LB[bad])])
            f = coercive_factor(j)
            if f is None:
                hopeless[j] = True
                continue
            add_constraint(j, f)
            h.refined.append(j)
            add_certificate(j)
            hopeless[j] = LB[j] <= 0  # its certified alpha_LB was not positive
        failed = np.flatnonzero(LB <= 0)
        h.nonpositive = len(failed)
        if h.refined:
            log.info("SCM refinement: %d constraint points added where LB <= 0 (corners / training set)",
                     len(h.refined))
        if failed.size:
            where = np.round(mu_train[failed[0]], 6).tolist()
            note = (f"SCM lower bound <= 0 at {failed.size} of {len(mu_train)} checked parameters (box corners and "
                    f"training set; e.g. mu = {where}) where A(mu) is not coercive or alpha(mu) too small to certify: "
                    "the RB error bound is infinite there")
            h.warning = f"{h.warning}; {note}" if h.warning else note
            log.warning(note)
    # The same optimal basis reached from several parameters gives the same certificate: keep one.
    flat = np.column_stack([bounds.cert_rows, bounds.cert_lam0, bounds.cert_W.reshape(len(bounds.cert_W), -1)])
    _, keep = np.unique(flat, axis=0, return_index=True)
    keep = np.sort(keep)
    bounds.cert_rows, bounds.cert_lam0, bounds.cert_W = bounds.cert_rows[keep], bounds.cert_lam0[keep], bounds.cert_W[keep]
    h.seconds = time.perf_counter() - t_all
    return bounds, h


# -- coefficients provider --------------------------------------------------------------------------
class EigenFallback:
    """A certified lower bound of lambda_min(A_s(mu), X) by one eigen-solve of full-order size (LOBPCG
    and an inertia check, `smallest_eigenvalue`), for the parameters where SCM's bound is not positive.
    SCM's LP relaxation is loose where theta(mu) has large entries of both signs (a black box's matrix
    EIM: |beta| ~ 30 with indefinite terms), and a few percent of the box can stay uncertified however
    many constraint points are added; one eigen-solve there costs about one full-order solve, which a
    black box's entries call already exceeds. Results are cached per parameter (the greedy asks again)."""

    def __init__(self, terms, X, rtol: float = 1e-3):
        self.terms = symmetric_parts(terms)
        self.X, self.rtol = X, rtol
        self.solves = 0
        self._cache: dict = {}
        self._lock = threading.Lock()  # predict(threads > 1): one solve per parameter, an exact count

    @cached_property
    def metric(self) -> InnerProduct:
        return InnerProduct(self.X, self.rtol)

    def lower_bound(self, theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(theta))
        for i, th in enumerate(theta):  # a full-order eigen-solve each: a few parameters, not a batch
            key = th.tobytes()
            with self._lock:
                if key not in self._cache:
                    A = sum(c * T for c, T in zip(th, self.terms))
                    f = spd_factor(A)
                    # An indefinite A_s(mu) has no positive bound; its LDL^T says so without an eigen-solve.
                    self._cache[key] = 0.0 if f is None else smallest_eigenvalue(A, self.metric, f.operator(),
                                                                                 self.rtol).lower
                    self.solves += 1
                out[i] = self._cache[key]
        return out


class SCMCoefficients:
    """theta, phi (and op_error) of an existing coefficients object with the SCM coercivity lower
    bound, so that a reduced-basis model's bound is certified by SCM.

    Where the base carries an operator approximation error (EIM), alpha_LB of the true operator is
    the SCM bound of the approximate one minus op_error(mu). A non-positive bound has no certificate:
    alpha_lb is 0 there and the error bound is +inf, unless `fallback` (EigenFallback) certifies
    alpha there by an eigen-solve. keep_base_bound: the larger of the base's own (valid) bound and
    SCM's, e.g. min-theta on the thermal block."""

    def __init__(self, base, scm: SCMBounds, keep_base_bound: bool = False, fallback: EigenFallback | None = None):
        self.base, self.scm, self.keep_base_bound, self.fallback = base, scm, keep_base_bound, fallback
        self.op_error, self.rhs_error = base.op_error, base.rhs_error

    def theta(self, mu):
        return self.base.theta(mu)

    def phi(self, mu):
        return self.base.phi(mu)

    def alpha_lb(self, mu):
        lb = self.scm.lower_bound(mu)
        op = self.op_error(np.atleast_2d(mu)) if self.op_error is not None else 0.0
        if self.fallback is not None:
            bad = np.flatnonzero(lb - op <= 0)  # no certificate left once the EIM error is taken off
            if len(bad):
                th = self.scm._theta(mu)[bad]  # the batch's theta (a black box's entries: cached per batch)
                # The eigen-solve certifies the computed sum fl(sum_q theta_q T_q); its rounding, at most
                # 4 (Q + 2) u sum_q |theta_q| max|box_q| in the X norm (as SCMBounds.lower_bound allows), is
                # taken off.
                box = np.abs(self.scm.box).max(axis=1)
                rounding = 4 * (th.shape[1] + 2) * _U * (np.abs(th) @ box)
                lb[bad] = np.maximum(lb[bad], self.fallback.lower_bound(th) - rounding)
        lb = lb - op
        if self.keep_base_bound:
            lb = np.maximum(lb, self.base.alpha_lb(mu))
        return np.maximum(lb, 0.0)
