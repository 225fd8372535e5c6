"""uq: uncertainty propagation and Sobol' sensitivity through a trained surrogate of the study (the
certified RB's outputs or POD + GP), with an optional check against FOM solves. Declaration, the
checks before any job, and plumbing: the work is in rom.uq.propagate (sample, model runs, statistics,
Sobol', FOM check), rom.uq.statistics, rom.uq.sensitivity and rom.figures.uq (figures, section); the
models are romflow.open's (romflow.api)."""
from __future__ import annotations

import re

from rom.errors import ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.paths import problem_label
from rom.stage import Artefact, Stage, all_of, none_of

# What the stage evaluates: a surrogate from the parameters of a stationary problem on one mesh. The
# model's own needs (rb: an affine stationary RB with outputs; pod_gp: the gp stage) are check_uq's.
UQ_NEEDS = all_of(cap.PARAMETERS, cap.MESH, none_of(cap.TRANSIENT))
MODEL_ARTEFACT = {"rb": "rb", "pod_gp": "gp"}  # uq model -> the input artefact that holds it


def model_of(study: dict) -> str:
    """The model uq.model names; auto: rb when the RB stage runs with rb.outputs, else pod_gp."""
    model = study["uq"]["model"]
    if model != "auto":
        return model
    return "rb" if study["rb"]["enabled"] and study["rb"]["outputs"] else "pod_gp"


def check_uq(study: dict):
    """The uq settings against the model they need, in one line naming the key (before any job)."""
    s, model = study["uq"], model_of(study)
    label = f"uq.model = {s['model']}" + (f" (resolved to {model})" if s["model"] == "auto" else "")
    off = "or uq.enabled: false"
    if model == "rb":
        from rom.hifi.registry import problem_class

        if not study["rb"]["enabled"]:
            raise ConfigError(f"{label}: rb.enabled = false; expected rb.enabled: true with rb.outputs, uq.model: "
                              f"pod_gp, {off}")
        if not study["rb"]["outputs"]:
            raise ConfigError(f"{label}: rb.outputs is empty (the uq stage propagates the RB's certified outputs); "
                              f"expected at least one entry in rb.outputs, uq.model: pod_gp, {off}")
        cls = problem_class(study["problem"])
        if not (cap.has(cls, cap.AFFINE) and cap.has(cls, cap.STATIONARY)):
            raise ConfigError(f"{label}: the RB of problem {problem_label(study)} is not affine and stationary, the "
                              f"kind romflow.open evaluates; expected uq.model: pod_gp {off}")
        have = [o["name"] for o in study["rb"]["outputs"]]
        unknown = [n for n in s["outputs"] if n not in have]
        if unknown:
            raise ConfigError(f"uq.outputs: {unknown[0]!r} is not an output of model rb; expected names of rb.outputs "
                              f"({', '.join(have)})")
    else:
        if not study["gp"]["enabled"]:
            hint = " (the RB stage does not run with rb.outputs)" if s["model"] == "auto" else ""
            raise ConfigError(f"{label}: the POD+GP model needs gp.enabled: true{hint}; expected gp.enabled: true"
                              f"{', or rb.enabled: true with rb.outputs' if s['model'] == 'auto' else ''}, {off}")
        k = study["gp"]["max_modes"]
        for name in s["outputs"]:
            m = re.fullmatch(r"pod_(\d+)", name)
            if m is None or int(m.group(1)) >= k:
                raise ConfigError(f"uq.outputs: {name!r} is not an output of model pod_gp; expected pod_0 ... "
                                  f"pod_{k - 1} (gp.max_modes = {k} POD coefficients, fewer if the POD has fewer modes)")
        if s["samples"] * s["gp_draws"] > 2 ** 27:
            raise ConfigError(f"uq.samples x uq.gp_draws = {s['samples'] * s['gp_draws']} predictive draws per output; "
                              f"expected at most {2 ** 27} (1 GiB of draws in memory)")
    if s["design"] == "sobol" and s["samples"] & (s["samples"] - 1):
        raise ConfigError(f"uq.samples = {s['samples']}: design sobol keeps its balance properties at powers of 2 "
                          f"only; expected a power of 2 (e.g. {1 << (s['samples'].bit_length() - 1)} or "
                          f"{1 << s['samples'].bit_length()}), or uq.design: lhs or mc")
    N = s["sensitivity"]["base_samples"]
    if s["sensitivity"]["enabled"] and N & (N - 1):
        raise ConfigError(f"uq.sensitivity.base_samples = {N}: not a power of 2 (Saltelli's design on Sobol' "
                          f"points); expected e.g. {1 << (N.bit_length() - 1)} or {1 << N.bit_length()}")
    v = s["validate"]
    if v == 1:
        raise ConfigError("uq.validate = 1: one FOM sample has no standard error; expected 0 (off) or at least 2")
    if v > study["design"]["max_samples"]:
        raise ConfigError(f"uq.validate = {v} FOM solves; expected at most design.max_samples = "
                          f"{study['design']['max_samples']} (raise it to run more)")


def _fom(ctx):
    """The FOM of the validation solves: the study's simulate backend and PETSc options, in process."""
    from rom.hifi.solvers.solve import FullOrderModel

    sim = ctx.study["simulate"]
    if sim["backend"] == "petsc" and not getattr(ctx.problem, "black_box", False):
        from rom.hifi.solvers import petsc

        petsc.init(ctx.petsc_args)
    return FullOrderModel(ctx.problem, sim["backend"], sim["petsc_options"], ranks=sim["mpi_ranks"])


