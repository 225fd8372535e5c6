"""Hyper-reduced POD-Galerkin ROM of any problem in the element form of the `nonlinear` capability
(rom.hifi.capabilities.Nonlinear), by empirical cubature, with the Gappy-POD error indicator on the dual
quantity and enrichment by full-order steps (Casenave, Akkari et al., error-indicator-based adaptive ROM for
turbine blades; Hernandez, Caicedo, Ferrer, CMAME 2017, empirical cubature).

ROM: u ~ u_D + a @ V (V: X-orthonormal POD modes of the states as rows, u_D the fixed dofs). A step solves,
by Newton on the N-vector a,
    r(a) = sum_{e in S} w~_e / w_e V_e^T r_e(u_e, u_e^n, z_e^n; mu, t) - V F(mu, t) = 0,
where r_e is the problem's element residual, S the reduced cells and w~ their positive weights from the
empirical cubature (rom.reduction.ecm: NNLS on the integrands V_e,i . R_j,e / w_e, R_j the POD modes of the
element-residual fields of the training steps), and V F the exact projection of the affine external
load. The internal variables z (viscoplastic strain, ...) are integrated on the reduced cells only. One
Newton iteration costs O(|S| k N (k + N) + N^3), independent of the mesh.

Indicator: the dual quantity (the stress of a structure, the heat flux of a heat problem) of the ROM state on
the reduced cells, fitted by Gappy POD on the dual modes of the training steps; the relative residual of
the fit. It is an indicator, not a bound.

Adaptive loop: when the indicator exceeds its tolerance, one full-order step is solved from the current
ROM state, with the internal variables of every cell: they are carried back by replaying the law on every
cell along the ROM's own states since the last full-order state (exact for the ROM trajectory; O(n) per
replayed step, no solve). The full-order step's state, element-residual field and dual field enrich V, R
and the dual modes (incremental POD), the cubature is extended from its current points (rom.reduction.ecm.
extend), and the ROM continues from the projected full-order state with the full-order internal variables
restricted to the new reduced cells. An enrichment costs O(n_cells k N r) for the new integrands, besides
the full-order step itself."""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from rom.models.reduced_states import AdaptiveResult, StateBasis, at_cell_dofs
from rom.reduction import ecm
from rom.reduction.gappy import GappyPOD
from rom.reduction.incremental_pod import IncrementalPOD
from rom.reduction.pod import pod


def replay(problem, U: np.ndarray, mu, times: np.ndarray, z0: np.ndarray | None = None, fields: bool = True):
    """The internal variables, element residuals and dual fields of every cell along the states U (n_t, n_dofs)
    (U[0] the start, times[j] the time of U[j]): yields (j, r_e (n_cells, k), z_j, dual (n_cells, nd)) for
    j >= 1; with fields=False only z_j (r_e and dual None)."""
    dofs = problem.element_dofs
    cells = np.arange(len(dofs))
    fixed = problem.fixed_element_values(mu)
    z = problem.initial_internal(len(dofs)) if z0 is None else z0
    ue_prev = at_cell_dofs(dofs, U[0], fixed)
    for j in range(1, len(U)):
        ue = at_cell_dofs(dofs, U[j], fixed)
        re, z, _ = problem.element_residual(cells, ue, ue_prev, z, mu, times[j])
        dual = problem.dual_field(cells, ue, z, mu) if fields else None
        yield j, (re if fields else None), z, dual
        ue_prev = ue


def _weighted_modes(F: np.ndarray, energy_tol: float) -> np.ndarray:
    """One trajectory's fields F (n_t, n) compressed to their POD modes times their singular values, at a
    tenth of the energy tolerance: the POD of these rows stacked over trajectories is the POD of all the
    fields to that truncation (two-level POD)."""
    modes, lam = pod(F, None, energy_tol / 10)
    return np.sqrt(lam[: len(modes)])[:, None] * modes


