"""Hyper-reduced POD-Galerkin ROM of the nonlinear heat problem, its error indicator, and the
adaptive loop that calls the full-order model when the indicator says so (METHODS.md section 4).

ROM: u ~ a @ V (V: X-orthonormal modes as rows). Each implicit Euler step solves, by Newton,
    rho_c V M V^T (a - a_n) + dt B g_P(a @ V, t) = 0,   B = V U^T (U[:, P]^T)^{-1},
where g = N(u) - F(t) is the nonlinear conduction term minus the load, U its POD basis and P the
(Q)DEIM dofs. g_P needs only the elements touching P (the reduced mesh) and the rows of V at their
vertices, so a step costs O(|E_P| N + m N^2), independent of the mesh size.

Indicator: the heat flux -k(u) grad u (the dual quantity) of the ROM state on the reduced elements,
fitted by Gappy POD on the flux modes W of the training snapshots; the relative residual of that fit.
Adaptive loop: when it exceeds `tol`, one full-order step from the current ROM state is solved,
V, U and W are enriched with it (incremental POD), the hyper-reduction is rebuilt, and the ROM
continues from the projected full-order state."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from rom.reduction import deim as deim_
from rom.reduction.gappy import GappyPOD
from rom.reduction.incremental_pod import IncrementalPOD


class HyperReducedROM:
    def __init__(self, problem, M, X, V: IncrementalPOD, U: IncrementalPOD, W: IncrementalPOD,
                 method: str = "qdeim", newton_tol: float = 1e-10, max_newton: int = 20):
        self.p, self.M, self.X = problem, M, X
        self.Vpod, self.Upod, self.Wpod = V, U, W
        self.method, self.newton_tol, self.max_newton = method, newton_tol, max_newton
        self.dof_tri = problem.mesh.dof_of_node[problem.mesh.triangles]
        self.rebuild()

    @classmethod
    def from_snapshots(cls, problem, M, X, S: np.ndarray, mu: np.ndarray, tol_state=1e-6, tol_nonlinear=1e-8,
                       tol_flux=1e-6, max_modes=60, method="qdeim"):
        """Offline: POD of the states, of the nonlinear term g and of the flux over the train
        trajectories S (n_mu, n_times, n_dofs)."""
        times = problem.times
        states = S[:, 1:].reshape(-1, S.shape[-1])  # u(0) = 0 carries no information
        g = np.stack([problem.g_vector(S[i, k], mu[i], times[k]) for i in range(len(S))  # train samples x steps
                      for k in range(1, S.shape[1])])
        flux = problem.flux_field(states)
        V = IncrementalPOD.from_snapshots(states, X, energy_tol=tol_state, max_modes=max_modes)
        U = IncrementalPOD.from_snapshots(g, None, energy_tol=tol_nonlinear, max_modes=max_modes)
        W = IncrementalPOD.from_snapshots(flux, None, energy_tol=tol_flux, max_modes=max_modes)
        for basis in (V, U, W):  # max_modes caps the offline bases only: enrichment always adds
            basis.max_modes = None
        return cls(problem, M, X, V, U, W, method)

    # -- hyper-reduction ----------------------------------------------------------------------------
    def rebuild(self):
        """(Q)DEIM dofs, reduced mesh, projected operators and the Gappy fit for the current bases."""
        V, U = self.Vpod.V, self.Upod.V
        self.P = deim_.select(U, self.method)
        in_P = np.isin(self.dof_tri, self.P)
        self.E = np.flatnonzero(in_P.any(axis=1))  # reduced mesh: elements touching a DEIM dof
        d = self.dof_tri[self.E]
        self.mask = in_P[self.E]  # (n_E, 3): which element rows feed g_P
        self.rows = np.searchsorted(np.sort(self.P), d[self.mask])
        self.rows = np.argsort(self.P)[self.rows]  # position of each fed row in P
        self.Ve = np.where(d[..., None] >= 0, V.T[np.maximum(d, 0)], 0.0)  # (n_E, 3, N)
        self.B = np.linalg.solve(U[:, self.P], (V @ U.T).T).T  # V U^T (U_P^T)^{-1}, (N, m)
        self.Mr = V @ (self.M @ V.T)
        flux_points = np.stack([2 * self.E, 2 * self.E + 1], axis=1).ravel()
        self.gappy = GappyPOD(self.Wpod.V, flux_points)

    @property
    def N(self) -> int:
        return len(self.Vpod.V)

    @property
    def m(self) -> int:
        return len(self.P)

    def _gP(self, ue, mu, t):
        ge = self.p.element_g(self.E, ue, mu, t)
        return np.bincount(self.rows, weights=ge[self.mask], minlength=self.m)

    def _dgP(self, ue):
        Je = self.p.element_g_jacobian(self.E, ue)  # (n_E, 3, 3)
        contrib = np.einsum("eij,ejn->ein", Je, self.Ve)[self.mask]  # (n_fed, N)
        out = np.zeros((self.m, self.N))
        np.add.at(out, self.rows, contrib)
        return out

    def step(self, a_n: np.ndarray, t: float, mu) -> np.ndarray:
        p = self.p
        a = a_n.copy()
        for _ in range(self.max_newton):  # a few Newton iterations on an N-vector
            ue = np.einsum("ein,n->ei", self.Ve, a)
            R = p.rho_c * self.Mr @ (a - a_n) + p.dt * self.B @ self._gP(ue, mu, t)
            J = p.rho_c * self.Mr + p.dt * self.B @ self._dgP(ue)
            da = np.linalg.solve(J, R)
            a -= da
            if np.linalg.norm(da) <= self.newton_tol * max(np.linalg.norm(a), 1e-30):
                break
        return a

    def indicator(self, a: np.ndarray) -> float:
        """Relative residual of the Gappy-POD fit of the ROM's heat flux on the reduced elements."""
        ue = np.einsum("ein,n->ei", self.Ve, a)
        return self.gappy.fit(self.p.element_flux(self.E, ue).ravel())[1]

    @property
    def indicator_operation_count(self) -> int:
        """Multiply-adds of one indicator evaluation: the state on the reduced elements (3 N each),
        the flux (about 10 each) and the Gappy fit; no term grows with the mesh."""
        return len(self.E) * (3 * self.N + 10) + self.gappy.operation_count

    # -- enrichment -----------------------------------------------------------------------------
    def enrich(self, u: np.ndarray, mu, t: float):
        """Add a full-order state to the bases (incremental POD) and rebuild the hyper-reduction."""
        self.Vpod.update(u)
        self.Upod.update(self.p.g_vector(u, mu, t))
        self.Wpod.update(self.p.flux_field(u)[0])
        self.rebuild()

    def project(self, u: np.ndarray) -> np.ndarray:
        return self.Vpod.V @ (self.X @ u)

    def reconstruct(self, a: np.ndarray) -> np.ndarray:
        return a @ self.Vpod.V


