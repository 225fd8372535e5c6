"""The Snakemake-catalog conventions: every shipped study file and the .test configs plan (dry run)
without error, the workflow passes `snakemake --lint`, and the Snakefile and rule files are
snakefmt-formatted (config/README.md, `make lint`)."""
import re
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run


def tool(name: str) -> str:
    """The venv's copy of a command-line tool, else the one on PATH."""
    local = ROOT / ".venv" / "bin" / name
    return str(local) if local.exists() else (shutil.which(name) or name)


SNAKEMAKE = tool("snakemake")
TEST_CONFIG = ROOT / ".test" / "config" / "config.yaml"
# Every study that ships (each runs alone with --configfile), the default run, and CI's tiny run
# (whose include_studies are checked below to cover every file under .test/config/studies/).
CONFIGS = [*sorted((ROOT / "config" / "studies").glob("*.yaml")), ROOT / "config" / "config.yaml", TEST_CONFIG]


def dry_run(workdir: Path, configfile: Path) -> tuple[int, str]:
    """Plan the workflow for one config in a scratch folder (resolved study files land under
    workdir/results, not in the repository); return the planned job count and the output."""
    proc = run([SNAKEMAKE, "-n", "-s", ROOT / "Snakefile", "-d", workdir, "--configfile", configfile], timeout=300)
    out = proc.stdout + proc.stderr
    totals = re.findall(r"^total\s+(\d+)$", out, flags=re.M)
    assert totals, f"no job stats in the dry run of {configfile}:\n{out[-4000:]}"
    return int(totals[-1]), out


@pytest.mark.parametrize("configfile", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_plans(configfile, tmp_path):
    jobs, out = dry_run(tmp_path, configfile)
    assert jobs > 0, out[-4000:]
    # The study the file names is planned, report included.
    name = yaml.safe_load(configfile.read_text())["name"]
    assert f"results/{name}/report.html" in out, out[-4000:]


def test_the_test_config_includes_every_tiny_study():
    """.test/config/studies/*.yaml are reached through .test/config/config.yaml (dry-run above)."""
    included = {(TEST_CONFIG.parent / p).resolve() for p in yaml.safe_load(TEST_CONFIG.read_text())["include_studies"]}
    shipped = {p.resolve() for p in (TEST_CONFIG.parent / "studies").glob("*.yaml")}
    assert shipped and shipped == included, (sorted(shipped), sorted(included))


def test_snakemake_lint_is_clean(tmp_path):
    """`snakemake --lint`: no finding on any Snakefile or rule. Clean means exit 0 and Snakemake's
    closing line; any finding exits 1. (Snakemake 9's command line ignores `--lint json`.)"""
    proc = run([SNAKEMAKE, "--lint", "-s", ROOT / "Snakefile", "-d", tmp_path], check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-6000:]


def test_snakefmt_is_clean():
    """`snakefmt --check` (settings in pyproject.toml's [tool.snakefmt]) would change no rule file."""
    snakefmt = tool("snakefmt")
    if shutil.which(snakefmt) is None:
        pytest.fail("snakefmt is not installed: `make setup` installs it with the [test] extras")
    proc = run([snakefmt, "--check", "--diff", "Snakefile", "workflow/rules/"], cwd=ROOT, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
