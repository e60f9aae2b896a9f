"""Every bad input of issue 2, over HTTP and gRPC: right status, counted, next request served."""

from __future__ import annotations

import gzip
import http.client
import socket

import grpc
import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.collectors.payloads import SPEC_JSON_EXAMPLE, good_bytes, request

PB = "application/x-protobuf"
JS = "application/json"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _wrong_message() -> bytes:
    req = ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.time_unix_nano = 1_700_000_000_000_000_000
    rec.body.string_value = "user logged in"
    return req.SerializeToString()


def _invalid_utf8() -> bytes:
    data = request(name="MARKER-name").SerializeToString()
    return data.replace(b"MARKER", b"\xff\xfe\xfdKER")


def _invalid_utf8_attr() -> bytes:
    data = request(service="MARKER").SerializeToString()
    return data.replace(b"MARKER", b"\xc3\x28RKER")


_json_bad_types = orjson.dumps(
    {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "x",
                                "startTimeUnixNano": ["not", "a", "number"],
                            }
                        ]
                    }
                ]
            }
        ]
    }
)
_json_bad_hex = SPEC_JSON_EXAMPLE.replace(
    b"5B8EFFF798038103D269B633813FC60C", b"ZZ8EFFF798038103D269B633813FC60C"
)
_json_short_id = SPEC_JSON_EXAMPLE.replace(b'"EEE19B7EC3C1B174"', b'"EEE19B"')

# (case, content type, body, HTTP status, reason counted)
HTTP_CASES = [
    ("garbage bytes", PB, b"\xde\xad\xbe\xef garbage \x00\xff", 400, "invalid_protobuf"),
    ("truncated protobuf", PB, good_bytes()[:-7], 400, "invalid_protobuf"),
    ("wrong message", PB, _wrong_message(), 400, "invalid_trace_id"),
    (
        "span id wrong length",
        PB,
        request(span_id=b"\x01\x02\x03").SerializeToString(),
        400,
        "invalid_span_id",
    ),
    (
        "trace id all zeros",
        PB,
        request(trace_id=b"\x00" * 16).SerializeToString(),
        400,
        "invalid_trace_id",
    ),
    ("invalid utf-8 span name", PB, _invalid_utf8(), 400, "invalid_protobuf"),
    ("invalid utf-8 attribute", PB, _invalid_utf8_attr(), 400, "invalid_protobuf"),
    ("json garbage", JS, b"{not json", 400, "invalid_json"),
    (
        "json invalid utf-8",
        JS,
        SPEC_JSON_EXAMPLE.replace(b"my.service", b"my.\xff\xfeice"),
        400,
        "invalid_json",
    ),
    ("json wrong types", JS, _json_bad_types, 400, "invalid_json"),
    ("json invalid hex id", JS, _json_bad_hex, 400, "invalid_trace_id"),
    ("json id wrong length", JS, _json_short_id, 400, "invalid_span_id"),
    ("json array body", JS, b"[1, 2]", 400, "invalid_json"),
    ("unknown content type", "text/plain", b"hello", 415, "unsupported_media_type"),
    ("gzip bomb", PB, None, 413, "too_large"),
]


