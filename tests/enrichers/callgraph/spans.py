"""Span builders for the call-graph and inventory tests (real model, make_span)."""

from __future__ import annotations

import itertools
from typing import Any

from agent.model import Resource, Span, SpanKind, SpanLink, make_span

_ids = itertools.count(1)
T0 = 1_700_000_000_000_000_000
_resources: dict[tuple[str, tuple[tuple[str, Any], ...]], Resource] = {}


def resource(service: str, **attrs: Any) -> Resource:
    key = (service, tuple(sorted(attrs.items())))
    r = _resources.get(key)
    if r is None:
        r = Resource.from_attributes({"service.name": service, **attrs})
        _resources[key] = r
    return r


def new_id() -> str:
    return f"{next(_ids):016x}"


def span(
    service: str,
    kind: SpanKind,
    *,
    trace: str = "ab" * 16,
    span_id: str | None = None,
    parent: str = "",
    attrs: dict[str, Any] | None = None,
    res: dict[str, Any] | None = None,
    start: int = T0,
    ms: float = 10.0,
    status: int = 0,
    links: tuple[SpanLink, ...] = (),
    source: str = "otlp",
    name: str = "op",
) -> Span:
    return make_span(
        trace_id=trace,
        span_id=span_id or new_id(),
        parent_span_id=parent,
        resource=resource(service, **(res or {})),
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=start + int(ms * 1e6),
        status_code=status,
        attributes=attrs or {},
        links=links,
        source=source,
    )


def http_server(service: str, method: str, path: str, *, route: str = "", status: int = 200,
                **kw: Any) -> Span:
    attrs: dict[str, Any] = {"http.request.method": method, "url.path": path.partition("?")[0],
                             "http.response.status_code": status, "url.scheme": "http"}
    if "?" in path:
        attrs["url.query"] = path.partition("?")[2]
    if route:
        attrs["http.route"] = route
    attrs.update(kw.pop("attrs", {}))
    return span(service, SpanKind.SERVER, attrs=attrs, **kw)


def http_client(service: str, method: str, url: str, *, status: int = 200, **kw: Any) -> Span:
    attrs: dict[str, Any] = {"http.request.method": method, "url.full": url,
                             "http.response.status_code": status}
    attrs.update(kw.pop("attrs", {}))
    return span(service, SpanKind.CLIENT, attrs=attrs, **kw)
