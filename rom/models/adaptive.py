"""Hyper-reduced POD-Galerkin ROM of the nonlinear heat problem, its error indicator, and the
adaptive loop that calls the full-order model when the indicator says so (Casenave, Akkari et al., error-indicator-based adaptive ROM for turbine blades).

ROM: u ~ a @ V (V: X-orthonormal modes as rows). Each implicit Euler step solves, by Newton,
    rho_c V M V^T (a - a_n) + dt B g_P(a @ V, t) = 0,   B = V U^T (U[:, P]^T)^{-1},
where g = N(u) - F(t) is the nonlinear conduction term minus the load, U its POD basis and P the
(Q)DEIM dofs. g_P needs only the elements touching P (the reduced mesh E) and the rows of V at their
vertices. Everything a Newton iteration touches is precomputed on E: the element means of V (for
k(ubar)), the element stiffness times V at the rows that feed P, and B; one iteration costs
O((|E| + |fed|) N + m N^2 + N^3), independent of the mesh size, in a dozen array operations.

Indicator: the heat flux -k(u) grad u (the dual quantity) of the ROM state on the reduced elements,
fitted by Gappy POD on the flux modes W of the training snapshots; the relative residual of that fit.
Adaptive loop: when it exceeds `tol`, one full-order step from the current ROM state is solved,
V, U and W are enriched with it (incremental POD), and the hyper-reduction is updated, not rebuilt:
the new state direction borders M_r and V U^T, the new nonlinear direction adds one DEIM point (a
greedy DEIM step on the new direction, keeping the points already chosen) and borders U[:, P], and
the reduced mesh gains the few elements around the new point. An enrichment costs O(n (N + m + q))
for the new directions and the projection of the full-order state (the full-order step itself is
O(n) already), plus O(|E| N + m^3 + |E| q^2) for the reduced data; no O(n N^2) rebuild. The ROM
then continues from the projected full-order state."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from rom.models.reduced_states import AdaptiveResult, StateBasis, at_cell_dofs
from rom.reduction import deim as deim_
from rom.reduction.gappy import GappyPOD
from rom.reduction.incremental_pod import IncrementalPOD


class HyperReducedROM(StateBasis):
    def __init__(self, problem, M, X, V: IncrementalPOD, U: IncrementalPOD, W: IncrementalPOD,
                 method: str = "qdeim", newton_tol: float = 1e-10, max_newton: int = 20):
        self.p, self.M, self.X = problem, M, X
        self.Vpod, self.Upod, self.Wpod = V, U, W
        self.method, self.newton_tol, self.max_newton = method, newton_tol, max_newton
        self.dof_tri = problem.mesh.dof_of_node[problem.mesh.triangles]
        # Triangles around each free dof (CSR by dof): the reduced mesh grows by these on enrichment.
        flat = self.dof_tri.ravel()
        order = np.argsort(flat, kind="stable")
        order = order[flat[order] >= 0]
        self._tri_of_dof = order // 3
        self._tri_ptr = np.searchsorted(flat[order], np.arange(problem.mesh.n_dofs + 1))
        self.rebuild()

    @classmethod
    def from_snapshots(cls, problem, M, X, S: np.ndarray, mu: np.ndarray, tol_state=1e-5, tol_nonlinear=1e-6,
                       tol_flux=1e-5, max_modes=60, method="qdeim"):
        """Offline: POD of the states, of the nonlinear term g and of the flux over the train
        trajectories S (n_mu, n_times, n_dofs)."""
        n_mu, n_t = S.shape[:2]
        states = S[:, 1:].reshape(-1, S.shape[-1])  # u(0) = 0 carries no information
        g = problem.g_vectors(states, np.repeat(mu, n_t - 1, axis=0), np.tile(problem.times[1:n_t], n_mu))
        flux = problem.flux_field(states)
        V = IncrementalPOD.from_snapshots(states, X, energy_tol=tol_state, max_modes=max_modes)
        U = IncrementalPOD.from_snapshots(g, None, energy_tol=tol_nonlinear, max_modes=max_modes)
        W = IncrementalPOD.from_snapshots(flux, None, energy_tol=tol_flux, max_modes=max_modes)
        for basis in (V, U, W):  # max_modes caps the offline bases only: enrichment always adds
            basis.max_modes = None
        return cls(problem, M, X, V, U, W, method)

    # -- hyper-reduction ----------------------------------------------------------------------------
    # The ROM works in the append-only bases of the incremental PODs (same spans as their modes), so
    # that enrichment only borders the reduced quantities below.
    @property
    def m(self) -> int:
        return len(self.P)

    def _flux_points(self, elems: np.ndarray) -> np.ndarray:
        return np.stack([2 * elems, 2 * elems + 1], axis=1).ravel()

    def _at_vertices(self, V: np.ndarray, elems: np.ndarray) -> np.ndarray:
        """Rows of V at the vertices of `elems`, (n_sel, 3, N); 0 at boundary nodes."""
        return at_cell_dofs(self.dof_tri[elems], V.T)

    def rebuild(self):
        """From scratch (offline): (Q)DEIM dofs, reduced mesh, projected operators, Gappy data."""
        V, U, W = self.Vpod.basis, self.Upod.basis, self.Wpod.basis
        self.P = deim_.select(U, self.method)
        self.E = np.flatnonzero(np.isin(self.dof_tri, self.P).any(axis=1))  # elements touching P
        self.Mr = V @ (self.M @ V.T)
        self.VU = V @ U.T
        self.UP = U[:, self.P]
        self.Ve = self._at_vertices(V, self.E)
        self.Wp = W[:, self._flux_points(self.E)].T
        self._reduced()

    def _reduced(self):
        """The arrays the Newton iterations and the indicator use, from Ve, Mr, VU, UP, Wp (all
        sized by N, m, q and |E|; nothing here touches a full-order vector)."""
        d = self.dof_tri[self.E].ravel()
        order = np.argsort(self.P)
        at = np.minimum(np.searchsorted(self.P[order], d), self.m - 1)
        pos = np.where(self.P[order][at] == d, order[at], -1)  # position in P of each element row
        fed = np.flatnonzero(pos >= 0)
        fed = fed[np.argsort(pos[fed], kind="stable")]  # grouped by DEIM dof
        self.fed, self.fed_elem, self.fed_row = fed, fed // 3, pos[fed]
        nE, N, nf = len(self.E), self.N, len(fed)
        Ve = self.Ve
        self.Vbar = Ve.mean(axis=1)  # ubar_e = Vbar_e . a
        self.KVf = np.matmul(self.p.stiffness_e[self.E], Ve).reshape(3 * nE, N)[fed]  # (K_e u_e)_i at fed rows
        # d g_P / d a = S [KVf; sVf] with S = [diag(k) | diag(K u dk)] summed into P rows: one sparse
        # product whose pattern is fixed and whose values change every Newton iteration.
        rows = np.r_[self.fed_row, self.fed_row]
        self.S = sp.csr_matrix((np.zeros(2 * nf), (rows, np.arange(2 * nf))), shape=(self.m, 2 * nf))
        self.S.sort_indices()
        self.KsV = np.vstack([self.KVf, 3.0 * self.Vbar[self.fed_elem]])  # sum_j u_e,j = 3 ubar_e
        self.GV = np.einsum("eik,ein->ekn", self.p.gradients_e[self.E], Ve).reshape(2 * nE, N)  # grad u_e
        self.B = np.linalg.solve(self.UP, self.VU.T).T  # V U^T (U_P^T)^{-1}, (N, m)
        self.gappy = GappyPOD.observed(self.Wp)

    def _load(self, mu, t: float) -> np.ndarray:
        """F(t; mu) at the DEIM dofs, from the reduced mesh: once per time step."""
        Fe = self.p.element_load(self.E, mu, t).ravel()[self.fed]
        return np.bincount(self.fed_row, weights=Fe, minlength=self.m)

    def step(self, a_n: np.ndarray, t: float, mu) -> np.ndarray:
        p, S = self.p, self.S
        BF = self.B @ self._load(mu, t)
        rMr, dt = p.rho_c * self.Mr, p.dt
        r_n = rMr @ a_n
        a = a_n.copy()
        for _ in range(self.max_newton):  # a few Newton iterations on an N-vector
            ubar = self.Vbar @ a
            k, dk = p.k_of(ubar)[self.fed_elem], p.dk_of(ubar)[self.fed_elem] / 3.0
            Ku = self.KVf @ a
            gP = np.bincount(self.fed_row, weights=k * Ku, minlength=self.m)
            R = rMr @ a - r_n + dt * (self.B @ gP - BF)
            S.data[:] = np.concatenate([k, Ku * dk])[S.indices]
            da = np.linalg.solve(rMr + dt * (self.B @ (S @ self.KsV)), R)
            a -= da
            if np.linalg.norm(da) <= self.newton_tol * max(np.linalg.norm(a), 1e-30):
                break
        return a

    def indicator(self, a: np.ndarray) -> float:
        """Relative residual of the Gappy-POD fit of the ROM's heat flux on the reduced elements."""
        k = self.p.k_of(self.Vbar @ a)
        flux = -(k[:, None] * (self.GV @ a).reshape(-1, 2))
        return self.gappy.residual(flux.ravel())

    @property
    def indicator_operation_count(self) -> int:
        """Multiply-adds of one indicator evaluation: the mean and gradient of the state on the
        reduced elements (3 N each), k and the flux (about 10 each) and the Gappy fit; no term grows
        with the mesh."""
        return len(self.E) * (3 * self.N + 10) + self.gappy.operation_count

    def summary(self) -> dict:
        """What the artefact records of the offline ROM."""
        return {"hyper_reduction": self.method, "N": self.N, "m": self.m, "reduced_elements": len(self.E),
                "n_elements": len(self.dof_tri), "dual_modes": len(self.Wpod.V),
                "indicator_operations": self.indicator_operation_count}

    # -- enrichment -----------------------------------------------------------------------------
    def enrich(self, u: np.ndarray, mu, t: float):
        """Add a full-order state to the bases (incremental POD) and update the hyper-reduction."""
        U_old, E_old = self.Upod.basis, self.E
        v = self.Vpod.update(u)
        w_g = self.Upod.update(self.p.g_vector(u, mu, t))
        w = self.Wpod.update(self.p.flux_field(u)[0])
        V, W = self.Vpod.basis, self.Wpod.basis
        if v is not None:  # border M_r and V U^T with the new state direction
            Mv = V @ (self.M @ v)
            self.Mr = np.block([[self.Mr, Mv[:-1, None]], [Mv[None, :]]])
            self.VU = np.vstack([self.VU, v @ U_old.T])
            self.Ve = np.concatenate([self.Ve, self._at_vertices(v[None], E_old)], axis=2)
        if w_g is not None:  # one more DEIM point: a greedy DEIM step on the new direction
            c = np.linalg.solve(self.UP.T, w_g[self.P])
            r = w_g - c @ U_old
            r[self.P] = 0.0
            p_new = int(np.argmax(np.abs(r)))
            self.UP = np.block([[self.UP, U_old[:, p_new, None]], [w_g[None, self.P], w_g[p_new]]])
            self.P = np.append(self.P, p_new)
            self.VU = np.hstack([self.VU, (V @ w_g)[:, None]])
            around = self._tri_of_dof[self._tri_ptr[p_new]:self._tri_ptr[p_new + 1]]
            new_E = np.setdiff1d(around, E_old)
            self.E = np.concatenate([E_old, new_E])
            self.Ve = np.concatenate([self.Ve, self._at_vertices(V, new_E)], axis=0)
        if w is not None:
            self.Wp = np.hstack([self.Wp, w[self._flux_points(E_old)][:, None]])
        new_points = self._flux_points(self.E[len(E_old):])
        self.Wp = np.vstack([self.Wp, W[:, new_points].T])
        self._reduced()

