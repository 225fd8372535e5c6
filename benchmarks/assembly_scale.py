"""Assembly at the size of real parts (issue 24): the 3D heat sink of config/studies/heat_sink.yaml meshed
finer, side by side:

- the CSR pattern: the former np.unique construction against fem.Pattern.from_cell_dofs (same arrays),
  and the P1 values kernel (fem.simplex_stiffness) it is measured against;
- the mesh of a later stage: parsing the .msh (meshfile.read, what every stage did) against reading it
  back from the operators artefact (operators.read_mesh), and the problem built either way;
- the operators stage, step by step (problem, pattern, X, M, A_q, f_p, view triangles, write), and the
  whole `python -m rom operators` in a subprocess with its peak RSS.

    .venv/bin/python benchmarks/assembly_scale.py [--size 0.0025 0.0012] [--mesh FILE.msh ...]
        [--workdir /tmp/assembly_scale] [--repeat 3] [--no-stage]

`--size` is the heat sink's element size in metres (examples/meshes/heat_sink.py: 2.5 mm is about 3000
nodes, 0.52 mm about 1.1e5, 0.33 mm about 3.7e5); meshes are cached in the work folder. The defaults run
in well under a minute. Prints a table per mesh, the ratios, and a last line with one JSON object."""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rom import artefacts, config  # noqa: E402
from rom.hifi.discretization import fem, meshfile  # noqa: E402
from rom.hifi.discretization.mesh import view_triangles  # noqa: E402
from rom.hifi.discretization.operators import operators_dataset, read_mesh  # noqa: E402


def unique_pattern(dof: np.ndarray, n: int):
    """The pattern as romflow built it before issue 24: one global np.unique of row * n + col."""
    k = dof.shape[1]
    owned = (dof >= 0) & (dof < n)
    elements = np.flatnonzero(owned.any(axis=1))
    d = dof[elements]
    rows = np.repeat(d, k, axis=1).ravel()
    cols = np.tile(d, (1, k)).ravel()
    keep = (rows >= 0) & (rows < n) & (cols >= 0)
    key = rows[keep] * n + cols[keep]
    del rows, cols
    unique_key, slot = np.unique(key, return_inverse=True)
    entry_slot = np.full(keep.shape, -1, dtype=np.int64)
    entry_slot[keep] = slot
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique_key // n, minlength=n), out=indptr[1:])
    return indptr, (unique_key % n).astype(np.int64), elements, entry_slot


def best(fn, repeat: int):
    """(seconds of the fastest of `repeat` calls, the last result)."""
    t, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return t, out


def heat_sink_mesh(size: float, workdir: Path) -> Path:
    path = workdir / f"heat_sink_{size:g}.msh"
    if not path.exists():
        tmp = path.with_suffix(".tmp.msh")
        subprocess.run([sys.executable, str(ROOT / "examples/meshes/heat_sink.py"), str(tmp), "--size", str(size)],
                       check=True)
        os.replace(tmp, path)
    return path


def study_for(msh: Path, workdir: Path) -> tuple[dict, Path]:
    raw = yaml.safe_load((ROOT / "config/studies/heat_sink.yaml").read_text())
    raw["problem"]["mesh"] = {"file": str(msh)}
    study = config.validate(raw, "heat_sink.yaml", workdir)
    path = workdir / f"{msh.stem}.study.yaml"
    config.write_study(study, path)
    return study, path


