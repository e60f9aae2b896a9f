"""OTLP trace requests (protobuf or OTLP/JSON) into :class:`agent.model.Span`.

This is the ingest hot path, so it reads the upb protobuf objects and the
``orjson``-parsed dicts directly: one tight loop per attribute list, one
:class:`~agent.model.Resource` per ``ResourceSpans``, no intermediate objects.
``google.protobuf.json_format`` is avoided on purpose (measured ~15x slower).

Validation is per span: a trace id must be 16 non-zero bytes, a span id 8
non-zero bytes, a parent id empty or 8 bytes. Invalid spans are dropped and
counted in :attr:`Conversion.rejected` with a message saying what was wrong;
the good spans of the same request are kept (OTLP ``partial_success``).
Whole-request problems (not protobuf, not JSON, wrong shape) raise
:class:`OtlpDecodeError` with one sentence naming the field.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from agent.model import (
    SOURCE_OTLP,
    Resource,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    StatusCode,
    build_span,
    make_span,
)

__all__ = [
    "Conversion",
    "OtlpDecodeError",
    "convert_json",
    "convert_proto",
    "convert_proto_bytes",
    "decode_json",
    "decode_proto",
]

_ZERO_TRACE = b"\x00" * 16
_ZERO_SPAN = b"\x00" * 8
_ZERO_TRACE_HEX = "0" * 32
_ZERO_SPAN_HEX = "0" * 16
_MAX_REJECT_MESSAGES = 3


class OtlpDecodeError(ValueError):
    """The request as a whole cannot be read. The message says what and where."""


@dataclass(slots=True)
class Conversion:
    """What one request turned into: the good spans and what was refused.

    ``reason`` is a short metric label for the first rejection kind
    (``invalid_trace_id``, ``invalid_span_id``, ...); ``message`` is readable
    text for the client (``partial_success.error_message``).
    """

    spans: list[Span]
    rejected: int = 0
    reason: str = ""
    message: str = ""
    _messages: list[str] | None = None

    def reject(self, reason: str, message: str) -> None:
        self.rejected += 1
        if not self.reason:
            self.reason = reason
        msgs = self._messages
        if msgs is None:
            msgs = self._messages = []
        if len(msgs) < _MAX_REJECT_MESSAGES:
            msgs.append(message)
        self.message = "; ".join(msgs) + (
            f" (and {self.rejected - len(msgs)} more)" if self.rejected > len(msgs) else ""
        )


# ============================================================== protobuf


def _fast_request_class() -> Any:
    """``ExportTraceServiceRequest`` whose attribute lists stay raw ``KeyValue`` bytes.

    Walking upb ``KeyValue``/``AnyValue`` objects costs about 1 us per
    attribute (a wrapper object per level, ``WhichOneof``, ``getattr``).
    Declaring the attribute fields as ``repeated bytes`` (same wire type) lets
    upb hand over each encoded ``KeyValue``; those are decoded through a
    bounded cache keyed by the encoded bytes, because attributes repeat a lot
    (methods, hosts, status codes, routes, SDK names). Measured ~3x faster
    than the object walk on realistic HTTP spans. The bytes on the wire are
    the same, so this reads every valid OTLP request the standard classes read.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    pool = descriptor_pool.DescriptorPool()
    for mod in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        if mod is resource_pb2:
            _raw_attributes(fdp.message_type, ("Resource",))
        elif mod is trace_pb2:
            for m in fdp.message_type:
                if m.name == "Span":
                    _raw_attributes([m], ("Span",))
                    _raw_attributes(m.nested_type, ("Event", "Link"))
        elif mod is trace_service_pb2:
            del fdp.service[:]
        pool.Add(fdp)
    desc = pool.FindMessageTypeByName(
        "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
    )
    return message_factory.GetMessageClass(desc)


def _raw_attributes(messages: Any, names: tuple[str, ...]) -> None:
    for m in messages:
        if m.name in names:
            for f in m.field:
                if f.name == "attributes":
                    f.type = 12  # TYPE_BYTES
                    f.ClearField("type_name")


