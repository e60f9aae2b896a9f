"""``apiward demo``: the whole product on a live, instrumented demo shop.

Starts an embedded agent on free loopback ports, the shop's services (real
Flask services and functions instrumented with the OpenTelemetry SDK, each its
own process, exporting OTLP to the agent), two uninstrumented "external" hosts
on other loopback addresses, and a traffic generator with normal users and,
after a warm-up, attackers. ``--headless`` prints the report and exits 0 when
every planted problem was found, 1 otherwise; without it the TUI opens.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHOP = EXAMPLES / "shop"
SAMPLE = EXAMPLES / "recordings" / "shop.jsonl"

START_ORDER = ("cardprocessor", "webhook", "inventory", "users", "payments", "notification", "orders", "gateway")


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run apiward on a live demo shop with planted problems")
    p.add_argument("--headless", action="store_true", help="no UI: run, print the report, exit 0 if all found")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of traffic in headless mode (default 60)")
    p.add_argument("--report", choices=("summary", "json", "markdown"), default="summary")
    p.add_argument("--ebpf", action="store_true", help="also trace the services with eBPF (root)")
    p.add_argument("--recording", action="store_true", help="replay the bundled recording instead (no services)")
    p.set_defaults(func=main)


@dataclass(frozen=True)
class Planted:
    name: str
    matches: Callable[[dict[str, Any]], bool]


def _rule(prefix: str, **subject: str) -> Callable[[dict[str, Any]], bool]:
    def m(f: dict[str, Any]) -> bool:
        if not f["rule"].startswith(prefix):
            return False
        s = f.get("subject") or {}
        return all(v in str(s.get(k, "")) for k, v in subject.items())

    return m


def _any(*ms: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda f: any(m(f) for m in ms)


#: What the demo's traffic contains and apiward must find. Rule prefixes are the
#: rule ids of docs/findings.md.
PLANTED: tuple[Planted, ...] = ()


def check_planted(findings: list[dict[str, Any]]) -> dict[str, bool]:
    return {p.name: any(p.matches(f) for f in findings) for p in PLANTED}


class Shop:
    """The demo services as child processes; stopped by closing their stdin."""

    def __init__(self, otlp_grpc_port: int, data_dir: str) -> None:
        self.otlp = f"http://127.0.0.1:{otlp_grpc_port}"
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.urls: dict[str, str] = {}

    def start(self) -> None:
        for name in START_ORDER:
            env = dict(os.environ)
            env.update({f"SHOP_{k.upper()}_URL": v for k, v in self.urls.items()})
            env.update({
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "SHOP_DATA_DIR": self.data_dir,
                "PYTHONUNBUFFERED": "1",
            })
            for k in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER"):
                env.pop(k, None)
            p = subprocess.Popen(
                [sys.executable, str(SHOP / "services.py"), name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
            )
            self.procs[name] = p
            line = p.stdout.readline() if p.stdout else ""
            parts = line.split()
            if len(parts) != 3 or parts[0] != "ready":
                self.stop()
                raise RuntimeError(f"demo service {name} did not start (said {line.strip()!r})")
            host = "127.0.0.2" if name == "cardprocessor" else "127.0.0.3" if name == "webhook" else "127.0.0.1"
            self.urls[name] = f"http://{host}:{parts[2]}"

    def stop(self) -> None:
        for p in self.procs.values():
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


def demo_config(state_dir: str, ebpf: bool = False) -> Any:
    from agent.config import Config

    specs = {p.stem: str(p) for p in sorted((EXAMPLES / "specs").glob("*.yaml"))}
    policy = EXAMPLES / "policy" / "apiward-policy.yaml"
    cfg = Config(
        bind="127.0.0.1", grpc_port=0, http_port=0, api_port=0, state_dir=Path(state_dir),
        specs=specs, policy=str(policy) if policy.is_file() else None,
        # In the demo only 127.0.0.1 is "inside"; 127.0.0.2 and .3 play the internet.
        internal_cidrs=["127.0.0.1/32", "::1/128"], flush_interval=2.0, ebpf=ebpf,
    )
    cfg.sections["abuse"] = {"warmup_seconds": 8}
    return cfg


def main(args: argparse.Namespace) -> int:
    if args.recording:
        return _replay_sample(args)
    from agent import report
    from agent.runtime import Agent

    if args.ebpf:
        try:
            from collectors.ebpf import check_environment
        except ModuleNotFoundError:
            print("apiward: the eBPF collector is not part of this build.", file=sys.stderr)
            return 2
        problem = check_environment()
        if problem:
            print(f"apiward: --ebpf: {problem}", file=sys.stderr)
            return 2
    tmp = tempfile.TemporaryDirectory(prefix="apiward-demo-")
    agent = Agent(demo_config(tmp.name, args.ebpf))
    agent.start()
    shop = Shop(agent.grpc_port, tmp.name)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        shop.start()
        _install_traffic_module()
        from examples_shop_traffic import run as run_traffic  # type: ignore[import-not-found]

        threads = run_traffic(int(shop.urls["gateway"].rsplit(":", 1)[1]), stop,
                              internal_url=shop.urls["webhook"])
        banner = (f"apiward demo: shop at {shop.urls['gateway']}; agent "
                  f"{agent.listening_line().removeprefix('listening ')}")
        if args.headless:
            print(banner, file=sys.stderr, flush=True)
            stop.wait(args.duration)
        else:
            _run_tui(agent, banner)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        shop.stop()  # services flush their spans as they exit
    agent.pipeline.wait_idle(30)
    time.sleep(0.5)
    agent.pipeline.wait_idle(30)
    agent.pipeline.tick_now()
    stats = agent.pipeline.snapshot_stats()
    rep = report.build_report(agent.state, stats)
    agent.stop()
    tmp.cleanup()
    found = check_planted(rep["findings"])
    rep["planted"] = found
    if not args.headless:
        return 0
    if args.report == "json":
        sys.stdout.buffer.write(orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
    elif args.report == "markdown":
        sys.stdout.write(report.render_markdown(rep))
    else:
        from agent.commands.replay import summary

        print(summary(rep, stats))
        print()
        for name, ok in found.items():
            print(f"  {'found  ' if ok else 'MISSED '} {name}")
    missed = [n for n, ok in found.items() if not ok]
    if missed:
        print(f"apiward demo: {len(missed)} planted problem(s) not found: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _run_tui(agent: Any, banner: str) -> None:
    try:
        from tui.app import run_embedded
    except ModuleNotFoundError:
        print(banner + "\n(the terminal UI is not part of this build; Ctrl-C stops the demo)", flush=True)
        threading.Event().wait()
        return
    run_embedded(agent, banner=banner)


def _replay_sample(args: argparse.Namespace) -> int:
    from agent.commands import replay

    ns = argparse.Namespace(files=[str(SAMPLE)], report=args.report, config=None, state_dir=None, spec=None,
                            policy=None)
    specs = EXAMPLES / "specs"
    if specs.is_dir():
        ns.spec = [f"{p.stem}={p}" for p in sorted(specs.glob("*.yaml"))]
    print(f"apiward demo: replaying {SAMPLE.relative_to(EXAMPLES.parent)} through the full agent\n")
    return replay.main(ns)


# The shop's traffic module lives in examples/shop; make it importable by a stable name.
def _install_traffic_module() -> None:
    import importlib.util

    if "examples_shop_traffic" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("examples_shop_traffic", SHOP / "traffic.py")
    if spec is None or spec.loader is None:
        return
    mod = importlib.util.module_from_spec(spec)
    sys.modules["examples_shop_traffic"] = mod
    spec.loader.exec_module(mod)

