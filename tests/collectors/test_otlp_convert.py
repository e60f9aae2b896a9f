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
    # Append one more attribute to the first span: the fast schema keeps spans encoded,
    # and a field appended to an encoded message is part of it.
    fast = decode_proto(raw)
    spans = fast.resource_spans[0].scope_spans[0].spans
    spans[0] = spans[0] + b"\x4a" + bytes([len(kv)]) + kv
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


# ------------------------------------------------------------------ spans read by hand
# collectors.otlp_convert reads each encoded span by hand (the canonical encoding) and
# leaves anything else to upb: both must read every request exactly as the standard
# protobuf classes do.


def _same_as_standard(data: bytes) -> list:
    """Spans of ``data`` by the fast reader; asserts the standard classes read the same
    (spans, rejections) or refuse it too."""
    try:
        std_req = ExportTraceServiceRequest.FromString(data)
    except Exception:  # noqa: BLE001 - upb refuses: the fast reader must refuse as well
        with pytest.raises(OtlpDecodeError):
            convert_proto(decode_proto(data))
        return []
    try:
        std = convert_proto(std_req)
    except OtlpDecodeError:
        with pytest.raises(OtlpDecodeError):
            convert_proto(decode_proto(data))
        return []
    fast = convert_proto(decode_proto(data))
    assert fast.spans == std.spans
    assert (fast.rejected, fast.reason, fast.message) == (std.rejected, std.reason, std.message)
    return fast.spans


def _rich_request() -> ExportTraceServiceRequest:
    req = request(3)
    sp = req.resource_spans[0].scope_spans[0].spans[0]
    sp.trace_state = "vendor=1"
    sp.flags = 0x301
    sp.kind = 3
    sp.status.code = 2
    sp.status.message = "upstream failed"
    sp.dropped_attributes_count = 2
    sp.dropped_events_count = 1
    sp.dropped_links_count = 1
    for i in range(2):
        ev = sp.events.add()
        ev.name, ev.time_unix_nano, ev.dropped_attributes_count = f"ev{i}", 10 + i, 1
        ev.attributes.append(KeyValue(key="exception.message", value=AnyValue(string_value="boom")))
    lk = sp.links.add()
    lk.trace_id, lk.span_id, lk.trace_state, lk.flags = b"\x01" * 16, b"\x02" * 8, "a=b", 1
    lk.dropped_attributes_count = 3
    lk.attributes.append(KeyValue(key="link.kind", value=AnyValue(string_value="follows")))
    req.resource_spans[0].scope_spans[0].spans[1].name = "n" * 300  # a two-byte length
    return req


def test_hand_reader_reads_every_span_field() -> None:
    req = _rich_request()
    spans = _same_as_standard(req.SerializeToString())
    sp = spans[0]
    assert sp.kind.name == "CLIENT" and sp.status_code.name == "ERROR"
    assert sp.status_message == "upstream failed"
    assert [(e.name, e.time_ns, e.attributes) for e in sp.events] == [
        ("ev0", 10, {"exception.message": "boom"}), ("ev1", 11, {"exception.message": "boom"})
    ]
    assert sp.links[0].trace_id == "01" * 16 and sp.links[0].attributes == {"link.kind": "follows"}
    assert spans[1].name == "n" * 300
    # ...and it is the hand reader that read them, not the upb fallback
    import collectors.otlp_convert as oc

    for raw in decode_proto(req.SerializeToString()).resource_spans[0].scope_spans[0].spans:
        assert oc._span_fast(raw, sp.resource, "test", "otlp") is not None


@pytest.mark.parametrize(
    "change",
    [
        "unknown_kind", "negative_kind", "long_status", "unknown_field", "repeated_name",
        "two_statuses", "bad_trace_id", "zero_span_id", "bad_parent", "bad_utf8_name",
        "truncated", "empty_span",
    ],
)
def test_hand_reader_leaves_the_unusual_to_upb(change: str) -> None:
    req = request(2)
    ss = req.resource_spans[0].scope_spans[0]
    sp = ss.spans[0]
    if change == "unknown_kind":
        sp.kind = 9
    elif change == "negative_kind":
        sp.kind = -1  # a ten-byte varint
    elif change == "long_status":
        sp.status.message = "m" * 200
    elif change == "bad_trace_id":
        sp.trace_id = b"\x01" * 8
    elif change == "zero_span_id":
        sp.span_id = b"\x00" * 8
    elif change == "bad_parent":
        sp.parent_span_id = b"\x01" * 3
    data = req.SerializeToString()
    fast = decode_proto(data)
    raw = fast.resource_spans[0].scope_spans[0].spans
    if change == "unknown_field":
        raw[0] = raw[0] + b"\xa8\x06\x07"  # field 101, varint 7: upb skips it
    elif change == "repeated_name":
        raw[0] = raw[0] + b"\x2a\x03new"  # the last value wins
    elif change == "two_statuses":
        raw[0] = raw[0] + b"\x7a\x02\x18\x01" + b"\x7a\x03\x12\x01x"  # merged
    elif change == "bad_utf8_name":
        raw[0] = raw[0] + b"\x2a\x02\xff\xfe"
    elif change == "truncated":
        raw[0] = raw[0][:-3]
    elif change == "empty_span":
        raw[0] = b""
    spans = _same_as_standard(fast.SerializeToString())
    if change == "repeated_name":
        assert spans[0].name == "new"
    elif change == "two_statuses":
        assert spans[0].status_code.name == "OK" and spans[0].status_message == "x"
    elif change in ("bad_trace_id", "zero_span_id", "bad_parent", "empty_span"):
        assert len(spans) == 1  # the other span is kept, this one rejected
    elif change in ("bad_utf8_name", "truncated"):
        assert spans == []  # the whole request is refused
    else:
        assert len(spans) == 2


def test_hand_reader_agrees_with_upb_on_mutated_requests() -> None:
    """Random byte flips, cuts and insertions: the same spans or the same refusal."""
    import random

    rng = random.Random(1234)
    base = _rich_request().SerializeToString()
    outcomes = {"read": 0, "refused": 0}
    for _ in range(400):
        b = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            pos = rng.randrange(len(b))
            if op < 0.6:
                b[pos] = rng.randrange(256)
            elif op < 0.8:
                del b[pos : pos + rng.randint(1, 4)]
            else:
                b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
        spans = _same_as_standard(bytes(b))
        outcomes["read" if spans else "refused"] += 1
    assert outcomes["read"] > 20 and outcomes["refused"] > 20  # both paths were exercised


def test_attribute_keys_are_shared_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys of values decoded every time (high cardinality) are still one string each, so
    every stage's lookups by key reuse its hash; bounded."""
    import collectors.otlp_convert as oc

    monkeypatch.setattr(oc, "_KEYS", {})
    monkeypatch.setattr(oc, "_KV_KEY_DISTINCT", 0)  # nothing cached: decoded every time
    keys = []
    for i in range(3):
        data = _kv_request([("network.peer.port", AnyValue(int_value=40000 + i))])
        (key,) = convert_proto(decode_proto(data)).spans[0].attributes
        keys.append(key)
    assert keys[0] == "network.peer.port" and keys[0] is keys[1] is keys[2]
    monkeypatch.setattr(oc, "_KEYS_MAX", len(oc._KEYS))
    data = _kv_request([("custom.new", AnyValue(string_value="x"))])
    assert convert_proto(decode_proto(data)).spans[0].attributes == {"custom.new": "x"}
    assert "custom.new" not in oc._KEYS