FastTraceRequest = _fast_request_class()


def decode_proto(data: bytes) -> Any:
    """Parse protobuf bytes into a (fast-schema) ``ExportTraceServiceRequest``.

    Raises :class:`OtlpDecodeError` for bytes that are not a valid protobuf
    encoding (garbage, truncated messages, strings that are not UTF-8) and for
    a valid message of another type (no ``resource_spans``, only unknown fields).
    """
    req = FastTraceRequest()
    try:
        req.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:  # upb raises DecodeError
        raise OtlpDecodeError(
            f"request body is not a valid protobuf ExportTraceServiceRequest ({e}); "
            "send an OTLP trace export request"
        ) from None
    if not req.resource_spans and data:
        # Bytes that parse but carry only fields a trace request does not have:
        # another message (logs, metrics) sent to the traces endpoint.
        raise OtlpDecodeError(
            "request body parsed as protobuf but contains no resource_spans "
            "(is it a logs or metrics request sent to the traces endpoint?)"
        )
    return req


# Encoded KeyValue -> (key, value), immutable values only. Only keys whose values
# repeat are cached: once a key has put _KV_KEY_DISTINCT values in the cache it is
# high-cardinality (ids, peer addresses and ports, full URLs) and its values are
# decoded every time instead. Caching those grew the cache to ~100k entries (~30 MB)
# whose lookups miss the CPU caches: under load in the gRPC server (sender on the
# other core) that cost ~5 us per span, more than decoding them. Bounded: both
# tables are cleared when the cache is full, which also re-evaluates every key.
_KV_CACHE: dict[bytes, tuple[str, Any]] = {}
_KV_CACHE_MAX = 20_000
_KV_KEY_DISTINCT = 512
_KV_KEY_CACHED: dict[str, int] = {}  # key -> values of it cached since the last clear


def _decode_kv(b: bytes) -> tuple[str, Any]:
    """(key, value) of one encoded ``KeyValue``; caches immutable results.

    The canonical encoding of short string, int, bool and double attributes
    (what every SDK writes) is read by hand, twice as fast as a upb parse;
    anything else goes through upb.
    """
    r = _decode_kv_canonical(b)
    if r is None:
        r = _decode_kv_upb(b)
        if r is None:
            return _decode_kv_mutable(b)
    counts = _KV_KEY_CACHED
    n = counts.get(r[0], 0)
    if n >= _KV_KEY_DISTINCT:
        return r
    cache = _KV_CACHE
    if len(cache) >= _KV_CACHE_MAX:
        cache.clear()
        counts.clear()
        n = 0
    counts[r[0]] = n + 1
    cache[b] = r
    return r


def _decode_kv_canonical(b: bytes) -> tuple[str, Any] | None:
    n = len(b)
    if n < 4 or b[0] != 0x0A or b[1] > 0x7F:
        return None
    e = b[1] + 2  # end of key
    if e + 3 > n or b[e] != 0x12 or b[e + 1] > 0x7F or b[e + 1] + e + 2 != n:
        return None
    try:
        key = b[2:e].decode()
        tag = b[e + 2]
        if tag == 0x0A:  # string_value
            if b[e + 3] > 0x7F or b[e + 3] + e + 4 != n:
                return None
            return key, b[e + 4 :].decode()
        if tag == 0x18:  # int_value (varint, two's complement int64)
            v = 0
            shift = 0
            for i in range(e + 3, n):
                c = b[i]
                v |= (c & 0x7F) << shift
                shift += 7
                if c < 0x80:
                    if i != n - 1:
                        return None
                    return key, v - (1 << 64) if v >= 1 << 63 else v
            return None
        if tag == 0x10 and n == e + 4 and b[e + 3] < 2:  # bool_value
            return key, b[e + 3] == 1
        if tag == 0x21 and n == e + 11:  # double_value
            return key, _unpack_double(b, e + 3)[0]
    except UnicodeDecodeError:
        raise OtlpDecodeError(
            "an attribute key or string value is not valid UTF-8; OTLP strings must be UTF-8"
        ) from None
    return None