@dataclass
class AdaptiveResult:
    states: np.ndarray  # (n_times, n_dofs) reconstructed ROM states (for evaluation only)
    indicator: np.ndarray  # (n_times,) indicator of each ROM step (before any enrichment)
    enriched: np.ndarray  # (n_times,) 1 where a full-order step replaced the ROM step
    basis_size: np.ndarray  # (n_times,)
    online_seconds: float  # ROM steps + indicators + hyper-reduction rebuilds (FOM steps excluded)
    fom_seconds: float
    fom_steps: int = field(default=0)


def run_adaptive(rom: HyperReducedROM, mu, tol: float | None = None, fom_step=None) -> AdaptiveResult:
    """Time-step the ROM at parameter mu; with `fom_step` (u_n, t, mu) -> u_{n+1} and `tol`, steps
    whose indicator exceeds tol are replaced by a full-order step followed by an enrichment."""
    p = rom.p
    n_dofs = p.mesh.n_dofs
    a = np.zeros(rom.N)
    states = np.zeros((p.steps + 1, n_dofs))
    eta = np.zeros(p.steps + 1)
    enriched = np.zeros(p.steps + 1, dtype=np.int8)
    sizes = np.full(p.steps + 1, rom.N)
    online = fom_s = 0.0
    for k in range(1, p.steps + 1):  # time steps
        t = k * p.dt
        t0 = time.perf_counter()
        a_new = rom.step(a, t, mu)
        eta[k] = rom.indicator(a_new)
        online += time.perf_counter() - t0
        if fom_step is not None and tol is not None and eta[k] > tol:
            t1 = time.perf_counter()
            u = fom_step(rom.reconstruct(a), t, mu)
            t2 = time.perf_counter()
            rom.enrich(u, mu, t)
            a_new = rom.project(u)
            t3 = time.perf_counter()
            fom_s += t2 - t1
            online += t3 - t2
            enriched[k] = 1
        a = a_new
        states[k] = rom.reconstruct(a)
        sizes[k] = rom.N
    return AdaptiveResult(states, eta, enriched, sizes, online, fom_s, int(enriched.sum()))


def relative_errors(states: np.ndarray, reference: np.ndarray, X) -> np.ndarray:
    """||u_rom(t) - u(t)||_X / ||u(t)||_X per time (0 where the reference is 0)."""
    E = states - reference
    num = np.sqrt(np.einsum("td,td->t", E, (X @ E.T).T))
    den = np.sqrt(np.einsum("td,td->t", reference, (X @ reference.T).T))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)
