"""A fields-only black box through the real `snakemake` CLI: POD and POD+GP run without matrices; the solver
script beside the study ({study_dir}, problem.inputs) writes its field in a permuted node order with `x`
(mapped back, recorded once); simulate.mpi_ranks = 2 runs it under a launcher template (a wrapper script
that records its call); the report names the black box and its wall time; and editing the solver script
(an input) plans the snapshots again."""
import importlib.util
import json
import os

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from conftest import ROOT, run, write_yaml
from rom import artefacts

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
POISSON = ROOT / "examples" / "blackbox" / "poisson.py"

SOLVER = f"""
import argparse, importlib.util, h5py, meshio, numpy as np, scipy.sparse.linalg as spla
spec = importlib.util.spec_from_file_location("poisson", {str(POISSON)!r})
poisson = importlib.util.module_from_spec(spec)
spec.loader.exec_module(poisson)
p = argparse.ArgumentParser()
for a in ("--mu", "--mesh", "--out"):
    p.add_argument(a)
args = p.parse_args()
kappa, x0 = (float(v) for v in args.mu.split(","))
A, b = poisson.assemble(args.mesh, kappa, x0)
u = spla.spsolve(A.tocsc(), b)
xy = meshio.read(args.mesh).points  # 3 columns, z = 0
order = np.random.default_rng(7).permutation(len(u))  # this solver numbers its nodes its own way
with h5py.File(args.out, "w") as h5:
    h5["u"] = u[order]
    h5["x"] = xy[order]
"""

LAUNCH = """#!/bin/sh
# a stand-in for the solver stack's own mpiexec: records its call, runs the command once
printf "%s\n" "$*" >> "$(dirname "$0")/launcher_calls.txt"
shift 2
exec "$@"
"""


def snakemake(work, study, *args, **kw):
    return run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", work, "--configfile", study, "--cores", "2", *args],
               timeout=900, **kw)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    work = tmp_path_factory.mktemp("bbfields")
    d = work / "study"
    d.mkdir()
    (d / "solver.py").write_text(SOLVER)
    (d / "launch.sh").write_text(LAUNCH)
    os.chmod(d / "launch.sh", 0o755)
    study = {"name": "bbf", "problem": {
        "name": "external", "parameters": ["kappa", "x0"],
        "command": "{python} {study_dir}/solver.py --mu {mu} --mesh {mesh} --out {out}",
        "inputs": ["solver.py"], "launcher": "{study_dir}/launch.sh -n {ranks}",
        "mesh": {"file": "meshes/square.msh", "generate": "{python} {root}/examples/meshes/square.py {file} --size 0.2"}},
        "parameters": {"kappa": {"bounds": [0.5, 4.0]}, "x0": {"bounds": [0.3, 0.7]}},
        "design": {"method": "lhs", "train": {"size": 8, "seed": 3}, "test": {"size": 3, "seed": 4}},
        "simulate": {"chunk_size": 8, "mpi_ranks": 2},
        "pod": {"tol": 1e-10, "max_modes": 6},
        "gp": {"enabled": True, "max_modes": 3, "restarts": 1, "iterations": 60, "folds": 2}}
    write_yaml(d / "bbf.yaml", study)
    snakemake(work, d / "bbf.yaml", "results/bbf/sections/gp.json", "results/bbf/sections/simulate.json",
              "results/bbf/sections/pod.json")
    return work, d


@pytest.mark.pipeline
def test_pod_and_gp_run_for_a_fields_only_black_box(pipeline):
    work, _ = pipeline
    res = work / "results" / "bbf"
    assert artefacts.read(res / "rom" / "pod.h5").attrs["n_modes"] >= 1
    gp = json.loads((res / "sections" / "gp.json").read_text())
    assert gp["metrics"], gp
    text = json.loads((res / "sections" / "simulate.json").read_text())["text"]
    assert "by a black box: {python}, median wall time per sample " in text and "PETSc" not in text, text


@pytest.mark.pipeline
def test_a_permuted_field_is_mapped_and_the_launcher_template_is_used(pipeline):
    work, d = pipeline
    res = work / "results" / "bbf"
    spec = importlib.util.spec_from_file_location("poisson_ref", POISSON)
    poisson = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(poisson)
    mesh = str(d / "meshes" / "square.msh")
    for set_name in ("train", "test"):
        snap = artefacts.read(res / "snapshots" / f"{set_name}.h5")
        assert snap["converged"].values.all() and snap.attrs["node_order"] == "permuted"
        for mu, u in zip(snap["mu"].values, snap["u"].values):
            A, b = poisson.assemble(mesh, *mu)
            np.testing.assert_allclose(u, spla.spsolve(A.tocsc(), b), rtol=0, atol=1e-12)  # the unpermuted field
    log = (res / "logs" / "simulate" / "train_chunk0.log").read_text()
    assert log.count("is a permutation of problem.mesh's nodes") == 1, log
    calls = (d / "launcher_calls.txt").read_text().splitlines()
    assert len(calls) == 11 and all(c.startswith(f"-n 2 {os.sys.executable} {d}/solver.py --mu ") for c in calls), calls


@pytest.mark.pipeline
def test_editing_an_input_plans_the_snapshots_again(pipeline):
    work, d = pipeline
    targets = ["results/bbf/snapshots/train.h5"]
    assert "Nothing to be done" in snakemake(work, d / "bbf.yaml", "-n", *targets).stdout
    with open(d / "solver.py", "a") as fh:
        fh.write("# tuned the solver\n")
    out = snakemake(work, d / "bbf.yaml", "-n", *targets).stdout
    assert "simulate" in out and "gather" in out and "Nothing to be done" not in out, out
