"""The query API: health, Prometheus metrics, and JSON views of State.

Served by a threaded stdlib HTTP server on loopback by default. When a token is
configured every route but ``/healthz`` needs ``Authorization: Bearer <token>``.
Handlers copy what they need under ``state.lock`` and serialise outside it.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from agent import report
from agent.pipeline import LATENCY_BUCKETS

if TYPE_CHECKING:
    from agent.runtime import Agent

log = logging.getLogger("apiward.api")

Handler = Callable[["Request"], tuple[int, Any]]


class Request:
    def __init__(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.body = body

    def json(self) -> Any:
        if not self.body:
            return {}
        return orjson.loads(self.body)


class QueryApi:
    def __init__(self, agent: Agent, host: str, port: int, *, token: str | None = None) -> None:
        self.agent = agent
        self.host = host
        self.token = token
        self.routes: list[tuple[str, str, bool, Handler]] = []
        self._server = _Server((host, port), _make_handler(self))
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._register_defaults()

    # -------------------------------------------------------------- routing
    def add_route(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """Register a handler; ``prefix`` routes match ``path`` and anything under it."""
        self.routes.append((method, path, prefix, handler))

    def dispatch(self, req: Request) -> tuple[int, Any]:
        allowed = False
        for method, path, prefix, handler in self.routes:
            if req.path == path or (prefix and req.path.startswith(path)):
                if method != req.method:
                    allowed = True
                    continue
                try:
                    return handler(req)
                except report.FilterError as exc:  # a filter value it cannot take
                    return 400, {"error": str(exc)}
        if allowed:
            return 405, {"error": f"method {req.method} not allowed on {req.path}"}
        return 404, {"error": f"no such route: {req.path}"}

    def _register_defaults(self) -> None:
        a = self.agent
        self.add_route("GET", "/healthz", lambda r: (200, {"status": "ok"}))
        self.add_route("GET", "/metrics", lambda r: (200, _Text(render_metrics(a))))
        self.add_route("GET", "/api/v1/stats", lambda r: (200, stats_view(a)))
        self.add_route("GET", "/api/v1/graph", lambda r: (200, report.graph_view(a.state)))
        self.add_route(
            "GET",
            "/api/v1/inventory",
            lambda r: (
                200,
                report.inventory_view(
                    a.state, service=r.query.get("service", ""), lifecycle=r.query.get("lifecycle", "")
                ),
            ),
        )
        self.add_route("GET", "/api/v1/endpoint", self._endpoint)
        self.add_route("GET", "/api/v1/findings", self._findings)
        self.add_route("GET", "/api/v1/findings/", self._finding, prefix=True)
        self.add_route("POST", "/api/v1/findings/", self._finding_flag, prefix=True)
        self.add_route("GET", "/api/v1/traces", self._traces)
        self.add_route("GET", "/api/v1/traces/", self._trace, prefix=True)
        self.add_route("GET", "/api/v1/policy/verdicts", lambda r: (200, report.verdicts_view(a.state)))

    def _endpoint(self, r: Request) -> tuple[int, Any]:
        q = r.query
        d = report.endpoint_view(self.agent.state, q.get("service", ""), q.get("method", ""), q.get("route", ""))
        if d is None:
            return 404, {"error": "no such endpoint"}
        return 200, d

    def _findings(self, r: Request) -> tuple[int, Any]:
        q = r.query
        return 200, report.findings_view(
            self.agent.state,
            severity=q.get("severity", ""),
            rule=q.get("rule", ""),
            service=q.get("service", ""),
            owasp=q.get("owasp", ""),
            include_muted=q.get("muted", "") in ("1", "true"),
            group=q.get("group", ""),
        )

    def _finding(self, r: Request) -> tuple[int, Any]:
        fid = r.path.rsplit("/", 1)[-1]
        with self.agent.state.lock:
            rec = self.agent.state.findings.get(fid)
            d = rec.to_dict() if rec is not None else None
            if d is not None:
                d["history"] = [list(x) for x in rec.history]  # type: ignore[union-attr]
        if d is None:
            return 404, {"error": f"no finding with id {fid}"}
        return 200, d

    def _finding_flag(self, r: Request) -> tuple[int, Any]:
        parts = r.path.rstrip("/").split("/")
        if len(parts) < 6 or parts[-1] not in ("ack", "mute"):
            return 404, {"error": "use POST /api/v1/findings/<id>/ack or /mute"}
        fid, action = parts[-2], parts[-1]
        try:
            body = r.json()
        except orjson.JSONDecodeError:
            return 400, {"error": "the body must be JSON such as {\"value\": true}"}
        value = bool(body.get("value", True)) if isinstance(body, dict) else True
        with self.agent.state.lock:
            ok = self.agent.state.findings.set_flags(
                fid, **({"acknowledged": value} if action == "ack" else {"muted": value})
            )
        if not ok:
            return 404, {"error": f"no finding with id {fid}"}
        return 200, {"id": fid, action: value}

    def _traces(self, r: Request) -> tuple[int, Any]:
        q = r.query
        return 200, report.traces_view(
            self.agent.state,
            service=q.get("service", ""),
            route=q.get("route", ""),
            status=q.get("status", ""),
            q=q.get("q", ""),
        )

    def _trace(self, r: Request) -> tuple[int, Any]:
        tid = r.path.rsplit("/", 1)[-1]
        d = report.trace_view(self.agent.state, tid)
        if d is None:
            return 404, {"error": f"no trace with id {tid}"}
        return 200, d

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="apiward-api", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())


class _Text(str):
    """A plain-text response body (Prometheus exposition)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _make_handler(api: QueryApi) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        server_version = "apiward"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("api: " + format, *args)

        def _send(self, status: int, body: Any) -> None:
            if isinstance(body, _Text):
                data = body.encode()
                ctype = "text/plain; version=0.0.4; charset=utf-8"
            else:
                data = orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)
                ctype = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            try:
                parts = urlsplit(self.path)
                path = unquote(parts.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                if path != "/healthz" and not api.authorized(self.headers.get("Authorization")):
                    self._send(401, {"error": "missing or wrong token: send 'Authorization: Bearer <token>'"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > 1_000_000:
                    self._send(413, {"error": "request body too large"})
                    return
                body = self.rfile.read(length) if length else b""
                if method == "GET" and path == "/api/v1/events":
                    self._events()
                    return
                status, payload = api.dispatch(Request(method, path, query, body))
                self._send(status, payload)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # noqa: BLE001 - one bad request must not stop the API
                log.exception("query API error on %s", self.path)
                try:
                    self._send(500, {"error": f"internal error: {type(exc).__name__}"})
                except OSError:
                    pass

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _events(self) -> None:
            """Server-sent events: ``stats`` every second, ``finding`` on open/change."""
            state = api.agent.state
            seq = state.findings.seq  # before the headers: the client may act on them at once
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            try:
                while not api._stopping.is_set():
                    with state.lock:
                        changed = [r.to_dict() for r in state.findings.changed_since(seq)]
                        seq = state.findings.seq
                    for d in changed[:500]:
                        self.wfile.write(b"event: finding\ndata: " + orjson.dumps(d) + b"\n\n")
                    self.wfile.write(b"event: stats\ndata: " + orjson.dumps(stats_view(api.agent)) + b"\n\n")
                    self.wfile.flush()
                    api._stopping.wait(1.0)
            except (BrokenPipeError, ConnectionResetError, OSError):
                return

    return H


def stats_view(agent: Agent) -> dict[str, Any]:
    d = agent.pipeline.snapshot_stats()
    d["uptime_seconds"] = round((time.time_ns() - agent.started_ns) / 1e9, 1)
    d["spec_errors"] = report.spec_errors_view(agent.state)
    if not d["spec_errors"] and "inventory" not in agent.state.parts:
        # no traffic yet (the part is made on the first batch): the enricher's, loaded at start
        inv = next((e for e in agent.enrichers if e.name == "inventory"), None)
        d["spec_errors"] = [str(e) for e in getattr(inv, "spec_errors", None) or ()]
    for name, fn in agent.stats.extra.items():
        try:
            d[name] = fn()
        except Exception:  # noqa: BLE001
            d[name] = {"error": "unavailable"}
    return d


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(agent: Agent) -> str:
    """Prometheus text exposition of the agent's own health."""
    s = agent.stats
    lines: list[str] = []

    def family(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    with s._lock:
        received = dict(s.received)
        accepted = dict(s.accepted)
        rejected = dict(s.rejected)
        dropped = dict(s.dropped)
        requests = dict(s.requests)
        buckets = list(s.latency_buckets)
        lsum, lcount = s.latency_sum, s.latency_count
    family("apiward_spans_received_total", "counter", "Spans received, by collector.",
           [({"collector": k}, v) for k, v in sorted(received.items())])
    family("apiward_spans_accepted_total", "counter", "Spans accepted into the analysis queue.",
           [({"collector": k}, v) for k, v in sorted(accepted.items())])
    family("apiward_spans_rejected_total", "counter", "Spans (or requests) rejected as invalid, by reason.",
           [({"collector": c, "reason": r}, v) for (c, r), v in sorted(rejected.items())])
    family("apiward_spans_dropped_total", "counter", "Valid spans dropped (queue full, shutdown), by reason.",
           [({"collector": c, "reason": r}, v) for (c, r), v in sorted(dropped.items())])
    family("apiward_receiver_requests_total", "counter", "Export requests by receiver and outcome.",
           [({"receiver": c, "outcome": r}, v) for (c, r), v in sorted(requests.items())])
    family("apiward_queue_depth", "gauge", "Spans waiting for analysis.", [({}, agent.pipeline.queue_depth)])
    family("apiward_queue_capacity", "gauge", "Capacity of the analysis queue in spans.",
           [({}, agent.pipeline.queue_spans)])
    family("apiward_batches_total", "counter", "Batches analysed.", [({}, s.batches)])
    family("apiward_spans_processed_total", "counter", "Spans fully analysed.", [({}, s.spans_processed)])
    family("apiward_findings_emitted_total", "counter", "Finding observations emitted by enrichers.",
           [({}, s.findings_emitted)])
    family("apiward_enricher_errors_total", "counter", "Batches an enricher failed on.",
           [({"enricher": k}, v) for k, v in sorted(s.enricher_errors.items())])
    family("apiward_stage_cpu_seconds_total", "counter",
           "CPU seconds of the analysis thread per stage (each enricher; state_capture).",
           [({"stage": k}, round(v, 6)) for k, v in sorted(s.stage_cpu.items())])
    with agent.state.lock:
        nfind = len(agent.state.findings)
        by_sev: dict[str, int] = {}
        for r in agent.state.findings.records():
            by_sev[r.finding.severity.label] = by_sev.get(r.finding.severity.label, 0) + 1
    family("apiward_findings", "gauge", "Open findings, by severity.",
           [({"severity": k}, v) for k, v in sorted(by_sev.items())] or [({}, nfind)])
    name = "apiward_processing_latency_seconds"
    lines.append(f"# HELP {name} Time from acceptance to the end of analysis of a batch.")
    lines.append(f"# TYPE {name} histogram")
    cum = 0
    for b, c in zip(LATENCY_BUCKETS, buckets, strict=False):
        cum += c
        lines.append(f'{name}_bucket{{le="{b}"}} {cum}')
    cum += buckets[-1]
    lines.append(f'{name}_bucket{{le="+Inf"}} {cum}')
    lines.append(f"{name}_sum {lsum}")
    lines.append(f"{name}_count {lcount}")
    for comp, fn in agent.stats.extra.items():
        try:
            values = fn()
        except Exception:  # noqa: BLE001
            continue
        for k, v in sorted(values.items()):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metric = f"apiward_{comp}_{k}".replace(".", "_").replace("-", "_")
                lines.append(f"# TYPE {metric} gauge")
                lines.append(f"{metric} {v}")
    return "\n".join(lines) + "\n"