def run_adaptive(rom: HyperReducedROM, mu, tol: float | None = None, fom_step=None) -> AdaptiveResult:
    """Time-step the ROM at parameter mu; with `fom_step` (u_n, t, mu) -> u_{n+1} and `tol`, steps
    whose indicator exceeds tol are replaced by a full-order step followed by an enrichment."""
    p = rom.p
    coef = np.zeros((p.steps + 1, rom.N))  # in the append-only basis: earlier rows stay valid, zero-padded
    eta = np.zeros(p.steps + 1)
    enriched = np.zeros(p.steps + 1, dtype=np.int8)
    sizes = np.full(p.steps + 1, rom.N)
    a = coef[0]
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
            coef = np.pad(coef, ((0, 0), (0, rom.N - coef.shape[1])))
        a = coef[k] = a_new
        sizes[k] = rom.N
    states = coef @ rom.V  # evaluation only: one product at the end
    return AdaptiveResult(states, eta, enriched, sizes, online, fom_s, int(enriched.sum()))


def relative_errors(states: np.ndarray, reference: np.ndarray, X) -> np.ndarray:
    """||u_rom(t) - u(t)||_X / ||u(t)||_X per time (0 where the reference is 0)."""
    E = states - reference
    num = np.sqrt(np.einsum("td,td->t", E, (X @ E.T).T))
    den = np.sqrt(np.einsum("td,td->t", reference, (X @ reference.T).T))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def hyper_reduction(problem, a: dict) -> str:
    """The hyper-reduction of the `adaptive_rom` settings a: `auto` is DEIM (qdeim) where the problem has the
    nonlinear heat kernels this module's ROM evaluates, empirical cubature (ecm) otherwise."""
    from rom.hifi.capabilities import has_heat_kernels

    method = a["hyper_reduction"]
    if method == "auto":
        return "qdeim" if has_heat_kernels(problem) else "ecm"
    return method


