"""Request builders shared by the collector tests."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")

# The example request of the OTLP specification (opentelemetry-proto examples/trace.json).
SPEC_JSON_EXAMPLE = b"""{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute",
                                "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]
      }]
    }]
  }]
}"""


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def request(
    n: int = 1,
    *,
    span_id: bytes | None = None,
    trace_id: bytes = TRACE_ID,
    service: str = "checkout",
    name: str = "GET /api/items/{id}",
) -> ExportTraceServiceRequest:
    """``n`` HTTP server spans; ``span_id`` overrides the id of the first span."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv("service.name", service))
    ss = rs.scope_spans.add()
    ss.scope.name = "test"
    for i in range(n):
        sid = span_id if (span_id is not None and i == 0) else (i + 1).to_bytes(8, "big")
        ss.spans.append(
            Span(
                trace_id=trace_id,
                span_id=sid,
                name=name,
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=1_700_000_000_000_000_000,
                end_time_unix_nano=1_700_000_000_005_000_000,
                attributes=[
                    kv("http.request.method", "GET"),
                    kv("url.path", f"/api/items/{i}"),
                    kv("http.route", "/api/items/{id}"),
                    kv("http.response.status_code", 200),
                ],
            )
        )
    return req


def good_bytes() -> bytes:
    return request().SerializeToString()
