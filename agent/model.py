"""The one data model every part of apiward shares.

Collectors turn what they observe into :class:`Span`. The HTTP, RPC, messaging,
database and FaaS facts of a span are read once, here, into small normalised
views (:class:`HttpView`, ...) that understand both the stable OpenTelemetry
semantic-convention names and the legacy ones. Enrichers read those views and
never look up raw attribute names again.

Ids are lowercase hex strings everywhere (32 characters for a trace id, 16 for a
span id, ``""`` for "no parent"), the form OTLP/JSON and W3C ``traceparent`` use.
Times are integer nanoseconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, TypeVar, dataclass_transform
from urllib.parse import urlsplit

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """A slotted, hashable dataclass that is immutable by contract.

    Records are frozen for the type checker (``dataclass_transform`` with
    ``frozen_default``; mypy runs in CI and rejects any assignment to a field),
    but not at run time: ``@dataclass(frozen=True)`` assigns every field through
    ``object.__setattr__`` by name, which made a 21-field span cost ~6 us to
    build, more than parsing it. A plain slotted ``__init__`` costs ~0.9 us.
    Use ``dataclasses.replace`` to derive a changed copy.
    """
    return dataclass(slots=True, eq=True, unsafe_hash=True)(cls)  # type: ignore[no-any-return]


AttrValue = str | bool | int | float | bytes | list[Any] | dict[str, Any] | None
Attributes = Mapping[str, Any]

SOURCE_OTLP = "otlp"
SOURCE_EBPF = "ebpf"
SOURCE_REPLAY = "replay"
SOURCES = (SOURCE_OTLP, SOURCE_REPLAY, SOURCE_EBPF)

_EMPTY: Mapping[str, Any] = {}


class SpanKind(IntEnum):
    """OTLP span kinds, with the OTLP numeric values."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    """OTLP status codes, with the OTLP numeric values."""

    UNSET = 0
    OK = 1
    ERROR = 2


class Severity(IntEnum):
    """Finding severity; ordered, so ``max()`` picks the worst."""

    INFO = 1
    LOW = 2
    MEDIUM = 3
    HIGH = 4
    CRITICAL = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str | int | Severity) -> Severity:
        if isinstance(text, Severity):
            return text
        if isinstance(text, int):
            return cls(text)
        return cls[text.strip().upper()]


class NodeKind(StrEnum):
    """What a node of the call graph stands for."""

    SERVICE = "service"
    DATABASE = "database"
    EXTERNAL = "external"
    FUNCTION = "function"
    CLIENT = "client"
    INGRESS = "ingress"
    QUEUE = "queue"


# --------------------------------------------------------------------------- spans


@record
class Resource:
    """The entity that produced spans: a service instance, a function, a process.

    Built once per OTLP ``ResourceSpans`` (or per traced process) and shared by
    all its spans.
    """

    service_name: str
    attributes: Attributes = field(default_factory=dict)
    namespace: str = ""
    instance_id: str = ""
    environment: str = ""
    container_id: str = ""
    #: The resource is a FaaS function (``faas.name`` set): spans get a FaasView.
    is_function: bool = False

    @classmethod
    def from_attributes(cls, attributes: Attributes) -> Resource:
        get = attributes.get
        name = get("service.name")
        if not name or not isinstance(name, str):
            name = get("faas.name") or get("process.executable.name") or "unknown_service"
        return cls(
            service_name=str(name),
            attributes=attributes,
            namespace=str(get("service.namespace") or ""),
            instance_id=str(get("service.instance.id") or get("faas.instance") or ""),
            environment=str(
                get("deployment.environment.name") or get("deployment.environment") or ""
            ),
            container_id=str(get("container.id") or ""),
            is_function=bool(get("faas.name")),
        )

    def prefixed(self, prefix: str) -> dict[str, Any]:
        """Resource attributes under one namespace, e.g. ``prefixed("k8s.")``."""
        return {k: v for k, v in self.attributes.items() if k.startswith(prefix)}

    @property
    def k8s(self) -> dict[str, Any]:
        return self.prefixed("k8s.")

    @property
    def cloud(self) -> dict[str, Any]:
        return self.prefixed("cloud.")

    @property
    def faas(self) -> dict[str, Any]:
        return self.prefixed("faas.")


@record
class SpanEvent:
    name: str
    time_ns: int
    attributes: Attributes = field(default_factory=dict)


@record
class SpanLink:
    trace_id: str
    span_id: str
    attributes: Attributes = field(default_factory=dict)


@record
class ExceptionInfo:
    type: str
    message: str
    stacktrace: str


@record
class HttpView:
    """HTTP facts of a span, whichever semantic-convention version emitted them.

    ``request_headers``/``response_headers`` hold captured header values keyed by
    lowercase header name (``http.request.header.<name>``); multiple values are
    joined with ``", "``. ``request_body``/``response_body`` are excerpts, only
    present when a collector (eBPF) saw the bytes.
    """

    method: str = ""
    route: str = ""
    path: str = ""
    query: str = ""
    url: str = ""
    scheme: str = ""
    status_code: int = 0
    server_address: str = ""
    server_port: int = 0
    client_address: str = ""
    network_peer_address: str = ""
    network_peer_port: int = 0
    peer_service: str = ""
    user_agent: str = ""
    protocol_version: str = ""
    request_headers: Mapping[str, str] = field(default_factory=dict)
    response_headers: Mapping[str, str] = field(default_factory=dict)
    request_body_size: int | None = None
    response_body_size: int | None = None
    request_body: str | None = None
    response_body: str | None = None
    #: :func:`tls_evidence` of the span, worked out once when the span is built.
    tls: bool | None = None
    #: A client certificate is recorded (``tls.client.certificate``/``.subject``/
    #: ``.hash.sha256``): mTLS evidence for :func:`auth_evidence`.
    client_cert: bool = False


@record
class RpcView:
    system: str = ""
    service: str = ""
    method: str = ""
    grpc_status: int | None = None


@record
class MessagingView:
    system: str = ""
    destination: str = ""
    operation: str = ""


@record
class DbView:
    system: str = ""
    name: str = ""
    statement: str = ""
    operation: str = ""
    server_address: str = ""


@record
class FaasView:
    trigger: str = ""
    invoked_name: str = ""
    invoked_provider: str = ""
    invoked_region: str = ""
    coldstart: bool | None = None
    name: str = ""
    invocation_id: str = ""


@record
class Span:
    """One observed operation, the unit every collector produces.

    Build spans with :func:`make_span` so the normalised views are filled in.
    """

    trace_id: str
    span_id: str
    parent_span_id: str
    resource: Resource
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    status_code: StatusCode = StatusCode.UNSET
    status_message: str = ""
    attributes: Attributes = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    links: tuple[SpanLink, ...] = ()
    source: str = SOURCE_OTLP
    scope_name: str = ""
    http: HttpView | None = None
    rpc: RpcView | None = None
    messaging: MessagingView | None = None
    db: DbView | None = None
    faas: FaasView | None = None
    enduser_id: str = ""

    @property
    def service(self) -> str:
        return self.resource.service_name

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def is_error(self) -> bool:
        if self.status_code == StatusCode.ERROR:
            return True
        if self.http is not None and self.http.status_code >= 500:
            return True
        rpc = self.rpc
        return rpc is not None and rpc.grpc_status is not None and rpc.grpc_status != 0

    @property
    def exceptions(self) -> tuple[ExceptionInfo, ...]:
        out = []
        for ev in self.events:
            if ev.name == "exception":
                a = ev.attributes
                out.append(
                    ExceptionInfo(
                        type=str(a.get("exception.type") or ""),
                        message=str(a.get("exception.message") or ""),
                        stacktrace=str(a.get("exception.stacktrace") or ""),
                    )
                )
        return tuple(out)


# ------------------------------------------------------------------ normalisation


def _first(get: Any, *names: str) -> Any:
    for n in names:
        v = get(n)
        if v is not None and v != "":
            return v
    return None


def _as_int(v: Any) -> int:
    if v is None or isinstance(v, bool):
        return 0
    if isinstance(v, int):
        return v
    try:
        return int(str(v).strip())
    except ValueError:
        return 0


def _as_opt_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    try:
        return int(str(v).strip())
    except ValueError:
        return None


def _header_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


_REQ_HDR = "http.request.header."
_RESP_HDR = "http.response.header."
_REQ_HDR_LEN = len(_REQ_HDR)
_RESP_HDR_LEN = len(_RESP_HDR)

# Every attribute name the HTTP view reads, stable and legacy, mapped to a slot.
# One pass over a span's attributes fills the slots; precedence is applied after.
_HTTP_NAMES = (
    "http.request.method", "http.method", "url.full", "http.url", "http.target", "url.path",
    "url.query", "http.route", "url.scheme", "http.scheme", "server.address", "net.peer.name",
    "net.host.name", "http.host", "server.port", "net.peer.port", "net.host.port",
    "network.peer.address", "net.sock.peer.addr", "net.peer.ip", "network.peer.port",
    "net.sock.peer.port", "client.address", "http.client_ip", "http.request.body.size",
    "http.request_content_length", "http.request.size", "http.response.body.size",
    "http.response_content_length", "http.response.size", "user_agent.original",
    "http.user_agent", "network.protocol.version", "http.flavor", "http.request.body",
    "http.response.body", "http.response.status_code", "http.status_code", "peer.service",
    "tls.protocol.version", "tls.established", "tls.cipher", "tls.client.certificate",
    "tls.client.subject", "tls.client.hash.sha256",
)
_HTTP_SLOT = {n: i for i, n in enumerate(_HTTP_NAMES)}
(
    _METHOD, _METHOD_OLD, _URL_FULL, _URL_OLD, _TARGET, _PATH, _QUERY, _ROUTE, _SCHEME,
    _SCHEME_OLD, _SERVER_ADDR, _NET_PEER_NAME, _NET_HOST_NAME, _HTTP_HOST, _SERVER_PORT,
    _NET_PEER_PORT, _NET_HOST_PORT, _PEER_ADDR, _SOCK_PEER_ADDR, _NET_PEER_IP, _PEER_PORT,
    _SOCK_PEER_PORT, _CLIENT_ADDR, _CLIENT_IP, _REQ_SIZE, _REQ_SIZE_OLD, _REQ_SIZE2,
    _RESP_SIZE, _RESP_SIZE_OLD, _RESP_SIZE2, _UA, _UA_OLD, _PROTO, _FLAVOR, _REQ_BODY,
    _RESP_BODY, _HSTATUS, _HSTATUS_OLD, _PEER_SERVICE, _TLS_VERSION, _TLS_ESTABLISHED, _TLS_CIPHER,
    _CLIENT_CERT, _CLIENT_SUBJECT, _CLIENT_HASH,
) = range(len(_HTTP_NAMES))
_NSLOTS = len(_HTTP_NAMES)


def http_view(attributes: Attributes, kind: SpanKind) -> HttpView | None:
    """Read the HTTP facts of a span, or ``None`` when it is not an HTTP span."""
    v: list[Any] = [None] * _NSLOTS
    slot = _HTTP_SLOT.get
    req_h: dict[str, str] | None = None
    resp_h: dict[str, str] | None = None
    for k, val in attributes.items():
        i = slot(k)
        if i is not None:
            v[i] = val
        elif k.startswith(_REQ_HDR):
            if req_h is None:
                req_h = {}
            req_h[k[_REQ_HDR_LEN:].lower().replace("_", "-")] = _header_text(val)
        elif k.startswith(_RESP_HDR):
            if resp_h is None:
                resp_h = {}
            resp_h[k[_RESP_HDR_LEN:].lower().replace("_", "-")] = _header_text(val)
    method = v[_METHOD] or v[_METHOD_OLD]
    url = v[_URL_FULL] or v[_URL_OLD] or ""
    target = v[_TARGET]
    path = v[_PATH]
    route = v[_ROUTE]
    if not method and not url and path is None and target is None and route is None:
        return None
    if type(url) is not str:
        url = str(url)
    query = v[_QUERY]
    scheme = v[_SCHEME] or v[_SCHEME_OLD]
    parsed = None
    if url and ((path is None and target is None) or not scheme):  # urlsplit only when needed
        try:
            parsed = urlsplit(url)
        except ValueError:
            parsed = None
    if path is None:
        if target is not None:
            target = str(target)
            path, _, tq = target.partition("?")
            if "#" in path:
                path = path.partition("#")[0]
            if query is None:
                query = tq
        elif parsed is not None:
            path = parsed.path or "/"
            if query is None:
                query = parsed.query
    elif query is None and target is not None:
        query = str(target).partition("?")[2]
    if not scheme and parsed is not None:
        scheme = parsed.scheme
    if kind == SpanKind.CLIENT:
        client_side = True
        server_address = v[_SERVER_ADDR] or v[_NET_PEER_NAME] or v[_HTTP_HOST]
        server_port = v[_SERVER_PORT] or v[_NET_PEER_PORT]
    else:
        client_side = False
        server_address = v[_SERVER_ADDR] or v[_NET_HOST_NAME] or v[_HTTP_HOST]
        server_port = v[_SERVER_PORT] or v[_NET_HOST_PORT]
    if not server_address and url:
        if parsed is None:
            try:
                parsed = urlsplit(url)
            except ValueError:
                parsed = None
        if parsed is not None:
            try:
                server_address = parsed.hostname
                if not server_port:
                    server_port = parsed.port
            except ValueError:
                pass
    if not server_address:
        server_address = ""
    elif type(server_address) is not str:
        server_address = str(server_address)
    if ":" in server_address and server_address.count(":") == 1:
        host, _, port = server_address.partition(":")
        if port.isdigit():
            server_address = host
            if not server_port:
                server_port = int(port)
    peer_addr = v[_PEER_ADDR] or v[_SOCK_PEER_ADDR] or v[_NET_PEER_IP]
    peer_port = v[_PEER_PORT] or v[_SOCK_PEER_PORT]
    if client_side:
        client_address = v[_CLIENT_ADDR]
        if not peer_port:
            peer_port = v[_NET_PEER_PORT]
    else:
        client_address = v[_CLIENT_ADDR] or v[_CLIENT_IP] or v[_NET_PEER_IP] or peer_addr
    req_size = v[_REQ_SIZE]
    if req_size is None:
        req_size = v[_REQ_SIZE_OLD]
        if req_size is None:
            req_size = v[_REQ_SIZE2]
            if req_size is None and req_h is not None:
                req_size = req_h.get("content-length")
    resp_size = v[_RESP_SIZE]
    if resp_size is None:
        resp_size = v[_RESP_SIZE_OLD]
        if resp_size is None:
            resp_size = v[_RESP_SIZE2]
            if resp_size is None and resp_h is not None:
                resp_size = resp_h.get("content-length")
    ua = v[_UA] or v[_UA_OLD] or (req_h.get("user-agent") if req_h is not None else None) or ""
    status = v[_HSTATUS]
    if status is None:
        status = v[_HSTATUS_OLD]
    req_body = v[_REQ_BODY]
    resp_body = v[_RESP_BODY]
    scheme = (_CANON.get(scheme) or scheme.lower()) if type(scheme) is str else (
        str(scheme).lower() if scheme else "")
    # tls_evidence, as it reads: tls.* attributes, then the scheme, then the URL
    tls: bool | None = None
    if v[_TLS_VERSION] or v[_TLS_ESTABLISHED] or v[_TLS_CIPHER] or scheme == "https":
        tls = True
    elif scheme == "http":
        tls = False
    elif url.startswith("https://"):
        tls = True
    elif url.startswith("http://"):
        tls = False
    # Positional on purpose: keyword calls with 21 arguments cost several microseconds.
    return HttpView(
        (_CANON.get(method) or str(method).upper()) if type(method) is str else
        (str(method).upper() if method else ""),
        (route if type(route) is str else str(route)) if route else "",
        (path if type(path) is str else str(path)) if path else "",
        (query if type(query) is str else str(query)) if query else "",
        url,
        scheme,
        status if type(status) is int else _as_int(status),
        server_address,
        server_port if type(server_port) is int else _as_int(server_port),
        (client_address if type(client_address) is str else str(client_address)) if client_address else "",
        (peer_addr if type(peer_addr) is str else str(peer_addr)) if peer_addr else "",
        peer_port if type(peer_port) is int else _as_int(peer_port),
        str(v[_PEER_SERVICE]) if v[_PEER_SERVICE] else "",
        ua if type(ua) is str else str(ua),
        str(v[_PROTO] or v[_FLAVOR] or ""),
        req_h if req_h is not None else _EMPTY_HEADERS,
        resp_h if resp_h is not None else _EMPTY_HEADERS,
        None if req_size is None else (req_size if type(req_size) is int else _as_opt_int(req_size)),
        None if resp_size is None else (resp_size if type(resp_size) is int else _as_opt_int(resp_size)),
        None if req_body is None else str(req_body),
        None if resp_body is None else str(resp_body),
        tls,
        bool(v[_CLIENT_CERT] or v[_CLIENT_SUBJECT] or v[_CLIENT_HASH]),
    )


_EMPTY_HEADERS: Mapping[str, str] = {}
# Methods and schemes as every span spells them -> one shared normalised string: later
# stages key dicts by them, and a shared string's hash is computed once, not per span.
_CANON: dict[str, str] = {
    v: v.upper() if v.lower() not in ("http", "https") else v.lower()
    for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT",
              "http", "https")
    for v in (m, m.lower(), m.upper(), m.capitalize())
}


def rpc_view(attributes: Attributes) -> RpcView | None:
    get = attributes.get
    system = get("rpc.system")
    if not system:
        return None
    status = _first(get, "rpc.grpc.status_code")
    return RpcView(
        system=str(system),
        service=str(get("rpc.service") or ""),
        method=str(get("rpc.method") or ""),
        grpc_status=_as_opt_int(status),
    )


def messaging_view(attributes: Attributes) -> MessagingView | None:
    get = attributes.get
    system = get("messaging.system")
    if not system:
        return None
    return MessagingView(
        system=str(system),
        destination=str(
            _first(get, "messaging.destination.name", "messaging.destination") or ""
        ),
        operation=str(
            _first(get, "messaging.operation.type", "messaging.operation") or ""
        ),
    )


def db_view(attributes: Attributes) -> DbView | None:
    get = attributes.get
    system = _first(get, "db.system.name", "db.system")
    if not system:
        return None
    return DbView(
        system=str(system),
        name=str(_first(get, "db.namespace", "db.name") or ""),
        statement=str(_first(get, "db.query.text", "db.statement") or ""),
        operation=str(_first(get, "db.operation.name", "db.operation") or ""),
        server_address=str(_first(get, "server.address", "net.peer.name") or ""),
    )


def faas_view(attributes: Attributes, resource: Resource) -> FaasView | None:
    get = attributes.get
    rget = resource.attributes.get
    trigger = get("faas.trigger")
    invoked = get("faas.invoked_name")
    rname = rget("faas.name")
    if not trigger and not invoked and not rname and get("faas.coldstart") is None:
        return None
    cold = get("faas.coldstart")
    return FaasView(
        trigger=str(trigger or ""),
        invoked_name=str(invoked or ""),
        invoked_provider=str(get("faas.invoked_provider") or ""),
        invoked_region=str(get("faas.invoked_region") or ""),
        coldstart=None if cold is None else bool(cold),
        name=str(rname or ""),
        invocation_id=str(_first(get, "faas.invocation_id", "faas.execution") or ""),
    )


def make_span(
    *,
    trace_id: str,
    span_id: str,
    parent_span_id: str,
    resource: Resource,
    name: str,
    kind: SpanKind | int,
    start_ns: int,
    end_ns: int,
    status_code: StatusCode | int = StatusCode.UNSET,
    status_message: str = "",
    attributes: Attributes | None = None,
    events: tuple[SpanEvent, ...] = (),
    links: tuple[SpanLink, ...] = (),
    source: str = SOURCE_OTLP,
    scope_name: str = "",
) -> Span:
    """Build a :class:`Span` and compute its normalised views, once."""
    k = kind if isinstance(kind, SpanKind) else _KINDS.get(kind, SpanKind.UNSPECIFIED)
    sc = status_code if isinstance(status_code, StatusCode) else _STATUS.get(status_code, StatusCode.UNSET)
    return build_span(
        trace_id, span_id, parent_span_id, resource, name, k, start_ns, end_ns, sc, status_message,
        attributes if attributes is not None else {}, events, links, source, scope_name,
    )


def build_span(
    trace_id: str,
    span_id: str,
    parent_span_id: str,
    resource: Resource,
    name: str,
    kind: SpanKind,
    start_ns: int,
    end_ns: int,
    status_code: StatusCode,
    status_message: str,
    attrs: Attributes,
    events: tuple[SpanEvent, ...],
    links: tuple[SpanLink, ...],
    source: str,
    scope_name: str,
) -> Span:
    """:func:`make_span` for the receivers' hot path: positional, enums already mapped."""
    get = attrs.get
    # Positional, in field order: keyword calls with ~20 arguments cost microseconds.
    return Span(
        trace_id,
        span_id,
        parent_span_id,
        resource,
        name,
        kind,
        start_ns,
        end_ns,
        status_code,
        status_message,
        attrs,
        events,
        links,
        source,
        scope_name,
        http_view(attrs, kind),
        rpc_view(attrs) if "rpc.system" in attrs else None,
        messaging_view(attrs) if "messaging.system" in attrs else None,
        db_view(attrs) if ("db.system" in attrs or "db.system.name" in attrs) else None,
        faas_view(attrs, resource) if ("faas.trigger" in attrs or "faas.invoked_name" in attrs
                                       or "faas.coldstart" in attrs or resource.is_function) else None,
        str(get("enduser.id") or ""),
    )


