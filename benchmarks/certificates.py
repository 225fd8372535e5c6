"""Certificates beyond min-theta: SCM, output bounds and parabolic RB, measured side by side.

* SCM on the anisotropic-reaction problem of tests/test_scm.py (no min-theta bound) and on the
  thermal block 2x2 (min-theta exact), at about 2e4 dofs (--mesh 141; --mesh 316 for 1e5):
  offline cost (eigen-solves, factorizations, LPs, seconds), online cost per parameter of the
  vectorized certificate bound against the per-parameter LP, gaps 1 - LB/UB, LB / alpha with
  alpha from spectrum slicing (PETSc Cholesky inertia), SCM against min-theta.
* Output bounds on the thermal block (mean over block 3, flux through the bottom side):
  effectivities and corrected against plain output errors, PETSc truths.
* Parabolic RB on `heat`: POD-greedy, space-time effectivities, online time per trajectory.

    .venv/bin/python benchmarks/certificates.py [--mesh 141] [--train 200] [--heat-mesh 32]

The last line is a JSON object with the figures."""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from rom.hifi.discretization.operators import Operators, operators_dataset  # noqa: E402
from rom.hifi.problems import Heat, ThermalBlock  # noqa: E402
from rom.hifi.solvers.solve import FullOrderModel  # noqa: E402
from rom.models.output import OutputModel, dual_fom_solve, dual_reductor, output_functional  # noqa: E402
from rom.models.parabolic import ParabolicReductor, affine_system, energy_errors, pod_greedy  # noqa: E402
from rom.models.rb import AffineCoefficients, CoerciveRBReductor  # noqa: E402
from rom.reduction.greedy import weak_greedy  # noqa: E402
from rom.reduction.scm import scm_greedy  # noqa: E402
from test_scm import AnisotropicReaction, sliced_lambda_min  # noqa: E402  (the test's problem and reference)


def draw(bounds, n, seed):
    lo, hi = np.asarray(bounds, dtype=float).T
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, len(lo)))


def direct_fom(problem, iterative=False):
    fom = FullOrderModel(problem, "petsc")
    fom.solver.ksp.setType("cg" if iterative else "preonly")
    fom.solver.ksp.getPC().setType("lu")
    fom.solver.ksp.setTolerances(rtol=1e-14, atol=1e-300)
    return fom


def bench_scm(problem, train_size, n_slice):
    ops = Operators.from_dataset(operators_dataset(problem))
    train = draw(problem.default_bounds, train_size, 1)
    scm, h = scm_greedy(ops.X, ops.A_terms, problem.theta, train, tol=0.2, K_max=60)
    test = draw(problem.default_bounds, 200, 2)
    batch = draw(problem.default_bounds, 10000, 3)
    scm.lower_bound(batch[:10])
    t0 = time.perf_counter()
    scm.lower_bound(batch)
    batched = (time.perf_counter() - t0) / len(batch)
    t0 = time.perf_counter()
    for mu in test:  # one query after the other, as an online user would
        scm.lower_bound(mu)
    single = (time.perf_counter() - t0) / len(test)
    t0 = time.perf_counter()
    lb_lp = scm.lower_bound_lp(test[:50])
    lp = (time.perf_counter() - t0) / 50
    lb, ub = scm.lower_bound(test), scm.upper_bound(test)
    ratio_slice = []
    for mu, low in zip(test[:n_slice], lb[:n_slice]):
        A = ops.assemble(problem.theta(mu[None])[0])
        a_lo, a_hi = sliced_lambda_min(A, ops.X, low, scm.upper_bound(mu)[0] * (1 + 1e-8), rtol=1e-3)
        ratio_slice.append(low / a_hi)
    return ops, scm, {
        "dofs": problem.mesh.n_dofs, "K": scm.K, "certificates": scm.n_certificates, "eigen_solves": h.eigen_solves,
        "factorizations": h.factorizations, "lps": h.lps, "offline_s": h.seconds, "eigen_s": h.seconds_eigen,
        "lp_s": h.seconds_lp, "train_max_gap": h.max_gap[-1], "stop": h.stop_reason,
        "online_us_batched": batched * 1e6, "online_us_single": single * 1e6, "lp_ms_per_param": lp * 1e3,
        "test_gap_mean": float(np.mean(1 - lb / ub)), "test_gap_max": float(np.max(1 - lb / ub)),
        "test_gap_lp_max": float(np.max(1 - lb_lp / ub[:50])), "lb_over_alpha_min": float(np.min(ratio_slice)),
        "box": scm.box.round(6).tolist(),
    }, test, lb


