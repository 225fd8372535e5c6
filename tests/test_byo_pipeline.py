"""Bring your own problem through the real `snakemake` CLI, in one invocation: a problem class from a module
beside the study file, and a black-box command (the example script of examples/blackbox) whose mesh is
made at study time and which fails for some samples: those are recorded with their exit code and stderr,
the others kept, equal to what the script computes on its own."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import ROOT, run, write_yaml
from rom import artefacts, config
from test_plugin import PLUGIN

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
SCRIPT = ROOT / "examples" / "blackbox" / "poisson.py"
FAIL_ABOVE = 2.5


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    import textwrap

    work = tmp_path_factory.mktemp("byo")
    d = work / "study"
    d.mkdir()
    (d / "my_heat.py").write_text(textwrap.dedent(PLUGIN))
    bb = {"name": "bb", "problem": {
        "name": "external", "parameters": ["kappa", "x0"], "matrices": True,
        "command": f"{{python}} {SCRIPT} --mu {{mu}} --mesh {{mesh}} --out {{out}} --operator {{operator}} "
                   f"--rhs {{rhs}} --fail-above {FAIL_ABOVE}",
        "mesh": {"file": "meshes/square.msh", "generate": "{python} {root}/examples/meshes/square.py {file} --size 0.2"}},
        "parameters": {"kappa": {"bounds": [0.5, 4.0]}, "x0": {"bounds": [0.3, 0.7]}},
        "design": {"method": "lhs", "train": {"size": 4, "seed": 3}, "test": {"size": 0}},
        "simulate": {"chunk_size": 4, "max_failed_fraction": 0.75}}
    write_yaml(d / "bb.yaml", bb)
    # `name` labels the artefacts (rom.artefacts.provenance reads it); `class` chooses the class.
    plug = {"name": "plug", "problem": {"name": "scaled_poisson", "class": "my_heat:ScaledPoisson", "n": 10},
            "include_studies": ["bb.yaml"],
            "design": {"method": "lhs", "train": {"size": 5, "seed": 1}, "test": {"size": 0}},
            "simulate": {"chunk_size": 5}}
    write_yaml(d / "cfg.yaml", plug)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", work, "--configfile", d / "cfg.yaml", "--cores", "2",
         "results/plug/snapshots/train.h5", "results/bb/snapshots/train.h5"], timeout=900)
    return work / "results", d


@pytest.mark.pipeline
def test_a_plugin_class_beside_the_study_runs(results):
    res, d = results
    resolved = config.load(res / "plug" / "study.yaml")
    assert resolved["problem"]["class"] == f"{(d / 'my_heat.py').resolve()}:ScaledPoisson"
    snap = artefacts.read(res / "plug" / "snapshots" / "train.h5")
    assert snap["converged"].values.all() and snap["u"].shape == (5, 81)
    # u(a, b) = (b / a) u(1, 1): every snapshot scaled back is the same field, to the solver tolerance.
    mu = snap["mu"].values
    scaled = snap["u"].values * (mu[:, :1] / mu[:, 1:])
    assert np.abs(scaled - scaled[0]).max() < 1e-9 * np.abs(scaled).max()


@pytest.mark.pipeline
def test_black_box_snapshots_equal_the_script_and_failures_are_recorded(results, tmp_path):
    res, d = results
    assert (d / "meshes" / "square.msh").is_file()  # made by mesh.generate at validation
    snap = artefacts.read(res / "bb" / "snapshots" / "train.h5")
    kappa = snap["mu"].values[:, 0]
    ok = snap["converged"].values.astype(bool)
    np.testing.assert_array_equal(ok, kappa <= FAIL_ABOVE)
    assert 1 <= (~ok).sum() <= 2 and snap.attrs["n_failed"] == (~ok).sum()  # LHS: one sample per quarter
    for k, reason in zip(kappa[~ok], snap["reason"].values[~ok]):
        assert reason == f"EXIT_3: poisson.py: kappa = {k!r} above {FAIL_ABOVE}: refusing to solve", reason
    assert np.isnan(snap["u"].values[~ok]).all()
    mesh = config.load(res / "bb" / "study.yaml")["problem"]["mesh"]["file"]
    for mu, u in zip(snap["mu"].values[ok], snap["u"].values[ok]):
        out = tmp_path / "u.h5"
        subprocess.run([sys.executable, SCRIPT, "--mu", ",".join(repr(float(v)) for v in mu), "--mesh", mesh,
                        "--out", out], check=True)
        with h5py.File(out) as h5:
            np.testing.assert_array_equal(u, h5["u"][()])
