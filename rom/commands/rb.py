"""eim, reduced_basis (weak greedy / POD / POD-greedy under MPI), evaluate_rom, figures_rb and
figures_eim: declarations and argument plumbing.

The library does the work: rom.models.eim_artefact (the EIM artefact), rom.models.offline (one path per
model kind: affine, eim_affine, parabolic, each calling the steps of rom.models.steps: coercivity/SCM,
basis, outputs), rom.hifi.solvers.distributed (rank 0 drives the
collective FOM solves under `mpiexec -n <simulate.mpi_ranks>`, the other ranks serve them),
rom.models.factory (models from artefacts), rom.models.evaluate (evaluate_rom) and rom.figures.rb.
"""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from rom.commands.simulate import FOM_SECTIONS
from rom.errors import ConfigError, UserError
from rom.hifi import capabilities as cap
from rom.paths import problem_label
from rom.stage import Artefact, Option, Stage, all_of, any_of, none_of


@contextmanager
def _user_errors():
    """Bad input found by the library (a parameter out of range, a model the artefacts cannot give,
    a problem that is not coercive on its box) ends in one line, exit status 2."""
    from rom.models.factory import ModelError
    from rom.models.rb import ExtrapolationError
    from rom.reduction.scm import NotCoerciveError

    try:
        yield
    except (ExtrapolationError, ModelError, NotCoerciveError) as exc:
        raise UserError(str(exc)) from None


def _single_thread():
    # Small dense systems (N ~ 20): threaded BLAS only adds overhead (measured 3x on 2 cores).
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _operators(ctx):
    from rom.hifi.discretization.operators import MESH_ONLY, Operators

    return Operators.from_dataset(ctx.read("operators", drop=MESH_ONLY))


# -- checks at validation time ----------------------------------------------------------------------
# Which problems the stage reduces, as a declaration (the validator, rom.pipeline.check_study, reports an
# unmet alternative naming rb.enabled): stationary affine, stationary with an interpolated coefficient
# (EIM), or linear transient affine (parabolic RB, POD-greedy).
RB_NEEDS = all_of(cap.MESH, any_of(all_of(cap.STATIONARY, any_of(cap.AFFINE, cap.COEFFICIENT_EIM,
                                                                   cap.OPERATOR_ENTRIES)),
                                   all_of(cap.TRANSIENT, cap.AFFINE, none_of(cap.NONLINEAR))))
# Settings that, switched on, need more of the problem: (key, needs, the value that switches them off).
RB_SETTING_NEEDS = (("rb.outputs", cap.OUTPUT_FUNCTIONALS, "[]"), ("rb.scm.enabled", cap.AFFINE, "auto or false"))


def _problem(study):
    """(problem class, label) of the study's problem."""
    from rom.hifi.registry import problem_class

    return problem_class(study["problem"]), problem_label(study)


def check_eim(study: dict):
    cls, name = _problem(study)
    if cap.has(cls, cap.OPERATOR_ENTRIES) and not study["eim"]["matrix"]:
        raise ConfigError(f"eim.matrix = false: problem {name} is a black box whose only EIM is the matrix EIM of its "
                          "delivered entries; expected eim.matrix: true")
    if study["eim"]["matrix"] and not cap.has(cls, cap.ENTRY_PROBE):
        raise ConfigError(f"eim.matrix = true: the matrix EIM needs the problem capability 'entry_probe', which problem "
                          f"{name} does not have; expected eim.matrix: false")