class CubatureROM(StateBasis):
    """The hyper-reduced ROM of a `nonlinear` problem (module docstring). V, R, D: incremental PODs of
    the states (in X), of the element-residual fields (cells x k, flattened) and of the dual fields."""

    def __init__(self, problem, X, V: IncrementalPOD, R: IncrementalPOD, D: IncrementalPOD, tol_cubature: float = 1e-6,
                 newton_tol: float = 1e-10, max_newton: int = 25, n_snapshots: int = 1):
        self.p, self.X = problem, X
        self.Vpod, self.Rpod, self.Dpod = V, R, D
        self.tol_cubature, self.newton_tol, self.max_newton = tol_cubature, newton_tol, max_newton
        self.dofs = problem.element_dofs
        self.w = np.asarray(problem.element_weights, dtype=float)
        self.k = self.dofs.shape[1]
        self.nd = D.basis.shape[1] // len(self.dofs)
        from rom.hifi.discretization.fem import Pattern

        self.F_terms = problem.external_terms(Pattern.from_cell_dofs(self.dofs, problem.mesh.n_dofs))
        self.cubature = None
        self.n_snapshots = n_snapshots  # the steps behind D: the dual scale's RMS divides by it
        self.rebuild()

    @classmethod
    def from_trajectories(cls, problem, X, S: np.ndarray, mu: np.ndarray, tol_state=1e-5, tol_residual=1e-6,
                          tol_dual=1e-5, max_modes=60, tol_cubature=1e-6):
        """Offline: POD of the states, of the element-residual fields and of the dual fields over the
        train trajectories S (n_mu, n_times, n_dofs), the fields replayed from the states one trajectory
        at a time (two-level POD: memory holds one trajectory's fields and the modes kept)."""
        times = problem.times[: S.shape[1]]
        residual_parts, dual_parts = [], []
        for m, U in zip(mu, S):
            fields = list(replay(problem, U, m, times))
            residual_parts.append(_weighted_modes(np.array([re.ravel() for _, re, _, _ in fields]), tol_residual))
            dual_parts.append(_weighted_modes(np.array([d.ravel() for _, _, _, d in fields]), tol_dual))
            del fields
        states = S[:, 1:].reshape(-1, S.shape[-1])
        V = IncrementalPOD.from_snapshots(states, X, energy_tol=tol_state, max_modes=max_modes)
        R = IncrementalPOD.from_snapshots(np.vstack(residual_parts), None, energy_tol=tol_residual, max_modes=max_modes)
        D = IncrementalPOD.from_snapshots(np.vstack(dual_parts), None, energy_tol=tol_dual, max_modes=max_modes)
        for basis in (V, R, D):  # max_modes caps the offline bases only: enrichment always adds
            basis.max_modes = None
        return cls(problem, X, V, R, D, tol_cubature, n_snapshots=len(mu) * (S.shape[1] - 1))

    # -- the reduced data ------------------------------------------------------------------------------
    @property
    def S(self) -> np.ndarray:
        return self.cubature.points

    def _gathered(self, V: np.ndarray, cells: np.ndarray) -> np.ndarray:
        """Rows of V at the dofs of `cells`, (n_sel, k, N); 0 at fixed dofs."""
        return at_cell_dofs(self.dofs[cells], V.T)

    def integrands(self) -> np.ndarray:
        """G (N r, n_cells): sigma_j V_e,i . R_j,e / w_e for every mode i of V and POD mode j of the
        element-residual fields (singular value sigma_j). Its row space and singular values are those of
        the training integrands V_e,i . r_e(s) / w_e (r_e(s) the residual fields, to the POD's truncation),
        so the cubature integrates what the training steps produced, weighted as they produced it."""
        n = len(self.dofs)
        Ve = self._gathered(self.V, np.arange(n))
        Rm = (self.Rpod.sigma[:, None] * self.Rpod.V).reshape(-1, n, self.k)
        G = np.einsum("eai,jea->ije", Ve, Rm).reshape(-1, n)
        G /= self.w
        return G

    def rebuild(self):
        """The cubature (extended from the current points when there is one) and the reduced data on
        its cells."""
        G = self.integrands()
        if self.cubature is None:
            self.cubature = ecm.empirical_cubature(G, self.w, self.tol_cubature, relative_to="integrands")
        else:
            self.cubature = ecm.extend(self.cubature, G, self.w, self.tol_cubature, relative_to="integrands")
        if not self.cubature.converged:
            warnings.warn(f"empirical cubature: tolerance {self.tol_cubature:g} not reached ({self.cubature.reason}); "
                          f"integration error {self.cubature.error:.3g} with {len(self.S)} cells", stacklevel=2)
        S = self.S
        self.ratio = self.cubature.weights / self.w[S]
        self.VS = self._gathered(self.V, S)
        self.VF = self.V @ self.F_terms.T  # (N, P)
        points = (S[:, None] * self.nd + np.arange(self.nd)).ravel()
        self.gappy = GappyPOD.observed(self.Dpod.basis[:, points].T)
        # The indicator's scale: the RMS over the training steps of the dual field on S. The incremental POD's
        # snapshots are d_s = basis^T K u_s with orthonormal u_s (to its truncation), so sum_s ||d_s,S||^2 =
        # ||K^T basis_S||_F^2; enrichment snapshots count as training ones.
        DS = self.Dpod.K.T @ self.Dpod.basis[:, points]
        self.dual_scale = float(np.sqrt(np.sum(DS * DS) / max(self.n_snapshots, 1)))
        self._fixed_key = None

    def _fixed(self, mu) -> np.ndarray:
        key = tuple(np.asarray(mu, dtype=float))
        if self._fixed_key != key:
            self._fixed_S = self.p.fixed_element_values(mu)[self.S]
            self._fixed_key = key
        return self._fixed_S

    def summary(self) -> dict:
        """What the artefact records of the offline ROM."""
        return {"hyper_reduction": "ecm", "N": self.N, "m": len(self.S), "reduced_elements": len(self.S),
                "n_elements": len(self.dofs), "dual_modes": len(self.Dpod.basis), "residual_modes": len(self.Rpod.basis),
                "cubature_error": float(self.cubature.error), "indicator_operations": self.indicator_operation_count}

    @property
    def indicator_operation_count(self) -> int:
        """Multiply-adds of one indicator: the state on the reduced cells (k N each), the dual quantity (the
        problem's kernel, about k nd each) and the Gappy fit."""
        return len(self.S) * self.k * (self.N + self.nd) + self.gappy.operation_count

    # -- online -----------------------------------------------------------------------------------------
    def step(self, a_n: np.ndarray, z_n: np.ndarray, t: float, mu) -> tuple[np.ndarray, np.ndarray]:
        """One implicit step from coefficients a_n and the internal variables z_n of the reduced cells, by
        Newton until the update is below newton_tol of the coefficients; `converged` says whether it got
        there (within max_newton iterations, a nonsingular reduced tangent)."""
        p, S, VS, ratio = self.p, self.S, self.VS, self.ratio
        fixed = self._fixed(mu)
        ue_prev = fixed + VS @ a_n
        c = p.external_coefficients(mu, t)
        Fr = self.VF @ c if len(c) else np.zeros(self.N)
        a = a_n.copy()
        N = self.N
        WVS = (ratio[:, None, None] * VS).reshape(-1, N)  # the weighted test functions, (|S| k, N)
        self.converged = False
        r0 = None
        for _ in range(self.max_newton):
            re, _, Je = p.element_residual(S, fixed + VS @ a, ue_prev, z_n, mu, t, tangent=True)
            r = re.reshape(-1) @ WVS - Fr
            rn = float(np.linalg.norm(r))
            r0 = rn if r0 is None else r0
            if rn <= self.newton_tol * r0 and r0 > 0:  # the residual test, besides the update's below
                self.converged = True
                break
            K = WVS.T @ np.matmul(Je, VS).reshape(-1, N)
            try:
                da = np.linalg.solve(K, r)
            except np.linalg.LinAlgError:  # a singular reduced tangent: not converged
                break
            a -= da
            if not np.all(np.isfinite(a)):
                a = a_n.copy()
                break
            if np.linalg.norm(da) <= self.newton_tol * max(np.linalg.norm(a), 1e-30):
                self.converged = True
                break
        _, z, _ = p.element_residual(S, fixed + VS @ a, ue_prev, z_n, mu, t)
        return a, z

    def indicator(self, a: np.ndarray, z: np.ndarray, mu) -> float:
        """The residual of the Gappy-POD fit of the ROM's dual quantity on the reduced cells, relative to the
        training steps' RMS dual field there (`dual_scale`), not to the step's own: a cyclic load takes the
        stress through small values, where a residual relative to the step's own norm blows up while the
        error does not (docs/viscoplastic.md). Infinite where training saw no dual field on S and the ROM does."""
        dual = self.p.dual_field(self.S, self._fixed(mu) + self.VS @ a, z, mu).ravel()
        r = float(np.linalg.norm(dual - self.gappy.Q @ (self.gappy.Q.T @ dual)))
        if self.dual_scale > 0:
            return r / self.dual_scale
        return np.inf if r > 0 else 0.0

    # -- enrichment ---------------------------------------------------------------------------------------
    def enrich(self, u_prev: np.ndarray, z_prev: np.ndarray, u: np.ndarray, z: np.ndarray, mu, t: float):
        """Add a full-order step (u_prev, z_prev every cell's internal variables before it) -> (u, z):
        its state, element-residual field and dual field; then extend the cubature."""
        fixed = self.p.fixed_element_values(mu)
        cells = np.arange(len(self.dofs))
        ue = at_cell_dofs(self.dofs, u, fixed)
        re, _, _ = self.p.element_residual(cells, ue, at_cell_dofs(self.dofs, u_prev, fixed), z_prev, mu, t)
        self.Vpod.update(u)
        self.Rpod.update(re.ravel())
        self.Dpod.update(self.p.dual_field(cells, ue, z, mu).ravel())
        self.n_snapshots += 1
        self.rebuild()