def bench_outputs(mesh):
    p = ThermalBlock(mesh, (2, 2))
    ops = Operators.from_dataset(operators_dataset(p))
    fom = direct_fom(p)
    coef = AffineCoefficients(p, np.ones(4))
    primal = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, coef, p.default_bounds, p.parameter_names)
    weak_greedy(draw(p.default_bounds, 200, 4), lambda m: fom.solve(m).u, primal, 1e-4, 24)
    test = draw(p.default_bounds, 20, 5)
    U = np.array([fom.solve(m).u for m in test])
    out = {}
    for spec in ({"name": "mean_block_3", "kind": "region_mean", "blocks": [3]},
                 {"name": "flux_bottom", "kind": "boundary_flux", "side": "bottom"}):
        o = output_functional(p, spec)
        dual = dual_reductor(ops.X, ops.A_terms, o, coef, p.default_bounds, p.parameter_names)
        weak_greedy(draw(p.default_bounds, 200, 6), dual_fom_solve(fom, o), dual, 1e-4, 24)
        r = OutputModel.build(primal, dual, ops.A_terms, ops.f_terms, o).evaluate(test)
        s = o.value(test, U)
        err, err_rb = np.abs(s - r["s"]), np.abs(s - r["s_rb"])
        eff = r["bound"] / err
        out[spec["name"]] = {"N": primal.N, "M": dual.N, "max_error": float(err.max()), "max_error_plain": float(err_rb.max()),
                             "median_error_ratio": float(np.median(err / err_rb)), "effectivity_min": float(eff.min()),
                             "effectivity_median": float(np.median(eff)), "effectivity_max": float(eff.max()),
                             "max_bound_relative": float((r["bound"] / np.abs(s)).max())}
    return p.mesh.n_dofs, out


def bench_parabolic(mesh):
    p = Heat(mesh)
    fom = direct_fom(p, iterative=True)

    def traj(mu):
        return fom.solve_trajectory(np.asarray(mu, dtype=float)).u

    system = affine_system(p)
    red = ParabolicReductor(system)
    rng = np.random.default_rng(0)
    train, test = rng.random((60, 5)), rng.random((10, 5))
    t0 = time.perf_counter()
    h = pod_greedy(train, traj, red, 1e-5, 40)
    offline = time.perf_counter() - t0
    t0 = time.perf_counter()
    U = np.stack([traj(m) for m in test])
    fom_s = (time.perf_counter() - t0) / len(test)
    rows = {}
    for N in (10, 20, red.N):
        m = red.model(N)
        c = m.solve_batch(test)
        err = energy_errors(U - np.einsum("ikn,nd->ikd", c, red.V[:N]), system, m.coefficients.alpha_lb(test))
        est = m.estimate_batch(test, c)
        eff = est[:, 1:] / err[:, 1:]
        rows[N] = {"effectivity_min": float(eff.min()), "effectivity_max": float(eff.max()),
                   "max_error_relative": float((err[:, -1] / energy_errors(U, system, np.ones(len(test)))[:, -1]).max())}
    m = red.model()
    batch = rng.random((1000, 5))
    t0 = time.perf_counter()
    m.estimate_batch(batch, m.solve_batch(batch))
    online = (time.perf_counter() - t0) / len(batch)
    return {"dofs": p.mesh.n_dofs, "steps": p.steps, "N": red.N, "offline_s": offline, "fom_s_per_trajectory": fom_s,
            "rb_us_per_trajectory_with_bound": online * 1e6, "speedup": fom_s / online,
            "greedy_max_bound": [float(v) for v in h.max_estimate], "by_N": rows}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", type=int, default=141)
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--slice", type=int, default=5, help="test parameters with alpha by spectrum slicing")
    ap.add_argument("--heat-mesh", type=int, default=32)
    ap.add_argument("--parts", default="scm,outputs,parabolic", help="comma-separated subset to run")
    a = ap.parse_args()
    parts = a.parts.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}, "
          f"{os.cpu_count()} cores")
    result = {"scm": {}}
    if "scm" in parts:
        scm_part(a, result)
    if "outputs" in parts:
        outputs_part(a, result)
    if "parabolic" in parts:
        parabolic_part(a, result)
    print(json.dumps(result))


