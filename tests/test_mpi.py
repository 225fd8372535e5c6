"""MPI: snapshots of `python -m rom simulate` on 2 ranks equal those on 1 rank."""
import numpy as np
import pytest

from conftest import rom_cli
from rom import artefacts


@pytest.mark.mpi
def test_two_ranks_equal_one_rank(study_file, tmp_path):
    params = tmp_path / "parameters.h5"
    outs = {}
    for ranks in (1, 2):
        outs[ranks] = tmp_path / f"chunk_{ranks}.h5"
        rom_cli("simulate", "--study-config", study_file, "--parameters", params, "--set", "train",
                "--chunk", "0", "--out", outs[ranks], mpi=ranks)
    one, two = artefacts.read(outs[1]), artefacts.read(outs[2])
    assert one.attrs["mpi_ranks"] == 1 and two.attrs["mpi_ranks"] == 2
    assert one["converged"].values.all() and two["converged"].values.all()
    u1, u2 = one["u"].values, two["u"].values
    assert u1.shape == (4, 11 * 11)
    rel = np.linalg.norm(u1 - u2, axis=1) / np.linalg.norm(u1, axis=1)
    assert rel.max() < 1e-8, rel


@pytest.mark.mpi
def test_transient_two_ranks_equal_one_rank(tmp_path):
    from conftest import tiny_study, write_yaml

    cfg = write_yaml(tmp_path / "heat.yaml", tiny_study(
        name="heat_tiny", problem={"name": "heat", "mesh": {"n": 10}, "dt": 0.01, "steps": 6}))
    study = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    rom_cli("sample", "--study-config", study, "--out", tmp_path / "p.h5")
    for ranks in (1, 2):
        rom_cli("simulate", "--study-config", study, "--parameters", tmp_path / "p.h5", "--set", "test",
                "--chunk", "0", "--out", tmp_path / f"h{ranks}.h5", mpi=ranks)
    u1 = artefacts.read(tmp_path / "h1.h5")["u"].values
    u2 = artefacts.read(tmp_path / "h2.h5")["u"].values
    assert u1.shape == (3, 7, 81)
    assert np.abs(u1 - u2).max() < 1e-8 * np.abs(u1).max()
