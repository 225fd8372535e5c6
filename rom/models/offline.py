"""The offline stage of certified reduced bases (what the reduced_basis stage runs): one path per model
kind, each reading top to bottom, calling the steps of rom.models.steps (training set, coercivity/SCM,
basis, outputs) and returning the rb artefact (an xarray Dataset; its readers are in rom.models.factory):

- `reduce_affine`: a stationary affine problem: the coercivity step (the problem's bound, min-theta or
  SCM), the weak greedy (or POD of the train snapshots), the outputs step (a dual greedy per declared
  output functional, rom.models.output);
- `reduce_eim_affine`: a stationary problem made affine by the EIM of its coefficient (and the
  nonintrusive matrix EIM on the same basis where the EIM artefact has it), the problem's own bound;
- `reduce_blackbox_eim`: a black box with an entries mode (rom.hifi.problems.external_eim): the RB on
  the EIM-affine model of its delivered A(mu) and f(mu), SCM of that model as coercivity step, the weak
  greedy with the black box's own solves (rom.models.eim_rb: what the bound certifies);
- `reduce_parabolic`: a linear transient affine problem: the coercivity step, POD-greedy over FOM
  trajectories with the space-time bound (rom.models.parabolic).

`path_of(problem)` names the path; `PATHS` maps names to the functions. Full-order solves are named
collective operations (rom.hifi.solvers.distributed.RootDriven) built on every MPI rank by
`steps.fom_operations`: 'solve', 'trajectory', 'dual_<output name>', and 'riesz' (the X solves of the
residual data on the MPI ranks, rom.hifi.solvers.inner_product) where rb.riesz.solver resolves to iterative;
every reductor of a path shares one X solver (`steps.x_solver`).

Errors a study can cause raise ModelError (one line); SCM's NotCoerciveError likewise.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import xarray as xr

from rom.hifi import capabilities as cap
from rom.models import factory, steps
from rom.models.factory import ModelError

log = logging.getLogger("rom.rb")


def path_of(problem) -> str:
    """The offline path of a problem: 'parabolic', 'affine', 'blackbox_eim' or 'eim_affine'."""
    if cap.has(problem, cap.TRANSIENT):
        return "parabolic"
    if cap.has(problem, cap.OPERATOR_ENTRIES):
        return "blackbox_eim"
    return "affine" if cap.has(problem, cap.AFFINE) else "eim_affine"


# -- stationary affine -----------------------------------------------------------------------------
def reduce_affine(problem, ops, space, s: dict, solves, eim_ds=None, train=None) -> xr.Dataset:
    """The rb artefact of a stationary affine problem. s: the rb section; solves: RootDriven (or any
    object with call(name, mu) for the operations of `steps.fom_operations`); train: the train snapshots
    (rb.method: pod); eim_ds only counts its terms (attribute eim_terms)."""
    names, bounds = list(space.names), space.bounds
    source = factory.coercivity_source(problem, ops.X, ops.A_terms)
    scm_bounds, scm_history, coercivity = steps.coercivity(problem, ops.X, ops.A_terms, problem.theta, space, s,
                                                           source)
    reductor = factory.reductor(problem, ops, eim_ds, "affine", bounds, names, s["extrapolation"], s["estimator"],
                                s["eim_bound"], scm=scm_bounds, solver=steps.x_solver(ops.X, solves))
    mu_train = steps.training_set(space, s["train_size"], s["train_seed"])
    log.info("reduced basis (%s, model %s) of problem %s: %d dofs, %d operator and %d load terms; coercivity lower "
             "bound: %s; training set %d parameters, tol %g, at most %d basis vectors", s["method"], "affine",
             problem.name, ops.X.shape[0], len(reductor.A_terms), len(reductor.f_terms), coercivity, len(mu_train),
             s["tol"], s["max_modes"])
    history, seconds = steps.basis(reductor, mu_train, solves, ops.X, s, train)
    models = {"affine": reductor.model()}
    outputs = steps.outputs(problem, ops, reductor, mu_train, space, s, solves)
    ds = factory.rb_dataset(models, reductor.V, history, mu_train, bounds, names,
                            steps.stationary_attrs(s, models, coercivity, reductor, seconds, solves, eim_ds))
    scm_part = [steps.scm_dataset(scm_bounds, scm_history, s["scm"])] if scm_bounds is not None else []
    return steps.merged(ds, outputs + scm_part)


# -- stationary, affine by EIM ---------------------------------------------------------------------
def reduce_eim_affine(problem, ops, space, s: dict, solves, eim_ds=None, train=None) -> xr.Dataset:
    """The rb artefact of a stationary problem made affine by the EIM of its coefficient (model
    function_eim), with the matrix-EIM model on the same basis where the EIM artefact has one."""
    names, bounds = list(space.names), space.bounds
    if eim_ds is None:
        raise ModelError(f"reduced_basis: problem {problem.name} is not affine; expected --eim rom/eim.h5 "
                         "(eim.enabled: true)")
    if s["outputs"]:
        raise ModelError(f"rb.outputs: output bounds need an affine operator, and problem {problem.name} is not "
                         "affine; expected rb.outputs: []")
    if cap.has(problem, cap.COERCIVITY_BOUND):
        low = problem.coercivity_lower_bound(bounds[:, 0][None, :])[0]
        if low <= 0:
            raise ModelError(f"parameters: coercivity lower bound {low:g} <= 0 at the lower bounds; expected a "
                             f"parameter box where problem {problem.name} is coercive")
    kinds = factory.model_kinds(problem, eim_ds)  # function_eim, and matrix_eim where the artefact has it
    coercivity = "problem"
    settings = (bounds, names, s["extrapolation"], s["estimator"], s["eim_bound"])
    solver = steps.x_solver(ops.X, solves)
    reductor = factory.reductor(problem, ops, eim_ds, kinds[0], *settings, solver=solver)
    mu_train = steps.training_set(space, s["train_size"], s["train_seed"])
    log.info("reduced basis (%s, model %s) of problem %s: %d dofs, %d operator and %d load terms; coercivity lower "
             "bound: %s; training set %d parameters, tol %g, at most %d basis vectors", s["method"], kinds[0],
             problem.name, ops.X.shape[0], len(reductor.A_terms), len(reductor.f_terms), coercivity, len(mu_train),
             s["tol"], s["max_modes"])
    history, seconds = steps.basis(reductor, mu_train, solves, ops.X, s, train)
    models = {kinds[0]: reductor.model()}
    for kind in kinds[1:]:
        # The matrix-EIM model on the same basis: the FOM's matrices only, no assembly code.
        other = factory.reductor(problem, ops, eim_ds, kind, *settings, solver=solver)
        other.set_basis(reductor.V)
        models[kind] = other.model()
    return factory.rb_dataset(models, reductor.V, history, mu_train, bounds, names,
                              steps.stationary_attrs(s, kinds, coercivity, reductor, seconds, solves, eim_ds))


# -- a black box's EIM-affine model ---------------------------------------------------------------
def reduce_blackbox_eim(problem, ops, space, s: dict, solves, eim_ds=None, train=None) -> xr.Dataset:
    """The rb artefact of a black box with an entries mode: SCM of the EIM-affine operator A_M, then the
    weak greedy (snapshots: the black box's own solves) or the POD of its train snapshots."""
    names, bounds = list(space.names), space.bounds
    if s["outputs"]:
        raise ModelError(f"rb.outputs: output bounds need an affine operator, and problem {problem.name} is a "
                         "non-affine black box; expected rb.outputs: []")
    base, A_terms, f_terms = factory.blackbox_eim(problem, ops, eim_ds, s["eim_bound"])
    scm_bounds, scm_history, coercivity = steps.coercivity(problem, ops.X, A_terms, base.theta, space, s, "none")
    coef = factory.with_scm(base, scm_bounds, A_terms, ops.X)
    from rom.models.rb import CoerciveRBReductor

    reductor = CoerciveRBReductor(ops.X, A_terms, f_terms, coef, bounds, names, s["extrapolation"], s["estimator"],
                                  solver=steps.x_solver(ops.X, solves))
    mu_train = steps.training_set(space, s["train_size"], s["train_seed"])
    log.info("reduced basis (%s, model blackbox_eim) of problem %s: %d dofs, %d operator and %d load EIM terms; "
             "coercivity lower bound: %s minus the operator's EIM error %.2e (max over the EIM's training and test sets); training set %d "
             "parameters, tol %g, at most %d basis vectors", s["method"], problem.name, ops.X.shape[0], len(A_terms),
             len(f_terms), coercivity, float(eim_ds.attrs["matrix_operator_error"]), len(mu_train), s["tol"],
             s["max_modes"])
    history, seconds = steps.basis(reductor, mu_train, solves, ops.X, s, train)
    models = {"blackbox_eim": reductor.model()}
    ds = factory.rb_dataset(models, reductor.V, history, mu_train, bounds, names,
                            steps.stationary_attrs(s, models, coercivity, reductor, seconds, solves, eim_ds))
    ds.attrs.update(eim_terms=int(eim_ds.attrs["matrix_M"]), rhs_eim_terms=int(eim_ds.attrs["rhs_M"]))
    return steps.merged(ds, [steps.scm_dataset(scm_bounds, scm_history, s["scm"])])


# -- parabolic -------------------------------------------------------------------------------------
def reduce_parabolic(problem, ops, space, s: dict, solves, eim_ds=None, train=None) -> xr.Dataset:
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
    scm_bounds, scm_history, coercivity = steps.coercivity(problem, system.X, system.A_terms, co.theta, space, s,
                                                           source)
    if scm_bounds is not None:
        system.coefficients = SCMCoefficients(co, scm_bounds, keep_base_bound=source != "none")
    mu_train = steps.training_set(space, s["train_size"], s["train_seed"])
    red = ParabolicReductor(system, solver=steps.x_solver(system.X, solves))
    log.info("parabolic RB (POD-greedy) of problem %s: %d dofs, %d steps of dt = %g, %d operator, %d load and %d "
             "initial terms; coercivity lower bound: %s; training set %d parameters, tol %g, at most %d basis vectors",
             problem.name, system.X.shape[0], system.steps, system.dt, len(system.A_terms), len(system.f_terms),
             len(system.u0_terms), coercivity, len(mu_train), s["tol"], s["max_modes"])
    t0 = time.perf_counter()
    h = pod_greedy(mu_train, steps.sample_solver(solves, "trajectory", "trajectory"), red, s["tol"], s["max_modes"])
    offline = time.perf_counter() - t0
    log.info("basis: N = %d (%s) in %.1f s", red.N, h.stop_reason, offline)
    model = red.model()
    n_steps = len(h.selected)
    ds = xr.Dataset({
        "basis": (("mode", "dof"), red.V, {"long_name": "X-orthonormal reduced basis (rows)"}),
        "bounds": (("parameter", "bound"), space.bounds),
        "mu_train": (("train_sample", "parameter"), mu_train),
        "greedy_selected": ("greedy_step", np.array(h.selected, dtype=np.int64)),
        "greedy_mu": (("greedy_step", "parameter"), mu_train[h.selected].reshape(n_steps, -1)),
        "greedy_fom_seconds": ("greedy_step", np.array(h.fom_seconds[:n_steps])),
        "greedy_max_estimate": ("greedy_check", np.array(h.max_estimate),
                                {"long_name": "max relative space-time bound over the training set at basis size"}),
        "greedy_basis_size": ("greedy_check", np.array(h.basis_size, dtype=np.int64)),
    }, coords={"parameter": strings(space.names), "bound": strings(["lower", "upper"])})
    ds = ds.merge(model.to_dataset("parabolic_"), combine_attrs="no_conflicts")
    if scm_bounds is not None:
        ds = ds.merge(steps.scm_dataset(scm_bounds, scm_history, s["scm"]), combine_attrs="no_conflicts")
    ds.attrs.update(formulation="parabolic", kinds="parabolic", method="pod_greedy", N=red.N, tol=s["tol"],
                    max_modes=s["max_modes"], stop_reason=h.stop_reason, warning=h.warning, estimator="stable",
                    coercivity=coercivity, offline_seconds=offline, mpi_ranks=solves.size, outputs="[]",
                    **steps.riesz_attrs(red.galerkin.solver))
    return ds


PATHS = {"affine": reduce_affine, "eim_affine": reduce_eim_affine, "blackbox_eim": reduce_blackbox_eim,
         "parabolic": reduce_parabolic}
