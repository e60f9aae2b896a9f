"""Build :class:`agent.model.Call` objects from spans made with ``make_span``.

Unit tests of the zero-trust enricher use these instead of the call-graph
enricher, so they exercise exactly the contract the call graph publishes.
"""

from __future__ import annotations

import itertools
from typing import Any

from agent.model import Call, Endpoint, NodeKind, Resource, Span, SpanKind, make_span

_ids = itertools.count(1)
T0 = 1_700_000_000_000_000_000


def span(
    service: str,
    kind: SpanKind,
    attrs: dict[str, Any],
    *,
    trace_id: str | None = None,
    start_ns: int = T0,
    namespace: str = "",
    resource_attrs: dict[str, Any] | None = None,
) -> Span:
    n = next(_ids)
    ra = {"service.name": service, **({"service.namespace": namespace} if namespace else {})}
    ra.update(resource_attrs or {})
    return make_span(
        trace_id=trace_id or f"{n:032x}",
        span_id=f"{n:016x}",
        parent_span_id="",
        resource=Resource.from_attributes(ra),
        name="op",
        kind=kind,
        start_ns=start_ns,
        end_ns=start_ns + 1_000_000,
        attributes=attrs,
    )


def http_attrs(
    method: str = "GET",
    route: str = "/items/{id}",
    path: str = "/items/1",
    *,
    scheme: str = "https",
    status: int = 200,
    headers: dict[str, str] | None = None,
    client_address: str = "",
    host: str = "",
) -> dict[str, Any]:
    a: dict[str, Any] = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "url.scheme": scheme,
        "http.response.status_code": status,
    }
    if host:
        a["server.address"] = host
        a["url.full"] = f"{scheme}://{host}{path}"
    if client_address:
        a["client.address"] = client_address
    for k, v in (headers or {}).items():
        a[f"http.request.header.{k}"] = [v]
    return a


def internal_call(
    client: str,
    server: str,
    *,
    method: str = "GET",
    route: str = "/orders/{id}",
    path: str = "/orders/7",
    scheme: str = "https",
    status: int = 200,
    headers: dict[str, str] | None = None,
    start_ns: int = T0,
    auth: tuple[str, ...] | None | str = "derive",
    tls: bool | None | str = "derive",
    server_namespace: str = "",
    client_resource: dict[str, Any] | None = None,
) -> Call:
    """A paired client/server call between two services, as the call graph builds it."""
    from agent.model import auth_evidence, tls_evidence

    trace = f"{next(_ids):032x}"
    cs = span(client, SpanKind.CLIENT, http_attrs(method, route, path, scheme=scheme, status=status, host=server),
              trace_id=trace, start_ns=start_ns, resource_attrs=client_resource)
    ss = span(server, SpanKind.SERVER, http_attrs(method, route, path, scheme=scheme, status=status,
                                                   headers=headers), trace_id=trace, start_ns=start_ns,
              namespace=server_namespace)
    return Call(
        client=client, server=server, client_kind=NodeKind.SERVICE, server_kind=NodeKind.SERVICE,
        connection_type="http", span=ss, client_span=cs, server_span=ss,
        endpoint=Endpoint(server, method, route),
        tls=tls_evidence(ss) if tls == "derive" else tls,  # type: ignore[arg-type]
        auth=auth_evidence(ss) if auth == "derive" else auth,  # type: ignore[arg-type]
    )


def egress_call(client: str, host: str, *, path: str = "/v1/charge", scheme: str = "https",
                headers: dict[str, str] | None = None, start_ns: int = T0) -> Call:
    cs = span(client, SpanKind.CLIENT, http_attrs("POST", "", path, scheme=scheme, host=host, headers=headers),
              start_ns=start_ns)
    from agent.model import auth_evidence, tls_evidence

    return Call(
        client=client, server=f"ext:{host}", client_kind=NodeKind.SERVICE, server_kind=NodeKind.EXTERNAL,
        connection_type="http", span=cs, client_span=cs, server_span=None, endpoint=None,
        tls=tls_evidence(cs), auth=auth_evidence(cs),
    )


def ingress_call(addr: str, server: str, *, method: str = "GET", route: str = "/", path: str = "/",
                 headers: dict[str, str] | None = None, scheme: str = "http", start_ns: int = T0,
                 status: int = 200) -> Call:
    ss = span(server, SpanKind.SERVER, http_attrs(method, route, path, scheme=scheme, headers=headers,
                                                   client_address=addr, status=status), start_ns=start_ns)
    from agent.model import auth_evidence, tls_evidence

    return Call(
        client=f"client:{addr}", server=server, client_kind=NodeKind.CLIENT, server_kind=NodeKind.SERVICE,
        connection_type="http", span=ss, client_span=None, server_span=ss,
        endpoint=Endpoint(server, method, route), tls=tls_evidence(ss), auth=auth_evidence(ss),
    )
