"""Certified RB online speed against the PETSc FOM: thermal block 2x2 and 3x2 on a grid with about
2e4 dofs, greedy to N = 20 and N = 32. Prints one table: offline time, online time per query
(single: solve + stable estimate; batched), FOM time per solve, speed-ups, max error, effectivities.

    .venv/bin/python benchmarks/rom_online.py [--mesh 141] [--train 500] [--test 20] [--batch 10000]
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from rom.hifi.operators import Operators, operators_dataset
from rom.hifi.problems import ThermalBlock
from rom.hifi.solve import FullOrderModel
from rom.models.rb import AffineCoefficients, CoerciveRBReductor
from rom.reduction.greedy import weak_greedy

PETSC = {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mesh", type=int, default=141)
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--single", type=int, default=2000)
    a = ap.parse_args()
    rows = []
    for blocks in ((2, 2), (3, 2)):
        p = ThermalBlock(a.mesh, blocks)
        Q = p.n_terms
        ops = Operators.from_dataset(operators_dataset(p))
        fom = FullOrderModel(p, "petsc", PETSC)
        rng = np.random.default_rng(0)
        train = 0.1 + 0.9 * rng.random((a.train, Q))
        test = 0.1 + 0.9 * rng.random((a.test, Q))
        fom.solve(test[0])  # PETSc set-up outside the timing
        t0 = time.perf_counter()
        U = np.array([fom.solve(m).u for m in test])
        fom_s = (time.perf_counter() - t0) / len(test)
        red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, AffineCoefficients(p, np.ones(Q)),
                                 p.default_bounds, p.parameter_names)
        t0 = time.perf_counter()
        weak_greedy(train, lambda m: fom.solve(m).u, red, 1e-14, 32)
        offline = time.perf_counter() - t0
        model = red.model()
        for N in (20, 32):
            if N > red.N:
                continue
            m = model.truncated(N)
            c = m.solve_batch(test)
            E = U - c @ red.V[:N]
            err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
            norm = np.sqrt(np.einsum("ij,ij->i", U, (ops.X @ U.T).T))
            eff = m.estimate_batch(test, c) / err
            queries = test[np.arange(a.single) % len(test)]
            m.query(queries[0])
            t0 = time.perf_counter()
            for q in queries:
                m.query(q)
            single = (time.perf_counter() - t0) / a.single
            mu_b = 0.1 + 0.9 * rng.random((a.batch, Q))
            m.query_batch(mu_b)
            t0 = time.perf_counter()
            m.query_batch(mu_b)
            batched = (time.perf_counter() - t0) / a.batch
            rows.append((f"{blocks[0]}x{blocks[1]}", p.mesh.n_dofs, N, offline, fom_s * 1e3, single * 1e6,
                         1 / batched, fom_s / single, (err / norm).max(), eff.min(), eff.max()))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    head = ("blocks", "dofs", "N", "offline s", "FOM ms", "RB us/query", "queries/s batched", "speed-up",
            "max rel err", "eff min", "eff max")
    print(" | ".join(head))
    for r in rows:
        print(f"{r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.3g} | {r[7]:.0f} | "
              f"{r[8]:.1e} | {r[9]:.2f} | {r[10]:.2f}")


if __name__ == "__main__":
    main()
