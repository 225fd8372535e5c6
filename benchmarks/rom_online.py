"""Certified RB online speed and estimator accuracy, side by side in one run: thermal block 2x2 on
about 2e4 dofs, weak greedy over a random training set to N = 20 and N = 32.

Per basis size: single query without and with the estimate, batched throughput, the residual norm
evaluated by orthonormalized representers (stable) and by empirical interpolation (EIM,
Casenave-Ern-Lelievre) -- accuracy against an extended-precision reference and cost offline and
online -- and, with --pymor-python PATH (an interpreter where pyMOR is importable), pyMOR's
CoerciveRBReductor with rb_greedy on the same matrices, training set and N (ratios printed).
With --rigor-mesh M, the rigor check of the bound down to the round-off floor at M^2 dofs (greedy
over the 5^4 grid, 30 references refined in extended precision): violations with the residual
data in extended precision and in double. The last line is a JSON object with every figure.

    .venv/bin/python benchmarks/rom_online.py [--mesh 141] [--train 500] [--test 20] [--batch 10000]
        [--pymor-python /path/to/venv/bin/python] [--rigor-mesh 317]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from threadpoolctl import threadpool_limits

from rom.hifi.discretization.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.models.evaluate import error_table, refined_solutions, time_batch, time_single
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.eim_estimator import eim_residual_norm, estimate, training_coefficients
from rom.reduction.estimators import ResidualRiesz, residual_coefficients
from rom.reduction.greedy import weak_greedy
from rom.reduction.linalg import EXTENDED, RefinedSolver, x_norms

PYMOR_SCRIPT = r'''
import json, sys, time
import numpy as np, scipy.sparse as sp
from pymor.algorithms.greedy import rb_greedy
from pymor.models.basic import StationaryModel
from pymor.operators.constructions import LincombOperator
from pymor.operators.numpy import NumpyMatrixOperator
from pymor.parameters.functionals import ExpressionParameterFunctional, ProjectionParameterFunctional
from pymor.reductors.coercive import CoerciveRBReductor

d = np.load(sys.argv[1], allow_pickle=False)
n, Q = int(d["n"]), int(d["Q"])
csr = lambda k: sp.csr_matrix((d[f"{k}_data"], d[f"{k}_indices"], d[f"{k}_indptr"]), shape=(n, n))
ops = [NumpyMatrixOperator(csr(f"A{q}")) for q in range(Q)]
op = LincombOperator(ops, [ProjectionParameterFunctional("mu", Q, q) for q in range(Q)])
rhs = NumpyMatrixOperator(d["f"].reshape(-1, 1))
X = NumpyMatrixOperator(csr("X"))
fom = StationaryModel(op, rhs, products={"h1": X})
reductor = CoerciveRBReductor(fom, product=X, coercivity_estimator=ExpressionParameterFunctional("min(mu)", fom.parameters))
train = [fom.parameters.parse(m) for m in d["train"]]
t0 = time.perf_counter()
result = rb_greedy(fom, reductor, train, max_extensions=int(d["N"]))
offline = time.perf_counter() - t0
rom = result["rom"]
test = [fom.parameters.parse(m) for m in d["test"]]
V = reductor.bases["RB"].to_numpy()
V = V.T if V.shape[0] == n else V  # rows: basis vectors, whichever array convention pyMOR uses
c = np.array([rom.solve(m).to_numpy().ravel() for m in test])
est = np.array([float(rom.estimate_error(m)[0]) for m in test])
reps = int(d["single"])
qs = [test[i % len(test)] for i in range(reps)]
rom.solve(qs[0]); rom.estimate_error(qs[0])
t0 = time.perf_counter()
for m in qs:
    rom.solve(m)
solve = (time.perf_counter() - t0) / reps
t0 = time.perf_counter()
for m in qs:
    rom.solve(m); rom.estimate_error(m)
both = (time.perf_counter() - t0) / reps
np.savez(sys.argv[2], V=V, c=c, est=est)
print(json.dumps({"N": int(rom.solution_space.dim), "offline_s": offline, "solve_s": solve, "solve_estimate_s": both}))
'''


def thermal_block(mesh):
    p = ThermalBlock(mesh)
    ops = Operators.from_dataset(operators_dataset(p))
    return p, ops, AffineCoefficients(p, np.ones(p.n_terms))


def fom_solve(ops):
    return lambda mu: spla.spsolve(ops.assemble(mu).tocsc(), ops.f_terms[0])


def exact_estimates(ops, V, c, mu, alpha):
    """Delta of the reduced solutions c from the residual formed and Riesz-solved in long double."""
    A_ext = [A.astype(EXTENDED) for A in ops.A_terms]
    u = np.einsum("ij,jk->ik", c.astype(EXTENDED), V[: c.shape[1]].astype(EXTENDED))
    r = np.array([ops.f_terms[0] - sum(EXTENDED(t) * (A @ ui) for t, A in zip(m, A_ext)) for m, ui in zip(mu, u)])
    solver = RefinedSolver(ops.X)
    return (x_norms(solver.solve(r), solver.A_ext) / alpha).astype(float)


def online(a, p, ops, coef, train, test, U):
    rng = np.random.default_rng(1)
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, coef, p.default_bounds, p.parameter_names)
    fom = fom_solve(ops)
    fom(test[0])
    t0 = time.perf_counter()
    for m in test[:5]:
        fom(m)
    fom_s = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    h = weak_greedy(train, fom, red, 0.0, max(a.sizes))
    offline = time.perf_counter() - t0
    fom_offline = float(np.sum(h.fom_seconds))
    # The residual data of the final basis again, alone: in extended precision (what the greedy built
    # step by step, the cost of the certificate down to the floor) and in double (what it replaces).
    data_seconds = {}
    for precision in ("extended", "double"):
        t0 = time.perf_counter()
        riesz = ResidualRiesz(ops.X, ops.A_terms, ops.f_terms, precision)
        for v in red.V:
            riesz.extend(v)
        data_seconds[precision] = time.perf_counter() - t0
    stable_offline = data_seconds["extended"]
    model = red.model()
    rows = []
    for N in a.sizes:
        m = model.truncated(N)
        K = 1 + N * p.n_terms
        t = error_table(m, red.V, ops.X, test, U, [N], methods=("certified", "stable", "textbook"))
        c = m.solve_batch(test)
        alpha = test.min(axis=1)
        exact = exact_estimates(ops, red.V, c, test, alpha)
        if a.eim:
            t0 = time.perf_counter()
            nrm = eim_residual_norm(ops.X, ops.A_terms, ops.f_terms, red.V[:N], *training_coefficients(m, train[: 3 * K]))
            eim_offline = time.perf_counter() - t0
            short = eim_residual_norm(ops.X, ops.A_terms, ops.f_terms, red.V[:N],
                                      *training_coefficients(m, train[: 3 * K]), tol=a.eim_tol)
            est_eim, est_short = estimate(m, nrm, test, c), estimate(m, short, test, c)
        else:
            eim_offline, est_eim, est_short = float("nan"), np.full(len(test), np.nan), np.full(len(test), np.nan)
        err = t["error"][0]
        mu_b = 0.1 + 0.9 * rng.random((a.batch, p.n_terms))
        queries = test[np.arange(a.single) % len(test)]
        with threadpool_limits(1, user_api="blas"):  # the caller's choice: small dense systems
            single_solve = time_single(m, test, a.single, estimate=False)
            single = time_single(m, test, a.single)  # the certified bound (with its rounding allowance)
            single_uncertified = time_single(m, test, a.single, method="stable")

            def per_call(norm):
                t0 = time.perf_counter()
                for q in queries:
                    c1 = m.solve(q)
                    norm.dual_norm(residual_coefficients(np.ones((1, 1)), q[None], c1[None]))
                return (time.perf_counter() - t0) / len(queries)

            single_eim, single_short = (per_call(nrm), per_call(short)) if a.eim else (float("nan"),) * 2
            batch_solve = time_batch(m, mu_b, estimate=False, repeat=2)
            batch = time_batch(m, mu_b, repeat=2)
            batch_uncertified = time_batch(m, mu_b, repeat=2, method="stable")
        dev = lambda e: float(np.nanmax(np.abs(e / exact - 1)))  # noqa: E731
        rows.append({
            "N": N, "K": K, "dofs": p.mesh.n_dofs, "offline_s": offline, "stable_offline_s": stable_offline,
            "offline_fom_s": fom_offline, "offline_non_fom_s": offline - fom_offline,
            "extended_data_s": data_seconds["extended"], "double_data_s": data_seconds["double"],
            "us_solve_estimate_uncertified": single_uncertified * 1e6,
            "us_rounding_allowance": (single - single_uncertified) * 1e6,
            "us_batched_solve_estimate": batch * 1e6, "us_batched_solve_estimate_uncertified": batch_uncertified * 1e6,
            "eim_offline_s": eim_offline, "eim_d": nrm.d if a.eim else 0, "eim_short_d": short.d if a.eim else 0,
            "fom_ms": fom_s * 1e3,
            "us_solve": single_solve * 1e6, "us_solve_estimate": single * 1e6, "us_solve_estimate_eim": single_eim * 1e6,
            "us_solve_estimate_eim_short": single_short * 1e6,
            "batched_solve_per_s": 1 / batch_solve, "batched_solve_estimate_per_s": 1 / batch,
            "speedup": fom_s / single, "max_rel_error": float(t["relative_error"].max()),
            "eff_min": float((t["estimate_certified"][0] / err).min()),
            "eff_max": float((t["estimate_certified"][0] / err).max()),
            "eff_min_eim": float((est_eim / err).min()),
            "dev_stable": dev(t["estimate_stable"][0]), "dev_eim": dev(est_eim), "dev_eim_short": dev(est_short),
            "dev_textbook": dev(t["estimate_textbook"][0]),
        })
    return red, rows


def pymor(a, p, ops, train, test, U, ours_offline, ours_single, ours_solve, ours_batched):
    N = max(a.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        data = {"n": p.mesh.n_dofs, "Q": p.n_terms, "f": ops.f_terms[0], "train": train, "test": test, "N": N,
                "single": a.single}
        for name, M in [("X", ops.X)] + [(f"A{q}", A) for q, A in enumerate(ops.A_terms)]:
            M = sp.csr_matrix(M)
            data.update({f"{name}_data": M.data, f"{name}_indices": M.indices, f"{name}_indptr": M.indptr})
        np.savez(Path(tmp) / "in.npz", **data)
        proc = subprocess.run([a.pymor_python, "-c", PYMOR_SCRIPT, str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.npz")],
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            print(f"pyMOR run failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return None
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        res = np.load(Path(tmp) / "out.npz")
        E = U - np.einsum("ij,jk->ik", res["c"].astype(EXTENDED), res["V"].astype(EXTENDED))
        err = x_norms(E, ops.X.astype(EXTENDED)).astype(float)
        out.update(eff_min=float((res["est"] / err).min()), eff_max=float((res["est"] / err).max()),
                   max_rel_error=float((err / x_norms(U, ops.X.astype(EXTENDED)).astype(float)).max()),
                   offline_ratio=out["offline_s"] / ours_offline, solve_ratio=out["solve_s"] / ours_solve,
                   solve_estimate_ratio=out["solve_estimate_s"] / ours_single,
                   batched_ratio=out["solve_estimate_s"] / ours_batched)
        return out


def rigor(mesh):
    """Violations of Delta >= true error at every N of a greedy down to the floor (5^4 grid)."""
    p, ops, coef = thermal_block(mesh)
    Q = p.n_terms
    g = np.linspace(0.1, 1.0, 5)
    train = np.array(np.meshgrid(g, g, g, g, indexing="ij")).reshape(Q, -1).T
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, coef, p.default_bounds, p.parameter_names)
    t0 = time.perf_counter()
    h = weak_greedy(train, fom_solve(ops), red, 1e-16, 45)
    greedy_s = time.perf_counter() - t0
    test = 0.1 + 0.9 * np.random.default_rng(11).random((30, Q))
    t0 = time.perf_counter()
    U = refined_solutions(ops.A_terms, ops.f_terms, test, np.ones((len(test), 1)))
    ref_s = time.perf_counter() - t0
    m = red.model()
    double = red.model_in_precision("double")
    t_ext = error_table(m, red.V, ops.X, test, U, methods=("stable",))
    t_dbl = error_table(double, red.V, ops.X, test, U, methods=("stable",))
    rows = []
    for i, N in enumerate(t_ext["sizes"]):
        e = t_ext["error"][i]
        rows.append({"N": int(N), "max_rel_error": float(t_ext["relative_error"][i].max()),
                     "min_rel_error": float(t_ext["relative_error"][i].min()),
                     "eff_min_extended": float((t_ext["estimate_stable"][i] / e).min()),
                     "violations_extended": int(np.sum(t_ext["estimate_stable"][i] < e)),
                     "eff_min_double": float((t_dbl["estimate_stable"][i] / e).min()),
                     "violations_double": int(np.sum(t_dbl["estimate_stable"][i] < e))})
    return {"dofs": p.mesh.n_dofs, "stop": h.stop_reason, "greedy_s": greedy_s, "references_s": ref_s, "rows": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", type=int, default=141)
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--single", type=int, default=2000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[20, 32])
    ap.add_argument("--eim-tol", type=float, default=1e-3, help="relative EIM tolerance of the short EIM evaluation")
    ap.add_argument("--pymor-python", help="interpreter with pyMOR importable (pyMOR's CoerciveRBReductor side by side)")
    ap.add_argument("--rigor-mesh", type=int, help="also check rigor down to the floor on a mesh of this size")
    ap.add_argument("--no-eim", dest="eim", action="store_false",
                    help="skip the EIM residual evaluation (its offline stage dominates the run time)")
    a = ap.parse_args()
    p, ops, coef = thermal_block(a.mesh)
    rng = np.random.default_rng(0)
    train = 0.1 + 0.9 * rng.random((a.train, p.n_terms))
    test = 0.1 + 0.9 * rng.random((a.test, p.n_terms))
    U = refined_solutions(ops.A_terms, ops.f_terms, test, np.ones((len(test), 1)))
    red, rows = online(a, p, ops, coef, train, test, U)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print(f"thermal block 2x2, {p.mesh.n_dofs} dofs, greedy over {a.train} random parameters (offline "
          f"{rows[0]['offline_s']:.1f} s, FOM {rows[0]['fom_ms']:.1f} ms per solve)")
    head = ("N", "us solve", "us solve+est", "us +est EIM (d)", "us +est EIM short (d)", "solves/s batched",
            "+est/s batched", "speed-up", "max rel err", "eff min..max", "dev stable", "dev EIM", "dev EIM short",
            "dev textbook", "offline s: stable / EIM")
    print(" | ".join(head))
    for r in rows:
        print(f"{r['N']} | {r['us_solve']:.1f} | {r['us_solve_estimate']:.1f} | {r['us_solve_estimate_eim']:.1f} "
              f"({r['eim_d']}/{r['K']}) | {r['us_solve_estimate_eim_short']:.1f} ({r['eim_short_d']}) | "
              f"{r['batched_solve_per_s']:.3g} | {r['batched_solve_estimate_per_s']:.3g} | {r['speedup']:.0f} | "
              f"{r['max_rel_error']:.1e} | {r['eff_min']:.2f}..{r['eff_max']:.2f} | {r['dev_stable']:.1e} | "
              f"{r['dev_eim']:.1e} | {r['dev_eim_short']:.1e} | {r['dev_textbook']:.1e} | "
              f"{r['stable_offline_s']:.1f} / {r['eim_offline_s']:.1f}")
    out = {"machine": platform.machine(), "dofs": p.mesh.n_dofs, "rows": rows}
    if a.pymor_python:
        r0 = rows[-1]
        pm = pymor(a, p, ops, train, test, U, r0["offline_s"], r0["us_solve_estimate"] * 1e-6, r0["us_solve"] * 1e-6,
                   r0["us_batched_solve_estimate"] * 1e-6)
        if pm is not None:
            out["pymor"] = pm
            print(f"pyMOR CoerciveRBReductor + rb_greedy, N = {pm['N']}: max rel err {pm['max_rel_error']:.1e}, "
                  f"effectivity {pm['eff_min']:.2f}..{pm['eff_max']:.2f}")
            ratios = [
                ("offline (greedy, FOM solves included)", pm["offline_s"], r0["offline_s"], "s"),
                ("per solve", pm["solve_s"] * 1e6, r0["us_solve"], "us"),
                ("per certified query (solve + bound)", pm["solve_estimate_s"] * 1e6, r0["us_solve_estimate"], "us"),
                ("certified queries batched (romflow) vs one by one (pyMOR has no batch)",
                 pm["solve_estimate_s"] * 1e6, r0["us_batched_solve_estimate"], "us"),
            ]
            print("pyMOR vs romflow | pyMOR | romflow | ratio")
            for name, theirs, ours, unit in ratios:
                print(f"  {name} | {theirs:.4g} {unit} | {ours:.4g} {unit} | x{theirs / ours:.2f}")
            print(f"  romflow offline: FOM {r0['offline_fom_s']:.1f} s, the rest {r0['offline_non_fom_s']:.1f} s, of which "
                  f"the extended-precision residual data {r0['extended_data_s']:.1f} s (in double: "
                  f"{r0['double_data_s']:.1f} s; x{r0['extended_data_s'] / r0['offline_non_fom_s']:.2f} of the non-FOM "
                  f"offline time); pyMOR offline / romflow offline without the extended data (double instead): "
                  f"x{pm['offline_s'] / (r0['offline_s'] - r0['extended_data_s'] + r0['double_data_s']):.2f}")
    if a.rigor_mesh:
        rg = rigor(a.rigor_mesh)
        out["rigor"] = rg
        print(f"rigor at {rg['dofs']} dofs (greedy {rg['greedy_s']:.0f} s, stop: {rg['stop']}, 30 refined references "
              f"{rg['references_s']:.0f} s): N | max rel err | eff min (extended) | violations | eff min (double) | violations")
        for r in rg["rows"]:
            print(f"  {r['N']} | {r['max_rel_error']:.1e} | {r['eff_min_extended']:.3f} | {r['violations_extended']} | "
                  f"{r['eff_min_double']:.3f} | {r['violations_double']}")
    r = rows[-1]
    print(f"N = {r['N']}: the rounding allowance of the certified bound costs {r['us_rounding_allowance']:.1f} us per "
          f"single query ({r['us_solve_estimate_uncertified']:.1f} -> {r['us_solve_estimate']:.1f} us) and "
          f"{r['us_batched_solve_estimate'] - r['us_batched_solve_estimate_uncertified']:.2f} us per batched query "
          f"({r['us_batched_solve_estimate_uncertified']:.2f} -> {r['us_batched_solve_estimate']:.2f} us)")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