_unpack_double = struct.Struct("<d").unpack_from


def _parse_kv(b: bytes) -> Any:
    kv = KeyValue()
    try:
        kv.ParseFromString(b)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OtlpDecodeError(
            f"an attribute is not a valid KeyValue ({e}); OTLP strings must be UTF-8"
        ) from None
    return kv


def _decode_kv_upb(b: bytes) -> tuple[str, Any] | None:
    """Scalars (and unset values) through upb; ``None`` for arrays and kvlists."""
    kv = _parse_kv(b)
    v = kv.value
    which = v.WhichOneof("value")
    if which is None:
        return kv.key, None
    if which in _SCALARS:
        return kv.key, getattr(v, which)
    return None


def _decode_kv_mutable(b: bytes) -> tuple[str, Any]:
    """Arrays and kvlists: decoded every time, never shared through the cache."""
    kv = _parse_kv(b)
    return kv.key, _any_value(kv.value)


def _attrs_fast(raw: Any) -> dict[str, Any]:
    get = _KV_CACHE.get
    return dict([get(b) or _decode_kv(b) for b in raw])


def _any_value(v: Any) -> Any:
    """Python value of an ``AnyValue`` (slow path: arrays, kvlists, bytes)."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _attrs_proto(v.kvlist_value.values)
    return getattr(v, which)


_SCALARS = frozenset(("string_value", "int_value", "double_value", "bool_value", "bytes_value"))


def _attrs_proto(kvs: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which in _SCALARS:
            out[kv.key] = getattr(v, which)
        else:
            out[kv.key] = _any_value(v)
    return out


def convert_proto(req: Any, source: str = SOURCE_OTLP) -> Conversion:
    """Spans of a parsed request; invalid spans are counted, not raised.

    ``req`` is what :func:`decode_proto` returns, or a standard
    ``ExportTraceServiceRequest`` object. Raises :class:`OtlpDecodeError` when
    an attribute value is not valid (fast schema decodes values lazily).
    """
    spans: list[Span] = []
    conv = Conversion(spans)
    append = spans.append
    kinds = _KINDS
    statuses = _STATUS
    attrs_of: Any = _attrs_fast if type(req) is FastTraceRequest else _attrs_proto
    for r, rs in enumerate(req.resource_spans):
        resource = Resource.from_attributes(attrs_of(rs.resource.attributes))
        for s, ss in enumerate(rs.scope_spans):
            scope_name = ss.scope.name
            for i, sp in enumerate(ss.spans):
                tid = sp.trace_id
                sid = sp.span_id
                pid = sp.parent_span_id
                if len(tid) != 16 or tid == _ZERO_TRACE:
                    conv.reject(
                        "invalid_trace_id",
                        f"{_span_path(r, s, i)}: trace_id must be 16 non-zero bytes, got {len(tid)} bytes"
                        if len(tid) != 16
                        else f"{_span_path(r, s, i)}: trace_id is all zeros",
                    )
                    continue
                if len(sid) != 8 or sid == _ZERO_SPAN:
                    conv.reject(
                        "invalid_span_id",
                        f"{_span_path(r, s, i)}: span_id must be 8 non-zero bytes, got {len(sid)} bytes"
                        if len(sid) != 8
                        else f"{_span_path(r, s, i)}: span_id is all zeros",
                    )
                    continue
                if pid and len(pid) != 8:
                    conv.reject(
                        "invalid_parent_span_id",
                        f"{_span_path(r, s, i)}: parent_span_id must be empty or 8 bytes, "
                        f"got {len(pid)} bytes",
                    )
                    continue
                events: tuple[SpanEvent, ...] = ()
                if sp.events:
                    events = tuple(
                        SpanEvent(e.name, e.time_unix_nano, attrs_of(e.attributes))
                        for e in sp.events
                    )
                links: tuple[SpanLink, ...] = ()
                if sp.links:
                    links = tuple(
                        SpanLink(lk.trace_id.hex(), lk.span_id.hex(), attrs_of(lk.attributes))
                        for lk in sp.links
                    )
                st = sp.status
                append(
                    build_span(
                        tid.hex(),
                        sid.hex(),
                        pid.hex(),
                        resource,
                        sp.name,
                        kinds.get(sp.kind, SpanKind.UNSPECIFIED),
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                        statuses.get(st.code, StatusCode.UNSET),
                        st.message,
                        attrs_of(sp.attributes),
                        events,
                        links,
                        source,
                        scope_name,
                    )
                )
    return conv


def _span_path(r: int, s: int, i: int) -> str:
    """Where a rejected span is, by position: its name may hold a raw value (a path with
    an email in it), and rejection messages go back to the sending application."""
    return f"resource_spans[{r}].scope_spans[{s}].spans[{i}]"


_KINDS = {int(k): k for k in SpanKind}
_STATUS = {int(s): s for s in StatusCode}


# ============================================================== OTLP/JSON


def decode_json(data: bytes | str) -> dict[str, Any]:
    """Parse an OTLP/JSON body; raises :class:`OtlpDecodeError` when it is not a JSON object."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise OtlpDecodeError(f"request body is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise OtlpDecodeError(
            f"request body must be a JSON object (an ExportTraceServiceRequest), "
            f"got {type(obj).__name__}"
        )
    return obj


