"""MPI: the weak greedy with the FOM on 2 ranks selects the same parameters and builds the same
basis (up to sign) as on 1 rank."""
import numpy as np
import pytest

from conftest import rom_cli, tiny_study, write_yaml
from rom import artefacts


def rb_on_one_and_two_ranks(tmp_path, cfg):
    """The reduced_basis stage of a study on 1 and on 2 MPI ranks, from one operators artefact."""
    study = tmp_path / "study.yaml"
    rom_cli("configure", "--config", cfg, "--out", study)
    rom_cli("operators", "--study-config", study, "--out", tmp_path / "ops.h5")
    out = {}
    for ranks in (1, 2):
        rom_cli("reduced-basis", "--study-config", study, "--operators", tmp_path / "ops.h5",
                "--out", tmp_path / f"rb{ranks}.h5", mpi=ranks)
        out[ranks] = artefacts.read(tmp_path / f"rb{ranks}.h5")
    assert (out[1].attrs["mpi_ranks"], out[2].attrs["mpi_ranks"]) == (1, 2)
    return out


@pytest.mark.mpi
def test_greedy_basis_on_two_ranks_equals_one_rank(tmp_path):
    cfg = write_yaml(tmp_path / "cfg.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
        simulate={"chunk_size": 8, "petsc_options": {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-14,
                                                     "ksp_atol": 1e-30, "ksp_max_it": 2000}},
        rb={"enabled": True, "train_size": 80, "tol": 1e-5, "max_modes": 8}))
    out = rb_on_one_and_two_ranks(tmp_path, cfg)
    np.testing.assert_array_equal(out[1]["greedy_selected"].values, out[2]["greedy_selected"].values)
    V1, V2 = out[1]["basis"].values, out[2]["basis"].values
    assert V1.shape == V2.shape and V1.shape[0] >= 5
    sign = np.sign(np.einsum("ij,ij->i", V1, V2))
    assert np.abs(V1 - sign[:, None] * V2).max() < 1e-8 * np.abs(V1).max()


@pytest.mark.mpi
@pytest.mark.parametrize("case", ["outputs", "parabolic"])
def test_worker_ranks_serve_dual_solves_and_trajectories(tmp_path, case):
    """Under mpiexec -n 2 the worker rank takes part in the dual (transpose) solves of the outputs and
    in the FOM trajectories of POD-greedy: the same selections and greedy bounds as on 1 rank."""
    solver = {"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-14, "ksp_atol": 1e-30, "ksp_max_it": 2000}
    if case == "outputs":
        study = tiny_study(problem={"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
                           simulate={"chunk_size": 8, "petsc_options": solver},
                           rb={"enabled": True, "train_size": 60, "tol": 1e-4, "max_modes": 8,
                               "outputs": [{"name": "flux_left", "kind": "boundary_flux", "side": "left"}]})
        key = "output_flux_left_greedy_max_estimate"
    else:
        study = tiny_study(problem={"name": "heat", "mesh": {"n": 12}, "dt": 0.01, "steps": 10},
                           simulate={"chunk_size": 8, "petsc_options": solver},
                           rb={"enabled": True, "train_size": 30, "tol": 1e-3, "max_modes": 10})
        key = "greedy_max_estimate"
    out = rb_on_one_and_two_ranks(tmp_path, write_yaml(tmp_path / "cfg.yaml", study))
    np.testing.assert_array_equal(out[1]["greedy_selected"].values, out[2]["greedy_selected"].values)
    a, b = out[1][key].values, out[2][key].values
    assert a.shape == b.shape and len(a) >= 3
    # Solver tolerance 1e-14 on both: the estimates agree far below their own size.
    np.testing.assert_allclose(a, b, rtol=1e-6)
