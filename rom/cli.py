"""`python -m rom <stage> ...`: one subcommand per pipeline stage; Snakemake rules only call these.

Arguments that start with a dash and are not ours (-ksp_monitor, -pc_type lu, ...) go to PETSc.
User errors end in one line on stderr and exit status 2; finished artefacts are never removed."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["rom.commands.study", "rom.commands.simulate", "rom.commands.pod", "rom.commands.rb", "rom.commands.local", "rom.commands.report", "rom.commands.aggregate"]


def parser(commands=COMMANDS, prog="python -m rom", description=__doc__) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="<stage>")
    for name in commands:
        importlib.import_module(name).register(sub)
    return p


def main(argv=None, commands=COMMANDS, prog="python -m rom") -> int:
    from rom.artefacts import ArtefactError
    from rom.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser(commands, prog).parse_known_args(argv)
    stray = [a for a in rest if not a.startswith("-")]
    if stray and not (rest and rest[0].startswith("-")):
        print(f"{prog}: error: unexpected arguments {stray}", file=sys.stderr)
        return 2
    args.petsc_args = rest
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ArtefactError, UserError) as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2


class UserError(RuntimeError):
    """Bad input that is not a config or artefact problem (a parameter out of range, ...)."""


def add_study_arg(p: argparse.ArgumentParser):
    p.add_argument("--study-config", required=True, help="resolved study file (results/<study>/study.yaml)")
