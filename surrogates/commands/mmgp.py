"""simulate-geometries (one gmsh mesh + PETSc elasticity solve per sample, under MPI), mmgp-fit,
mmgp-predict (predictions + VTU for ParaView) and evaluate-mmgp (PLAID metrics, figures, report)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg

FIELDS = ["u_x", "u_y", "von_mises"]
SCALARS = ["max_von_mises", "compliance"]


def register(sub):
    p = sub.add_parser("simulate-geometries", help="mesh every sample of a shape family with gmsh and solve "
                       "plane-stress elasticity with PETSc (run under mpiexec -n N)")
    add_study_arg(p)
    p.add_argument("--parameters", required=True, help="parameters.h5 (the scalar loading inputs)")
    p.add_argument("--set", default="train", choices=["train", "test", "validation"])
    p.add_argument("--out", required=True, help="geometries/<set>.h5 (ragged meshes and fields)")
    p.set_defaults(func=simulate_geometries)

    p = sub.add_parser("mmgp-fit", help="morph, transfer, POD and GP on the train family")
    add_study_arg(p)
    p.add_argument("--train", required=True)
    p.add_argument("--morphing", choices=["tutte", "rbf", "none"], help="overrides mmgp.morphing")
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

    p = sub.add_parser("evaluate-mmgp", help="PLAID metrics, coverage, figures and the report section of MMGP")
    add_study_arg(p)
    p.add_argument("--predictions", required=True)
    p.add_argument("--metrics", required=True, help="metrics JSON")
    p.add_argument("--figures", required=True, help="folder of PNG figures")
    p.add_argument("--section", required=True)
    p.set_defaults(func=evaluate_mmgp)


# -- simulate ----------------------------------------------------------------------------------------
def simulate_geometries(args):
    from rom.hifi import petsc
    from rom.hifi.elasticity import PlateMesh, PlateModel, geometry_seed
    from surrogates.mmgp.geometry import family_dataset, plate_sample

    study = config.load(args.study_config)
    problem = config.make_problem(study)
    if problem.fixed_mesh:
        raise UserError(f"problem.name = {problem.name!r}: simulate-geometries expects a shape family "
                        "(a problem with fixed_mesh = False, e.g. tensile_plate)")
    sim = study["simulate"]
    comm = None
    if sim["backend"] == "petsc":
        petsc.init(args.petsc_args)
        comm = petsc.comm_world()
    mu_all = artefacts.read(args.parameters)[f"mu_{args.set}"].values
    rank = comm.rank if comm is not None else 0
    samples, rows = [], []
    for i, mu in enumerate(mu_all):  # one mesh and one solve per sample
        seed = geometry_seed(study["seed"], args.set, i)
        mesh = problem.geometry(seed) if rank == 0 else None
        if comm is not None and comm.size > 1:  # one mesher, identical meshes on every rank
            mesh = comm.bcast(mesh, root=0)
        fom = PlateModel(problem, PlateMesh(mesh.nodes, mesh.triangles), sim["backend"], sim["petsc_options"])
        r = fom.solve(mu)
        fom.destroy()
        if rank == 0:
            if not r.converged:
                print(f"simulate-geometries: {args.set} sample {i} failed: {r.reason}", file=sys.stderr)
            n = mesh.n_nodes
            U = r.displacement if r.converged else np.full((n, 2), np.nan)
            vm = r.von_mises if r.converged else np.full(n, np.nan)
            samples.append(plate_sample(mesh, U, vm))
            rows.append((seed, r.max_von_mises, r.compliance, r.converged, r.reason, r.iterations, r.seconds))
    if rank != 0:
        return 0
    seeds, vmax, comp, ok, reason, its, secs = zip(*rows)
    ds = family_dataset(samples, {"set": args.set, "mpi_ranks": comm.size if comm is not None else 1,
                                  "backend": sim["backend"], "width": problem.width, "height": problem.height})
    ds["mu"] = (("sample", "parameter"), mu_all)
    ds["scalars"] = (("sample", "scalar"), np.column_stack([vmax, comp]))
    ds["geometry_seed"] = ("sample", np.array(seeds, dtype=np.int64))
    ds["converged"] = ("sample", np.array(ok, dtype=np.int8))
    ds["reason"] = ("sample", artefacts.strings(reason))
    ds["iterations"] = ("sample", np.array(its))
    ds["solve_seconds"] = ("sample", np.array(secs), {"units": "s"})
    ds = ds.assign_coords(parameter=artefacts.strings(problem.parameter_names), scalar=artefacts.strings(SCALARS))
    for f, unit in (("u_x", "length"), ("u_y", "length"), ("von_mises", "stress")):
        ds[f].attrs["units"] = unit
    artefacts.write(ds, args.out, study, "geometries")
    failed = int((~np.array(ok)).sum())
    if failed / max(len(ok), 1) > sim["max_failed_fraction"]:
        raise UserError(f"{failed} of {len(ok)} {args.set} samples failed, more than simulate.max_failed_fraction "
                        f"= {sim['max_failed_fraction']}; see {args.out}")
    return 0


def read_family(path):
    """Converged samples of a family artefact: (samples, mu, scalars, names, dataset)."""
    from surrogates.mmgp.geometry import read_family as _read

    ds = artefacts.read(path)
    missing = [v for v in ("node_offset", "mu", "scalars", *FIELDS) if v not in ds]
    if missing:
        raise artefacts.ArtefactError(f"{path}: not a shape-family artefact (missing {missing[0]}); expected the "
                                      "output of simulate-geometries")
    ok = ds["converged"].values.astype(bool)
    samples = [s for s, good in zip(_read(ds), ok) if good]
    names = [f"{Path(path).name} sample {i} (seed {s})" for i, s in zip(np.flatnonzero(ok), ds["geometry_seed"].values[ok])]
    return samples, ds["mu"].values[ok], ds["scalars"].values[ok], names, ds


def _threads(n):
    import torch

    torch.set_num_threads(max(1, n))


# -- fit / predict -----------------------------------------------------------------------------------
def mmgp_fit(args):
    from surrogates.mmgp.geometry import MeshError
    from surrogates.mmgp.model import MMGP

    _threads(args.threads)
    study = config.load(args.study_config)
    s = study["mmgp"]
    samples, mu, scalars, names, ds = read_family(args.train)
    if len(samples) < 4:
        raise UserError(f"{args.train}: {len(samples)} converged train samples; expected at least 4 for MMGP")
    if not 0 <= s["support"] < len(samples):
        raise config.ConfigError(f"mmgp.support = {s['support']}: expected a train sample index below {len(samples)}")
    problem = config.make_problem(study)
    loads = list(getattr(problem, "load_parameters", ())) if s["load_scaling"] else []
    if s["load_scaling"] and not loads:
        raise config.ConfigError(f"mmgp.load_scaling = true: problem {problem.name!r} declares no load inputs in "
                                 "which its outputs are homogeneous; expected mmgp.load_scaling: false")
    model = MMGP(FIELDS, SCALARS, list(ds["parameter"].values), args.morphing or s["morphing"], s["geometry_modes"],
                 s["field_modes"], s["support"], (0.0, 0.0), s["restarts"], s["iterations"], study["seed"],
                 load_inputs=loads, degrees=getattr(problem, "output_degrees", None), floor_variance=s["floor_variance"])
    try:
        model.fit(samples, mu, scalars, names)
    except (MeshError, ValueError) as exc:
        raise UserError(str(exc)) from None
    out = model.to_dataset()
    out.attrs["n_train"] = len(samples)
    artefacts.write(out, args.out, study, "mmgp")


def mmgp_predict(args):
    from surrogates.mmgp.geometry import MeshError
    from surrogates.mmgp.model import MMGP

    _threads(args.threads)
    study = config.load(args.study_config)
    model = MMGP.from_dataset(artefacts.read(args.model))
    samples, mu, scalars, names, ds = read_family(args.family)
    try:
        out = model.predict(samples, mu, names)
    except (MeshError, ValueError) as exc:
        raise UserError(str(exc)) from None
    outside = out["outside"]
    inputs = [f"geometry_{k}" for k in range(out["geometry_coefficients"].shape[1])] + model.input_names
    for i in np.flatnonzero(outside.any(axis=1)):
        bad = [inputs[j] for j in np.flatnonzero(outside[i])]
        print(f"mmgp-predict: warning: {names[i]} lies outside the training range in {', '.join(bad)} "
              "(extrapolation)", file=sys.stderr)
    from surrogates.mmgp.geometry import MeshSample, family_dataset

    pred = [MeshSample(s.nodes, s.triangles, {**{f"{f}": s.fields[f] for f in FIELDS},
                                              **{f"{f}_pred": m[f] for f in FIELDS},
                                              **{f"{f}_std": np.sqrt(v[f]) for f in FIELDS}})
            for s, m, v in zip(samples, out["fields_mean"], out["fields_var"])]
    res = family_dataset(pred, {"set": ds.attrs.get("set", ""), "morphing": model.morphing,
                                "predict_seconds": model.timings["predict_s"],
                                "fit_seconds": float(artefacts.read(args.model).attrs.get("timing_fit_s", np.nan))})
    res["mu"] = (("sample", "parameter"), mu)
    res["scalars"] = (("sample", "scalar"), scalars)
    res["scalars_pred"] = (("sample", "scalar"), out["scalars_mean"])
    res["scalars_std"] = (("sample", "scalar"), np.sqrt(out["scalars_var"]))
    res["outside_training_range"] = (("sample", "gp_input"), outside.astype(np.int8))
    res = res.assign_coords(scalar=artefacts.strings(SCALARS), gp_input=artefacts.strings(inputs),
                            parameter=artefacts.strings(model.input_names))
    artefacts.write(res, args.out, study, "mmgp_predictions")
    if args.vtu_dir:
        write_vtu(pred[:study["mmgp"]["vtu_samples"]], Path(args.vtu_dir))


def write_vtu(samples, folder: Path):
    """One VTU per sample with reference, predicted and standard-deviation fields (ParaView)."""
    import meshio

    from rom.artefacts import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        pts = np.column_stack([s.nodes, np.zeros(len(s.nodes))])
        data = dict(s.fields)
        data["displacement"] = np.column_stack([s.fields["u_x"], s.fields["u_y"], np.zeros(len(s.nodes))])
        data["displacement_pred"] = np.column_stack([s.fields["u_x_pred"], s.fields["u_y_pred"], np.zeros(len(s.nodes))])
        with atomic_path(folder / f"sample_{i:03d}.vtu") as tmp:
            meshio.write(tmp, meshio.Mesh(pts, [("triangle", s.triangles)], point_data=data), file_format="vtu")


# -- evaluate ----------------------------------------------------------------------------------------
def mmgp_metrics(ds: xr.Dataset) -> dict:
    """PLAID RRMSE and Q2 per field and scalar, 95% coverage; vectorized over the concatenated nodes."""
    from surrogates.gp import coverage, q2

    no = ds["node_offset"].values
    n_i = np.diff(no)
    sample_of_node = np.repeat(np.arange(len(n_i)), n_i)
    out = {"fields": {}, "scalars": {}}
    for f in FIELDS:
        ref, pred, std = ds[f].values, ds[f"{f}_pred"].values, ds[f"{f}_std"].values
        inf = np.maximum.reduceat(np.abs(ref), no[:-1])
        sq = np.bincount(sample_of_node, (ref - pred) ** 2, len(n_i))
        out["fields"][f] = {"rrmse": float(np.sqrt(np.mean(sq / (n_i * inf**2)))), "q2": q2(ref, pred),
                            "coverage95": coverage(ref, pred, std**2)}
    for j, name in enumerate(ds["scalar"].values):
        ref, pred, std = ds["scalars"].values[:, j], ds["scalars_pred"].values[:, j], ds["scalars_std"].values[:, j]
        out["scalars"][str(name)] = {"rrmse": float(np.sqrt(np.mean((ref - pred) ** 2 / ref**2))), "q2": q2(ref, pred),
                                     "coverage95": coverage(ref, pred, std**2)}
    levels = np.linspace(0.1, 0.99, 12)
    ref = np.concatenate([ds[f].values for f in FIELDS])
    pred = np.concatenate([ds[f"{f}_pred"].values for f in FIELDS])
    var = np.concatenate([ds[f"{f}_std"].values ** 2 for f in FIELDS])
    out["calibration"] = {"nominal": levels.tolist(), "fields": [coverage(ref, pred, var, a) for a in levels],
                          "scalars": [coverage(ds["scalars"].values, ds["scalars_pred"].values,
                                               ds["scalars_std"].values ** 2, a) for a in levels]}
    out["n_test"] = int(len(n_i))
    out["n_outside_training_range"] = int(ds["outside_training_range"].values.any(axis=1).sum())
    out["fit_seconds"] = float(ds.attrs.get("fit_seconds", np.nan))
    out["predict_seconds_per_sample"] = float(ds.attrs["predict_seconds"]) / max(len(n_i), 1)
    return out


def evaluate_mmgp(args):
    import json

    from rom import plots
    from rom.report import write_section
    from surrogates.mmgp.geometry import read_family as _read

    study = config.load(args.study_config)
    ds = artefacts.read(args.predictions)
    m = mmgp_metrics(ds)
    with artefacts.atomic_path(args.metrics) as tmp:
        Path(tmp).write_text(json.dumps(m, indent=1))
    fig_dir = Path(args.figures)
    samples = _read(ds)[:3]
    figs = []
    for f in ("u_y", "von_mises"):
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
        figs.append((path, f"Test shapes: reference, MMGP mean, error and predicted standard deviation of {f}"))
    fig, axes = plots.figure(len(SCALARS), size=(3.6, 3.4))
    for j, (ax, name) in enumerate(zip(axes, SCALARS)):
        ref, pred, std = (ds[v].values[:, j] for v in ("scalars", "scalars_pred", "scalars_std"))
        ax.errorbar(ref, pred, yerr=1.96 * std, fmt="o", ms=3, capsize=2)
        lim = [min(ref.min(), pred.min()), max(ref.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel(f"{name} reference")
        ax.set_ylabel("MMGP (95% interval)")
    path = fig_dir / "mmgp_parity.png"
    plots.save(fig, path)
    figs.append((path, "Parity of the output scalars on the test shapes, with 95% intervals"))
    fig, (ax,) = plots.figure()
    cal = m["calibration"]
    ax.plot(cal["nominal"], cal["fields"], "o-", label="fields (all nodes)")
    ax.plot(cal["nominal"], cal["scalars"], "s-", label="scalars")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("nominal level")
    ax.set_ylabel("observed coverage")
    ax.legend(fontsize=8)
    path = fig_dir / "mmgp_calibration.png"
    plots.save(fig, path)
    figs.append((path, "Calibration: observed coverage of the central intervals versus their nominal level"))
    rows = [[f, v["rrmse"], v["q2"], v["coverage95"]] for f, v in {**m["fields"], **m["scalars"]}.items()]
    metrics = {"test shapes": m["n_test"], "morphing": ds.attrs.get("morphing", ""),
               "test shapes outside the training range": m["n_outside_training_range"],
               "fit seconds": m["fit_seconds"], "prediction seconds per shape": m["predict_seconds_per_sample"]}
    write_section(args.section, "Mesh-morphing GP (MMGP) on a shape family", 60,
                  "Each test shape is morphed onto the unit disk, transferred to the common support, compressed with "
                  "POD and predicted by a batched GP with exact variance propagation (PLAID metrics).",
                  metrics, figs, {"MMGP test metrics": {"columns": ["output", "RRMSE", "Q2", "95% coverage"],
                                                        "rows": rows}})