def _post(
    port: int,
    body: bytes,
    ctype: str,
    headers: dict | None = None,
    path: str = "/v1/traces",
    method: str = "POST",
):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers={"Content-Type": ctype, **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def _assert_serves_next(port: int, sink, before: int) -> None:
    resp, _ = _post(port, good_bytes(), PB)
    assert resp.status == 200
    assert len(sink.spans) == before + 1


@pytest.mark.parametrize(
    "case,ctype,body,status,reason", HTTP_CASES, ids=[c[0] for c in HTTP_CASES]
)
def test_http_bad_input(sink, http_receiver, case, ctype, body, status, reason) -> None:
    headers = {}
    if case == "gzip bomb":
        body = gzip.compress(b"\x00" * (24 * 1024 * 1024), compresslevel=9)
        assert len(body) < http_receiver.max_message_bytes
        headers["Content-Encoding"] = "gzip"
    resp, data = _post(http_receiver.port, body, ctype, headers)
    assert resp.status == status, data
    # the error body is a google.rpc.Status in the request's encoding, with a message
    if ctype == PB:
        assert resp.headers["Content-Type"] == PB
        msg = status_pb2.Status.FromString(data).message
    else:
        assert resp.headers["Content-Type"] == JS
        msg = orjson.loads(data)["message"]
    assert msg
    assert sink.rejected.get(reason, 0) >= 1, sink.rejected
    assert sink.spans == []
    _assert_serves_next(http_receiver.port, sink, 0)


def test_http_body_over_limit(sink, http_receiver) -> None:
    limit = http_receiver.max_message_bytes
    with socket.create_connection(("127.0.0.1", http_receiver.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {limit + 1}\r\n\r\n".encode()
            + b"\x00" * 1024
        )
        head = s.recv(65536).decode("latin-1")
    assert head.startswith("HTTP/1.1 413"), head
    assert sink.rejected["too_large"] == 1
    _assert_serves_next(http_receiver.port, sink, 0)


def test_http_empty_request_is_success(sink, http_receiver) -> None:
    resp, data = _post(http_receiver.port, b"", PB)
    assert resp.status == 200 and data == b""
    resp, data = _post(http_receiver.port, b"{}", JS)
    assert resp.status == 200 and data == b"{}"
    assert sink.requests[("otlp-http", "empty")] == 2
    _assert_serves_next(http_receiver.port, sink, 0)


def test_http_paths_and_methods(sink, http_receiver) -> None:
    resp, _ = _post(http_receiver.port, good_bytes(), PB, path="/v1/nothing")
    assert resp.status == 404
    resp, _ = _post(http_receiver.port, b"", PB, method="GET")
    assert resp.status == 405 and resp.headers["Allow"] == "POST"
    _assert_serves_next(http_receiver.port, sink, 0)


@pytest.mark.parametrize("ctype", [PB, JS])
def test_http_partial_success(sink, http_receiver, ctype) -> None:
    if ctype == PB:
        body = request(3, span_id=b"\x00" * 8).SerializeToString()
    else:
        obj = orjson.loads(SPEC_JSON_EXAMPLE)
        spans = obj["resourceSpans"][0]["scopeSpans"][0]["spans"]
        spans.append(dict(spans[0], spanId="0011"))
        body = orjson.dumps(obj)
    resp, data = _post(http_receiver.port, body, ctype)
    assert resp.status == 200
    if ctype == PB:
        ps = ExportTraceServiceResponse.FromString(data).partial_success
        rejected, message = ps.rejected_spans, ps.error_message
        kept = 2
    else:
        ps = orjson.loads(data)["partialSuccess"]
        rejected, message = int(ps["rejectedSpans"]), ps["errorMessage"]
        kept = 1
    assert rejected == 1 and "span" in message.lower()
    assert len(sink.spans) == kept
    assert sink.rejected["invalid_span_id"] == 1


@pytest.mark.parametrize("ctype", [PB, JS])
def test_http_full_sink_429(sink, http_receiver, ctype) -> None:
    sink.full = True
    body = good_bytes() if ctype == PB else SPEC_JSON_EXAMPLE
    resp, _ = _post(http_receiver.port, body, ctype)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    sink.full = False
    _assert_serves_next(http_receiver.port, sink, 0)


# ------------------------------------------------------------------ gRPC

GRPC_CASES = [
    ("garbage bytes", b"\xde\xad\xbe\xef garbage \x00\xff", "invalid_protobuf"),
    ("truncated protobuf", good_bytes()[:-7], "invalid_protobuf"),
    ("wrong message", _wrong_message(), "invalid_trace_id"),
    (
        "span id wrong length",
        request(span_id=b"\x01\x02\x03").SerializeToString(),
        "invalid_span_id",
    ),
    ("invalid utf-8", _invalid_utf8(), "invalid_protobuf"),
    ("invalid utf-8 attribute", _invalid_utf8_attr(), "invalid_protobuf"),
]


@pytest.fixture
def export(grpc_receiver):
    ch = grpc.insecure_channel(f"127.0.0.1:{grpc_receiver.port}")
    yield ch.unary_unary(EXPORT)
    ch.close()


@pytest.mark.parametrize("case,body,reason", GRPC_CASES, ids=[c[0] for c in GRPC_CASES])
def test_grpc_bad_input(sink, export, case, body, reason) -> None:
    with pytest.raises(grpc.RpcError) as info:
        export(body, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details()
    assert sink.rejected.get(reason, 0) >= 1, sink.rejected
    assert export(good_bytes(), timeout=10) == b""
    assert len(sink.spans) == 1


def test_grpc_empty_and_oversized(sink, export, grpc_receiver) -> None:
    assert export(b"", timeout=10) == b""
    big = request(1, name="x" * (grpc_receiver.max_message_bytes + 10)).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        export(big, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert export(good_bytes(), timeout=10) == b""
    assert len(sink.spans) == 1


def test_grpc_partial_success(sink, export) -> None:
    data = export(request(3, span_id=b"\x00" * 8).SerializeToString(), timeout=10)
    ps = ExportTraceServiceResponse.FromString(data).partial_success
    assert ps.rejected_spans == 1 and "span_id" in ps.error_message
    assert len(sink.spans) == 2


def test_grpc_full_sink_resource_exhausted_with_retry_info(sink, export) -> None:
    sink.full = True
    with pytest.raises(grpc.RpcError) as info:
        export(good_bytes(), timeout=10)
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = dict(err.trailing_metadata())["grpc-status-details-bin"]
    st = status_pb2.Status.FromString(details)
    retry = error_details_pb2.RetryInfo()
    assert st.details[0].Unpack(retry) and retry.retry_delay.seconds == 1
    sink.full = False
    assert export(good_bytes(), timeout=10) == b""
    assert len(sink.spans) == 1
