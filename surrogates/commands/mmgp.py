"""simulate_geometries (a shape family's samples: solved with gmsh + PETSc under MPI, or read from user
mesh files or a PLAID dataset), mmgp_fit, mmgp_predict (predictions, quantiles, posterior draws, VTU
for ParaView), evaluate_mmgp (PLAID metrics, calibration, figures, report section) and plaid_export
(families as a PLAID dataset). Declarations and plumbing: the work is in surrogates.mmgp and
rom.hifi.problems.shape_family."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rom.errors import ArtefactError, ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Option, Stage, problem_has


def _outputs(ctx):
    from surrogates.mmgp.family import declared_outputs

    try:
        return declared_outputs(ctx.study["mmgp"], ctx.problem)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _threads(ctx):
    import torch

    torch.set_num_threads(max(1, ctx.option("threads") or ctx.study["mmgp"]["threads"]))


def _family(ctx, path, fields, scalars):
    from surrogates.mmgp.family import FamilyError, from_dataset

    try:
        return from_dataset(ctx.read_path(path), Path(path).name, list(fields), list(scalars))
    except FamilyError as exc:
        raise ArtefactError(str(exc)) from None


def simulate_geometries(ctx):
    from surrogates.mmgp.family import FamilyError, solved_family
    from surrogates.mmgp.plaid import read_set

    problem, set_name = ctx.problem, ctx.option("set")
    fields, scalars = _outputs(ctx)
    if not cap.has(problem, cap.GEOMETRY_SOLVER):  # read, not solved: the design's parameters do not apply
        try:
            family = read_set(problem, set_name, fields, scalars)
        except (FamilyError, OSError) as exc:
            raise UserError(str(exc)) from None
        ctx.log.info("%s set: %d shapes read from %s", set_name, len(family.samples), problem.path)
        ctx.write("out", family.to_dataset(), "geometries")
        return 0
    from rom.hifi.solvers import petsc
    from rom.hifi.solvers.shapes import solve_shapes

    sim = ctx.study["simulate"]
    comm = None
    if sim["backend"] == "petsc":
        petsc.init(ctx.petsc_args)
        comm = petsc.comm_world()
    mu = ctx.read("parameters")[f"mu_{set_name}"].values
    ctx.log.info("%s set: %d shapes to mesh and solve on %d rank(s)", set_name, len(mu), comm.size if comm else 1)
    solutions = solve_shapes(problem, mu, set_name, ctx.study["seed"], sim["backend"], sim["petsc_options"], comm,
                             progress=ctx.progress)
    if solutions is None:  # not rank 0
        return 0
    for i, s in enumerate(solutions):
        if not s.converged:
            ctx.log.warning("%s sample %d failed: %s", set_name, i, s.reason)
    family, extra = solved_family(solutions, mu, set_name, problem.parameter_names, fields, scalars)
    family.attrs.update({"mpi_ranks": comm.size if comm is not None else 1, "backend": sim["backend"],
                         "width": problem.width, "height": problem.height})
    ok = extra["converged"][1]
    ctx.write("out", family.to_dataset(ok, extra), "geometries")
    failed = int((~ok.astype(bool)).sum())
    if failed / max(len(ok), 1) > sim["max_failed_fraction"]:
        raise UserError(f"{failed} of {len(ok)} {set_name} samples failed, more than simulate.max_failed_fraction "
                        f"= {sim['max_failed_fraction']}; see {ctx.path('out')}")
    return 0


def mmgp_fit(ctx):
    from surrogates.mmgp.model import MMGP

    _threads(ctx)
    s, problem = ctx.study["mmgp"], ctx.problem
    fields, scalars = _outputs(ctx)
    fam = _family(ctx, ctx.path("train"), fields, scalars)
    loads = list(getattr(problem, "load_parameters", ())) if s["load_scaling"] else []
    if s["load_scaling"] and not loads:
        raise ConfigError(f"mmgp.load_scaling = true: problem {problem.name!r} declares no load inputs in which its "
                          "outputs are homogeneous; expected mmgp.load_scaling: false")
    ctx.log.info("MMGP on %d train shapes: %d fields, %d scalars, morphing %s", len(fam.samples), len(fam.fields),
                 len(fam.scalar_names), ctx.option("morphing") or s["morphing"])
    try:
        model = MMGP(fam.fields, fam.scalar_names, fam.input_names, ctx.option("morphing") or s["morphing"],
                     s["geometry_modes"], s["field_modes"], s["support"], (0.0, 0.0), s["restarts"], s["iterations"],
                     ctx.study["seed"], load_inputs=loads, degrees=getattr(problem, "output_degrees", None),
                     floor_variance=s["floor_variance"], units={**fam.field_units, **fam.scalar_units}, gtol=s["gtol"],
                     out_of_range_level=s["out_of_range_level"], calibration=s["calibration"], folds=s["folds"])
        model.fit(fam.samples, fam.inputs, fam.scalars, fam.names)
    except ValueError as exc:  # MeshError included: one line naming the sample
        raise UserError(str(exc)) from None
    if not model.gp.converged.all():
        bad = [n for n, c in zip(model.output_names, model.gp.converged) if not c]
        ctx.warn(f"{len(bad)} GP outputs did not converge in mmgp.iterations = {s['iterations']} (first: {bad[0]})")
    out = model.to_dataset()
    out.attrs["n_train"] = len(fam.samples)
    ctx.log.info("fitted in %.1f s", float(out.attrs.get("timing_fit_s", np.nan)))
    ctx.write("out", out, "mmgp")


def mmgp_predict(ctx):
    from surrogates.mmgp.family import write_vtu
    from surrogates.mmgp.model import MMGP, RESOLUTION_TOLERANCE
    from surrogates.mmgp.predictions import predictions_dataset

    _threads(ctx)
    s = ctx.study["mmgp"]
    stored = ctx.read("model")
    model = MMGP.from_dataset(stored)
    fam = _family(ctx, ctx.path("family"), model.fields, model.scalar_names)
    if fam.input_names != model.input_names:
        raise UserError(f"{ctx.path('family')}: inputs {fam.input_names}; the model was fitted on {model.input_names}")
    try:
        out = model.predict(fam.samples, fam.inputs, fam.names, s["quantiles"], s["posterior_samples"],
                            ctx.study["seed"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    flagged = np.flatnonzero(out["out_of_range"])
    for i in flagged:
        ctx.log.warning("%s is out of the training family (p = %.3g < mmgp.out_of_range_level = %g): extrapolation",
                        fam.names[i], out["out_of_range_p"][i], model.out_of_range_level)
    if len(flagged):
        ctx.warn(f"{len(flagged)} of {len(fam.samples)} shapes of {Path(ctx.path('family')).name} are out of the "
                 "training family (extrapolation; see out_of_range in the predictions)")
    for i in np.flatnonzero(out["mesh_outside"]):
        ratio = out["mesh_size_ratio"][i]
        ctx.log.warning("%s: mesh %.2gx %s than the training meshes (median edge length beyond their range by more "
                        "than %g): mesh-dependent outputs (pointwise extrema over the mesh: %s) are extrapolated",
                        fam.names[i], max(ratio, 1 / ratio), "coarser" if ratio > 1 else "finer",
                        RESOLUTION_TOLERANCE, ", ".join(model.mesh_dependent_outputs) or "none declared")
    if out["mesh_outside"].any():
        ctx.warn(f"{int(out['mesh_outside'].sum())} of {len(fam.samples)} shapes of {Path(ctx.path('family')).name} "
                 "are meshed finer or coarser than the training shapes (see mesh_outside in the predictions)")
    res, pred = predictions_dataset(model, fam, out, s["quantiles"], float(stored.attrs.get("timing_fit_s", np.nan)))
    ctx.write("out", res, "mmgp_predictions")
    if ctx.path("vtu_dir") is not None:
        fx = [f for f in model.fields if f.endswith("_x") and f[:-2] + "_y" in model.fields]
        vectors = {**{f[:-2]: (f, f[:-2] + "_y") for f in fx}, **{f[:-2] + "_pred": (f + "_pred", f[:-2] + "_y_pred") for f in fx}}
        write_vtu(pred[:s["vtu_samples"]], ctx.path("vtu_dir"), vectors)


def evaluate_mmgp(ctx):
    from rom.paths import atomic_path
    from surrogates.mmgp.figures import mmgp_section
    from surrogates.mmgp.predictions import metrics_of

    ds = ctx.read("predictions")
    m = metrics_of(ds)
    with atomic_path(ctx.path("metrics")) as tmp:
        Path(tmp).write_text(json.dumps(m, indent=1))
    sec = mmgp_section(ds, m, ctx.path("figures"))
    for w in sec["warnings"]:
        ctx.warn(w)
    ctx.section(sec["title"], sec["order"], sec["text"], sec["metrics"], sec["figures"], sec["tables"])


def plaid_export(ctx):
    from surrogates.mmgp.family import FamilyError
    from surrogates.mmgp.plaid import write_plaid

    fields, scalars = _outputs(ctx)
    families = {}
    for path in ctx.path("family"):
        fam = _family(ctx, path, fields, scalars)
        families[str(fam.attrs.get("set", Path(path).stem))] = fam
    try:
        write_plaid(ctx.path("out"), families, ctx.study["name"], overwrite=True)
    except FamilyError as exc:
        raise UserError(str(exc)) from None


def _morphing_choices():
    return ("mean_value", "uniform", "rbf", "none")


THREADS = Option("threads", "CPU threads of torch (default: mmgp.threads)", type=int)
FOM_SECTIONS = ("problem", "parameters", "design", "simulate", "seed")

STAGES = (
    Stage("simulate_geometries", simulate_geometries, "the samples of one set of a shape family: mesh and solve every "
          "shape (gmsh + PETSc, under the MPI launcher) or read them (problem mesh_family)", package="surrogates",
          sections=FOM_SECTIONS, needs=frozenset({cap.GEOMETRY_FAMILY}), enabled=problem_has(cap.GEOMETRY_FAMILY),
          mpi=True,
          inputs=(Artefact("parameters", "parameters.h5 (the scalar inputs of a solved family)", optional=True),),
          outputs=(Artefact("out", "geometries/<set>.h5 (ragged meshes and fields)"),),
          options=(Option("set", "sample set", default="train", choices=("train", "test", "validation"),
                          wildcard="set"),)),
    Stage("mmgp_fit", mmgp_fit, "morph, transfer, POD and GP on the train family", package="surrogates",
          sections=("mmgp", "seed"), needs=frozenset({cap.GEOMETRY_FAMILY}), switch="mmgp",
          inputs=(Artefact("train", "geometries/train.h5"),), outputs=(Artefact("out", "surrogates/mmgp.h5"),),
          options=(Option("morphing", "overrides mmgp.morphing", choices=_morphing_choices()), THREADS)),
    Stage("mmgp_predict", mmgp_predict, "predict fields with their variance on the meshes of a family",
          package="surrogates", sections=("mmgp", "seed"), needs=frozenset({cap.GEOMETRY_FAMILY}), switch="mmgp",
          inputs=(Artefact("model", "surrogates/mmgp.h5"),
                  Artefact("family", "geometries/<set>.h5 (references are kept for evaluation)")),
          outputs=(Artefact("out", "surrogates/mmgp_predictions.h5"),
                   Artefact("vtu_dir", "write the first mmgp.vtu_samples predictions as VTU here", optional=True)),
          options=(THREADS,)),
    Stage("evaluate_mmgp", evaluate_mmgp, "PLAID metrics, calibration, figures and the report section of MMGP",
          package="surrogates", sections=("mmgp", "report"), switch="mmgp",
          inputs=(Artefact("predictions", "surrogates/mmgp_predictions.h5"),),
          outputs=(Artefact("metrics", "metrics JSON"), Artefact("figures", "folder of PNG figures"),
                   Artefact("section", "section JSON"))),
    Stage("plaid_export", plaid_export, "write shape-family artefacts as one PLAID dataset (CGNS), a split per set",
          package="surrogates", sections=("mmgp",), needs=frozenset({cap.GEOMETRY_FAMILY}),
          enabled=lambda study: False,
          inputs=(Artefact("family", "geometries/<set>.h5 (the set names the split)", many=True),),
          outputs=(Artefact("out", "dataset folder"),)),
)
