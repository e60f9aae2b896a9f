"""Findings correlated into incidents: one request seen at several hops is one incident.

The real FindingStore, the real State persistence, the real query API on 127.0.0.1,
the real reports and the real OTLP log export.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent import report
from agent.config import Config
from agent.exporters import FindingsLogExporter
from agent.model import Finding, Severity, Subject
from agent.runtime import Agent
from agent.state import FindingStore, State, StateStore
from tests.agent.otlp_sink import GrpcOtlpServer, OtlpSink, attrs

T0 = 1_700_000_000_000_000_000
MS = 1_000_000

GATEWAY = Subject(service="gateway", method="GET", route="/api/orders/{order_id}")
ORDERS = Subject(service="orders", method="GET", route="/orders/{order_id}")
EDGE = Subject(client="gateway", server="127.0.0.1")


def tids(*ns: int) -> tuple[str, ...]:
    return tuple(f"{n:032x}" for n in ns)


def obs(rule: str, subject: Subject, traces: tuple[str, ...], *, t: int = 0, count: int = 1,
        sev: Severity = Severity.HIGH) -> Finding:
    return Finding(rule=rule, title=rule, severity=sev, subject=subject, first_seen_ns=T0 + t,
                   last_seen_ns=T0 + t, count=count, trace_ids=traces, owasp="API4:2023")


def flood(subject: Subject, traces: tuple[str, ...], t: int = 0, count: int = 1) -> Finding:
    return obs("abuse.endpoint_flood", subject, traces, t=t, count=count)


def incident_ids(store: FindingStore) -> set[str]:
    return {r.incident for r in store.records()}


# ------------------------------------------------------------------ the store


def test_hops_of_one_flood_are_one_incident_rooted_at_the_entry_hop() -> None:
    store = FindingStore()
    # the downstream hop's span ends first, so its finding usually arrives first
    orders = store.add(flood(ORDERS, tids(1, 2, 3), t=4 * MS))
    gateway = store.add(flood(GATEWAY, tids(2, 3, 4), t=1 * MS))
    edge = store.add(flood(EDGE, tids(3), t=2 * MS))
    assert orders.incident == gateway.incident == edge.incident == orders.id  # the first finding's id
    (members,) = store.incidents()
    assert [r.id for r in members] == [gateway.id, edge.id, orders.id]  # root: earliest first seen
    assert store.incident_of(orders.id) == members
    assert orders.to_dict()["incident"] == orders.id


def test_later_observations_link_findings_by_their_own_traces() -> None:
    store = FindingStore()
    a = store.add(flood(GATEWAY, tids(1)))
    b = store.add(flood(ORDERS, tids(2), t=MS))
    assert a.incident != b.incident
    store.add(flood(ORDERS, tids(1), t=2 * MS))  # an update of b that saw a's request
    assert a.incident == b.incident


def test_same_rule_with_disjoint_traces_stays_two_incidents() -> None:
    store = FindingStore()
    a = store.add(flood(GATEWAY, tids(1, 2)))
    b = store.add(flood(ORDERS, tids(3, 4), t=MS))
    assert a.incident == a.id and b.incident == b.id
    assert len(store.incidents()) == 2


def test_other_rules_on_the_same_traces_stay_apart() -> None:
    store = FindingStore()
    a = store.add(flood(GATEWAY, tids(1, 2)))
    b = store.add(obs("abuse.ssrf", GATEWAY, tids(1, 2), t=MS))
    assert a.incident != b.incident


def test_same_traces_different_clients_stay_two_incidents() -> None:
    store = FindingStore()
    alice = Subject(service="gateway", method="GET", route="/api/orders/{order_id}", client="user:alice")
    bob = Subject(service="orders", method="GET", route="/orders/{order_id}", client="user:bob")
    a = store.add(obs("abuse.bola_enumeration", alice, tids(1, 2)))
    b = store.add(obs("abuse.bola_enumeration", bob, tids(1, 2), t=MS))
    assert a.incident != b.incident
    # a finding without a client that shares both traces joins one of them, never both
    c = store.add(obs("abuse.bola_enumeration", ORDERS, tids(1, 2), t=2 * MS))
    assert c.incident in (a.incident, b.incident) and a.incident != b.incident
    # the same client at the next hop joins alice's incident
    alice2 = Subject(service="orders", method="GET", route="/orders/{order_id}", client="user:alice")
    d = store.add(obs("abuse.bola_enumeration", alice2, tids(2), t=3 * MS))
    assert d.incident == a.incident != b.incident


def test_edges_of_one_chain_join_although_their_calling_hops_differ() -> None:
    # on an edge the client is the calling service: it differs at every hop of one request
    store = FindingStore()
    hop1 = store.add(obs("sensitive.pii_in_url", EDGE, tids(7), sev=Severity.MEDIUM))
    hop2 = store.add(obs("sensitive.pii_in_url", Subject(service="payments", method="POST", route="/charge"),
                         tids(7), t=MS, sev=Severity.MEDIUM))
    hop3 = store.add(obs("sensitive.pii_in_url", Subject(client="payments", server="127.0.0.2"), tids(7),
                         t=2 * MS, sev=Severity.MEDIUM))
    assert hop1.incident == hop2.incident == hop3.incident


def test_related_rules_of_one_client_are_one_incident() -> None:
    store = FindingStore()
    who = Subject(service="gateway", method="GET", route="/api/orders/{order_id}", client="user:user9")
    spike = store.add(obs("abuse.client_rate_spike", who, tids(1, 2), sev=Severity.MEDIUM))
    missing = store.add(obs("abuse.rate_limit_missing", who, tids(1, 2), sev=Severity.MEDIUM))
    other = Subject(service="gateway", method="GET", route="/api/orders/{order_id}", client="user:user8")
    apart = store.add(obs("abuse.rate_limit_missing", other, tids(2)))
    assert spike.incident == missing.incident != apart.incident
    # equal first seen: the root is the more severe, then the lower id
    (root, hop) = store.incident_of(spike.id)
    assert {root.id, hop.id} == {spike.id, missing.id} and root.id == min(spike.id, missing.id)


def test_merging_relabels_the_smaller_incident_as_changed() -> None:
    store = FindingStore()
    a = store.add(flood(GATEWAY, tids(1)))
    a2 = store.add(flood(Subject(service="gateway", route="/x"), tids(1), t=MS))
    b = store.add(flood(ORDERS, tids(2), t=2 * MS))
    assert a2.incident == a.incident != b.incident
    seq = store.seq
    store.add(flood(Subject(service="orders", route="/y"), tids(1, 2), t=3 * MS))
    assert b.incident == a.incident  # the single finding moved to the larger incident
    assert b.id in {r.id for r in store.changed_since(seq)}


def test_the_index_is_bounded_and_eviction_keeps_incidents_whole() -> None:
    store = FindingStore(max_findings=50)
    store.max_incident_index = 64
    for i in range(200):
        store.add(flood(Subject(service=f"s{i}"), tids(2 * i, 2 * i + 1), t=i * MS))
        assert len(store._by_trace) <= 64
    live = {r.id for r in store.records()}
    members = [r.id for m in store.incidents() for r in m]
    assert sorted(members) == sorted(live)
    assert incident_ids(store) == {m[0].incident for m in store.incidents()}


def test_incidents_survive_a_restart_and_keep_correlating(tmp_path: Path) -> None:
    st = State(tmp_path)
    store = StateStore(tmp_path)
    with st.lock:
        orders = st.findings.add(flood(ORDERS, tids(1, 2), t=4 * MS))
        gateway = st.findings.add(flood(GATEWAY, tids(2, 3), t=MS))
        lone = st.findings.add(flood(Subject(service="users"), tids(9), t=MS))
    store.flush_now(st)
    store.close()

    st2 = State(tmp_path)
    store2 = StateStore(tmp_path)
    store2.load(st2)
    got = {r.id: r.incident for r in st2.findings.records()}
    assert got == {orders.id: orders.id, gateway.id: orders.id, lone.id: lone.id}
    assert [r.id for r in st2.findings.incident_of(orders.id)] == [gateway.id, orders.id]
    # the index was rebuilt: a third hop after the restart joins the stored incident
    with st2.lock:
        edge = st2.findings.add(flood(EDGE, tids(3), t=2 * MS))
    assert edge.incident == orders.id
    store2.flush_now(st2)
    store2.close()
    st3 = State(tmp_path)
    store3 = StateStore(tmp_path)
    store3.load(st3)
    assert {r.id: r.incident for r in st3.findings.records()} == {**got, edge.id: orders.id}
    store3.close()


# ------------------------------------------------------------------ query API and reports


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.fixture
def agent(tmp_path: Path) -> Any:
    a = Agent(Config(state_dir=tmp_path, api_port=0, bind="127.0.0.1"))
    a.start(receivers=False)
    yield a
    a.stop()


def add_shop_incidents(state: State) -> dict[str, str]:
    with state.lock:
        add = state.findings.add
        ids = {
            "orders": add(flood(ORDERS, tids(1, 2), t=4 * MS, count=10)).id,
            "gateway": add(flood(GATEWAY, tids(1, 2), t=MS, count=10)).id,
            "edge": add(flood(EDGE, tids(2), t=2 * MS, count=12)).id,
            "users": add(obs("sensitive.pii_in_url", Subject(service="users", method="GET", route="/u"),
                             tids(5), t=MS, sev=Severity.MEDIUM)).id,
        }
    return ids


def test_api_groups_findings_by_incident(agent: Agent) -> None:
    ids = add_shop_incidents(agent.state)
    base = f"http://127.0.0.1:{agent.api_port}/api/v1/findings"
    status, flat = get(base)
    assert status == 200 and len(flat) == 4
    assert {f["id"]: f["incident"] for f in flat} == {
        ids["orders"]: ids["orders"], ids["gateway"]: ids["orders"], ids["edge"]: ids["orders"],
        ids["users"]: ids["users"],
    }
    status, rows = get(base + "?group=incident")
    assert status == 200 and [r["id"] for r in rows] == [ids["gateway"], ids["users"]]
    flood_row = rows[0]
    assert flood_row["incident"] == ids["orders"] and flood_row["incident_size"] == 3
    assert flood_row["total_count"] == 32 and flood_row["incident_severity"] == "high"
    assert [(h["id"], h["subject_label"]) for h in flood_row["hops"]] == [
        (ids["edge"], "gateway -> 127.0.0.1"), (ids["orders"], "orders GET /orders/{order_id}")]
    assert rows[1]["hops"] == [] and rows[1]["incident_size"] == 1
    # filters pick incidents by any of their findings; the row is still the root
    status, by_orders = get(base + "?group=incident&service=orders")
    assert [r["id"] for r in by_orders] == [ids["gateway"]] and len(by_orders[0]["hops"]) == 2
    status, one = get(f"{base}/{ids['edge']}")
    assert status == 200 and one["incident"] == ids["orders"]
    status, err = get(base + "?group=service")
    assert status == 400 and "incident" in err["error"]


def test_reports_list_each_incident_with_its_hops(agent: Agent) -> None:
    ids = add_shop_incidents(agent.state)
    rep = report.build_report(agent.state)
    assert len(rep["findings"]) == 4  # nothing hidden
    assert [(r["id"], len(r["hops"])) for r in rep["incidents"]] == [(ids["gateway"], 2), (ids["users"], 0)]
    md = report.render_markdown(rep)
    assert "2 incidents from 4 findings" in md
    rows = [line for line in md.splitlines() if "abuse.endpoint_flood" in line]
    assert len(rows) == 1  # one entry per incident, listing its other hops
    assert "gateway GET /api/orders/{order_id}" in rows[0]
    assert "gateway -> 127.0.0.1 (12); orders GET /orders/{order_id} (10)" in rows[0]
    # a report written before incidents still renders, one entry per finding
    old = {k: v for k, v in rep.items() if k != "incidents"}
    assert "4 incidents from 4 findings" in report.render_markdown(old)


def test_findings_log_records_carry_the_incident(tmp_path: Path) -> None:
    sink = OtlpSink()
    srv = GrpcOtlpServer(sink).start()
    cfg = Config(state_dir=tmp_path, grpc_port=0, http_port=0, api_port=0, bind="127.0.0.1",
                 persist=False, export_endpoint=srv.endpoint, export_protocol="grpc",
                 sections={"export": {"interval": 3600}})
    agent = Agent(cfg)
    agent.start(receivers=False, api=False)
    try:
        logs = next(x for x in agent.extras if isinstance(x, FindingsLogExporter))
        with agent.state.lock:
            orders = agent.state.findings.add(flood(ORDERS, tids(1), t=2 * MS))
            gateway = agent.state.findings.add(flood(GATEWAY, tids(1), t=MS))
        assert logs.collect() == 2
        assert sink.wait(lambda: len(sink.log_records()) == 2)
        got = {attrs(r.attributes)["apiward.finding.id"]: attrs(r.attributes)["apiward.finding.incident"]
               for _, r in sink.log_records()}
        assert got == {orders.id: orders.id, gateway.id: orders.id}
        # a lone finding that a later hop links to the larger incident is sent again at once,
        # with its new incident, though its own count did not change
        with agent.state.lock:
            lone = agent.state.findings.add(flood(Subject(service="users", route="/u"), tids(2), t=3 * MS))
        assert logs.collect() == 1
        with agent.state.lock:
            agent.state.findings.add(flood(Subject(service="orders", route="/y"), tids(1, 2), t=4 * MS))
        assert logs.collect() == 2  # the new hop, and the relabelled one
        assert sink.wait(lambda: len(sink.log_records()) == 5)
    finally:
        agent.stop()
        srv.stop()
    sent = sorted((a["apiward.finding.state"], a["apiward.finding.incident"]) for a in
                  (attrs(r.attributes) for _, r in sink.log_records()) if a["apiward.finding.id"] == lone.id)
    assert sent == [("changed", orders.id), ("opened", lone.id)]
