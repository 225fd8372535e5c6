"""`python -m surrogates <stage> ...`: the surrogate stages, declared like every stage (rom.pipeline)."""
from __future__ import annotations

import sys

from rom.cli import main as _main


def main(argv=None) -> int:
    return _main(argv, package="surrogates")


if __name__ == "__main__":
    sys.exit(main())
