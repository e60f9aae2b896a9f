"""OTLP export of findings (logs) and the service graph (metrics) to real receivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.api import render_metrics, stats_view
from agent.config import Config, ConfigError
from agent.exporters import (
    EVENT_NAME,
    SERVICE_GRAPH_BUCKETS,
    ExportSettings,
    FindingsLogExporter,
    ServiceGraphMetricsExporter,
    build_exporters,
    resolve_target,
)
from agent.model import Call, Finding, NodeKind, Resource, Severity, SpanKind, Subject, make_span
from agent.runtime import Agent
from tests.agent.otlp_sink import GrpcOtlpServer, HttpOtlpServer, OtlpSink, attrs

T0 = 1_700_000_000_000_000_000
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
SPAN_A = "b7ad6b7169203331"


def finding(rule: str = "API2.unauthenticated", count: int = 1, sev: Severity = Severity.HIGH,
            t: int = 0, trace: str = TRACE_A, span: str = SPAN_A) -> Finding:
    return Finding(
        rule=rule,
        title="Endpoint served without authentication",
        severity=sev,
        subject=Subject(service="orders", method="GET", route="/api/orders/{id}", host="orders.shop.svc"),
        first_seen_ns=T0 + t,
        last_seen_ns=T0 + t,
        count=count,
        owasp="API2:2023",
        confidence=0.9,
        trace_ids=(trace,),
        span_ids=(span,),
        compliance=("PCI-DSS:8.3", "GDPR:32"),
        remediation="Require a token.",
    )


@pytest.fixture
def sink() -> OtlpSink:
    return OtlpSink()


@pytest.fixture
def grpc_server(sink: OtlpSink) -> Any:
    srv = GrpcOtlpServer(sink).start()
    yield srv
    srv.stop()


@pytest.fixture
def http_server(sink: OtlpSink) -> Any:
    srv = HttpOtlpServer(sink).start()
    yield srv
    srv.stop()


def make_agent(tmp_path: Path, endpoint: str | None, protocol: str = "grpc", **export: Any) -> Agent:
    cfg = Config(state_dir=tmp_path, grpc_port=0, http_port=0, api_port=0, bind="127.0.0.1",
                 persist=False, export_endpoint=endpoint, export_protocol=protocol,
                 sections={"export": {"interval": 3600, "backoff_initial": 0.05, **export}})
    return Agent(cfg)


def exporters_of(agent: Agent) -> tuple[FindingsLogExporter, ServiceGraphMetricsExporter]:
    logs = next(x for x in agent.extras if isinstance(x, FindingsLogExporter))
    metrics = next(x for x in agent.extras if isinstance(x, ServiceGraphMetricsExporter))
    return logs, metrics


def test_findings_become_log_records_over_grpc_once_per_change(tmp_path: Path, sink: OtlpSink,
                                                               grpc_server: GrpcOtlpServer) -> None:
    agent = make_agent(tmp_path, grpc_server.endpoint)
    agent.start(receivers=False, api=False)
    try:
        logs, _ = exporters_of(agent)
        st = agent.state
        with st.lock:
            st.findings.add(finding())
            st.findings.add(finding(rule="API8.plaintext_http", sev=Severity.MEDIUM))
        assert logs.collect() == 2
        assert sink.wait(lambda: len(sink.log_records()) == 2)

        # Five more observations of the first finding in one interval: one record.
        with st.lock:
            for i in range(5):
                st.findings.add(finding(t=(i + 1) * 1_000_000))
        assert logs.collect() == 1
        assert logs.collect() == 0  # nothing changed since
        # Flag changes alone are not exported.
        fid = finding().id
        with st.lock:
            st.findings.set_flags(fid, acknowledged=True)
        assert logs.collect() == 0
        # A severity change is.
        with st.lock:
            st.findings.add(finding(rule="API8.plaintext_http", sev=Severity.HIGH, count=0))
        assert logs.collect() == 1
        assert sink.wait(lambda: len(sink.log_records()) == 4)
    finally:
        agent.stop()

    recs = sink.log_records()
    resource, first = recs[0]
    assert attrs(resource.attributes)["service.name"] == "apiward"
    a = attrs(first.attributes)
    assert first.event_name == EVENT_NAME
    assert first.body.string_value == "Endpoint served without authentication"
    assert first.severity_number == 17 and first.severity_text == "HIGH"
    assert a["apiward.finding.id"] == fid
    assert a["apiward.rule.id"] == "API2.unauthenticated"
    assert a["apiward.severity"] == "high"
    assert a["apiward.owasp.category"] == "API2:2023"
    assert a["apiward.count"] == 1
    assert a["apiward.compliance"] == ["PCI-DSS:8.3", "GDPR:32"]
    assert a["apiward.confidence"] == pytest.approx(0.9)
    assert a["apiward.first_seen"].startswith("2023-11-14T22:13:20")
    assert a["service.name"] == "orders"
    assert a["http.route"] == "/api/orders/{id}"
    assert a["http.request.method"] == "GET"
    assert a["server.address"] == "orders.shop.svc"
    assert a["apiward.finding.state"] == "opened"
    # Trace linkage in the record's own fields.
    assert first.trace_id.hex() == TRACE_A
    assert first.span_id.hex() == SPAN_A
    assert first.time_unix_nano == T0

    again = [attrs(r.attributes) for _, r in recs[2:]]
    counted = next(x for x in again if x["apiward.finding.id"] == fid)
    assert counted["apiward.count"] == 6 and counted["apiward.finding.state"] == "changed"
    assert "apiward.acknowledged" not in counted  # acknowledged only after this record
    raised = next(x for x in again if x["apiward.rule.id"] == "API8.plaintext_http")
    assert raised["apiward.severity"] == "high"


def test_http_protocol_from_standard_env_variables(tmp_path: Path, sink: OtlpSink,
                                                   http_server: HttpOtlpServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_server.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    agent = make_agent(tmp_path, None)
    agent.start(receivers=False, api=False)
    try:
        logs, metrics = exporters_of(agent)
        with agent.state.lock:
            agent.state.findings.add(finding())
        logs.collect()
        assert sink.wait(lambda: len(sink.log_records()) == 1)
        assert metrics.export_once()
        assert "apiward_findings" in sink.metric_points()
    finally:
        agent.stop()
    _, rec = sink.log_records()[0]
    assert attrs(rec.attributes)["apiward.rule.id"] == "API2.unauthenticated"
    assert rec.trace_id.hex() == TRACE_A


def test_failed_exports_are_retried_with_backoff_and_counted(tmp_path: Path, sink: OtlpSink,
                                                             http_server: HttpOtlpServer) -> None:
    sink.fail_next = 2
    agent = make_agent(tmp_path, http_server.endpoint, "http/protobuf", timeout=0.3)
    agent.start(receivers=False, api=False)
    try:
        logs, _ = exporters_of(agent)
        with agent.state.lock:
            agent.state.findings.add(finding())
        logs.collect()
        assert sink.wait(lambda: len(sink.log_records()) == 1)
        assert sink.wait(lambda: agent.stats.extra["export"]()["logs_exported"] == 1)
        stats = stats_view(agent)["export"]
        assert stats["logs_retries"] >= 1 and stats["logs_dropped_failed"] == 0
        assert "apiward_export_logs_retries" in render_metrics(agent)
    finally:
        agent.stop()


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    # Nothing listens on this port: every export fails; the queue holds 2 records.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    agent = make_agent(tmp_path, dead, "http/protobuf", queue_size=2, max_batch=1,
                       max_retries=1, timeout=0.2)
    agent.start(receivers=False, api=False)
    logs, _ = exporters_of(agent)
    with agent.state.lock:
        for i in range(10):
            agent.state.findings.add(finding(rule=f"API9.test_{i}"))
    assert logs.collect() == 10  # returns at once: the network is not on this thread
    counters = agent.stats.extra["export"]()
    assert counters["logs_dropped_queue_full"] >= 7
    agent.stop()
    c = agent.stats.extra["export"]()
    assert c["logs_exported"] == 0
    assert c["logs_dropped_queue_full"] + c["logs_dropped_failed"] == 10


class StandInCallGraph:
    """Stand-in for the call-graph State part (enrichers/callgraph), built in parallel by
    another engineer: only its documented ``report()`` shape."""

    def __init__(self, edges: list[dict[str, Any]]) -> None:
        self.edges = edges

    def report(self) -> dict[str, Any]:
        return {"nodes": [], "edges": [dict(e) for e in self.edges]}


class StandInZeroTrust:
    """Stand-in for the zero-trust part's ``verdict(client, server, connection_type)``."""

    def verdict(self, client: str, server: str, connection_type: str) -> str:
        return "deny" if server == "payments" else "allow"


