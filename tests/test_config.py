"""Bad config input fails before any work, in one line naming the key, the value and what was expected."""
import copy

import numpy as np
import pytest

from conftest import ROOT, rom_cli, run, tiny_study, write_yaml
from rom import config

BAD = [
    ("unknown key", lambda s: s["simulate"].update(chunk_sise=3), ["simulate.chunk_sise", "unknown key", "chunk_size"]),
    ("unknown top-level key", lambda s: s.update(smulate={}), ["smulate", "unknown key"]),
    ("wrong type", lambda s: s["design"]["train"].update(size="many"), ["design.train.size", '"many"', "integer"]),
    ("bounds reversed", lambda s: s.update(parameters={"mu_1": {"bounds": [1.0, 0.1]}}),
     ["parameters.mu_1.bounds", "[1.0, 0.1]", "lower < upper"]),
    ("negative size", lambda s: s["design"]["test"].update(size=-3), ["design.test.size", "-3", ">= 0"]),
    ("unknown problem", lambda s: s["problem"].update(name="navier_stokes"), ["problem.name", "navier_stokes", "thermal_block"]),
    ("unknown problem key", lambda s: s["problem"].update(block=[2, 2]), ["problem.block", "unknown key", "blocks"]),
    ("unknown parameter", lambda s: s.update(parameters={"mu_9": {"bounds": [0.1, 1]}}), ["parameters.mu_9", "mu_0"]),
    ("loguniform at zero", lambda s: s.update(parameters={"mu_0": {"bounds": [0.0, 1], "distribution": "loguniform"}}),
     ["parameters.mu_0.bounds", "lower > 0"]),
    ("bad enum", lambda s: s["design"].update(method="halton"), ["design.method", "halton", "lhs"]),
    ("zero ranks", lambda s: s["simulate"].update(mpi_ranks=0), ["simulate.mpi_ranks", ">= 1"]),
    # What a new user met (issue 10): every one refused before any work, in one line.
    ("huge grid", lambda s: (s["problem"].update(blocks=[3, 3]), s["design"].update(method="grid", grid_points=10)),
     ["design.train", "10^9 = 1000000000 grid points", "design.max_samples = 5000"]),
    ("default grid on 9 parameters", lambda s: (s["problem"].update(blocks=[3, 3]), s["design"].update(method="grid")),
     ["design.train", "3^9 = 19683 grid points", "at most design.max_samples"]),
    ("blocks of three", lambda s: s["problem"].update(blocks=[3, 3, 3]), ["problem.blocks = [3, 3, 3]", "at most 2 items"]),
    ("blocks not a list", lambda s: s["problem"].update(blocks=3), ["problem.blocks = 3", "expected type array"]),
    ("reversed problem range", lambda s: s["problem"].update(mu_range=[1.0, 0.1]),
     ["problem.mu_range = [1.0, 0.1]", "expected lower < upper"]),
    ("negative conductivity", lambda s: s.update(parameters={"mu_0": {"bounds": [-1, 1]}}),
     ["parameters.mu_0.bounds = [-1, 1]", "admissible interval (0, inf)"]),
    ("NaN bound", lambda s: s.update(parameters={"mu_0": {"bounds": [float("nan"), 1]}}),
     ["parameters.mu_0.bounds.0", "finite"]),
    ("no test set for rb", lambda s: (s["design"]["test"].update(size=0), s.update(rb={"enabled": True})),
     ["design.test.size = 0", "evaluate_rom (rb.enabled = true)", "at least 1 test sample"]),
    # heat (transient, affine) has parabolic RB; the nonlinear heat problem has no reduced basis.
    ("stage on a problem without the capability", lambda s: (s.update(problem={"name": "nonlinear_heat", "mesh": {"n": 8}}),
                                                              s.update(rb={"enabled": True})),
     ["rb.enabled = true: stage reduced_basis needs the problem capability 'stationary'"]),
    # A switch the user set is refused naming it, never dropped without a word (MMGP plans no job on a fixed mesh).
    ("mmgp on a fixed mesh", lambda s: s.update(mmgp={"enabled": True}),
     ["mmgp.enabled = true", "'geometry_family'", "problem thermal_block", "or mmgp.enabled: false"]),
    ("surrogate on a stationary problem", lambda s: s.update(surrogate={"enabled": True}),
     ["surrogate.enabled = true", "'transient'", "problem thermal_block", "or surrogate.enabled: false"]),
    ("renamed basis-size cap", lambda s: s.update(rb={"enabled": True, "N_max": 20}),
     ["rb.N_max: renamed", "expected rb.max_modes"]),
    ("renamed EIM-size cap", lambda s: s.update(eim={"M_max": 20}), ["eim.M_max: renamed", "expected eim.max_modes"]),
    # Snapshot-generation settings removed because they measured no gain (docs/data_generation.md).
    ("removed preconditioner reuse", lambda s: s["simulate"].update(preconditioner_reuse="frozen"),
     ["simulate.preconditioner_reuse: removed, it measured no gain", "0.74-0.78x", "expected the key deleted"]),
    ("removed rebuild rule", lambda s: s["simulate"].update(rebuild_rule="cost"),
     ["simulate.rebuild_rule: removed", "frozen preconditioner"]),
    ("removed deflation", lambda s: s["simulate"].update(deflation="solutions", deflation_size=4),
     ["simulate.deflation: removed, it measured no gain", "PCDEFLATION made the stage 2.2x slower"]),
    ("removed KSPGuess", lambda s: s["simulate"].update(initial_guess="fischer"),
     ['simulate.initial_guess = "fischer": removed, it measured no gain', "resets its KSPGuess", "projection"]),
    ("output on a problem without outputs", lambda s: (s.update(problem={"name": "heat", "mesh": {"n": 8}}), s.update(
        rb={"enabled": True, "outputs": [{"name": "flux", "kind": "boundary_flux", "side": "top"}]})),
     ["rb.outputs", "not available", "expected rb.outputs: []"]),
    ("output block out of range", lambda s: s.update(rb={"enabled": True, "outputs": [
        {"name": "mean9", "kind": "region_mean", "blocks": [9]}]}),
     ["rb.outputs.0 (mean9): blocks = [9]", "indices in 0..3"]),
    ("unknown PETSc type", lambda s: s["simulate"].update(petsc_options={"ksp_type": "cgg"}),
     ["simulate.petsc_options.ksp_type = 'cgg'", "unknown type", "'cg'", "'gmres'"]),
    ("unparsable PETSc value", lambda s: s["simulate"].update(petsc_options={"ksp_rtol": "tiny"}),
     ["simulate.petsc_options", "tiny has no numeric value"]),
    ("design file missing", lambda s: s["design"].update(method="list", file="nowhere.csv"),
     ["design.file", "nowhere.csv", "file not found"]),
    ("huge mesh", lambda s: s["problem"].update(mesh={"n": 10**6}), ["problem.mesh.n = 1000000", "expected a value <="]),
    ("iterative X solves without PETSc", lambda s: (s["simulate"].update(backend="scipy"), s.update(
        rb={"enabled": True, "riesz": {"solver": "iterative"}})),
     ["rb.riesz.solver = iterative", "simulate.backend is scipy", "expected rb.riesz.solver: direct or auto"]),
    ("PETSc options of the direct X solver", lambda s: s.update(
        rb={"enabled": True, "riesz": {"solver": "direct", "petsc_options": {"pc_type": "hypre"}}}),
     ["rb.riesz.petsc_options", "reads no PETSc options"]),
    ("problem keys of another problem", lambda s: s["problem"].update(dt=0.1), ["problem.dt", "unknown key", "blocks"]),
]


