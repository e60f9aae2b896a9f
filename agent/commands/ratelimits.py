"""``apiward ratelimits``: recommend per-endpoint and per-client rate limits from
the learned baselines, as Envoy, NGINX, AWS API Gateway or JSON configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.commands.common import add_config_arguments, config_from_args
from agent.config import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser("ratelimits", help="recommend rate limits (Envoy, NGINX, AWS API Gateway) from baselines")
    add_config_arguments(p)
    p.add_argument("--replay", nargs="+", metavar="FILE", help="learn from these recordings instead of a state dir")
    p.add_argument("--format", choices=("envoy", "nginx", "aws", "json"), default="json",
                   help="output format (default json)")
    p.add_argument("--evidence", action="store_true",
                   help="with --format aws: print the evidence behind the usage plan's numbers (JSON keyed like "
                        "its throttle map) instead of the plan, which has no room for it")
    p.add_argument("--headroom", type=float, default=2.0, help="factor above the observed p99 (default 2)")
    p.add_argument("--min-windows", type=int, default=6, help="windows an endpoint needs before a limit is proposed")
    p.set_defaults(func=main)


def _fail(msg: str) -> int:
    print(f"apiward ratelimits: {msg}", file=sys.stderr)
    return 2


def _from_replay(args: argparse.Namespace) -> Any:
    from agent.runtime import Agent
    from enrichers.abuse import AbuseEnricher

    for f in args.replay:
        if f != "-" and not Path(f).is_file():
            raise FileNotFoundError(2, "no such file", f)
    config = config_from_args(args)
    agent = Agent(config, persist=False)
    try:
        agent.replay(args.replay)
        for e in agent.pipeline.enrichers:
            if isinstance(e, AbuseEnricher):
                with agent.state.lock:
                    agent.state.add_findings(e.flush(agent.state))
    finally:
        agent.stop()
    return agent.state.parts.get("abuse")


def _from_state_dir(args: argparse.Namespace) -> Any:
    from agent.state import State, StateStore
    from enrichers.abuse.baselines import AbuseState
    from enrichers.abuse.settings import AbuseSettings

    config = config_from_args(args)
    d = Path(args.state_dir) if args.state_dir else Path(config.state_dir)
    if not (d / "state.db").exists():
        raise FileNotFoundError(str(d / "state.db"))
    state = State(d)
    store = StateStore(d)
    try:
        store.load(state)
    finally:
        store.close()
    settings = AbuseSettings.from_section(config.section("abuse"))
    return state.part("abuse", lambda: AbuseState(settings))


def main(args: argparse.Namespace) -> int:
    from enrichers.abuse.baselines import AbuseState
    from enrichers.abuse.ratelimits import aws_evidence, recommend, render
    from enrichers.abuse.settings import AbuseSettingsError

    if args.evidence and args.format != "aws":
        return _fail("--evidence goes with --format aws; the other formats carry the evidence themselves.")
    if args.headroom < 1.0:
        return _fail(f"--headroom {args.headroom}: use a factor of 1 or more, such as 2.")
    try:
        st = _from_replay(args) if args.replay else _from_state_dir(args)
    except FileNotFoundError as exc:
        if args.replay:
            return _fail(f"{exc.filename or exc}: no such recording file.")
        return _fail(f"{exc}: no apiward state here; pass --state-dir of a running agent or --replay FILE...")
    except (ConfigError, AbuseSettingsError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - a bad recording: one sentence, no traceback
        if type(exc).__name__ == "RecordingError":
            return _fail(str(exc))
        raise
    if not isinstance(st, AbuseState):
        return _fail("the abuse enricher is not available in this build (agent/wiring.py).")
    recs = recommend(st, headroom=args.headroom, min_windows=args.min_windows)
    if not recs:
        print("apiward ratelimits: not enough traffic learned yet to recommend limits "
              f"(an endpoint needs {args.min_windows} windows).", file=sys.stderr)
        return 1
    sys.stdout.write(aws_evidence(recs) if args.evidence else render(recs, args.format))
    return 0
