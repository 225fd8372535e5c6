"""Bad config input fails before any work, in one line naming the key, the value and what was expected."""
import copy

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
