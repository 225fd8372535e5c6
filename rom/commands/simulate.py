"""operators, simulate (one chunk of one sample set, under MPI) and gather."""
from __future__ import annotations

import numpy as np

from rom.errors import ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.paths import problem_label
from rom.stage import Artefact, Option, Stage, problem_has

FOM_SECTIONS = ("problem", "parameters", "design", "simulate", "seed")


def check_petsc_options(study: dict):
    """PETSc options tried before any job (rom.hifi.solvers.petsc_options); unused ones are reported."""
    import sys

    from rom.hifi import registry
    from rom.hifi.solvers.petsc_options import OptionError, check

    cls = registry.problem_class(study["problem"])
    if study["simulate"]["backend"] != "petsc" or getattr(cls, "black_box", False):
        return
    fom = "snes" if cap.has(cls, cap.NONLINEAR) else "ksp"
    keyed = [("simulate.petsc_options", study["simulate"]["petsc_options"], fom)]
    if study.get("rb", {}).get("enabled"):
        keyed.append(("rb.petsc_options", {**study["simulate"]["petsc_options"], **study["rb"]["petsc_options"]}, fom))
        if study["rb"]["riesz"]["petsc_options"]:  # the X solves: CG + GAMG unless these say otherwise
            keyed.append(("rb.riesz.petsc_options", {"ksp_type": "cg", "pc_type": "gamg",
                                                     **study["rb"]["riesz"]["petsc_options"]}, "ksp"))
    for key, options, solver in keyed:
        try:
            unused = check(options, solver, key)
        except OptionError as exc:
            raise ConfigError(str(exc)) from None
        for name in unused:
            print(f"romflow: warning: {key}.{name}: PETSc did not use this option in a trial {solver.upper()} solve "
                  "(misspelt, or for another solver?)", file=sys.stderr)


def operators(ctx):
    from rom.hifi.discretization.operators import operators_dataset

    ds = operators_dataset(ctx.problem)
    ctx.log.info("assembly of X, M%s on %d dofs (%d nonzeros): %.2f s, peak memory %.0f MB",
                 " and the affine terms" if "A_terms" in ds else "", ds.attrs["n_dofs"], ds.sizes["nnz"],
                 ds.attrs["assembly_seconds"], ds.attrs["peak_memory_mb"])
    ctx.write("out", ds, "operators")


