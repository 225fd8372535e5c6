"""operators, simulate (one chunk of one sample set, under MPI) and gather."""
from __future__ import annotations

import math
import sys

import numpy as np
import xarray as xr

from rom import artefacts, config
from rom.cli import UserError, add_study_arg


def register(sub):
    p = sub.add_parser("operators", help="assemble the affine components, X and M products and the mesh")
    add_study_arg(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=operators)

    p = sub.add_parser("simulate", help="full-order solves of one chunk of a sample set (run under mpiexec -n N); "
                       "PETSc options such as -ksp_monitor pass through")
    add_study_arg(p)
    p.add_argument("--parameters", required=True, help="parameters.h5 from `sample`")
    p.add_argument("--set", default="train", choices=["train", "test", "validation"])
    p.add_argument("--chunk", type=int, default=0, help="chunk index (chunk_size samples each)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=simulate)

    p = sub.add_parser("gather", help="merge the chunks of one sample set; fails if too many samples failed")
    add_study_arg(p)
    p.add_argument("chunks", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=gather)


def operators(args):
    from rom.hifi.operators import operators_dataset

    study = config.load(args.study_config)
    artefacts.write(operators_dataset(config.make_problem(study)), args.out, study, "operators")


def n_chunks(study: dict, set_name: str, n_samples: int | None = None) -> int:
    size = study["design"][set_name]["size"] if n_samples is None else n_samples
    return max(1, math.ceil(size / study["simulate"]["chunk_size"]))


def simulate(args):
    from rom.hifi import petsc
    from rom.hifi.solve import FullOrderModel

    study = config.load(args.study_config)
    sim = study["simulate"]
    if sim["backend"] == "petsc":
        petsc.init(args.petsc_args)
    mu_all = artefacts.read(args.parameters)[f"mu_{args.set}"].values
    c = sim["chunk_size"]
    if args.chunk < 0 or args.chunk * c >= max(len(mu_all), 1):
        raise UserError(f"--chunk {args.chunk}: expected 0..{max(n_chunks(study, args.set, len(mu_all)) - 1, 0)} "
                        f"for {len(mu_all)} {args.set} samples in chunks of {c}")
    index = np.arange(args.chunk * c, min((args.chunk + 1) * c, len(mu_all)))
    problem = config.make_problem(study)
    fom = FullOrderModel(problem, sim["backend"], sim["petsc_options"])
    solve = fom.solve_trajectory if problem.transient else fom.solve
    results = []
    for i, mu in zip(index, mu_all[index]):  # one PETSc solve (or trajectory) per sample
        results.append(solve(mu))
        if fom.rank == 0:
            r = results[-1]
            print(f"simulate: {args.set} sample {i}: {r.reason}, {r.iterations} iterations, {r.seconds:.3f} s",
                  file=sys.stderr, flush=True)
    if fom.rank != 0:
        return 0
    shape = ((problem.steps + 1,) if problem.transient else ()) + (problem.mesh.n_dofs,)
    U = np.full((len(index),) + shape, np.nan)
    for i, r in enumerate(results):
        if r.converged:
            U[i] = r.u
    dims = ("sample", "time", "dof") if problem.transient else ("sample", "dof")
    coords = {"sample": index, "parameter": artefacts.strings(problem.parameter_names)}
    if problem.transient:
        coords["time"] = problem.times
    ds = xr.Dataset(
        {
            "u": (dims, U, {"units": problem.units, "long_name": "solution at the free dofs"}),
            "mu": (("sample", "parameter"), mu_all[index]),
            "converged": ("sample", np.array([r.converged for r in results], dtype=np.int8)),
            "reason": ("sample", artefacts.strings(r.reason for r in results)),
            "iterations": ("sample", np.array([r.iterations for r in results])),
            "solve_seconds": ("sample", np.array([r.seconds for r in results]), {"units": "s"}),
        },
        coords=coords,
        attrs={"set": args.set, "chunk": args.chunk, "mpi_ranks": fom.comm.size if fom.comm else 1,
               "backend": sim["backend"]},
    )
    artefacts.write(ds, args.out, study, "snapshots")
    return 0


def gather(args):
    study = config.load(args.study_config)
    parts = [artefacts.read(p) for p in args.chunks]
    ds = xr.concat(parts, dim="sample", data_vars="minimal", coords="minimal", combine_attrs="drop_conflicts")
    ds = ds.sortby("sample")
    failed = int((ds["converged"] == 0).sum())
    n = ds.sizes["sample"]
    ds.attrs.update(n_failed=failed, chunks=len(parts))
    artefacts.write(ds, args.out, study, "snapshots")
    limit = study["simulate"]["max_failed_fraction"]
    if n and failed / n > limit:
        reasons = sorted(set(ds["reason"].values[ds["converged"].values == 0]))
        # The merged artefact is kept (it records which samples failed and why) but the stage fails.
        raise UserError(f"{failed} of {n} samples failed ({', '.join(reasons)}), more than "
                        f"simulate.max_failed_fraction = {limit}; see {args.out}")
