"""Which studies one invocation plans: a study file on the command line runs alone, with the schema's
defaults (not the default study's values); without one, the default study and its includes."""
import re

import pytest

from conftest import ROOT, run

SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"


def plan(workdir, *args) -> dict[str, int]:
    proc = run([SNAKEMAKE, "-n", "-s", ROOT / "Snakefile", "-d", workdir, *args], timeout=300)
    out = proc.stdout + proc.stderr
    table = out[out.index("Job stats:"):].splitlines()
    return {m.group(1): int(m.group(2)) for line in table if (m := re.match(r"^(\w+)\s+(\d+)$", line))}, out


@pytest.mark.pipeline
def test_a_study_file_on_the_command_line_plans_only_its_own_study(tmp_path):
    jobs, out = plan(tmp_path, "--configfile", ROOT / "config/studies/thermal_block_fine.yaml")
    # 64 train / 32 test samples in chunks of 16: 4 + 2 simulate jobs; no rb, gp or other studies.
    assert jobs == {"sample": 1, "operators": 1, "simulate": 6, "gather": 2, "pod": 1, "figures_snapshots": 1,
                    "figures_pod": 1, "report": 1, "aggregate": 1, "all": 1, "total": 16}, out
    studies = set(re.findall(r"results/([\w.-]+)/", out)) - {"logs"}  # results/logs: the comparison's log
    assert studies == {"thermal_block_fine"}, studies
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["thermal_block_fine"]


@pytest.mark.pipeline
def test_without_a_study_file_the_default_study_and_its_includes_run(tmp_path):
    jobs, out = plan(tmp_path, "--config", "seed=5")
    studies = set(re.findall(r"results/([\w.-]+)/report\.html", out))
    assert {"thermal_block", "heat", "tensile", "nonaffine", "nonlinear", "sweep_example"} <= studies, studies
    # --config overrides apply to the default study (and only to it: an included study keeps its own).
    import yaml

    assert yaml.safe_load((tmp_path / "results/thermal_block/study.yaml").read_text())["seed"] == 5
    assert yaml.safe_load((tmp_path / "results/heat/study.yaml").read_text())["seed"] == 0
