"""``apiward demo``: the whole product on a live, instrumented demo shop.

Starts an embedded agent on free loopback ports, the shop's services (real
Flask services and functions instrumented with the OpenTelemetry SDK, each its
own process, exporting OTLP to the agent), two uninstrumented "external" hosts
on other loopback addresses, and a traffic generator with normal users and,
after a warm-up, attackers. The shop ships its own zero-trust policy and
OpenAPI specs (``examples/shop/``). ``--headless`` prints the report and exits 0
when every planted problem was found, 1 otherwise; without it the TUI opens on
the live agent. Every child process is stopped on exit, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHOP = EXAMPLES / "shop"
SPECS = SHOP / "specs"
POLICY = SHOP / "apiward-policy.yaml"
SAMPLE = EXAMPLES / "recordings" / "shop.jsonl"

#: Start-up tiers: each service's peers are in earlier tiers; a tier starts in parallel.
START_TIERS = (("cardprocessor", "webhook", "inventory", "users"), ("payments", "notification"), ("orders",),
               ("gateway",))
EXTERNAL_HOSTS = {"cardprocessor": "127.0.0.2", "webhook": "127.0.0.3"}
#: Modules the live shop imports (installed by ``make demo`` through the ``test`` extra).
SHOP_MODULES = ("flask", "requests", "jwt", "opentelemetry.instrumentation.flask",
                "opentelemetry.instrumentation.requests", "opentelemetry.instrumentation.sqlite3")
#: Abuse windows for a one-minute demo: short windows and a short warm-up, so
#: baselines exist before the attackers start (defaults: 10 s windows, 2 min warm-up).
DEMO_ABUSE = {"window_seconds": 5, "lateness_seconds": 1, "warmup_seconds": 10, "warmup_windows": 2}
#: When the attackers start (seconds of traffic); baselines are warm by then.
ATTACK_AFTER = 12.0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run apiward on a live demo shop with planted problems")
    p.add_argument("--headless", action="store_true",
                   help="no UI: run, print the report, exit 0 when every planted problem was found")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of traffic in headless mode (default 60)")
    p.add_argument("--report", choices=("summary", "json", "markdown"), default="summary",
                   help="headless report format (json: the shape of `apiward replay --report json`)")
    p.add_argument("--ebpf", action="store_true", help="also trace the shop's processes with eBPF (root)")
    p.add_argument("--recording", action="store_true", help="replay the bundled recording instead (no services)")
    p.set_defaults(func=main)


# ------------------------------------------------------------------ planted problems


@dataclass(frozen=True)
class Planted:
    """One planted problem and how to recognise its finding in the report."""

    name: str
    matches: Callable[[dict[str, Any]], bool]


def _rule(rule: str, evidence: tuple[str, ...] = (), **subject: str) -> Callable[[dict[str, Any]], bool]:
    """A finding of exactly ``rule`` whose subject fields contain the given values
    (and whose evidence mentions every string of ``evidence``)."""

    def m(f: dict[str, Any]) -> bool:
        if f.get("rule") != rule:
            return False
        s = f.get("subject") or {}
        if not all(v in str(s.get(k) or "") for k, v in subject.items()):
            return False
        ev = str(f.get("evidence") or "")
        return all(e in ev for e in evidence)

    return m


def _any(*ms: Callable[[dict[str, Any]], bool]) -> Callable[[dict[str, Any]], bool]:
    return lambda f: any(m(f) for m in ms)


#: What the demo's traffic contains and apiward must find (rule ids: docs/findings.md).
#: The shop marks each in its code with ``PLANTED``.
PLANTED: tuple[Planted, ...] = (
    Planted("shadow endpoint (users GET /users/{id}/export, not in the spec)",
            _rule("shadow_endpoint", service="users", method="GET", route="/export")),
    Planted("deprecated endpoint still called (users GET /v1/users/{id})",
            _rule("zombie_endpoint", service="users", route="/v1/users/")),
    Planted("internal call without authentication (gateway -> inventory)",
            _rule("zerotrust.missing_auth", client="gateway", server="inventory")),
    Planted("internal call in plaintext (gateway -> payments)",
            _rule("zerotrust.plaintext", client="gateway", server="payments")),
    Planted("egress to a host not in the policy (notification -> 127.0.0.3)",
            _rule("zerotrust.unexpected_egress", client="notification", host="127.0.0.3")),
    Planted("card numbers and emails in query strings (payments POST /charge)",
            _rule("sensitive.pii_in_url", ("CREDIT_CARD", "EMAIL_ADDRESS"), service="payments",
                  route="/charge")),
    Planted("token in an exception message (users)",
            _rule("sensitive.credential_in_telemetry", ("exception",), service="users")),
    Planted("PII sent to the external card processor (payments -> 127.0.0.2)",
            _rule("sensitive.external_transfer", client="payments", host="127.0.0.2")),
    Planted("JWT with alg none (at the gateway)", _rule("zerotrust.jwt_alg_none", service="gateway")),
    Planted("JWT signed with a weak secret (at the gateway)",
            _rule("zerotrust.jwt_weak_secret", service="gateway")),
    Planted("BOLA: a bot enumerating order ids (user7)",
            _rule("abuse.bola_enumeration", route="/orders/", client="user7")),
    Planted("credential stuffing on login (gateway POST /api/login)",
            _rule("abuse.credential_stuffing", service="gateway", route="/api/login")),
    Planted("flood on the orders function with no 429 (user9)",
            _rule("abuse.rate_limit_missing", service="orders", route="/orders/", client="user9")),
    Planted("verbose stack trace on a 500 (GET users/{id})",
            _any(_rule("abuse.error_disclosure", ("stack_trace",), service="users", route="/users/"),
                 _rule("abuse.error_disclosure", ("stack_trace",), service="gateway", route="/api/users/"))),
    Planted("SSRF: a URL parameter fetched by the gateway (GET /api/preview)",
            _rule("abuse.ssrf", service="gateway", route="/api/preview")),
)


#: Body-level problems: visible only when a collector captures bodies (``--ebpf``).
PLANTED_EBPF: tuple[Planted, ...] = (
    Planted("mass assignment: privileged fields in an order body (--ebpf)",
            _any(_rule("abuse.mass_assignment", service="gateway", route="/api/orders"),
                 _rule("abuse.mass_assignment", service="orders", route="/orders"))),
    Planted("excessive data exposure: the user export returns SSNs (--ebpf)",
            _rule("sensitive.excessive_exposure", service="users", route="/export")),
)


def check_planted(findings: Iterable[dict[str, Any]], ebpf: bool = False) -> dict[str, bool]:
    """Planted problem name -> whether a matching finding is in ``findings``."""
    planted = PLANTED + PLANTED_EBPF if ebpf else PLANTED
    found = dict.fromkeys((p.name for p in planted), False)
    for f in findings:
        for p in planted:
            if not found[p.name] and p.matches(f):
                found[p.name] = True
    return found


class PlantedWatch:
    """Matches every finding as the pipeline emits it (``Pipeline.on_findings``).

    The store merges repeated observations of one finding (its evidence is the
    latest), so a planted problem is also matched on the observation that showed
    it, not only on the merged finding of the final report.
    """

    def __init__(self, ebpf: bool = False) -> None:
        self.ebpf = ebpf
        self.found: set[str] = set()

    def __call__(self, findings: list[Any]) -> None:
        hits = check_planted((_finding_dict(f) for f in findings), self.ebpf)
        self.found.update(name for name, ok in hits.items() if ok)

    def merge(self, report_findings: list[dict[str, Any]]) -> dict[str, bool]:
        hits = check_planted(report_findings, self.ebpf)
        return {name: ok or name in self.found for name, ok in hits.items()}


def _finding_dict(f: Any) -> dict[str, Any]:
    subject = f.subject
    fields = getattr(subject, "__dataclass_fields__", {})
    return {"rule": f.rule, "subject": {k: getattr(subject, k) for k in fields}, "evidence": f.evidence}


# ------------------------------------------------------------------ the shop


class Shop:
    """The demo services as child processes.

    Each child runs in its own session (a terminal's Ctrl-C reaches only the
    demo, which then stops them in order) and serves until its stdin closes, so
    the children also go when the demo dies without cleaning up.
    """

    def __init__(self, otlp_grpc_port: int, data_dir: str) -> None:
        self.otlp = f"http://127.0.0.1:{otlp_grpc_port}"
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.urls: dict[str, str] = {}

    @property
    def pids(self) -> list[int]:
        """The shop's own services (the external hosts play the internet: not traced)."""
        return [p.pid for n, p in self.procs.items() if n not in EXTERNAL_HOSTS]

    def start(self) -> None:
        for tier in START_TIERS:
            for name in tier:
                self._spawn(name)
            for name in tier:
                self._ready(name)

    def _spawn(self, name: str) -> None:
        env = dict(os.environ)
        env.update({f"SHOP_{k.upper()}_URL": v for k, v in self.urls.items()})
        env.update({
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "SHOP_DATA_DIR": self.data_dir,
            "PYTHONUNBUFFERED": "1",
        })
        for k in list(env):
            if k.startswith(("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_",
                             "OTEL_INSTRUMENTATION_", "OTEL_SEMCONV_")):
                env.pop(k)
        if name not in EXTERNAL_HOSTS:
            # What a container would set; the eBPF collector names a traced process by it.
            env["OTEL_SERVICE_NAME"] = name
        log = open(Path(self.data_dir) / f"{name}.log", "w")  # noqa: SIM115 - the child owns it
        try:
            p = subprocess.Popen(
                [sys.executable, str(SHOP / "services.py"), name],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        self.procs[name] = p

    def _ready(self, name: str) -> None:
        p = self.procs[name]
        line = p.stdout.readline() if p.stdout else ""
        parts = line.split()
        if len(parts) != 3 or parts[0] != "ready":
            self.stop()
            tail = _tail(Path(self.data_dir) / f"{name}.log")
            raise RuntimeError(f"the demo service {name} did not start{': ' + tail if tail else ''}")
        host = EXTERNAL_HOSTS.get(name, "127.0.0.1")
        self.urls[name] = f"http://{host}:{parts[2]}"

    def stop(self, timeout: float = 10.0) -> None:
        """Close every child's stdin, wait for it to flush its spans and exit; kill stragglers."""
        for p in self.procs.values():
            try:
                if p.stdin:
                    p.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        self.procs.clear()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def demo_config(state_dir: str) -> Any:
    """The agent config of the demo: free loopback ports, the shop's specs and policy."""
    from agent.config import Config

    specs = {p.stem: str(p) for p in sorted(SPECS.glob("*.yaml"))}
    cfg = Config(
        bind="127.0.0.1", grpc_port=0, http_port=0, api_port=0, state_dir=Path(state_dir), persist=False,
        specs=specs, policy=str(POLICY) if POLICY.is_file() else None,
        # In the demo only 127.0.0.1 is "inside"; 127.0.0.2 and .3 play the internet.
        internal_cidrs=["127.0.0.1/32", "::1/128"], flush_interval=2.0,
    )
    cfg.sections["abuse"] = dict(DEMO_ABUSE)
    return cfg


def _missing_modules() -> list[str]:
    out = []
    for m in SHOP_MODULES:
        try:
            if importlib.util.find_spec(m) is None:
                out.append(m)
        except ModuleNotFoundError:
            out.append(m)
    return out


@contextmanager
def _interrupts() -> Iterator[None]:
    """SIGTERM (and SIGHUP) stop the demo like Ctrl-C: cleanly, children included."""

    def raise_interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def banner(shop: Shop, agent: Any) -> str:
    """Where the shop, the OTLP receivers and the query API listen."""
    return (
        f"apiward demo · query API http://127.0.0.1:{agent.api_port} · OTLP gRPC 127.0.0.1:{agent.grpc_port}"
        f", HTTP 127.0.0.1:{agent.http_port} · shop http://127.0.0.1:{shop.urls.get('gateway', '?').rsplit(':', 1)[-1]}"
    )


def main(args: argparse.Namespace) -> int:
    if args.recording:
        return _replay_sample(args)
    if args.duration <= 0:
        print("apiward demo: --duration must be a positive number of seconds, such as 60.", file=sys.stderr)
        return 2
    missing = _missing_modules()
    if missing:
        print(f"apiward demo: the live shop needs {', '.join(missing)}: run `make demo` (or "
              "pip install -e '.[test]'), or use --recording to replay the bundled recording.", file=sys.stderr)
        return 2
    if args.ebpf:
        try:
            from collectors.ebpf import check_environment
        except ModuleNotFoundError:
            print("apiward demo: the eBPF collector is not part of this build.", file=sys.stderr)
            return 2
        problem = check_environment()
        if problem:
            print(f"apiward demo: --ebpf: {problem}", file=sys.stderr)
            return 2
    with _interrupts():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from agent import report
    from agent.runtime import Agent, _joining_sink

    tmp = tempfile.TemporaryDirectory(prefix="apiward-demo-")
    cfg = demo_config(tmp.name)
    agent = Agent(cfg)
    watch = PlantedWatch(args.ebpf)
    agent.pipeline.on_findings.append(watch)
    ebpf: Any = None
    if args.ebpf:
        join = _joining_sink(agent.pipeline)  # OTLP and eBPF spans of one request become one span
        if join is not None:
            agent.sink = join
    shop: Shop | None = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    interrupted = False
    ui_rc = 0
    rep: dict[str, Any] | None = None
    try:
        try:
            agent.start()
            shop = Shop(agent.grpc_port, tmp.name)
            shop.start()
            if args.ebpf:
                ebpf = _start_ebpf(cfg, agent, shop.pids)
            traffic = _traffic_module()
            threads = traffic.run(int(shop.urls["gateway"].rsplit(":", 1)[1]), stop,
                                  internal_url=shop.urls["webhook"], attack_after=ATTACK_AFTER)
            text = banner(shop, agent)
            if args.headless:
                print(text, file=sys.stderr, flush=True)
                stop.wait(args.duration)
                rep = _finish(stop, threads, shop, ebpf, agent, report, watch)
            else:
                print(text, flush=True)
                ui_rc = _run_tui(agent, text)
        except KeyboardInterrupt:
            interrupted = True
    except RuntimeError as exc:
        print(f"apiward demo: {exc}", file=sys.stderr)
        return 2
    finally:
        _shutdown(stop, threads, shop, ebpf, agent, tmp)  # also on any other error
    if interrupted:
        print("apiward demo: interrupted; the shop and the agent are stopped.", file=sys.stderr)
        return 130
    if rep is None:
        return ui_rc
    return _print_report(args, rep)


def _finish(stop: threading.Event, threads: list[threading.Thread], shop: Shop | None, ebpf: Any,
            agent: Any, report: Any, watch: PlantedWatch) -> dict[str, Any]:
    """Stop traffic and services (they flush their spans), let the agent catch up, build the report."""
    stop.set()
    for t in threads:
        t.join(timeout=15)
    if shop is not None:
        shop.stop()
    if ebpf is not None:
        ebpf.stop()
    flush = getattr(agent.sink, "flush", None)
    if flush is not None:
        flush()  # release the spans a joining sink still holds
    agent.pipeline.wait_idle(30)
    time.sleep(0.3)
    agent.pipeline.wait_idle(30)
    agent.pipeline.tick_now()
    stats = agent.pipeline.snapshot_stats()
    rep: dict[str, Any] = report.build_report(agent.state, stats)
    rep["planted"] = watch.merge(rep["findings"])
    return rep


def _shutdown(stop: threading.Event, threads: list[threading.Thread], shop: Shop | None, ebpf: Any,
              agent: Any, tmp: tempfile.TemporaryDirectory[str]) -> None:
    """Idempotent: everything this demo started is stopped when it returns."""
    stop.set()
    for t in threads:
        t.join(timeout=5)
    if shop is not None:
        shop.stop()
    if ebpf is not None:
        try:
            ebpf.stop()
        except Exception:  # noqa: BLE001 - stopping twice is harmless
            pass
    agent.stop()
    close = getattr(agent.sink, "close", None)
    if close is not None:
        close()
    tmp.cleanup()


def _start_ebpf(cfg: Any, agent: Any, pids: list[int]) -> Any:
    """The eBPF collector on the shop's processes (their pids exist only now)."""
    from collectors.ebpf import EbpfCollector

    cfg.ebpf_pids = list(pids)
    collector = EbpfCollector(cfg, agent.sink)
    try:
        collector.start()
    except Exception as exc:  # EbpfUnavailable and friends: one sentence, then stop cleanly
        raise RuntimeError(f"--ebpf: {exc}") from None
    if hasattr(collector, "stats"):
        agent.stats.extra["ebpf"] = collector.stats
    return collector


def _print_report(args: argparse.Namespace, rep: dict[str, Any]) -> int:
    from agent import report

    found: dict[str, bool] = rep["planted"]
    if args.report == "json":
        sys.stdout.buffer.write(orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")
        sys.stdout.flush()
    elif args.report == "markdown":
        sys.stdout.write(report.render_markdown(rep))
    else:
        from agent.commands.replay import summary

        print(summary(rep, rep.get("stats") or {}))
        print()
        print(f"planted problems found: {sum(found.values())}/{len(found)}")
        for name, ok in found.items():
            print(f"  {'found ' if ok else 'MISSED'}  {name}")
    missed = [n for n, ok in found.items() if not ok]
    if missed:
        print(f"apiward demo: {len(missed)} planted problem(s) not found: {'; '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _run_tui(agent: Any, text: str) -> int:
    """The TUI on the agent's query API (127.0.0.1), until q or Ctrl-C."""
    try:
        from textual.binding import Binding

        from tui.app import ApiwardApp
        from tui.client import ApiClient
    except ModuleNotFoundError:
        print("(the terminal UI is not part of this build; Ctrl-C stops the demo)", flush=True)
        threading.Event().wait()
        return 0

    class DemoApp(ApiwardApp):
        CSS_PATH = str(Path(sys.modules[ApiwardApp.__module__].__file__ or "").with_name("app.tcss"))
        # Ctrl-C quits too (Textual keeps it for copying otherwise): the demo then stops everything.
        BINDINGS = [*ApiwardApp.BINDINGS, Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    client = ApiClient(f"http://127.0.0.1:{agent.api_port}", agent.config.api_token)
    app = DemoApp(client, poll_interval=1.0, source=text)
    signalled: list[int] = []

    def on_signal(sig: int, _frame: FrameType | None) -> None:
        # SIGTERM/SIGHUP while the UI runs: ask the app to exit from its own loop (an
        # exception raised into the loop left Textual half-stopped: "no running event
        # loop"), then main() stops everything as after Ctrl-C.
        signalled.append(sig)
        try:
            asyncio.get_running_loop().call_soon_threadsafe(app.exit)
        except RuntimeError:  # the loop is not running yet, or any more
            raise KeyboardInterrupt from None

    main_thread = threading.current_thread() is threading.main_thread()  # signals: main thread only
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)} if main_thread else {}
    try:
        app.run()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if signalled:
        raise KeyboardInterrupt
    return int(app.return_code or 0)


def _replay_sample(args: argparse.Namespace) -> int:
    from agent.commands import replay

    # The recording is of its own shop (examples/make_sample_recording.py), not of the live one:
    # the live shop's specs and policy do not describe it.
    ns = argparse.Namespace(files=[str(SAMPLE)], report=args.report, config=None, state_dir=None, spec=None,
                            policy=None)
    print(f"apiward demo: replaying {SAMPLE.relative_to(EXAMPLES.parent)} through the full agent\n",
          file=sys.stderr)
    return replay.main(ns)


def _traffic_module() -> Any:
    """examples/shop/traffic.py, importable by a stable name (examples/ is not a package)."""
    name = "apiward_demo_shop_traffic"
    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    spec = importlib.util.spec_from_file_location(name, SHOP / "traffic.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {SHOP / 'traffic.py'}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
