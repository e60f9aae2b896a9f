"""Node ids of the call graph, and internal/external classification.

The id scheme (stable: policies, exports and the TUI use these strings):

=============================  ==========  ======================================
id                             kind        what
=============================  ==========  ======================================
``checkout``                   service     an instrumented service (``service.name``)
``resize-image``               function    a FaaS function (resource ``faas.name``,
                                           or a client's ``faas.invoked_name``)
``db:sqlite/inventory``        database    ``db:{db.system}/{db.namespace|db.name|host}``
``queue:kafka/orders``         queue       ``queue:{messaging.system}/{destination}``
``ext:api.cardprocessor.example`` external uninstrumented peer outside the network
``legacy-billing``             service     ``peer.service`` of an uninstrumented peer
                                           classified internal (attribute virtual)
``int:10.0.4.7``               service     internal host or address with no name
``client:203.0.113.0/24``      client      uninstrumented caller by network range
                                           (IPv4 /24, IPv6 /64)
``ingress``                    ingress     a server span with no caller at all
``event:timer``                ingress     a FaaS trigger with no caller (timer,
                                           pubsub, datasource, other)
=============================  ==========  ======================================
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from agent.model import NodeKind, Resource, Span

IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class Classifier:
    """Tells internal hosts and addresses from external ones.

    Internal: a name ending with one of the domain suffixes (``.svc``,
    ``.cluster.local``, ...), a single-label name (a cluster-local service
    name), or an address inside one of the CIDRs (RFC 1918, loopback, ...).

    The domains and CIDRs are the effective ones (``agent.config.internal_hosts``:
    the configured ones with the built-in defaults).
    """

    def __init__(self, domains: Iterable[str] = (), cidrs: Iterable[str] = ()) -> None:
        self.domains = tuple(d.lower().strip() for d in domains if d)
        nets: list[IpNet] = []
        for c in cidrs:
            try:
                nets.append(ipaddress.ip_network(str(c).strip(), strict=False))
            except ValueError:
                continue
        self.nets = tuple(nets)
        self.is_internal = lru_cache(maxsize=4096)(self._is_internal)  # type: ignore[method-assign]

    def _is_internal(self, host: str) -> bool:
        h = host.strip().lower().strip("[]")
        if not h:
            return False
        ip = parse_ip(h)
        if ip is not None:
            return any(ip in n for n in self.nets if n.version == ip.version)
        for d in self.domains:
            if d.startswith("."):
                if h.endswith(d) or h == d[1:]:
                    return True
            elif h == d or h.endswith("." + d):
                return True
        return "." not in h


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text or not (text[0].isdigit() or ":" in text):
        return None
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


@lru_cache(maxsize=8192)
def client_network(address: str) -> str | None:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to, or ``None``."""
    a = address.strip().strip("[]")
    octets = a.split(".")
    if len(octets) == 4 and all(
        o.isascii() and o.isdigit() and len(o) <= 3 and (o == "0" or o[0] != "0") and int(o) <= 255
        for o in octets
    ):  # a canonical dotted quad, the common case: no ipaddress objects
        return f"{octets[0]}.{octets[1]}.{octets[2]}.0/24"
    ip = parse_ip(a)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def own_node(resource: Resource) -> tuple[str, NodeKind]:
    """The node a span's own side is: its function, or its service."""
    fname = resource.attributes.get("faas.name")
    if fname:
        return str(fname), NodeKind.FUNCTION
    return resource.service_name, NodeKind.SERVICE


def db_node(span: Span) -> str:
    db = span.db
    assert db is not None
    name = db.name or db.server_address
    return f"db:{db.system}/{name}" if name else f"db:{db.system}"


def queue_node(span: Span) -> str:
    m = span.messaging
    if m is None:
        return "queue:unknown"
    return f"queue:{m.system}/{m.destination}" if m.destination else f"queue:{m.system}"


def connection_type(span: Span) -> str:
    """Connection type a span shows: http, grpc, rpc, messaging, database, or ``""``."""
    if span.db is not None:
        return "database"
    if span.messaging is not None:
        return "messaging"
    if span.rpc is not None:
        return "grpc" if span.rpc.system == "grpc" else "rpc"
    if span.http is not None:
        return "http"
    return ""
