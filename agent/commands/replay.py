"""``apiward replay``: analyse OTLP recordings offline and print a report."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from agent.commands.common import add_config_arguments, config_from_args
from agent.model import Severity

#: Summary order of severities, the worst first.
_SEVERITY_ORDER = tuple(s.name.lower() for s in sorted(Severity, reverse=True))


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="analyse OTLP recordings (JSON Lines, OTLP/JSON, protobuf; - for stdin)")
    p.add_argument("files", nargs="+", metavar="FILE")
    add_config_arguments(p)
    p.add_argument("--report", choices=("json", "markdown", "summary"), default="summary",
                   help="what to print (default: a short summary)")
    p.set_defaults(func=main)


def run_replay(args: argparse.Namespace) -> Any:
    """Replay into a fresh agent; persist only when --state-dir is given."""
    from agent.runtime import Agent
    from collectors.replay import RecordingError

    config = config_from_args(args)
    agent = Agent(config, persist=bool(getattr(args, "state_dir", None)))
    try:
        agent.replay(args.files)
    except RecordingError as exc:  # missing, a directory, unreadable: one line, exit 2
        agent.stop()
        raise SystemExit(_fail(str(exc))) from None
    except FileNotFoundError as exc:
        agent.stop()
        raise SystemExit(_fail(f"{exc.filename}: no such recording file.")) from None
    return agent


def _fail(msg: str) -> int:
    print(f"apiward: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from agent import report

    try:
        agent = run_replay(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        stats = agent.pipeline.snapshot_stats()
        rep = report.build_report(agent.state, stats)
    finally:
        agent.stop()
    if args.report == "json":
        sys.stdout.buffer.write(orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    elif args.report == "markdown":
        sys.stdout.write(report.render_markdown(rep))
    else:
        print(summary(rep, stats))
    return 0


def summary(rep: dict[str, Any], stats: dict[str, Any]) -> str:
    by_sev: dict[str, int] = {}
    for f in rep["findings"]:
        by_sev[f["severity"]] = by_sev.get(f["severity"], 0) + 1
    lines = [
        f"spans: {stats['spans_processed']} analysed, {stats['spans_rejected']} rejected",
        f"services ({len(stats['services'])}): {', '.join(stats['services'])}",
        f"graph: {len(rep['graph']['nodes'])} nodes, {len(rep['graph']['edges'])} edges",
        f"inventory: {len(rep['inventory'])} endpoints",
        "findings: " + (", ".join(f"{by_sev[s]} {s}" for s in _SEVERITY_ORDER if s in by_sev) or "none"),
    ]
    for f in rep["findings"][:15]:
        lines.append(f"  [{f['severity']:>8}] {f['owasp'] or '-':>9}  {f['title']}  ({f['subject_label']}, x{f['count']})")
    return "\n".join(lines)