def check_rb(study: dict):
    """What the declarations cannot say (RB_NEEDS and RB_SETTING_NEEDS are checked before): the EIM a
    non-affine problem is reduced on, the method of transient problems, the outputs' entries."""
    cls, name = _problem(study)
    s = study["rb"]
    transient = cap.has(cls, cap.TRANSIENT)
    if not transient and not cap.has(cls, cap.AFFINE) and not study["eim"]["enabled"]:
        raise ConfigError(f"rb.enabled = true: problem {name} is not affine; expected eim.enabled: true (the RB model "
                          "is built on the EIM of its coefficient)")
    if transient and s["method"] != "greedy":
        raise ConfigError(f"rb.method = {s['method']}: problem {name} is transient (POD-greedy); expected rb.method: greedy")
    if transient and s["outputs"]:
        raise ConfigError(f"rb.outputs: output bounds of transient problems are not available (no space-time dual "
                          f"problem); expected rb.outputs: [] for problem {name}")
    if s["riesz"]["solver"] == "iterative" and study["simulate"]["backend"] != "petsc":
        raise ConfigError(f"rb.riesz.solver = iterative: the X solves on the MPI ranks need PETSc, and "
                          f"simulate.backend is {study['simulate']['backend']}; expected rb.riesz.solver: direct or auto")
    if s["riesz"]["petsc_options"] and s["riesz"]["solver"] == "direct":
        raise ConfigError("rb.riesz.petsc_options: the direct X solver (SuperLU) reads no PETSc options; expected "
                          "rb.riesz.solver: iterative (or auto on a 3D mesh), or no rb.riesz.petsc_options")
    names = [o["name"] for o in s["outputs"]]
    for i, o in enumerate(s["outputs"]):
        key = f"rb.outputs.{i} ({o['name']})"
        if names.count(o["name"]) > 1:
            raise ConfigError(f"{key}: name used twice; expected distinct output names")
        try:
            cls.check_output(study["problem"], o)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None


# -- eim ----------------------------------------------------------------------------------------
def eim(ctx):
    from rom.artefacts import strings
    from rom.models.eim_artefact import eim_dataset, entries_eim_dataset
    from rom.models.steps import training_set

    s, space = ctx.study["eim"], ctx.space
    ctx.log.info("EIM of problem %s: %d training and %d test parameters, at most %d terms, tol %g%s",
                 ctx.problem.name, s["train_size"], s["test_size"], s["max_modes"], s["tol"],
                 ", and the matrix EIM" if s["matrix"] else "")
    mu_train, mu_test = training_set(space, s["train_size"], s["seed"]), training_set(space, s["test_size"], s["seed"] + 1)
    with _user_errors():
        if cap.has(ctx.problem, cap.OPERATOR_ENTRIES):  # a black box: the EIM of its delivered A(mu) and f(mu)
            ds = entries_eim_dataset(ctx.problem, mu_train, mu_test, s["max_modes"], s["tol"])
        else:
            ds = eim_dataset(ctx.problem, mu_train, mu_test, space.bounds, s["max_modes"], s["tol"], s["matrix"],
                             s["bound_grid"], s["bound_order"])
    for prefix, M, what in (("", "M", "function EIM"), ("matrix_", "matrix_M", "matrix EIM"),
                            ("rhs_", "rhs_M", "load EIM")):
        if f"{prefix}train_max_error" not in ds:
            continue
        err = ds[f"{prefix}train_max_error"].values
        if ds.attrs[M] == s["max_modes"] and err[-1] > s["tol"] * err[0]:
            ctx.warn(f"eim: the {what} stopped at eim.max_modes = {s['max_modes']} terms with "
                     f"relative training error {err[-1] / err[0]:.2e}, above eim.tol = {s['tol']:g}")
    ctx.write("out", ds.assign_coords(parameter=strings(space.names)), "eim")


