"""simulate-geometries (a shape family's samples: solved with gmsh + PETSc under MPI, or read from
user mesh files or a PLAID dataset), mmgp-fit, mmgp-predict (predictions, quantiles, posterior
draws, VTU for ParaView), evaluate-mmgp (PLAID metrics, calibration, figures, report section) and
plaid-export (families as a PLAID dataset)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import rom.hifi.shape_family  # noqa: F401  (registers the mesh_family problem)
from rom import artefacts, config
from rom.cli import UserError, add_study_arg


def register(sub):
    from surrogates.mmgp.morphing import METHODS

    p = sub.add_parser("simulate-geometries", help="the samples of one set of a shape family: mesh and solve every "
                       "shape (gmsh + PETSc, run under mpiexec -n N) or read them (problem mesh_family)")
    add_study_arg(p)
    p.add_argument("--parameters", required=True, help="parameters.h5 (the scalar inputs of a solved family)")
    p.add_argument("--set", default="train", choices=["train", "test", "validation"])
    p.add_argument("--out", required=True, help="geometries/<set>.h5 (ragged meshes and fields)")
    p.set_defaults(func=simulate_geometries)

    p = sub.add_parser("mmgp-fit", help="morph, transfer, POD and GP on the train family")
    add_study_arg(p)
    p.add_argument("--train", required=True)
    p.add_argument("--morphing", choices=list(METHODS), help="overrides mmgp.morphing")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch")
    p.add_argument("--out", required=True)
    p.set_defaults(func=mmgp_fit)

    p = sub.add_parser("mmgp-predict", help="predict fields with their variance on the meshes of a family")
    add_study_arg(p)
    p.add_argument("--model", required=True)
    p.add_argument("--family", required=True, help="geometries/<set>.h5 (references are kept for evaluation)")
    p.add_argument("--vtu-dir", help="write the first mmgp.vtu_samples predictions as VTU here")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    p.set_defaults(func=mmgp_predict)

    p = sub.add_parser("evaluate-mmgp", help="PLAID metrics, calibration, figures and the report section of MMGP")
    add_study_arg(p)
    p.add_argument("--predictions", required=True)
    p.add_argument("--metrics", required=True, help="metrics JSON")
    p.add_argument("--figures", required=True, help="folder of PNG figures")
    p.add_argument("--section", required=True)
    p.set_defaults(func=evaluate_mmgp)

    p = sub.add_parser("plaid-export", help="write shape-family artefacts as one PLAID dataset (CGNS), a split per set")
    add_study_arg(p)
    p.add_argument("--family", required=True, action="append", help="geometries/<set>.h5 (repeat; the set names the split)")
    p.add_argument("--out", required=True, help="dataset folder")
    p.set_defaults(func=plaid_export)


def _outputs(study, problem):
    from surrogates.mmgp.family import declared_outputs

    try:
        return declared_outputs(study["mmgp"], problem)
    except ValueError as exc:
        raise config.ConfigError(str(exc)) from None


def _threads(n):
    import torch

    torch.set_num_threads(max(1, n))


def _family(path, fields, scalars):
    from surrogates.mmgp.family import FamilyError, from_dataset

    try:
        return from_dataset(artefacts.read(path), Path(path).name, list(fields), list(scalars))
    except FamilyError as exc:
        raise artefacts.ArtefactError(str(exc)) from None


# -- simulate / read ---------------------------------------------------------------------------------
def simulate_geometries(args):
    from rom.hifi.shape_family import MeshFamily
    from surrogates.mmgp.family import FamilyError, read_set, solved_family

    study = config.load(args.study_config)
    problem = config.make_problem(study)
    if problem.fixed_mesh:
        raise UserError(f"problem.name = {problem.name!r}: simulate-geometries expects a shape family "
                        "(a problem with fixed_mesh = False: tensile_plate, mesh_family)")
    fields, scalars = _outputs(study, problem)
    if isinstance(problem, MeshFamily):  # read, not solved: the design's parameters do not apply
        try:
            family = read_set(problem, args.set, fields, scalars)
        except (FamilyError, OSError) as exc:
            raise UserError(str(exc)) from None
        artefacts.write(family.to_dataset(), args.out, study, "geometries")
        return 0
    from rom.hifi import petsc
    from rom.hifi.shape_family import solve_shapes

    sim = study["simulate"]
    comm = None
    if sim["backend"] == "petsc":
        petsc.init(args.petsc_args)
        comm = petsc.comm_world()
    mu = artefacts.read(args.parameters)[f"mu_{args.set}"].values
    solutions = solve_shapes(problem, mu, args.set, study["seed"], sim["backend"], sim["petsc_options"], comm)
    if solutions is None:  # not rank 0
        return 0
    for i, s in enumerate(solutions):
        if not s.converged:
            print(f"simulate-geometries: {args.set} sample {i} failed: {s.reason}", file=sys.stderr)
    family, extra = solved_family(solutions, mu, args.set, problem.parameter_names, fields, scalars)
    family.attrs.update({"mpi_ranks": comm.size if comm is not None else 1, "backend": sim["backend"],
                         "width": problem.width, "height": problem.height})
    ok = extra["converged"][1]
    artefacts.write(family.to_dataset(ok, extra), args.out, study, "geometries")
    failed = int((~ok.astype(bool)).sum())
    if failed / max(len(ok), 1) > sim["max_failed_fraction"]:
        raise UserError(f"{failed} of {len(ok)} {args.set} samples failed, more than simulate.max_failed_fraction "
                        f"= {sim['max_failed_fraction']}; see {args.out}")
    return 0


# -- fit / predict -----------------------------------------------------------------------------------
def mmgp_fit(args):
    from surrogates.mmgp.model import MMGP

    _threads(args.threads)
    study = config.load(args.study_config)
    s = study["mmgp"]
    problem = config.make_problem(study)
    fields, scalars = _outputs(study, problem)
    fam = _family(args.train, fields, scalars)
    loads = list(getattr(problem, "load_parameters", ())) if s["load_scaling"] else []
    if s["load_scaling"] and not loads:
        raise config.ConfigError(f"mmgp.load_scaling = true: problem {problem.name!r} declares no load inputs in "
                                 "which its outputs are homogeneous; expected mmgp.load_scaling: false")
    try:
        model = MMGP(fam.fields, fam.scalar_names, fam.input_names, args.morphing or s["morphing"], s["geometry_modes"],
                     s["field_modes"], s["support"], (0.0, 0.0), s["restarts"], s["iterations"], study["seed"],
                     load_inputs=loads, degrees=getattr(problem, "output_degrees", None), floor_variance=s["floor_variance"],
                     units={**fam.field_units, **fam.scalar_units}, gtol=s["gtol"], out_of_range_level=s["out_of_range_level"],
                     calibration=s["calibration"], folds=s["folds"])
        model.fit(fam.samples, fam.inputs, fam.scalars, fam.names)
    except ValueError as exc:  # MeshError included: one line naming the sample
        raise UserError(str(exc)) from None
    if not model.gp.converged.all():
        bad = [n for n, c in zip(model.output_names, model.gp.converged) if not c]
        print(f"mmgp-fit: warning: {len(bad)} GP outputs did not converge in {s['iterations']} iterations "
              f"(first: {bad[0]}); see gp_status in {args.out}", file=sys.stderr)
    out = model.to_dataset()
    out.attrs["n_train"] = len(fam.samples)
    artefacts.write(out, args.out, study, "mmgp")


def mmgp_predict(args):
    from surrogates.mmgp.family import write_vtu
    from surrogates.mmgp.model import MMGP
    from surrogates.mmgp.predictions import predictions_dataset

    _threads(args.threads)
    study = config.load(args.study_config)
    s = study["mmgp"]
    stored = artefacts.read(args.model)
    model = MMGP.from_dataset(stored)
    fam = _family(args.family, model.fields, model.scalar_names)
    if fam.input_names != model.input_names:
        raise UserError(f"{args.family}: inputs {fam.input_names}; the model was fitted on {model.input_names}")
    try:
        out = model.predict(fam.samples, fam.inputs, fam.names, s["quantiles"], s["posterior_samples"], study["seed"])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    for i in np.flatnonzero(out["out_of_range"]):
        print(f"mmgp-predict: warning: {fam.names[i]} is out of the training family (p = {out['out_of_range_p'][i]:.3g} "
              f"< mmgp.out_of_range_level = {model.out_of_range_level}): extrapolation", file=sys.stderr)
    res, pred = predictions_dataset(model, fam, out, s["quantiles"], float(stored.attrs.get("timing_fit_s", np.nan)))
    artefacts.write(res, args.out, study, "mmgp_predictions")
    if args.vtu_dir:
        fx = [f for f in model.fields if f.endswith("_x") and f[:-2] + "_y" in model.fields]
        vectors = {**{f[:-2]: (f, f[:-2] + "_y") for f in fx}, **{f[:-2] + "_pred": (f + "_pred", f[:-2] + "_y_pred") for f in fx}}
        write_vtu(pred[:s["vtu_samples"]], Path(args.vtu_dir), vectors)


# -- evaluate ----------------------------------------------------------------------------------------
def evaluate_mmgp(args):
    import json

    from rom import plots
    from rom.report import write_section
    from surrogates.mmgp.predictions import metrics_of

    study = config.load(args.study_config)
    ds = artefacts.read(args.predictions)
    m = metrics_of(ds)
    with artefacts.atomic_path(args.metrics) as tmp:
        Path(tmp).write_text(json.dumps(m, indent=1))
    fig_dir = Path(args.figures)
    figs = list(plots_of(ds, m, fig_dir, plots))
    rows = [[f, v["rrmse"], v["q2"], v["coverage95"], v["calibration_max_deviation"]]
            for f, v in {**m["fields"], **m["scalars"]}.items()]
    metrics = {"test shapes": m["n_test"], "morphing": m["morphing"],
               "test shapes flagged out of the training family": m["n_out_of_range"],
               "GP outputs converged": m["gp_converged"], "fit seconds": m["fit_seconds"],
               "prediction seconds per shape": m["predict_seconds_per_sample"]}
    write_section(args.section, "Mesh-morphing GP (MMGP) on a shape family", 60,
                  "Each test shape is morphed onto the unit disk (barycentric weights), transferred to the common "
                  "support, compressed with POD and predicted by independent GPs with exact variance propagation "
                  "(PLAID metrics; calibration: observed coverage of the central intervals at every level).",
                  metrics, figs, {"MMGP test metrics": {"columns": ["output", "RRMSE", "Q2", "95% coverage",
                                                                    "max calibration deviation"], "rows": rows}})


def plots_of(ds, m, fig_dir: Path, plots):
    """(path, caption) of the figures: per field reference / mean / error / std on three test
    shapes, parity of the scalars, calibration curves of every output."""
    from surrogates.mmgp.geometry import read_family

    fields = [f for f in str(ds.attrs["fields"]).split(",") if f]
    scalars = [str(s) for s in ds["scalar"].values]
    samples = read_family(ds)[:3]
    for f in fields:
        fig, axes = plots.figure(4, len(samples), size=(2.4, 3.6))
        for r, s in enumerate(samples):
            panels = [(s.fields[f], f"{f} reference"), (s.fields[f"{f}_pred"], "MMGP mean"),
                      (np.abs(s.fields[f] - s.fields[f"{f}_pred"]), "|error|"), (s.fields[f"{f}_std"], "predicted std")]
            vmin, vmax = s.fields[f].min(), s.fields[f].max()
            for c, (v, t) in enumerate(panels):
                ax = axes[r * 4 + c]
                im = ax.tripcolor(s.nodes[:, 0], s.nodes[:, 1], s.triangles, v, shading="gouraud",
                                  **({"vmin": vmin, "vmax": vmax} if c < 2 else {}))
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(t, fontsize=8)
                fig.colorbar(im, ax=ax, shrink=0.7)
        path = fig_dir / f"mmgp_{f}.png"
        plots.save(fig, path)
        unit = ds[f].attrs.get("units", "")
        yield path, f"Test shapes: reference, MMGP mean, error and predicted standard deviation of {f} ({unit})"
    from surrogates.gp import half_width

    fig, axes = plots.figure(max(len(scalars), 1), size=(3.6, 3.4))
    factors = dict(zip([str(o) for o in ds["output"].values], ds["interval_factor"].values))
    for j, (ax, name) in enumerate(zip(axes, scalars)):
        ref, pred, std = (ds[v].values[:, j] for v in ("scalars", "scalars_pred", "scalars_std"))
        ax.errorbar(ref, pred, yerr=half_width(factors[name], 0.95) * std, fmt="o", ms=3, capsize=2)
        lim = [min(ref.min(), pred.min()), max(ref.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"{name} reference")
        ax.set_ylabel("MMGP (95% interval)")
    if not scalars:  # the rule expects the figure: say why it is empty
        axes[0].text(0.5, 0.5, "no output scalars declared (mmgp.scalars)", ha="center", va="center")
    path = fig_dir / "mmgp_parity.png"
    plots.save(fig, path)
    yield path, "Parity of the output scalars on the test shapes, with calibrated 95% intervals"
    fig, (ax,) = plots.figure()
    for name, v in {**m["fields"], **m["scalars"]}.items():
        ax.plot(m["levels"], v["calibration"], "o-", ms=3, label=name)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize=7)
    path = fig_dir / "mmgp_calibration.png"
    plots.save(fig, path)
    yield path, "Calibration: observed coverage of the central intervals versus their nominal level, per output"


def plaid_export(args):
    from surrogates.mmgp.family import FamilyError
    from surrogates.mmgp.plaid import write_plaid

    study = config.load(args.study_config)
    fields, scalars = _outputs(study, config.make_problem(study))
    families = {}
    for path in args.family:
        fam = _family(path, fields, scalars)
        families[str(fam.attrs.get("set", Path(path).stem))] = fam
    try:
        write_plaid(args.out, families, study["name"], overwrite=True)
    except FamilyError as exc:
        raise UserError(str(exc)) from None
