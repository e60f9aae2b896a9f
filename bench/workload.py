"""Realistic pre-serialized OTLP trace requests for the ingest benchmarks.

Built directly as protobuf (not with the SDK, which tops out near 8k spans/s):
HTTP server and client spans of a handful of services, ~12 attributes each,
a mix of the stable and legacy semantic conventions, a few errors.
"""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

SERVICES = ("gateway", "users", "orders", "payments", "inventory")
ROUTES = (
    ("GET", "/api/users/{id}", "/api/users/{n}"),
    ("GET", "/api/orders", "/api/orders"),
    ("POST", "/api/orders", "/api/orders"),
    ("GET", "/api/orders/{id}", "/api/orders/{n}"),
    ("POST", "/api/payments/{id}/capture", "/api/payments/{n}/capture"),
    ("GET", "/api/inventory/items/{sku}", "/api/inventory/items/SKU-{n}"),
    ("PUT", "/api/users/{id}/address", "/api/users/{n}/address"),
)


def _kv(key: str, value: str | int | bool | float) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_request(n_spans: int = 1000, seed: int = 0) -> ExportTraceServiceRequest:
    """One request of ``n_spans`` HTTP spans spread over the services."""
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    per_service = {}
    for svc in SERVICES:
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(
            [
                _kv("service.name", svc),
                _kv("service.namespace", "shop"),
                _kv("service.instance.id", f"{svc}-7d9f-{rnd.randrange(1000)}"),
                _kv("deployment.environment", "prod"),
                _kv("k8s.namespace.name", "shop"),
                _kv("k8s.pod.name", f"{svc}-7d9f-x{rnd.randrange(100)}"),
                _kv("telemetry.sdk.language", "python"),
            ]
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "opentelemetry.instrumentation.flask"
        per_service[svc] = ss
    t0 = 1_700_000_000_000_000_000 + seed * 1_000_000_000
    # Spans come in caller/callee pairs as in real traces: a CLIENT span in one
    # service and, in the same trace, the SERVER span of the service it called,
    # whose parent is that client span. Server spans of the pair's caller have a
    # parent from outside the request (the edge's ingress) 30% of the time.
    pending: tuple[bytes, bytes, str, str, str, str, int] | None = None
    for i in range(n_spans):
        method, route, path_t = ROUTES[rnd.randrange(len(ROUTES))]
        path = path_t.replace("{n}", str(rnd.randrange(1, 10_000)))
        status = 500 if rnd.random() < 0.02 else (404 if rnd.random() < 0.05 else 200)
        if pending is None:
            server = False
            svc = SERVICES[i % len(SERVICES)]
            trace_id = rnd.randbytes(16)
            span_id = rnd.randbytes(8)
            parent = rnd.randbytes(8) if rnd.random() < 0.7 else b""
            pending = (trace_id, span_id, svc, method, route, path, status)
        else:
            server = True
            trace_id, parent, caller, method, route, path, status = pending
            svc = SERVICES[(SERVICES.index(caller) + 1) % len(SERVICES)]
            span_id = rnd.randbytes(8)
            pending = None
        stable = rnd.random() < 0.5
        sp = Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=f"{method} {route}",
            kind=Span.SPAN_KIND_SERVER if server else Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=t0 + i * 1000,
            end_time_unix_nano=t0 + i * 1000 + rnd.randrange(100_000, 50_000_000),
            status=Status(code=Status.STATUS_CODE_ERROR if status >= 500 else 0),
        )
        peer = SERVICES[(SERVICES.index(svc) + 1) % len(SERVICES)]
        if stable:
            attrs = [
                _kv("http.request.method", method),
                _kv("url.path", path),
                _kv("url.scheme", "http"),
                _kv("http.response.status_code", status),
                _kv("server.address", peer if not server else svc),
                _kv("server.port", 8080),
                _kv("network.protocol.version", "1.1"),
                _kv("user_agent.original", "python-requests/2.31.0"),
                _kv("network.peer.address", f"10.0.{rnd.randrange(255)}.{rnd.randrange(255)}"),
                _kv("network.peer.port", rnd.randrange(30000, 60000)),
            ]
            if server:
                attrs += [_kv("http.route", route), _kv("client.address", "10.0.0.7")]
            else:
                attrs += [_kv("url.full", f"http://{peer}:8080{path}"), _kv("peer.service", peer)]
        else:
            attrs = [
                _kv("http.method", method),
                _kv("http.target", path),
                _kv("http.scheme", "http"),
                _kv("http.status_code", status),
                _kv("http.flavor", "1.1"),
                _kv("http.user_agent", "python-requests/2.31.0"),
                _kv("net.peer.ip", f"10.0.{rnd.randrange(255)}.{rnd.randrange(255)}"),
                _kv("net.peer.port", rnd.randrange(30000, 60000)),
            ]
            if server:
                attrs += [
                    _kv("http.route", route),
                    _kv("net.host.name", svc),
                    _kv("net.host.port", 8080),
                    _kv("http.server_name", svc),
                ]
            else:
                attrs += [
                    _kv("http.url", f"http://{peer}:8080{path}"),
                    _kv("net.peer.name", peer),
                    _kv("http.host", f"{peer}:8080"),
                    _kv("peer.service", peer),
                ]
        sp.attributes.extend(attrs)
        per_service[svc].spans.append(sp)
    return req


def build_payloads(count: int = 20, n_spans: int = 1000) -> list[bytes]:
    """``count`` distinct serialized requests (distinct ids, same shape)."""
    return [build_request(n_spans, seed=s).SerializeToString() for s in range(count)]
