"""The offline stage of certified reduced bases (what the reduced_basis stage runs), from a problem,
its operators artefact and full-order solves:

- stationary problems (affine, or made affine by EIM): the weak greedy (or POD of the train
  snapshots), the coercivity lower bound from the problem, min-theta or, where neither is valid, an
  SCM built on a training set (rom.reduction.scm), and per declared output the dual greedy of the
  primal-dual output bound (rom.models.output);
- transient affine problems: POD-greedy over FOM trajectories with the space-time bound
  (rom.models.parabolic).

Full-order solves are named collective operations (rom.hifi.solvers.distributed.RootDriven), built on every
MPI rank by `fom_operations`: 'solve', 'trajectory', 'dual_<output name>'. The result is the rb
artefact (an xarray Dataset); its readers are in rom.models.factory.

Errors a study can cause raise ModelError (one line); SCM's NotCoerciveError likewise.
"""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import xarray as xr

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
    """The collective operations of the offline stage beyond the stationary `solve`: the FOM
    trajectory of a transient problem, and the dual (transpose) solve of every declared output."""
    from rom.models.output import dual_fom_solve, thermal_block_output

    operations = {}
    if problem.transient:
        operations["trajectory"] = fom.solve_trajectory
    for spec in outputs:
        operations[f"dual_{spec['name']}"] = _failure_as_value(dual_fom_solve(fom, thermal_block_output(problem, spec)))
    return operations


def _sample_solver(solves, name: str, what: str):
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


def scm_dataset(bounds, history, settings: dict) -> xr.Dataset:
    """The SCM part of the rb artefact: SCMBounds.to_dataset('scm_'), the greedy's gaps and its
    offline cost (eigen-solves, factorizations, LPs, seconds) as attributes."""
    ds = bounds.to_dataset("scm_")
    ds["scm_greedy_selected"] = ("scm_step", np.array(history.selected, dtype=np.int64))
    ds["scm_greedy_max_gap"] = ("scm_step", np.array(history.max_gap),
                                {"long_name": "max over the SCM training set of 1 - LB / UB after the step"})
    ds.attrs.update(scm_K=bounds.K, scm_certificates=bounds.n_certificates, scm_eigen_solves=history.eigen_solves,
                    scm_factorizations=history.factorizations, scm_lps=history.lps, scm_seconds=history.seconds,
                    scm_seconds_eigen=history.seconds_eigen, scm_seconds_lp=history.seconds_lp,
                    scm_stop_reason=history.stop_reason, scm_warning=history.warning,
                    scm_max_gap=float(history.max_gap[-1]), scm_tol=settings["tol"],
                    scm_train_size=settings["train_size"], scm_refined=len(history.refined),
                    scm_nonpositive=history.nonpositive)
    return ds


def _coercivity(problem, X, A_terms, theta, space, s: dict, source: str):
    """SCM bounds and history where rb.scm asks for them (None, None otherwise), and the label of
    the coercivity lower bound the models use."""
    if not factory.uses_scm(s["scm"]["enabled"], source):
        if source == "none":
            raise ModelError(f"problem {problem.name}: no coercivity lower bound (min-theta needs X = sum_q A_q with "
                             "positive semidefinite terms, and the problem states none); expected rb.scm.enabled: "
                             "auto or true")
        return None, None, source
    bounds, h = scm(X, A_terms, theta, space, s["scm"])
    return bounds, h, "scm" if source == "none" else f"max(scm, {source})"


