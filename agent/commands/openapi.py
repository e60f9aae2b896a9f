"""``apiward openapi SERVICE``: an OpenAPI 3.1 document reconstructed from traffic.

The traffic comes from a state dir (``--state-dir``, default the configured
one; read only, safe next to a running agent) or from recordings
(``--replay FILE...``). ``--diff SPEC`` prints instead what the traffic adds to
that spec, what it leaves unused and which deprecated operations are still
called; the exit code is then 1 when the traffic adds operations, else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from agent.commands.common import add_config_arguments, config_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("openapi", help="write an OpenAPI 3.1 spec of a service reconstructed from traffic")
    p.add_argument("service", metavar="SERVICE", help="service.name of the service")
    add_config_arguments(p)
    p.add_argument("--replay", nargs="+", metavar="FILE", help="analyse these recordings instead of a state dir")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write here (.json for JSON, else YAML) instead of standard output")
    p.add_argument("--format", choices=("yaml", "json"), help="output format (default: from -o, else yaml)")
    p.add_argument("--diff", metavar="SPEC", help="compare the traffic with this spec instead")
    p.set_defaults(func=main)


def _fail(msg: str) -> int:
    print(f"apiward: {msg}", file=sys.stderr)
    return 2


def _inventory(args: argparse.Namespace) -> Any:
    """The inventory part, from recordings or from a state dir."""
    from enrichers.inventory import InventoryEnricher

    config = config_from_args(args)
    if args.replay:
        from agent.runtime import Agent

        agent = Agent(config, persist=False)
        try:
            agent.replay(args.replay)
            return agent.state.parts.get("inventory")
        finally:
            agent.stop()
    from agent.state import State, StateStore

    state_dir = Path(config.state_dir)
    if not (state_dir / "state.db").is_file():
        raise FileNotFoundError(
            f"{state_dir}: no apiward state here (no state.db); give the agent's --state-dir "
            "or use --replay FILE."
        )
    state = State(state_dir)
    store = StateStore(state_dir)
    try:
        store.load(state)
        with state.lock:
            return InventoryEnricher(config).attach(state)
    finally:
        store.close()


def main(args: argparse.Namespace) -> int:
    from enrichers.inventory.openapi import diff, reconstruct, render_diff
    from enrichers.inventory.specs import SpecError, load_spec

    try:
        from collectors.replay import RecordingError
    except ModuleNotFoundError:  # pragma: no cover
        RecordingError = FileNotFoundError  # type: ignore[misc,assignment]  # noqa: N806
    spec = None
    if args.diff:
        try:
            spec = load_spec(args.diff, args.service)
        except SpecError as exc:
            return _fail(str(exc))
    try:
        part = _inventory(args)
    except RecordingError as exc:
        return _fail(str(exc))
    except FileNotFoundError as exc:
        if exc.filename:
            return _fail(f"{exc.filename}: no such recording file.")
        return _fail(str(exc))
    records = part.records_for(args.service) if part is not None else []
    if not records:
        known = sorted({r.service for r in part.records.values()}) if part is not None else []
        hint = f" Services seen: {', '.join(known)}." if known else " No API traffic was seen at all."
        return _fail(f"no API traffic of service {args.service!r}.{hint}")
    if spec is not None:
        d = diff(records, args.service, spec)
        sys.stdout.write(render_diff(d, args.service, args.diff))
        return 1 if d["added"] else 0
    doc = reconstruct(records, args.service)
    fmt = args.format or ("json" if (args.output or "").endswith(".json") else "yaml")
    if fmt == "json":
        data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"
    else:
        data = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            return _fail(f"{args.output}: cannot write ({exc.strerror}).")
        print(f"wrote {args.output}: {len(doc['paths'])} paths of {args.service}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0
