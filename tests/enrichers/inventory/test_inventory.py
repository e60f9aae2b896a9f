"""The inventory enricher on spans built with make_span: endpoints, stats, findings,
lifecycle, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from agent.config import Config
from agent.model import Endpoint, SpanKind
from agent.state import State
from enrichers.inventory import InventoryEnricher
from tests.enrichers.callgraph.spans import T0, http_client, http_server, span

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "users", "version": "1"},
    "paths": {
        "/users/{userId}": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/users/{userId}/legacy": {
            "get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}
        },
        "/users/{userId}/unused": {"post": {"responses": {"200": {"description": "ok"}}}},
    },
}


def make(tmp_path: Path, specs: dict[str, Any] | None = None, **inv: Any) -> tuple[InventoryEnricher, State]:
    paths = {}
    for svc, doc in (specs or {}).items():
        p = tmp_path / f"{svc}.yaml"
        p.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
        paths[svc] = str(p)
    cfg = Config(state_dir=tmp_path, specs=paths, sections={"inventory": inv} if inv else {})
    return InventoryEnricher(cfg), State()


def run(enr: InventoryEnricher, state: State, spans: list[Any]) -> list[Any]:
    state.batch.clear()
    out = list(enr.process(spans, state))
    out += list(enr.tick(0, state))
    return out


def row(state: State, service: str, method: str, route: str) -> dict[str, Any]:
    for r in state.parts["inventory"].report():
        if (r["service"], r["method"], r["route"]) == (service, method, route):
            return r
    raise AssertionError(f"no {service} {method} {route} in {state.parts['inventory'].report()}")


def test_endpoints_published_for_server_and_client_spans(tmp_path: Path) -> None:
    enr, state = make(tmp_path)
    s1 = http_server("users", "GET", "/users/12", route="/users/<int:user_id>")
    s2 = http_server("users", "GET", "/users/13/orders?limit=5&offset=0")
    c1 = http_client("web", "POST", "https://api.cardprocessor.example/v1/charges/ch_123")
    run(enr, state, [s1, s2, c1])
    eps = state.batch.endpoints
    assert eps[s1.span_id].route == "/users/{user_id}"
    assert eps[s2.span_id].route == "/users/{id}/orders"
    assert eps[c1.span_id].service == "api.cardprocessor.example"
    assert eps[c1.span_id].route == "/v1/charges/ch_123"
    services = {r["service"] for r in state.parts["inventory"].report()}
    assert services == {"users"}  # client-side endpoints are not in the inventory
    assert row(state, "users", "GET", "/users/{id}/orders")["query_params"] == ["limit", "offset"]


def test_stats_per_endpoint(tmp_path: Path) -> None:
    enr, state = make(tmp_path)
    spans = [
        http_server("users", "GET", f"/users/{i}", route="/users/:id", status=500 if i == 0 else 200,
                    ms=float(i + 1), start=T0 + i,
                    attrs={"http.request.header.authorization": "Bearer abc",
                           "http.response.header.content-type": "application/json; charset=utf-8"})
        for i in range(100)
    ]
    run(enr, state, spans)
    r = row(state, "users", "GET", "/users/{id}")
    assert r["calls"] == 100 and r["errors"] == 1
    assert r["status_codes"] == {"200": 99, "500": 1}
    assert 45 <= r["p50_ms"] <= 55 and 90 <= r["p95_ms"] <= 100
    assert r["auth"] == ["bearer"]
    assert r["response_content_types"] == ["application/json"]
    assert r["first_seen"] and r["last_seen"]
    assert r["sensitive_types"] == []
    detail = state.parts["inventory"].endpoint("users", "GET", "/users/{id}")
    assert detail is not None and detail["trace_ids"]


def test_sensitive_types_come_from_the_sensitive_part(tmp_path: Path) -> None:
    class Sensitive:
        # the shape of SensitiveFacts.types_for: {type: [directions]}
        def types_for(self, service: str, method: str, route: str) -> dict[str, list[str]]:
            return {"EMAIL_ADDRESS": ["response"]} if route == "/users/{id}" else {}

    enr, state = make(tmp_path)
    state.parts["sensitive"] = Sensitive()
    run(enr, state, [http_server("users", "GET", "/users/1", route="/users/:id")])
    r = row(state, "users", "GET", "/users/{id}")
    assert r["sensitive_types"] == ["EMAIL_ADDRESS"] and r["sensitive"] == {"EMAIL_ADDRESS": ["response"]}


def test_shadow_zombie_unused_and_undocumented(tmp_path: Path) -> None:
    enr, state = make(tmp_path, {"users": SPEC})
    spans = [
        http_server("users", "GET", "/users/1", route="/users/<user_id>"),
        http_server("users", "GET", "/users/1/legacy", route="/users/<user_id>/legacy", trace="01" * 16),
        http_server("users", "GET", "/internal/debug", route="/internal/debug", trace="02" * 16),
        http_server("users", "GET", "/nothing/here", status=404),
        http_server("orders", "GET", "/orders/1", route="/orders/:id"),
    ]
    findings = run(enr, state, spans)
    by_rule: dict[str, list[Any]] = {}
    for f in findings:
        by_rule.setdefault(f.rule, []).append(f)
    shadow = by_rule["shadow_endpoint"]
    assert [(f.subject.method, f.subject.route) for f in shadow] == [("GET", "/internal/debug")]
    assert shadow[0].owasp == "API9:2023" and shadow[0].trace_ids == ("02" * 16,)
    zombie = by_rule["zombie_endpoint"]
    assert zombie[0].subject.route == "/users/{user_id}/legacy"
    assert [f.subject.service for f in by_rule["undocumented_service"]] == ["orders"]
    assert by_rule["undocumented_service"][0].severity.label == "info"
    assert row(state, "users", "GET", "/users/{user_id}")["lifecycle"] == "new"
    assert row(state, "users", "GET", "/users/{user_id}/legacy")["lifecycle"] == "zombie"
    assert row(state, "users", "GET", "/internal/debug")["lifecycle"] == "shadow"
    assert row(state, "users", "GET", "/{param}/{param2}")["lifecycle"] == "new"  # 404: not served
    unused = row(state, "users", "POST", "/users/{userId}/unused")
    assert unused["lifecycle"] == "unused" and unused["calls"] == 0
    # callers reported by the call graph appear in the next zombie finding
    part = state.parts["inventory"]
    ep = state.batch.endpoints[spans[1].span_id]
    part.record_caller(ep, "web")
    again = run(enr, state, [http_server("users", "GET", "/users/2/legacy", route="/users/<user_id>/legacy")])
    z = [f for f in again if f.rule == "zombie_endpoint"][0]
    assert z.evidence["callers"] == ["web"] and "web" in z.explanation


def test_bad_spec_is_reported_and_ignored(tmp_path: Path, caplog: Any) -> None:
    enr, state = make(tmp_path, {"users": "openapi: 3.0.0\npaths: [oops\n"})
    assert len(enr.spec_errors) == 1
    assert "users.yaml" in enr.spec_errors[0] and "YAML" in enr.spec_errors[0]
    assert "users.yaml" in caplog.text
    findings = run(enr, state, [http_server("users", "GET", "/a", route="/a")])
    assert [f.rule for f in findings] == ["undocumented_service"]
    assert state.parts["inventory"].spec_errors == enr.spec_errors


def test_collapse_merges_earlier_literal_endpoints(tmp_path: Path) -> None:
    enr, state = make(tmp_path, max_distinct_per_segment=3)
    names = ["anna", "ben", "cleo", "dora", "emil"]
    for n in names:
        run(enr, state, [http_server("files", "GET", f"/share/{n}/list")])
    report = state.parts["inventory"].report()
    assert [(r["route"], r["calls"]) for r in report] == [("/share/{param}/list", 5)]


def test_lifecycle_dormant_and_revived(tmp_path: Path) -> None:
    enr, state = make(tmp_path, dormant_after_seconds=60, new_for_seconds=10)
    run(enr, state, [http_server("a", "GET", "/x", route="/x", start=T0)])
    run(enr, state, [http_server("a", "GET", "/y", route="/y", start=T0 + 30 * 10**9)])
    run(enr, state, [http_server("a", "GET", "/z", route="/z", start=T0 + 200 * 10**9)])
    assert row(state, "a", "GET", "/x")["lifecycle"] == "dormant"
    assert row(state, "a", "GET", "/z")["lifecycle"] == "new"
    run(enr, state, [http_server("a", "GET", "/x", route="/x", start=T0 + 201 * 10**9)])
    assert row(state, "a", "GET", "/x")["lifecycle"] == "revived"
    run(enr, state, [http_server("a", "GET", "/w", route="/w", start=T0 + 230 * 10**9)])
    assert row(state, "a", "GET", "/z")["lifecycle"] == "active"


def test_grpc_endpoint(tmp_path: Path) -> None:
    enr, state = make(tmp_path)
    s = span("greeter", SpanKind.SERVER, attrs={"rpc.system": "grpc", "rpc.service": "hello.Greeter",
                                                "rpc.method": "SayHello", "rpc.grpc.status_code": 0})
    findings = run(enr, state, [s])
    r = row(state, "greeter", "POST", "/hello.Greeter/SayHello")
    assert r["protocol"] == "grpc" and r["status_codes"] == {"0": 1}
    assert findings == []  # no OpenAPI expected of a gRPC service


def test_snapshot_restore(tmp_path: Path) -> None:
    enr, state = make(tmp_path, {"users": SPEC})
    run(enr, state, [http_server("users", "GET", f"/users/{i}", route="/users/:id") for i in range(5)])
    snap = state.parts["inventory"].snapshot()
    import orjson

    data = orjson.loads(orjson.dumps(snap))
    enr2, state2 = make(tmp_path, {"users": SPEC})
    part2 = enr2.attach(state2)
    part2.restore(data)
    r = row(state2, "users", "GET", "/users/{id}")
    assert r["calls"] == 5 and r["documented"] is True and r["p50_ms"] is not None


def test_endpoint_detail_for_the_tui(tmp_path: Path) -> None:
    """Callers with counts, status codes and short per-minute series (data time)."""
    enr, state = make(tmp_path)
    minute = 60 * 10**9
    base = (T0 // minute + 1) * minute  # the start of a minute
    spans = [http_server("users", "GET", f"/users/{i}", route="/users/:id", ms=10.0, start=base + i)
             for i in range(4)]  # minute 0: 4 calls of 10 ms
    spans += [http_server("users", "GET", "/users/9", route="/users/:id", ms=100.0,
                          status=500, start=base + minute + 5)]  # minute 1: 1 call of 100 ms
    run(enr, state, spans)
    # minute 2 has no calls; minute 3 has 2 (the current minute)
    run(enr, state, [http_server("users", "GET", "/users/1", route="/users/:id", ms=20.0,
                                 start=base + 3 * minute + i) for i in range(2)])
    part = state.parts["inventory"]
    ep = part.records[("users", "GET", "/users/{id}")].endpoint
    for who in ("web", "web", "client:203.0.113.0/24"):
        part.record_caller(ep, who)
    d = part.endpoint("users", "GET", "/users/{id}")
    assert d["status_codes"] == {"200": 6, "500": 1}
    assert d["callers"] == [{"client": "web", "calls": 2}, {"client": "client:203.0.113.0/24", "calls": 1}]
    assert d["rate_series"] == [4, 1, 0, 2]
    p95 = d["latency_p95_series"]
    assert len(p95) == 4 and p95[2] is None
    assert 9.5 <= p95[0] <= 10.5 and 95 <= p95[1] <= 105 and 19 <= p95[3] <= 21
    assert d["series_interval_seconds"] == 60 and d["series_start"]


def test_series_stay_bounded(tmp_path: Path) -> None:
    from enrichers.inventory.enricher import SERIES_MINUTES

    enr, state = make(tmp_path)
    minute = 60 * 10**9
    run(enr, state, [http_server("a", "GET", "/x", route="/x", start=T0 + m * minute)
                     for m in range(0, 3 * SERIES_MINUTES, 2)])
    run(enr, state, [http_server("a", "GET", "/x", route="/x", start=T0 + 1000 * minute)])
    d = state.parts["inventory"].endpoint("a", "GET", "/x")
    assert len(d["rate_series"]) == len(d["latency_p95_series"]) == SERIES_MINUTES
    assert d["rate_series"][-1] == 1 and sum(d["rate_series"]) == 1  # a long gap: zeros, bounded


def test_cached_endpoints_follow_specs_services_and_methods(tmp_path: Path) -> None:
    """The per-(service, method, route) record cache never mixes endpoints up."""
    enr, state = make(tmp_path)
    spans = [
        http_server("a", "GET", "/x/1", route="/x/<int:id>"),
        http_server("b", "GET", "/x/1", route="/x/<int:id>"),
        http_server("a", "post", "/x/1", route="/x/<int:id>"),
        http_server("a", "GET", "/x/1", route="/x/<int:id>"),
        http_server("a", "GET", "/plain/7"),
        http_server("a", "GET", "/plain/7"),
    ]
    run(enr, state, spans)
    run(enr, state, spans[:1])
    assert row(state, "a", "GET", "/x/{id}")["calls"] == 3
    assert row(state, "b", "GET", "/x/{id}")["calls"] == 1
    assert row(state, "a", "POST", "/x/{id}")["calls"] == 1
    assert row(state, "a", "GET", "/plain/{id}")["calls"] == 2
    eps = state.batch.endpoints
    assert eps[spans[0].span_id] == Endpoint("a", "GET", "/x/{id}")



def test_outbound_ids_in_a_collapsed_position_share_one_cache_entry(tmp_path: Path) -> None:
    """Client spans to /items/SKU-n: once that position collapses, every new id gets the
    parameter route from a cache keyed by the path before it (not one entry per id), and
    what the cache answers is what the templater itself answers for each path."""
    enr, state = make(tmp_path)
    spans = [http_client("web", "GET", f"http://stock:8080/api/items/SKU-{i}x") for i in range(400)]
    run(enr, state, spans)
    routes = {state.batch.endpoints[s.span_id].route for s in spans[-100:]}
    assert len(routes) == 1 and next(iter(routes)).startswith("/api/items/{"), routes
    part = state.parts["inventory"]
    assert len(part._client_cache) < 60  # one entry per id would be ~400
    more = [http_client("web", "GET", f"http://stock:8080/api/items/SKU-{i}y") for i in range(500, 520)]
    other = http_client("web", "GET", "http://stock:8080/api/items/SKU-9/reviews")
    before = len(part._client_cache)
    run(enr, state, [*more, other])
    assert {state.batch.endpoints[s.span_id].route for s in more} == routes
    assert len(part._client_cache) <= before + 3
    for s in [*more, other]:
        assert state.batch.endpoints[s.span_id].route == part.outbound.template("stock", s.http.path).route
    assert state.batch.endpoints[other.span_id].route.endswith("/reviews")
