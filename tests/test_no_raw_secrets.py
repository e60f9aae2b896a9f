"""Nothing apiward writes, logs, serves, reports or forwards holds a raw sensitive value.

A real agent (receivers, query API, persistence, redacting forwarder) takes spans
full of secrets from the real OpenTelemetry SDK exporter; then every byte it
produced is searched for each raw value: every file of the state dir (the SQLite
database included), the DEBUG log, every query API answer, the reports in every
format, the spans it forwarded to an in-test OTLP gRPC collector and the findings
and metrics it exported over OTLP to another one. Secrets come as strings, as
integers and inside map (kvlist) attributes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import quote

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent.cli import build_parser
from agent.config import Config
from agent.runtime import Agent
from tests.agent.otlp_sink import GrpcOtlpServer, OtlpSink

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MjQyNDIiLCJuYW1lIjoiSmFuZSBEb2UiLCJpYXQiOjE3MDAwMDAwMDB9."
    "Qm9ndXNTaWduYXR1cmVGb3JUZXN0aW5nT25seTEyMzQ1Ng"
)
PEM_BODY = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0"
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
SECRETS = {
    "card": "4111 1111 1111 1111",
    "card_bare": "5555555555554444",
    "jwt": JWT,
    "aws_key_id": "AKIAZQ3W2E5R6T7YMU2K",
    "aws_secret": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ8vR3xT2q",
    "email": "jane.doe@example.org",
    "ssn": "536-90-4399",
    "url_password": "Pa55w0rd-xyzzy",
    "db_password": "S3cr3tPassw0rdDB",
    "form_password": "Hunter22!xq",
    "bearer": "sk9Fq2LmZx7Pw3Rt8Vb1Nc4Yd6Ke0Hj",
    "pem_body": PEM_BODY,
    "github": "ghp_" + "Zx9" * 12,
    "card_int": "4012888888881881",  # sent as an integer attribute
    "ssn_int": "536904399",  # sent as an integer attribute
    "kv_email": "kv.person@example.org",  # inside a map (kvlist) attribute
    "kv_password": "KvPassw0rd!9",  # inside a map (kvlist) attribute
    "kv_card": "5105105105105100",  # in a list inside a map attribute
}


def _raw_forms(value: str) -> set[bytes]:
    """The bytes a raw value could appear as: itself, JSON-escaped, URL-encoded."""
    forms = {value, json.dumps(value)[1:-1], quote(value, safe="")}
    return {f.encode() for f in forms if f}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """The next OTLP hop: keeps every request the forwarder sends."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def span_count(self) -> int:
        with self.lock:
            return sum(len(ss.spans) for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans)


@pytest.fixture()
def collector() -> Iterator[tuple[Collector, int]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    svc = Collector()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield svc, port
    server.stop(0)


@pytest.fixture()
def debug_log(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "apiward.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(old)
    handler.close()


def _send_spans(grpc_port: int) -> int:
    """Spans full of secrets, through the real SDK and OTLP/gRPC exporter. Returns the count."""
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api", "deployment.environment": "test"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)))
    tracer = provider.get_tracer("test.secrets")
    s = SECRETS
    n = 0
    with tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER, attributes={
        "http.request.method": "POST", "url.scheme": "http", "url.path": "/login", "http.route": "/login",
        "server.address": "shop.example.com", "http.response.status_code": 401,
        "url.query": f"email={s['email']}&password={s['form_password']}",
        "url.full": f"http://shop.example.com/login?email={s['email']}&password={s['form_password']}",
        "http.request.header.authorization": [f"Bearer {s['bearer']}"],
        "http.request.header.x-id-token": [JWT],
        "user_agent.original": "Mozilla/5.0",
    }) as span:
        n += 1
        span.set_status(Status(StatusCode.ERROR, f"login failed for {s['email']} password={s['form_password']}"))
        try:
            raise RuntimeError(f"cannot load signing key {PEM}")
        except RuntimeError as exc:
            span.record_exception(exc)
        with tracer.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes={
            "http.request.method": "POST", "url.full": f"https://api.partner.com/v1/charge?api_key={s['aws_key_id']}",
            "server.address": "api.partner.com", "server.port": 443, "http.response.status_code": 200,
            "http.request.body": json.dumps({"card": s["card"], "ssn": s["ssn"], "email": s["email"]}),
            "http.response.body": json.dumps({"status": "ok", "card": s["card_bare"]}),
        }):
            n += 1
        with tracer.start_as_current_span("SELECT shop.users", kind=SpanKind.CLIENT, attributes={
            "db.system": "postgresql", "server.address": "db.internal",
            "db.query.text": f"SELECT * FROM users WHERE email = '{s['email']}' AND ssn = '{s['ssn']}'",
            "db.connection_string": f"postgres://app:{s['db_password']}@db.internal:5432/shop",
        }):
            n += 1
        with tracer.start_as_current_span("git clone", kind=SpanKind.INTERNAL, attributes={
            "app.repo": f"https://deploy:{s['url_password']}@git.example.com/shop.git",
            "app.aws_secret_access_key": s["aws_secret"],
            "app.github_token": s["github"],
            "app.note": f"charged card {s['card']} for {s['email']}",
            "app.card_int": int(s["card_int"]),
        }):
            n += 1
    # No route template: the path itself (with an email and a token in it) is all there is.
    with tracer.start_as_current_span(f"GET /users/{s['email']}/reset?token={JWT}", kind=SpanKind.SERVER,
                                      attributes={
        "http.request.method": "GET", "url.scheme": "http", "server.address": "shop.example.com",
        "url.path": f"/users/{s['email']}/reset", "url.query": f"token={JWT}", "http.response.status_code": 200,
        "http.request.header.cookie": [f"session={s['bearer']}; theme=dark"],
    }):
        n += 1
    provider.force_flush()
    provider.shutdown()
    return n


