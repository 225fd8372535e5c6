"""The steps the offline paths of rom.models.offline call: training sets, the collective FOM operations,
the coercivity step (min-theta, the problem's bound, or SCM), the basis step (weak greedy or POD), the
outputs step (a dual greedy per declared output) and the attributes shared by stationary artefacts.

Each step is called by a path and returns to it; no step calls a path or another step's caller.
Errors a study can cause raise ModelError (one line); SCM's NotCoerciveError likewise."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import xarray as xr

from rom.hifi import capabilities as cap
from rom.models import factory
from rom.models.factory import ModelError

log = logging.getLogger("rom.rb")


def training_set(space, size: int, seed: int) -> np.ndarray:
    """Latin hypercube of `size` points in the parameter box of `space` (rom.hifi.capabilities.
    ParameterSpace; log-uniform axes in log space)."""
    from rom.design import scale, unit_design

    return scale(unit_design("lhs", size, space.dim, seed), space.bounds, list(space.distributions))


# -- collective FOM operations ----------------------------------------------------------------------
def _failure_as_value(solve):
    """A solve that returns its failure instead of raising, so that every MPI rank stays in step
    (RootDriven); the caller on rank 0 raises."""
    def call(mu):
        try:
            return solve(mu)
        except RuntimeError as exc:  # a dual solve that did not converge (the same on every rank)
            return exc
    return call


def fom_operations(problem, fom, outputs=()) -> dict:
    """The collective operations of the offline stage beyond the stationary `solve`, built on every MPI
    rank: the FOM trajectory of a transient problem, the dual (transpose) solve of every declared output."""
    from rom.models.output import dual_fom_solve, output_functional

    operations = {}
    if cap.has(problem, cap.TRANSIENT):
        operations["trajectory"] = fom.solve_trajectory
    for spec in outputs:
        operations[f"dual_{spec['name']}"] = _failure_as_value(dual_fom_solve(fom, output_functional(problem, spec)))
    return operations


def sample_solver(solves, name: str, what: str):
    """mu -> the FOM field of collective operation `name` (ModelError where it did not converge)."""
    def solve(mu):
        r = solves.call(name, mu)
        if not r.converged:
            raise ModelError(f"reduced_basis: FOM {what} at mu = {np.round(mu, 6).tolist()} failed ({r.reason}); "
                             "check simulate.petsc_options / rb.petsc_options")
        return r.u
    return solve


def _dual_solver(solves, name: str):
    def solve(mu):
        z = solves.call(f"dual_{name}", mu)
        if isinstance(z, Exception):
            raise ModelError(f"rb.outputs {name}: {z}; check simulate.petsc_options / rb.petsc_options")
        return z
    return solve


# -- the inner-product (Riesz) solver ----------------------------------------------------------------
RIESZ = "riesz"  # the collective operation of X solves (rom.hifi.solvers.inner_product), where built


def riesz_solver_kind(setting: str, problem, backend: str) -> str:
    """rb.riesz.solver resolved: 'auto' is iterative on a 3D mesh with the petsc backend (a 3D SuperLU
    factorization grows like n^(4/3) in memory), direct otherwise (2D factors stay ~n log n and a
    factorization serves every right-hand side faster than CG)."""
    if setting != "auto":
        return setting
    mesh = getattr(problem, "mesh", None)
    dim = mesh.nodes.shape[1] if mesh is not None else 2
    return "iterative" if dim == 3 and backend == "petsc" else "direct"


def x_solver(X, solves):
    """The X solver of every residual factor of the stage (linalg.RefinedSolver, refined to long double):
    its inner solves are the collective operation 'riesz' (CG + AMG on the MPI ranks) where the stage built
    one (rb.riesz.solver resolved to iterative), else one SuperLU factorization of X on this process."""
    from rom.reduction.linalg import RefinedSolver

    if RIESZ not in getattr(solves, "operations", {}):
        return RefinedSolver(X)

    def inner(B, first):
        Z = solves.call(RIESZ, B, first)
        if isinstance(Z, Exception):
            raise ModelError(f"reduced_basis: {Z}; check rb.riesz.petsc_options")
        return Z
    return RefinedSolver(X, inner=inner, contraction=solves.operations[RIESZ].contraction)


def riesz_attrs(solver) -> dict:
    """What the X solves of the residual data cost and reached (attributes of the rb artefact)."""
    return {"riesz_solver": solver.kind, "riesz_inner_solves": int(solver.solves),
            "riesz_max_backward_error": float(solver.worst_backward_error),
            "riesz_not_arrived": int(solver.not_arrived)}


# -- coercivity ------------------------------------------------------------------------------------
def scm(X, A_terms, theta, space, settings: dict) -> tuple:
    """(SCMBounds, SCMHistory) of the affine operator sum_q theta_q(mu) A_q on a Latin hypercube of
    rb.scm.train_size points (settings: the rb.scm section), refined where its lower bound is not
    positive at a box corner or a training point (scm_greedy's check)."""
    from rom.reduction.scm import box_corners, scm_greedy

    mu = training_set(space, settings["train_size"], settings["seed"])
    log.info("SCM on %d training parameters: %d terms, %d dofs, gap tol %g, at most %d constraint points",
             len(mu), len(A_terms), X.shape[0], settings["tol"], settings["max_constraints"])
    bounds, h = scm_greedy(X, A_terms, theta, mu, tol=settings["tol"], K_max=settings["max_constraints"],
                           n_constraints=settings["n_constraints"], eig_rtol=settings["eig_rtol"],
                           check=box_corners(space.bounds))
    log.info("SCM: %d constraint points (%s), max training gap %.3f; %d eigen-solves, %d factorizations, %d LPs, "
             "%.1f s (eigen %.1f s, LP %.1f s)", bounds.K, h.stop_reason, h.max_gap[-1], h.eigen_solves,
             h.factorizations, h.lps, h.seconds, h.seconds_eigen, h.seconds_lp)
    return bounds, h


def coercivity(problem, X, A_terms, theta, space, s: dict, source: str):
    """The coercivity step of an affine operator: (SCMBounds, SCMHistory) where rb.scm asks for them
    ((None, None) otherwise) and the label of the lower bound the models use. source: the bound there is
    without SCM (factory.coercivity_source: problem, min_theta or none)."""
    if not factory.uses_scm(s["scm"]["enabled"], source):
        if source == "none":
            raise ModelError(f"problem {problem.name}: no coercivity lower bound (min-theta needs X = sum_q A_q with "
                             "positive semidefinite terms, and the problem states none); expected rb.scm.enabled: "
                             "auto or true")
        return None, None, source
    bounds, h = scm(X, A_terms, theta, space, s["scm"])
    return bounds, h, "scm" if source == "none" else f"max(scm, {source})"


def scm_dataset(bounds, history, settings: dict) -> xr.Dataset:
    """The SCM part of the rb artefact: SCMBounds.to_dataset('scm_'), the greedy's gaps and its
    offline cost (eigen-solves, factorizations, LPs, seconds) as attributes."""
    ds = bounds.to_dataset("scm_")
    ds["scm_greedy_selected"] = ("scm_step", np.array(history.selected, dtype=np.int64))
    gaps = np.full(len(history.selected), np.nan)  # constraints added by the box-corner refinement have no gap
    gaps[:len(history.max_gap)] = history.max_gap
    ds["scm_greedy_max_gap"] = ("scm_step", gaps,
                                {"long_name": "max over the SCM training set of 1 - LB / UB after the step"})
    ds.attrs.update(scm_K=bounds.K, scm_certificates=bounds.n_certificates, scm_eigen_solves=history.eigen_solves,
                    scm_factorizations=history.factorizations, scm_lps=history.lps, scm_seconds=history.seconds,
                    scm_seconds_eigen=history.seconds_eigen, scm_seconds_lp=history.seconds_lp,
                    scm_stop_reason=history.stop_reason, scm_warning=history.warning,
                    scm_max_gap=float(history.max_gap[-1]), scm_tol=settings["tol"],
                    scm_train_size=settings["train_size"], scm_refined=len(history.refined),
                    scm_nonpositive=history.nonpositive)
    return ds


# -- basis -----------------------------------------------------------------------------------------
def basis(reductor, mu_train, solves, X, s: dict, train=None) -> tuple:
    """The basis step of a stationary reductor: the weak greedy with FOM solves (rb.method: greedy) or
    the POD of the train snapshots (rb.method: pod). Returns (GreedyHistory, seconds)."""
    from rom.reduction.greedy import GreedyHistory, weak_greedy
    from rom.reduction.pod import pod
    from rom.snapshots import snapshot_rows

    t0 = time.perf_counter()
    if s["method"] == "greedy":
        history = weak_greedy(mu_train, sample_solver(solves, "solve", "solve"), reductor, s["tol"], s["max_modes"])
    else:
        if train is None:
            raise ModelError("reduced_basis: rb.method = pod needs --train snapshots/train.h5")
        S = snapshot_rows(train)
        V, _ = pod(S, X, s["tol"] ** 2, s["max_modes"])
        log.info("POD of %d train snapshots: %d modes", len(S), len(V))
        reductor.set_basis(V)
        history = GreedyHistory(stop_reason="pod")
    seconds = time.perf_counter() - t0
    log.info("basis: N = %d (%s) in %.1f s", reductor.N, history.stop_reason, seconds)
    return history, seconds


# -- outputs ---------------------------------------------------------------------------------------
def outputs(problem, ops, reductor, mu_train, space, s: dict, solves) -> list[xr.Dataset]:
    """The outputs step: per rb.outputs entry (the problem's output functionals), the dual greedy of the
    primal-dual bound on the primal reductor's basis, as the output_<name>_* part of the rb artefact."""
    from rom.models.output import OutputModel, dual_reductor, output_functional
    from rom.reduction.greedy import weak_greedy

    parts = []
    for spec in s["outputs"]:
        out = output_functional(problem, spec)
        dual = dual_reductor(ops.X, ops.A_terms, out, reductor.coefficients, space.bounds, list(space.names),
                             s["extrapolation"], s["estimator"], solver=reductor.solver)
        log.info("output %s (%s): dual greedy", out.name, spec["kind"])
        t1 = time.perf_counter()
        h = weak_greedy(mu_train, _dual_solver(solves, out.name), dual, s["tol"], s["max_modes"])
        seconds = time.perf_counter() - t1
        log.info("output %s: dual basis M = %d (%s) in %.1f s", out.name, dual.N, h.stop_reason, seconds)
        p = f"output_{out.name}_"
        ds_out = OutputModel.build(reductor, dual, ops.A_terms, ops.f_terms, out).to_dataset(prefix=p)
        ds_out[f"{p}greedy_max_estimate"] = (f"{p}greedy_step", np.array(h.max_estimate))
        ds_out.attrs.update({f"{p}M": dual.N, f"{p}stop_reason": h.stop_reason, f"{p}warning": h.warning,
                             f"{p}offline_seconds": seconds})
        parts.append(ds_out)
    return parts


# -- the stationary artefact -----------------------------------------------------------------------
def stationary_attrs(s: dict, kinds, coercivity_label: str, reductor, seconds: float, solves, eim_ds) -> dict:
    """The attributes of a stationary rb artefact (settings, coercivity, timings, EIM terms, outputs)."""
    return dict(
        formulation="stationary", method=s["method"], tol=s["tol"], max_modes=s["max_modes"],
        estimator=s["estimator"], eim_bound=s["eim_bound"], coercivity=coercivity_label,
        reorthonormalizations=reductor.reorthonormalizations, offline_seconds=seconds, mpi_ranks=solves.size,
        eim_terms=int(eim_ds.attrs["M"]) if eim_ds is not None else 0,
        outputs=json.dumps([dict(spec) for spec in s["outputs"]]), **riesz_attrs(reductor.solver),
        **{f"{k}_eim_bound": factory.eim_bound_label(k, s["eim_bound"]) for k in kinds if k != "affine"})


def merged(ds: xr.Dataset, parts) -> xr.Dataset:
    for part in parts:
        ds = ds.merge(part, combine_attrs="no_conflicts")
    return ds