@pytest.mark.parametrize("case,mutate,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_rejected_with_one_line(case, mutate, expected):
    study = tiny_study()
    mutate(study)
    with pytest.raises(config.ConfigError) as err:
        config.validate(study, "cfg.yaml")
    message = str(err.value)
    assert "\n" not in message
    for piece in expected:
        assert piece in message, f"{piece!r} not in {message!r}"


def test_defaults_are_filled_and_valid_config_passes():
    study = config.validate(tiny_study())
    assert study["simulate"]["petsc_options"]["ksp_type"] == "cg"
    assert study["design"]["validation"]["size"] == 0
    assert study["pod"]["max_modes"] == 6


def test_cli_exits_nonzero_with_one_line(tmp_path):
    study = tiny_study()
    study["design"]["train"]["size"] = -1
    cfg = write_yaml(tmp_path / "bad.yaml", study)
    proc = rom_cli("configure", "--config", cfg, "--out", tmp_path / "s.yaml", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "design.train.size = -1" in lines[0], proc.stderr
    assert not (tmp_path / "s.yaml").exists()


@pytest.mark.pipeline
def test_snakemake_refuses_bad_config_before_any_job(tmp_path):
    study = copy.deepcopy(tiny_study())
    study["parameters"] = {"mu_0": {"bounds": [2.0, 1.0]}}
    cfg = write_yaml(tmp_path / "bad.yaml", study)
    proc = run([ROOT / ".venv" / "bin" / "snakemake" if (ROOT / ".venv").exists() else "snakemake",
                "--cores", "1", "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", cfg], check=False)
    assert proc.returncode != 0
    assert "parameters.mu_0.bounds = [2.0, 1.0]: expected lower < upper" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("case,mutate,expected", BAD, ids=[b[0] for b in BAD])
def test_cli_refuses_each_bad_config_in_one_line_without_traceback(case, mutate, expected, tmp_path, capsys):
    """The CLI's own entry point (what every rule runs): exit status 2, one line on stderr naming the key."""
    from rom.cli import main

    study = tiny_study()
    mutate(study)
    cfg = write_yaml(tmp_path / "bad.yaml", study)
    assert main(["configure", "--config", str(cfg), "--out", str(tmp_path / "s.yaml")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for piece in expected:
        assert piece in lines[0], f"{piece!r} not in {lines[0]!r}"
    assert not (tmp_path / "s.yaml").exists()


SWITCHES = sorted(name for name, section in config.schema()["properties"].items()
                  if section.get("properties", {}).get("enabled", {}).get("type") == "boolean")
SWITCH_PROBLEMS = ["config.yaml", "studies/heat.yaml", "studies/nonlinear.yaml", "studies/nonaffine.yaml",
                   "studies/tensile.yaml"]


def test_every_switch_has_its_stages():
    from rom import pipeline

    assert SWITCHES == sorted({s.switch for s in pipeline.STAGES.values() if s.switch is not None})


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("study_file", SWITCH_PROBLEMS)
def test_every_switch_runs_its_stages_or_is_refused_naming_it(study_file, switch):
    """`<section>.enabled: true` on each kind of problem (stationary affine, transient, nonlinear, non-affine,
    shape family): either the section's stages run, or validation refuses it in one line naming the key."""
    from rom import pipeline

    study = config.load(ROOT / "config" / study_file)
    study[switch]["enabled"] = True
    try:
        study = config.validate(study, study_file)
    except config.ConfigError as exc:
        assert "\n" not in str(exc) and f"{switch}.enabled" in str(exc), str(exc)
        return
    assert [s.name for s in pipeline.STAGES.values() if s.switch == switch and s.runs_for(study)]


def test_design_file_is_relative_to_the_study_file(tmp_path, monkeypatch):
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "points.csv").write_text("mu_0,mu_1,mu_2,mu_3\n0.2,0.3,0.4,0.5\n0.9,0.8,0.7,0.6\n")
    study = tiny_study(design={"method": "list", "file": "points.csv", "test": {"size": 2, "seed": 2}})
    cfg = write_yaml(folder / "s.yaml", study)
    monkeypatch.chdir(tmp_path)  # another working directory than the study file's
    resolved = config.load(cfg)
    assert resolved["design"]["file"] == str(folder / "points.csv")
    from rom.design import sample_sets

    np.testing.assert_array_equal(sample_sets(resolved, config.parameter_space(resolved))["train"],
                                  [[0.2, 0.3, 0.4, 0.5], [0.9, 0.8, 0.7, 0.6]])
    # A bad row names the row and the parameter.
    (folder / "points.csv").write_text("mu_0,mu_1,mu_2,mu_3\n0.2,0.3,0.4,7.0\n")
    with pytest.raises(config.ConfigError, match=r"row 1 mu_3 = 7.0: expected within \[0.1, 1.0\]"):
        config.load(cfg)