def _send_json_spans(http_port: int) -> int:
    """Integer and map (kvlist) attributes, which the SDK cannot send: OTLP/JSON over HTTP."""
    s = SECRETS

    def kv(key: str, value: Any) -> dict[str, Any]:
        if isinstance(value, int):
            return {"key": key, "value": {"intValue": str(value)}}
        if isinstance(value, list):
            return {"key": key, "value": {"arrayValue": {"values": [{"stringValue": x} for x in value]}}}
        if isinstance(value, dict):
            return {"key": key, "value": {"kvlistValue": {"values": [kv(k, v) for k, v in value.items()]}}}
        return {"key": key, "value": {"stringValue": value}}

    now = time.time_ns()
    attrs = {"http.request.method": "PUT", "url.scheme": "http", "url.path": "/profile", "http.route": "/profile",
             "server.address": "shop.example.com", "http.response.status_code": 200,
             "user.ssn_int": int(s["ssn_int"]),
             "user.profile": {"email": s["kv_email"], "password": s["kv_password"],
                              "cards": [s["kv_card"]], "visits": 3}}
    body = {"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", "profile-api"),
                                    kv("deploy.owner", {"email": s["kv_email"]})]},
        "scopeSpans": [{"scope": {"name": "test.json"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "PUT /profile", "kind": 2, "startTimeUnixNano": str(now - 1_000_000),
            "endTimeUnixNano": str(now), "attributes": [kv(k, v) for k, v in attrs.items()],
        }]}],
    }]}
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/traces", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - 127.0.0.1
        assert resp.status == 200
    return 1


def _bad_requests(http_port: int) -> dict[str, bytes]:
    """Answers to requests apiward refuses: their messages must name fields, not values."""
    s = SECRETS
    out: dict[str, bytes] = {}
    bad_int = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b175", "name": "x",
        "attributes": [{"key": "n", "value": {"intValue": f"pw={s['form_password']}-{s['card_bare']}"}}],
    }, {
        "traceId": "5b8efff798038103d269b633813fc60d", "spanId": "eee19b7ec3c1b176", "name": "y",
        "kind": f"token={s['bearer']}",
    }]}]}]}
    bad_proto = trace_service_pb2.ExportTraceServiceRequest()
    span = bad_proto.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = b"\x01\x02\x03"  # invalid: the span is refused, its name must not be quoted
    span.span_id = b"\x01" * 8
    span.name = f"GET /reset?token={JWT}&email={s['email']}"
    for name, body, ctype in (("OTLP/JSON", json.dumps(bad_int).encode(), "application/json"),
                              ("OTLP/protobuf", bad_proto.SerializeToString(), "application/x-protobuf")):
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/traces", data=body,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - 127.0.0.1
                out[f"answer to a bad {name} request"] = resp.read()
        except urllib.error.HTTPError as exc:
            out[f"answer to a bad {name} request"] = exc.read()
    assert all(out.values()), out
    return out


def _get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:  # noqa: S310 - 127.0.0.1
        return bytes(resp.read())


