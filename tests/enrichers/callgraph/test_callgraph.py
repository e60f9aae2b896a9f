"""The call-graph enricher on spans built with make_span."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agent.config import Config
from agent.model import Call, NodeKind, SpanKind, SpanLink
from agent.state import State
from enrichers.callgraph import CallGraphEnricher
from enrichers.inventory import InventoryEnricher
from tests.enrichers.callgraph.spans import http_client, http_server, new_id, span

TTL = 10 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * 10**9

    def __call__(self) -> int:
        return self.now


class Harness:
    """Inventory + call graph on one State, collecting every published Call."""

    def __init__(self, **graph: Any) -> None:
        cfg = Config(sections={"graph": graph} if graph else {})
        self.clock = Clock()
        self.inv = InventoryEnricher(cfg)
        self.cg = CallGraphEnricher(cfg, clock=self.clock)
        self.state = State()
        self.calls: list[Call] = []

    def feed(self, *spans: Any) -> list[Call]:
        st = self.state
        st.batch.clear()
        self.inv.process(list(spans), st)
        self.cg.process(list(spans), st)
        got = list(st.batch.calls)
        self.calls += got
        return got

    def expire(self, seconds: float = 11) -> list[Call]:
        self.clock.now += int(seconds * 1e9)
        st = self.state
        st.batch.clear()
        self.cg.tick(self.clock.now, st)
        got = list(st.batch.calls)
        self.calls += got
        return got

    @property
    def report(self) -> dict[str, Any]:
        return self.state.parts["callgraph"].report()

    def edge(self, client: str, server: str) -> dict[str, Any]:
        for e in self.report["edges"]:
            if (e["client"], e["server"]) == (client, server):
                return e
        raise AssertionError(f"no edge {client}->{server}: {self.report['edges']}")

    def node(self, nid: str) -> dict[str, Any]:
        for n in self.report["nodes"]:
            if n["id"] == nid:
                return n
        raise AssertionError(f"no node {nid}: {[n['id'] for n in self.report['nodes']]}")


def pair(caller: str = "web", callee: str = "users", **kw: Any) -> tuple[Any, Any]:
    trace = new_id() * 2
    c = http_client(caller, "GET", "http://users:8080/users/7", trace=trace, **kw)
    s = http_server(callee, "GET", "/users/7", route="/users/<int:id>", trace=trace, parent=c.span_id)
    return c, s


def test_client_server_pair_in_one_batch() -> None:
    h = Harness()
    c, s = pair(attrs={"http.request.header.authorization": "Bearer x"})
    calls = h.feed(c, s)
    assert len(calls) == 1
    call = calls[0]
    assert (call.client, call.server, call.connection_type) == ("web", "users", "http")
    assert call.client_span is c and call.server_span is s and call.span is s
    assert call.endpoint is not None and call.endpoint.route == "/users/{id}"
    assert call.auth == ("bearer",) and call.tls is False
    e = h.edge("web", "users")
    assert e["calls"] == 1 and e["endpoints"] == ["GET /users/{id}"] and e["p50_ms"] is not None
    assert h.node("users")["kind"] == "service"
    inv = h.state.parts["inventory"].endpoint("users", "GET", "/users/{id}")
    assert inv["callers"] == [{"client": "web", "calls": 1}]


def test_pair_across_batches_either_order() -> None:
    h = Harness()
    c, s = pair()
    assert h.feed(s) == []
    assert len(h.feed(c)) == 1
    c2, s2 = pair()
    assert h.feed(c2) == []
    assert len(h.feed(s2)) == 1
    assert h.expire() == []  # nothing left to expire
    assert h.edge("web", "users")["calls"] == 2
    assert h.report["pairing"]["paired"] == 2


def test_database_node_at_once() -> None:
    h = Harness()
    d = span("inventory", SpanKind.CLIENT, attrs={"db.system": "sqlite", "db.name": "inventory",
                                                   "db.statement": "SELECT 1"})
    calls = h.feed(d)
    assert [(c.client, c.server, c.connection_type) for c in calls] == [
        ("inventory", "db:sqlite/inventory", "database")]
    assert h.node("db:sqlite/inventory")["kind"] == "database"


def test_unpaired_client_becomes_external_or_internal_virtual_node() -> None:
    h = Harness()
    ext = http_client("checkout", "POST", "https://api.cardprocessor.example/v1/charges")
    peer = http_client("checkout", "GET", "http://10.1.2.3:8080/rates",
                       attrs={"peer.service": "legacy-rates"})
    host = http_client("checkout", "GET", "http://ledger.payments.svc.cluster.local/x")
    ip = http_client("checkout", "GET", "http://192.168.4.5/y")
    assert h.feed(ext, peer, host, ip) == []
    calls = h.expire()
    got = {(c.client, c.server, c.server_kind) for c in calls}
    assert got == {
        ("checkout", "ext:api.cardprocessor.example", NodeKind.EXTERNAL),
        ("checkout", "legacy-rates", NodeKind.SERVICE),
        ("checkout", "int:ledger.payments.svc.cluster.local", NodeKind.SERVICE),
        ("checkout", "int:192.168.4.5", NodeKind.SERVICE),
    }
    ext_call = [c for c in calls if c.server.startswith("ext:")][0]
    assert ext_call.tls is True and ext_call.endpoint is not None
    assert ext_call.endpoint.route == "/v1/charges"
    n = h.node("ext:api.cardprocessor.example")
    assert n["kind"] == "external" and n["internal"] is False and n["virtual"] is True
    assert h.node("legacy-rates")["internal"] is True
    assert h.report["pairing"]["expired_client"] == 4


def test_internal_domains_and_cidrs_are_configurable() -> None:
    # graph.internal_defaults: false -> the configured lists replace the defaults
    cfg = Config(internal_domains=[".corp.example"], internal_cidrs=["203.0.113.0/24"],
                 sections={"graph": {"internal_defaults": False}})
    h = Harness()
    h.cg = CallGraphEnricher(cfg, clock=h.clock)
    h.feed(http_client("a", "GET", "https://billing.corp.example/x"),
           http_client("a", "GET", "http://203.0.113.9/y"),
           http_client("a", "GET", "http://10.0.0.1/z"))
    servers = {c.server for c in h.expire()}
    assert servers == {"int:billing.corp.example", "int:203.0.113.9", "ext:10.0.0.1"}


def test_server_without_client_comes_from_caller_node() -> None:
    h = Harness()
    root = http_server("users", "GET", "/users/1", route="/users/:id",
                       attrs={"client.address": "203.0.113.77"})
    bare = http_server("users", "GET", "/users/2", route="/users/:id")
    calls = h.feed(root, bare)
    assert {(c.client, c.client_kind) for c in calls} == {
        ("client:203.0.113.0/24", NodeKind.CLIENT), ("ingress", NodeKind.INGRESS)}
    assert h.node("client:203.0.113.0/24")["internal"] is False


def test_orphan_server_expires_once_and_late_client_is_not_double_counted() -> None:
    h = Harness()
    c, s = pair()
    assert h.feed(s) == []
    expired = h.expire()
    assert [(x.client, x.server) for x in expired] == [("ingress", "users")]
    assert h.feed(c) == []  # late partner: counted, not published again
    assert h.expire() == []
    assert h.report["pairing"]["late_after_expiry"] == 1
    assert len(h.calls) == 1


def test_every_span_in_at_most_one_call() -> None:
    h = Harness()
    spans = []
    for i in range(50):
        c, s = pair()
        spans += [c, s] if i % 3 else [s]  # a third of the servers lose their client
        if i % 5 == 0:
            spans.append(http_client("web", "GET", "https://ext.example/x"))
    for i in range(0, len(spans), 7):
        h.feed(*spans[i:i + 7])
    h.expire()
    used = Counter()
    for call in h.calls:
        for sp in {id(call.client_span), id(call.server_span)} - {id(None)}:
            used[sp] += 1
    assert max(used.values()) == 1
    assert len(h.calls) == 50 + 10


def test_producer_consumer_by_parent_and_by_link() -> None:
    h = Harness()
    trace = new_id() * 2
    msg = {"messaging.system": "kafka", "messaging.destination.name": "orders"}
    prod = span("shop", SpanKind.PRODUCER, trace=trace, attrs=msg)
    cons1 = span("billing", SpanKind.CONSUMER, trace=trace, parent=prod.span_id, attrs=msg)
    cons2 = span("mailer", SpanKind.CONSUMER, trace=new_id() * 2, attrs=msg,
                 links=(SpanLink(trace, prod.span_id),))
    got = h.feed(prod, cons1) + h.feed(cons2)
    assert {(c.client, c.server, c.connection_type) for c in got} == {
        ("shop", "billing", "messaging"), ("shop", "mailer", "messaging")}
    assert h.expire() == []  # a paired producer is not published again
    lone = span("shop", SpanKind.PRODUCER, attrs=msg)
    h.feed(lone)
    assert [(c.client, c.server) for c in h.expire()] == [("shop", "queue:kafka/orders")]
    assert h.node("queue:kafka/orders")["kind"] == "queue"


def test_faas_function_nodes_and_triggers() -> None:
    h = Harness()
    fn = {"faas.name": "resize-image", "cloud.resource_id": "arn:aws:lambda:eu-west-1:1:function:resize-image",
          "cloud.provider": "aws"}
    trace = new_id() * 2
    inv = http_client("web", "POST", "https://lambda.eu-west-1.amazonaws.com/invoke", trace=trace,
                      attrs={"faas.invoked_name": "resize-image", "faas.invoked_provider": "aws"})
    run = span("resize-fn", SpanKind.SERVER, trace=trace, parent=inv.span_id, res=fn,
               attrs={"faas.trigger": "http"})
    timer = span("resize-fn", SpanKind.SERVER, res=fn, attrs={"faas.trigger": "timer"})
    event = span("resize-fn", SpanKind.CONSUMER, res=fn, attrs={
        "faas.trigger": "pubsub", "messaging.system": "aws_sqs", "messaging.destination.name": "images"})
    calls = h.feed(inv, run, timer, event)
    assert {(c.client, c.server, c.connection_type) for c in calls} == {
        ("web", "resize-image", "http"),
        ("event:timer", "resize-image", "timer"),
        ("queue:aws_sqs/images", "resize-image", "pubsub"),
    }
    node = h.node("resize-image")
    assert node["kind"] == "function"
    assert node["attributes"]["cloud_resource_id"].startswith("arn:aws:lambda")
    # an invocation whose function never reports: a virtual function node
    h.feed(http_client("web", "POST", "https://lambda.example/invoke",
                       attrs={"faas.invoked_name": "thumbnail"}))
    assert [(c.server, c.server_kind, c.connection_type) for c in h.expire()] == [
        ("thumbnail", NodeKind.FUNCTION, "faas")]


def test_wrong_kind_still_makes_an_edge_across_services() -> None:
    h = Harness()
    trace = new_id() * 2
    c = http_client("web", "GET", "http://users/u/1", trace=trace)
    child = span("users", SpanKind.INTERNAL, trace=trace, parent=c.span_id, name="handle")
    same = span("web", SpanKind.INTERNAL, trace=trace, parent=c.span_id, name="local")
    calls = h.feed(c, child, same)
    assert [(x.client, x.server) for x in calls] == [("web", "users")]
    # and an INTERNAL parent with a SERVER child of another service
    t2 = new_id() * 2
    p = span("cron", SpanKind.UNSPECIFIED, trace=t2, attrs={"url.full": "http://users/x",
                                                          "http.request.method": "GET"})
    s = http_server("users", "GET", "/x", route="/x", trace=t2, parent=p.span_id)
    assert [(x.client, x.server) for x in h.feed(s, p)] == [("cron", "users")]


def test_tls_and_auth_combine_both_sides() -> None:
    h = Harness()
    trace = new_id() * 2
    c = http_client("web", "GET", "https://users/u", trace=trace,
                    attrs={"http.request.header.x-api-key": "k"})
    s = http_server("users", "GET", "/u", route="/u", trace=trace, parent=c.span_id,
                    attrs={"url.scheme": "http", "enduser.id": "alice"})
    (call,) = h.feed(c, s)
    assert call.tls is True
    assert call.auth == ("apikey", "enduser")
    e = h.edge("web", "users")
    assert e["tls"] is True and e["auth"] == ["apikey", "enduser"]


def test_unpaired_store_is_bounded() -> None:
    h = Harness(max_unpaired=100)
    for _ in range(300):
        h.feed(http_client("a", "GET", "https://x.example/p"))
    assert h.cg.pending <= 100
    assert h.report["pairing"]["evicted"] == 200
    h.expire()
    assert h.edge("a", "ext:x.example")["calls"] == 300


def test_replayed_spans_resolve_on_an_idle_tick() -> None:
    h = Harness()
    lone = http_client("a", "GET", "https://x.example/p", source="replay")
    h.feed(lone)
    st = h.state
    st.batch.clear()
    h.cg.tick(h.clock.now, st)  # replay spans arrived since the last tick: wait one more
    assert st.batch.calls == []
    h.cg.tick(h.clock.now, st)  # idle: a recording has no future spans
    assert [(c.client, c.server) for c in st.batch.calls] == [("a", "ext:x.example")]


def test_snapshot_restore() -> None:
    import orjson

    h = Harness()
    c, s = pair()
    h.feed(c, s)
    data = orjson.loads(orjson.dumps(h.state.parts["callgraph"].snapshot()))
    h2 = Harness()
    h2.cg.attach(h2.state).restore(data)
    assert h2.report["edges"] == h.report["edges"]
    assert h2.report["nodes"] == h.report["nodes"]


def test_snapshot_reencodes_only_changed_edges_and_stays_current() -> None:
    """Snapshots reuse the encoding of edges with no new calls; a new call shows at once."""
    h = Harness()
    h.feed(*pair())
    part = h.state.parts["callgraph"]
    first = part.snapshot()["edges"]
    assert part.snapshot()["edges"] == first
    [before] = first
    h.feed(*pair())  # a second call over the same edge
    [after] = part.snapshot()["edges"]
    assert after["n"] == before["n"] + 1 == 2
    h2 = Harness()
    h2.cg.attach(h2.state).restore(part.snapshot())
    assert h2.report["edges"] == h.report["edges"]


def test_span_ids_shared_by_two_traces_never_pair_across_them() -> None:
    """Pairing is keyed by span id; the trace id is checked, so a colliding span id
    of another trace is neither a partner nor a late arrival."""
    h = Harness()
    t1, t2 = new_id() * 2, new_id() * 2
    sid = new_id()
    c1 = http_client("web", "GET", "http://users:8080/users/7", trace=t1, span_id=sid)
    s2 = http_server("users", "GET", "/users/7", route="/users/<int:id>", trace=t2, parent=sid)
    assert h.feed(c1, s2) == []
    c2 = http_client("api", "GET", "http://users:8080/users/7", trace=t2, span_id=sid)
    [call] = h.feed(c2)
    assert (call.client, call.server) == ("api", "users") and call.server_span is s2
    expired = h.expire()
    assert [(c.client, c.server) for c in expired] == [("web", "int:users")]  # c1, unpaired
    assert h.report["pairing"]["late_after_expiry"] == 0