@dataclass
class CubatureResult(AdaptiveResult):
    """AdaptiveResult (online_seconds: ROM steps, indicators and enrichments; replays apart) and:"""

    step_seconds: float = 0.0  # ROM steps alone
    rom_steps: int = 0
    replay_seconds: float = 0.0  # the internal variables carried back to every cell before each full-order step
    newton_failures: int = 0  # reduced Newton solves that did not converge (indicator inf at those steps)


def run_cubature(rom: CubatureROM, mu, tol: float | None = None, fom_step=None) -> CubatureResult:
    """Time-step the ROM at mu; with `fom_step` (u_n, t, mu, z_n) -> u_{n+1} (z_{n+1} in fom_step.z) and
    `tol`, steps whose indicator exceeds tol are replaced by a full-order step and an enrichment."""
    p = rom.p
    steps = p.steps
    coef = np.zeros((steps + 1, rom.N))  # in the append-only basis: earlier rows stay valid, zero-padded
    eta = np.zeros(steps + 1)
    enriched = np.zeros(steps + 1, dtype=np.int8)
    sizes = np.full(steps + 1, rom.N)
    a, z = coef[0], p.initial_internal(len(rom.S))
    sync = (0, p.initial_internal(len(rom.dofs)))  # the last step whose full internal variables are known
    online = fom_s = step_s = replay_s = 0.0
    newton_failures = 0
    for k in range(1, steps + 1):
        t = p.times[k]
        t0 = time.perf_counter()
        a_new, z_new = rom.step(a, z, t, mu)
        t1 = time.perf_counter()
        # A reduced Newton that did not converge counts as an infinite indicator: a full-order step if allowed.
        eta[k] = rom.indicator(a_new, z_new, mu) if rom.converged else np.inf
        newton_failures += not rom.converged
        online += time.perf_counter() - t0
        step_s += t1 - t0
        if fom_step is not None and tol is not None and eta[k] > tol:
            t1 = time.perf_counter()
            k0, z_full = sync
            if p.n_internal and k - 1 > k0:
                U = coef[k0:k, : rom.N] @ rom.V  # the ROM's states since the last full-order state
                for step_fields in replay(p, U, mu, p.times[k0:k], z_full, fields=False):
                    z_full = step_fields[2]
            t2 = time.perf_counter()
            replay_s += t2 - t1
            u_prev = rom.reconstruct(a)
            u = fom_step(u_prev, t, mu, z_full)
            t3 = time.perf_counter()
            rom.enrich(u_prev, z_full, u, fom_step.z, mu, t)
            a_new = rom.project(u)
            z_new = fom_step.z[rom.S]
            sync = (k, fom_step.z)
            online += time.perf_counter() - t3
            fom_s += t3 - t2
            enriched[k] = 1
            coef = np.pad(coef, ((0, 0), (0, rom.N - coef.shape[1])))
        coef[k] = a_new
        a, z = a_new, z_new
        sizes[k] = rom.N
    states = coef @ rom.V  # evaluation only: one product at the end
    return CubatureResult(states, eta, enriched, sizes, online, fom_s, int(enriched.sum()), step_s, steps, replay_s,
                          newton_failures)
