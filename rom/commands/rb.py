"""eim, reduced-basis (weak greedy under MPI, or POD), evaluate-rom and figures-rb.

reduced-basis may run under `mpiexec -n <simulate.mpi_ranks>`: every rank takes part in each FOM
solve, rank 0 alone does the reduction and the greedy's decisions and tells the others which
parameter to solve next.
"""
from __future__ import annotations

import logging
import sys
import time

import numpy as np
import xarray as xr

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
    from rom.hifi import fem
    from rom.reduction.eim import eim

    _logging()
    study = config.load(args.study_config)
    s = study["eim"]
    problem = config.make_problem(study)
    _nonaffine(problem, "eim")
    mu_train = training_set(study, s["train_size"], s["seed"])
    mu_test = training_set(study, s["test_size"], s["seed"] + 1)
    xy = problem.mesh.centroids
    t0 = time.perf_counter()
    G = problem.g(xy, mu_train)
    E = eim(G, s["M_max"], s["tol"])
    seconds = time.perf_counter() - t0
    data = {
        "basis": (("term", "triangle"), E.basis, {"long_name": "collateral basis q_m of g at element centroids"}),
        "points": ("term", E.points, {"long_name": "magic points (triangle index)"}),
        "xy": (("term", "xy"), xy[E.points]),
        "mu_selected": (("term", "parameter"), mu_train[E.selected]),
        "train_max_error": ("n_terms", E.max_errors, {"long_name": "max training interpolation error (max norm)"}),
        "test_max_error": ("n_terms", _eim_test_errors(E, problem.g(xy, mu_test))),
        "mu_train": (("train_sample", "parameter"), mu_train),
    }
    attrs = {"M": E.M, "next_point": E.next_point, "tol": s["tol"], "seconds": seconds, "matrix": int(s["matrix"])}
    log.info("function EIM: %d terms, max training error %.2e", E.M, E.max_errors[E.M])
    if s["matrix"]:
        pattern = fem.Pattern.build(problem.mesh)
        t0 = time.perf_counter()
        # The FOM as a black box: whole matrices at the training parameters, nothing else.
        A = np.stack([problem.operator_values(mu, pattern) for mu in mu_train])
        Em = eim(A, s["M_max"], s["tol"])
        A_test = np.stack([problem.operator_values(mu, pattern) for mu in mu_test])
        rows = np.repeat(np.arange(pattern.n_rows), np.diff(pattern.indptr))
        data.update({
            "matrix_snapshots": (("mterm", "nnz"), A[Em.selected],
                                 {"long_name": "FOM matrices A(mu_l) at the selected parameters (CSR values)"}),
            "matrix_coeffs": (("mterm", "mterm_"), Em.snapshot_coeffs, {"long_name": "q_m = sum_l C[m, l] A(mu_l)"}),
            "matrix_basis": (("mterm", "nnz"), Em.basis),
            "matrix_slots": ("mterm", Em.points, {"long_name": "magic entries (CSR positions)"}),
            "matrix_rows": ("mterm", rows[Em.points]),
            "matrix_cols": ("mterm", pattern.indices[Em.points]),
            "matrix_mu_selected": (("mterm", "parameter"), mu_train[Em.selected]),
            "matrix_train_max_error": ("n_mterms", Em.max_errors),
            "matrix_test_max_error": ("n_mterms", _eim_test_errors(Em, A_test)),
        })
        attrs.update(matrix_M=Em.M, matrix_next_slot=Em.next_point, matrix_seconds=time.perf_counter() - t0)
        log.info("matrix EIM: %d terms, max training error %.2e", Em.M, Em.max_errors[Em.M])
    names = config.parameter_space(study)[0]
    ds = xr.Dataset(data, coords={"parameter": artefacts.strings(names)}, attrs=attrs)
    artefacts.write(ds, args.out, study, "eim")


def _eim_test_errors(E, G_test) -> np.ndarray:
    """Max-norm interpolation error over test functions with 0..M terms (a loop over M only)."""
    out = [np.abs(G_test).max()]
    for m in range(1, E.M + 1):
        Em = E.truncated(m)
        out.append(np.abs(G_test - Em.interpolate(G_test[:, Em.points])).max())
    return np.array(out)


def _eim_from_dataset(ds, prefix=""):
    from rom.reduction.eim import EIMBasis

    if prefix:
        basis, points = ds["matrix_basis"].values, ds["matrix_slots"].values
        nxt, C = int(ds.attrs["matrix_next_slot"]), ds["matrix_coeffs"].values
    else:
        basis, points, nxt, C = ds["basis"].values, ds["points"].values, int(ds.attrs["next_point"]), None
    M = len(points)
    return EIMBasis(basis, points, np.arange(M), C if C is not None else np.eye(M), np.zeros(M + 1), nxt,
                    basis[:, nxt] if nxt >= 0 else None)