def scm_part(a, result):
    _, _, result["scm"]["anisotropic_reaction"], _, _ = bench_scm(AnisotropicReaction(a.mesh), a.train, a.slice)
    tb = ThermalBlock(a.mesh, (2, 2))
    _, _, result["scm"]["thermal_block"], test, lb = bench_scm(tb, a.train, a.slice)
    min_theta = test.min(axis=1)  # exact alpha of the thermal block
    result["scm"]["thermal_block"]["scm_over_min_theta_min"] = float((lb / min_theta).min())
    result["scm"]["thermal_block"]["scm_over_min_theta_mean"] = float((lb / min_theta).mean())
    print("SCM | dofs | K | certs | eig solves | factorizations | LPs | offline s (eig, LP) | train gap | "
          "online us (batched, single) | LP ms | test gap mean/max (LP max) | LB/alpha min")
    for name, r in result["scm"].items():
        print(f"{name} | {r['dofs']} | {r['K']} | {r['certificates']} | {r['eigen_solves']} | {r['factorizations']} | "
              f"{r['lps']} | {r['offline_s']:.1f} ({r['eigen_s']:.1f}, {r['lp_s']:.1f}) | {r['train_max_gap']:.3f} | "
              f"{r['online_us_batched']:.1f}, {r['online_us_single']:.0f} | {r['lp_ms_per_param']:.2f} | "
              f"{r['test_gap_mean']:.3f}/{r['test_gap_max']:.3f} ({r['test_gap_lp_max']:.3f}) | {r['lb_over_alpha_min']:.3f}")
    r = result["scm"]["anisotropic_reaction"]
    print(f"online: LP / certificates per parameter = {r['lp_ms_per_param'] * 1e3 / r['online_us_single']:.0f}x (single), "
          f"{r['lp_ms_per_param'] * 1e3 / r['online_us_batched']:.0f}x (batched)")
    t = result["scm"]["thermal_block"]
    print(f"thermal block: SCM / min-theta (= alpha) min {t['scm_over_min_theta_min']:.3f}, mean {t['scm_over_min_theta_mean']:.3f}")


def outputs_part(a, result):
    dofs, result["outputs"] = bench_outputs(a.mesh)
    print(f"outputs ({dofs} dofs) | N | M | max err corrected | max err plain | median ratio | effectivity min/median/max")
    for name, o in result["outputs"].items():
        print(f"{name} | {o['N']} | {o['M']} | {o['max_error']:.2e} | {o['max_error_plain']:.2e} | "
              f"{o['median_error_ratio']:.1e} | {o['effectivity_min']:.1f}/{o['effectivity_median']:.1f}/{o['effectivity_max']:.1f}")


def parabolic_part(a, result):
    result["parabolic"] = par = bench_parabolic(a.heat_mesh)
    print(f"parabolic heat ({par['dofs']} dofs, {par['steps']} steps): N = {par['N']}, offline {par['offline_s']:.1f} s, "
          f"FOM {par['fom_s_per_trajectory'] * 1e3:.0f} ms/trajectory, RB + bound {par['rb_us_per_trajectory_with_bound']:.0f} "
          f"us/trajectory (batched), speed-up {par['speedup']:.0f}")
    for N, row in par["by_N"].items():
        print(f"  N = {N}: effectivity {row['effectivity_min']:.2f} - {row['effectivity_max']:.2f}, "
              f"max relative space-time error {row['max_error_relative']:.1e}")


if __name__ == "__main__":
    main()
