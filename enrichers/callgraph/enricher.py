"""The call graph: who calls whom, over what, how often, how well.

:class:`CallGraphEnricher` pairs spans into calls the way the Collector's
``servicegraph`` connector does, and further:

* a CLIENT span and the SERVER span whose parent it is, across services and
  batches: unpaired spans wait in a bounded store (``max_unpaired``) for
  ``pair_ttl_seconds``; what expires is counted and resolved to a virtual
  node, and a partner arriving after that is counted as late, never published
  twice;
* PRODUCER -> CONSUMER by parent or by span link (fan-out allowed);
* a span with ``db.*`` -> a database node, at once;
* a CLIENT span whose server never reports -> a virtual node (``peer.service``,
  then ``server.address``/URL host, then the network peer), internal or
  external by ``config.internal_domains``/``internal_cidrs``;
* a SERVER span with no client -> from a caller node: ``client:<network>`` by
  ``client.address``, else ``ingress``; FaaS triggers with no caller come from
  ``event:<trigger>`` (or the queue/database the event names);
* a span of wrong or missing kind pairs with its parent when their services
  differ;
* spans of a FaaS resource (``faas.name``) are function nodes; an invocation
  edge into a function has the trigger as its connection type.

Every call is published exactly once, as an :class:`agent.model.Call` in
``state.batch.calls`` (when the pair completes, or when an unpaired span is
resolved: immediately for database calls and callers-less server spans, at
expiry otherwise). The node-id scheme is documented in
:mod:`enrichers.callgraph.nodes`.

Settings (``config.section("graph")``): ``pair_ttl_seconds`` (10),
``max_unpaired`` (100000), ``max_edges`` (20000), ``max_nodes`` (10000),
``max_client_nodes`` (1000), ``internal_defaults`` (true: the configured
``internal_domains``/``internal_cidrs`` add to the built-in ones; false: they
replace them).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from math import ceil, log2
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from agent.config import internal_hosts
from agent.model import (
    SOURCE_REPLAY,
    Call,
    Endpoint,
    Finding,
    NodeKind,
    Span,
    SpanKind,
    StatusCode,
    auth_evidence,
    ns_to_iso,
    tls_evidence,
)
from enrichers.base import Enricher
from enrichers.callgraph.nodes import (
    Classifier,
    client_network,
    connection_type,
    db_node,
    own_node,
    queue_node,
)
from enrichers.sketches import MULT, LatencySketch, quantile_ms, sketch_dump, sketch_load

if TYPE_CHECKING:
    from agent.state import State

log = logging.getLogger("apiward.callgraph")

PART = "callgraph"
MAX_EDGE_ENDPOINTS = 200
_CACHE_MAX = 8192
_MISKINDS = (SpanKind.INTERNAL, SpanKind.UNSPECIFIED)
_NS = 1_000_000_000
_ERROR = StatusCode.ERROR
# Enum members read through their class cost ~0.1 us each (EnumType attribute
# lookup): the hot paths compare with these module constants instead.
_SERVER, _CLIENT = SpanKind.SERVER, SpanKind.CLIENT
_PRODUCER, _CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER
_FUNCTION, _DATABASE = NodeKind.FUNCTION, NodeKind.DATABASE


@dataclass(slots=True)
class NodeInfo:
    id: str
    kind: NodeKind
    name: str = ""
    virtual: bool = False
    internal: bool | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    first_ns: int = 0
    last_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind.value, "name": self.name or self.id,
            "virtual": self.virtual, "internal": self.internal,
            "attributes": dict(self.attributes),
            "first_seen": ns_to_iso(self.first_ns), "last_seen": ns_to_iso(self.last_ns),
        }


@dataclass(slots=True)
class EdgeStats:
    """Statistics of one edge; what :meth:`CallGraphPart.edges` yields.

    ``server_latency`` and ``client_latency`` are sketches of durations in
    seconds (:class:`~enrichers.callgraph.sketches.LatencySketch`: DDSketch
    buckets, ``count``, ``get_quantile_value``, ``to_ddsketch()``), as the
    server span and the client span measured them (either may be empty).
    ``tls_yes``/``tls_no`` count calls with TLS evidence either way; ``auth``
    counts calls per scheme, ``unauthenticated`` calls with headers seen and no
    credential, ``auth_unknown`` calls with no evidence at all.
    """

    client: str
    server: str
    connection_type: str
    calls: int = 0
    errors: int = 0
    server_latency: LatencySketch = field(default_factory=LatencySketch)
    client_latency: LatencySketch = field(default_factory=LatencySketch)
    first_ns: int = 0
    last_ns: int = 0
    tls_yes: int = 0
    tls_no: int = 0
    auth: dict[str, int] = field(default_factory=dict)
    unauthenticated: int = 0
    auth_unknown: int = 0
    endpoints: dict[str, int] = field(default_factory=dict)
    #: sensitive types carried over the edge -> directions (request, response)
    sensitive: dict[str, set[str]] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.client, self.server, self.connection_type)

    @property
    def tls(self) -> bool | None:
        if self.tls_yes:
            return True
        return False if self.tls_no else None

    @property
    def latency(self) -> LatencySketch:
        return self.server_latency if self.server_latency.count else self.client_latency

    def as_dict(self) -> dict[str, Any]:
        p50, p95, p99 = self.latency.quantiles_ms((0.5, 0.95, 0.99))
        return {
            "client": self.client,
            "server": self.server,
            "connection_type": self.connection_type,
            "calls": self.calls,
            "errors": self.errors,
            "error_rate": round(self.errors / self.calls, 4) if self.calls else 0.0,
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "client_p95_ms": quantile_ms(self.client_latency, 0.95),
            "tls": self.tls,
            "tls_calls": self.tls_yes,
            "plaintext_calls": self.tls_no,
            "auth": sorted(self.auth),
            "auth_counts": dict(self.auth),
            "unauthenticated_calls": self.unauthenticated,
            "auth_unknown_calls": self.auth_unknown,
            "endpoints": sorted(self.endpoints),
            "sensitive_types": sorted(self.sensitive),
            "sensitive": {t: sorted(d) for t, d in sorted(self.sensitive.items())},
            "first_seen": ns_to_iso(self.first_ns),
            "last_seen": ns_to_iso(self.last_ns),
            "first_seen_ns": self.first_ns,
            "last_seen_ns": self.last_ns,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "c": self.client, "s": self.server, "t": self.connection_type, "n": self.calls,
            "e": self.errors, "sl": sketch_dump(self.server_latency),
            "cl": sketch_dump(self.client_latency), "f": self.first_ns, "l": self.last_ns,
            "ty": self.tls_yes, "tn": self.tls_no, "a": self.auth, "u": self.unauthenticated,
            "uk": self.auth_unknown, "ep": self.endpoints,
            "sv": {t: sorted(d) for t, d in self.sensitive.items()},
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EdgeStats:
        e = cls(str(d["c"]), str(d["s"]), str(d["t"]))
        e.calls, e.errors = int(d.get("n", 0)), int(d.get("e", 0))
        if d.get("sl"):
            e.server_latency = sketch_load(d["sl"])
        if d.get("cl"):
            e.client_latency = sketch_load(d["cl"])
        e.first_ns, e.last_ns = int(d.get("f", 0)), int(d.get("l", 0))
        e.tls_yes, e.tls_no = int(d.get("ty", 0)), int(d.get("tn", 0))
        e.auth = {str(k): int(v) for k, v in (d.get("a") or {}).items()}
        e.unauthenticated, e.auth_unknown = int(d.get("u", 0)), int(d.get("uk", 0))
        e.endpoints = {str(k): int(v) for k, v in (d.get("ep") or {}).items()}
        e.sensitive = {str(t): {str(x) for x in dirs} for t, dirs in (d.get("sv") or {}).items()}
        return e


#: Directions of detections that are data on the wire (not ``telemetry``).
_DATA_DIRECTIONS = frozenset({"request", "response"})
#: Detections that are facts, not sensitive data carried (as the sensitive stage's facts)
_INFO_TYPES = frozenset({"PRIVATE_IP_ADDRESS"})
_SERVER_SPAN = attrgetter("server_span")
_ENDPOINT = attrgetter("endpoint")
_CALLER = attrgetter("client")


class CallGraphPart:
    """The call graph in State (part ``"callgraph"``).

    Readers: :meth:`report` -> ``{"nodes": [...], "edges": [...]}``;
    :meth:`edges` yields :class:`EdgeStats` (client, server, connection_type,
    calls, errors, server_latency/client_latency sketches in seconds, first_ns,
    last_ns, tls, auth counts, endpoints); :meth:`nodes` yields
    :class:`NodeInfo`; :meth:`counters` the pairing counters.
    """

    def __init__(self, max_edges: int = 20_000, max_nodes: int = 10_000) -> None:
        self.max_edges = max_edges
        self.max_nodes = max_nodes
        self._nodes: dict[str, NodeInfo] = {}
        self._edges: dict[tuple[str, str, str], EdgeStats] = {}
        self.dropped_edges = 0
        # Snapshot cache: edge key -> (edge, its call count then, its to_json()). An edge
        # changes only in record(), which always counts a call, so an entry whose edge and
        # count still match is current: a snapshot re-encodes only the edges that moved.
        self._json: dict[tuple[str, str, str], tuple[EdgeStats, int, dict[str, Any]]] = {}
        self.counters: dict[str, int] = {
            "paired": 0, "expired_client": 0, "expired_server": 0, "expired_dropped": 0,
            "evicted": 0, "late_after_expiry": 0, "immediate": 0,
        }

    def touch(self, nid: str, ts: int) -> bool:
        """Move a known node's first/last seen to include ``ts``; ``False`` if unknown."""
        n = self._nodes.get(nid)
        if n is None:
            return False
        if ts > n.last_ns:
            n.last_ns = ts
        elif ts and ts < n.first_ns:
            n.first_ns = ts
        return True

    def node(self, nid: str, kind: NodeKind, ts: int, **attrs: Any) -> NodeInfo:
        n = self._nodes.get(nid)
        if n is not None:
            if ts > n.last_ns:
                n.last_ns = ts
            elif ts and ts < n.first_ns:
                n.first_ns = ts
            return n
        n = NodeInfo(nid, kind, first_ns=ts, last_ns=ts)
        if len(self._nodes) < self.max_nodes:
            self._nodes[nid] = n
        if attrs:
            for k, v in attrs.items():
                if k == "virtual":
                    n.virtual = bool(v)
                elif k == "internal":
                    n.internal = v
                elif k == "name":
                    n.name = str(v)
                elif v not in (None, ""):
                    n.attributes[k] = v
        return n

    def record(self, call: Call) -> None:
        """Count one call into its edge."""
        self.record_many((call,))

    def note_sensitive(self, calls: Sequence[Call], sensitive: Mapping[str, Sequence[Any]]) -> None:
        """Record on each call's edge the sensitive types its spans carried as request or
        response data (``sensitive``: the batch's detections by span id; types and
        directions only, never values)."""
        edges = self._edges
        for call in calls:
            spans = {id(s): s for s in (call.span, call.client_span, call.server_span) if s is not None}
            found = [d for s in spans.values() for d in (sensitive.get(s.span_id) or ())]
            if not found:
                continue
            e = edges.get((call.client, call.server, call.connection_type))
            if e is None:
                continue
            for d in found:
                if d.direction in _DATA_DIRECTIONS and d.type not in _INFO_TYPES:
                    e.sensitive.setdefault(d.type, set()).add(d.direction)

    def record_many(self, calls: Sequence[Call]) -> None:  # noqa: C901 - the hot loop, inlined
        """:meth:`record` of each call, in order (the enricher's hot path: one loop,
        ``Span.is_error`` and ``LatencySketch.add_ns`` inlined, the edge looked up
        again only when it changes, an endpoint's key string built once)."""
        edges = self._edges
        e: EdgeStats | None = None
        client = server = ctype = None
        ep_keys: dict[int, str] = {}  # id(endpoint) -> "METHOD route"; calls keep them alive
        for call in calls:
            if call.client is not client or call.server is not server or call.connection_type is not ctype:
                client, server, ctype = call.client, call.server, call.connection_type
                key = (client, server, ctype)
                e = edges.get(key)
                if e is None:
                    if len(edges) < self.max_edges:
                        e = edges[key] = EdgeStats(client, server, ctype)
            if e is None:
                self.dropped_edges += 1
                continue
            e.calls += 1
            span = call.span
            cs = call.client_span
            # Span.is_error, inlined: of the call's span, then (a pair) of its client
            # span: an error seen by either side counts
            s: Span | None = span
            failed = False
            while s is not None:
                if s.status_code == _ERROR:
                    failed = True
                    break
                http = s.http
                if http is not None and http.status_code >= 500:
                    failed = True
                    break
                rpc = s.rpc
                if rpc is not None and rpc.grpc_status is not None and rpc.grpc_status != 0:
                    failed = True
                    break
                s = cs if cs is not s else None
            if failed:
                e.errors += 1
            # LatencySketch.add_ns, inlined, server then client side
            for s, sk in ((call.server_span, e.server_latency), (cs, e.client_latency)):
                if s is None:
                    continue
                sk.count += 1
                d = s.end_ns - s.start_ns
                if d > 0:
                    k = ceil(log2(d * 1e-9) * MULT)
                    b = sk.bins
                    b[k] = b.get(k, 0) + 1
                else:
                    sk.zero += 1
            ts = span.end_ns or span.start_ns
            if ts > e.last_ns:
                e.last_ns = ts
            if not e.first_ns or ts < e.first_ns:
                e.first_ns = ts
            tls = call.tls
            if tls is True:
                e.tls_yes += 1
            elif tls is False:
                e.tls_no += 1
            auth = call.auth
            if auth is None:
                e.auth_unknown += 1
            elif not auth:
                e.unauthenticated += 1
            else:
                ea = e.auth
                for a in auth:
                    ea[a] = ea.get(a, 0) + 1
            ep = call.endpoint
            if ep is not None:
                ek = ep_keys.get(id(ep))
                if ek is None:
                    ek = ep_keys[id(ep)] = f"{ep.method} {ep.route}"
                eps = e.endpoints
                n = eps.get(ek)
                if n is not None:
                    eps[ek] = n + 1
                elif len(eps) < MAX_EDGE_ENDPOINTS:
                    eps[ek] = 1

    def edges(self) -> Iterable[EdgeStats]:
        return list(self._edges.values())

    def nodes(self) -> Iterable[NodeInfo]:
        return list(self._nodes.values())

    def edge(self, client: str, server: str, connection_type: str) -> EdgeStats | None:
        return self._edges.get((client, server, connection_type))

    def report(self) -> dict[str, Any]:
        return {
            "nodes": [n.as_dict() for n in sorted(self._nodes.values(), key=lambda n: n.id)],
            "edges": [e.as_dict() for e in sorted(self._edges.values(), key=lambda e: e.key)],
            "pairing": dict(self.counters),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "v": 1,
            "nodes": [
                {"id": n.id, "k": n.kind.value, "nm": n.name, "vi": n.virtual, "in": n.internal,
                 "a": n.attributes, "f": n.first_ns, "l": n.last_ns}
                for n in self._nodes.values()
            ],
            "edges": self._edges_json(),
            "counters": self.counters,
        }

    def _edges_json(self) -> list[dict[str, Any]]:
        """Every edge's :meth:`EdgeStats.to_json`, re-encoding only the edges that changed."""
        old = self._json
        cache: dict[tuple[str, str, str], tuple[EdgeStats, int, dict[str, Any]]] = {}
        out: list[dict[str, Any]] = []
        for key, e in self._edges.items():
            hit = old.get(key)
            if hit is not None and hit[0] is e and hit[1] == e.calls:
                j = hit[2]
            else:
                j = e.to_json()
            cache[key] = (e, e.calls, j)
            out.append(j)
        self._json = cache
        return out

    def restore(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("v") != 1:
            return
        for d in data.get("nodes") or ():
            try:
                kind = NodeKind(d["k"])
            except (KeyError, ValueError):
                continue
            self._nodes[str(d["id"])] = NodeInfo(
                str(d["id"]), kind, str(d.get("nm") or ""), bool(d.get("vi")), d.get("in"),
                dict(d.get("a") or {}), int(d.get("f") or 0), int(d.get("l") or 0),
            )
        for d in data.get("edges") or ():
            e = EdgeStats.from_json(d)
            self._edges[e.key] = e
        for k, v in (data.get("counters") or {}).items():
            self.counters[str(k)] = int(v)


@dataclass(slots=True, eq=False)
class _Pending:
    """A span waiting for its partner.

    ``keys`` are the span ids it is filed under (a client: its own id; a server:
    its parent's id, then the ids its links point to); ``traces`` the trace id
    of each key when they differ from the span's own (links), else empty.
    ``server_role`` is set on the client role of a span of wrong or missing kind
    when the span also waits as a server (see ``CallGraphEnricher._miskind``).
    """

    span: Span
    node: str
    kind: NodeKind
    endpoint: Endpoint | None
    expires_ns: int
    client_side: bool
    replay: bool
    keys: tuple[str, ...] = ()
    traces: tuple[str, ...] = ()
    done: bool = False
    paired: bool = False
    ticks: int = 0
    server_role: _Pending | None = None

    def trace_of(self, key: str) -> str:
        """The trace id ``key`` belongs to."""
        if self.traces:
            for k, t in zip(self.keys, self.traces, strict=True):
                if k == key:
                    return t
        return self.span.trace_id


#: One pending span, or several (fan-out, or spans of colliding ids), per key.
_Waiting = _Pending | list[_Pending]


def _as_list(w: _Waiting) -> list[_Pending]:
    return w if type(w) is list else [w]  # type: ignore[list-item]


def _keys(span: Span, links: Sequence[Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The ids a server-side span waits under (its parent's, then its ``links``'), and
    each one's trace id when links are among them (else empty: the span's own)."""
    parent = span.parent_span_id
    if links:
        keys = ((parent,) if parent else ()) + tuple(lk.span_id for lk in links)
        traces = ((span.trace_id,) if parent else ()) + tuple(lk.trace_id for lk in links)
        return keys, traces
    return ((parent,), ()) if parent else ((), ())


class CallGraphEnricher(Enricher):
    """Pairs spans into calls, keeps the ``callgraph`` part. See the module docstring.

    Pairing state is keyed by span id (a hash of a cached string, no tuple per
    lookup); the trace id is checked on every match, so spans of different
    traces that share a span id never pair.
    """

    name = PART

    def __init__(self, config: Any = None, *, clock: Any = None) -> None:
        sect: dict[str, Any] = {}
        fn = getattr(config, "section", None)
        if fn is not None:
            sect = fn("graph") or {}
        self.ttl_ns = int(float(sect.get("pair_ttl_seconds", 10)) * _NS)
        self.max_unpaired = int(sect.get("max_unpaired", 100_000))
        self.max_edges = int(sect.get("max_edges", 20_000))
        self.max_nodes = int(sect.get("max_nodes", 10_000))
        self.max_client_nodes = int(sect.get("max_client_nodes", 1_000))
        # the configured domains and CIDRs with the defaults, as every analysis uses them
        domains, cidrs = internal_hosts(config)
        self.classifier = Classifier(domains, cidrs)
        self.clock = clock or time.time_ns
        #: client span id -> the client waiting for its server
        self._clients: dict[str, _Pending] = {}
        #: parent (or linked) span id -> the server(s) waiting for that client
        self._servers: dict[str, _Waiting] = {}
        self._fifo: deque[_Pending] = deque()
        #: spans of wrong or missing kind wait in a store of their own (same bound), so
        #: that the many INTERNAL spans never push CLIENT/SERVER spans out of theirs
        self._mk_fifo: deque[_Pending] = deque()
        #: span id -> trace id of keys that expired unpaired (late partners are counted)
        self._gone: dict[str, str] = {}
        self._gone_slack = max(1, self.max_unpaired // 16)
        self._client_nets: set[str] = set()
        #: caller network -> caller node; (peer, host, address) -> virtual node
        self._caller_cache: dict[str, tuple[str, NodeKind]] = {}
        self._virtual_cache: dict[tuple[str, str, str], tuple[str, NodeKind]] = {}
        self._replay_since_tick = False
        self._out: list[Call] = []
        self._part: CallGraphPart | None = None
        #: the inventory's record_callers, when there is an inventory
        self._note: Any = None
        self._state: State | None = None

    # ------------------------------------------------------------------ plumbing
    def attach(self, state: State) -> CallGraphPart:
        found = state.parts.get(PART)
        if found is None:
            found = state.part(PART, lambda: CallGraphPart(self.max_edges, self.max_nodes))
        part: CallGraphPart = found
        if part is not self._part:
            self._caller_cache.clear()
            self._virtual_cache.clear()
        self._part = part
        self._state = state
        self._note = getattr(state.parts.get("inventory"), "record_callers", None)
        return part

    @property
    def pending(self) -> int:
        return sum(1 for fifo in (self._fifo, self._mk_fifo) for p in fifo if not p.done)

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        part = self.attach(state)
        endpoints = state.batch.endpoints
        expires = self.clock() + self.ttl_ns
        nodes = part._nodes
        client, server, producer, consumer = _CLIENT, _SERVER, _PRODUCER, _CONSUMER
        last_res = None
        nid, nkind, info = "", NodeKind.SERVICE, None
        replay = False
        clients, servers, gone = self._clients, self._servers, self._gone
        fifo_append = self._fifo.append
        get_ep = endpoints.get
        emit_pair = self._emit_pair
        paired = 0
        try:
            for span in batch:
                res = span.resource
                ts = span.end_ns
                if res is not last_res:  # spans of one resource arrive together
                    last_res = res
                    nid, nkind = self._own(span)
                    info = nodes.get(nid)
                elif info is not None:
                    if ts > info.last_ns:
                        info.last_ns = ts
                    elif ts and ts < info.first_ns:
                        info.first_ns = ts
                kind = span.kind
                src_replay = span.source == SOURCE_REPLAY
                if src_replay:
                    replay = True
                if kind == server:
                    # The common cases of _server_side, spelled out: the client is
                    # waiting (pair now), or nothing waits under the parent (file it).
                    parent = span.parent_span_id
                    if parent:
                        cli = clients.get(parent)
                        if cli is None:
                            if parent not in servers and parent not in gone:
                                p = _Pending(span, nid, nkind, get_ep(span.span_id), expires, False,
                                             src_replay, (parent,))
                                servers[parent] = p
                                fifo_append(p)
                                continue
                        else:
                            cspan = cli.span
                            if cspan.kind == client and cspan.trace_id == span.trace_id and not cli.done:
                                del clients[parent]  # _done(cli): filed under its own id only
                                cli.done = cli.paired = True
                                paired += 1
                                emit_pair(cli.node, nid, cli.kind, nkind, cspan, span,
                                          get_ep(span.span_id) or cli.endpoint)
                                continue
                    self._server_side(span, nid, nkind, endpoints, expires)
                elif kind == client and span.db is None:
                    # The common cases of _client_side: one SERVER span waits for this
                    # client (pair now), or nothing does (file it).
                    sid = span.span_id
                    w = servers.get(sid)
                    if w is None:
                        if sid not in gone:
                            p = _Pending(span, nid, nkind, get_ep(sid), expires, True, src_replay, (sid,))
                            clients[sid] = p
                            fifo_append(p)
                            continue
                    elif type(w) is _Pending:
                        sspan = w.span
                        if sspan.kind == server and sspan.trace_id == span.trace_id and not w.done:
                            del servers[sid]  # _done(w): a SERVER waits under its parent only
                            w.done = w.paired = True
                            paired += 1
                            emit_pair(nid, w.node, nkind, w.kind, span, sspan, w.endpoint or get_ep(sid))
                            continue
                    self._client_side(span, nid, nkind, endpoints, expires)
                elif span.db is not None and (kind == client or kind in _MISKINDS):
                    self._database(span, nid, nkind, endpoints)
                elif kind == consumer:
                    self._server_side(span, nid, nkind, endpoints, expires)
                elif kind == producer:
                    self._client_side(span, nid, nkind, endpoints, expires)
                else:
                    self._miskind(span, nid, nkind, endpoints, expires)
        finally:
            if paired:
                part.counters["paired"] += paired
        if replay:
            self._replay_since_tick = True
        self._enforce_capacity()
        return self._flush(state)

    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        """Expire unpaired spans. Replayed spans expire on the second tick without new
        replayed spans, or once they survived a tick (a recording has no future)."""
        self.attach(state)
        idle = not self._replay_since_tick
        self._replay_since_tick = False
        self._expire_due(self._fifo, now_ns, idle)
        self._expire_due(self._mk_fifo, now_ns, idle)
        return self._flush(state)

    def _expire_due(self, fifo: deque[_Pending], now_ns: int, idle: bool) -> None:
        """Expire the pending spans of one store that are due (see :meth:`tick`)."""
        keep: deque[_Pending] = deque()
        while fifo:
            p = fifo[0]
            if p.done:
                fifo.popleft()
                continue
            if p.replay:
                if idle or p.ticks >= 1:
                    fifo.popleft()
                    self._expire(p)
                    continue
                p.ticks += 1
                keep.append(fifo.popleft())
                continue
            if p.expires_ns <= now_ns:
                fifo.popleft()
                self._expire(p)
                continue
            break
        if keep:
            fifo.extendleft(reversed(keep))

    def flush_all(self, state: State) -> list[Finding]:
        """Resolve every waiting span now (end of an offline analysis)."""
        self.attach(state)
        for fifo in (self._fifo, self._mk_fifo):
            while fifo:
                p = fifo.popleft()
                if not p.done:
                    self._expire(p)
        self._flush(state)
        return []

    def _flush(self, state: State) -> list[Finding]:
        """Count the calls emitted since the last flush into their edges, tell the
        inventory their callers, and publish them.

        Counting waits for the flush (at the end of every process, tick and
        flush_all) so that it goes an edge and an endpoint at a time; nothing reads
        the edges or the callers before it. (If a batch fails half-way, its calls
        are counted and published with the next flush.)
        """
        calls = self._out
        if calls:
            self._out = []
            part = self._part
            assert part is not None
            part.record_many(calls)
            if state.batch.sensitive:
                part.note_sensitive(calls, state.batch.sensitive)
            note = self._note
            if note is not None:
                # the calls that name the endpoint of a server span (every pair does)
                noted = calls if all(map(_SERVER_SPAN, calls)) else [
                    c for c in calls if c.server_span is not None
                ]
                note(list(map(_ENDPOINT, noted)), list(map(_CALLER, noted)))
            state.batch.calls.extend(calls)
        return []

    def _emit(
        self, cnode: str, snode: str, ckind: NodeKind, skind: NodeKind, ctype: str, span: Span,
        cspan: Span | None, sspan: Span | None, ep: Endpoint | None, tls: bool | None,
        auth: tuple[str, ...] | None,
    ) -> None:
        """Publish one call (counted into its edge and its endpoint's callers by :meth:`_flush`)."""
        self._out.append(Call(cnode, snode, ckind, skind, ctype, span, cspan, sspan, ep, tls, auth))

    def _emit_pair(
        self, cnode: str, snode: str, ckind: NodeKind, skind: NodeKind, cspan: Span, sspan: Span,
        ep: Endpoint | None,
    ) -> None:
        """:meth:`_emit` for a client span paired with its server span (the hot path:
        ``_ctype`` and ``_tls``/``_auth`` of both sides inlined for the common case)."""
        http = sspan.http
        if (
            http is not None and skind != _FUNCTION and sspan.db is None
            and sspan.messaging is None and sspan.rpc is None
        ):
            ctype = "http"  # what _ctype says for a plain HTTP server span
        else:
            ctype = self._ctype(cspan, sspan, skind)
        # Evidence of both sides: TLS (True wins, False beats unknown) and the union
        # of the authentication schemes.
        tls = tls_evidence(cspan)
        if tls is not True:
            t2 = tls_evidence(sspan)
            if t2 is not None:
                tls = t2
        auth = auth_evidence(cspan)
        a2 = auth_evidence(sspan)
        if auth is None:
            auth = a2
        elif a2 is not None:
            auth = tuple(sorted(set(auth) | set(a2)))
        self._out.append(Call(cnode, snode, ckind, skind, ctype, sspan, cspan, sspan, ep, tls, auth))

    # ------------------------------------------------------------------ roles
    def _own(self, span: Span) -> tuple[str, NodeKind]:
        """The node of a span's own side (created or touched)."""
        nid, kind = own_node(span.resource)
        part = self._part
        assert part is not None
        ts = span.end_ns
        if part.touch(nid, ts):
            return nid, kind
        if kind == NodeKind.FUNCTION:
            res = span.resource
            part.node(
                nid, kind, ts, name=nid, service=res.service_name,
                cloud_resource_id=res.attributes.get("cloud.resource_id"),
                provider=res.attributes.get("cloud.provider"),
            )
        else:
            part.node(nid, kind, ts)
        return nid, kind

    def _database(self, span: Span, cid: str, ckind: NodeKind, endpoints: dict[str, Any]) -> None:
        sid = db_node(span)
        db = span.db
        part = self._part
        assert db is not None and part is not None
        if not part.touch(sid, span.end_ns):
            part.node(
                sid, _DATABASE, span.end_ns, virtual=True,
                system=db.system, host=db.server_address,
                internal=self.classifier.is_internal(db.server_address) if db.server_address else None,
            )
        part.counters["immediate"] += 1
        self._emit(cid, sid, ckind, _DATABASE, "database", span, span, None,
                   endpoints.get(span.span_id), tls_evidence(span), auth_evidence(span))

    def _client_side(
        self, span: Span, nid: str, kind: NodeKind, endpoints: dict[str, Any], expires: int,
    ) -> _Pending | None:
        """Pair a client (producer, or span of wrong kind) with the servers waiting for
        it, else file it under its own id; the filed :class:`_Pending`, if any."""
        sid = span.span_id
        trace = span.trace_id
        mine: _Pending | None = None
        servers = self._servers
        waiting = servers.get(sid)
        if waiting is not None:
            mine = _Pending(span, nid, kind, endpoints.get(sid), expires, True,
                            span.source == SOURCE_REPLAY, (sid,))
            del servers[sid]
            fanout = span.kind == _PRODUCER
            miskind = span.kind in _MISKINDS
            service = span.resource.service_name
            keep: list[_Pending] = []
            for srv in _as_list(waiting):
                if srv.done:
                    continue
                if srv.trace_of(sid) != trace:  # another trace's span with this id
                    keep.append(srv)
                    continue
                if not fanout and mine.paired:
                    keep.append(srv)
                    continue
                if srv.span.resource.service_name == service:
                    if srv.span.kind in _MISKINDS:
                        self._done(srv)  # a local child: never the server side of a call
                        continue
                    if miskind:
                        continue
                self._pair(mine, srv)
            if keep:
                servers[sid] = keep if len(keep) > 1 else keep[0]
            if mine.paired and not fanout:
                return None
        gone = self._gone.get(sid)
        if gone is not None and gone == trace:
            self._late(sid)
            return None
        if mine is None:
            mine = _Pending(span, nid, kind, endpoints.get(sid), expires, True,
                            span.source == SOURCE_REPLAY, (sid,))
        self._clients[sid] = mine
        (self._mk_fifo if span.kind in _MISKINDS else self._fifo).append(mine)
        return mine

    def _match_client(self, key: str, trace: str, span: Span) -> _Pending | None:
        """The client waiting under ``key`` that ``span`` may pair with, if any."""
        cli = self._clients.get(key)
        if cli is None or cli.done or cli.span.trace_id != trace:
            return None
        if cli.span.resource.service_name == span.resource.service_name and (
            span.kind in _MISKINDS or cli.span.kind in _MISKINDS
        ):
            return None
        return cli

    def _server_side(
        self, span: Span, nid: str, kind: NodeKind, endpoints: dict[str, Any], expires: int,
    ) -> None:
        trace = span.trace_id
        parent = span.parent_span_id
        skind = span.kind
        links = span.links if span.links and skind == _CONSUMER else ()
        if parent and not links and skind == _SERVER:
            # the common case, spelled out: one key, the parent's span id
            cli = self._clients.get(parent)
            if (
                cli is not None and not cli.done and cli.span.trace_id == trace
                and not (cli.span.kind in _MISKINDS
                         and cli.span.resource.service_name == span.resource.service_name)
            ):
                self._pair(cli, _Pending(span, nid, kind, endpoints.get(span.span_id), expires,
                                         False, span.source == SOURCE_REPLAY, (parent,)))
                return
            g = self._gone.get(parent)
            if g is not None and g == trace:
                self._late(parent)
                return
            mine = _Pending(span, nid, kind, endpoints.get(span.span_id), expires, False,
                            span.source == SOURCE_REPLAY, (parent,))
            servers = self._servers
            w = servers.get(parent)
            if w is None:
                servers[parent] = mine
            elif type(w) is list:
                w.append(mine)
            else:
                servers[parent] = [w, mine]  # type: ignore[list-item]
            self._fifo.append(mine)
            return
        keys, traces = _keys(span, links)
        replay = span.source == SOURCE_REPLAY
        ep = endpoints.get(span.span_id)
        for i, k in enumerate(keys):
            cli = self._match_client(k, traces[i] if traces else trace, span)
            if cli is not None:
                self._pair(cli, _Pending(span, nid, kind, ep, expires, False, replay, keys, traces))
                return
        mine = _Pending(span, nid, kind, ep, expires, False, replay, keys, traces)
        if not keys:
            self._resolve_server(mine)
            return
        gone = self._gone
        for i, k in enumerate(keys):
            g = gone.get(k)
            if g is not None and g == (traces[i] if traces else trace):
                self._late(k)
                return
        self._file_server(mine)
        self._fifo.append(mine)

    def _file_server(self, mine: _Pending) -> None:
        """File a server-side span under each of its keys."""
        servers = self._servers
        for k in mine.keys:
            w = servers.get(k)
            if w is None:
                servers[k] = mine
            elif type(w) is list:
                w.append(mine)
            else:
                servers[k] = [w, mine]  # type: ignore[list-item]

    def _miskind(
        self, span: Span, nid: str, kind: NodeKind, endpoints: dict[str, Any], expires: int,
    ) -> None:
        """A span of wrong or missing kind may be the server side of its parent's call
        and the client side of its children's, so it takes both roles: it pairs with a
        parent of another service that is waiting, or waits under its parent's id (and
        its links' ids) when the parent has not arrived; and it pairs with children of
        another service that wait under its own id, or waits there for them. Each role
        pairs only across services, in either arrival order; both wait in the store of
        such spans (``_mk_fifo``, bounded by ``max_unpaired`` like the other)."""
        trace = span.trace_id
        parent = span.parent_span_id
        keys, traces = _keys(span, span.links)
        srole: _Pending | None = None
        if keys:
            replay = span.source == SOURCE_REPLAY
            ep = endpoints.get(span.span_id)
            srole = _Pending(span, nid, kind, ep, expires, False, replay, keys, traces)
            for i, k in enumerate(keys):
                cli = self._match_client(k, traces[i] if traces else trace, span)
                if cli is not None:
                    self._pair(cli, srole)
                    break
            else:
                cli = self._clients.get(parent) if parent else None
                if cli is None or cli.done or cli.span.trace_id != trace:
                    # the parent is not here yet (one that is here is of the same service)
                    self._file_server(srole)
                    self._mk_fifo.append(srole)
        crole = self._client_side(span, nid, kind, endpoints, expires)
        if crole is not None:
            crole.server_role = srole

    # ------------------------------------------------------------------ outcomes
    def _done(self, p: _Pending) -> None:
        p.done = True
        if p.client_side:
            clients = self._clients
            for k in p.keys:
                if clients.get(k) is p:
                    del clients[k]
            return
        servers = self._servers
        for k in p.keys:
            w = servers.get(k)
            if w is None:
                continue
            if w is p:
                del servers[k]
            elif type(w) is list:
                try:
                    w.remove(p)
                except ValueError:
                    pass
                if not w:
                    del servers[k]
                elif len(w) == 1:
                    servers[k] = w[0]

    def _pair(self, cli: _Pending, srv: _Pending) -> None:
        assert self._part is not None
        cspan, sspan = cli.span, srv.span
        if cspan.kind == _PRODUCER:
            cli.paired = True  # keeps waiting for more consumers until it expires
        else:
            self._done(cli)
            cli.paired = True
        if not srv.done:
            self._done(srv)
        srv.paired = True
        self._part.counters["paired"] += 1
        self._emit_pair(cli.node, srv.node, cli.kind, srv.kind, cspan, sspan,
                        srv.endpoint or cli.endpoint)

    @staticmethod
    def _ctype(cspan: Span | None, sspan: Span | None, server_kind: NodeKind) -> str:
        if server_kind == _FUNCTION and sspan is not None and sspan.faas is not None:
            return sspan.faas.trigger or "faas"
        for s in (sspan, cspan):
            if s is not None:
                t = connection_type(s)
                if t:
                    return t
        return "unknown"

    def _late(self, key: str) -> None:
        assert self._part is not None
        self._part.counters["late_after_expiry"] += 1
        self._gone.pop(key, None)

    def _remember_gone(self, p: _Pending) -> None:
        gone = self._gone
        if p.traces:
            for k, trace in zip(p.keys, p.traces, strict=True):
                gone[k] = trace
        else:
            trace = p.span.trace_id
            for k in p.keys:
                gone[k] = trace
        if len(gone) > self.max_unpaired + self._gone_slack:  # drop the oldest, in one go
            for k in list(islice(gone, len(gone) - self.max_unpaired)):
                del gone[k]

    def _expire(self, p: _Pending) -> None:
        assert self._part is not None
        self._done(p)
        if p.paired:
            return
        span = p.span
        if span.kind in _MISKINDS:
            # Counted once per span, by its client role (always filed, and after the
            # server role, so it expires last): dropped when neither role paired.
            srole = p.server_role
            if p.client_side and (srole is None or not srole.paired):
                self._part.counters["expired_dropped"] += 1
            return
        if p.client_side:
            self._part.counters["expired_client"] += 1
            if span.kind != _PRODUCER:
                self._remember_gone(p)
            self._resolve_client(p)
        else:
            self._part.counters["expired_server"] += 1
            self._remember_gone(p)
            self._resolve_server(p)

    def _enforce_capacity(self) -> None:
        for fifo in (self._fifo, self._mk_fifo):
            while fifo and fifo[0].done:
                fifo.popleft()
            while len(fifo) > self.max_unpaired:
                p = fifo.popleft()
                if p.done:
                    continue
                assert self._part is not None
                self._part.counters["evicted"] += 1
                self._expire(p)

    def _resolve_client(self, p: _Pending) -> None:
        """A client or producer whose server never reported: call a virtual node."""
        assert self._part is not None
        span = p.span
        ts = span.end_ns
        part = self._part
        if span.kind == _PRODUCER or (span.messaging is not None and span.http is None):
            sid, skind, ctype = queue_node(span), NodeKind.QUEUE, "messaging"
            m = span.messaging
            if not part.touch(sid, ts):
                part.node(sid, skind, ts, virtual=True, system=m.system if m else "",
                          destination=m.destination if m else "")
        elif span.faas is not None and span.faas.invoked_name:
            f = span.faas
            sid, skind, ctype = f.invoked_name, NodeKind.FUNCTION, "faas"
            if not part.touch(sid, ts):
                part.node(sid, skind, ts, virtual=True, provider=f.invoked_provider,
                          region=f.invoked_region)
        else:
            sid, skind = self._virtual(span)
            ctype = connection_type(span) or "http"
        self._emit(p.node, sid, p.kind, skind, ctype, span, span, None, p.endpoint,
                   tls_evidence(span), auth_evidence(span))

    def _virtual(self, span: Span) -> tuple[str, NodeKind]:
        part = self._part
        assert part is not None
        http = span.http
        attrs = span.attributes
        if http is not None:
            # the view already read peer.service, the network peer and, for a CLIENT
            # span, server.address/net.peer.name: no second look at the attributes
            peer = http.peer_service
            host = http.server_address
            addr = http.network_peer_address
            if not host and span.kind != _CLIENT:
                host = str(attrs.get("server.address") or attrs.get("net.peer.name") or "")
        else:
            peer = str(attrs.get("peer.service") or "")
            host = str(attrs.get("server.address") or attrs.get("net.peer.name") or "")
            addr = str(attrs.get("network.peer.address") or attrs.get("net.peer.ip") or "")
        # the node only depends on the address when there is no host name
        ck = (peer, host, "" if host else addr)
        hit = self._virtual_cache.get(ck)
        if hit is not None and part.touch(hit[0], span.end_ns):
            return hit
        where = host or addr
        internal = self.classifier.is_internal(where) if where else True
        name = peer or host or addr or "unknown"
        if not internal:
            nid, kind = f"ext:{name}", NodeKind.EXTERNAL
        elif peer:
            nid, kind = peer, NodeKind.SERVICE
        else:
            nid, kind = f"int:{name}", NodeKind.SERVICE
        part.node(nid, kind, span.end_ns, virtual=True, internal=internal, name=name,
                  host=host, address=addr)
        if len(self._virtual_cache) >= _CACHE_MAX:
            self._virtual_cache.clear()
        self._virtual_cache[ck] = (nid, kind)
        return nid, kind

    def _resolve_server(self, p: _Pending) -> None:
        """A server or consumer with no client span: call from its caller node."""
        assert self._part is not None
        span = p.span
        part = self._part
        ts = span.end_ns
        trigger = span.faas.trigger if span.faas is not None else ""
        ctype = ""
        if span.kind == _CONSUMER and span.messaging is not None:
            cid, ckind = queue_node(span), NodeKind.QUEUE
            if not part.touch(cid, ts):
                part.node(cid, ckind, ts, virtual=True, system=span.messaging.system,
                          destination=span.messaging.destination)
            ctype = "messaging"
        elif trigger and trigger != "http":
            if trigger == "pubsub" and span.messaging is not None:
                cid, ckind = queue_node(span), NodeKind.QUEUE
            elif trigger == "datasource" and span.db is not None:
                cid, ckind = db_node(span), NodeKind.DATABASE
            else:
                cid, ckind = f"event:{trigger}", NodeKind.INGRESS
            if not part.touch(cid, ts):
                part.node(cid, ckind, ts, virtual=True)
        else:
            cid, ckind = self._caller(span)
        if p.kind == _FUNCTION:
            ctype = trigger or "faas"
        ctype = ctype or connection_type(span) or "http"
        if not p.keys:
            part.counters["immediate"] += 1
        self._emit(cid, p.node, ckind, p.kind, ctype, span, None, span, p.endpoint,
                   tls_evidence(span), auth_evidence(span))

    def _caller(self, span: Span) -> tuple[str, NodeKind]:
        part = self._part
        assert part is not None
        http = span.http
        addr = ""
        if http is not None:
            addr = http.client_address or http.network_peer_address
        net = client_network(addr) if addr else None
        ckey = net or ""
        hit = self._caller_cache.get(ckey)
        if hit is not None and part.touch(hit[0], span.end_ns):
            return hit
        if net is None:
            part.node("ingress", NodeKind.INGRESS, span.end_ns, virtual=True)
            out = ("ingress", NodeKind.INGRESS)
        else:
            if net not in self._client_nets:
                if len(self._client_nets) >= self.max_client_nodes:
                    net = "other"
                else:
                    self._client_nets.add(net)
            nid = f"client:{net}"
            internal = self.classifier.is_internal(net.partition("/")[0]) if net != "other" else None
            part.node(nid, NodeKind.CLIENT, span.end_ns, virtual=True, internal=internal, name=net)
            out = (nid, NodeKind.CLIENT)
        if len(self._caller_cache) >= _CACHE_MAX:
            self._caller_cache.clear()
        self._caller_cache[ckey] = out
        return out
