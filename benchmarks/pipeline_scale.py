"""The 3D heat-sink study (config/studies/heat_sink.yaml) through Snakemake at the size of real parts:
per-stage wall time and peak memory per MPI rank, 1 rank against 2.

    .venv/bin/python benchmarks/pipeline_scale.py [--sizes 0.0005 0.0003] [--ranks 1 2] [--cores 2]
                                                  [--workdir /tmp/romflow_scale] [--keep]

For each gmsh element size (examples/meshes/heat_sink.py --size: 0.5 mm gives 1.2e5 dofs, 0.3 mm 4.8e5,
0.22 mm about 1e6) and each `simulate.mpi_ranks`, the shipped study file with that mesh runs end to end
(operators, simulate on R ranks, gather, POD, certified RB with its test evaluation, POD+GP, figures,
report) in a fresh Snakemake working directory. Every stage logs `done in <s> s` and
`peak memory per rank: a, b MB`; this script reads them back from results/<study>/logs/ (the largest
figure over a rule's jobs, e.g. the simulate chunks) and prints one row per stage and the ratio of the
2-rank to the 1-rank memory of the largest rank. The RB's effectivities on its test set are read from
rom/rb_metrics.h5. Last line: a JSON object.

What divides across ranks and what does not (docs/scale.md): the FOM solves (simulate, the greedy's
solves) and the RB's X solves are row-distributed; the operators stage, POD, GP and the RB's residual
data (W, long double) are on one process."""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PY = Path(sys.executable)
SNAKEMAKE = PY.parent / "snakemake"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", MPLBACKEND="Agg",
           PATH=f"{PY.parent}{os.pathsep}{os.environ.get('PATH', '')}")
DONE = re.compile(r"done in ([0-9.]+) s")
PEAK = re.compile(r"peak memory per rank: ([0-9., ?]+) MB")


def mesh(workdir: Path, size: float) -> Path:
    path = workdir / "meshes" / f"heat_sink_{size:g}.msh"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([PY, ROOT / "examples/meshes/heat_sink.py", path, "--size", str(size)], check=True, env=ENV)
    return path


def study_file(workdir: Path, msh: Path, ranks: int) -> tuple[Path, str]:
    study = yaml.safe_load((ROOT / "config/studies/heat_sink.yaml").read_text())
    name = f"heat_sink_{msh.stem.split('_')[-1].replace('.', 'p')}_r{ranks}"
    study["name"] = name
    study["problem"]["mesh"] = {"file": str(msh)}
    study["simulate"]["mpi_ranks"] = ranks
    run_dir = workdir / name
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path, name


def stage_figures(logs: Path) -> dict:
    """rule -> (seconds: the longest job, peak MB per rank: the largest over jobs, rank by rank)."""
    out = {}
    for log in sorted(logs.rglob("*.log")):
        text = log.read_text(errors="replace")
        seconds = [float(s) for s in DONE.findall(text)]
        peaks = PEAK.findall(text)
        if not seconds:
            continue
        # logs/simulate/<set>_chunk<i>.log: one rule, its longest chunk and largest ranks
        rule = log.parent.name if log.parent != logs else re.sub(r"_(chunk)?\d+$", "", log.stem)
        per_rank = []
        if peaks:
            per_rank = [float(v) if v.strip() not in ("?", "nan") else float("nan") for v in peaks[-1].split(",")]
        old_s, old_p = out.get(rule, (0.0, []))
        merged = [np.nanmax([a, b]) for a, b in zip(old_p, per_rank)] if old_p and len(old_p) == len(per_rank) else (per_rank or old_p)
        out[rule] = (max(old_s, max(seconds)), merged)
    return out


def run(workdir: Path, size: float, ranks: int, cores: int) -> dict:
    msh = mesh(workdir, size)
    path, name = study_file(workdir, msh, ranks)
    run_dir = path.parent
    t0 = time.perf_counter()
    proc = subprocess.run([SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", run_dir, "--configfile", path, "--cores",
                           str(cores)], env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{name}: snakemake exited {proc.returncode}")
    res = run_dir / "results" / name
    from rom import artefacts

    ops = artefacts.read(res / "fom" / "operators.h5")
    metrics = artefacts.read(res / "rom" / "rb_metrics.h5")
    eff = [float(v) for k, v in metrics.attrs.items() if k.endswith("_effectivity_min") and "textbook" not in k]
    return {"study": name, "size": size, "ranks": ranks, "n_dofs": int(ops.attrs["n_dofs"]), "wall_s": wall,
            "stages": stage_figures(res / "logs"),
            "min_effectivity": min(eff) if eff else float("nan")}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=float, nargs="+", default=[0.0005])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/romflow_scale"))
    p.add_argument("--keep", action="store_true", help="keep the results (default: only the meshes are kept)")
    args = p.parse_args()
    print(f"{platform.node()}, {os.cpu_count()} CPUs; heat sink through Snakemake --cores {args.cores}")
    rows = []
    for size in args.sizes:
        for ranks in args.ranks:
            r = run(args.workdir, size, ranks, args.cores)
            rows.append(r)
            print(f"\n{r['study']}: {r['n_dofs']:,} dofs, {r['ranks']} rank(s): whole pipeline {r['wall_s']:.0f} s, "
                  f"min RB effectivity on the test set {r['min_effectivity']:.3g}")
            print(f"  {'stage':<22} {'s':>8}  peak MB per rank")
            for rule, (s, mb) in sorted(r["stages"].items(), key=lambda kv: -kv[1][0]):
                print(f"  {rule:<22} {s:8.1f}  {', '.join(f'{m:.0f}' for m in mb)}")
            if not args.keep:
                shutil.rmtree(args.workdir / r["study"] / "results", ignore_errors=True)
    by = {(r["size"], r["ranks"]): r for r in rows}
    for size in args.sizes:
        if (size, 1) in by and (size, 2) in by:
            one, two = by[(size, 1)]["stages"], by[(size, 2)]["stages"]
            print(f"\nsize {size:g}: largest rank's peak, 2 ranks / 1 rank:")
            for rule in sorted(set(one) & set(two)):
                a, b = np.nanmax(one[rule][1] or [np.nan]), np.nanmax(two[rule][1] or [np.nan])
                print(f"  {rule:<22} {b / a:5.2f}  ({a:.0f} -> {b:.0f} MB)")
    print(json.dumps({"runs": [{k: v for k, v in r.items()} for r in rows]}))


if __name__ == "__main__":
    main()
