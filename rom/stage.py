"""Stages as declarations. A stage states its name, the config sections it reads, its input and output
artefacts, the problem capabilities it needs and one function; everything else follows from that:

- the CLI subcommand and its arguments (rom.cli: `python -m rom <stage>` / `python -m surrogates <stage>`),
  loading and validating the study, logging, writing artefacts with provenance, the report section;
- the Snakemake rule's params trigger (the digest of exactly the declared sections) and its arguments
  (workflow/rules/common.smk: `trigger(name)`, `stage_args(name)`);
- validation: a stage its config section switches on (`<switch>.enabled: true`) whose problem lacks a
  needed capability is refused before any job, in one line naming that key: a switch the user set never
  turns into no job without a word.

This module is a leaf: declarations only, so command modules import it and nothing else of the CLI.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Artefact:
    """An input or output of a stage: `--<name>` on the command line, key `<name>` in the rule."""

    name: str
    help: str = ""
    optional: bool = False
    many: bool = False  # several paths (nargs="+")
    positional: bool = False  # given without a flag (the chunks of gather, the sections of report)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Option:
    """A further command-line option; `wildcard` names the rule wildcard that supplies it."""

    name: str
    help: str = ""
    type: Callable | None = str
    default: object = None
    choices: tuple | None = None
    required: bool = False
    wildcard: str | None = None
    action: str | None = None
    many: bool = False  # several values (nargs="+")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Stage:
    name: str                                   # rule name; the subcommand is name with '-' for '_'
    run: Callable                               # run(ctx) -> exit status or None
    help: str
    package: str = "rom"                        # which CLI lists it: rom or surrogates
    sections: tuple[str, ...] = ()              # config sections read: the rule's rerun trigger
    inputs: tuple[Artefact, ...] = ()
    outputs: tuple[Artefact, ...] = ()
    options: tuple[Option, ...] = ()
    needs: frozenset[str] = field(default_factory=frozenset)  # problem capabilities
    switch: str | None = None                   # the config section whose `enabled: true` runs it
    enabled: Callable[[dict], bool] | None = None  # runs for this study? (besides the switch; needs are
                                                   # checked only when it runs)
    check: Callable[[dict], None] | None = None    # semantic checks at validation time (ConfigError)
    needs_test: bool = False                    # evaluates on the test set: design.test.size >= 1
    mpi: bool = False                           # every MPI rank runs `run`; rank 0 writes
    study: bool = True                          # takes --study-config
    quiet: Callable | None = None               # quiet(args): log warnings only (an interactive query)

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def runs_for(self, study: dict) -> bool:
        switched_on = self.switch is None or bool(study.get(self.switch, {}).get("enabled", False))
        return switched_on and (self.enabled is None or bool(self.enabled(study)))


def problem_has(capability: str) -> Callable[[dict], bool]:
    """`enabled` of a stage that runs for every problem with a capability (the fixed-mesh chain)."""
    def enabled(study: dict) -> bool:
        from rom.hifi.registry import problem_class

        return capability in problem_class(study["problem"]).capabilities

    return enabled