# -- models from artefacts -----------------------------------------------------------------------
def _coefficients(study, problem, ops, eim_ds, kind: str):
    """(coefficients, A_terms, f_terms) of the model family `kind`: affine, function_eim, matrix_eim."""
    import scipy.sparse as sp

    from rom.hifi import fem
    from rom.models.eim_rb import FunctionEIMCoefficients, MatrixEIMCoefficients
    from rom.models.rb import AffineCoefficients

    if kind == "affine":
        if not ops.A_terms:
            raise UserError(f"problem {problem.name} is not affine: enable the eim section (eim.enabled: true)")
        scale = np.abs(ops.X.data).max()
        if hasattr(problem, "coercivity_lower_bound"):
            return AffineCoefficients(problem), ops.A_terms, ops.f_terms
        if abs(ops.X - sum(ops.A_terms)).max() > 1e-12 * scale:
            raise UserError(f"problem {problem.name}: no coercivity lower bound; min-theta needs X = sum_q A_q "
                            "(thermal_block); other problems need coercivity_lower_bound(mu) or an SCM")
        return AffineCoefficients(problem, np.ones(len(ops.A_terms))), ops.A_terms, ops.f_terms
    pattern = fem.Pattern.build(problem.mesh)
    f_terms = problem.rhs_terms(pattern)

    def csr(values):
        return sp.csr_matrix((values, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2)

    if kind == "function_eim":
        E = _eim_from_dataset(eim_ds)
        xy = problem.mesh.centroids[np.append(E.points, [E.next_point] if E.next_point >= 0 else [])]
        coef = FunctionEIMCoefficients(problem, xy, E.B, E.next_row if E.next_row is not None else np.zeros(E.M))
        return coef, [csr(v) for v in problem.eim_operator_terms(pattern, E.basis)], f_terms
    E = _eim_from_dataset(eim_ds, "matrix_")
    slots = np.append(E.points, [E.next_point] if E.next_point >= 0 else []).astype(np.int64)
    x_values = ops.X.data if np.array_equal(ops.X.indices, pattern.indices) else csr(problem.energy_product(pattern)).data
    coef = MatrixEIMCoefficients(problem, problem.entry_probe(pattern, slots), E.B,
                                 E.next_row if E.next_row is not None else np.zeros(E.M),
                                 float(x_values[slots[-1]]))
    # Operator terms q_m = sum_l C[m, l] A(mu_l): linear algebra on the delivered matrices only.
    Q = eim_ds["matrix_coeffs"].values @ eim_ds["matrix_snapshots"].values
    return coef, [csr(v) for v in Q], f_terms


def _kinds(study, problem, eim_ds) -> list[str]:
    if problem.affine:
        return ["affine"]
    return ["function_eim"] + (["matrix_eim"] if eim_ds is not None and "matrix_basis" in eim_ds else [])


def load_models(study, problem, ops, rb_ds, eim_ds=None) -> dict:
    """The reduced models of an rb artefact by kind (affine, function_eim, matrix_eim)."""
    from rom.models.rb import ReducedBasisModel

    names, bounds, _ = config.parameter_space(study)
    out = {}
    for kind in rb_ds.attrs["kinds"].split(","):
        if kind != "affine" and eim_ds is None:
            raise UserError(f"rb artefact of kind {kind} needs --eim (rom/eim.h5)")
        coef = _coefficients(study, problem, ops, eim_ds, kind)[0]
        out[kind] = ReducedBasisModel.from_dataset(rb_ds, coef, rb_ds["bounds"].values, names,
                                                   study["rb"]["extrapolation"], prefix=f"{kind}_")
    return out


# -- reduced-basis --------------------------------------------------------------------------------
def reduced_basis(args):
    from rom.hifi import petsc
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
    comm = fom.comm.tompi4py() if fom.comm is not None else None
    if fom.rank != 0:
        # Workers: take part in the solves rank 0 asks for until it sends None.
        while (mu := comm.bcast(None, root=0)) is not None:
            fom.solve(mu)
        return 0
    try:
        return _reduce_on_root(args, study, problem, fom, comm)
    finally:
        if comm is not None:
            comm.bcast(None, root=0)


def _reduce_on_root(args, study, problem, fom, comm):
    from rom.hifi.operators import Operators
    from rom.models.rb import CoerciveRBReductor
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
    kinds = _kinds(study, problem, eim_ds)
    coef, A_terms, f_terms = _coefficients(study, problem, ops, eim_ds, kinds[0])
    reductor = CoerciveRBReductor(ops.X, A_terms, f_terms, coef, bounds, names, s["extrapolation"], s["estimator"])
    mu_train = training_set(study, s["train_size"], s["train_seed"])
    failed = []

    def fom_solve(mu):
        if comm is not None:
            comm.bcast(mu, root=0)
        r = fom.solve(mu)
        if not r.converged:
            failed.append(r.reason)
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
        c2, A2, f2 = _coefficients(study, problem, ops, eim_ds, kind)
        r2 = CoerciveRBReductor(ops.X, A2, f2, c2, bounds, names, s["extrapolation"], s["estimator"])
        r2.set_basis(reductor.V)
        models[kind] = r2.model()
    steps = len(history.max_estimate)
    data = {
        "basis": (("mode", "dof"), reductor.V, {"long_name": "X-orthonormal reduced basis (rows)"}),
        "bounds": (("parameter", "bound"), bounds),
        "mu_train": (("train_sample", "parameter"), mu_train),
        "greedy_selected": ("greedy_step", np.array(history.selected[:steps], dtype=np.int64)),
        "greedy_mu": (("greedy_step", "parameter"), mu_train[history.selected[:steps]].reshape(steps, -1)),
        "greedy_max_estimate": ("greedy_step", np.array(history.max_estimate),
                                {"long_name": "max relative estimate over the training set after the step"}),
        "greedy_fom_seconds": ("greedy_step", np.array(history.fom_seconds[:steps])),
    }
    ds = xr.Dataset(data, coords={"parameter": artefacts.strings(names), "bound": artefacts.strings(["lower", "upper"])})
    for kind, m in models.items():
        ds = ds.merge(m.to_dataset(prefix=f"{kind}_"))
    ds.attrs.update(kinds=",".join(kinds), N=reductor.N, method=s["method"], tol=s["tol"], N_max=s["N_max"],
                    estimator=s["estimator"], stop_reason=history.stop_reason, warning=history.warning,
                    reorthonormalizations=reductor.reorthonormalizations, offline_seconds=offline,
                    mpi_ranks=comm.size if comm is not None else 1,
                    eim_terms=int(eim_ds.attrs["M"]) if eim_ds is not None else 0)
    artefacts.write(ds, args.out, study, "rb")
    print(f"reduced-basis: N = {reductor.N} ({history.stop_reason}) in {offline:.1f} s", file=sys.stderr)
    return 0


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

    study = config.load(args.study_config)
    problem = config.make_problem(study)
    ops = Operators.from_dataset(artefacts.read(args.operators))
    rb_ds = artefacts.read(args.rb)
    eim_ds = artefacts.read(args.eim) if args.eim else None
    models = load_models(study, problem, ops, rb_ds, eim_ds)
    names = list(rb_ds["parameter"].values)
    if args.mu is not None:
        mu = _parse_mu(args.mu, names)
        for kind, m in models.items():
            extrapolated = bool(m.check(mu)[0])
            c, delta = m.query(mu)
            unorm = float(np.linalg.norm(c))
            print(f"{kind}: N = {m.N}, ||u_rb||_X = {unorm:.6g}, error bound {delta:.3e} "
                  f"(relative {delta / unorm:.3e}){'  [extrapolated]' if extrapolated else ''}")
        return 0
    if not args.test or not args.out:
        raise UserError("evaluate-rom: expected --test and --out (or --mu for one query)")
    test = artefacts.converged(artefacts.read(args.test))
    mu, U = test["mu"].values, test["u"].values
    V = rb_ds["basis"].values
    X = ops.X
    norms = np.sqrt(np.einsum("ij,ij->i", U, (X @ U.T).T))
    fom_seconds = float(test["solve_seconds"].values.mean())
    s = study["rb"]
    rng = np.random.default_rng(s["train_seed"] + 1)
    lo, hi = rb_ds["bounds"].values.T
    mu_batch = lo + (hi - lo) * rng.random((s["batch_size"], len(lo)))
    data, attrs = {}, {"fom_seconds_per_solve": fom_seconds, "n_test": int(test.sizes["sample"]), "N": int(V.shape[0]),
                       "kinds": rb_ds.attrs["kinds"]}
    sizes = np.arange(1, V.shape[0] + 1)
    for kind, model in models.items():
        err = np.empty((len(sizes), len(mu)))
        est = np.empty_like(err)
        est_tb = np.empty_like(err)
        for row, N in enumerate(sizes):  # a handful of basis sizes, each vectorized over the test set
            mN = model.truncated(N)
            c = mN.solve_batch(mu)
            E = U - c @ V[:N]  # the error formed explicitly, not from an expansion
            err[row] = np.sqrt(np.clip(np.einsum("ij,ij->i", E, (X @ E.T).T), 0, None))
            est[row] = mN.estimate_batch(mu, c, "stable")
            est_tb[row] = mN.estimate_batch(mu, c, "textbook")
        single = _time_single(model, mu, s["n_timing"])
        t0 = time.perf_counter()
        model.query_batch(mu_batch)
        batched = (time.perf_counter() - t0) / len(mu_batch)
        eff = est[-1] / err[-1]
        eff_tb = est_tb[-1] / err[-1]
        data.update({
            f"{kind}_error": (("basis_size", "test_sample"), err, {"long_name": "||u - u_rb||_X (true)"}),
            f"{kind}_estimate": (("basis_size", "test_sample"), est, {"long_name": "Delta(mu), stable residual norm"}),
            f"{kind}_estimate_textbook": (("basis_size", "test_sample"), est_tb,
                                          {"long_name": "Delta(mu), textbook quadratic form (NaN: negative square)"}),
        })
        attrs.update({
            f"{kind}_max_error": float(err[-1].max()), f"{kind}_mean_error": float(err[-1].mean()),
            f"{kind}_max_relative_error": float((err[-1] / norms).max()),
            f"{kind}_max_estimate": float(est[-1].max()),
            f"{kind}_effectivity_min": float(eff.min()), f"{kind}_effectivity_max": float(eff.max()),
            f"{kind}_textbook_effectivity_min": float(np.nanmin(eff_tb)) if np.isfinite(eff_tb).any() else float("nan"),
            f"{kind}_textbook_nan": int(np.isnan(est_tb).sum()),
            f"{kind}_seconds_per_query": single, f"{kind}_seconds_per_query_batched": batched,
            f"{kind}_speedup": fom_seconds / single, f"{kind}_speedup_batched": fom_seconds / batched,
        })
        print(f"evaluate-rom {kind}: N = {model.N}, max rel error {attrs[f'{kind}_max_relative_error']:.2e}, "
              f"effectivity [{eff.min():.2f}, {eff.max():.2f}], {single * 1e6:.1f} us/query, "
              f"{1 / batched:.3g} queries/s batched, speed-up {fom_seconds / single:.0f}", file=sys.stderr)
    ds = xr.Dataset(data, coords={"basis_size": sizes, "test_sample": test["sample"].values}, attrs=attrs)
    ds["norm"] = ("test_sample", norms)
    artefacts.write(ds, args.out, study, "rb_metrics")
    return 0


def _time_single(model, mu, n: int) -> float:
    """Seconds per single certified query (solve and estimate), cycling through the test parameters."""
    queries = mu[np.arange(n) % len(mu)]
    model.query(queries[0])  # warm up
    t0 = time.perf_counter()
    for q in queries:  # one query after the other, as an online user would
        model.query(q)
    return (time.perf_counter() - t0) / n


# -- figures ----------------------------------------------------------------------------------------
_LABEL = {"affine": "RB", "function_eim": "RB + function EIM", "matrix_eim": "RB + matrix EIM (nonintrusive)"}


def figures_rb(args):
    from rom import plots
    from rom.report import write_section

    study = config.load(args.study_config)
    if args.rb:
        if not (args.metrics and args.convergence and args.effectivity):
            raise UserError("figures-rb --rb: expected --metrics, --convergence and --effectivity")
        return _figures_rb(args, study, plots, write_section)
    if not (args.eim and args.eim_figure):
        raise UserError("figures-rb: expected --rb (reduced basis) or --eim with --eim-figure")
    ds = artefacts.read(args.eim)
    curves = {"function EIM, train": (np.arange(len(ds["train_max_error"])), ds["train_max_error"].values),
              "function EIM, test": (np.arange(len(ds["test_max_error"])), ds["test_max_error"].values)}
    metrics = {"function EIM terms": int(ds.attrs["M"]),
               "function EIM max test error (max norm)": float(ds["test_max_error"].values[-1])}
    if "matrix_basis" in ds:
        scale = ds["matrix_test_max_error"].values[0]
        curves["matrix EIM, test (relative)"] = (np.arange(len(ds["matrix_test_max_error"])),
                                                 ds["matrix_test_max_error"].values / scale)
        metrics.update({"matrix EIM terms": int(ds.attrs["matrix_M"]),
                        "matrix EIM max test error (relative to max entry)": float(ds["matrix_test_max_error"].values[-1] / scale)})
    plots.semilogy(args.eim_figure, curves, "number of EIM terms M", "max interpolation error",
                   "EIM error vs number of terms")
    write_section(args.section, "Empirical interpolation", 31,
                  "Function EIM of g(x; mu) at element centroids, and the nonintrusive matrix EIM of A(mu) "
                  "from matrices delivered by the FOM and a few of its entries online.",
                  metrics, [(args.eim_figure, "Max interpolation error over training and test parameters vs number of terms")])
    return 0


def _figures_rb(args, study, plots, write_section):
    import matplotlib.pyplot as plt

    rb = artefacts.read(args.rb)
    m = artefacts.read(args.metrics)
    kinds = m.attrs["kinds"].split(",")
    N = m["basis_size"].values
    curves = {}
    for kind in kinds:
        curves[f"{_LABEL[kind]}: max true error"] = (N, m[f"{kind}_error"].values.max(axis=1))
        curves[f"{_LABEL[kind]}: max estimate (stable)"] = (N, m[f"{kind}_estimate"].values.max(axis=1))
    k0 = kinds[0]
    curves[f"{_LABEL[k0]}: max estimate (textbook)"] = (N, np.nanmax(np.where(np.isnan(m[f"{k0}_estimate_textbook"].values),
                                                                           np.inf, m[f"{k0}_estimate_textbook"].values), axis=1))
    plots.semilogy(args.convergence, curves, "basis size N", "X-norm error / bound (test set)",
                   "Reduced basis: true error and error bounds")
    fig, (ax,) = plots.figure(size=(6.0, 4.2))
    err = m[f"{k0}_error"].values.ravel()
    for name, est, marker in (("stable", m[f"{k0}_estimate"].values.ravel(), "o"),
                              ("textbook", m[f"{k0}_estimate_textbook"].values.ravel(), "x")):
        eff = est / err
        ax.loglog(err, np.where(np.isfinite(eff), eff, np.nan), marker, ms=3, ls="", label=f"{name} evaluation")
        bad = ~np.isfinite(eff)
        if bad.any():
            ax.loglog(err[bad], np.full(bad.sum(), 0.1), "v", ms=4, ls="", color="red",
                      label=f"textbook: negative square (NaN), {bad.sum()} cases")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("true error ||u - u_rb||_X")
    ax.set_ylabel("effectivity Delta / true error")
    ax.set_title("Effectivity: 1 is the rigorous limit", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    plots.save(fig, args.effectivity)
    plt.close("all")
    a = m.attrs
    metrics = {"basis size N": int(rb.attrs["N"]), "method": rb.attrs["method"], "stop reason": rb.attrs["stop_reason"],
               "offline seconds": float(rb.attrs["offline_seconds"]), "FOM seconds per solve": a["fom_seconds_per_solve"]}
    if rb.attrs.get("warning"):
        metrics["warning"] = rb.attrs["warning"]
    rows = []
    for kind in kinds:
        rows.append([_LABEL[kind], a[f"{kind}_max_error"], a[f"{kind}_mean_error"], a[f"{kind}_max_relative_error"],
                     a[f"{kind}_max_estimate"], a[f"{kind}_effectivity_min"], a[f"{kind}_effectivity_max"],
                     a[f"{kind}_seconds_per_query"] * 1e6, 1.0 / a[f"{kind}_seconds_per_query_batched"],
                     a[f"{kind}_speedup"]])
    table = {"columns": ["model", "max error", "mean error", "max rel. error", "max estimate", "effectivity min",
                         "effectivity max", "us per query", "queries/s batched", "speed-up"], "rows": rows}
    text = (f"Certified reduced basis ({rb.attrs['method']}, estimator {rb.attrs['estimator']}) evaluated on "
            f"{a['n_test']} test snapshots. Errors in the H1-seminorm X; estimates Delta = ||r||_X' / alpha_LB "
            "(min-theta or the problem's bound); the stable evaluation uses orthonormalized Riesz representers, "
            f"the textbook one the quadratic form (negative squares at N = {int(rb.attrs['N'])}: {a[f'{k0}_textbook_nan']}).")
    if "function_eim" in kinds:
        text += " True errors include the EIM interpolation error; the EIM part of the estimate is an indicator."
    write_section(args.section, "Certified reduced basis", 30, text, metrics,
                  [(args.convergence, "Max true error and max error bounds over the test set vs basis size"),
                   (args.effectivity, "Effectivity vs true error, all basis sizes and test parameters")],
                  {"Online evaluation": table})
    return 0