_KINDS = {int(k): k for k in SpanKind}
_STATUS = {int(s): s for s in StatusCode}


# ---------------------------------------------------------------- derived types


@record
class Endpoint:
    """One API operation in the inventory: (service, method, route template)."""

    service: str
    method: str
    route: str

    @property
    def key(self) -> str:
        return f"{self.service} {self.method} {self.route}"


@record
class Node:
    """A vertex of the call graph."""

    id: str
    kind: NodeKind
    name: str = ""
    attributes: Mapping[str, Any] = field(default_factory=dict)


@record
class Edge:
    """A directed edge of the call graph (statistics live in the graph enricher)."""

    client: str
    server: str
    connection_type: str = "http"

    @property
    def key(self) -> str:
        return f"{self.client}->{self.server}/{self.connection_type}"


@record
class Subject:
    """What a finding is about. Unset fields are empty strings."""

    service: str = ""
    method: str = ""
    route: str = ""
    client: str = ""
    server: str = ""
    host: str = ""
    detail: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k)}  # type: ignore[attr-defined]

    @property
    def key(self) -> str:
        return "|".join(getattr(self, k) for k in self.__slots__)  # type: ignore[attr-defined]

    @property
    def label(self) -> str:
        parts = []
        # A client of a service's endpoint (no server): "shop GET /orders/{id} (user:mallory)".
        client_of_service = bool(self.client and self.service and not self.server)
        if client_of_service:
            parts.append(self.service)
        elif self.client or self.server:
            parts.append(f"{self.client or '?'} -> {self.server or '?'}")
        elif self.service:
            parts.append(self.service)
        if self.method or self.route:
            parts.append(f"{self.method} {self.route}".strip())
        if client_of_service:
            parts.append(f"({self.client})")
        if self.host and self.host != self.server:
            parts.append(self.host)
        if self.detail:
            parts.append(self.detail)
        return " ".join(parts) or "-"


