"""``apiward run``: receivers, pipeline and query API until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from agent.commands.common import add_agent_arguments, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run the agent (OTLP receivers, analysis, query API)")
    add_agent_arguments(p)
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from agent.runtime import Agent

    config = config_from_args(args)
    if config.ebpf:
        try:
            from collectors.ebpf import check_environment
        except ModuleNotFoundError:
            print("apiward: the eBPF collector is not part of this build.", file=sys.stderr)
            return 2
        problem = check_environment()
        if problem:
            print(f"apiward: --ebpf: {problem}", file=sys.stderr)
            return 2
    agent = Agent(config)
    stop = threading.Event()
    reload_requested = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        stop.set()

    def on_hup(signum: int, frame: Any) -> None:
        # Only a flag here: the reload itself runs in the main loop, under the state lock.
        reload_requested.set()
        stop.set()

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    try:
        agent.start()
    except OSError as exc:
        print(f"apiward: cannot listen: {exc}; choose other ports with --grpc-port/--http-port/--api-port.",
              file=sys.stderr)
        agent.stop()
        return 2
    print(agent.listening_line(), flush=True)
    while True:
        stop.wait(0.5)
        if reload_requested.is_set():
            reload_requested.clear()
            stop.clear()
            agent.reload()
            continue
        if stop.is_set():
            break
    agent.stop()
    s = agent.stats
    print(f"stopped: {s.spans_processed} spans analysed, {len(agent.state.findings)} findings", flush=True)
    return 0
