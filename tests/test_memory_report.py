"""The peak resident memory of every MPI rank of a stage: in its log and in every artefact it writes
(rom.memory; rom.cli.Context.write and finish)."""
import re
import sys

import numpy as np
import pytest
import xarray as xr

from conftest import rom_cli, tiny_study, write_yaml
from rom import artefacts, memory


def test_one_process_reports_its_own_peak_and_never_imports_mpi4py(tmp_path):
    mpi_loaded = "mpi4py.MPI" in sys.modules
    figures = memory.per_rank()
    assert len(figures) == 1 and 10 < figures[0] < 1e6  # MB: a Python process with numpy holds > 10 MB
    artefacts.write(xr.Dataset({"a": ("x", np.arange(3.0))}), tmp_path / "a.h5", None, "test")
    ds = artefacts.read(tmp_path / "a.h5")
    assert ds.attrs["ranks"] == 1
    peaks = np.atleast_1d(ds.attrs["peak_rss_mb_per_rank"])
    assert peaks.shape == (1,) and peaks[0] >= figures[0] - 0.1
    assert ("mpi4py.MPI" in sys.modules) == mpi_loaded


def _per_rank_line(stdout: str) -> list[float]:
    found = re.findall(r"peak memory per rank: ([0-9, ?]+) MB \((\d+) ranks?\)", stdout)
    assert found, stdout[-3000:]
    values, ranks = found[-1]
    figures = [float(v) for v in values.split(", ")]
    assert len(figures) == int(ranks)
    return figures


@pytest.mark.mpi
def test_simulate_on_two_ranks_logs_and_records_both_ranks(study_file, tmp_path):
    out = tmp_path / "chunk.h5"
    proc = rom_cli("simulate", "--study-config", study_file, "--parameters", tmp_path / "parameters.h5", "--set",
                   "train", "--chunk", "0", "--out", out, mpi=2)
    logged = _per_rank_line(proc.stdout)
    assert len(logged) == 2 and min(logged) > 10
    ds = artefacts.read(out)
    peaks = np.asarray(ds.attrs["peak_rss_mb_per_rank"], dtype=float)
    assert ds.attrs["ranks"] == 2 and peaks.shape == (2,)
    assert np.all(np.isfinite(peaks)) and np.all(peaks > 10), peaks
    # rank 0 wrote before its end-of-stage figure: the artefact's figure is no larger than the logged one
    assert peaks[0] <= logged[0] + 1


@pytest.mark.mpi
def test_reduced_basis_on_two_ranks_fills_in_the_serving_rank_at_the_end(tmp_path):
    """Rank 1 serves FOM solves while rank 0 writes: its figure is unknown at write time and filled into
    the artefact when the stage ends (no collective operation at either point)."""
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": 12}, "blocks": [2, 2]},
        rb={"enabled": True, "train_size": 20, "tol": 1e-3, "max_modes": 4}))
    study = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    rom_cli("operators", "--study-config", study, "--out", tmp_path / "ops.h5")
    proc = rom_cli("reduced-basis", "--study-config", study, "--operators", tmp_path / "ops.h5",
                   "--out", tmp_path / "rb.h5", mpi=2)
    assert len(_per_rank_line(proc.stdout)) == 2
    ds = artefacts.read(tmp_path / "rb.h5")
    peaks = np.asarray(ds.attrs["peak_rss_mb_per_rank"], dtype=float)
    assert ds.attrs["ranks"] == 2 and peaks.shape == (2,) and np.all(peaks > 10), peaks
    assert ds.attrs["peak_rss_when"] in ("written", "stage end")


def test_a_stage_without_mpi_logs_one_figure(study_file, tmp_path):
    proc = rom_cli("simulate", "--study-config", study_file, "--parameters", tmp_path / "parameters.h5", "--set",
                   "test", "--chunk", "0", "--out", tmp_path / "c.h5")
    assert len(_per_rank_line(proc.stdout)) == 1
    ds = artefacts.read(tmp_path / "c.h5")
    assert ds.attrs["ranks"] == 1 and np.atleast_1d(ds.attrs["peak_rss_mb_per_rank"])[0] > 10
    assert ds.attrs["peak_rss_when"] == "written"
