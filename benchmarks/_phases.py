"""The driver that benchmarks/pod_scale.py and benchmarks/gp_scale.py share: the common flags, a synthetic
set of chunk files, and each phase run in a fresh process (`--phase`) that prints its figures as JSON."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parser(doc: str, test_samples: int, block_help: str, max_modes: int, tol: float | None = None):
    """The flags of both benchmarks (--tol where `tol` is given), and the hidden --phase of a child."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--dofs", type=int, default=40_000)
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--test-samples", type=int, default=test_samples)
    p.add_argument("--chunk-size", type=int, default=25)
    p.add_argument("--block-mb", type=float, default=8.0, help=block_help)
    p.add_argument("--max-modes", type=int, default=max_modes)
    if tol is not None:
        p.add_argument("--tol", type=float, default=tol)
    p.add_argument("--folder", help="keep the files here (default: a temporary folder)")
    p.add_argument("--phase", help=argparse.SUPPRESS)
    return p


def write_sets(folder: Path, m: int, m_test: int, chunk: int, fields):
    """The train and test sets' chunk files folder/<set>/chunk<c>.h5: a chunk's samples in solve order (not
    sorted), one failed sample (NaN) per set; fields(idx) -> (mu, U), the chunk's parameters and fields."""
    import numpy as np
    import xarray as xr

    from rom import artefacts

    for name, size in (("train", m), ("test", m_test)):
        (folder / name).mkdir()
        for c, a in enumerate(range(0, size, chunk)):
            idx = np.arange(a, min(size, a + chunk))[::-1]
            mu, U = fields(idx)
            ok = np.ones(len(idx), dtype=np.int8)
            if c == 0 and len(idx) > 2:
                ok[1], U[1] = 0, np.nan
            ds = xr.Dataset({"u": (("sample", "dof"), U, {"units": "1"}), "mu": (("sample", "parameter"), mu),
                             "converged": ("sample", ok),
                             "reason": ("sample", artefacts.strings(["ok" if o else "diverged" for o in ok])),
                             "iterations": ("sample", np.full(len(idx), 3)),
                             "solve_seconds": ("sample", np.full(len(idx), 0.1))},
                            coords={"sample": idx, "parameter": artefacts.strings(["a", "b"])},
                            attrs={"set": name, "chunk": c})
            artefacts.write(ds, folder / name / f"chunk{c}.h5", None, "snapshots")
            del U, ds


def drive(args, script: str, make, phase, phases, show, report) -> int:
    """A child (--phase): phase(which, folder)'s figures as JSON. Otherwise: make(folder, dofs, samples,
    test_samples, chunk_size) in a temporary folder, each of `phases` run by `script` in a child process
    (show(which, figures, matrix_mb) prints its line), then report(folder, figures by phase, matrix_mb)'s
    summary printed as the last line (JSON)."""
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.folder))))
        return 0
    flags = ["--max-modes", str(args.max_modes), "--block-mb", str(args.block_mb)]
    if getattr(args, "tol", None) is not None:
        flags = ["--tol", str(args.tol), *flags]
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make(folder, args.dofs, args.samples, args.test_samples, args.chunk_size)
        print(f"synthetic set: {args.samples} + {args.test_samples} samples x {args.dofs} dofs, chunks of "
              f"{args.chunk_size} ({time.perf_counter() - t0:.1f} s)")
        matrix_mb = 8 * args.dofs * args.samples / 2 ** 20
        res = {}
        for which in phases:
            cmd = [sys.executable, script, "--phase", which, "--folder", str(folder), *flags]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                sys.exit(f"{which} failed:\n{proc.stderr[-3000:]}")
            res[which] = json.loads(proc.stdout.strip().splitlines()[-1])
            show(which, res[which], matrix_mb)
        print(json.dumps(report(folder, res, matrix_mb)))
    return 0
