"""The adaptive hyper-reduced ROM on the elasto-viscoplastic cooled plate (config/studies/cooled_plate.yaml:
Norton flow with kinematic hardening, a hot spot, a cyclic traction), side by side with the full-order model,
at a few mesh sizes: the ROM error on an out-of-training temperature loading with and without enrichment,
the indicator against the true error (Spearman rank correlation), the full-order steps called, the
speed-up per hyper-reduced step and for the whole trajectory, and the reduced quadrature against the full
one. Prints one table and a last-line JSON object; no assertions.

    .venv/bin/python benchmarks/viscoplastic_rom.py [--size 1.1 0.59] [--train 8] [--steps 40]

--size is the gmsh element size of examples/meshes/cooled_plate.py (1.1: about 2e4 dofs, 0.59: about 1e5).
The full-order model is PETSc SNES with CG + GAMG (the rigid-body near-null space) on one rank; the ROM runs
under one BLAS thread, as the adaptive_rom stage does."""
from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import qmc, spearmanr
from threadpoolctl import threadpool_limits

from rom import config
from rom.hifi.discretization import fem
from rom.hifi.registry import PROBLEMS
from rom.hifi.solvers.solve import FullOrderModel, fom_step_function
from rom.memory import peak_rss_mb
from rom.models.adaptive import relative_errors
from rom.models.hyper import CubatureROM, run_cubature

ROOT = Path(__file__).resolve().parent.parent
OUT_OF_TRAINING = [52.0, 190.0, 120.0]  # a hotter spot than any train one, past the last hole


def study_problem(mesh: Path, steps: int):
    study = yaml.safe_load((ROOT / "config/studies/cooled_plate.yaml").read_text())
    study["problem"]["mesh"] = {"file": str(mesh)}
    study["problem"]["steps"] = steps
    spec = config.validate(study)
    args = {k: v for k, v in spec["problem"].items() if k != "name"}
    bounds = np.array([spec["parameters"][n]["bounds"] for n in ("x_hot", "dT", "load")], dtype=float)
    return PROBLEMS["viscoplastic"].from_arguments(args), spec, bounds


def run_size(size: float, n_train: int, steps: int, cache: Path) -> dict:
    mesh = cache / f"cooled_plate_{size}.msh"
    if not mesh.exists():
        subprocess.run([sys.executable, ROOT / "examples/meshes/cooled_plate.py", mesh, "--size", str(size)], check=True)
    p, spec, bounds = study_problem(mesh, steps)
    a = spec["adaptive_rom"]
    opts = dict(spec["simulate"]["petsc_options"])
    pat = fem.Pattern.build(p.mesh)
    X = pat.to_scipy(p.energy_product(pat))
    fom = FullOrderModel(p, "petsc", opts)
    mu_train = qmc.scale(qmc.LatinHypercube(d=3, seed=51).random(n_train), *bounds.T)
    mu_test = np.vstack([OUT_OF_TRAINING, qmc.scale(qmc.LatinHypercube(d=3, seed=52).random(2), *bounds.T)])
    t0 = time.perf_counter()
    S = np.stack([fom.solve_trajectory(m).u for m in mu_train])
    fom_traj = (time.perf_counter() - t0) / n_train
    with threadpool_limits(1):
        t0 = time.perf_counter()
        rom = CubatureROM.from_trajectories(p, X, S, mu_train, a["tol_state"], a["tol_nonlinear"], a["tol_flux"],
                                            a["max_modes"], a["tol_cubature"])
        offline = time.perf_counter() - t0
    del S
    step = fom_step_function(p, "petsc", opts)
    cases, pooled_err, pooled_eta = [], [], []
    for i, m in enumerate(mu_test):
        t0 = time.perf_counter()
        ref = fom.solve_trajectory(m)
        t_fom = time.perf_counter() - t0
        assert ref.converged, ref.reason
        with threadpool_limits(1):
            st = run_cubature(copy.deepcopy(rom), m)
            step.seconds = 0.0
            t0 = time.perf_counter()
            ad = run_cubature(copy.deepcopy(rom), m, a["indicator_tol"], step)
            t_ad = time.perf_counter() - t0
        e_st, e_ad = relative_errors(st.states, ref.u, X), relative_errors(ad.states, ref.u, X)
        pooled_err += list(e_st[1:])
        pooled_eta += list(st.indicator[1:])
        cases.append({"mu": list(map(float, m)), "out_of_training": i == 0,
                      "error_static": float(e_st.max()), "error_adaptive": float(e_ad.max()),
                      "fom_steps": int(ad.fom_steps), "newton_failures": int(st.newton_failures + ad.newton_failures), "rank_correlation": float(spearmanr(e_st[1:], st.indicator[1:]).correlation),
                      "fom_step_s": t_fom / steps, "rom_step_s": st.step_seconds / st.rom_steps,
                      "fom_trajectory_s": t_fom, "adaptive_trajectory_s": t_ad, "replay_s": ad.replay_seconds,
                      "fom_steps_s": ad.fom_seconds})
    out = {"size": size, "dofs": int(p.mesh.n_dofs), "cells": int(len(p.mesh.cells)), "steps": steps,
           "train": n_train, "fom_trajectory_s": fom_traj, "offline_s": offline, **rom.summary(),
           "pooled_rank_correlation": float(spearmanr(pooled_err, pooled_eta).correlation),
           "error_tol": a["error_tol"], "indicator_tol": a["indicator_tol"], "cases": cases,
           "peak_rss_mb": peak_rss_mb()}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, nargs="+", default=[1.1, 0.59])
    ap.add_argument("--train", type=int, default=8)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "benchmarks")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; FOM: PETSc "
          "SNES + CG/GAMG, 1 rank; ROM: one BLAS thread")
    results = [run_size(s, args.train, args.steps, args.cache) for s in args.size]
    head = ("dofs", "mu", "err static", "err adaptive", "FOM steps", "rank corr", "step speed-up", "trajectory speed-up")
    rows = []
    for r in results:
        for c in r["cases"]:
            rows.append((r["dofs"], ("OUT " if c["out_of_training"] else "") + str([round(v, 1) for v in c["mu"]]),
                         f"{c['error_static']:.3g}", f"{c['error_adaptive']:.3g}", f"{c['fom_steps']}/{r['steps']}",
                         f"{c['rank_correlation']:.2f}", f"x{c['fom_step_s'] / c['rom_step_s']:.0f}",
                         f"x{c['fom_trajectory_s'] / c['adaptive_trajectory_s']:.1f}"))
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(len(head))]
    for x in [head] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(x, widths)))
    for r in results:
        print(f"{r['dofs']} dofs: N = {r['N']}, reduced quadrature {r['reduced_elements']} of {r['cells']} cells "
              f"({r['reduced_elements'] / r['cells']:.2%}), cubature error {r['cubature_error']:.2g}, pooled rank "
              f"correlation {r['pooled_rank_correlation']:.2f}, FOM {r['fom_trajectory_s']:.1f} s per train "
              f"trajectory, offline {r['offline_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB")
    print(json.dumps({"benchmark": "viscoplastic_rom", "results": results}))


if __name__ == "__main__":
    main()