def sequence_settings(study: dict):
    """The simulate section's initial guess and tuning (rom.hifi.sequence.driver), refused in one line."""
    from rom.hifi.sequence.driver import SequenceSettings

    try:
        return SequenceSettings.from_config(study["simulate"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_simulate(study: dict):
    """Before any job: the sequence settings, then the PETSc options in a trial solve."""
    settings = sequence_settings(study)
    if settings.tune is not None:
        from rom.hifi import registry

        cls = registry.problem_class(study["problem"])
        if study["simulate"]["backend"] != "petsc" or getattr(cls, "black_box", False):
            raise ConfigError(f"simulate.tune.option = {settings.tune.option!r}: only PETSc solves run by romflow "
                              f"take a tuned option (backend {study['simulate']['backend']}"
                              f"{', a black-box solver' if getattr(cls, 'black_box', False) else ''}); "
                              "expected simulate.tune empty")
        if cap.has(cls, cap.NONLINEAR):
            name = problem_label(study)
            raise ConfigError(f"simulate.tune.option = {settings.tune.option!r}: problem {name} is nonlinear"
                              " and solves with its own SNES, which reads its options once; expected "
                              "simulate.tune empty for it")
    check_petsc_options(study)


def simulate(ctx):
    from rom.hifi.sequence.driver import solve_sequence
    from rom.hifi.sequence.ordering import chunk_plan
    from rom.hifi.solvers import petsc
    from rom.hifi.solvers.solve import FullOrderModel
    from rom.progress import Progress
    from rom.snapshots import snapshots_dataset

    sim, set_name, chunk = ctx.study["simulate"], ctx.option("set"), ctx.option("chunk")
    settings = sequence_settings(ctx.study)
    if sim["backend"] == "petsc":
        petsc.init(ctx.petsc_args)
    mu_all = ctx.read("parameters")[f"mu_{set_name}"].values
    space = ctx.space
    try:
        # One path through the whole set, cut into chunks: a chunk's samples are neighbours.
        plan = chunk_plan(mu_all, space.bounds, space.distributions, sim["chunk_size"], chunk, sim["ordering"])
    except ValueError as exc:
        raise UserError(f"--chunk {chunk}: {exc}") from None
    index = plan.index
    problem = ctx.problem
    black_box = getattr(problem, "black_box", False)
    if black_box and petsc.comm_world().size > 1:
        raise UserError(f"problem {problem.name}: simulate runs the black box's command under the MPI launcher "
                        f"itself (simulate.mpi_ranks = {sim['mpi_ranks']}); expected this stage on one rank")
    fom = FullOrderModel(problem, sim["backend"], sim["petsc_options"], ranks=sim["mpi_ranks"])
    ranks = fom.comm.size if fom.comm is not None else fom.ranks
    backend = fom.backend
    ctx.log.info("%s chunk %d: %d samples on %d MPI rank(s), backend %s, solve order %s, initial guess %s%s",
                 set_name, chunk, len(index), ranks, backend, sim["ordering"], settings.initial_guess,
                 f", {settings.tune.option} tuned by {settings.tune.policy}" if settings.tune else "")
    bar = Progress(len(index), "samples", ctx.log)

    def each(i, r):
        ctx.log.debug("sample %d: %s, %d iterations, %.3f s", index[i], r.reason, r.iterations, r.seconds)
        if not r.converged and fom.rank == 0:
            ctx.log.warning("sample %d (mu = %s) failed: %s", index[i], np.round(mu_all[index[i]], 6).tolist(), r.reason)
        bar.step(note=f"last: {r.reason}, {r.iterations} iterations, {r.seconds:.3f} s")

    try:
        # the contextual policy's context: the parameters in the study's box (its overrides included)
        with fom.session():  # a persistent black box: one worker for the chunk
            results, facts = solve_sequence(fom, mu_all[index], settings, plan.order, each, contexts=plan.unit)
    except ValueError as exc:  # a setting this problem or solver cannot take (a tuned option on another backend)
        raise ConfigError(str(exc)) from None
    if backend == "petsc":
        for name in fom.solver.unused_options():
            ctx.warn(f"simulate.petsc_options.{name}: PETSc never used this option")
    figures = fom.assembly_report()
    if "operator_seconds" in figures:
        ctx.log.info("assembly (slowest rank): pattern %.3f s, operator %.3f s, load %.3f s; peak memory %.0f MB",
                     figures["pattern_seconds"], figures["operator_seconds"], figures["rhs_seconds"],
                     figures["peak_memory_mb"])
    if fom.rank != 0:
        return 0
    if getattr(problem, "node_order", None) == "permuted":
        ctx.log.info("the black box's x is a permutation of problem.mesh's nodes: its fields were mapped to "
                     "romflow's node order")
    attrs = {"set": set_name, "chunk": chunk, "mpi_ranks": ranks, "backend": backend, "ordering": sim["ordering"],
             **({"node_order": "permuted"} if getattr(problem, "node_order", None) == "permuted" else {}),
             **({"black_box": problem.command.split()[0]} if black_box else {}),
             **getattr(problem, "worker_stats", {}),  # a persistent black box: its worker's starts and requests
             **{f"assembly_{k}": float(v) for k, v in figures.items()},
             **{f"sequence_{k}": v for k, v in facts.attrs.items()}}
    ds = snapshots_dataset(problem, index, mu_all[index], results, attrs)
    ds = ds.assign(facts.data_vars())
    ds["chunk"] = ("sample", np.full(len(index), chunk, dtype=np.int64))
    if len(results):
        its = facts.iterations[plan.order]
        half = max(1, len(its) // 2)
        ctx.log.info("iterations per sample: min %d, mean %.1f, max %d (first half of the solve order %.1f, "
                     "second half %.1f)", its.min(), its.mean(), its.max(), its[:half].mean(),
                     its[half:].mean() if len(its) > 1 else its.mean())
    ctx.write("out", ds, "snapshots")
    return 0


def gather(ctx):
    from rom.snapshots import failures, gather_files

    # The chunks' small variables merged in memory; their fields copied sample by sample into the merged
    # file (rom.snapshots.gather_files): a large set is never held whole.
    ds, fill = gather_files(ctx.path("chunks"))
    failed, n, _ = failures(ds)
    ctx.log.info("%d samples, %d failed", n, failed)
    reasons = reason_counts(ds)  # a reason repeated by many samples once, with its count
    limit = ctx.study["simulate"]["max_failed_fraction"]
    if failed and not (n and failed / n > limit):
        ctx.warn(f"{failed} of {n} samples failed: {'; '.join(reasons)}")
    ctx.write("out", ds, "snapshots", fill=fill)
    if n and failed / n > limit:
        # The merged artefact is kept (it records which samples failed and why) but the stage fails.
        raise UserError(f"{failed} of {n} samples failed ({'; '.join(reasons)}), more than "
                        f"simulate.max_failed_fraction = {limit}; see {ctx.path('out')}")


def reason_counts(ds) -> list[str]:
    """The failed samples' reasons, each once, most frequent first: 'count x reason'."""
    from collections import Counter

    ok = ds["converged"].values.astype(bool)
    counts = Counter(str(r) for r in ds["reason"].values[~ok])
    return [f"{c} x {r}" for r, c in sorted(counts.items(), key=lambda rc: (-rc[1], rc[0]))]


_fixed_mesh = problem_has(cap.MESH)

STAGES = (
    Stage("operators", operators, "assemble the affine components, the X and M products and the mesh",
          sections=("problem",), needs=frozenset({cap.MESH}), enabled=_fixed_mesh,
          outputs=(Artefact("out", "fom/operators.h5"),)),
    Stage("simulate", simulate, "full-order solves of one chunk of a sample set (run under the MPI launcher); "
          "PETSc options such as -ksp_monitor pass through", sections=FOM_SECTIONS, mpi=True,
          needs=frozenset({cap.MESH}), enabled=_fixed_mesh, check=check_simulate,
          inputs=(Artefact("parameters", "parameters.h5 from `sample`"),
                  Artefact("operators", "fom/operators.h5: the mesh, read instead of the mesh file", optional=True)),
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
