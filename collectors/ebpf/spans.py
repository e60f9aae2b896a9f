"""From a captured HTTP exchange to a :class:`agent.model.Span`.

SERVER spans for accepted connections, CLIENT spans for connected ones, with
stable semantic-convention attributes, captured headers (lists of str, as
OpenTelemetry's header capture records them) and body excerpts. A request that
carries a W3C ``traceparent`` joins that trace as a child of its parent span.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from agent.model import SOURCE_EBPF, Resource, Span, SpanKind, StatusCode, make_span

from .http_parser import HttpExchange, HttpMessage

SCOPE_NAME = "apiward.ebpf"
TRACEPARENT_ATTR = "apiward.ebpf.traceparent"

# Ids as the OTel SDKs make them (random.getrandbits): no system call per span.
_rand = random.getrandbits
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the tracer knows about the connection an exchange travelled on."""

    pid: int
    fd: int
    server: bool
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    tls: bool


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, parent_span_id)`` of a valid W3C traceparent, else ``None``."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if not m or m.group(1) == "ff":
        return None
    trace_id, span_id = m.group(2), m.group(3)
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id


def _headers(prefix: str, msg: HttpMessage, attrs: dict[str, Any]) -> None:
    for name, value in msg.headers:
        key = prefix + name.lower()
        existing = attrs.get(key)
        if existing is None:
            attrs[key] = [value]
        else:
            existing.append(value)


def _host_port(host: str) -> tuple[str, int | None]:
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        name = host[1:end] if end > 0 else host
        rest = host[end + 1 :] if end > 0 else ""
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and name:
        return name, int(port)
    return host, None


def _body_text(body: bytes) -> str:
    return body.decode("utf-8", "replace")


def exchange_to_span(
    exchange: HttpExchange,
    conn: ConnectionInfo,
    resource: Resource,
    clock_offset_ns: int,
) -> Span:
    """One span for a request and its response; times are wall-clock nanoseconds."""
    req = exchange.request
    resp = exchange.response
    kind = SpanKind.SERVER if conn.server else SpanKind.CLIENT
    target = req.target
    path, _, query = target.partition("?")
    path = path.partition("#")[0]
    scheme = "https" if conn.tls else "http"
    attrs: dict[str, Any] = {
        "http.request.method": req.method,
        "url.path": path,
        "url.scheme": scheme,
        "network.protocol.name": "http",
        "network.protocol.version": req.version,
        "network.transport": "tcp",
        "apiward.ebpf.pid": conn.pid,
        "apiward.ebpf.direction": "server" if conn.server else "client",
    }
    if query:
        attrs["url.query"] = query
    host_header = req.header("host")
    host_name, host_port = _host_port(host_header) if host_header else ("", None)
    if conn.server:
        attrs["server.address"] = host_name or conn.local_addr
        port = host_port or conn.local_port
        if port:
            attrs["server.port"] = port
        if conn.remote_addr:
            attrs["client.address"] = conn.remote_addr
            attrs["client.port"] = conn.remote_port
        if conn.local_addr:
            attrs["network.local.address"] = conn.local_addr
            attrs["network.local.port"] = conn.local_port
    else:
        attrs["server.address"] = host_name or conn.remote_addr
        port = host_port or conn.remote_port
        if port:
            attrs["server.port"] = port
        authority = host_header or f"{conn.remote_addr}:{conn.remote_port}"
        attrs["url.full"] = f"{scheme}://{authority}{target}"
    if conn.remote_addr:
        attrs["network.peer.address"] = conn.remote_addr
        attrs["network.peer.port"] = conn.remote_port
    ua = req.header("user-agent")
    if ua:
        attrs["user_agent.original"] = ua
    _headers("http.request.header.", req, attrs)
    attrs["http.request.body.size"] = req.body_size
    if req.body:
        attrs["http.request.body"] = _body_text(req.body)
    if req.body_truncated:
        attrs["apiward.ebpf.request.body.truncated"] = True
    if not req.complete:
        attrs["apiward.ebpf.request.partial"] = True
    status = StatusCode.UNSET
    end = req.end_ns
    if resp is not None:
        attrs["http.response.status_code"] = resp.status
        _headers("http.response.header.", resp, attrs)
        attrs["http.response.body.size"] = resp.body_size
        if resp.body:
            attrs["http.response.body"] = _body_text(resp.body)
        if resp.body_truncated:
            attrs["apiward.ebpf.response.body.truncated"] = True
        if not resp.complete:
            attrs["apiward.ebpf.response.partial"] = True
        end = max(end, resp.end_ns)
        if resp.status >= 500 or (not conn.server and resp.status >= 400):
            status = StatusCode.ERROR
            attrs["error.type"] = str(resp.status)
    else:
        attrs["apiward.ebpf.response.missing"] = True
    if exchange.interim:
        attrs["apiward.ebpf.interim_status_codes"] = list(exchange.interim)
    traceparent = req.header("traceparent")
    parsed = parse_traceparent(traceparent)
    if parsed is not None:
        trace_id, parent = parsed
        attrs[TRACEPARENT_ATTR] = traceparent
    else:
        trace_id, parent = f"{_rand(128) or 1:032x}", ""
    return make_span(
        trace_id=trace_id,
        span_id=f"{_rand(64) or 1:016x}",
        parent_span_id=parent,
        resource=resource,
        name=req.method or "HTTP",
        kind=kind,
        start_ns=req.start_ns + clock_offset_ns,
        end_ns=end + clock_offset_ns,
        status_code=status,
        attributes=attrs,
        source=SOURCE_EBPF,
        scope_name=SCOPE_NAME,
    )