# -- reduced_basis ----------------------------------------------------------------------------------
def reduced_basis(ctx):
    from rom.hifi.solvers import petsc
    from rom.hifi.solvers.distributed import RootDriven
    from rom.hifi.solvers.solve import FullOrderModel
    from rom.models import offline, steps

    s, sim = ctx.study["rb"], ctx.study["simulate"]
    if sim["backend"] == "petsc":
        petsc.init(ctx.petsc_args)
    problem = ctx.problem
    path = offline.path_of(problem)  # one path per model kind: affine, eim_affine, parabolic
    fom = FullOrderModel(problem, sim["backend"], {**sim["petsc_options"], **s["petsc_options"]})
    operations = steps.fom_operations(problem, fom, s["outputs"])
    riesz = steps.riesz_solver_kind(s["riesz"]["solver"], problem, sim["backend"])
    if riesz == "direct" and s["riesz"]["petsc_options"]:  # auto resolved to direct (a 2D mesh): they would be unused
        raise ConfigError(f"rb.riesz.petsc_options: the X solves of problem {problem.name} are direct (SuperLU: "
                          "rb.riesz.solver auto on a 2D mesh), which read no PETSc options; expected rb.riesz.solver: "
                          "iterative, or no rb.riesz.petsc_options")
    if riesz == "iterative":  # built collectively on every rank, each reading its rows of X
        from rom.hifi.solvers.inner_product import InnerProductSolver

        operations[steps.RIESZ] = InnerProductSolver(ctx.path("operators"), options=s["riesz"]["petsc_options"])
    with RootDriven(fom, operations) as solves, _user_errors(), _single_thread():
        if not solves.is_root:
            return 0
        ctx.log.info("FOM solves on %d MPI rank(s), backend %s; X solves of the residual data: %s", solves.size,
                     sim["backend"], "CG + GAMG on the MPI ranks" if riesz == "iterative" else "SuperLU on rank 0")
        stationary = path != "parabolic"
        ds = offline.PATHS[path](problem, _operators(ctx), ctx.space, s, solves,
                                 ctx.read("eim") if stationary else None, ctx.read("train") if stationary else None)
        if riesz == "iterative":
            ds.attrs["riesz_cg_iterations"] = int(operations[steps.RIESZ].iterations)
        ctx.log.info("X solves of the residual data (%s): %d right-hand sides and corrections, max backward error "
                     "%.1e (long double)%s", ds.attrs["riesz_solver"], ds.attrs["riesz_inner_solves"],
                     ds.attrs["riesz_max_backward_error"],
                     f", {ds.attrs['riesz_cg_iterations']} CG iterations" if riesz == "iterative" else "")
        if ds.attrs["riesz_not_arrived"]:
            ctx.warn(f"rb: {ds.attrs['riesz_not_arrived']} refinements of the X solves ended before long-double "
                     f"accuracy (max backward error {ds.attrs['riesz_max_backward_error']:.1e}); the residual data "
                     "are less accurate than the bound's round-off analysis assumes; check rb.riesz.petsc_options")
        if ds.attrs["warning"]:
            ctx.warn(f"rb: {ds.attrs['warning']}")
        ctx.write("out", ds, "rb")
    return 0


# -- evaluate_rom ---------------------------------------------------------------------------------
def _parse_mu(text: str, names) -> np.ndarray:
    try:
        mu = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise UserError(f"--mu {text!r}: expected {len(names)} comma-separated numbers ({', '.join(names)})") from None
    if len(mu) != len(names):
        raise UserError(f"--mu {text!r}: {len(mu)} values; expected {len(names)} ({', '.join(names)})")
    return mu


def evaluate_rom(ctx):
    from rom import artefacts
    from rom.models import evaluate

    with _user_errors(), _single_thread():
        rb_ds = ctx.read("rb")
        names = [str(v) for v in rb_ds["parameter"].values]
        problem, ops, eim_ds, s = ctx.problem, _operators(ctx), ctx.read("eim"), ctx.study["rb"]
        if ctx.option("mu") is not None:
            for line in evaluate.query(problem, ops, rb_ds, _parse_mu(ctx.option("mu"), names), s["extrapolation"],
                                       eim_ds):
                print(line)
            return 0
        if ctx.path("test") is None or ctx.path("out") is None:
            raise UserError("evaluate-rom: expected --test and --out (or --mu for one query)")
        test = artefacts.converged(ctx.read("test"))
        ctx.log.info("%d test snapshots, %s model(s) %s with N = %d; timing %d single and %d batched queries",
                     test.sizes["sample"], rb_ds.attrs.get("formulation", "stationary"), rb_ds.attrs["kinds"],
                     int(rb_ds.attrs["N"]), s["n_timing"], s["batch_size"])
        ds = evaluate.rb_metrics(problem, ops, rb_ds, test, s, eim_ds)
    lines, warnings = evaluate.summary(ds)
    for line in lines:
        ctx.log.info("%s", line)
    for w in warnings:
        ctx.warn(w)
    ctx.write("out", ds, "rb_metrics")
    return 0


