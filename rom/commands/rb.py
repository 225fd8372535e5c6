"""eim, reduced-basis (weak greedy under MPI, or POD), evaluate-rom and figures-rb: argument plumbing.

The library does the work: rom.models.eim_artefact (EIM artefact), rom.models.factory (models of
each kind, the rb artefact), rom.reduction.greedy, rom.hifi.distributed (rank 0 drives the FOM
solves of the greedy under `mpiexec -n <simulate.mpi_ranks>`, the other ranks serve them),
rom.models.evaluate (evaluate-rom) and rom.models.rb_figures (figures-rb).
"""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager

import numpy as np

from rom import artefacts, config
from rom.cli import UserError, add_study_arg

log = logging.getLogger("rom.rb")


def register(sub):
    p = sub.add_parser("eim", help="function EIM of the non-affine coefficient and nonintrusive matrix EIM of A(mu)")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--out", required=True, help="rom/eim.h5")
    p.set_defaults(func=eim_command)

    p = sub.add_parser("reduced-basis", help="certified RB: weak greedy with FOM solves (run under mpiexec -n N) "
                       "or POD of the train snapshots; PETSc options pass through")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--eim", help="rom/eim.h5 (problems without an affine operator)")
    p.add_argument("--train", help="snapshots/train.h5 (rb.method: pod)")
    p.add_argument("--out", required=True, help="rom/rb.h5")
    p.set_defaults(func=reduced_basis)

    p = sub.add_parser("evaluate-rom", help="errors, effectivities and timings of the reduced models on the test "
                       "snapshots; or, with --mu, one certified query")
    add_study_arg(p)
    p.add_argument("--operators", required=True)
    p.add_argument("--rb", required=True)
    p.add_argument("--eim")
    p.add_argument("--test", help="snapshots/test.h5")
    p.add_argument("--out", help="metrics artefact (rom/rb_metrics.h5)")
    p.add_argument("--mu", help="one parameter, comma separated: print the RB answer and its error bound")
    p.set_defaults(func=evaluate_rom)

    p = sub.add_parser("figures-rb", help="report figures and section of the reduced basis (--rb) or of the EIM (--eim)")
    add_study_arg(p)
    p.add_argument("--rb")
    p.add_argument("--metrics")
    p.add_argument("--eim")
    p.add_argument("--convergence", help="PNG: max error and estimates vs N")
    p.add_argument("--effectivity", help="PNG: effectivity vs true error")
    p.add_argument("--eim-figure", help="PNG: EIM error vs number of terms")
    p.add_argument("--section", required=True)
    p.set_defaults(func=figures_rb)


def _logging():
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@contextmanager
def _user_errors():
    """Bad input found by the library (a parameter out of range, a model the artefacts cannot
    give) ends in one line, like every user error."""
    from rom.models.factory import ModelError
    from rom.models.rb import ExtrapolationError

    try:
        yield
    except (ExtrapolationError, ModelError) as exc:
        raise UserError(str(exc)) from None


def _single_thread():
    # Small dense systems (N ~ 20): threaded BLAS only adds overhead (measured 3x on 2 cores).
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def training_set(study: dict, size: int, seed: int) -> np.ndarray:
    """Latin hypercube in the study's parameter box (log-uniform axes in log space)."""
    from rom.design import scale, unit_design

    names, bounds, dists = config.parameter_space(study)
    return scale(unit_design("lhs", size, len(names), seed), bounds, dists)


def _nonaffine(problem, what: str):
    if not hasattr(problem, "eim_operator_terms"):
        raise UserError(f"{what}: problem {problem.name} has no non-affine coefficient to interpolate; "
                        "expected problem.name nonaffine_diffusion")


# -- eim ----------------------------------------------------------------------------------------
def eim_command(args):
    from rom.models.eim_artefact import eim_dataset

    _logging()
    study = config.load(args.study_config)
    s = study["eim"]
    problem = config.make_problem(study)
    _nonaffine(problem, "eim")
    names, bounds, _ = config.parameter_space(study)
    ds = eim_dataset(problem, training_set(study, s["train_size"], s["seed"]),
                     training_set(study, s["test_size"], s["seed"] + 1), bounds, s["M_max"], s["tol"], s["matrix"],
                     s["bound_grid"], s["bound_order"])
    artefacts.write(ds.assign_coords(parameter=artefacts.strings(names)), args.out, study, "eim")


