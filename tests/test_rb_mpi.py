"""MPI: the weak greedy with the FOM on 2 ranks selects the same parameters and builds the same
basis (up to sign) as on 1 rank."""
import numpy as np
import pytest

from conftest import rom_cli, tiny_study, write_yaml
from rom import artefacts


@pytest.mark.mpi
def test_greedy_basis_on_two_ranks_equals_one_rank(tmp_path):
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
        simulate={"chunk_size": 8, "petsc_options": {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-14,
                                                     "ksp_atol": 1e-30, "ksp_max_it": 2000}},
        rb={"enabled": True, "train_size": 80, "tol": 1e-5, "N_max": 8}))
    study = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    rom_cli("operators", "--study-config", study, "--out", tmp_path / "ops.h5")
    out = {}
    for ranks in (1, 2):
        rom_cli("reduced-basis", "--study-config", study, "--operators", tmp_path / "ops.h5",
                "--out", tmp_path / f"rb{ranks}.h5", mpi=ranks)
        out[ranks] = artefacts.read(tmp_path / f"rb{ranks}.h5")
    assert (out[1].attrs["mpi_ranks"], out[2].attrs["mpi_ranks"]) == (1, 2)
    np.testing.assert_array_equal(out[1]["greedy_selected"].values, out[2]["greedy_selected"].values)
    V1, V2 = out[1]["basis"].values, out[2]["basis"].values
    assert V1.shape == V2.shape and V1.shape[0] >= 5
    sign = np.sign(np.einsum("ij,ij->i", V1, V2))
    assert np.abs(V1 - sign[:, None] * V2).max() < 1e-8 * np.abs(V1).max()
