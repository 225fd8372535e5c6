"""Subcommands of `python -m rom`; each module has register(subparsers)."""