def build_rom(problem, ops, S: np.ndarray, mu_train: np.ndarray, a: dict):
    """The offline hyper-reduced ROM of the `adaptive_rom` settings a from the converged train
    trajectories S and their parameters (the stage's and romflow.open's one path): DEIM on the reduced mesh
    (this module, the nonlinear heat problem), or empirical cubature on any problem of the `nonlinear`
    capability (rom.models.hyper)."""
    method = hyper_reduction(problem, a)
    if method == "ecm":
        from rom.models.hyper import CubatureROM

        return CubatureROM.from_trajectories(problem, ops.X, S, mu_train, a["tol_state"], a["tol_nonlinear"],
                                             a["tol_flux"], a["max_modes"], a["tol_cubature"])
    return HyperReducedROM.from_snapshots(problem, ops.M, ops.X, S, mu_train, a["tol_state"], a["tol_nonlinear"],
                                          a["tol_flux"], a["max_modes"], method)


def run_rom(rom, mu, tol: float | None = None, fom_step=None):
    """run_adaptive for the DEIM ROM, rom.models.hyper.run_cubature for the cubature ROM."""
    if isinstance(rom, HyperReducedROM):
        return run_adaptive(rom, mu, tol, fom_step)
    from rom.models.hyper import run_cubature

    return run_cubature(rom, mu, tol, fom_step)


