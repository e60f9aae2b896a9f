"""The real OpenTelemetry SDK and OTLP exporters sending to our receivers."""

from __future__ import annotations

import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    Compression as GrpcCompression,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent.model import SpanKind as ModelKind
from agent.model import StatusCode as ModelStatus
from tests.collectors.payloads import SPEC_JSON_EXAMPLE

STABLE = {
    "http.request.method": "POST",
    "url.path": "/api/orders",
    "url.query": "dry_run=1",
    "url.scheme": "https",
    "http.route": "/api/orders",
    "http.response.status_code": 201,
    "server.address": "orders.shop.local",
    "server.port": 8443,
    "client.address": "10.0.0.9",
    "user_agent.original": "curl/8.5.0",
    "http.request.header.authorization": ("Bearer abc.def.ghi",),
}
LEGACY = {
    "http.method": "GET",
    "http.target": "/users/42?email=a%40b.example",
    "http.url": "http://users:8080/users/42?email=a%40b.example",
    "http.status_code": 404,
    "net.peer.name": "users",
    "net.peer.port": 8080,
    "http.flavor": "1.1",
}


def _send(exporter) -> list:
    provider = TracerProvider(
        resource=Resource.create({"service.name": "orders", "deployment.environment": "test"})
    )
    results: list = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span) -> None:  # type: ignore[override]
            results.append(self.span_exporter.export((span,)))

    provider.add_span_processor(Recording(exporter))
    tracer = provider.get_tracer("tests.sdk", "1.0")
    with tracer.start_as_current_span(
        "POST /api/orders", kind=SpanKind.SERVER, attributes=STABLE
    ) as server:
        server.add_event("order.created", {"order.id": 7})
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes=LEGACY) as c:
            try:
                raise ValueError("no such user")
            except ValueError as e:
                c.record_exception(e)
                c.set_status(Status(StatusCode.ERROR, "lookup failed"))
    provider.shutdown()
    return results


def _check(sink, results) -> None:
    assert results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    spans = {s.name: s for s in sink.spans}
    assert set(spans) == {"POST /api/orders", "GET"}
    server, client = spans["POST /api/orders"], spans["GET"]
    assert all(src == "otlp" for _, src in sink.batches)
    assert server.service == "orders" and server.resource.environment == "test"
    assert server.kind == ModelKind.SERVER and client.kind == ModelKind.CLIENT
    assert client.parent_span_id == server.span_id and client.trace_id == server.trace_id
    assert len(server.trace_id) == 32 and server.trace_id == server.trace_id.lower()
    assert server.scope_name == "tests.sdk"
    # stable conventions
    h = server.http
    assert h is not None
    assert (h.method, h.path, h.query, h.route, h.status_code) == (
        "POST",
        "/api/orders",
        "dry_run=1",
        "/api/orders",
        201,
    )
    assert (h.scheme, h.server_address, h.server_port, h.client_address) == (
        "https",
        "orders.shop.local",
        8443,
        "10.0.0.9",
    )
    assert h.request_headers == {"authorization": "Bearer abc.def.ghi"}
    assert server.attributes["http.request.header.authorization"] == ["Bearer abc.def.ghi"]
    assert [(e.name, dict(e.attributes)) for e in server.events] == [
        ("order.created", {"order.id": 7})
    ]
    # legacy conventions
    h = client.http
    assert h is not None
    assert (h.method, h.path, h.query, h.status_code) == (
        "GET",
        "/users/42",
        "email=a%40b.example",
        404,
    )
    assert (h.server_address, h.server_port, h.scheme) == ("users", 8080, "http")
    assert client.status_code == ModelStatus.ERROR and client.status_message == "lookup failed"
    (exc,) = client.exceptions
    assert exc.type == "ValueError" and exc.message == "no such user"
    assert "Traceback" in exc.stacktrace


@pytest.mark.parametrize("gzip", [False, True])
def test_sdk_grpc_exporter(sink, grpc_receiver, gzip) -> None:
    exporter = GrpcExporter(
        endpoint=f"127.0.0.1:{grpc_receiver.port}",
        insecure=True,
        compression=GrpcCompression.Gzip if gzip else GrpcCompression.NoCompression,
    )
    _check(sink, _send(exporter))


@pytest.mark.parametrize("gzip", [False, True])
def test_sdk_http_protobuf_exporter(sink, http_receiver, gzip) -> None:
    exporter = HttpExporter(
        endpoint=f"http://127.0.0.1:{http_receiver.port}/v1/traces",
        compression=HttpCompression.Gzip if gzip else HttpCompression.NoCompression,
    )
    _check(sink, _send(exporter))


def test_spec_json_example_posted(sink, http_receiver) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{http_receiver.port}/v1/traces",
        data=SPEC_JSON_EXAMPLE,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.read() == b"{}"
    (span,) = sink.spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174" and span.parent_span_id == "eee19b7ec3c1b173"
    assert span.service == "my.service" and span.scope_name == "my.library"
    assert span.kind == ModelKind.SERVER
    assert (span.start_ns, span.end_ns) == (1544712660000000000, 1544712661000000000)
    assert span.attributes == {"my.span.attr": "some value"}


def test_logs_and_metrics_answer_success(sink, grpc_receiver, http_receiver) -> None:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_receiver.port}") as ch:
        for svc in ("logs.v1.LogsService", "metrics.v1.MetricsService"):
            call = ch.unary_unary(f"/opentelemetry.proto.collector.{svc}/Export")
            assert call(b"", timeout=5) == b""
    for path in ("/v1/logs", "/v1/metrics"):
        req = urllib.request.Request(
            f"http://127.0.0.1:{http_receiver.port}{path}",
            data=b"",
            headers={"Content-Type": "application/x-protobuf"},
        )
        with urllib.request.urlopen(req) as resp:
            assert resp.status == 200
    assert sink.spans == []
