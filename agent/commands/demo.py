"""``apiward demo``: for now, the bundled sample recording through the full agent.

A later step turns this into the live demo (real services, traffic, the TUI).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLE = EXAMPLES / "recordings" / "shop.jsonl"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="show apiward on a built-in recording of a small shop")
    p.add_argument("--report", choices=("summary", "json", "markdown"), default="summary")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from agent.commands import replay

    ns = argparse.Namespace(
        files=[str(SAMPLE)], report=args.report, config=None, state_dir=None, spec=None, policy=None
    )
    specs = EXAMPLES / "specs"
    if specs.is_dir():
        ns.spec = [f"{p.stem}={p}" for p in sorted(specs.glob("*.yaml"))]
    policy = EXAMPLES / "policy" / "apiward-policy.yaml"
    if policy.is_file():
        ns.policy = str(policy)
    print(f"apiward demo: replaying {SAMPLE.relative_to(EXAMPLES.parent)} through the full agent\n")
    return replay.main(ns)
