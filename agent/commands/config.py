"""``apiward config check``: validate a config (and policy) and print the effective settings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from agent.commands.common import add_agent_arguments, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    c = csub.add_parser("check", help="validate the config and policy, print the effective settings")
    add_agent_arguments(c)
    c.set_defaults(func=main)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    problems: list[str] = []
    if config.policy:
        try:
            from enrichers.zerotrust.policy import load_policy
        except ModuleNotFoundError:
            pass
        else:
            try:
                load_policy(config.policy)
            except Exception as exc:  # noqa: BLE001 - the loader's message is for the user
                problems.append(str(exc))
    for service, path in config.specs.items():
        try:
            from enrichers.inventory.specs import load_spec
        except ModuleNotFoundError:
            break
        try:
            load_spec(path)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"spec of {service}: {exc}")
    sys.stdout.buffer.write(orjson.dumps(config.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    for p in problems:
        print(f"apiward: {p}", file=sys.stderr)
    return 2 if problems else 0
