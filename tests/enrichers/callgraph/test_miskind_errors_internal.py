"""Wrong-kind spans in either arrival order, errors seen by either side, and internal
domains/CIDRs that add to the defaults."""

from __future__ import annotations

import pytest

from agent.config import Config
from agent.model import SpanKind, StatusCode
from enrichers.callgraph import CallGraphEnricher
from tests.enrichers.callgraph.spans import http_client, http_server, new_id, span
from tests.enrichers.callgraph.test_callgraph import Harness

GET_Z = {"http.request.method": "GET", "url.path": "/z", "http.route": "/z",
         "http.response.status_code": 200}


def _edges(h: Harness) -> set[tuple[str, str]]:
    return {(e["client"], e["server"]) for e in h.report["edges"]}


@pytest.mark.parametrize("child_first", [False, True])
def test_client_with_wrong_kind_child_of_another_service(child_first: bool) -> None:
    h = Harness()
    trace = new_id() * 2
    parent = http_client("svc-x", "GET", "http://svc-y/z", trace=trace,
                         attrs={"server.address": "svc-y"})
    child = span("svc-y", SpanKind.INTERNAL, trace=trace, parent=parent.span_id, attrs=GET_Z)
    for s in ((child, parent) if child_first else (parent, child)):
        h.feed(s)
    h.expire()
    assert _edges(h) == {("svc-x", "svc-y")}
    assert h.report["pairing"]["paired"] == 1


@pytest.mark.parametrize("kind", [SpanKind.INTERNAL, SpanKind.UNSPECIFIED])
@pytest.mark.parametrize("child_first", [False, True])
@pytest.mark.parametrize("attrs", [True, False], ids=["http", "plain"])
def test_two_wrong_kind_spans_of_different_services(kind: SpanKind, child_first: bool,
                                                    attrs: bool) -> None:
    h = Harness()
    trace = new_id() * 2
    parent = span("mk-c", kind, trace=trace,
                  attrs={"http.request.method": "GET", "url.full": "http://mk-d/z"} if attrs else {})
    child = span("mk-d", kind, trace=trace, parent=parent.span_id, attrs=GET_Z if attrs else {})
    for s in ((child, parent) if child_first else (parent, child)):
        h.feed(s)
    h.expire()
    assert _edges(h) == {("mk-c", "mk-d")}
    assert h.report["pairing"]["expired_dropped"] == 0


def test_wrong_kind_spans_of_one_service_make_no_edge_and_are_counted_once() -> None:
    h = Harness()
    trace = new_id() * 2
    root = span("a", SpanKind.INTERNAL, trace=trace)
    kid = span("a", SpanKind.INTERNAL, trace=trace, parent=root.span_id)
    grandkid = span("a", SpanKind.UNSPECIFIED, trace=trace, parent=kid.span_id)
    h.feed(grandkid, kid)
    h.feed(root)
    assert h.expire() == []
    assert h.report["edges"] == []
    assert h.report["pairing"]["expired_dropped"] == 3
    assert h.cg.pending == 0


def test_wrong_kind_chain_across_three_services() -> None:
    h = Harness()
    trace = new_id() * 2
    a = http_client("a", "GET", "http://b/x", trace=trace)
    b = span("b", SpanKind.INTERNAL, trace=trace, parent=a.span_id)
    c = span("c", SpanKind.UNSPECIFIED, trace=trace, parent=b.span_id)
    h.feed(c)
    h.feed(b)
    h.feed(a)
    h.expire()
    assert _edges(h) == {("a", "b"), ("b", "c")}


def test_local_child_of_a_client_is_not_its_server() -> None:
    h = Harness()
    trace = new_id() * 2
    c = http_client("web", "GET", "https://api.example/x", trace=trace)
    local = span("web", SpanKind.INTERNAL, trace=trace, parent=c.span_id, name="dns")
    h.feed(local)
    h.feed(c)
    h.expire()
    assert _edges(h) == {("web", "ext:api.example")}


def test_wrong_kind_store_is_bounded_and_separate() -> None:
    h = Harness(max_unpaired=50)
    lone = http_client("a", "GET", "https://x.example/p")
    h.feed(lone)
    trace = new_id() * 2
    for _ in range(200):
        h.feed(span("a", SpanKind.INTERNAL, trace=trace, parent=new_id()))
    assert len(h.cg._mk_fifo) <= 50
    # the CLIENT span waits in its own store: not pushed out by the INTERNAL ones
    assert lone.span_id in h.cg._clients
    h.expire()
    assert _edges(h) == {("a", "ext:x.example")}


@pytest.mark.parametrize("side", ["client_status", "client_5xx", "server_5xx", "server_grpc"])
def test_error_on_either_side_counts(side: str) -> None:
    h = Harness()
    trace = new_id() * 2
    url = {"http.request.method": "GET", "url.full": "http://users/u"}
    if side == "client_status":
        c = span("web", SpanKind.CLIENT, trace=trace, status=StatusCode.ERROR,
                 attrs={**url, "http.response.status_code": 200})
    else:
        c = http_client("web", "GET", "http://users/u", trace=trace,
                        status=502 if side == "client_5xx" else 200)
    attrs = {"rpc.system": "grpc", "rpc.grpc.status_code": 14} if side == "server_grpc" else {}
    s = http_server("users", "GET", "/u", route="/u", trace=trace, parent=c.span_id,
                    status=500 if side == "server_5xx" else 200, attrs=attrs)
    h.feed(c, s)
    e = h.report["edges"][0]
    assert (e["calls"], e["errors"]) == (1, 1)
    ok = new_id() * 2
    c2 = http_client("web", "GET", "http://users/u", trace=ok)
    h.feed(c2, http_server("users", "GET", "/u", route="/u", trace=ok, parent=c2.span_id,
                           attrs={"rpc.system": "grpc", "rpc.grpc.status_code": 0} if attrs else {}))
    e = h.report["edges"][0]
    assert (e["calls"], e["errors"]) == (2, 1)


def _virtual(cfg: Config, url: str) -> str:
    h = Harness()
    h.cg = CallGraphEnricher(cfg, clock=h.clock)
    h.feed(http_client("a", "GET", url))
    (call,) = h.expire()
    return call.server


def test_configured_internal_domains_and_cidrs_add_to_the_defaults() -> None:
    cfg = Config(internal_domains=[".mycorp.example"], internal_cidrs=["203.0.113.0/24"])
    assert _virtual(cfg, "http://billing.mycorp.example/x") == "int:billing.mycorp.example"
    assert _virtual(cfg, "http://pg.db.svc.cluster.local/x") == "int:pg.db.svc.cluster.local"
    assert _virtual(cfg, "http://192.168.1.5/x") == "int:192.168.1.5"
    assert _virtual(cfg, "http://203.0.113.9/x") == "int:203.0.113.9"
    assert _virtual(cfg, "https://api.stripe.com/x") == "ext:api.stripe.com"
    # a configured range inside a default one narrows it
    loop = Config(internal_cidrs=["127.0.0.1/32"])
    assert _virtual(loop, "http://127.0.0.1:8080/x") == "int:127.0.0.1"
    assert _virtual(loop, "http://127.0.0.2:8080/x") == "ext:127.0.0.2"
    assert _virtual(loop, "http://10.1.2.3/x") == "int:10.1.2.3"
