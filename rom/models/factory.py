"""Reduced models from artefacts: the coefficients, operator terms and loads of each model kind
(affine, function_eim, matrix_eim), and the models of an rb artefact.

Errors in what the artefacts allow raise ModelError (a ValueError, one line naming what is
missing and what is expected); the command layer reports it as a user error."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .eim_artefact import eim_from_dataset

LABELS = {"affine": "RB", "function_eim": "RB + function EIM", "matrix_eim": "RB + matrix EIM (nonintrusive)",
          "blackbox_eim": "RB + matrix EIM of a black box's A and f (nonintrusive)"}
# What the EIM share of the bound is, per model kind and rb.eim_bound setting (eim_rb module doc).
EIM_BOUND = {("function_eim", "rigorous"): "rigorous", ("matrix_eim", "rigorous"): "training_sup",
             ("function_eim", "indicator"): "indicator", ("matrix_eim", "indicator"): "indicator",
             ("blackbox_eim", "rigorous"): "training_sup", ("blackbox_eim", "indicator"): "indicator"}


class ModelError(ValueError):
    """A reduced model that the given problem and artefacts cannot provide."""


def model_kinds(problem, eim_ds=None) -> list[str]:
    from rom.hifi import capabilities as cap

    if cap.has(problem, cap.AFFINE):
        return ["affine"]
    if cap.has(problem, cap.OPERATOR_ENTRIES):
        return ["blackbox_eim"]
    return ["function_eim"] + (["matrix_eim"] if eim_ds is not None and "matrix_basis" in eim_ds else [])


def eim_bound_label(kind: str, eim_bound: str) -> str:
    """'rigorous', 'training_sup' or 'indicator' for EIM models, 'none' for affine ones."""
    return EIM_BOUND.get((kind, eim_bound), "none")


def coercivity_source(problem, X, A_terms) -> str:
    """Where the coercivity lower bound of an affine operator comes from without SCM: 'problem'
    (capability coercivity_bound), 'min_theta' (rb.min_theta_valid), or 'none' (SCM needed)."""
    from rom.hifi import capabilities as cap
    from rom.models.rb import min_theta_valid

    if cap.has(problem, cap.COERCIVITY_BOUND) and not cap.has(problem, cap.TRANSIENT):
        return "problem"
    return "min_theta" if min_theta_valid(X, A_terms) else "none"


def uses_scm(setting, source: str) -> bool:
    """rb.scm.enabled (auto | true | false) and the bound available without it: whether SCM runs."""
    return setting is True or (setting == "auto" and source == "none")


def coefficients(problem, ops, eim_ds, kind: str, eim_bound: str = "rigorous", scm=None):
    """(coefficients, A_terms, f_terms) of the model family `kind`: affine, function_eim, matrix_eim.
    scm: SCMBounds of the affine operator (rom.reduction.scm), which then certifies alpha_LB (the
    larger of SCM's and a valid bound of the problem's own)."""
    from rom.hifi.discretization import fem
    from rom.models.eim_rb import FunctionEIMCoefficients, MatrixEIMCoefficients
    from rom.models.rb import AffineCoefficients
    from rom.reduction.scm import SCMCoefficients

    if kind == "blackbox_eim":
        return blackbox_eim(problem, ops, eim_ds, eim_bound, scm)
    if kind == "affine":
        if not ops.A_terms:
            raise ModelError(f"problem {problem.name} is not affine: enable the eim section (eim.enabled: true)")
        source = coercivity_source(problem, ops.X, ops.A_terms)
        base = AffineCoefficients(problem, np.ones(len(ops.A_terms)) if source == "min_theta" else None)
        if scm is not None:
            return SCMCoefficients(base, scm, keep_base_bound=source != "none"), ops.A_terms, ops.f_terms
        if source == "none":
            raise ModelError(f"problem {problem.name}: no coercivity lower bound of its own (min-theta needs X = sum_q A_q "
                             "with positive semidefinite terms); expected rb.scm.enabled: auto or true (SCM), or a "
                             "problem with the coercivity_bound capability")
        return base, ops.A_terms, ops.f_terms
    if eim_ds is None:
        raise ModelError(f"model kind {kind} needs the EIM artefact (--eim rom/eim.h5)")
    if eim_bound not in ("rigorous", "indicator"):
        raise ModelError(f"rb.eim_bound = {eim_bound!r}: expected rigorous or indicator")
    pattern = fem.Pattern.build(problem.mesh)
    f_terms = problem.rhs_terms(pattern)

    def csr(values):
        return sp.csr_matrix((values, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2)

    label = eim_bound_label(kind, eim_bound)
    if kind == "function_eim":
        E = eim_from_dataset(eim_ds)
        if label == "rigorous" and "bound_max_error" not in eim_ds:
            raise ModelError(f"rb.eim_bound = rigorous: the EIM artefact has no rigorous bound (problem {problem.name} "
                             "states no derivative bound of g); expected rb.eim_bound: indicator")
        g_error = float(eim_ds["bound_max_error"].values[E.M]) if label == "rigorous" else np.nan
        xy = problem.mesh.centroids[np.append(E.points, [E.next_point] if E.next_point >= 0 else [])]
        coef = FunctionEIMCoefficients(problem, xy, E.B, E.next_row if E.next_row is not None else np.zeros(E.M),
                                       label, g_error)
        return coef, [csr(v) for v in problem.eim_operator_terms(pattern, E.basis)], f_terms
    if kind != "matrix_eim":
        raise ModelError(f"model kind {kind!r}: expected affine, function_eim or matrix_eim")
    E = eim_from_dataset(eim_ds, "matrix_")
    slots = np.append(E.points, [E.next_point] if E.next_point >= 0 else []).astype(np.int64)
    x_values = ops.X.data if np.array_equal(ops.X.indices, pattern.indices) else csr(problem.energy_product(pattern)).data
    op_norm = float(eim_ds.attrs.get("matrix_operator_error", np.nan)) if label == "training_sup" else np.nan
    coef = MatrixEIMCoefficients(problem, problem.entry_probe(pattern, slots), E.B,
                                 E.next_row if E.next_row is not None else np.zeros(E.M),
                                 float(x_values[slots[-1]]), label, op_norm)
    # Operator terms q_m = sum_l C[m, l] A(mu_l): linear algebra on the delivered matrices only.
    Q = eim_ds["matrix_coeffs"].values @ eim_ds["matrix_snapshots"].values
    return coef, [csr(v) for v in Q], f_terms


def blackbox_eim(problem, ops, eim_ds, eim_bound: str = "rigorous", scm=None):
    """(coefficients, A_terms, f_terms) of the RB on a black box's EIM-affine model (kind blackbox_eim:
    rom.models.eim_rb.BlackBoxEIMCoefficients): A_M = sum_m beta_m q_m with q_m combinations of the
    delivered A(mu_l), f_M = sum_m beta^f_m q^f_m. With scm (SCMBounds of A_M) the coefficients are
    certified (`with_scm`); without, they carry no coercivity bound (alpha_LB = 0)."""
    from rom.hifi.discretization import fem
    from rom.models.eim_rb import BlackBoxEIMCoefficients

    if eim_ds is None or eim_ds.attrs.get("kind") != "entries":
        raise ModelError(f"problem {problem.name}: the RB of a black box's EIM needs the EIM artefact of its entries "
                         "(--eim rom/eim.h5 from the eim stage with problem.entries_command)")
    E, Ef = eim_from_dataset(eim_ds, "matrix_"), eim_from_dataset(eim_ds, "rhs_")
    pattern = fem.Pattern.build(problem.mesh)
    rows, cols = eim_ds["matrix_rows"].values, eim_ds["matrix_cols"].values
    if E.next_point >= 0:  # the indicator's entry (and row of f) after the magic ones
        all_rows = np.repeat(np.arange(pattern.n_rows), np.diff(pattern.indptr)) + pattern.row_start
        rows = np.append(rows, all_rows[E.next_point])
        cols = np.append(cols, pattern.indices[E.next_point])
    f_rows = Ef.points if Ef.next_point < 0 else np.append(Ef.points, Ef.next_point)
    x_next = float(ops.X.tocsr()[rows[-1], cols[-1]]) if len(rows) else 1.0
    err = eim_ds["rhs_train_max_error"].values
    f_scale = float(eim_ds.attrs["rhs_error"] / err[Ef.M]) if err[Ef.M] > 0 else 0.0
    coef = BlackBoxEIMCoefficients(problem, rows.astype(np.int64), cols.astype(np.int64), f_rows.astype(np.int64),
                                   E.B, Ef.B, E.next_row if E.next_row is not None else np.zeros(E.M),
                                   Ef.next_row if Ef.next_row is not None else np.zeros(Ef.M), x_next, f_scale,
                                   eim_bound_label("blackbox_eim", eim_bound),
                                   float(eim_ds.attrs["matrix_operator_error"]), float(eim_ds.attrs["rhs_error"]))
    Q = eim_ds["matrix_coeffs"].values @ eim_ds["matrix_snapshots"].values
    A_terms = [sp.csr_matrix((q, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2) for q in Q]
    f_terms = eim_ds["rhs_basis"].values[:, pattern.row_start:pattern.row_stop]
    return (with_scm(coef, scm, A_terms, ops.X) if scm is not None else coef), A_terms, f_terms


def with_scm(coef, scm, A_terms, X):
    """A black box's EIM coefficients certified by SCM of A_M, and where SCM's bound is not positive by
    one certified eigen-solve of A_M(mu) (rom.reduction.scm.EigenFallback), minus op_error."""
    from rom.reduction.scm import EigenFallback, SCMCoefficients

    return SCMCoefficients(coef, scm, fallback=EigenFallback(A_terms, X))


def scm_bounds(rb_ds, theta):
    """The SCMBounds stored in an rb artefact (variables scm_*), or None."""
    from rom.reduction.scm import SCMBounds

    return SCMBounds.from_dataset(rb_ds, theta) if "scm_box" in rb_ds else None


def load_models(problem, ops, rb_ds, eim_ds=None, extrapolation: str = "refuse") -> dict:
    """The reduced models of a stationary rb artefact by kind (affine, function_eim, matrix_eim),
    with the EIM bound the artefact was built with (attribute eim_bound; 'indicator' for older
    artefacts) and its SCM bounds, if any."""
    from rom.models.rb import ReducedBasisModel

    names = [str(v) for v in rb_ds["parameter"].values]
    eim_bound = rb_ds.attrs.get("eim_bound", "indicator")
    out = {}
    for kind in rb_ds.attrs["kinds"].split(","):
        if kind == "blackbox_eim":
            base, A_terms, _ = blackbox_eim(problem, ops, eim_ds, eim_bound)
            coef = with_scm(base, scm_bounds(rb_ds, base.theta), A_terms, ops.X)
            out[kind] = ReducedBasisModel.from_dataset(rb_ds, coef, rb_ds["bounds"].values, names, extrapolation,
                                                       prefix=f"{kind}_")
            continue
        scm = scm_bounds(rb_ds, problem.theta) if kind == "affine" else None
        coef = coefficients(problem, ops, eim_ds, kind, eim_bound, scm)[0]
        out[kind] = ReducedBasisModel.from_dataset(rb_ds, coef, rb_ds["bounds"].values, names, extrapolation,
                                                   prefix=f"{kind}_")
    return out


def output_specs(rb_ds) -> list[dict]:
    """The outputs an rb artefact certifies (attribute outputs: the study's rb.outputs as JSON)."""
    import json

    return json.loads(rb_ds.attrs.get("outputs", "[]"))


def load_outputs(problem, rb_ds, primal) -> dict:
    """The OutputModels of an rb artefact by output name, on the primal (affine) model."""
    from rom.models.output import OutputModel, output_functional

    return {spec["name"]: OutputModel.from_dataset(rb_ds, f"output_{spec['name']}_", primal,
                                                   output_functional(problem, spec))
            for spec in output_specs(rb_ds)}


def load_parabolic(problem, ops, rb_ds):
    """(ParabolicRBModel, ParabolicSystem) of a parabolic rb artefact (formulation parabolic)."""
    from rom.models.parabolic import ParabolicRBModel, affine_system
    from rom.reduction.scm import SCMCoefficients

    system = affine_system(problem, ops, rb_ds["bounds"].values)
    scm = scm_bounds(rb_ds, system.coefficients.theta)
    if scm is not None:
        system.coefficients = SCMCoefficients(system.coefficients, scm,
                                              keep_base_bound=system.coefficients.theta_ref is not None)
    elif system.coefficients.theta_ref is None:
        raise ModelError(f"problem {problem.name}: the rb artefact has no SCM bounds and min-theta does not apply; "
                         "expected an artefact built with rb.scm.enabled: auto or true")
    return ParabolicRBModel.from_dataset(rb_ds, system.coefficients, system.psi), system


def reductor(problem, ops, eim_ds, kind: str, bounds, names, extrapolation="refuse", estimator="stable",
             eim_bound="rigorous", scm=None, solver=None):
    """An empty CoerciveRBReductor of the model kind; solver: the stage's X solver (steps.x_solver)."""
    from rom.models.rb import CoerciveRBReductor

    coef, A_terms, f_terms = coefficients(problem, ops, eim_ds, kind, eim_bound, scm)
    return CoerciveRBReductor(ops.X, A_terms, f_terms, coef, bounds, names, extrapolation, estimator, solver=solver)


def rb_dataset(models: dict, V: np.ndarray, history, mu_train: np.ndarray, bounds: np.ndarray, names, attrs: dict):
    """The rb artefact: the basis, the greedy history, and per model kind the reduced operators
    and residual factors (prefixed by the kind); `attrs` are the caller's (settings, timings)."""
    import xarray as xr

    from rom.artefacts import strings

    steps = len(history.max_estimate)
    data = {
        "basis": (("mode", "dof"), V, {"long_name": "X-orthonormal reduced basis (rows)"}),
        "bounds": (("parameter", "bound"), bounds),
        "mu_train": (("train_sample", "parameter"), mu_train),
        "greedy_selected": ("greedy_step", np.array(history.selected[:steps], dtype=np.int64)),
        "greedy_mu": (("greedy_step", "parameter"), mu_train[history.selected[:steps]].reshape(steps, -1)),
        "greedy_max_estimate": ("greedy_step", np.array(history.max_estimate),
                                {"long_name": "max relative estimate over the training set after the step"}),
        "greedy_fom_seconds": ("greedy_step", np.array(history.fom_seconds[:steps])),
    }
    ds = xr.Dataset(data, coords={"parameter": strings(names), "bound": strings(["lower", "upper"])})
    for kind, m in models.items():
        ds = ds.merge(m.to_dataset(prefix=f"{kind}_"))
    ds.attrs.update(kinds=",".join(models), N=len(V), stop_reason=history.stop_reason, warning=history.warning, **attrs)
    return ds