def _call(client: str, server: str, ms_client: int, ms_server: int, ctype: str = "http",
          server_kind: NodeKind = NodeKind.SERVICE) -> Call:
    def sp(svc: str, kind: SpanKind, ms: int, sid: str) -> Any:
        return make_span(trace_id=TRACE_A, span_id=sid, parent_span_id="", resource=Resource(svc),
                         name="GET /x", kind=kind, start_ns=T0, end_ns=T0 + ms * 1_000_000,
                         attributes={"http.request.method": "GET", "http.route": "/x"})
    cs = sp(client, SpanKind.CLIENT, ms_client, "1111111111111111")
    ss = sp(server, SpanKind.SERVER, ms_server, "2222222222222222")
    return Call(client=client, server=server, client_kind=NodeKind.SERVICE, server_kind=server_kind,
                connection_type=ctype, span=ss, client_span=cs, server_span=ss)


def test_service_graph_metrics_use_servicegraph_names_and_labels(tmp_path: Path, sink: OtlpSink,
                                                                 grpc_server: GrpcOtlpServer) -> None:
    agent = make_agent(tmp_path, grpc_server.endpoint)
    st = agent.state
    st.parts["callgraph"] = StandInCallGraph([
        {"client": "gateway", "server": "orders", "connection_type": "http", "calls": 3, "errors": 1,
         "p50_ms": 30, "p95_ms": 300, "p99_ms": 300},
        {"client": "orders", "server": "payments", "connection_type": "http", "calls": 1, "errors": 0},
        {"client": "orders", "server": "postgres", "connection_type": "database", "calls": 2, "errors": 0},
    ])
    st.parts["zerotrust"] = StandInZeroTrust()
    agent.start(receivers=False, api=False)
    try:
        _, metrics = exporters_of(agent)
        for calls in ([_call("gateway", "orders", 5, 3), _call("gateway", "orders", 40, 30)],
                      [_call("gateway", "orders", 300, 250), _call("orders", "payments", 20, 12)],
                      [_call("orders", "postgres", 1, 1, "database", NodeKind.DATABASE)] * 2):
            with st.lock:
                st.batch.calls[:] = calls
                st.batch.sensitive.clear()
                st.batch.sensitive["2222222222222222"] = [{"type": "credit_card", "direction": "request"}]
            metrics.observe_batch()
        with st.lock:
            st.findings.add(finding())
            st.findings.add(finding(count=2))
        assert metrics.export_once()
    finally:
        agent.stop()
    pts = sink.metric_points()
    gw = {"client": "gateway", "server": "orders", "connection_type": ""}
    total = {tuple(sorted(lab.items())): p.as_int for lab, p in pts["traces_service_graph_request_total"]}
    assert total[tuple(sorted(gw.items()))] == 3
    db = {"client": "orders", "server": "postgres", "connection_type": "database"}
    assert total[tuple(sorted(db.items()))] == 2
    failed = {tuple(sorted(lab.items())): p.as_int for lab, p in pts["traces_service_graph_request_failed_total"]}
    assert failed[tuple(sorted(gw.items()))] == 1
    server_h = {tuple(sorted(lab.items())): p for lab, p in pts["traces_service_graph_request_server_seconds"]}
    h = server_h[tuple(sorted(gw.items()))]
    assert h.count == 3 and list(h.explicit_bounds) == list(SERVICE_GRAPH_BUCKETS)
    assert h.sum == pytest.approx(0.283)
    # 3 ms -> le 0.004; 30 ms -> le 0.05; 250 ms -> le 0.4
    assert h.bucket_counts[1] == 1 and h.bucket_counts[5] == 1 and h.bucket_counts[8] == 1
    client_h = {tuple(sorted(lab.items())): p for lab, p in pts["traces_service_graph_request_client_seconds"]}
    assert client_h[tuple(sorted(gw.items()))].sum == pytest.approx(0.345)
    verdicts = {(lab["server"], lab["verdict"]): p.as_int for lab, p in pts["apiward_edge_calls_total"]}
    assert verdicts[("payments", "deny")] == 1 and verdicts[("orders", "allow")] == 3
    findings = {(lab["rule"], lab["severity"]): p.as_int for lab, p in pts["apiward_findings"]}
    assert findings == {("API2.unauthenticated", "high"): 1}
    obs = {(lab["rule"], lab["severity"]): p.as_int for lab, p in pts["apiward_finding_observations_total"]}
    assert obs == {("API2.unauthenticated", "high"): 3}
    flows = {(lab["data_type"], lab["destination_kind"]): p.as_int
             for lab, p in pts["apiward_sensitive_flows_total"]}
    assert flows[("credit_card", "database")] == 2
    assert flows[("credit_card", "service")] == 4
    # Cumulative points start when the series started, not at each export.
    assert h.start_time_unix_nano <= h.time_unix_nano


