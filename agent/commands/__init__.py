"""Subcommands of ``apiward``, one module each (see agent/cli.py)."""

COMMANDS = (
    "run",
    "replay",
    "config",
    "detect",
    "openapi",
    "policy",
    "ratelimits",
    "report",
    "tui",
    "demo",
)