def measure(msh: Path, workdir: Path, repeat: int, stage: bool) -> dict:
    study, study_path = study_for(msh, workdir)
    r: dict = {"mesh": msh.name}
    # -- the mesh: parsed (the first stage) and read back (every later stage) ------------------------
    r["parse_msh_s"], mf = best(lambda: meshfile.read(msh), 1)
    t0 = time.perf_counter()
    problem = config.make_problem(study)
    r["problem_from_msh_s"] = time.perf_counter() - t0
    m = problem.mesh
    r.update(nodes=int(m.n_nodes), cells=int(len(m.cells)), dofs=int(m.n_dofs))
    # -- pattern against kernel ----------------------------------------------------------------------
    dof = m.cell_dofs
    r["pattern_unique_s"], ref = best(lambda: unique_pattern(dof, m.n_dofs), repeat)
    r["pattern_s"], pattern = best(lambda: fem.Pattern.from_cell_dofs(dof, m.n_dofs), repeat)
    assert all(np.array_equal(a, b) for a, b in zip(
        (pattern.indptr, pattern.indices, pattern.elements, pattern.entry_slot), ref)), "pattern differs"
    del ref
    r["kernel_s"], K = best(lambda: fem.simplex_stiffness(m.nodes, m.cells), repeat)
    r["sum_entries_s"], _ = best(lambda: pattern.sum_entries(K), repeat)
    r["nnz"] = int(pattern.nnz)
    # -- the operators stage, step by step (a fresh problem: nothing cached) ---------------------------
    steps = {}
    t = time.perf_counter()
    fresh = config.make_problem(study)
    steps["problem (parse .msh)"] = time.perf_counter() - t
    for name, fn in (("pattern", lambda: fem.Pattern.build(fresh.mesh)),):
        t = time.perf_counter()
        pat = fn()
        steps[name] = time.perf_counter() - t
    for name, fn in (("X (stiffness terms)", fresh.energy_product), ("M", fresh.mass_product),
                     ("A_q (cached terms)", fresh.operator_terms), ("f_p", fresh.rhs_terms)):
        t = time.perf_counter()
        fn(pat)
        steps[name] = time.perf_counter() - t
    t = time.perf_counter()
    view_triangles(m.nodes, m.cells)
    steps["view triangles"] = time.perf_counter() - t
    t = time.perf_counter()
    ds = operators_dataset(fresh)  # repeats the steps above on the cached terms: the rest of the artefact
    steps["dataset (terms cached)"] = time.perf_counter() - t
    ops = workdir / f"{msh.stem}.operators.h5"
    t = time.perf_counter()
    artefacts.write(ds, ops, study, "operators")
    steps["write"] = time.perf_counter() - t
    r["steps_s"] = steps
    r["artefact_mb"] = ops.stat().st_size / 1e6
    # -- a later stage: the mesh from the artefact -------------------------------------------------
    r["read_mesh_s"], _ = best(lambda: read_mesh(ops, study["problem"]["mesh"]["digest"]), repeat)
    t0 = time.perf_counter()
    again = config.make_problem(study, ops)
    r["problem_from_artefact_s"] = time.perf_counter() - t0
    assert np.array_equal(again.mesh.numbering, m.numbering)
    # -- the whole stage, as Snakemake runs it ---------------------------------------------------------
    if stage:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "rom", "operators", "--study-config", str(study_path), "--out",
                        str(workdir / f"{msh.stem}.stage.h5")], check=True, cwd=ROOT, capture_output=True)
        r["stage_s"] = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        r["stage_peak_rss_mb"] = peak / 1024 if peak > before else None  # the largest child so far
    r["ratios"] = {"pattern_unique/pattern": r["pattern_unique_s"] / r["pattern_s"],
                   "pattern/kernel": r["pattern_s"] / r["kernel_s"],
                   "parse_msh/read_mesh": r["parse_msh_s"] / r["read_mesh_s"],
                   "problem_msh/problem_artefact": r["problem_from_msh_s"] / r["problem_from_artefact_s"]}
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, nargs="+", default=[0.0025, 0.0012],
                    help="heat sink element sizes in metres (default 2.5 mm and 1.2 mm)")
    ap.add_argument("--mesh", type=Path, nargs="+", default=[], help="existing heat sink .msh files to use instead")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/assembly_scale"))
    ap.add_argument("--repeat", type=int, default=3, help="timings are the best of this many calls")
    ap.add_argument("--no-stage", action="store_true", help="skip the `python -m rom operators` subprocess")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    meshes = [p.resolve() for p in a.mesh] or [heat_sink_mesh(s, a.workdir) for s in a.size]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, numpy {np.__version__}")
    results = []
    for msh in meshes:
        r = measure(msh, a.workdir, a.repeat, not a.no_stage)
        results.append(r)
        print(f"\n{r['mesh']}: {r['nodes']} nodes, {r['cells']} cells, {r['dofs']} dofs, {r['nnz']} nonzeros")
        print(f"  pattern: np.unique {r['pattern_unique_s']:.3f} s, now {r['pattern_s']:.3f} s; values kernel "
              f"{r['kernel_s']:.3f} s, sum_entries {r['sum_entries_s']:.3f} s")
        print(f"  mesh: parse .msh {r['parse_msh_s']:.2f} s, from the artefact {r['read_mesh_s']:.3f} s; problem "
              f"{r['problem_from_msh_s']:.2f} s from the .msh, {r['problem_from_artefact_s']:.2f} s from the artefact")
        print("  operators stage, step by step:")
        for name, s in r["steps_s"].items():
            print(f"    {name:<24s} {s:8.3f} s")
        if "stage_s" in r:
            rss = r["stage_peak_rss_mb"]
            print(f"  python -m rom operators: {r['stage_s']:.2f} s"
                  + (f", peak RSS {rss:.0f} MB" if rss else ""))
        print("  ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in r["ratios"].items()))
    print(json.dumps({"load_average": os.getloadavg()[0], "results": results}))


if __name__ == "__main__":
    main()
