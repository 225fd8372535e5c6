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


@pytest.mark.mpi
def test_declared_3d_diffusion_two_ranks_equal_one_rank(tmp_path):
    """A tetrahedral gmsh mesh, a declared problem with every boundary kind: the row-distributed assembly
    (each rank its own cells) and solve on 2 ranks give the serial snapshots to the solver tolerance."""
    import gmsh_meshes

    mesh = gmsh_meshes.box(3, 0.1, tmp_path / "part.msh", regions=2)
    study = {"name": "part3d", "problem": {
        "name": "diffusion", "mesh": {"file": str(mesh)}, "conductivity": {"left": "k", "right": 2.0},
        "source": {"left": 1.0}, "dirichlet": {"x0": "g"}, "neumann": {"y1": 0.5}, "robin": {"x1": {"h": "h", "u_inf": 0.2}}},
        "parameters": {"k": {"bounds": [0.5, 5.0]}, "g": {"bounds": [0.0, 1.0]}, "h": {"bounds": [0.5, 2.0]}},
        "design": {"train": {"size": 3, "seed": 1}, "test": {"size": 0}},
        "simulate": {"petsc_options": {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12}}}
    from rom import config
    from rom.design import parameters_dataset

    valid = config.validate(study, "part3d.yaml")
    resolved = tmp_path / "study.yaml"
    config.write_study(valid, resolved)
    artefacts.write(parameters_dataset(valid, config.parameter_space(valid)), tmp_path / "p.h5", valid, "parameters")
    for ranks in (1, 2):
        proc = rom_cli("simulate", "--study-config", resolved, "--parameters", tmp_path / "p.h5", "--set", "train",
                       "--chunk", "0", "--out", tmp_path / f"c{ranks}.h5", mpi=ranks)
        assert "assembly (slowest rank): pattern" in proc.stderr and "peak memory" in proc.stderr
    one, two = artefacts.read(tmp_path / "c1.h5"), artefacts.read(tmp_path / "c2.h5")
    assert two.attrs["mpi_ranks"] == 2 and one["converged"].values.all() and two["converged"].values.all()
    u1, u2 = one["u"].values, two["u"].values
    assert u1.shape[1] > 1000
    rel = np.linalg.norm(u1 - u2, axis=1) / np.linalg.norm(u1, axis=1)
    assert rel.max() < 1e-8, rel
