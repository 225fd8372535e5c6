"""The tiny study through Snakemake: every artefact with its shape, idempotent rerun, lint, report."""
import numpy as np
import pytest
import xarray as xr

from conftest import ROOT, rom_cli, run, tiny_study, write_yaml
from rom import artefacts

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]


def snakemake(workdir, *args, check=True):
    return run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", workdir, "--configfile", workdir / "cfg.yaml", *args],
               check=check, timeout=600)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pipeline")
    write_yaml(workdir / "cfg.yaml", tiny_study())
    first = snakemake(workdir, "--cores", "2")
    return workdir, first


@pytest.mark.pipeline
def test_every_artefact_has_the_expected_shape(pipeline):
    workdir, _ = pipeline
    res = workdir / "results" / "tiny"
    n_dofs = 11 * 11
    params = xr.open_dataset(res / "parameters.h5")
    assert params["mu_train"].shape == (6, 4) and params["mu_test"].shape == (3, 4)
    assert ((params["mu_train"] >= 0.1) & (params["mu_train"] <= 1.0)).all()
    ops = xr.open_dataset(res / "fom" / "operators.h5")
    assert ops["A_terms"].shape[0] == 4 and ops.attrs["n_dofs"] == n_dofs
    for name, n in (("train", 6), ("test", 3)):
        snap = xr.open_dataset(res / "snapshots" / f"{name}.h5")
        assert snap["u"].dims == ("sample", "dof") and snap["u"].shape == (n, n_dofs)
        assert snap["converged"].values.all() and snap.attrs["problem"] == "thermal_block"
        np.testing.assert_array_equal(snap["mu"].values, params[f"mu_{name}"].values)
    assert len(list((res / "snapshots" / "train").glob("chunk*.h5"))) == 2  # 6 samples in chunks of 4
    pod = xr.open_dataset(res / "rom" / "pod.h5")
    N = pod.attrs["n_modes"]
    assert pod["modes"].shape == (N, n_dofs) and 1 <= N <= 6
    # 6 train snapshots of a 4-parameter problem: test errors fall monotonically from 1 (N = 0).
    err = pod["test_error"].values.max(axis=1)
    assert err[0] == pytest.approx(1.0) and err[-1] < 0.3 and np.all(np.diff(err) <= 1e-12)
    html = (res / "report.html").read_text()
    # solutions, iterations along the solve order, POD spectrum, POD projection errors
    assert html.count("data:image/png;base64") == 4
    train = xr.open_dataset(res / "snapshots" / "train.h5")
    assert sorted(train["chunk"].values.tolist()) == [0, 0, 0, 0, 1, 1]  # one path cut into chunks of 4
    assert sorted(train["solve_position"].values.tolist()) == [0, 0, 1, 1, 2, 3]
    train.close()
    for path in res.rglob("*.h5"):
        xr.open_dataset(path).close()  # every artefact opens with xarray


@pytest.mark.pipeline
def test_rerun_does_nothing_and_reproduces(pipeline):
    workdir, _ = pipeline
    proc = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    # A changed stage setting reruns that stage and what depends on it, not the simulations.
    changed = tiny_study()
    changed["pod"]["max_modes"] = 3
    write_yaml(workdir / "cfg.yaml", changed)
    plan = snakemake(workdir, "--cores", "2", "-n").stdout
    write_yaml(workdir / "cfg.yaml", tiny_study())
    assert "rule pod:" in plan and "rule figures_pod:" in plan and "rule report:" in plan
    assert "rule simulate:" not in plan and "rule sample:" not in plan and "rule gather:" not in plan
    assert "Nothing to be done" in snakemake(workdir, "--cores", "2", "-n").stdout
    # Same config, fresh directory: identical numbers (seeds come from the config).
    other = workdir.parent / "again"
    other.mkdir(exist_ok=True)
    write_yaml(other / "cfg.yaml", tiny_study())
    snakemake(other, "--cores", "2", "results/tiny/snapshots/train.h5")
    a = artefacts.read(workdir / "results/tiny/snapshots/train.h5")["u"].values
    b = artefacts.read(other / "results/tiny/snapshots/train.h5")["u"].values
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())


@pytest.mark.pipeline
def test_snakemake_report_with_captions(pipeline):
    workdir, _ = pipeline
    snakemake(workdir, "--report", workdir / "snakemake_report.html")
    page = (workdir / "snakemake_report.html").read_text()
    assert "test snapshots onto the first N POD modes" in page  # a caption made it in


@pytest.mark.pipeline
def test_diverged_solves_are_recorded_and_fail_the_stage_only_above_the_fraction(tmp_path):
    study = tiny_study()
    study["simulate"]["petsc_options"] = {"ksp_type": "cg", "pc_type": "none", "ksp_rtol": 1e-12, "ksp_max_it": 3}
    cfg = write_yaml(tmp_path / "cfg.yaml", study)
    s = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", s)
    rom_cli("sample", "--study-config", s, "--out", tmp_path / "p.h5")
    rom_cli("simulate", "--study-config", s, "--parameters", tmp_path / "p.h5", "--set", "test", "--chunk", "0",
            "--out", tmp_path / "c0.h5")
    chunk = artefacts.read(tmp_path / "c0.h5")
    assert (chunk["converged"].values == 0).all()
    assert set(chunk["reason"].values) == {"DIVERGED_MAX_IT"}  # alias DIVERGED_ITS
    assert np.isnan(chunk["u"].values).all()
    proc = rom_cli("gather", "--study-config", s, tmp_path / "c0.h5", "--out", tmp_path / "test.h5", check=False)
    assert proc.returncode == 2 and "3 of 3 samples failed (3 x DIVERGED_MAX_IT)" in proc.stderr
    assert (tmp_path / "c0.h5").exists()  # finished work is kept
    # The command line wins over the config: -ksp_max_it 500 makes every solve converge.
    rom_cli("simulate", "--study-config", s, "--parameters", tmp_path / "p.h5", "--set", "test", "--chunk", "0",
            "--out", tmp_path / "c1.h5", "-ksp_max_it", "500")
    assert artefacts.read(tmp_path / "c1.h5")["converged"].values.all()