def uq(ctx):
    import numpy as np
    from threadpoolctl import threadpool_limits

    from rom import artefacts
    from rom.figures.uq import uq_section
    from rom.uq import propagate

    s, space, name = ctx.study["uq"], ctx.space, model_of(ctx.study)
    path = ctx.path(MODEL_ARTEFACT[name])
    if path is None:
        raise UserError(f"uq: model {name} (uq.model = {s['model']}) needs --{MODEL_ARTEFACT[name]}")
    if name == "pod_gp":
        import torch

        torch.set_num_threads(ctx.study["gp"]["threads"])
    ctx.read(MODEL_ARTEFACT[name])  # logs it; its warnings are repeated in the section (the model is romflow.api's)
    try:
        model = propagate.open_model(ctx.study, space, name, path)
        kind = propagate.statistics_kind(model)
        names = propagate.output_names(model, s["outputs"], space)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    mu = propagate.draw_parameters(space, s["samples"], s["design"], s["seed"])
    ctx.log.info("model %s (%s) of %s, outputs %s: %d parameters (%s design, seed %d)", name, kind, path,
                 ", ".join(names), len(mu), s["design"], s["seed"])
    with threadpool_limits(1, user_api="blas"):  # small dense reduced systems: one BLAS thread (as the RB stages)
        try:
            pred = propagate.predict(model, mu, names)
            stats = propagate.statistics(kind, pred, s["quantiles"], s["gp_draws"], s["seed"])
            ctx.log.info("%d surrogate queries in %.3f s; statistics (%s) done", len(mu), pred.seconds, kind)
            sobol = ratio = None
            if s["sensitivity"]["enabled"]:
                sobol, ratio = propagate.sensitivity(model, names, space, s["sensitivity"]["base_samples"], s["seed"])
                ctx.log.info("Sobol' indices from %d surrogate evaluations (N = %d)", sobol.evaluations, sobol.N)
        except ValueError as exc:
            raise UserError(f"uq: {exc}") from None
    validation = chk = None
    fom_seconds, source = None, ""
    if s["validate"]:
        v_mu = propagate.draw_parameters(space, s["validate"], "mc",
                                         propagate.derived_seed(s["seed"], propagate.STREAMS["validation"]))
        extra = {}
        if kind == "certified":
            extra["specs"] = {o["name"]: o for o in ctx.study["rb"]["outputs"]}
        else:
            from rom.hifi.discretization.operators import X_ONLY, x_product

            if ctx.path("operators") is None:
                raise UserError("uq: the validation of model pod_gp (uq.validate > 0) needs --operators (the X product)")
            extra.update(X=x_product(ctx.read("operators", drop=X_ONLY)), modes=model.modes)
        ctx.log.info("validation: %d FOM solves (backend %s)", len(v_mu), ctx.study["simulate"]["backend"])
        fom = _fom(ctx)
        validation = propagate.fom_outputs(ctx.problem, fom, kind, names, v_mu,
                                           progress=lambda it: ctx.progress(it, "FOM solves", total=len(v_mu)),
                                           **extra)
        if validation.failed.any():
            ctx.warn(f"uq: validation: {int(validation.failed.sum())} of {len(v_mu)} FOM solves did not converge "
                     "and are left out")
        if len(validation.mu) >= 2:
            chk = propagate.check(kind, pred, validation.values, s["quantiles"])
            for w in propagate.check_warnings(chk, names, kind):
                ctx.warn(w)
        else:
            ctx.warn("uq: validation: fewer than 2 converged FOM solves; no check")
        ok = ~validation.failed
        if ok.any():
            fom_seconds, source = float(validation.seconds[ok].mean()), "validation solves"
    elif ctx.path("train") is not None:
        train = artefacts.converged(ctx.read("train"))
        if "solve_seconds" in train and train.sizes.get("sample", 0):
            fom_seconds, source = float(np.mean(train["solve_seconds"].values)), "train snapshots (solve_seconds)"
    ds = propagate.uq_dataset(name, kind, s, space, pred, stats, sobol, ratio, validation, chk, fom_seconds, source)
    ctx.write("out", ds, "uq")
    sec = uq_section(ds, ctx.path("figures"))
    if s["fields"]:
        with threadpool_limits(1, user_api="blas"):
            fields = propagate.field_statistics(ctx.problem, model, mu)
        vtu = ctx.path("figures") / "fields.vtu"
        propagate.write_fields(vtu, ctx.problem, fields)
        ctx.log.info("mean and standard-deviation fields of the surrogate's solution over %d parameters: %s", len(mu),
                     vtu)
        sec["text"] += (f" Mean and standard-deviation fields of the surrogate's solution over the sample: "
                        f"{vtu.name} (ParaView), beside the figures.")
    ctx.section(sec["title"], sec["order"], sec["text"], sec["metrics"], sec["figures"], sec["tables"])
    return 0


STAGES = (
    Stage("uq", uq, "uncertainty propagation and Sobol' sensitivity through the certified RB outputs or POD+GP: "
          "statistics of the outputs over the parameters' distributions (certified brackets or predictive sampling, "
          "Monte Carlo errors apart), optionally checked against FOM solves", sections=("uq", "problem", "parameters",
                                                                                        "simulate"),
          needs=UQ_NEEDS, switch="uq", check=check_uq,
          inputs=(Artefact("rb", "rom/rb.h5 (model rb)", optional=True),
                  Artefact("gp", "surrogates/gp.h5 (model pod_gp)", optional=True),
                  Artefact("operators", "fom/operators.h5 (uq.validate or uq.fields: the mesh the problem is built on; "
                           "model pod_gp with uq.validate: the X product)", optional=True),
                  Artefact("train", "snapshots/train.h5 (FOM seconds per solve when uq.validate is 0)", optional=True)),
          outputs=(Artefact("out", "uq/uq.h5"), Artefact("figures", "folder of PNG figures"),
                   Artefact("section", "section JSON"))),
)
