"""``apiward tui``: the terminal UI, embedded with an agent or attached to one.

- ``apiward tui`` runs an agent in this process (receivers on the configured
  ports) and the UI on top of its query API.
- ``apiward tui --replay FILE...`` analyses recordings in-process, then explores them.
- ``apiward tui --connect URL [--token T]`` attaches to a running agent's query API.

All three show the same thing because the UI is always a client of the query
API; embedded modes just connect to their own API on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from agent.commands.common import add_agent_arguments, config_from_args

TOKEN_ENV = "APIWARD_API_TOKEN"


def register(sub: Any) -> None:
    p = sub.add_parser("tui", help="terminal UI: embedded agent, --replay recordings or --connect URL")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--connect", metavar="URL", help="attach to a running agent's query API")
    mode.add_argument("--replay", nargs="+", metavar="FILE", help="explore OTLP recordings")
    p.add_argument("--token", metavar="TOKEN", help=f"query API bearer token (or ${TOKEN_ENV})")
    p.add_argument("--theme", choices=("dark", "light"), help="colour theme (default dark)")
    p.add_argument("--refresh", type=float, metavar="SECONDS", help="poll interval (default 1)")
    p.add_argument("--export-dir", metavar="DIR", help="where `e` writes exports (default: cwd)")
    add_agent_arguments(p)
    p.set_defaults(func=main)


def _fail(msg: str) -> int:
    print(f"apiward tui: {msg}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from tui.client import ApiClient, ApiError

    section: dict[str, Any] = {}
    agent = None
    source = ""
    try:
        if args.connect:
            token = args.token or os.environ.get(TOKEN_ENV) or None
            try:
                client = ApiClient(args.connect, token)
                client.check()
            except ApiError as err:
                return _fail(str(err))
            source = client.base_url
        else:
            from agent.runtime import Agent

            if args.replay:
                missing = [f for f in args.replay if f != "-" and not Path(f).is_file()]
                if missing:
                    return _fail(f"{missing[0]}: no such recording file.")
                config = config_from_args(args, api_port=0, api_bind="127.0.0.1")
                agent = Agent(config, persist=bool(args.state_dir))
                agent.start(receivers=False, api=True)
                print(f"replaying {' '.join(args.replay)}…", file=sys.stderr, flush=True)
                agent.replay(args.replay)
                source = "replay: " + ", ".join(Path(f).name for f in args.replay)
            else:
                config = config_from_args(args)
                agent = Agent(config)
                try:
                    agent.start()
                except OSError as err:
                    return _fail(
                        f"cannot listen: {err.strerror or err}; choose other ports with "
                        "--grpc-port/--http-port/--api-port, or attach to the running agent "
                        "with --connect."
                    )
                source = f"embedded agent, OTLP :{agent.grpc_port}/:{agent.http_port}"
            section = config.section("tui") if hasattr(config, "section") else {}
            client = ApiClient(f"http://127.0.0.1:{agent.api_port}", config.api_token)
        return _run_ui(args, client, section, source)
    finally:
        if agent is not None:
            agent.stop()


def _run_ui(args: argparse.Namespace, client: Any, section: dict[str, Any], source: str) -> int:
    from tui.app import ApiwardApp

    theme = args.theme or section.get("theme")
    refresh = args.refresh or float(section.get("refresh", 1.0) or 1.0)
    export_dir = Path(args.export_dir or section.get("export_dir") or Path.cwd()).expanduser()
    app = ApiwardApp(
        client,
        poll_interval=max(0.2, refresh),
        export_dir=export_dir,
        theme={"dark": "textual-dark", "light": "textual-light"}.get(str(theme), None),
        source=source,
    )
    result = app.run()
    return int(result or 0)
