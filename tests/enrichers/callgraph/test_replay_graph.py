"""``apiward replay --report json`` of a recording written by the real SDK: spans of
two services in separate records pair into an edge; an unanswered client call
resolves to a virtual external node once the recording is over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agent.cli import main as cli
from collectors.replay import write_delimited


def _provider(service: str) -> tuple[TracerProvider, InMemorySpanExporter]:
    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    return tp, mem


def test_replay_report_has_graph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    web, web_mem = _provider("web")
    users, users_mem = _provider("users")
    wt, ut = web.get_tracer("t"), users.get_tracer("t")
    for i in range(3):
        with wt.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={
                "http.method": "GET", "http.url": f"http://users:8080/users/{i}", "http.status_code": 200}):
            ctx = trace.set_span_in_context(trace.get_current_span())
            ut.start_span("GET /users/<int:id>", context=ctx, kind=SpanKind.SERVER, attributes={
                "http.method": "GET", "http.target": f"/users/{i}", "http.route": "/users/<int:id>",
                "http.status_code": 200}).end()
    wt.start_span("POST", kind=SpanKind.CLIENT, attributes={
        "http.method": "POST", "http.url": "https://api.cardprocessor.example/v1/charges",
        "http.status_code": 201}).end()
    rec = tmp_path / "rec.otlp"
    with rec.open("wb") as fh:  # the server side first: the client arrives later
        write_delimited([encode_spans(users_mem.get_finished_spans()).SerializeToString(),
                         encode_spans(web_mem.get_finished_spans()).SerializeToString()], fh)
    assert cli(["replay", str(rec), "--report", "json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    edges = {(e["client"], e["server"]): e for e in rep["graph"]["edges"]}
    assert set(edges) == {("web", "users"), ("web", "ext:api.cardprocessor.example")}
    e = edges[("web", "users")]
    assert e["calls"] == 3 and e["connection_type"] == "http" and e["tls"] is False
    for k in ("errors", "p50_ms", "p95_ms", "p99_ms", "auth"):
        assert k in e
    assert edges[("web", "ext:api.cardprocessor.example")]["tls"] is True
    kinds = {n["id"]: n["kind"] for n in rep["graph"]["nodes"]}
    assert kinds == {"web": "service", "users": "service", "ext:api.cardprocessor.example": "external"}
    inv = {(r["service"], r["method"], r["route"]): r for r in rep["inventory"]}
    assert inv[("users", "GET", "/users/{id}")]["calls"] == 3
    assert inv[("users", "GET", "/users/{id}")]["callers"] == ["web"]
    assert {f["rule"] for f in rep["findings"]} >= {"undocumented_service"}