def test_histograms_survive_a_restart(tmp_path: Path) -> None:
    from agent.exporters import ServiceGraphHistograms
    from agent.state import State, StateStore

    st = State(tmp_path)
    store = StateStore(tmp_path)
    h = st.part(ServiceGraphHistograms.PART, ServiceGraphHistograms)
    h.observe(("a", "b", "http"), "server", 0.003)
    h.flows[("email", "external")] = 2
    store.flush_now(st)
    store.close()
    st2 = State(tmp_path)
    store2 = StateStore(tmp_path)
    store2.load(st2)
    h2 = st2.part(ServiceGraphHistograms.PART, ServiceGraphHistograms)
    assert h2.edges[("a", "b", "http")]["server"][1] == 1
    assert h2.flows[("email", "external")] == 2 and h2.start_ns == h.start_ns
    store2.close()


def test_real_call_graph_through_the_pipeline(tmp_path: Path, sink: OtlpSink,
                                              grpc_server: GrpcOtlpServer) -> None:
    cg = pytest.importorskip("enrichers.callgraph", reason="the call-graph enricher is not built yet")
    if not hasattr(cg, "CallGraphEnricher"):
        pytest.skip("enrichers.callgraph does not export CallGraphEnricher yet (built in parallel)")
    agent = make_agent(tmp_path, grpc_server.endpoint)
    agent.start(receivers=False, api=False)
    try:
        _, metrics = exporters_of(agent)
        spans = []
        for i in range(4):
            tid = f"{i + 1:032x}"
            cs = make_span(trace_id=tid, span_id=f"{2 * i + 1:016x}", parent_span_id="",
                           resource=Resource("gateway"), name="GET", kind=SpanKind.CLIENT,
                           start_ns=T0, end_ns=T0 + 20_000_000, status_code=2 if i == 0 else 0,
                           attributes={"http.request.method": "GET", "url.full": "http://orders/api/orders/1",
                                       "server.address": "orders", "http.response.status_code": 500 if i == 0 else 200})
            ss = make_span(trace_id=tid, span_id=f"{2 * i + 2:016x}", parent_span_id=cs.span_id,
                           resource=Resource("orders"), name="GET /api/orders/{id}", kind=SpanKind.SERVER,
                           start_ns=T0 + 1_000_000, end_ns=T0 + 11_000_000, status_code=2 if i == 0 else 0,
                           attributes={"http.request.method": "GET", "http.route": "/api/orders/{id}",
                                       "url.path": "/api/orders/1",
                                       "http.response.status_code": 500 if i == 0 else 200})
            spans += [cs, ss]
        agent.feed([spans])
        agent.pipeline.wait_idle(30)
        agent.pipeline.tick_now()
        assert metrics.export_once()
    finally:
        agent.stop()
    pts = sink.metric_points()
    total = {(lab["client"], lab["server"]): p.as_int for lab, p in pts["traces_service_graph_request_total"]}
    assert total.get(("gateway", "orders")) == 4
    failed = {(lab["client"], lab["server"]): p.as_int
              for lab, p in pts["traces_service_graph_request_failed_total"]}
    assert failed.get(("gateway", "orders")) == 1
    server_h = {(lab["client"], lab["server"]): p for lab, p in pts["traces_service_graph_request_server_seconds"]}
    assert server_h[("gateway", "orders")].count == 4
    assert server_h[("gateway", "orders")].sum == pytest.approx(0.04)


