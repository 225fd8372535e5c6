"""Parameter studies from config files: sweep expansion, full-order reuse, and the comparison table."""
import csv
import json

import numpy as np
import pytest

from conftest import ROOT, run, tiny_study, write_yaml
from rom import artefacts
from rom.config import ConfigError, studies
from rom.sweeps import fom_sources

SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"


def test_every_combination_becomes_a_validated_study():
    out = studies(tiny_study(sweeps={"pod.max_modes": [2, 4, 8], "pod.tol": [1e-4, 1e-8]}))
    assert len(out) == 1 + 3 * 2
    child = out["tiny-max_modes4-tol1e-08"]
    assert child["pod"] == {"max_modes": 4, "tol": 1e-8} and child["sweeps"] == {}
    assert child["simulate"]["petsc_options"]  # defaults filled like any study
    # A pod sweep changes no full-order setting: every point reuses the parent's artefacts.
    assert fom_sources(out) == {name: "tiny" for name in out if name != "tiny"}


def test_a_full_order_sweep_computes_its_own_snapshots():
    out = studies(tiny_study(sweeps={"problem.mesh.n": [8, 12]}))
    assert out["tiny-n8"]["problem"]["mesh"]["n"] == 8
    assert fom_sources(out) == {"tiny-n12": "tiny"}  # n=12 is the parent's own mesh; n=8 is not


@pytest.mark.parametrize("sweeps, message", [
    ({"pod.tolerance": [1e-4]}, "sweeps point pod.tolerance=0.0001: pod.tolerance: unknown key"),
    ({"pod.max_modes": [0, 4]}, "sweeps point pod.max_modes=0: pod.max_modes = 0: expected a value >= 1"),
    ({"name.x": [1]}, "sweeps.name.x: cannot sweep name"),
    ({"pod.tol": []}, "sweeps.pod.tol = []: expected at least 1 items"),
])
def test_bad_sweeps_fail_in_one_line_naming_the_point(sweeps, message):
    with pytest.raises(ConfigError) as err:
        studies(tiny_study(sweeps=sweeps))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sweep")
    write_yaml(workdir / "cfg.yaml", tiny_study(sweeps={"pod.max_modes": [2, 4]}))
    proc = run([SNAKEMAKE, "results/comparison.html", "--cores", "2", "-s", ROOT / "Snakefile", "-d", workdir,
                "--configfile", workdir / "cfg.yaml"], timeout=600)
    return workdir, proc.stdout + proc.stderr


@pytest.mark.pipeline
def test_sweep_points_reuse_the_parents_snapshots(swept):
    workdir, log = swept
    stats = dict(line.split() for line in log.splitlines() if len(line.split()) == 2 and line.split()[1].isdigit())
    assert stats["simulate"] == "3" and stats["pod"] == "3"  # 2 train chunks + 1 test chunk, once; 3 PODs
    res = workdir / "results"
    for child in ("tiny-max_modes2", "tiny-max_modes4"):
        link = res / child / "snapshots" / "train.h5"
        assert link.is_symlink() and link.resolve() == (res / "tiny" / "snapshots" / "train.h5").resolve()
        assert not (res / child / "snapshots" / "train").exists()  # no chunks of its own


@pytest.mark.pipeline
def test_comparison_table_across_sweep_points(swept):
    workdir, _ = swept
    res = workdir / "results"
    with open(res / "comparison.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["study"] for r in rows] == ["tiny", "tiny-max_modes2", "tiny-max_modes4"]
    assert [r["sweep of"] for r in rows] == ["", "tiny", "tiny"]
    assert [r["full-order artefacts of"] for r in rows] == ["tiny"] * 3
    assert [r["pod.max_modes"] for r in rows] == ["6", "2", "4"]
    modes = [int(r["Proper orthogonal decomposition: POD modes"]) for r in rows]
    assert modes == [artefacts.read(res / s / "rom/pod.h5").attrs["n_modes"] for s in ("tiny", "tiny-max_modes2",
                                                                                         "tiny-max_modes4")]
    assert modes == [6, 2, 4]
    err = [float(r["Proper orthogonal decomposition: max test projection error with all modes"]) for r in rows]
    assert err[0] < err[2] < err[1]  # more modes, smaller projection error
    # The same numbers as the POD artefacts: the 2-mode basis is the leading part of the 6-mode one.
    full = artefacts.read(res / "tiny/rom/pod.h5")["test_error"].values.max(axis=1)
    np.testing.assert_allclose(err, full[[6, 2, 4]], rtol=1e-12)
    section = json.loads((res / "comparison.json").read_text())
    assert section["metrics"]["sweep points"] == 2 and section["metrics"]["studies reusing full-order artefacts"] == 2
    html = (res / "comparison.html").read_text()
    assert html.count("<tr><td>tiny") == 3 and "data:image/png;base64" in html  # 3 rows, the figure embedded


@pytest.mark.pipeline
def test_comparison_lists_every_metric_that_differs(swept):
    workdir, _ = swept
    section = json.loads((workdir / "results" / "comparison.json").read_text())
    differ = section["tables"]["metrics that differ"]
    assert differ["columns"] == ["metric", "tiny", "tiny-max_modes2", "tiny-max_modes4"]
    rows = {r[0]: r[1:] for r in differ["rows"]}
    # POD sizes 6/2/4 and their errors differ; the full-order metrics (same snapshots) do not.
    assert rows["Proper orthogonal decomposition: POD modes"] == [6, 2, 4]
    assert "Proper orthogonal decomposition: max test projection error with all modes" in rows
    assert not any(k.startswith("Full-order simulations") for k in rows), sorted(rows)
    assert section["metrics"]["metrics that differ"] == len(rows) >= 2
