"""Stages as declarations. A stage states its name, the config sections it reads, its input and output
artefacts, the problem capabilities it needs and one function; everything else follows from that:

- the CLI subcommand and its arguments (rom.cli: `python -m rom <stage>` / `python -m surrogates <stage>`),
  loading and validating the study, logging, writing artefacts with provenance, the report section;
- the Snakemake rule's params trigger (the digest of exactly the declared sections) and its arguments
  (workflow/rules/common.smk: `trigger(name)`, `stage_args(name)`);
- validation: a stage its config section switches on (`<switch>.enabled: true`) whose problem lacks a
  needed capability is refused before any job, in one line naming that key: a switch the user set never
  turns into no job without a word.

`needs` is a capability name, a set of them (all needed), or a small structure of alternatives built
with `all_of`, `any_of` and `none_of` (reduced_basis: stationary with affine or coefficient_eim, or
transient with affine and not nonlinear); `setting_needs` names a setting that, switched on (true or a
non-empty list), needs more (rb.outputs: output_functionals). The validator (rom.pipeline.check_study)
reports the first unmet part in one line, listing the alternatives of an any-of.

This module is a leaf: declarations only, so command modules import it and nothing else of the CLI.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Needs:
    """A requirement on a problem's capabilities: all of, any of, or none of its parts (capability names
    or nested Needs)."""

    mode: str                                   # "all" | "any" | "none"
    parts: tuple = ()

    def met_by(self, caps) -> bool:
        met = [p in caps if isinstance(p, str) else p.met_by(caps) for p in self.parts]
        return all(met) if self.mode == "all" else any(met) if self.mode == "any" else not any(met)

    def unmet(self, caps) -> Needs | None:
        """The part to report for `caps`: None when met; for all-of its first unmet part (a name as a
        one-part all-of), else the whole any-of / none-of."""
        if self.met_by(caps):
            return None
        if self.mode == "all":
            for p in self.parts:
                if isinstance(p, str):
                    if p not in caps:
                        return Needs("all", (p,))
                elif not p.met_by(caps):
                    return p.unmet(caps) if p.mode == "all" else p
        return self

    @property
    def names(self) -> frozenset:
        """Every capability name the requirement mentions."""
        return frozenset().union(*({p} if isinstance(p, str) else p.names for p in self.parts))

    def describe(self, nested: bool = False) -> str:
        """'stationary' with 'affine' or 'coefficient_eim', or 'transient' with 'affine' and not 'nonlinear'."""
        text = [repr(p) if isinstance(p, str) else p.describe(True) for p in self.parts]
        if self.mode == "none":
            return "not " + " or ".join(text)
        if self.mode == "any":
            return (" or " if nested else ", or ").join(text)
        return text[0] + (" with " + " and ".join(text[1:]) if len(text) > 1 else "")


Requirement = str | Needs | frozenset | set | tuple


def requirement(need: Requirement) -> Needs:
    """A Needs from a capability name, a set of names (all of them) or a Needs."""
    if isinstance(need, Needs):
        return need
    if isinstance(need, str):
        return Needs("all", (need,))
    return Needs("all", tuple(sorted(need)))


def all_of(*parts: Requirement) -> Needs:
    return Needs("all", tuple(p if isinstance(p, str) else requirement(p) for p in parts))


def any_of(*parts: Requirement) -> Needs:
    return Needs("any", tuple(p if isinstance(p, str) else requirement(p) for p in parts))


def none_of(*parts: Requirement) -> Needs:
    return Needs("none", tuple(p if isinstance(p, str) else requirement(p) for p in parts))


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
    needs: Requirement = field(default_factory=frozenset)  # problem capabilities (a Needs after init)
    setting_needs: tuple[tuple[str, Requirement, str], ...] = ()  # (setting key, needs, its off value)
    switch: str | None = None                   # the config section whose `enabled: true` runs it
    enabled: Callable[[dict], bool] | None = None  # runs for this study? (besides the switch; needs are
                                                   # checked only when it runs)
    check: Callable[[dict], None] | None = None    # semantic checks at validation time (ConfigError)
    needs_test: bool = False                    # evaluates on the test set: design.test.size >= 1
    mpi: bool = False                           # every MPI rank runs `run`; rank 0 writes
    study: bool = True                          # takes --study-config
    quiet: Callable | None = None               # quiet(args): log warnings only (an interactive query)

    def __post_init__(self):
        object.__setattr__(self, "needs", requirement(self.needs))
        object.__setattr__(self, "setting_needs", tuple((k, requirement(n), off) for k, n, off in self.setting_needs))

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def runs_for(self, study: dict) -> bool:
        switched_on = self.switch is None or bool(study.get(self.switch, {}).get("enabled", False))
        return switched_on and (self.enabled is None or bool(self.enabled(study)))


def problem_has(need: Requirement) -> Callable[[dict], bool]:
    """`enabled` of a stage that runs for every problem meeting a requirement (the fixed-mesh chain):
    rom.hifi.capabilities.has on the study's problem class."""
    def enabled(study: dict) -> bool:
        from rom.hifi.capabilities import has
        from rom.hifi.registry import problem_class

        return has(problem_class(study["problem"]), requirement(need))

    return enabled
