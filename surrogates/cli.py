"""`python -m surrogates <stage> ...`: the surrogate stages; same conventions as `python -m rom`."""
from __future__ import annotations

import sys

from rom.cli import main as _main

COMMANDS: list[str] = ["surrogates.commands.stream", "surrogates.commands.gp", "surrogates.commands.mmgp"]  # modules with register(subparsers), e.g. "surrogates.commands.gp"


def main(argv=None) -> int:
    return _main(argv, COMMANDS, prog="python -m surrogates")


if __name__ == "__main__":
    sys.exit(main())