def test_targets_from_flags_and_environment() -> None:
    cfg = Config(export_endpoint="collector:4318", export_protocol="http/protobuf")
    t = resolve_target("logs", cfg, {})
    assert t is not None and t.endpoint == "http://collector:4318/v1/logs"
    assert resolve_target("metrics", Config(), {}) is None
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://x:4317"}
    assert resolve_target("logs", Config(), env) is None
    m = resolve_target("metrics", Config(), env)
    assert m is not None and m.endpoint is None and m.protocol == "grpc"
    env2 = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    t2 = resolve_target("logs", Config(), env2)
    assert t2 is not None and t2.protocol == "http/protobuf"
    with pytest.raises(ConfigError, match="http/json"):
        resolve_target("logs", Config(), {**env2, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_export_is_off_without_an_endpoint(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, None)
    assert build_exporters(agent.config, agent, environ={}) == []
    assert "export" not in agent.stats.extra


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"interval": 0}, "interval"),
        ({"queue_size": 1.5}, "queue_size"),
        ({"max_retries": -1}, "max_retries"),
        ({"logs": "yes"}, "logs"),
        ({"bogus": 1}, "unknown field 'bogus'"),
    ],
)
def test_bad_export_section_is_one_clear_sentence(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExportSettings.from_config(Config(sections={"export": section}))
