"""The stage registry: every declared stage of romflow (rom/commands/*, surrogates/commands/*), by name,
and the validation of a study against the stages that run for it (their capability needs and their own
semantic checks). The CLI, the Snakemake rules and the config validator all read this one table."""
from __future__ import annotations

import json

from rom.commands import aggregate, exploit, local, pod, rb, report, simulate, uq
from rom.commands import study as study_stages
from rom.errors import ConfigError
from rom.hifi import capabilities as cap
from rom.paths import problem_label
from rom.stage import Stage, problem_has
from surrogates.commands import gp, mmgp, stream

MODULES = (study_stages, simulate, pod, rb, local, report, aggregate, exploit, stream, gp, mmgp, uq)
STAGES: dict[str, Stage] = {s.name: s for m in MODULES for s in m.STAGES}

fixed_mesh = problem_has(cap.MESH)  # the sample/simulate/pod chain applies


def stages(package: str = "rom") -> list[Stage]:
    return [s for s in STAGES.values() if s.package == package]


def requested_by(stage: Stage, study: dict) -> str:
    """The setting, as the user wrote it, that makes a stage run: its section's switch, else the problem."""
    if stage.switch is not None:
        return f"{stage.switch}.enabled = true"
    key = "name" if "name" in study["problem"] else "class"
    return f"problem.{key} = {json.dumps(study['problem'][key])}"


def check_study(study: dict, cls, source: str = "config"):
    """Refuse, in one line naming the key that asked for it, a study for which a stage that runs needs a
    capability its problem lacks (its `needs`, an unmet alternative listed in full; a switched-on setting
    of its `setting_needs`), or fails the stage's own checks (run before any job)."""
    caps = ", ".join(sorted(cls.capabilities))
    name = problem_label(study)
    for stage in STAGES.values():
        if not stage.runs_for(study):
            continue
        unmet = stage.needs.unmet(cls.capabilities)
        if unmet is not None:
            need = unmet.describe()
            off = f" or {stage.switch}.enabled: false" if stage.switch is not None else ""
            alternatives = unmet.mode == "any"
            if unmet.mode == "none":  # a capability the stage cannot take (POD+GP: stationary fields only)
                raise ConfigError(f"{source}: {requested_by(stage, study)}: stage {stage.name} takes no problem "
                                  f"with {need.removeprefix('not ')}, which problem {name} has (it has: {caps}); "
                                  f"expected another problem{off}")
            raise ConfigError(f"{source}: {requested_by(stage, study)}: stage {stage.name} needs the problem "
                              f"capability {need}{' (one of the alternatives)' if alternatives else ''}, which "
                              f"problem {name} lacks (it has: {caps}); expected "
                              f"{'such a problem' if alternatives else f'a problem with {need}'}{off}")
        if stage.needs_test and study["design"]["test"]["size"] < 1:
            raise ConfigError(f"{source}: design.test.size = {study['design']['test']['size']}: stage {stage.name} "
                              f"({requested_by(stage, study)}) evaluates on the test set; expected at least 1 test "
                              "sample")
        for key, need, off in stage.setting_needs:
            value = _setting(study, key)
            if (value is True or (isinstance(value, list) and value)) and not cap.has(cls, need):
                raise ConfigError(f"{source}: {key}: not available for problem {name}: stage {stage.name} needs the "
                                  f"problem capability {need.describe()} for it (it has: {caps}); expected {key}: "
                                  f"{off} or a problem with {need.describe()}")
        if stage.check is not None:
            try:
                stage.check(study)
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None


def _setting(study: dict, key: str):
    """The value of a dotted settings key (rb.scm.enabled), None where a part is missing."""
    value = study
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def requested_executor(argv: list[str], environ: dict) -> str | None:
    """The executor a Snakemake command line asks for (`--executor`/`-e`, else the profile's `executor:`
    key), None for none. A dry run swaps the requested executor for Snakemake's dry-run executor before
    the workflow sees it, so the launcher of the MPI rules is read from the command line there."""
    from pathlib import Path

    import yaml

    profile = environ.get("SNAKEMAKE_PROFILE")
    for i, arg in enumerate(argv):
        flag, _, value = arg.partition("=")
        if flag in ("--executor", "-e"):
            return value or (argv[i + 1] if i + 1 < len(argv) else None)
        if flag in ("--profile", "--workflow-profile"):
            profile = value or (argv[i + 1] if i + 1 < len(argv) else None)
    if not profile:
        return None
    config_home = Path(environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    for folder in (Path(profile), config_home / "snakemake" / profile, Path("/etc/xdg/snakemake") / profile):
        path = folder / "config.yaml"
        if path.is_file():
            try:
                value = (yaml.safe_load(path.read_text()) or {}).get("executor")
            except (OSError, yaml.YAMLError):
                return None
            return str(value) if value else None
    return None
