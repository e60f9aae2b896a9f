"""``apiward policy``: learn a least-privilege policy, check recordings against one.

- ``apiward policy learn (--state-dir DIR | RECORDING...) -o FILE`` writes a
  policy from what was observed (a state dir of a running/stopped agent, or
  recordings replayed through the pipeline with no policy).
- ``apiward policy check --policy FILE RECORDING... [--format json|table]``
  replays recordings with the policy and prints the violations; exit 0 none,
  1 violations, 2 bad input. Teams gate a deploy on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from agent.commands.common import config_from_args
from agent.config import Config, ConfigError

#: Findings of the zero-trust enricher that are not violations.
NOT_VIOLATIONS = ("zerotrust.evidence_unavailable", "zerotrust.policy_invalid")


def register(sub: Any) -> None:
    p = sub.add_parser("policy", help="zero-trust policy: learn one from traffic, check recordings")
    psub = p.add_subparsers(dest="policy_command", metavar="ACTION")

    learn = psub.add_parser("learn", help="write a least-privilege policy from observed traffic")
    learn.add_argument("recordings", nargs="*", metavar="RECORDING", help="OTLP recordings to learn from")
    learn.add_argument("--state-dir", metavar="DIR", help="learn from the State of an agent instead")
    learn.add_argument("-o", "--output", metavar="FILE", required=True, help="policy file to write (- for stdout)")
    learn.add_argument("--config", metavar="FILE", help="apiward.yaml config file")
    learn.add_argument("--spec", action="append", metavar="SERVICE=PATH", help="OpenAPI spec (route templates)")
    learn.set_defaults(func=main_learn)

    check = psub.add_parser("check", help="check recordings against a policy (exit 1 on violations)")
    check.add_argument("recordings", nargs="+", metavar="RECORDING", help="OTLP recordings to check")
    check.add_argument("--policy", metavar="FILE", required=True, help="the policy (apiward-policy.yaml)")
    check.add_argument("--format", choices=("json", "table"), default="table", help="output format")
    check.add_argument("--config", metavar="FILE", help="apiward.yaml config file")
    check.add_argument("--spec", action="append", metavar="SERVICE=PATH", help="OpenAPI spec (route templates)")
    check.set_defaults(func=main_check)

    p.set_defaults(func=lambda args: _usage(p))


def _usage(p: argparse.ArgumentParser) -> int:
    p.print_help(sys.stderr)
    return 2


def _fail(msg: str) -> int:
    print(f"apiward: {msg}", file=sys.stderr)
    return 2


def _check_files(paths: Sequence[str]) -> str | None:
    for p in paths:
        if p != "-" and not os.path.isfile(p):
            return f"{p}: no such recording file."
    return None


def _replay(config: Config, recordings: Sequence[str]) -> tuple[Any, int]:
    """Run recordings through a fresh, non-persisting agent; (agent, spans)."""
    from agent.runtime import Agent

    config.persist = False
    agent = Agent(config, persist=False)
    if not any(getattr(e, "name", "") == "zerotrust" for e in agent.enrichers):
        agent.stop()
        raise ConfigError("the zero-trust enricher is not available in this build (agent/wiring.py).")
    try:
        n = agent.replay(recordings)
        # Replayed spans still waiting for a partner resolve on a tick with no new
        # spans (a recording has no future): one more tick publishes those calls.
        agent.pipeline.tick_now()
    except Exception:
        agent.stop()
        raise
    return agent, n


def _recording_error(exc: Exception) -> str | None:
    from collectors.replay import RecordingError

    if isinstance(exc, (RecordingError, FileNotFoundError)):
        return str(exc) if str(exc) else "a recording could not be read."
    return None


# ------------------------------------------------------------------------ learn


def main_learn(args: argparse.Namespace) -> int:
    from enrichers.zerotrust.learner import learn_policy
    from enrichers.zerotrust.state import ZeroTrustState

    if bool(args.state_dir) == bool(args.recordings):
        return _fail("policy learn: give either --state-dir DIR or RECORDING files (one of the two).")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if args.state_dir:
        from agent.state import State, StateStore

        d = Path(args.state_dir)
        if not (d / "state.db").is_file():
            return _fail(f"{d}: no apiward state here (state.db missing); give the --state-dir of an agent.")
        state = State(d)
        store = StateStore(d)
        try:
            store.load(state)
            part = state.part("zerotrust", ZeroTrustState)
        finally:
            store.close()
        source = f"state dir {d}"
        edges = list(part.edges.values())
    else:
        if (msg := _check_files(args.recordings)) is not None:
            return _fail(msg)
        config = config_from_args(args)
        config.policy = None  # learn from the traffic, judged by nothing
        try:
            agent, n = _replay(config, args.recordings)
        except Exception as exc:  # noqa: BLE001 - recording errors become exit 2
            if (msg := _recording_error(exc)) is not None:
                return _fail(msg)
            raise
        try:
            part = agent.state.parts.get("zerotrust")
            edges = list(part.edges.values()) if part is not None else []
        finally:
            agent.stop()
        if n == 0:
            return _fail("the recordings hold no spans; nothing to learn from.")
        source = ", ".join(os.path.basename(p) for p in args.recordings)
    if not edges:
        return _fail("no calls were observed (no edges); nothing to learn. Are traces paired into a call graph?")
    text = learn_policy(edges, source=source, now_iso=now)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        out = Path(args.output)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
        calls = sum(e.seen.count for e in edges)
        print(f"wrote {out}: {len(edges)} edges, {calls} calls", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------ check


def violations_from_findings(records: Sequence[Any]) -> list[dict[str, Any]]:
    """The ``violations`` list of ``policy check`` from the findings store's records."""
    out = []
    for r in records:
        f = r.finding
        if not f.rule.startswith("zerotrust.") or f.rule in NOT_VIOLATIONS:
            continue
        s = f.subject
        out.append({
            "rule": f.rule,
            "finding": f.title,
            "client": s.client,
            "server": s.server or s.service,
            "method": s.method,
            "route": s.route,
            "count": f.count,
        })
    out.sort(key=lambda v: (v["rule"], v["client"], v["server"], v["method"], v["route"]))
    return out