class _JsonFieldError(Exception):
    """A wrong type inside one span; becomes a rejection of that span."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")

_KIND_NAMES = {f"SPAN_KIND_{k.name}": k for k in SpanKind}
_STATUS_NAMES = {f"STATUS_CODE_{s.name}": s for s in StatusCode}


def _get(d: dict[str, Any], camel: str, snake: str) -> Any:
    v = d.get(camel)
    if v is None:
        v = d.get(snake)
    return v


def _list(d: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    v = d.get(camel)
    if v is None:
        v = d.get(snake)
        if v is None:
            return []
    if not isinstance(v, list):
        raise _JsonFieldError(
            "invalid_json", f"{where}.{camel} must be a JSON array, got {type(v).__name__}"
        )
    return v


def _int64(v: Any, where: str) -> int:
    if v is None:
        return 0
    if type(v) is int:
        return v
    if type(v) is str:
        try:
            return int(v)
        except ValueError:
            pass
    elif isinstance(v, float) and v.is_integer():
        return int(v)
    raise _JsonFieldError(
        "invalid_json", f"{where} must be an integer or a decimal string, got {_json_type(v)}"
    )


def _enum(v: Any, names: dict[str, Any], by_int: dict[int, Any], default: Any, where: str) -> Any:
    if v is None:
        return default
    if type(v) is int:
        return by_int.get(v, default)
    if type(v) is str:
        r = names.get(v)
        if r is not None:
            return r
        if v.isdigit():
            return by_int.get(int(v), default)
    raise _JsonFieldError("invalid_json", f"{where} has an unknown value ({_json_type(v)})")


def _json_type(v: Any) -> str:
    """What a bad JSON value is, never the value itself: error messages go back to the
    sending application and into logs, and a wrong-typed value may be a secret."""
    if type(v) is str:
        return "a string"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, float):
        return "a number with a fraction"
    if isinstance(v, int):
        return "a number"
    if v is None:
        return "null"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _any_json(v: Any, where: str) -> Any:
    if type(v) is not dict:
        raise _JsonFieldError(
            "invalid_json", f"{where} must be an AnyValue object, got {type(v).__name__}"
        )
    for key, val in v.items():
        if key == "stringValue" or key == "string_value":
            if type(val) is not str:
                raise _JsonFieldError("invalid_json", f"{where}.stringValue must be a string")
            return val
        if key == "intValue" or key == "int_value":
            return _int64(val, f"{where}.intValue")
        if key == "boolValue" or key == "bool_value":
            if type(val) is not bool:
                raise _JsonFieldError("invalid_json", f"{where}.boolValue must be true or false")
            return val
        if key == "doubleValue" or key == "double_value":
            if type(val) is float or type(val) is int:
                return float(val)
            if type(val) is str and val in ("NaN", "Infinity", "-Infinity"):
                return float(val)
            raise _JsonFieldError("invalid_json", f"{where}.doubleValue must be a number")
        if key == "arrayValue" or key == "array_value":
            if type(val) is not dict:
                raise _JsonFieldError("invalid_json", f"{where}.arrayValue must be an object")
            return [
                _any_json(x, f"{where}.arrayValue.values[{i}]")
                for i, x in enumerate(_list(val, "values", "values", f"{where}.arrayValue"))
            ]
        if key == "kvlistValue" or key == "kvlist_value":
            if type(val) is not dict:
                raise _JsonFieldError("invalid_json", f"{where}.kvlistValue must be an object")
            return _attrs_json(
                _list(val, "values", "values", f"{where}.kvlistValue"),
                f"{where}.kvlistValue.values",
            )
        if key == "bytesValue" or key == "bytes_value":
            if type(val) is not str:
                raise _JsonFieldError("invalid_json", f"{where}.bytesValue must be base64 text")
            try:
                return base64.b64decode(val, validate=True)
            except (binascii.Error, ValueError):
                raise _JsonFieldError(
                    "invalid_json", f"{where}.bytesValue is not valid base64"
                ) from None
    return None


def _attrs_json(kvs: Any, where: str) -> dict[str, Any]:
    if not kvs:
        return {}
    if type(kvs) is not list:
        raise _JsonFieldError("invalid_json", f"{where} must be a JSON array of key/value objects")
    out: dict[str, Any] = {}
    for i, kv in enumerate(kvs):
        if type(kv) is not dict:
            raise _JsonFieldError("invalid_json", f"{where}[{i}] must be a key/value object")
        key = kv.get("key")
        if type(key) is not str:
            raise _JsonFieldError("invalid_json", f"{where}[{i}].key must be a string")
        v = kv.get("value")
        if v is None:
            out[key] = None
            continue
        # Fast path: the overwhelmingly common single-key string value.
        if type(v) is dict and len(v) == 1:
            s = v.get("stringValue")
            if type(s) is str:
                out[key] = s
                continue
        out[key] = _any_json(v, f"{where}[{i}].value")
    return out


def _hex_id(v: Any, pattern: re.Pattern[str], nbytes: int, field: str, where: str) -> str:
    if type(v) is not str or not pattern.fullmatch(v):
        got = f"{len(v)} characters" if type(v) is str else type(v).__name__
        reason = "invalid_trace_id" if nbytes == 16 else "invalid_span_id"
        if field == "parentSpanId":
            reason = "invalid_parent_span_id"
        raise _JsonFieldError(
            reason,
            f"{where}.{field} must be {nbytes * 2} hex characters ({nbytes} bytes), got {got}",
        )
    return v.lower()


def _span_json(sp: Any, where: str, resource: Resource, scope_name: str, source: str) -> Span:
    if type(sp) is not dict:
        raise _JsonFieldError("invalid_json", f"{where} must be a span object")
    tid = _hex_id(_get(sp, "traceId", "trace_id"), _HEX32, 16, "traceId", where)
    if tid == _ZERO_TRACE_HEX:
        raise _JsonFieldError("invalid_trace_id", f"{where}.traceId is all zeros")
    sid = _hex_id(_get(sp, "spanId", "span_id"), _HEX16, 8, "spanId", where)
    if sid == _ZERO_SPAN_HEX:
        raise _JsonFieldError("invalid_span_id", f"{where}.spanId is all zeros")
    pid = _get(sp, "parentSpanId", "parent_span_id")
    if pid:
        pid = _hex_id(pid, _HEX16, 8, "parentSpanId", where)
    else:
        pid = ""
    name = sp.get("name") or ""
    if type(name) is not str:
        raise _JsonFieldError("invalid_json", f"{where}.name must be a string")
    kind = _enum(sp.get("kind"), _KIND_NAMES, _KINDS, SpanKind.UNSPECIFIED, f"{where}.kind")
    status = sp.get("status") or {}
    if type(status) is not dict:
        raise _JsonFieldError("invalid_json", f"{where}.status must be an object")
    code = _enum(
        status.get("code"), _STATUS_NAMES, _STATUS, StatusCode.UNSET, f"{where}.status.code"
    )
    message = status.get("message") or ""
    if type(message) is not str:
        raise _JsonFieldError("invalid_json", f"{where}.status.message must be a string")
    events: tuple[SpanEvent, ...] = ()
    evs = _list(sp, "events", "events", where)
    if evs:
        out_e = []
        for i, e in enumerate(evs):
            w = f"{where}.events[{i}]"
            if type(e) is not dict:
                raise _JsonFieldError("invalid_json", f"{w} must be an object")
            ename = e.get("name") or ""
            if type(ename) is not str:
                raise _JsonFieldError("invalid_json", f"{w}.name must be a string")
            out_e.append(
                SpanEvent(
                    ename,
                    _int64(_get(e, "timeUnixNano", "time_unix_nano"), f"{w}.timeUnixNano"),
                    _attrs_json(e.get("attributes"), f"{w}.attributes"),
                )
            )
        events = tuple(out_e)
    links: tuple[SpanLink, ...] = ()
    lks = _list(sp, "links", "links", where)
    if lks:
        out_l = []
        for i, lk in enumerate(lks):
            w = f"{where}.links[{i}]"
            if type(lk) is not dict:
                raise _JsonFieldError("invalid_json", f"{w} must be an object")
            out_l.append(
                SpanLink(
                    _hex_id(_get(lk, "traceId", "trace_id"), _HEX32, 16, "traceId", w),
                    _hex_id(_get(lk, "spanId", "span_id"), _HEX16, 8, "spanId", w),
                    _attrs_json(lk.get("attributes"), f"{w}.attributes"),
                )
            )
        links = tuple(out_l)
    return make_span(
        trace_id=tid,
        span_id=sid,
        parent_span_id=pid,
        resource=resource,
        name=name,
        kind=kind,
        start_ns=_int64(
            _get(sp, "startTimeUnixNano", "start_time_unix_nano"), f"{where}.startTimeUnixNano"
        ),
        end_ns=_int64(
            _get(sp, "endTimeUnixNano", "end_time_unix_nano"), f"{where}.endTimeUnixNano"
        ),
        status_code=code,
        status_message=message,
        attributes=_attrs_json(sp.get("attributes"), f"{where}.attributes"),
        events=events,
        links=links,
        source=source,
        scope_name=scope_name,
    )


def convert_proto_bytes(data: bytes, source: str = SOURCE_OTLP) -> Conversion:
    """:func:`decode_proto` then :func:`convert_proto`: protobuf bytes to spans."""
    return convert_proto(decode_proto(data), source)


def convert_json(obj: dict[str, Any], source: str = SOURCE_OTLP) -> Conversion:
    """Spans of a parsed OTLP/JSON ``ExportTraceServiceRequest``.

    Spans with wrong types or bad ids are rejected and counted; a wrong shape
    above the span level raises :class:`OtlpDecodeError`.
    """
    spans: list[Span] = []
    conv = Conversion(spans)
    try:
        rss = _list(obj, "resourceSpans", "resource_spans", "request")
        if not rss and obj and not any(k in obj for k in ("resourceSpans", "resource_spans")):
            raise _JsonFieldError(
                "invalid_json",
                "request has no resourceSpans field (is it a logs or metrics request, "
                f"or not OTLP/JSON at all? top-level keys: {len(obj)}, none of them resourceSpans)",
            )
        for r, rs in enumerate(rss):
            wr = f"resourceSpans[{r}]"
            if type(rs) is not dict:
                raise _JsonFieldError("invalid_json", f"{wr} must be an object")
            res = rs.get("resource") or {}
            if type(res) is not dict:
                raise _JsonFieldError("invalid_json", f"{wr}.resource must be an object")
            resource = Resource.from_attributes(
                _attrs_json(res.get("attributes"), f"{wr}.resource.attributes")
            )
            scopes = _list(rs, "scopeSpans", "scope_spans", wr)
            if not scopes:
                scopes = _list(
                    rs, "instrumentationLibrarySpans", "instrumentation_library_spans", wr
                )
            for s, ss in enumerate(scopes):
                ws = f"{wr}.scopeSpans[{s}]"
                if type(ss) is not dict:
                    raise _JsonFieldError("invalid_json", f"{ws} must be an object")
                scope = ss.get("scope") or ss.get("instrumentationLibrary") or {}
                scope_name = scope.get("name") if type(scope) is dict else None
                if type(scope_name) is not str:
                    scope_name = ""
                for i, sp in enumerate(_list(ss, "spans", "spans", ws)):
                    try:
                        spans.append(
                            _span_json(sp, f"{ws}.spans[{i}]", resource, scope_name, source)
                        )
                    except _JsonFieldError as e:
                        conv.reject(e.reason, e.message)
    except _JsonFieldError as e:
        raise OtlpDecodeError(e.message) from None
    return conv


# ============================================================== one request, end to end

OK = "ok"
PARTIAL = "partial"
INVALID = "invalid"
FULL = "full"
EMPTY = "empty"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """How one trace export request went, for the receiver to turn into a status.

    ``outcome`` is ``ok``, ``empty`` (no spans: success per OTLP), ``partial``
    (some spans rejected: success with ``partial_success``), ``invalid`` (the
    request or all its spans are unusable: INVALID_ARGUMENT / 400) or ``full``
    (the sink refused the batch: RESOURCE_EXHAUSTED / 429, retry later).
    """

    outcome: str
    accepted: int = 0
    rejected: int = 0
    message: str = ""


def ingest_traces(sink: Any, body: bytes, *, json: bool, source: str = SOURCE_OTLP) -> IngestResult:
    """Decode ``body`` (protobuf or OTLP/JSON), hand the good spans to ``sink``.

    Never raises for bad input: every refusal is counted on the sink
    (``count_rejected``) with a reason label.

    When the sink shows it is already full (``queue_depth >= queue_spans``,
    as :class:`agent.pipeline.Pipeline` does), the request is refused before
    decoding: converting spans that would be dropped anyway would only take
    the GIL away from the analysis loop that has to catch up.
    """
    depth = getattr(sink, "queue_depth", None)
    if depth is not None and depth >= getattr(sink, "queue_spans", depth + 1):
        return IngestResult(FULL, message="apiward is busy (queue full); retry later")
    try:
        if json:
            conv = convert_json(decode_json(body) if body else {}, source)
        else:
            conv = convert_proto(decode_proto(body), source)
    except OtlpDecodeError as e:
        sink.count_rejected(source, "invalid_json" if json else "invalid_protobuf", 1)
        return IngestResult(INVALID, message=str(e))
    spans = conv.spans
    if conv.rejected:
        sink.count_rejected(source, conv.reason, conv.rejected)
        if not spans:
            return IngestResult(
                INVALID, rejected=conv.rejected, message=f"all spans rejected: {conv.message}"
            )
    if not spans:
        return IngestResult(EMPTY)
    if not sink.offer(spans, source):
        return IngestResult(
            FULL, rejected=conv.rejected, message="apiward is busy (queue full); retry later"
        )
    if conv.rejected:
        return IngestResult(PARTIAL, len(spans), conv.rejected, conv.message)
    return IngestResult(OK, len(spans))


def count_request(sink: Any, receiver: str, outcome: str) -> None:
    """Count one request by outcome on the sink's stats, when it keeps any."""
    counter = getattr(sink, "count_request", None)
    if counter is None:
        stats = getattr(sink, "stats", None)
        counter = getattr(stats, "add_request", None)
    if counter is not None:
        try:
            counter(receiver, outcome)
        except Exception:  # noqa: BLE001 - counting must never fail a request
            pass
