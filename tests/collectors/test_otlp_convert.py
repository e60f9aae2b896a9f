"""The fast protobuf reader agrees with the standard protobuf classes and with OTLP/JSON."""

from __future__ import annotations

import base64

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from collectors.otlp_convert import (
    OtlpDecodeError,
    convert_json,
    convert_proto,
    decode_json,
    decode_proto,
)
from tests.collectors.payloads import request

VALUES = [
    ("s", AnyValue(string_value="héllo"), "héllo", {"stringValue": "héllo"}),
    ("long", AnyValue(string_value="x" * 300), "x" * 300, {"stringValue": "x" * 300}),
    ("empty", AnyValue(string_value=""), "", {"stringValue": ""}),
    ("i", AnyValue(int_value=443), 443, {"intValue": "443"}),
    ("neg", AnyValue(int_value=-5), -5, {"intValue": -5}),
    ("big", AnyValue(int_value=2**62), 2**62, {"intValue": str(2**62)}),
    ("b", AnyValue(bool_value=True), True, {"boolValue": True}),
    ("f", AnyValue(bool_value=False), False, {"boolValue": False}),
    ("d", AnyValue(double_value=1.5), 1.5, {"doubleValue": 1.5}),
    (
        "raw",
        AnyValue(bytes_value=b"\x00\x01"),
        b"\x00\x01",
        {"bytesValue": base64.b64encode(b"\x00\x01").decode()},
    ),
    (
        "arr",
        AnyValue(
            array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=2)])
        ),
        ["a", 2],
        {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}},
    ),
    (
        "kv",
        AnyValue(
            kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(string_value="v"))])
        ),
        {"k": "v"},
        {"kvlistValue": {"values": [{"key": "k", "value": {"stringValue": "v"}}]}},
    ),
    ("unset", AnyValue(), None, {}),
]


def _req() -> ExportTraceServiceRequest:
    req = request(2)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    for key, av, _, _ in VALUES:
        sp.attributes.append(KeyValue(key=key, value=av))
    ev = sp.events.add()
    ev.name, ev.time_unix_nano = "exception", 5
    ev.attributes.append(KeyValue(key="exception.type", value=AnyValue(string_value="E")))
    lk = sp.links.add()
    lk.trace_id, lk.span_id = b"\x01" * 16, b"\x02" * 8
    return req


@pytest.mark.parametrize("key,expected", [(k, e) for k, _, e, _ in VALUES])
def test_attribute_values(key, expected) -> None:
    req = _req()
    data = req.SerializeToString()
    for _ in range(2):  # second pass reads through the cache
        fast = convert_proto(decode_proto(data)).spans
        std = convert_proto(req).spans
        assert fast == std
        assert fast[0].attributes[key] == expected