def main_check(args: argparse.Namespace) -> int:
    from enrichers.zerotrust.policy import load_policy

    if (msg := _check_files(args.recordings)) is not None:
        return _fail(msg)
    load_policy(args.policy)  # a bad policy: PolicyError (a ConfigError), exit 2 with file:line
    config = config_from_args(args, policy=args.policy)
    try:
        agent, n = _replay(config, args.recordings)
    except Exception as exc:  # noqa: BLE001
        if (msg := _recording_error(exc)) is not None:
            return _fail(msg)
        raise
    try:
        with agent.state.lock:
            violations = violations_from_findings(agent.state.findings.records())
            part = agent.state.parts.get("zerotrust")
            verdicts = [e["verdict"] for e in part.report()] if part is not None else []
            hints = [r.finding for r in agent.state.findings.records()
                     if r.finding.rule == "zerotrust.evidence_unavailable"]
    finally:
        agent.stop()
    if n == 0:
        return _fail("the recordings hold no spans; nothing to check.")
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps({"violations": violations}, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        sys.stdout.write(render_table(violations))
    counts = {v: verdicts.count(v) for v in ("allowed", "violation", "unknown")}
    print(
        f"{len(violations)} violation(s); edges: {counts['allowed']} allowed, "
        f"{counts['violation']} violation, {counts['unknown']} unknown",
        file=sys.stderr,
    )
    for h in hints:
        print(f"note: {h.explanation}", file=sys.stderr)
    return 1 if violations else 0


def render_table(violations: Sequence[dict[str, Any]]) -> str:
    if not violations:
        return "no violations\n"
    cols = ("rule", "client", "server", "method", "route", "count", "finding")
    rows = [[str(v[c]) for c in cols] for v in violations]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"