def finding_id(rule: str, subject: Subject) -> str:
    """Stable id of a finding: two agents that see the same problem agree on it."""
    h = hashlib.sha256(f"{rule}\x1f{subject.key}".encode()).hexdigest()
    return h[:16]


@record
class Finding:
    """One observation of a problem. The findings store merges observations that
    share an id (rule + subject) into one finding with a count and a time range.

    ``evidence`` only ever holds redacted values (masked forms, keyed hashes,
    counts); never a raw sensitive value.
    """

    rule: str
    title: str
    severity: Severity
    subject: Subject
    first_seen_ns: int
    last_seen_ns: int
    count: int = 1
    owasp: str | None = None
    confidence: float = 1.0
    explanation: str = ""
    remediation: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    trace_ids: tuple[str, ...] = ()
    span_ids: tuple[str, ...] = ()
    compliance: tuple[str, ...] = ()
    category: str = ""

    @property
    def id(self) -> str:
        return finding_id(self.rule, self.subject)


def ns_to_iso(ns: int) -> str:
    """Nanoseconds since the epoch as an ISO 8601 UTC string (ms precision)."""
    import datetime as _dt

    if ns <= 0:
        return ""
    dt = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SpanSink:
    """Where collectors hand their spans. Implementations must not block.

    ``offer`` returns ``True`` when the batch was accepted, ``False`` when the
    sink is full (the receiver then answers "retry later": gRPC
    ``RESOURCE_EXHAUSTED`` or HTTP 429). It must not raise.
    """

    def offer(self, batch: list[Span], source: str) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def count_rejected(self, source: str, reason: str, n: int) -> None:  # pragma: no cover
        """Record ``n`` spans (or requests, for whole-request errors) refused for ``reason``."""
        raise NotImplementedError


