"""romflow's operators stage against dolfinx assembling the same matrices (issue 24: within 2x of dolfinx in
time and peak memory, peak memory below 3x the CSR size of the matrices built), side by side on the same mesh:
the 3D heat sink of config/studies/heat_sink.yaml (examples/meshes/heat_sink.py, element size --size).

1. romflow: `python -m rom operators` on that mesh in a subprocess: its wall time, its peak RSS (the child's
   own, os.wait4), the assembly time it records in the artefact (`assembly_seconds`: pattern, X, M, the A_q,
   the f_p and the view triangles), and the CSR size of the matrices it built: X, M and the Q terms A_q, each
   counted as a CSR matrix of its own, nnz * (8 + 8) + (n + 1) * 8 bytes (romflow's int64 indices).
2. dolfinx in its own environment (.venv-dolfinx, `make dolfinx-env`; benchmarks/dolfinx_assemble.py): the
   same mesh given as arrays (nodes, tetrahedra, cell regions and the Robin facets, from the artefact), built
   with dolfinx.mesh.create_mesh on COMM_SELF, P1 Lagrange; one stiffness matrix per conductivity region, the
   Robin mass matrix on the 'convective' facets, M and X (PETSc AIJ matrices, each with its own pattern). Its
   assembly is timed alone (form compilation apart: FFCx caches it after the first run), and the whole script
   (less the export of its matrices for the check); its peak RSS is taken when the matrices are assembled.
3. The check: dolfinx's matrices, mapped to romflow's dof numbering by the dofs' coordinates, combined into
   romflow's terms (A_q = sum of the regions and Robin groups with that coefficient, times their numeric factor)
   equal romflow's A_q, X and M to 1e-11 relative in the Frobenius norm (measured: 3e-16 to 2e-12, roundoff).

    .venv/bin/python benchmarks/assembly_dolfinx.py [--size 0.0015] [--operators FILE.h5] [--workdir DIR]
        [--backend petsc|native] [--no-check]

The default size (1.5 mm, about 8000 nodes) runs in well under a minute once FFCx has compiled the forms;
1 mm is about 2.2e4 nodes. --operators reuses an operators artefact of the heat sink study (the stage is then
not run, nor timed). Prints both sides, the ratios, and a last line with one JSON object."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import scipy.sparse as sp
import yaml
from scipy.spatial import cKDTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from assembly_scale import heat_sink_mesh, study_for  # noqa: E402

DOLFINX_PYTHON = Path(os.environ.get("ROMFLOW_DOLFINX_VENV", ROOT / ".venv-dolfinx")) / "bin" / "python"
# romflow's MPI launcher and the system PETSc: not for dolfinx's own MPICH and PETSc
FOREIGN = ("OMPI_", "PMIX_", "PMI_", "HYDRA_", "PETSC_DIR", "PETSC_ARCH")


def run_measured(cmd, env=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a command; its stderr is shown on failure. The peak is
    /usr/bin/time's (the command's own: the ru_maxrss of a child of this process would count the image of
    this process it was forked from), else os.wait4's."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        wrap = ["/usr/bin/time", "-f", "%M", "-o", rss_file] if Path("/usr/bin/time").exists() else []
        with open(Path(tmp) / "out", "w+") as out, open(Path(tmp) / "err", "w+") as err:
            t0 = time.perf_counter()
            p = subprocess.Popen([str(c) for c in wrap + list(cmd)], stdout=out, stderr=err, cwd=ROOT, env=env)
            _, status, ru = os.wait4(p.pid, 0)
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0), err.seek(0)
            if p.returncode:
                sys.stderr.write(err.read())
                raise SystemExit(f"{cmd[0]} {cmd[1]}: exit status {p.returncode}")
            peak_kb = int(rss_file.read_text().split()[-1]) if wrap else ru.ru_maxrss
            return wall, peak_kb / 1024, out.read()


def theta_table(raw: dict):
    """romflow's terms of a declared diffusion problem (rom/hifi/problems/declared.py): a constant term first
    where a coefficient is a number, then one term per operator parameter in order of appearance; for each
    region and Robin group, (kind, name, term, numeric factor, theta_q at the reference values)."""
    prob = raw["problem"]
    ref = prob.get("reference", {})
    values = [("region", r, v) for r, v in prob["conductivity"].items()] + \
             [("group", g, spec["h"]) for g, spec in prob.get("robin", {}).items()]
    params = list(dict.fromkeys(v for _, _, v in values if isinstance(v, str)))
    numeric = any(not isinstance(v, str) for _, _, v in values)
    term = {p: i + int(numeric) for i, p in enumerate(params)}
    return [(kind, name, 0 if not isinstance(v, str) else term[v], 1.0 if isinstance(v, str) else float(v),
             float(ref.get(v, 1.0)) if isinstance(v, str) else 1.0) for kind, name, v in values]


def export_mesh(ops: Path, table, out: Path) -> dict:
    """The dolfinx script's input from the artefact: nodes, tetrahedra, cell regions (tag = region + 1) and
    the Robin facets (tag = group + 1)."""
    with h5py.File(ops, "r") as f:
        regions = json.loads(f.attrs["mesh_regions"])
        groups = json.loads(f.attrs["mesh_boundaries"])
        fgroup = f["mesh_facet_group"][()]
        r_tags = [regions.index(name) + 1 for kind, name, *_ in table if kind == "region"]
        g_tags = [groups.index(name) + 1 for kind, name, *_ in table if kind == "group"]
        keep = np.isin(fgroup + 1, g_tags)
        np.savez(out, nodes=f["nodes"][()], cells=f["cells"][()], cell_region=f["mesh_cell_region"][()] + 1,
                 facets=f["mesh_facets"][()][keep], facet_group=fgroup[keep] + 1,
                 regions=np.array(r_tags), groups=np.array(g_tags),
                 x_region=np.array([x for kind, _, _, fac, x in table if kind == "region"]) *
                 np.array([fac for kind, _, _, fac, _ in table if kind == "region"]),
                 x_group=np.array([x for kind, _, _, fac, x in table if kind == "group"]) *
                 np.array([fac for kind, _, _, fac, _ in table if kind == "group"]))
        return {"regions": r_tags, "groups": g_tags}


def romflow_matrices(ops: Path):
    with h5py.File(ops, "r") as f:
        n = int(np.asarray(f.attrs["n_dofs"]).ravel()[0])
        ip, ix = f["indptr"][()], f["indices"][()]

        def csr(v):
            return sp.csr_matrix((v, ix, ip), shape=(n, n))

        mats = {"X": csr(f["X"][()]), "M": csr(f["M"][()])}
        mats.update({f"A{q}": csr(v) for q, v in enumerate(f["A_terms"][()])})
        dof_xyz = f["nodes"][()][f["interior_nodes"][()]]
        info = {"n_dofs": n, "nnz": int(len(ix)), "index_bytes": int(ix.dtype.itemsize),
                "n_nodes": int(len(f["nodes"])), "n_cells": int(len(f["cells"])),
                "assembly_s": float(np.asarray(f.attrs["assembly_seconds"]).ravel()[0]),
                "in_stage_peak_mb": float(np.asarray(f.attrs["peak_memory_mb"]).ravel()[0])}
    k = len(mats)
    info["n_matrices"] = k
    info["csr_mb"] = k * (info["nnz"] * (8 + info["index_bytes"]) + (n + 1) * info["index_bytes"]) / 1e6
    return mats, dof_xyz, info


def check(mats, dof_xyz, dx_file: Path, table) -> dict:
    """Relative Frobenius errors of dolfinx's matrices, in romflow's dof numbering, against romflow's."""
    d = np.load(dx_file)
    n = len(dof_xyz)
    span = float(np.ptp(dof_xyz, axis=0).max())
    dist, perm = cKDTree(dof_xyz).query(d["dof_coordinates"])
    assert len(perm) == n and dist.max() < 1e-9 * span and len(np.unique(perm)) == n, \
        f"the dofs do not match by coordinates (max distance {dist.max():.2e}, {len(np.unique(perm))}/{n} distinct)"

    def mapped(i):
        A = sp.csr_matrix((d[f"data{i}"], d[f"indices{i}"], d[f"indptr{i}"]), shape=(n, n)).tocoo()
        return sp.csr_matrix((A.data, (perm[A.row], perm[A.col])), shape=(n, n))

    names = list(d["names"])
    dxm = {name: mapped(i) for i, name in enumerate(names)}
    regions = [nm for nm in names if nm.startswith("A_region")]
    groups = [nm for nm in names if nm.startswith("R_group")]
    parts = [(row, dxm[nm]) for row, nm in zip([t for t in table if t[0] == "region"], regions)] + \
            [(row, dxm[nm]) for row, nm in zip([t for t in table if t[0] == "group"], groups)]
    want = {"X": dxm["X"], "M": dxm["M"]}
    for (_, _, q, fac, _), A in parts:
        want[f"A{q}"] = want.get(f"A{q}", 0) + fac * A
    assert set(want) == set(mats), f"terms differ: dolfinx {sorted(want)}, romflow {sorted(mats)}"
    return {k: float(sp.linalg.norm(want[k] - mats[k]) / sp.linalg.norm(mats[k])) for k in mats}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=float, default=0.0015, help="heat sink element size in metres (default 1.5 mm)")
    ap.add_argument("--operators", type=Path, help="an existing operators artefact of the heat sink study to reuse")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/assembly_dolfinx"))
    ap.add_argument("--backend", choices=("petsc", "native"), default="petsc",
                    help="dolfinx's matrices: PETSc AIJ (default) or dolfinx.la.MatrixCSR")
    ap.add_argument("--no-check", action="store_true", help="skip exporting dolfinx's matrices and the comparison")
    a = ap.parse_args()
    if not DOLFINX_PYTHON.exists():
        raise SystemExit(f"no dolfinx environment at {DOLFINX_PYTHON.parent.parent} (make dolfinx-env builds one)")
    a.workdir.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((ROOT / "config/studies/heat_sink.yaml").read_text())
    table = theta_table(raw)
    load0 = os.getloadavg()[0]
    print(f"{platform.node()}: {os.cpu_count()} CPUs, load average {load0:.2f}")
    r: dict = {"size": None if a.operators else a.size, "backend": a.backend}

    # -- romflow: the operators stage ---------------------------------------------------------------------
    if a.operators:
        ops = a.operators.resolve()
        r["romflow_stage"] = None
    else:
        msh = heat_sink_mesh(a.size, a.workdir)
        _, study_path = study_for(msh, a.workdir)
        ops = a.workdir / f"{msh.stem}.operators.h5"
        wall, peak, _ = run_measured([sys.executable, "-m", "rom", "operators", "--study-config", study_path,
                                      "--out", ops])
        r["romflow_stage"] = {"wall_s": wall, "peak_rss_mb": peak}
    mats, dof_xyz, info = romflow_matrices(ops)
    r["romflow"] = info

    # -- dolfinx in its own environment ---------------------------------------------------------------------
    stem = ops.name.removesuffix(".h5")
    mesh_npz, dx_out = a.workdir / f"{stem}.dolfinx_mesh.npz", a.workdir / f"{stem}.dolfinx_matrices.npz"
    export_mesh(ops, table, mesh_npz)
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN)}
    cmd = [DOLFINX_PYTHON, ROOT / "benchmarks" / "dolfinx_assemble.py", mesh_npz, "--backend", a.backend]
    # once without the export: the form compilation (FFCx's cache) out of the measured run
    run_measured(cmd, env)
    wall, peak, out = run_measured(cmd + ([] if a.no_check else ["--out", dx_out]), env)
    dx = json.loads(out.strip().splitlines()[-1])
    # the whole process less the export for the check (not dolfinx's work; romflow's writing is its own)
    dx["wall_s"], dx["peak_rss_process_mb"] = wall - dx.get("export_s", 0.0), peak
    dx["csr_mb"] = sum(nz * (8 + 4) + (dx["dofs"] + 1) * 4 for nz in dx["nnz"].values()) / 1e6  # PETSc: int32
    r["dolfinx"] = dx
    if not a.no_check:
        r["rel_error"] = check(mats, dof_xyz, dx_out, table)
        r["max_rel_error"] = max(r["rel_error"].values())

    # -- side by side -----------------------------------------------------------------------------------------
    csr = info["csr_mb"]
    dx_peak = dx["peak_rss_after_assembly_mb"]
    ratios = {"assembly romflow/dolfinx": info["assembly_s"] / dx["assembly_s"]}
    if r["romflow_stage"]:
        st = r["romflow_stage"]
        ratios["process romflow/dolfinx"] = st["wall_s"] / dx["wall_s"]
        ratios["peak RSS romflow/dolfinx"] = st["peak_rss_mb"] / dx_peak
        ratios["romflow peak/CSR"] = st["peak_rss_mb"] / csr
    ratios["dolfinx peak/CSR"] = dx_peak / csr
    ratios["dolfinx peak/own CSR"] = dx_peak / dx["csr_mb"]
    r["ratios"] = ratios
    print(f"\nheat sink{'' if a.operators else f' --size {a.size:g}'}: {info['n_nodes']} nodes, {info['n_cells']} "
          f"tetrahedra, {info['n_dofs']} dofs, {info['nnz']} nonzeros; {info['n_matrices']} matrices "
          f"(X, M, {info['n_matrices'] - 2} A_q): CSR {csr:.1f} MB")
    print(f"{'':28s}{'romflow':>12s}{'dolfinx':>12s}{'ratio':>8s}")
    print(f"{'assembly (s)':28s}{info['assembly_s']:12.3f}{dx['assembly_s']:12.3f}"
          f"{ratios['assembly romflow/dolfinx']:8.2f}")
    if r["romflow_stage"]:
        print(f"{'whole process (s)':28s}{st['wall_s']:12.2f}{dx['wall_s']:12.2f}"
              f"{ratios['process romflow/dolfinx']:8.2f}")
        print(f"{'peak RSS (MB)':28s}{st['peak_rss_mb']:12.0f}{dx_peak:12.0f}{ratios['peak RSS romflow/dolfinx']:8.2f}")
        print(f"{'peak RSS / CSR size':28s}{ratios['romflow peak/CSR']:12.1f}{ratios['dolfinx peak/CSR']:12.1f}")
    print(f"dolfinx ({a.backend}): import {dx['import_s']:.2f} s, mesh {dx['mesh_s']:.2f} s, forms (JIT cached) "
          f"{dx['forms_s']:.2f} s, assembly {dx['assembly_s']:.3f} s ("
          + ", ".join(f"{k} {v:.3f}" for k, v in dx["assembly_each_s"].items())
          + f"); peak RSS {dx_peak:.0f} MB after the assembly, {peak:.0f} MB for the whole script; its own CSR "
          f"{dx['csr_mb']:.1f} MB")
    if "rel_error" in r:
        print("check, relative Frobenius error in romflow's numbering: "
              + ", ".join(f"{k} {v:.1e}" for k, v in r["rel_error"].items()))
        assert r["max_rel_error"] < 1e-11, f"dolfinx and romflow differ: {r['rel_error']}"
    r["load_average"] = [load0, os.getloadavg()[0]]
    print(json.dumps(r))


if __name__ == "__main__":
    main()
