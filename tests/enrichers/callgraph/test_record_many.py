"""Counting a batch of calls at once gives what counting them one at a time gives."""

from __future__ import annotations

from agent.model import Call, Endpoint, NodeKind
from enrichers.callgraph.enricher import MAX_EDGE_ENDPOINTS, CallGraphPart
from enrichers.inventory.enricher import MAX_CALLERS, InventoryPart
from tests.enrichers.callgraph.spans import T0, http_client, http_server


def _calls() -> list[Call]:
    """Calls over interleaved edges, errors, zero durations, auth and TLS mixes, and
    more endpoints than an edge keeps."""
    eps = [Endpoint("api", "GET", f"/r{i}") for i in range(MAX_EDGE_ENDPOINTS + 20)]
    out: list[Call] = []
    for i in range(3 * MAX_EDGE_ENDPOINTS):
        caller = f"c{i % 3}"
        srv = http_server("api", "GET", "/x", status=500 if i % 7 == 0 else 200,
                          start=T0 + (i % 11) * 1000, ms=0.0 if i % 13 == 0 else 1.0 + i % 5)
        cli = http_client(caller, "GET", "http://api/x", start=T0 + i, ms=2.0 + i % 3)
        tls = (True, False, None)[i % 3]
        auth = (None, (), ("bearer",), ("basic", "bearer"))[i % 4]
        ep = eps[(i * 7) % len(eps)] if i % 5 else None
        out.append(Call(caller, "api", NodeKind.SERVICE, NodeKind.SERVICE, "http", srv,
                        cli if i % 9 else None, srv, ep, tls, auth))
    return out


def test_record_many_matches_one_at_a_time() -> None:
    calls = _calls()
    one = CallGraphPart(max_edges=2)  # the third edge is dropped
    for c in calls:
        one.record(c)
    many = CallGraphPart(max_edges=2)
    many.record_many(calls[:100])
    many.record_many(calls[100:])
    assert one.dropped_edges == many.dropped_edges > 0
    assert one.snapshot() == many.snapshot()
    assert [list(e.endpoints) for e in one.edges()] == [list(e.endpoints) for e in many.edges()]
    assert [list(e.auth) for e in one.edges()] == [list(e.auth) for e in many.edges()]


def test_record_callers_matches_one_at_a_time() -> None:
    one, many = InventoryPart(), InventoryPart()
    eps = []
    for part in (one, many):
        for i in range(3):
            span = http_server("api", "GET", f"/r{i}", route=f"/r{i}")
            rec = part.record_for(span)
            assert rec is not None
            if part is one:
                eps.append(rec.endpoint)
    # equal endpoints as other objects count into the same record; None is no endpoint
    seq = [eps[i % 3] if i % 4 else Endpoint("api", "GET", f"/r{i % 3}") for i in range(400)]
    seq[5] = None
    callers = [f"w{(i * 7) % (MAX_CALLERS + 15)}" for i in range(400)]
    for ep, who in zip(seq, callers, strict=True):
        if ep is not None:
            one.record_caller(ep, who)
    many.record_callers(seq, callers)
    for key, rec in one.records.items():
        assert list(rec.callers.items()) == list(many.records[key].callers.items())
        assert len(rec.callers) <= MAX_CALLERS
