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
from typing import Any, Final

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

_ZERO_TRACE: Final = b"\x00" * 16
_ZERO_SPAN: Final = b"\x00" * 8
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


def _fast_classes() -> tuple[Any, Any]:
    """``ExportTraceServiceRequest`` whose spans and attribute lists stay raw bytes, and
    the ``Span`` class of the same schema (attributes raw).

    Spans are read by hand (:func:`_span_fast`), which is ~3x faster than reading
    the same fields through upb's wrapper objects; a span the hand reader does not
    take (anything but the canonical encoding every SDK writes) is parsed by upb
    with the ``Span`` class, so both read exactly what upb reads.

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
                elif m.name == "ScopeSpans":
                    _raw_fields(m, "spans")
        elif mod is trace_service_pb2:
            del fdp.service[:]
        pool.Add(fdp)
    desc = pool.FindMessageTypeByName(
        "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"
    )
    span = pool.FindMessageTypeByName("opentelemetry.proto.trace.v1.Span")
    return message_factory.GetMessageClass(desc), message_factory.GetMessageClass(span)


def _raw_attributes(messages: Any, names: tuple[str, ...]) -> None:
    for m in messages:
        if m.name in names:
            _raw_fields(m, "attributes")


def _raw_fields(message: Any, name: str) -> None:
    for f in message.field:
        if f.name == name:
            f.type = 12  # TYPE_BYTES
            f.ClearField("type_name")


FastTraceRequest, FastSpan = _fast_classes()


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
# Attribute keys, one shared string each: every stage looks spans' attributes up by key,
# and a shared key's hash is computed once (a freshly decoded one would be hashed again
# by each). Bounded: past the bound new keys are used as decoded.
_KEYS: dict[str, str] = {}
_KEYS_MAX = 4096


def _key(k: str) -> str:
    shared = _KEYS.get(k)
    if shared is None:
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[k] = k
        return k
    return shared


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
        key = _key(b[2:e].decode())
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


def _parse(cls: Any, b: bytes, error: str) -> Any:
    """``b`` parsed by upb as a ``cls``; :class:`OtlpDecodeError` with ``error``
    (``{}``: upb's reason) when it is not one."""
    m = cls()
    try:
        m.ParseFromString(b)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise OtlpDecodeError(error.format(e)) from None
    return m


def _parse_kv(b: bytes) -> Any:
    return _parse(KeyValue, b, "an attribute is not a valid KeyValue ({}); OTLP strings must be UTF-8")


def _decode_kv_upb(b: bytes) -> tuple[str, Any] | None:
    """Scalars (and unset values) through upb; ``None`` for arrays and kvlists."""
    kv = _parse_kv(b)
    v = kv.value
    which = v.WhichOneof("value")
    if which is None:
        return _key(kv.key), None
    if which in _SCALARS:
        return _key(kv.key), getattr(v, which)
    return None


def _decode_kv_mutable(b: bytes) -> tuple[str, Any]:
    """Arrays and kvlists: decoded every time, never shared through the cache."""
    kv = _parse_kv(b)
    return _key(kv.key), _any_value(kv.value)


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
    a span or an attribute value is not valid (the fast schema decodes them lazily).
    """
    spans: list[Span] = []
    conv = Conversion(spans)
    append = spans.append
    if type(req) is FastTraceRequest:
        for r, rs in enumerate(req.resource_spans):
            resource = Resource.from_attributes(_attrs_fast(rs.resource.attributes))
            for s, ss in enumerate(rs.scope_spans):
                scope_name = ss.scope.name
                for i, b in enumerate(ss.spans):
                    span = _span_fast(b, resource, scope_name, source)
                    if span is None:  # not the canonical encoding, or ids to reject
                        span = _span_upb(
                            _parse_span(b), _attrs_fast, resource, scope_name, source, conv, r, s, i
                        )
                    if span is not None:
                        append(span)
        return conv
    for r, rs in enumerate(req.resource_spans):
        resource = Resource.from_attributes(_attrs_proto(rs.resource.attributes))
        for s, ss in enumerate(rs.scope_spans):
            scope_name = ss.scope.name
            for i, sp in enumerate(ss.spans):
                span = _span_upb(sp, _attrs_proto, resource, scope_name, source, conv, r, s, i)
                if span is not None:
                    append(span)
    return conv


def _parse_span(b: bytes) -> Any:
    return _parse(
        FastSpan, b,
        "request body is not a valid protobuf ExportTraceServiceRequest (a span: {}); "
        "send an OTLP trace export request",
    )


def _span_upb(
    sp: Any, attrs_of: Any, resource: Resource, scope_name: str, source: str,
    conv: Conversion, r: int, s: int, i: int,
) -> Span | None:
    """One span read through upb objects; ``None`` when its ids are rejected."""
    tid = sp.trace_id
    sid = sp.span_id
    pid = sp.parent_span_id
    problem = _id_problem("trace_id", tid, 16)
    if problem:
        conv.reject("invalid_trace_id", f"{_span_path(r, s, i)}: {problem}")
        return None
    problem = _id_problem("span_id", sid, 8)
    if problem:
        conv.reject("invalid_span_id", f"{_span_path(r, s, i)}: {problem}")
        return None
    if pid and len(pid) != 8:
        conv.reject(
            "invalid_parent_span_id",
            f"{_span_path(r, s, i)}: parent_span_id must be empty or 8 bytes, got {len(pid)} bytes",
        )
        return None
    events: tuple[SpanEvent, ...] = ()
    if sp.events:
        events = tuple(
            SpanEvent(e.name, e.time_unix_nano, attrs_of(e.attributes)) for e in sp.events
        )
    links: tuple[SpanLink, ...] = ()
    if sp.links:
        links = tuple(
            SpanLink(lk.trace_id.hex(), lk.span_id.hex(), attrs_of(lk.attributes))
            for lk in sp.links
        )
    st = sp.status
    return build_span(
        tid.hex(),
        sid.hex(),
        pid.hex(),
        resource,
        sp.name,
        _KINDS.get(sp.kind, SpanKind.UNSPECIFIED),
        sp.start_time_unix_nano,
        sp.end_time_unix_nano,
        _STATUS.get(st.code, StatusCode.UNSET),
        st.message,
        attrs_of(sp.attributes),
        events,
        links,
        source,
        scope_name,
    )


# Hand reading of an encoded Span (opentelemetry/proto/trace/v1/trace.proto): the tags
# of its fields as the first byte on the wire (field number << 3 | wire type).
_T_TRACE_ID: Final = 0x0A  # 1, bytes
_T_SPAN_ID: Final = 0x12  # 2, bytes
_T_TRACE_STATE: Final = 0x1A  # 3, string
_T_PARENT: Final = 0x22  # 4, bytes
_T_NAME: Final = 0x2A  # 5, string
_T_KIND: Final = 0x30  # 6, enum
_T_START: Final = 0x39  # 7, fixed64
_T_END: Final = 0x41  # 8, fixed64
_T_ATTR: Final = 0x4A  # 9, KeyValue
_T_DROPPED_ATTRS: Final = 0x50  # 10, uint32
_T_EVENT: Final = 0x5A  # 11, Event
_T_DROPPED_EVENTS: Final = 0x60  # 12, uint32
_T_LINK: Final = 0x6A  # 13, Link
_T_DROPPED_LINKS: Final = 0x70  # 14, uint32
_T_STATUS: Final = 0x7A  # 15, Status
_T_FLAGS: Final = 0x85  # 16, fixed32: two tag bytes, 0x85 0x01


def _u64(b: bytes, i: int) -> int:
    """Little-endian fixed64 at ``i`` (bounds checked by the caller)."""
    return (
        b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24 | b[i + 4] << 32
        | b[i + 5] << 40 | b[i + 6] << 48 | b[i + 7] << 56
    )


def _varint(b: bytes, i: int, n: int) -> tuple[int, int]:
    """(value, next offset) of the varint at ``i``; value -1 when malformed or over 64 bits."""
    v = 0
    shift = 0
    while i < n:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return (v, i) if v < 1 << 64 else (-1, n)
        shift += 7
        if shift > 63:
            return -1, n
    return -1, n


def _span_fast(b: bytes, resource: Resource, scope_name: str, source: str) -> Span | None:
    """One encoded span read by hand, or ``None`` to let upb read it.

    Takes the encoding every SDK writes: known fields (a repeated singular field: the
    last wins, as in upb), the status at most once. Anything else (unknown fields, invalid UTF-8, truncation,
    an out-of-range enum, ids to reject) returns ``None``, and :func:`_span_upb`
    reads the span with upb's rules and messages, so nothing is read differently.
    """
    n = len(b)
    i = 0
    tid = b""
    sid = b""
    pid = b""
    name = ""
    kind = 0
    start = 0
    end = 0
    code = 0
    message = ""
    kvs: list[tuple[str, Any]] = []
    events: list[SpanEvent] = []
    links: list[SpanLink] = []
    seen_status = False
    get = _KV_CACHE.get
    try:
        while i < n:
            tag = b[i]
            i += 1
            if tag & 7 == 2:
                if i >= n:
                    return None
                ln = b[i]
                if ln < 0x80:
                    i += 1
                else:
                    ln, i = _varint(b, i, n)
                    if ln < 0:
                        return None
                e = i + ln
                if e > n:
                    return None
                if tag == _T_ATTR:
                    kv = b[i:e]
                    kvs.append(get(kv) or _decode_kv(kv))
                elif tag == _T_TRACE_ID:
                    tid = b[i:e]
                elif tag == _T_SPAN_ID:
                    sid = b[i:e]
                elif tag == _T_PARENT:
                    pid = b[i:e]
                elif tag == _T_NAME:
                    name = b[i:e].decode()
                elif tag == _T_TRACE_STATE:
                    b[i:e].decode()  # not kept; valid UTF-8 as upb requires
                elif tag == _T_EVENT:
                    ev = _event_fast(b, i, e)
                    if ev is None:
                        return None
                    events.append(ev)
                elif tag == _T_LINK:
                    lk = _link_fast(b, i, e)
                    if lk is None:
                        return None
                    links.append(lk)
                elif tag == _T_STATUS and not seen_status:
                    seen_status = True
                    fields = _fields(b, i, e)
                    if fields is None:
                        return None
                    for t, x, y in fields:
                        if t == 0x18 and x < 1 << 31:  # code
                            code = x
                        elif t == 0x12:  # message
                            message = b[x:y].decode()
                        else:
                            return None
                else:
                    return None
                i = e
            elif tag == _T_START or tag == _T_END:
                if i + 8 > n:
                    return None
                if tag == _T_START:
                    start = _u64(b, i)
                else:
                    end = _u64(b, i)
                i += 8
            elif tag == _T_KIND:
                kind, i = _varint(b, i, n)
                if kind < 0 or kind >= 1 << 31:
                    return None
            elif tag == _T_DROPPED_ATTRS or tag == _T_DROPPED_EVENTS or tag == _T_DROPPED_LINKS:
                v, i = _varint(b, i, n)
                if v < 0:
                    return None
            elif tag == _T_FLAGS:
                if i >= n or b[i] != 0x01 or i + 5 > n:
                    return None
                i += 5
            else:
                return None
    except UnicodeDecodeError:
        return None
    if len(tid) != 16 or tid == _ZERO_TRACE or len(sid) != 8 or sid == _ZERO_SPAN:
        return None
    if pid and len(pid) != 8:
        return None
    return build_span(
        tid.hex(),
        sid.hex(),
        pid.hex(),
        resource,
        name,
        _KINDS.get(kind, SpanKind.UNSPECIFIED),
        start,
        end,
        _STATUS.get(code, StatusCode.UNSET),
        message,
        dict(kvs),
        tuple(events),
        tuple(links),
        source,
        scope_name,
    )


def _fields(b: bytes, i: int, e: int) -> list[tuple[int, int, int]] | None:
    """The fields of a small message at ``b[i:e]`` (events, links, the status): (tag,
    start, end) of a length-delimited field, (tag, value, -1) of a varint or fixed64,
    (tag, offset, -1) of a fixed32; ``None`` when malformed (upb reads it then)."""
    out: list[tuple[int, int, int]] = []
    while i < e:
        tag = b[i]
        i += 1
        wt = tag & 7
        if tag >= 0x80:
            return None
        if wt == 2:
            ln, i = _varint(b, i, e)
            if ln < 0 or i + ln > e:
                return None
            out.append((tag, i, i + ln))
            i += ln
        elif wt == 0:
            v, i = _varint(b, i, e)
            if v < 0:
                return None
            out.append((tag, v, -1))
        elif wt == 1 and i + 8 <= e:
            out.append((tag, _u64(b, i), -1))
            i += 8
        elif wt == 5 and i + 4 <= e:
            out.append((tag, i, -1))
            i += 4
        else:
            return None
    return out


def _kv(b: bytes) -> tuple[str, Any]:
    return _KV_CACHE.get(b) or _decode_kv(b)


def _event_fast(b: bytes, i: int, e: int) -> SpanEvent | None:
    """Event {1 time fixed64, 2 name, 3 attributes, 4 dropped}; ``None``: let upb read it."""
    fields = _fields(b, i, e)
    if fields is None:
        return None
    name = ""
    time_ns = 0
    kvs: list[tuple[str, Any]] = []
    for tag, x, y in fields:
        if tag == 0x09:
            time_ns = x
        elif tag == 0x12:
            name = b[x:y].decode()
        elif tag == 0x1A:
            kvs.append(_kv(b[x:y]))
        elif tag != 0x20:
            return None
    return SpanEvent(name, time_ns, dict(kvs))


def _link_fast(b: bytes, i: int, e: int) -> SpanLink | None:
    """Link {1 trace_id, 2 span_id, 3 trace_state, 4 attributes, 5 dropped, 6 flags}."""
    fields = _fields(b, i, e)
    if fields is None:
        return None
    tid = b""
    sid = b""
    kvs: list[tuple[str, Any]] = []
    for tag, x, y in fields:
        if tag == 0x0A:
            tid = b[x:y]
        elif tag == 0x12:
            sid = b[x:y]
        elif tag == 0x1A:
            b[x:y].decode()  # trace_state: not kept, valid UTF-8 as upb requires
        elif tag == 0x22:
            kvs.append(_kv(b[x:y]))
        elif tag != 0x28 and tag != 0x35:
            return None
    return SpanLink(tid.hex(), sid.hex(), dict(kvs))


def _id_problem(field: str, value: bytes, n: int) -> str:
    """Why a trace or span id is rejected, or ``""``."""
    if len(value) != n:
        return f"{field} must be {n} non-zero bytes, got {len(value)} bytes"
    if value == bytes(n):
        return f"{field} is all zeros"
    return ""


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