def test_json_matches_protobuf() -> None:
    req = _req()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    obj = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "test"},
                        "spans": [
                            {
                                "traceId": span.trace_id.hex(),
                                "spanId": span.span_id.hex(),
                                "name": span.name,
                                "kind": "SPAN_KIND_SERVER",
                                "startTimeUnixNano": str(span.start_time_unix_nano),
                                "endTimeUnixNano": span.end_time_unix_nano,
                                "attributes": [
                                    {
                                        "key": kv.key,
                                        "value": {"stringValue": kv.value.string_value}
                                        if kv.value.WhichOneof("value") == "string_value"
                                        else {"intValue": kv.value.int_value},
                                    }
                                    for kv in span.attributes[:4]
                                ]
                                + [{"key": k, "value": j} for k, _, _, j in VALUES],
                                "events": [
                                    {
                                        "name": "exception",
                                        "timeUnixNano": "5",
                                        "attributes": [
                                            {"key": "exception.type", "value": {"stringValue": "E"}}
                                        ],
                                    }
                                ],
                                "links": [{"traceId": "01" * 16, "spanId": "02" * 8}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (js,) = convert_json(decode_json(orjson.dumps(obj))).spans
    pb = convert_proto(decode_proto(req.SerializeToString())).spans[0]
    assert js == pb


def test_whole_request_errors_name_the_field() -> None:
    with pytest.raises(OtlpDecodeError, match="resourceSpans.*must be a JSON array"):
        convert_json({"resourceSpans": {"x": 1}})
    with pytest.raises(OtlpDecodeError, match="not valid JSON"):
        decode_json(b"{")


def _kv_request(pairs: list[tuple[str, AnyValue]]) -> bytes:
    req = request(1)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    del sp.attributes[:]
    for key, av in pairs:
        sp.attributes.append(KeyValue(key=key, value=av))
    return req.SerializeToString()


@pytest.mark.parametrize("klen", [1, 125, 126, 127, 128, 200])
@pytest.mark.parametrize("vlen", [0, 1, 120, 123, 124, 125, 126, 127, 128, 300])
def test_string_lengths_around_varint_boundaries(klen: int, vlen: int) -> None:
    key, value = "k" * klen, "é" * (vlen // 2) + "v" * (vlen % 2)
    data = _kv_request([(key, AnyValue(string_value=value))])
    std = convert_proto(ExportTraceServiceRequest.FromString(data)).spans
    for _ in range(2):  # miss, then (maybe) the cache
        fast = convert_proto(decode_proto(data)).spans
        assert fast == std
        assert fast[0].attributes[key] == value


def test_invalid_utf8_value_is_a_decode_error() -> None:
    kv = b"\x0a\x01k\x12\x04\x0a\x02\xff\xfe"
    req = request(1)
    raw = req.SerializeToString()
    # Append one more attribute to the first span by re-encoding it with the fast schema.
    fast = decode_proto(raw)
    fast.resource_spans[0].scope_spans[0].spans[0].attributes.append(kv)
    with pytest.raises(OtlpDecodeError, match="UTF-8"):
        convert_proto(decode_proto(fast.SerializeToString()))


def test_high_cardinality_keys_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    import collectors.otlp_convert as oc

    monkeypatch.setattr(oc, "_KV_CACHE", {})
    monkeypatch.setattr(oc, "_KV_KEY_CACHED", {})
    monkeypatch.setattr(oc, "_KV_KEY_DISTINCT", 4)
    for i in range(20):
        data = _kv_request(
            [
                ("http.request.method", AnyValue(string_value="GET")),
                ("network.peer.port", AnyValue(int_value=40000 + i)),
                ("url.path", AnyValue(string_value=f"/users/{i}")),
            ]
        )
        for _ in range(2):
            attrs = convert_proto(decode_proto(data)).spans[0].attributes
            assert attrs == {
                "http.request.method": "GET",
                "network.peer.port": 40000 + i,
                "url.path": f"/users/{i}",
            }
    cached = sorted(k for k, _ in oc._KV_CACHE.values())
    assert cached.count("http.request.method") == 1
    assert cached.count("network.peer.port") == 4
    assert cached.count("url.path") == 4


def test_kv_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import collectors.otlp_convert as oc

    monkeypatch.setattr(oc, "_KV_CACHE", {})
    monkeypatch.setattr(oc, "_KV_KEY_CACHED", {})
    monkeypatch.setattr(oc, "_KV_CACHE_MAX", 10)
    for i in range(50):  # many distinct keys, each with one value
        data = _kv_request([(f"custom.{i}", AnyValue(string_value="x"))])
        assert convert_proto(decode_proto(data)).spans[0].attributes == {f"custom.{i}": "x"}
        assert len(oc._KV_CACHE) <= 10


def test_legacy_client_span_reads_path_from_target_and_host_from_url() -> None:
    data = _kv_request(
        [
            ("http.method", AnyValue(string_value="get")),
            ("http.url", AnyValue(string_value="https://api.example.com:8443/users/7?x=1")),
            ("http.target", AnyValue(string_value="/users/7?x=1")),
            ("http.scheme", AnyValue(string_value="https")),
        ]
    )
    span = convert_proto(decode_proto(data)).spans[0]
    assert span.http is not None
    h = span.http
    assert (h.method, h.path, h.query, h.scheme) == ("GET", "/users/7", "x=1", "https")
    assert (h.server_address, h.server_port) == ("api.example.com", 8443)
