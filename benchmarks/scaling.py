"""simulate throughput (samples per minute) with 1 and 2 MPI ranks per job and 1 and 2 concurrent jobs.

    .venv/bin/python benchmarks/scaling.py [--mesh 256] [--samples 16] [--chunk 4] [--launcher srun]

Each configuration solves the same train set (thermal block, CG + GAMG) in chunks through the real
CLI (`mpiexec -n <ranks> python -m rom simulate ... --chunk i`), `jobs` chunks at a time: what
Snakemake does with `--cores`, or SLURM with one job per chunk. Wall time includes every job's
start-up (Python, PETSc, MPI), as on a cluster; `solve s` is the time inside KSPSolve summed over
samples. Prints one row per configuration and its throughput relative to 1 rank x 1 job.
With --launcher srun (SLURM_CONF of a running cluster, e.g. tests/cluster/slurm_up.sh) every job is
`srun -n <ranks> --cpus-per-task 1 ...`: SLURM allocates the CPUs, and queues what does not fit."""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rom import artefacts  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", MPLBACKEND="Agg",
           PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


LAUNCH = {"mpiexec": ["mpiexec", "-n"], "srun": ["srun", "--cpus-per-task=1", "--mem-per-cpu=2000", "-n"]}
launcher = "mpiexec"


def rom(*args, ranks: int | None = None):
    cmd = [sys.executable, "-m", "rom", *map(str, args)]
    if ranks:
        cmd = [*LAUNCH[launcher], str(ranks), *cmd]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")


def prepare(workdir: Path, mesh: int, samples: int, chunk: int) -> Path:
    study = {"name": "scaling", "problem": {"name": "thermal_block", "mesh": {"n": mesh}, "blocks": [3, 3]},
             "design": {"method": "lhs", "train": {"size": samples, "seed": 1}, "test": {"size": 0, "seed": 2}},
             "simulate": {"chunk_size": chunk, "petsc_options": {"ksp_type": "cg", "pc_type": "gamg",
                                                                  "ksp_rtol": 1e-10}}}
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(study))
    rom("configure", "--config", workdir / "cfg.yaml", "--out", workdir / "study.yaml")
    rom("sample", "--study-config", workdir / "study.yaml", "--out", workdir / "parameters.h5")
    return workdir / "study.yaml"


def measure(workdir: Path, study: Path, n_chunks: int, ranks: int, jobs: int) -> dict:
    out = workdir / f"r{ranks}j{jobs}"
    out.mkdir()

    def chunk(i):
        rom("simulate", "--study-config", study, "--parameters", workdir / "parameters.h5", "--set", "train",
            "--chunk", i, "--out", out / f"chunk{i}.h5", ranks=ranks)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(chunk, range(n_chunks)))
    wall = time.perf_counter() - t0
    parts = [artefacts.read(out / f"chunk{i}.h5") for i in range(n_chunks)]
    assert all(p.attrs["mpi_ranks"] == ranks and p["converged"].values.all() for p in parts)
    n = sum(p.sizes["sample"] for p in parts)
    return {"ranks": ranks, "jobs": jobs, "samples": n, "wall": wall,
            "solve": float(sum(p["solve_seconds"].values.sum() for p in parts)),
            "per_min": 60 * n / wall, "u": np.concatenate([p["u"].values for p in parts])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mesh", type=int, default=192, help="cells per side (dofs ~ mesh^2)")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--chunk", type=int, default=4, help="samples per simulate job")
    ap.add_argument("--launcher", choices=sorted(LAUNCH), default="mpiexec")
    args = ap.parse_args()
    global launcher
    launcher = args.launcher
    n_chunks = -(-args.samples // args.chunk)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        study = prepare(workdir, args.mesh, args.samples, args.chunk)
        rows = [measure(workdir, study, n_chunks, r, j) for r, j in ((1, 1), (2, 1), (1, 2), (2, 2))]
    base = rows[0]
    print(f"simulate throughput: thermal block 3x3, {(args.mesh - 1) ** 2} dofs, {args.samples} samples in "
          f"{n_chunks} jobs of {args.chunk}, launcher {launcher}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end, {platform.machine()}")
    print(f"{'ranks/job':>9} {'jobs at once':>12} {'wall s':>8} {'solve s':>8} {'samples/min':>12} {'vs 1x1':>7}"
          f" {'max |u - u(1x1)|':>17}")
    for r in rows:
        diff = np.abs(r["u"] - base["u"]).max() / np.abs(base["u"]).max()
        print(f"{r['ranks']:>9} {r['jobs']:>12} {r['wall']:>8.2f} {r['solve']:>8.2f} {r['per_min']:>12.1f} "
              f"{r['per_min'] / base['per_min']:>7.2f} {diff:>17.1e}")


if __name__ == "__main__":
    main()