# -- stationary ------------------------------------------------------------------------------------
def reduce_stationary(problem, ops, space, s: dict, solves, eim_ds=None, train=None) -> xr.Dataset:
    """The rb artefact of a stationary problem. s: the rb section; solves: RootDriven (or any
    object with call(name, mu) for the operations of `fom_operations`); train: the train snapshots
    (rb.method: pod)."""
    from rom.models.output import OutputModel, dual_reductor, thermal_block_output
    from rom.reduction.greedy import GreedyHistory, weak_greedy
    from rom.reduction.pod import pod
    from rom.snapshots import snapshot_rows

    names, bounds = list(space.names), space.bounds
    if not problem.affine and eim_ds is None:
        raise ModelError(f"reduced_basis: problem {problem.name} is not affine; expected --eim rom/eim.h5 "
                         "(eim.enabled: true)")
    if not problem.affine and hasattr(problem, "coercivity_lower_bound"):
        low = problem.coercivity_lower_bound(bounds[:, 0][None, :])[0]
        if low <= 0:
            raise ModelError(f"parameters: coercivity lower bound {low:g} <= 0 at the lower bounds; expected a "
                             f"parameter box where problem {problem.name} is coercive")
    kinds = factory.model_kinds(problem, eim_ds)
    scm_bounds = scm_history = None
    if kinds[0] == "affine":
        source = factory.coercivity_source(problem, ops.X, ops.A_terms)
        scm_bounds, scm_history, coercivity = _coercivity(problem, ops.X, ops.A_terms, problem.theta, space, s, source)
    else:
        coercivity = "problem"
    settings = (bounds, names, s["extrapolation"], s["estimator"], s["eim_bound"])
    reductor = factory.reductor(problem, ops, eim_ds, kinds[0], *settings, scm=scm_bounds)
    mu_train = training_set(space, s["train_size"], s["train_seed"])
    log.info("reduced basis (%s, model %s) of problem %s: %d dofs, %d operator and %d load terms; coercivity lower "
             "bound: %s; training set %d parameters, tol %g, at most %d basis vectors", s["method"], kinds[0],
             problem.name, ops.X.shape[0], len(reductor.A_terms), len(reductor.f_terms), coercivity, len(mu_train),
             s["tol"], s["max_modes"])
    t0 = time.perf_counter()
    if s["method"] == "greedy":
        history = weak_greedy(mu_train, _sample_solver(solves, "solve", "solve"), reductor, s["tol"], s["max_modes"])
    else:
        if train is None:
            raise ModelError("reduced_basis: rb.method = pod needs --train snapshots/train.h5")
        S = snapshot_rows(train)
        V, _ = pod(S, ops.X, s["tol"] ** 2, s["max_modes"])
        log.info("POD of %d train snapshots: %d modes", len(S), len(V))
        reductor.set_basis(V)
        history = GreedyHistory(stop_reason="pod")
    offline = time.perf_counter() - t0
    log.info("basis: N = %d (%s) in %.1f s", reductor.N, history.stop_reason, offline)
    models = {kinds[0]: reductor.model()}
    for kind in kinds[1:]:
        # The matrix-EIM model on the same basis: the FOM's matrices only, no assembly code.
        other = factory.reductor(problem, ops, eim_ds, kind, *settings)
        other.set_basis(reductor.V)
        models[kind] = other.model()
    outputs = []
    for spec in s["outputs"]:
        out = thermal_block_output(problem, spec)
        dual = dual_reductor(ops.X, ops.A_terms, out, reductor.coefficients, bounds, names, s["extrapolation"],
                             s["estimator"])
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
        outputs.append(ds_out)
    ds = factory.rb_dataset(models, reductor.V, history, mu_train, bounds, names, dict(
        formulation="stationary", method=s["method"], tol=s["tol"], max_modes=s["max_modes"],
        estimator=s["estimator"], eim_bound=s["eim_bound"], coercivity=coercivity,
        reorthonormalizations=reductor.reorthonormalizations, offline_seconds=offline, mpi_ranks=solves.size,
        eim_terms=int(eim_ds.attrs["M"]) if eim_ds is not None else 0,
        outputs=json.dumps([dict(spec) for spec in s["outputs"]]),
        **{f"{k}_eim_bound": factory.eim_bound_label(k, s["eim_bound"]) for k in kinds if k != "affine"}))
    for part in outputs + ([scm_dataset(scm_bounds, scm_history, s["scm"])] if scm_bounds is not None else []):
        ds = ds.merge(part, combine_attrs="no_conflicts")
    return ds


# -- parabolic -------------------------------------------------------------------------------------
def reduce_parabolic(problem, ops, space, s: dict, solves) -> xr.Dataset:
    """The rb artefact of a linear transient affine problem: POD-greedy over FOM trajectories
    (`solves.call('trajectory', mu)`), the space-time energy bound (rom.models.parabolic)."""
    from rom.artefacts import strings
    from rom.models.parabolic import ParabolicReductor, affine_system, pod_greedy
    from rom.reduction.scm import SCMCoefficients

    try:
        system = affine_system(problem, ops, space.bounds)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    co = system.coefficients
    source = "min_theta" if co.theta_ref is not None else "none"
    scm_bounds, scm_history, coercivity = _coercivity(problem, system.X, system.A_terms, co.theta, space, s, source)
    if scm_bounds is not None:
        system.coefficients = SCMCoefficients(co, scm_bounds, keep_base_bound=source != "none")
    mu_train = training_set(space, s["train_size"], s["train_seed"])
    red = ParabolicReductor(system)
    log.info("parabolic RB (POD-greedy) of problem %s: %d dofs, %d steps of dt = %g, %d operator, %d load and %d "
             "initial terms; coercivity lower bound: %s; training set %d parameters, tol %g, at most %d basis vectors",
             problem.name, system.X.shape[0], system.steps, system.dt, len(system.A_terms), len(system.f_terms),
             len(system.u0_terms), coercivity, len(mu_train), s["tol"], s["max_modes"])
    t0 = time.perf_counter()
    h = pod_greedy(mu_train, _sample_solver(solves, "trajectory", "trajectory"), red, s["tol"], s["max_modes"])
    offline = time.perf_counter() - t0
    log.info("basis: N = %d (%s) in %.1f s", red.N, h.stop_reason, offline)
    model = red.model()
    steps = len(h.selected)
    ds = xr.Dataset({
        "basis": (("mode", "dof"), red.V, {"long_name": "X-orthonormal reduced basis (rows)"}),
        "bounds": (("parameter", "bound"), space.bounds),
        "mu_train": (("train_sample", "parameter"), mu_train),
        "greedy_selected": ("greedy_step", np.array(h.selected, dtype=np.int64)),
        "greedy_mu": (("greedy_step", "parameter"), mu_train[h.selected].reshape(steps, -1)),
        "greedy_fom_seconds": ("greedy_step", np.array(h.fom_seconds[:steps])),
        "greedy_max_estimate": ("greedy_check", np.array(h.max_estimate),
                                {"long_name": "max relative space-time bound over the training set at basis size"}),
        "greedy_basis_size": ("greedy_check", np.array(h.basis_size, dtype=np.int64)),
    }, coords={"parameter": strings(space.names), "bound": strings(["lower", "upper"])})
    ds = ds.merge(model.to_dataset("parabolic_"), combine_attrs="no_conflicts")
    if scm_bounds is not None:
        ds = ds.merge(scm_dataset(scm_bounds, scm_history, s["scm"]), combine_attrs="no_conflicts")
    ds.attrs.update(formulation="parabolic", kinds="parabolic", method="pod_greedy", N=red.N, tol=s["tol"],
                    max_modes=s["max_modes"], stop_reason=h.stop_reason, warning=h.warning, estimator="stable",
                    coercivity=coercivity, offline_seconds=offline, mpi_ranks=solves.size, outputs="[]")
    return ds