# -- reduced-basis --------------------------------------------------------------------------------
def reduced_basis(args):
    from rom.hifi import petsc
    from rom.hifi.distributed import RootDriven
    from rom.hifi.solve import FullOrderModel

    _logging()
    study = config.load(args.study_config)
    s, sim = study["rb"], study["simulate"]
    problem = config.make_problem(study)
    if problem.transient:
        raise UserError(f"reduced-basis: problem {problem.name} is transient; expected a stationary problem "
                        "(thermal_block, nonaffine_diffusion)")
    if s["method"] == "pod" and not args.train:
        raise UserError("reduced-basis: rb.method = pod needs --train snapshots/train.h5")
    if sim["backend"] == "petsc":
        petsc.init(args.petsc_args)
    fom = FullOrderModel(problem, sim["backend"], {**sim["petsc_options"], **s["petsc_options"]})
    with RootDriven(fom) as fom_solves, _user_errors(), _single_thread():
        if fom_solves.is_root:
            _reduce_on_root(args, study, problem, fom_solves)
    return 0


def _reduce_on_root(args, study, problem, fom_solves):
    from rom.hifi.operators import Operators
    from rom.models import factory
    from rom.reduction.greedy import GreedyHistory, weak_greedy
    from rom.reduction.pod import pod

    s = study["rb"]
    names, bounds, _ = config.parameter_space(study)
    ops = Operators.from_dataset(artefacts.read(args.operators))
    eim_ds = artefacts.read(args.eim) if args.eim else None
    if not problem.affine and eim_ds is None:
        raise UserError(f"reduced-basis: problem {problem.name} is not affine; expected --eim rom/eim.h5 (eim.enabled: true)")
    if not problem.affine and hasattr(problem, "coercivity_lower_bound"):
        low = problem.coercivity_lower_bound(bounds[:, 0][None, :])[0]
        if low <= 0:
            raise UserError(f"parameters: coercivity lower bound {low:g} <= 0 at the lower bounds; "
                            "expected mu_0 > -1 for nonaffine_diffusion")
    kinds = factory.model_kinds(problem, eim_ds)
    settings = (bounds, names, s["extrapolation"], s["estimator"], s["eim_bound"])
    reductor = factory.reductor(problem, ops, eim_ds, kinds[0], *settings)
    mu_train = training_set(study, s["train_size"], s["train_seed"])

    def fom_solve(mu):
        r = fom_solves.solve(mu)
        if not r.converged:
            raise UserError(f"reduced-basis: FOM solve at mu = {np.round(mu, 6).tolist()} failed ({r.reason}); "
                            "check simulate.petsc_options / rb.petsc_options")
        return r.u

    t0 = time.perf_counter()
    if s["method"] == "greedy":
        history = weak_greedy(mu_train, fom_solve, reductor, s["tol"], s["N_max"])
    else:
        from rom.commands.pod import converged_rows

        V, _ = pod(converged_rows(artefacts.read(args.train)), ops.X, s["tol"] ** 2, s["N_max"])
        reductor.set_basis(V)
        history = GreedyHistory(stop_reason="pod")
    offline = time.perf_counter() - t0
    models = {kinds[0]: reductor.model()}
    for kind in kinds[1:]:
        # The matrix-EIM model on the same basis: the FOM's matrices only, no assembly code.
        other = factory.reductor(problem, ops, eim_ds, kind, *settings)
        other.set_basis(reductor.V)
        models[kind] = other.model()
    ds = factory.rb_dataset(models, reductor.V, history, mu_train, bounds, names, dict(
        method=s["method"], tol=s["tol"], N_max=s["N_max"], estimator=s["estimator"], eim_bound=s["eim_bound"],
        reorthonormalizations=reductor.reorthonormalizations, offline_seconds=offline, mpi_ranks=fom_solves.size,
        eim_terms=int(eim_ds.attrs["M"]) if eim_ds is not None else 0,
        **{f"{k}_eim_bound": factory.eim_bound_label(k, s["eim_bound"]) for k in kinds if k != "affine"}))
    artefacts.write(ds, args.out, study, "rb")
    print(f"reduced-basis: N = {reductor.N} ({history.stop_reason}) in {offline:.1f} s", file=sys.stderr)


