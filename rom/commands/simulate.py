"""operators, simulate (one chunk of one sample set, under MPI) and gather."""
from __future__ import annotations

import numpy as np

from rom.errors import ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.stage import Artefact, Option, Stage, problem_has

FOM_SECTIONS = ("problem", "parameters", "design", "simulate", "seed")


def check_petsc_options(study: dict):
    """PETSc options tried before any job (rom.hifi.petsc_options); unused ones are reported."""
    import sys

    from rom.hifi import registry
    from rom.hifi.petsc_options import OptionError, check

    cls = registry.problem_class(study["problem"])
    if study["simulate"]["backend"] != "petsc" or getattr(cls, "black_box", False):
        return
    solver = "snes" if cap.NONLINEAR in cls.capabilities else "ksp"
    keyed = [("simulate.petsc_options", study["simulate"]["petsc_options"])]
    if study.get("rb", {}).get("enabled"):
        keyed.append(("rb.petsc_options", {**study["simulate"]["petsc_options"], **study["rb"]["petsc_options"]}))
    for key, options in keyed:
        try:
            unused = check(options, solver, key)
        except OptionError as exc:
            raise ConfigError(str(exc)) from None
        for name in unused:
            print(f"romflow: warning: {key}.{name}: PETSc did not use this option in a trial {solver.upper()} solve "
                  "(misspelt, or for another solver?)", file=sys.stderr)


def operators(ctx):
    from rom.hifi.operators import operators_dataset

    ds = operators_dataset(ctx.problem)
    ctx.log.info("assembly of X, M%s on %d dofs (%d nonzeros): %.2f s, peak memory %.0f MB",
                 " and the affine terms" if "A_terms" in ds else "", ds.attrs["n_dofs"], ds.sizes["nnz"],
                 ds.attrs["assembly_seconds"], ds.attrs["peak_memory_mb"])
    ctx.write("out", ds, "operators")


def simulate(ctx):
    from rom.design import chunk_indices, n_chunks
    from rom.hifi import petsc
    from rom.hifi.solve import FullOrderModel
    from rom.progress import Progress
    from rom.snapshots import snapshots_dataset

    sim, set_name, chunk = ctx.study["simulate"], ctx.option("set"), ctx.option("chunk")
    if sim["backend"] == "petsc":
        petsc.init(ctx.petsc_args)
    mu_all = ctx.read("parameters")[f"mu_{set_name}"].values
    c = sim["chunk_size"]
    if chunk < 0 or chunk >= n_chunks(len(mu_all), c):
        raise UserError(f"--chunk {chunk}: expected 0..{n_chunks(len(mu_all), c) - 1} for {len(mu_all)} {set_name} "
                        f"samples in chunks of {c}")
    index = chunk_indices(len(mu_all), c, chunk)
    problem = ctx.problem
    black_box = getattr(problem, "black_box", False)
    if black_box and petsc.comm_world().size > 1:
        raise UserError(f"problem {problem.name}: simulate runs the black box's command under the MPI launcher "
                        f"itself (simulate.mpi_ranks = {sim['mpi_ranks']}); expected this stage on one rank")
    fom = FullOrderModel(problem, sim["backend"], sim["petsc_options"], ranks=sim["mpi_ranks"])
    ranks = fom.comm.size if fom.comm is not None else fom.ranks
    backend = fom.backend
    ctx.log.info("%s chunk %d: samples %s on %d MPI rank(s), backend %s", set_name, chunk,
                 f"{index[0]}..{index[-1]}" if len(index) else "none", ranks, backend)
    bar = Progress(len(index), "samples", ctx.log)

    def each(i, r):
        ctx.log.debug("sample %d: %s, %d iterations, %.3f s", index[i], r.reason, r.iterations, r.seconds)
        if not r.converged and fom.rank == 0:
            ctx.log.warning("sample %d (mu = %s) failed: %s", index[i], np.round(mu_all[index[i]], 6).tolist(), r.reason)
        bar.step(note=f"last: {r.reason}, {r.iterations} iterations, {r.seconds:.3f} s")

    results = fom.solve_samples(mu_all[index], each)
    if backend == "petsc":
        for name in petsc.unused_options(sim["petsc_options"]):
            ctx.warn(f"simulate.petsc_options.{name}: PETSc never used this option")
    figures = fom.assembly_report()
    if "operator_seconds" in figures:
        ctx.log.info("assembly (slowest rank): pattern %.3f s, operator %.3f s, load %.3f s; peak memory %.0f MB",
                     figures["pattern_seconds"], figures["operator_seconds"], figures["rhs_seconds"],
                     figures["peak_memory_mb"])
    if fom.rank != 0:
        return 0
    attrs = {"set": set_name, "chunk": chunk, "mpi_ranks": ranks, "backend": backend,
             **{f"assembly_{k}": float(v) for k, v in figures.items()}}
    ds = snapshots_dataset(problem, index, mu_all[index], results, attrs)
    if len(results):
        its = np.array([r.iterations for r in results])
        ctx.log.info("iterations per sample: min %d, mean %.1f, max %d", its.min(), its.mean(), its.max())
    ctx.write("out", ds, "snapshots")
    return 0


def gather(ctx):
    from rom import artefacts
    from rom.snapshots import failures, gather as merge

    ds = merge([artefacts.read(p) for p in ctx.path("chunks")])
    ctx.write("out", ds, "snapshots")
    failed, n, reasons = failures(ds)
    ctx.log.info("%d samples, %d failed", n, failed)
    limit = ctx.study["simulate"]["max_failed_fraction"]
    if n and failed / n > limit:
        # The merged artefact is kept (it records which samples failed and why) but the stage fails.
        raise UserError(f"{failed} of {n} samples failed ({', '.join(reasons)}), more than "
                        f"simulate.max_failed_fraction = {limit}; see {ctx.path('out')}")


_fixed_mesh = problem_has(cap.MESH)

STAGES = (
    Stage("operators", operators, "assemble the affine components, the X and M products and the mesh",
          sections=("problem",), needs=frozenset({cap.MESH}), enabled=_fixed_mesh,
          outputs=(Artefact("out", "fom/operators.h5"),)),
    Stage("simulate", simulate, "full-order solves of one chunk of a sample set (run under the MPI launcher); "
          "PETSc options such as -ksp_monitor pass through", sections=FOM_SECTIONS, mpi=True,
          needs=frozenset({cap.MESH}), enabled=_fixed_mesh, check=check_petsc_options,
          inputs=(Artefact("parameters", "parameters.h5 from `sample`"),),
          outputs=(Artefact("out", "snapshots/<set>/chunk<i>.h5"),),
          options=(Option("set", "sample set", default="train", choices=("train", "test", "validation"),
                          wildcard="set"),
                   Option("chunk", "chunk index (simulate.chunk_size samples each)", type=int, default=0,
                          wildcard="chunk"))),
    Stage("gather", gather, "merge the chunks of one sample set; fails if too many samples failed",
          sections=FOM_SECTIONS, enabled=_fixed_mesh,
          inputs=(Artefact("chunks", "snapshots/<set>/chunk*.h5", many=True, positional=True),),
          outputs=(Artefact("out", "snapshots/<set>.h5"),)),
)
