"""The viscoplastic example study (config/studies/cooled_plate.yaml) through the real `snakemake` CLI, on a
coarse mesh and a short load history: its gmsh mesh made at study time, the full-order trajectories on 2 MPI
ranks (SNES with GAMG and the rigid-body near-null space, the internal variables on each rank's cells), POD,
the adaptive hyper-reduced ROM by empirical cubature, and the report."""
import numpy as np
import pytest
import yaml

from conftest import ROOT, run, write_yaml
from rom import artefacts

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("vp")
    study = yaml.safe_load((ROOT / "config/studies/cooled_plate.yaml").read_text())
    study["name"] = "cp"
    study["problem"]["mesh"] = {"file": "meshes/plate.msh",
                                "generate": "{python} {root}/examples/meshes/cooled_plate.py {file} --size 2.5"}
    study["problem"].update({"dt": 1.0, "steps": 12, "cycle": {"shape": "triangle", "period": 8.0}})
    study["design"] = {"method": "lhs", "train": {"size": 6, "seed": 51}, "test": {"size": 2, "seed": 52}}
    study["simulate"].update({"chunk_size": 3, "mpi_ranks": 2})
    study["adaptive_rom"]["mu"] = [[52.0, 190.0, 120.0]]
    cfg = write_yaml(work / "cp.yaml", study)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", work, "--configfile", cfg, "--cores", "2"], timeout=900)
    return work / "results" / "cp"


@pytest.mark.pipeline
def test_the_adaptive_rom_holds_its_tolerance_where_the_static_one_does_not(results):
    train = artefacts.read(results / "snapshots" / "train.h5")
    assert train["converged"].values.all() and train["u"].shape[:2] == (6, 13)
    A = artefacts.read(results / "rom" / "adaptive_rom.h5")
    assert A.attrs["hyper_reduction"] == "ecm"
    assert A.attrs["reduced_elements"] < A.attrs["n_elements"] / 4  # a real reduction of the quadrature
    tol = A.attrs["error_tol"]
    static, adaptive = A["error_static"].values.max(), A["error_adaptive"].values.max()
    assert static > 5 * tol, static  # out of training: the POD alone fails
    assert adaptive <= tol, adaptive  # the indicator calls the full-order model where it must
    assert A["fom_steps"].values[0] >= 1
    assert (results / "report.html").is_file()


@pytest.mark.pipeline
def test_the_opened_model_runs_the_stages_loop_bit_for_bit(results):
    """romflow.open(...).model('adaptive') rebuilds the stage's cubature ROM from the artefacts and runs its
    loop, the internal variables carried back to every cell for each full-order step: the same indicators,
    enrichments and full-order steps as adaptive_rom.h5."""
    import romflow

    A = artefacts.read(results / "rom" / "adaptive_rom.h5")
    p = romflow.open(results).model("adaptive").predict(A["mu"].values, extrapolate=True)
    assert p.kind == "indicator"
    np.testing.assert_array_equal(p.history["indicator"], A["indicator_adaptive"].values)
    np.testing.assert_array_equal(p.history["enriched"], A["enriched"].values)
    np.testing.assert_array_equal(p.fom_steps, A["fom_steps"].values)