# -- figures ----------------------------------------------------------------------------------------
def figures_rb(ctx):
    from rom.figures.rb import rb_section

    s = rb_section(ctx.read("rb"), ctx.read("metrics"), ctx.path("convergence"), ctx.path("effectivity"))
    ctx.section(s["title"], s["order"], s["text"], s["metrics"], s["figures"], s["tables"])


def figures_eim(ctx):
    from rom.figures.rb import eim_section

    s = eim_section(ctx.read("eim"), ctx.path("figure"))
    ctx.section(s["title"], s["order"], s["text"], s["metrics"], s["figures"], s["tables"])


OPERATORS = Artefact("operators", "fom/operators.h5")
EIM = Artefact("eim", "rom/eim.h5 (problems made affine by EIM)", optional=True)
RB = Artefact("rb", "rom/rb.h5")

STAGES = (
    Stage("eim", eim, "function EIM of the non-affine coefficient (with its rigorous bound over the box) and the "
          "nonintrusive matrix EIM of A(mu)", sections=("problem", "parameters", "eim"),
          needs=all_of(cap.MESH, any_of(cap.COEFFICIENT_EIM, cap.OPERATOR_ENTRIES)), switch="eim", check=check_eim,
          inputs=(OPERATORS,), outputs=(Artefact("out", "rom/eim.h5"),)),
    Stage("reduced_basis", reduced_basis, "certified RB: weak greedy with FOM solves (SCM where min-theta does not "
          "hold, dual greedies of rb.outputs), POD of the train snapshots, or POD-greedy for transient problems; run "
          "under the MPI launcher, PETSc options pass through", sections=FOM_SECTIONS + ("rb", "eim"), mpi=True,
          needs=RB_NEEDS, setting_needs=RB_SETTING_NEEDS, switch="rb", check=check_rb,
          inputs=(OPERATORS, EIM, Artefact("train", "snapshots/train.h5 (rb.method: pod)", optional=True)),
          outputs=(Artefact("out", "rom/rb.h5"),)),
    Stage("evaluate_rom", evaluate_rom, "errors, bounds, effectivities (outputs too) and timings of the reduced "
          "models on the test snapshots; or, with --mu, one certified query", sections=("rb",),
          needs=frozenset({cap.MESH}), switch="rb", needs_test=True,
          inputs=(OPERATORS, RB, EIM, Artefact("test", "snapshots/test.h5 (not with --mu)", optional=True)),
          outputs=(Artefact("out", "rom/rb_metrics.h5 (not with --mu)", optional=True),),
          options=(Option("mu", "one parameter, comma separated: print the RB answer and its error bound"),),
          quiet=lambda args: args.mu is not None),
    Stage("figures_rb", figures_rb, "report figures and section of the reduced basis", sections=("report",),
          switch="rb", inputs=(RB, Artefact("metrics", "rom/rb_metrics.h5")),
          outputs=(Artefact("convergence", "PNG: max error and bounds vs N"),
                   Artefact("effectivity", "PNG: effectivities"), Artefact("section", "section JSON"))),
    Stage("figures_eim", figures_eim, "report figure and section of the EIM", sections=("report",), switch="eim",
          inputs=(Artefact("eim", "rom/eim.h5"),),
          outputs=(Artefact("figure", "PNG: EIM error vs number of terms"), Artefact("section", "section JSON"))),
)