# ------------------------------------------------------- evidence read at the edge

API_KEY_HEADERS = ("x-api-key", "api-key", "apikey", "x-api-token", "x-auth-token", "ocp-apim-subscription-key")


def auth_evidence(span: Span) -> tuple[str, ...] | None:
    """Authentication schemes a span shows (never the credential itself).

    Returns a sorted tuple of scheme names (``bearer``, ``jwt``, ``basic``,
    ``apikey``, ``mtls``, ``enduser``, or the lowercased scheme word of an
    ``Authorization`` header), ``()`` when headers were captured and show no
    credential, and ``None`` when there is no evidence either way (no request
    headers captured and no identity attribute): the honest "unknown".
    """
    http = span.http
    attrs = span.attributes
    # most spans carry no source of evidence at all: say so before building anything
    if http is not None:
        if not (http.request_headers or http.query or span.enduser_id or http.client_cert):
            return None
    elif not span.enduser_id and not has_client_cert(attrs):
        return None
    schemes: set[str] = set()
    captured = False
    if http is not None and http.request_headers:
        captured = True
        h = http.request_headers
        authz = h.get("authorization") or h.get("proxy-authorization")
        if authz:
            word, _, rest = authz.strip().partition(" ")
            w = word.lower()
            schemes.add(w if rest else "token")
            if w == "bearer" and rest.count(".") == 2 and rest.startswith("eyJ"):
                schemes.add("jwt")
        for k in API_KEY_HEADERS:
            if h.get(k):
                schemes.add("apikey")
                break
        if "cookie" in h and ("session" in h["cookie"].lower() or "token" in h["cookie"].lower()):
            schemes.add("cookie")
    if http is not None and http.query and ("api_key=" in http.query or "apikey=" in http.query):
        schemes.add("apikey")
        captured = True
    if span.enduser_id:
        schemes.add("enduser")
        captured = True
    if http.client_cert if http is not None else has_client_cert(attrs):
        schemes.add("mtls")
        captured = True
    if not captured:
        return None
    return tuple(sorted(schemes))


