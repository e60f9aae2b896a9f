"""The recent-traces store: what the Traces view gets, bounded, no raw paths."""

from __future__ import annotations

from agent.config import Config
from agent.model import Endpoint, SpanKind
from agent.state import State
from enrichers.traces import SpanSummary, TraceStore, TraceStoreEnricher
from tests.enrichers.callgraph.spans import T0, http_client, http_server, new_id, span


def _feed(enr: TraceStoreEnricher, state: State, spans: list, endpoints: dict | None = None) -> None:
    state.batch.clear()
    state.batch.endpoints.update(endpoints or {})
    enr.process(spans, state)


def test_trace_shapes() -> None:
    enr, state = TraceStoreEnricher(Config()), State()
    trace = new_id() * 2
    c = http_client("web", "GET", "http://users:8080/users/7?token=secret", trace=trace, start=T0, ms=30)
    s = http_server("users", "GET", "/users/7", trace=trace, parent=c.span_id, start=T0 + 5, ms=20,
                    status=503)
    db = span("users", SpanKind.CLIENT, trace=trace, parent=s.span_id, start=T0 + 6, ms=2,
              attrs={"db.system": "sqlite"}, name="SELECT users")
    _feed(enr, state, [s, db, c], {s.span_id: Endpoint("users", "GET", "/users/{id}")})
    store: TraceStore = state.parts["traces"]
    [summary] = store.list()
    assert summary["trace_id"] == trace and summary["root_service"] == "web"
    assert summary["span_count"] == 3 and summary["status"] == "error"
    assert summary["services"] == ["users", "web"] and summary["duration_ms"] == 30.0
    assert store.list(service="users") and not store.list(service="nobody")
    assert store.list(route="/users/{id}") and store.list(status="error")
    one = store.get(trace)
    assert one is not None
    assert [x["service"] for x in one["spans"]] == ["web", "users", "users"]
    web, users, sql = one["spans"]
    # no raw path, no query, no URL: the server span shows its route template
    assert users["name"] == "GET /users/{id}" and users["route"] == "/users/{id}"
    assert users["status_code"] == 503 and users["kind"] == "server" and users["status"] == "ok"
    assert "secret" not in repr(one) and "/users/7" not in repr(one)
    assert sql["kind"] == "client" and sql["http_method"] == "" and sql["name"] == "SELECT users"
    assert set(web) == {"span_id", "parent_span_id", "service", "name", "kind", "start_ns", "end_ns",
                        "duration_ms", "status", "http_method", "route", "status_code", "source"}
    assert store.spans(trace)[0] == SpanSummary.from_row(store.traces[trace][0])


def test_store_is_bounded_and_recent_first() -> None:
    enr, state = TraceStoreEnricher(Config(sections={"traces": {"max_traces": 5}})), State()
    traces = [new_id() * 2 for _ in range(8)]
    _feed(enr, state, [span("a", SpanKind.SERVER, trace=t, start=T0 + i) for i, t in enumerate(traces)])
    store: TraceStore = state.parts["traces"]
    assert [t["trace_id"] for t in store.list()] == traces[:2:-1]
    # a new span of an older trace makes it the most recent again
    _feed(enr, state, [span("b", SpanKind.CLIENT, trace=traces[3], start=T0 + 99)])
    assert store.list()[0]["trace_id"] == traces[3] and store.list()[0]["span_count"] == 2
    small = TraceStore(max_traces=2, max_spans_per_trace=3)
    for i in range(10):
        small.add("t", SpanSummary(f"{i:016x}", "", "a", "op", "server", i, i + 1, "ok", "", "", 0, "otlp"))
    assert len(small.traces["t"]) == 3


def test_runs_of_one_trace_and_tiny_limits() -> None:
    for max_traces, max_spans in ((0, 500), (1, 1), (3, 2), (2000, 500)):
        enr, state = TraceStoreEnricher(Config(sections={"traces": {"max_traces": max_traces}})), State()
        state.parts["traces"] = TraceStore(max_traces, max_spans)
        t1, t2 = new_id() * 2, new_id() * 2
        batch = [span("a", SpanKind.SERVER, trace=t, start=T0 + i) for i, t in enumerate([t1, t1, t1, t2, t1])]
        _feed(enr, state, batch)
        store: TraceStore = state.parts["traces"]
        got = {t["trace_id"]: t["span_count"] for t in store.list()}
        if max_traces == 0:
            assert got == {}
        elif max_traces == 1:
            assert got == {t1: 1}
        else:
            assert got == {t1: min(4, max_spans), t2: 1} and store.list()[0]["trace_id"] == t1


def test_past_its_rate_the_store_admits_whole_traces_by_id() -> None:
    """Above ``admit_per_second`` new traces a second the store keeps a share of the traces,
    chosen by trace id: every span of an admitted trace, across batches; the others cost
    nothing more. Below the rate again, every trace is kept."""
    now = [1000.0]
    cfg = Config(sections={"traces": {"max_traces": 5000, "admit_per_second": 100}})
    enr, state = TraceStoreEnricher(cfg), State()
    enr.clock = lambda: now[0]
    enr._period_start = now[0]

    def second(n: int) -> list[str]:
        """One second of ``n`` two-span traces: client spans in one batch, servers in the next."""
        ids = [new_id() * 2 for _ in range(n)]
        _feed(enr, state, [span("web", SpanKind.CLIENT, trace=t, start=T0) for t in ids])
        now[0] += 1.0
        _feed(enr, state, [span("api", SpanKind.SERVER, trace=t, start=T0 + 1) for t in ids])
        return ids

    first = second(2000)  # 2000 new traces a second: 20 times the rate
    store: TraceStore = state.parts["traces"]
    assert all(len(store.rows(t)) == 2 for t in first)  # the first second is measured, all kept
    assert enr.cut < 65536 // 10  # about a twentieth from now on
    assert 0.04 < enr.stats()["admitted_share"] < 0.06  # what /api/v1/stats and the Traces view show
    later = second(2000)
    kept = [t for t in later if store.rows(t)]
    assert 40 <= len(kept) <= 200, len(kept)
    assert all(len(store.rows(t)) == 2 for t in kept)  # whole traces, across both batches
    assert enr.refused >= 2 * (len(later) - len(kept)) - 10
    # quiet again: the next second measures a low rate and every trace is kept after it
    second(50)
    quiet = second(50)
    assert enr.cut == 65536 and all(len(store.rows(t)) == 2 for t in quiet)
    assert enr.stats()["admitted_share"] == 1.0


def test_framework_route_names_show_as_the_inventory_template() -> None:
    enr, state = TraceStoreEnricher(Config()), State()
    trace = new_id() * 2
    flask = http_server("orders", "GET", "/orders/7", trace=trace, start=T0, ms=5,
                        attrs={"http.route": "/orders/<int:order_id>"}, name="GET /orders/<int:order_id>")
    custom = http_server("orders", "GET", "/orders/8", trace=trace, start=T0 + 1, ms=5,
                         attrs={"http.route": "/orders/<int:order_id>"}, name="load order")
    ep = Endpoint("orders", "GET", "/orders/{order_id}")
    _feed(enr, state, [flask, custom], {flask.span_id: ep, custom.span_id: ep})
    rows = {s.span_id: s for s in state.parts["traces"].spans(trace)}
    assert rows[flask.span_id].name == "GET /orders/{order_id}" and rows[flask.span_id].route == "/orders/{order_id}"
    assert rows[custom.span_id].name == "load order"
