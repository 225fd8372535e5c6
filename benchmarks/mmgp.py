"""MMGP on the tensile-plate family: 300 train / 100 test shapes (default), Tutte vs RBF vs no morphing,
and Tutte without the physics-informed load scaling and without the floor variance.

Prints, per variant: PLAID RRMSE and Q2 per field and scalar, 95% coverage, training and prediction
times; side by side with the issue's targets. Usage:
    .venv/bin/python benchmarks/mmgp.py [--train 300 --test 100 --mesh-n 12 --threads 1]
        [--variants tutte,tutte-noload,tutte-nofloor,rbf,none] [--geometry-modes 8 --field-modes 12]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rom.hifi.elasticity import TensilePlate
from surrogates.gp import coverage, q2
from surrogates.mmgp.geometry import MeshError, solve_family
from surrogates.mmgp.model import MMGP, rrmse_field, rrmse_scalar

FIELDS, SCALARS = ["u_x", "u_y", "von_mises"], ["max_von_mises", "compliance"]


def family(p, n, set_name, seed):
    return solve_family(p, n, set_name, seed, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-10})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--mesh-n", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--variants", default="tutte,tutte-noload,rbf,none",
                    help="morphing (tutte, rbf, none), optionally -noload (no load scaling) or -nofloor")
    ap.add_argument("--geometry-modes", type=int, default=8)
    ap.add_argument("--field-modes", type=int, default=12)
    ap.add_argument("--restarts", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    p = TensilePlate(mesh_n=a.mesh_n)
    t0 = time.perf_counter()
    train, test = family(p, a.train, "train", 0), family(p, a.test, "test", 1)
    nodes = [len(s.nodes) for s in train[0]]
    print(f"family: {a.train} train / {a.test} test shapes, {min(nodes)}-{max(nodes)} nodes, "
          f"simulated in {time.perf_counter() - t0:.1f} s (gmsh + PETSc)")
    rows = {}
    for variant in a.variants.split(","):
        morphing = variant.split("-")[0]
        model = MMGP(FIELDS, SCALARS, p.parameter_names, morphing, a.geometry_modes, a.field_modes,
                     restarts=a.restarts, iterations=a.iterations,
                     load_inputs=[] if "noload" in variant else p.load_parameters, degrees=p.output_degrees,
                     floor_variance="nofloor" not in variant)
        try:
            model.fit(*train)
            out = model.predict(test[0], test[1])
        except MeshError as exc:
            print(f"{variant}: failed: {exc}")
            continue
        r = {}
        for f in FIELDS:
            ref = [s.fields[f] for s in test[0]]
            pm, pv = [o[f] for o in out["fields_mean"]], [o[f] for o in out["fields_var"]]
            r[f] = (rrmse_field(ref, pm), q2(np.concatenate(ref), np.concatenate(pm)),
                    coverage(np.concatenate(ref), np.concatenate(pm), np.concatenate(pv)))
        rs = rrmse_scalar(test[2], out["scalars_mean"])
        for j, s in enumerate(SCALARS):
            r[s] = (rs[j], q2(test[2][:, j], out["scalars_mean"][:, j]),
                    coverage(test[2][:, j], out["scalars_mean"][:, j], out["scalars_var"][:, j]))
        rows[variant] = (r, model.timings["fit_s"], model.timings["predict_s"] / a.test)
    print(f"\n{'output':<14}{'target RRMSE':>13}" + "".join(f"{m + ' RRMSE':>20}{'Q2':>8}{'cov95':>7}" for m in rows))
    for o in FIELDS + SCALARS:
        target = "5e-3" if o.startswith("u_") else ("1e-2" if o in SCALARS else "-")
        print(f"{o:<14}{target:>13}" + "".join(f"{r[o][0]:>20.2e}{r[o][1]:>8.4f}{r[o][2]:>7.2f}" for r, _, _ in rows.values()))
    print(f"{'fit s':<14}{'':>13}" + "".join(f"{f:>20.1f}{'':>15}" for _, f, _ in rows.values()))
    print(f"{'predict s/shape':<14}{'':>12}" + "".join(f"{t:>20.3f}{'':>15}" for _, _, t in rows.values()))


if __name__ == "__main__":
    main()