def tls_evidence(span: Span) -> bool | None:
    """``True`` when the call used TLS, ``False`` when it was plaintext, ``None`` unknown."""
    http = span.http
    if http is not None:
        return http.tls  # worked out the same way by http_view
    attrs = span.attributes
    if attrs.get("tls.protocol.version") or attrs.get("tls.established") or attrs.get("tls.cipher"):
        return True
    return None


def has_client_cert(attrs: Attributes) -> bool:
    """A client certificate is recorded on the span (mTLS evidence)."""
    return bool(
        attrs.get("tls.client.certificate") or attrs.get("tls.client.subject")
        or attrs.get("tls.client.hash.sha256")
    )


@record
class Call:
    """One observed call over a call-graph edge.

    Published each batch by the call-graph enricher in ``state.batch.calls`` for
    the enrichers that run after it (zero trust, abuse). ``span`` is the span that
    best describes the call: the server span when it was paired or reported,
    else the client span.
    """

    client: str
    server: str
    client_kind: NodeKind
    server_kind: NodeKind
    connection_type: str
    span: Span
    client_span: Span | None = None
    server_span: Span | None = None
    endpoint: Endpoint | None = None
    tls: bool | None = None
    auth: tuple[str, ...] | None = None

    @property
    def edge(self) -> Edge:
        return Edge(self.client, self.server, self.connection_type)