def adaptive_study(problem, ops, S: np.ndarray, mu_train: np.ndarray, mus: np.ndarray, a: dict, fom, step,
                   log=None):
    """The `adaptive_rom` artefact: the hyper-reduced ROM built from the train trajectories S, run at
    each parameter of `mus` without and with the indicator-driven enrichment (full-order steps by
    `step`), against full-order references from `fom`."""
    import copy

    import xarray as xr
    from scipy.stats import spearmanr

    from rom.artefacts import strings

    t0 = time.perf_counter()
    rom0 = build_rom(problem, ops, S, mu_train, a)
    offline = time.perf_counter() - t0
    summary = rom0.summary()
    if log is not None:
        log.info("hyper-reduced ROM (%s): N = %d, m = %d, %d reduced elements of %d (%.1f s)", summary["hyper_reduction"],
                 rom0.N, summary["m"], summary["reduced_elements"], summary["n_elements"], offline)
    rows = {k: [] for k in ("err_static", "err_adaptive", "eta_static", "eta_adaptive", "enriched", "basis_size")}
    fom_seconds, online_static, online_adaptive, fom_step_seconds, fom_steps = [], [], [], [], []
    newton_failures = []
    for m in mus:  # a few parameters
        t1 = time.perf_counter()
        ref = fom.solve_trajectory(m)
        fom_seconds.append(time.perf_counter() - t1)
        if not ref.converged:
            raise ValueError(f"adaptive_rom.mu = {list(m)}: the full-order reference failed ({ref.reason})")
        static = run_rom(copy.deepcopy(rom0), m)
        step.seconds = 0.0
        adapt = run_rom(copy.deepcopy(rom0), m, a["indicator_tol"], step)
        rows["err_static"].append(relative_errors(static.states, ref.u, ops.X))
        rows["err_adaptive"].append(relative_errors(adapt.states, ref.u, ops.X))
        rows["eta_static"].append(static.indicator)
        rows["eta_adaptive"].append(adapt.indicator)
        rows["enriched"].append(adapt.enriched)
        rows["basis_size"].append(adapt.basis_size)
        online_static.append(static.online_seconds)
        online_adaptive.append(adapt.online_seconds)
        fom_step_seconds.append(step.seconds)
        fom_steps.append(adapt.fom_steps)
        newton_failures.append(getattr(static, "newton_failures", 0) + getattr(adapt, "newton_failures", 0))
        if log is not None and newton_failures[-1]:
            log.warning("mu = %s: %d reduced Newton solves did not converge (their steps count as an infinite "
                        "indicator)", list(m), newton_failures[-1])
        if log is not None:
            log.info("mu = %s: max error %.3g static, %.3g adaptive with %d FOM steps", list(m),
                     rows["err_static"][-1].max(), rows["err_adaptive"][-1].max(), fom_steps[-1])
    rank_corr = [spearmanr(e[1:], h[1:]).correlation for e, h in zip(rows["err_static"], rows["eta_static"])]
    dims = ("case", "time")
    return xr.Dataset(
        {
            "mu": (("case", "parameter"), mus),
            "error_static": (dims, np.array(rows["err_static"]), {"long_name": "relative X error, no enrichment"}),
            "error_adaptive": (dims, np.array(rows["err_adaptive"])),
            "indicator_static": (dims, np.array(rows["eta_static"]), {"long_name": "Gappy-POD flux residual"}),
            "indicator_adaptive": (dims, np.array(rows["eta_adaptive"])),
            "enriched": (dims, np.array(rows["enriched"]), {"long_name": "1 where a full-order step was taken"}),
            "basis_size": (dims, np.array(rows["basis_size"])),
            "fom_steps": ("case", np.array(fom_steps)),
            "newton_failures": ("case", np.array(newton_failures), {"long_name": "reduced Newton solves that did not "
                                                                    "converge (static and adaptive runs; counted by "
                                                                    "the cubature ROM only, 0 for DEIM)"}),
            "rank_correlation": ("case", np.array(rank_corr), {"long_name": "Spearman(indicator, error), no enrichment"}),
            "fom_seconds": ("case", np.array(fom_seconds), {"units": "s"}),
            "rom_seconds_static": ("case", np.array(online_static), {"units": "s"}),
            "rom_seconds_adaptive": ("case", np.array(online_adaptive), {"units": "s", "long_name": "ROM + enrichments"}),
            "fom_step_seconds_adaptive": ("case", np.array(fom_step_seconds), {"units": "s"}),
        },
        coords={"time": problem.times, "parameter": strings(problem.parameter_names)},
        attrs={**summary, "n_dofs": problem.mesh.n_dofs, "indicator_tol": a["indicator_tol"],
               "error_tol": a["error_tol"], "offline_seconds": offline},
    )