def _wait(cond: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _items(body: bytes, key: str) -> list[dict[str, Any]]:
    """The list of an answer that is either a list or ``{key: [...]}``."""
    doc = json.loads(body)
    items = doc.get(key, []) if isinstance(doc, dict) else doc
    return [x for x in items if isinstance(x, dict)]


def _query_api(port: int) -> dict[str, bytes]:
    """Every query API answer, including per-finding, per-trace and per-endpoint ones."""
    out: dict[str, bytes] = {}
    for path in ("/healthz", "/metrics", "/api/v1/stats", "/api/v1/graph", "/api/v1/inventory",
                 "/api/v1/findings", "/api/v1/traces", "/api/v1/traces?q=jane"):
        out[path] = _get(port, path)
    for f in _items(out["/api/v1/findings"], "findings"):
        path = f"/api/v1/findings/{quote(str(f['id']), safe='')}"
        out[path] = _get(port, path)
    for t in _items(out["/api/v1/traces"], "traces"):
        path = f"/api/v1/traces/{t['trace_id']}"
        out[path] = _get(port, path)
    for ep in _items(out["/api/v1/inventory"], "endpoints"):
        path = (f"/api/v1/endpoint?service={quote(ep['service'])}&method={quote(ep.get('method') or '')}"
                f"&route={quote(ep.get('route') or '')}")
        try:
            out[path] = _get(port, path)
        except urllib.error.HTTPError as exc:  # an endpoint the API cannot resolve is not a leak
            out[path] = exc.read()
    return out


def _reports(state_dir: Path, tmp_path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    parser = build_parser()
    for fmt in ("json", "markdown", "sarif", "html"):
        dest = tmp_path / f"report.{fmt}"
        args = parser.parse_args(["report", "--state-dir", str(state_dir), "--format", fmt, "-o", str(dest)])
        assert args.func(args) == 0, fmt
        out[f"report {fmt}"] = dest.read_bytes()
    return out


def _forwarded_ints(requests: list[Any]) -> set[int]:
    """Every integer attribute value (nested ones included) of the forwarded spans."""
    out: set[int] = set()

    def walk(value: Any) -> None:
        kind = value.WhichOneof("value")
        if kind == "int_value":
            out.add(value.int_value)
        elif kind == "array_value":
            for v in value.array_value.values:
                walk(v)
        elif kind == "kvlist_value":
            for kv in value.kvlist_value.values:
                walk(kv.value)

    for req in requests:
        for rs in req.resource_spans:
            for kv in rs.resource.attributes:
                walk(kv.value)
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    for kv in [*sp.attributes, *(a for ev in sp.events for a in ev.attributes)]:
                        walk(kv.value)
    return out


def _leaks(name: str, data: bytes) -> list[str]:
    found = []
    for label, value in SECRETS.items():
        for form in _raw_forms(value):
            if form in data:
                found.append(f"{name}: raw {label} ({form[:24].decode(errors='replace')}...)")
                break
    return found


@pytest.fixture()
def exports() -> Iterator[tuple[OtlpSink, str]]:
    """The OTLP logs and metrics receiver apiward exports findings and metrics to."""
    sink = OtlpSink()
    srv = GrpcOtlpServer(sink).start()
    yield sink, srv.endpoint
    srv.stop()


def test_nothing_raw_anywhere(tmp_path: Path, collector: tuple[Collector, int], debug_log: Path,
                              exports: tuple[OtlpSink, str]) -> None:
    svc, fwd_port = collector
    export_sink, export_endpoint = exports
    state_dir = tmp_path / "state"
    config = Config(state_dir=state_dir, grpc_port=0, http_port=0, api_port=0, bind="127.0.0.1",
                    forward=f"grpc://127.0.0.1:{fwd_port}", flush_interval=0.2,
                    export_endpoint=export_endpoint, export_protocol="grpc",
                    sections={"export": {"interval": 0.2}})
    agent = Agent(config)
    agent.start()
    try:
        sent = _send_spans(agent.grpc_port)
        sent += _send_json_spans(agent.http_port)
        _wait(lambda: svc.span_count() >= sent, "the forwarded spans")
        agent.pipeline.wait_idle(timeout=30)
        _wait(lambda: b"sensitive." in _get(agent.api_port, "/api/v1/findings"), "sensitive findings")
        outputs = _query_api(agent.api_port)
        outputs.update(_bad_requests(agent.http_port))
        assert export_sink.wait(lambda: export_sink.logs and export_sink.metrics), "nothing exported"
    finally:
        agent.stop()

    rules = {f["rule"] for f in _items(outputs["/api/v1/findings"], "findings")}
    # The run really was full of secrets, and apiward saw them.
    assert {"sensitive.secret_in_url", "sensitive.pii_in_url", "sensitive.credential_in_telemetry",
            "sensitive.external_transfer"} <= rules, rules

    forwarded = b"".join(r.SerializeToString() for r in svc.requests)
    assert b"4111********1111" in forwarded  # replaced in place, not dropped
    assert b"4012********1881" in forwarded  # an integer attribute, replaced by its masked form
    assert b"k***@example.org" in forwarded  # inside a map attribute
    # Protobuf carries integers as varints, which the byte search below cannot see.
    raw_ints = {int(SECRETS["card_int"]), int(SECRETS["ssn_int"])}
    assert not raw_ints & _forwarded_ints(svc.requests)
    outputs["forwarded spans"] = forwarded
    with export_sink.cond:
        outputs["OTLP log export"] = b"".join(r.SerializeToString() for r in export_sink.logs)
        outputs["OTLP metrics export"] = b"".join(r.SerializeToString() for r in export_sink.metrics)
    assert b"sensitive." in outputs["OTLP log export"]  # the findings really were exported
    outputs.update(_reports(state_dir, tmp_path))
    files = [p for p in state_dir.rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in files)
    for p in files:
        outputs[f"state file {p.relative_to(state_dir)}"] = p.read_bytes()
    for h in logging.getLogger().handlers:
        h.flush()
    outputs["debug log"] = debug_log.read_bytes()
    assert outputs["debug log"], "the DEBUG log captured nothing"

    leaks = [leak for name, data in outputs.items() for leak in _leaks(name, data)]
    assert not leaks, "\n".join(leaks)
