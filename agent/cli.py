"""``apiward``: the command line. Each subcommand lives in ``agent/commands/``."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from agent.commands import COMMANDS
from agent.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apiward",
        description="Passive API-security agent: OTLP and eBPF in; call graph, inventory, "
        "zero-trust, sensitive-data and abuse findings out.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"agent.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a process that makes many short-lived objects.

    Spans wait in the queue for a moment, so with the default thresholds most of
    them survive a young collection and get scanned again and again by the older
    ones. Start-up objects (modules, compiled patterns) are frozen out of
    collection, and the young generation may grow before it is collected.
    Measured with bench/ingest.py: ~1.5x the agent's throughput with a young
    generation of 50,000; 200,000 cut the collector's CPU with every analysis on
    from ~1.4 to ~0.4 us per span (a young collection then takes ~80 ms, every
    several seconds under full load).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 20, 100)


#: Seconds a thread may hold the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL = 0.02


def tune_threads() -> None:
    """Longer turns for the threads that share the interpreter.

    The receiver thread (decoding) and the analysis thread are both busy under load;
    each forced hand-over of the GIL costs both of them cache misses. Turns of 20 ms
    instead of 5: ~1.5 us less CPU per span with every analysis on (bench/ingest.py,
    three alternating pairs of runs). A thread that only answers (the query API, the
    eBPF drain) may wait up to one turn longer.
    """
    sys.setswitchinterval(SWITCH_INTERVAL)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    tune_gc()
    tune_threads()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"apiward: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