# -- evaluate-rom ---------------------------------------------------------------------------------
def _parse_mu(text: str, names) -> np.ndarray:
    try:
        mu = np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise UserError(f"--mu {text!r}: expected {len(names)} comma-separated numbers ({', '.join(names)})") from None
    if len(mu) != len(names):
        raise UserError(f"--mu {text!r}: {len(mu)} values; expected {len(names)} ({', '.join(names)})")
    return mu


def evaluate_rom(args):
    from rom.hifi.operators import Operators
    from rom.models.evaluate import evaluation_dataset
    from rom.models.factory import eim_bound_label, load_models

    study = config.load(args.study_config)
    problem = config.make_problem(study)
    ops = Operators.from_dataset(artefacts.read(args.operators))
    rb_ds = artefacts.read(args.rb)
    eim_ds = artefacts.read(args.eim) if args.eim else None
    s = study["rb"]
    with _user_errors(), _single_thread():
        models = load_models(problem, ops, rb_ds, eim_ds, s["extrapolation"])
        names = [str(v) for v in rb_ds["parameter"].values]
        if args.mu is not None:
            mu = _parse_mu(args.mu, names)
            for kind, m in models.items():
                extrapolated = bool(m.check(mu)[0])
                c, delta = m.solve_and_estimate(mu)
                unorm = float(np.linalg.norm(c))
                label = eim_bound_label(kind, rb_ds.attrs.get("eim_bound", "indicator"))
                print(f"{kind}: N = {m.N}, ||u_rb||_X = {unorm:.6g}, error bound {delta:.3e} "
                      f"(relative {delta / unorm:.3e}){'' if label == 'none' else f', EIM share: {label}'}"
                      f"{'  [extrapolated]' if extrapolated else ''}")
            return 0
        if not args.test or not args.out:
            raise UserError("evaluate-rom: expected --test and --out (or --mu for one query)")
        test = artefacts.converged(artefacts.read(args.test))
        rng = np.random.default_rng(s["train_seed"] + 1)
        lo, hi = rb_ds["bounds"].values.T
        mu_batch = lo + (hi - lo) * rng.random((s["batch_size"], len(lo)))
        labels = {k: eim_bound_label(k, rb_ds.attrs.get("eim_bound", "indicator")) for k in models if k != "affine"}
        ds = evaluation_dataset(models, rb_ds["basis"].values, ops.X, test["mu"].values, test["u"].values,
                                test["sample"].values, float(test["solve_seconds"].values.mean()), mu_batch,
                                s["n_timing"], labels)
    for kind in models:
        a = ds.attrs
        print(f"evaluate-rom {kind}: N = {a['N']}, max rel error {a[f'{kind}_max_relative_error']:.2e}, "
              f"effectivity [{a[f'{kind}_effectivity_min']:.2f}, {a[f'{kind}_effectivity_max']:.2f}], "
              f"{a[f'{kind}_seconds_per_solve'] * 1e6:.1f} us/solve, {a[f'{kind}_seconds_per_query'] * 1e6:.1f} us/query "
              f"with bound, {1 / a[f'{kind}_seconds_per_query_batched']:.3g} queries/s batched", file=sys.stderr)
    artefacts.write(ds, args.out, study, "rb_metrics")
    return 0


# -- figures ----------------------------------------------------------------------------------------
def figures_rb(args):
    from rom.models.rb_figures import eim_figures, rb_figures

    config.load(args.study_config)
    if args.rb:
        if not (args.metrics and args.convergence and args.effectivity):
            raise UserError("figures-rb --rb: expected --metrics, --convergence and --effectivity")
        rb_figures(artefacts.read(args.rb), artefacts.read(args.metrics), args.convergence, args.effectivity,
                   args.section)
        return 0
    if not (args.eim and args.eim_figure):
        raise UserError("figures-rb: expected --rb (reduced basis) or --eim with --eim-figure")
    eim_figures(artefacts.read(args.eim), args.eim_figure, args.section)
    return 0
