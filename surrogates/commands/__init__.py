"""Subcommands of `python -m surrogates`; each module has register(subparsers)."""
