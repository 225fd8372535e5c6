"""Uncertainty propagation through a trained surrogate of a study: the parameter sample, the model run
in chunks, the statistics (rom.uq.statistics), the Sobol' analysis (rom.uq.sensitivity) and the check
against FOM solves, gathered into the uq artefact. Functions on arrays and models; the stage
(rom.commands.uq) does the I/O.

Contracts
---------
``draw_parameters(space, n, design, seed)`` -> (n, d)
    Points of the study's parameter space (rom.hifi.capabilities.ParameterSpace: names, bounds,
    distributions uniform | loguniform): a unit-cube design (rom.design.unit_design: 'sobol' scrambled
    Sobol', 'lhs' Latin hypercube, 'mc' i.i.d. uniform) mapped by rom.design.scale (log-uniform axes
    in log space), so each coordinate has its declared marginal law and the coordinates are
    independent. Same arguments, same points (bitwise).
``derived_seed(seed, stream)`` -> int: the seed of an independent stream (1: the Sobol' design,
    2: the GP draws, 3: the validation sample), so that no two random choices share draws.
``open_model(study, space, name, path)`` -> romflow.api.Model ('rb' | 'pod_gp') from the artefact at
    `path` (rom/rb.h5 or surrogates/gp.h5) of the resolved study dict. ValueError (one line) for an
    artefact romflow.open cannot evaluate (a parabolic or EIM RB).
``output_names(model, requested, space)`` -> the outputs to propagate: `requested` in order, or all of
    the model's (rb: rb.outputs; pod_gp: pod_0 ... pod_{k-1}); ValueError naming uq.outputs otherwise.
``predict(model, mu, names, chunk_rows)`` -> Predicted: values, errors (n, k) and the wall seconds of
    the model calls alone. values: rb, the corrected outputs s_N; pod_gp, the predictive means.
    errors: rb, the certified bounds Delta >= |s - s_N| (rounding included); pod_gp, the calibrated
    predictive standard deviations. ValueError (one line) for a non-finite output or bound.
``statistics(kind, pred, quantiles, draws, seed, level)``: rom.uq.statistics.certified_statistics
    (kind 'certified') or predictive_statistics (kind 'predictive') of `pred`.
``sensitivity(model, names, space, N, seed, conf_level)`` -> (SobolIndices, max error / std): the
    Saltelli design is drawn on the unit cube and mapped by rom.design.scale; Sobol' indices are
    invariant under such one-to-one maps of independent inputs, so they are the indices of the
    output as a function of the parameters. The indices are of the surrogate's output (s_N, or the
    GP mean); the ratio max_i error_i / std (per output) says how far the surrogate can be from the
    true output on the design, relative to its spread.
``fom_outputs(problem, fom, kind, names, mu, specs=None, X=None, modes=None)`` -> FomOutputs: FOM
    solves (rom.hifi.solvers.solve.FullOrderModel) at mu, one by one, and the outputs of each field:
    rb, the output functional of each named rb.outputs entry (rom.models.output.output_functional,
    as rom.models.evaluate does); pod_gp, the X-inner products with the POD modes (pod_k = u^T X v_k,
    surrogates.gp.pod_coefficients). Solves that did not converge are recorded and left out.
``check(kind, pred, fom_values, quantiles)`` -> Check: the surrogate's interval of the mean (kind
    certified: the certified bracket of the sample mean; predictive: the mean of the 3-sigma envelope
    m +- 3 sigma) widened by N_SIGMA standard errors of the two sample means combined,
    sqrt(se_surrogate^2 + se_fom^2), must contain the FOM sample mean; and, per quantile, the
    surrogate's order-statistic interval of the true output's population quantile (certified: of
    [s_N - Delta, s_N + Delta]; predictive: of the 3-sigma envelope) must meet the FOM's, both at
    CHECK_LEVEL. Both are statements about the population, exact for i.i.d. samples: for a sound
    certified surrogate, a failure of the mean check has probability about 0.0027 (normal
    approximation), of a quantile check at most 2 (1 - CHECK_LEVEL) = 0.002.
``uq_dataset(...)`` -> the artefact (variables and attributes documented in docs/uq.md).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np
import xarray as xr

from rom.uq.sensitivity import SobolIndices, evaluate, sobol_analyze, sobol_design
from rom.uq.statistics import CertifiedStatistics, certified_statistics, predictive_statistics

DESIGNS = {"sobol": "sobol", "lhs": "lhs", "mc": "random"}  # uq.design -> rom.design.unit_design method
N_SIGMA = 3.0        # standard errors (and, for a GP, predictive stds) of the validation check
CHECK_LEVEL = 0.999  # level of each order-statistic quantile interval of the validation check
STREAMS = {"sobol": 1, "draws": 2, "validation": 3}


def derived_seed(seed: int, stream: int) -> int:
    """A seed for an independent stream of uq.seed (numpy's SeedSequence of [seed, stream])."""
    return int(np.random.SeedSequence([int(seed), int(stream)]).generate_state(1)[0])


def draw_parameters(space, n: int, design: str, seed: int) -> np.ndarray:
    from rom.design import scale, unit_design

    if design not in DESIGNS:
        raise ValueError(f"uq.design = {design!r}: expected one of {', '.join(DESIGNS)}")
    unit = unit_design(DESIGNS[design], int(n), space.dim, int(seed))
    return scale(unit, np.asarray(space.bounds, dtype=float), list(space.distributions))


# -- the model ----------------------------------------------------------------------------------------
class _StudyView:
    """What romflow.api's model classes read of a study: its resolved settings (config), the parameter
    names and box (the study file is already loaded and validated by the stage)."""

    def __init__(self, study: dict, space):
        self.config, self.name = study, str(study.get("name", ""))
        self.parameters = list(space.names)
        self.bounds = np.asarray(space.bounds, dtype=float)


def open_model(study: dict, space, name: str, path):
    from pathlib import Path

    from romflow import api

    if name not in api.OPENERS:
        raise ValueError(f"uq.model = {name}: expected one of {', '.join(api.OPENERS)}")
    return api.OPENERS[name](_StudyView(study, space), Path(path))


KINDS = {"certified": "certified", "predictive_std": "predictive"}  # romflow.api kind -> statistics kind


def statistics_kind(model) -> str:
    """'certified' (RB output bounds) or 'predictive' (GP standard deviations) for a romflow model."""
    if model.kind not in KINDS:
        raise ValueError(f"model {model.name}: error measure of kind {model.kind!r}; the uq stage propagates "
                         f"{', '.join(KINDS)} models")
    return KINDS[model.kind]


def output_names(model, requested, space) -> list[str]:
    mid = np.mean(np.asarray(space.bounds, dtype=float), axis=1)  # one query at the box centre lists the outputs
    have = list(model.predict(mid).outputs)
    if not have:
        raise ValueError(f"model {model.name} has no outputs; expected rb.outputs (model rb) or POD modes (pod_gp)")
    missing = [n for n in requested if n not in have]
    if missing:
        raise ValueError(f"uq.outputs: {missing[0]!r} is not an output of model {model.name}; expected some of "
                         f"{', '.join(have)}")
    return list(requested) or have


@dataclass
class Predicted:
    """Surrogate outputs on a sample: values and errors (n, k) in the order of `names`."""

    names: list[str]
    mu: np.ndarray
    values: np.ndarray
    errors: np.ndarray
    seconds: float


def predict(model, mu: np.ndarray, names: list[str], chunk_rows: int = 8192) -> Predicted:
    n, k = len(mu), len(names)
    values, errors = np.empty((n, k)), np.empty((n, k))
    seconds = 0.0
    for a in range(0, n, int(chunk_rows)):
        t0 = time.perf_counter()
        p = model.predict(mu[a:a + chunk_rows])
        seconds += time.perf_counter() - t0
        for j, name in enumerate(names):
            values[a:a + chunk_rows, j], errors[a:a + chunk_rows, j] = p.outputs[name], p.error[name]
    for what, arr in (("output", values), ("error measure", errors)):
        bad = np.argwhere(~np.isfinite(arr))
        if len(bad):
            i, j = bad[0]
            raise ValueError(f"model {model.name}: non-finite {what} of {names[j]} at sample {i} (mu = "
                             f"{mu[i].tolist()}); expected finite values inside the trained box")
    return Predicted(list(names), mu, values, errors, seconds)


def statistics(kind: str, pred: Predicted, quantiles, draws: int, seed: int, level: float = 0.95):
    if kind == "certified":
        return certified_statistics(pred.values, pred.errors, quantiles, level)
    return predictive_statistics(pred.values, pred.errors, quantiles, draws, derived_seed(seed, STREAMS["draws"]))


def sensitivity(model, names: list[str], space, N: int, seed: int, conf_level: float = 0.95,
                chunk_rows: int = 8192) -> tuple[SobolIndices, np.ndarray]:
    from rom.design import scale

    d = space.dim
    design = sobol_design(list(space.names), [[0.0, 1.0]] * d, N, derived_seed(seed, STREAMS["sobol"]))
    bounds, dists = np.asarray(space.bounds, dtype=float), list(space.distributions)
    worst = np.zeros(len(names))

    def outputs(unit):
        nonlocal worst
        p = predict(model, scale(unit, bounds, dists), names, chunk_rows)
        worst = np.maximum(worst, p.errors.max(axis=0))
        return p.values

    Y = evaluate(design, outputs, chunk_rows)
    indices = sobol_analyze(design, Y, conf_level=conf_level)
    sd = Y.std(axis=0, ddof=1)
    return indices, np.divide(worst, sd, out=np.full(len(names), np.inf), where=sd > 0)


# -- the FOM check --------------------------------------------------------------------------------------
@dataclass
class FomOutputs:
    mu: np.ndarray            # (n_ok, d) the parameters whose solve converged
    values: np.ndarray        # (n_ok, k)
    seconds: np.ndarray       # (n,) wall seconds of every solve (converged or not)
    failed: np.ndarray        # (n,) bool


def pod_index(name: str) -> int:
    m = re.fullmatch(r"pod_(\d+)", name)
    if m is None:
        raise ValueError(f"output {name!r}: expected pod_<k>")
    return int(m.group(1))


def fom_outputs(problem, fom, kind: str, names: list[str], mu: np.ndarray, specs: dict | None = None, X=None,
                modes: np.ndarray | None = None, progress=None) -> FomOutputs:
    """See the module docstring. kind 'certified': specs maps each name to its rb.outputs entry;
    'predictive': X (the FOM's energy product, sparse) and modes (k_all, n_dofs) are needed.
    progress: an optional wrapper of the loop over samples (logging)."""
    if kind == "certified":
        from rom.models.output import output_functional

        functionals = [output_functional(problem, specs[name]) for name in names]
    else:
        V = np.asarray(modes)[[pod_index(name) for name in names]]
    n = len(mu)
    seconds, failed, fields = np.empty(n), np.zeros(n, dtype=bool), []
    for i in (progress or (lambda it: it))(range(n)):  # one FOM solve each; the outputs below, batched
        sample = fom.solve(mu[i])
        seconds[i] = sample.seconds
        failed[i] = not sample.converged
        if not failed[i]:
            fields.append(np.asarray(sample.u, dtype=float))
    ok = mu[~failed]
    if not fields:
        return FomOutputs(ok, np.empty((0, len(names))), seconds, failed)
    U = np.stack(fields)
    if kind == "certified":
        values = np.column_stack([f.value(ok, U) for f in functionals])
    else:
        values = (X @ U.T).T @ V.T
    return FomOutputs(ok, values, seconds, failed)


@dataclass
class Check:
    """The validation check per output (k) and quantile (m): see the module docstring."""

    fom: CertifiedStatistics          # the FOM sample's statistics (no error: Delta = 0), at CHECK_LEVEL
    surrogate: CertifiedStatistics    # the surrogate's brackets (certified: Delta; predictive: N_SIGMA std)
    combined_se: np.ndarray           # (k,) sqrt(se_surrogate^2 + se_fom^2)
    mean_interval: np.ndarray         # (k, 2) the surrogate's interval widened by N_SIGMA combined_se
    mean_ok: np.ndarray               # (k,) bool
    quantile_ok: np.ndarray           # (m, k) bool


def check(kind: str, pred: Predicted, fom_values: np.ndarray, quantiles) -> Check:
    envelope = pred.errors if kind == "certified" else N_SIGMA * pred.errors
    sur = certified_statistics(pred.values, envelope, quantiles, CHECK_LEVEL)
    fom = certified_statistics(fom_values, np.zeros_like(fom_values), quantiles, CHECK_LEVEL)
    se = np.sqrt(sur.mean_se ** 2 + fom.mean_se ** 2)
    interval = np.stack([sur.mean_bounds[:, 0] - N_SIGMA * se, sur.mean_bounds[:, 1] + N_SIGMA * se], axis=-1)
    mean_ok = (interval[:, 0] <= fom.mean) & (fom.mean <= interval[:, 1])
    a, b = sur.quantile_ci_certified, fom.quantile_ci
    quantile_ok = np.maximum(a[..., 0], b[..., 0]) <= np.minimum(a[..., 1], b[..., 1])
    return Check(fom, sur, se, interval, mean_ok, quantile_ok)


def check_warnings(chk: Check, names: list[str], kind: str) -> list[str]:
    """One line per failed check (shown at the top of the report)."""
    what = ("certified interval of the mean" if kind == "certified"
            else f"interval of the mean of the {N_SIGMA:g}-sigma predictive envelope")
    out = []
    for j, name in enumerate(names):
        if not chk.mean_ok[j]:
            lo, hi = chk.mean_interval[j]
            out.append(f"uq: validation: the FOM mean of {name}, {chk.fom.mean[j]:.6g} ({chk.fom.n} solves), lies "
                       f"outside the surrogate's {what} widened by {N_SIGMA:g} combined standard errors, "
                       f"[{lo:.6g}, {hi:.6g}]")
        for i, q in enumerate(chk.fom.quantile_levels):
            if not chk.quantile_ok[i, j]:
                out.append(f"uq: validation: the {q:g}-quantile of {name}: the FOM's {CHECK_LEVEL:g} interval "
                           f"[{chk.fom.quantile_ci[i, j, 0]:.6g}, {chk.fom.quantile_ci[i, j, 1]:.6g}] does not meet "
                           f"the surrogate's [{chk.surrogate.quantile_ci_certified[i, j, 0]:.6g}, "
                           f"{chk.surrogate.quantile_ci_certified[i, j, 1]:.6g}]")
    return out


# -- the artefact -------------------------------------------------------------------------------------
def field_statistics(problem, model, mu: np.ndarray, chunk_rows: int = 4096) -> dict:
    """Mean and standard deviation over the sample `mu` of the surrogate's nodal field (the problem's
    full_field: boundary values included), accumulated by chunks (memory chunk_rows x nodes): rb, the
    field u_N(mu); pod_gp, the predictive mean, and the standard deviation of the law of total variance
    (the variance of the means plus the mean predictive variance, the GPs independent per mode).
    Shifted sums (by the first chunk's mean) keep the variance accurate where the mean dominates."""
    shift = total = squares = None
    predictive = 0.0
    for i in range(0, len(mu), chunk_rows):
        m = mu[i:i + chunk_rows]
        p = model.predict(m, fields=True)
        F = np.atleast_2d(problem.full_field(m, p.fields))
        if shift is None:
            shift = F.mean(axis=0)
            total, squares = np.zeros_like(shift), np.zeros_like(shift)
        D = F - shift
        total += D.sum(axis=0)
        squares += np.einsum("ij,ij->j", D, D)
        if p.field_std is not None:  # zero on the boundary: the predictive part has no boundary values
            predictive = predictive + problem.mesh.full_field((p.field_std ** 2).sum(axis=0), 0.0)
    n = len(mu)
    mean = shift + total / n
    var = np.maximum(squares / n - (total / n) ** 2, 0.0) * (n / max(n - 1, 1)) + predictive / n
    return {"mean": mean, "std": np.sqrt(var)}


def write_fields(path, problem, fields: dict) -> None:
    """The nodal fields as a VTU file on the problem's mesh (meshio: triangles or tetrahedra)."""
    import meshio

    mesh = problem.mesh
    cells = getattr(mesh, "cells", None)
    cells = mesh.triangles if cells is None else cells
    nodes = np.asarray(mesh.nodes, dtype=float)
    points = np.column_stack([nodes, np.zeros(len(nodes))]) if nodes.shape[1] == 2 else nodes
    kind = "triangle" if cells.shape[1] == 3 else "tetra"
    meshio.write(path, meshio.Mesh(points, [(kind, np.asarray(cells))],
                                   point_data={k: np.asarray(v, dtype=float) for k, v in fields.items()}))


def uq_dataset(model_name: str, kind: str, settings: dict, space, pred: Predicted, stats, sobol=None,
               sobol_error_ratio=None, validation: FomOutputs | None = None, chk: Check | None = None,
               fom_seconds: float | None = None, fom_seconds_source: str = "") -> xr.Dataset:
    """The uq artefact: the sample, the surrogate's outputs and error measures, the statistics, the
    Sobol' indices, the validation and the extrapolated speed-up (docs/uq.md lists every variable)."""
    from rom.artefacts import strings

    names, q = pred.names, np.asarray(stats.quantile_levels, dtype=float)
    n = len(pred.mu)
    data = {
        "mu": (("sample", "parameter"), pred.mu),
        "value": (("sample", "output"), pred.values,
                  {"long_name": "corrected RB output s_N" if kind == "certified" else "GP predictive mean"}),
        "error": (("sample", "output"), pred.errors,
                  {"long_name": "certified bound Delta >= |s - s_N|" if kind == "certified"
                   else "GP predictive standard deviation (calibrated)"}),
        "mean": ("output", stats.mean), "std": ("output", stats.std), "mean_se": ("output", stats.mean_se),
        "quantiles": (("quantile", "output"), stats.quantiles),
    }
    if kind == "certified":
        data.update({
            "mean_bounds": (("output", "bound"), stats.mean_bounds,
                            {"long_name": "contains the exact sample mean of the true output (rigorous)"}),
            "mean_rounding": ("output", stats.mean_rounding), "std_bound": ("output", stats.std_bound),
            "quantile_bounds": (("quantile", "output", "bound"), stats.quantile_bounds,
                                {"long_name": "contains the sample quantile of the true output (rigorous)"}),
            "quantile_ci": (("quantile", "output", "bound"), stats.quantile_ci),
            "quantile_ci_certified": (("quantile", "output", "bound"), stats.quantile_ci_certified),
            "ci_ranks": (("quantile", "end"), stats.ci_ranks), "ci_coverage": ("quantile", stats.ci_coverage),
        })
    else:
        for key in ("var_of_means", "mean_of_variances", "surrogate_fraction", "sampled_variance", "sampled_between",
                    "sampled_within"):
            data[key] = ("output", getattr(stats, key))
    attrs = {"model": model_name, "kind": kind, "samples": n, "design": settings["design"], "seed": settings["seed"],
             "outputs": ",".join(names), "surrogate_seconds": pred.seconds,
             "surrogate_seconds_per_query": pred.seconds / n, "n_sigma": N_SIGMA, "check_level": CHECK_LEVEL}
    if kind == "certified":
        attrs["ci_level"] = stats.ci_level
    else:
        attrs.update(draws=stats.draws, draws_seed=stats.seed)
    if sobol is not None:
        data.update({"S1": (("output", "parameter"), sobol.S1), "S1_conf": (("output", "parameter"), sobol.S1_conf),
                     "ST": (("output", "parameter"), sobol.ST), "ST_conf": (("output", "parameter"), sobol.ST_conf),
                     "sobol_constant": ("output", sobol.constant.astype(np.int8)),
                     "sobol_error_ratio": ("output", sobol_error_ratio,
                                           {"long_name": "max error measure on the Sobol' design / std of the output"})})
        attrs.update(sobol_N=sobol.N, sobol_evaluations=sobol.evaluations, sobol_conf_level=sobol.conf_level,
                     sobol_resamples=sobol.num_resamples)
    if validation is not None:
        data.update({"validation_mu": (("validation_sample", "parameter"), validation.mu),
                     "validation_value": (("validation_sample", "output"), validation.values,
                                          {"long_name": "output of the FOM solution"}),
                     "validation_seconds": ("validation_solve", validation.seconds),
                     "validation_failed": ("validation_solve", validation.failed.astype(np.int8))})
        attrs.update(validation_requested=int(settings["validate"]), validation_solves=len(validation.seconds),
                     validation_converged=len(validation.mu))
    if chk is not None:
        data.update({"fom_mean": ("output", chk.fom.mean), "fom_mean_se": ("output", chk.fom.mean_se),
                     "fom_std": ("output", chk.fom.std), "fom_quantiles": (("quantile", "output"), chk.fom.quantiles),
                     "fom_quantile_ci": (("quantile", "output", "bound"), chk.fom.quantile_ci),
                     "check_quantile_interval": (("quantile", "output", "bound"), chk.surrogate.quantile_ci_certified),
                     "check_combined_se": ("output", chk.combined_se),
                     "check_mean_interval": (("output", "bound"), chk.mean_interval),
                     "check_mean_ok": ("output", chk.mean_ok.astype(np.int8)),
                     "check_quantile_ok": (("quantile", "output"), chk.quantile_ok.astype(np.int8))})
        attrs["validation_passed"] = int(chk.mean_ok.all() and chk.quantile_ok.all())
    if fom_seconds is not None and np.isfinite(fom_seconds) and pred.seconds > 0:
        attrs.update(fom_seconds_per_solve=float(fom_seconds), fom_seconds_source=fom_seconds_source,
                     fom_monte_carlo_seconds_extrapolated=float(fom_seconds) * n,
                     speedup_extrapolated=float(fom_seconds) * n / pred.seconds)
    coords = {"parameter": strings(list(space.names)), "output": strings(names), "quantile": q,
              "bound": strings(["lower", "upper"])}
    if kind == "certified":
        coords["end"] = strings(["lower_rank", "upper_rank"])
    return xr.Dataset(data, coords=coords, attrs=attrs)
