"""Scale-out by trace id: N agents fed by the Collector's routing find what one agent finds.

Three real ``apiward run`` processes each get the share of the shop recording
that the ``loadbalancing`` exporter (``routing_key: traceID``) would send them;
one more gets everything. The union of the three (findings by id, graph edges
with their call counts, inventories) must equal the single agent's. All agents
share the install secret (``secret.key``), as replicas must (deploy/ mounts it
from one Secret), because keyed hashes of credentials are part of some ids.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from bench.hash_ring import HashRing, split_request
from tests.agent.agent_proc import SHOP, AgentProc, load_requests, send, start_agent, wait_processed

pytestmark = pytest.mark.skipif(not SHOP.is_file(), reason="examples/recordings/shop.jsonl not present")

N = 3
CONFIG = "graph:\n  pair_ttl_seconds: 0.5\n"


def _start(d: Path, key: bytes) -> AgentProc:
    d.mkdir(parents=True)
    (d / "secret.key").write_bytes(key)
    (d / "apiward.yaml").write_text(CONFIG)
    return start_agent(d, "--config", str(d / "apiward.yaml"), "--flush-interval", "60")


def _settle(agent: AgentProc, n_spans: int) -> None:
    wait_processed(agent, n_spans)
    time.sleep(1.6)  # > pair TTL + one tick: unpaired spans resolved


def view(agents: list[AgentProc]) -> tuple[set[str], dict[tuple[str, str, str], int], set[tuple[str, str, str]]]:
    findings: set[str] = set()
    edges: dict[tuple[str, str, str], int] = {}
    inventory: set[tuple[str, str, str]] = set()
    for a in agents:
        findings |= {f["id"] for f in a.get("/api/v1/findings?muted=1")}
        for e in a.get("/api/v1/graph")["edges"]:
            k = (e["client"], e["server"], e.get("connection_type", ""))
            edges[k] = edges.get(k, 0) + int(e["calls"])
        inventory |= {(x["service"], x["method"], x["route"]) for x in a.get("/api/v1/inventory")}
    return findings, edges, inventory


def test_union_of_trace_routed_agents_equals_one_agent(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    reqs = load_requests()
    agents: list[AgentProc] = []
    try:
        single = _start(tmp_path / "single", key)
        agents.append(single)
        shards = [_start(tmp_path / f"replica{i}", key) for i in range(N)]
        agents += shards
        names = [f"apiward-{i}.apiward.svc:4317" for i in range(N)]
        ring = HashRing(names)
        per: dict[str, list[bytes]] = {n: [] for n in names}
        spans_per: dict[str, int] = dict.fromkeys(names, 0)
        for r in reqs:
            for ep, part in split_request(r, ring).items():
                per[ep].append(part.SerializeToString())
                spans_per[ep] += sum(len(ss.spans) for rs in part.resource_spans for ss in rs.scope_spans)
        total = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
        assert sum(spans_per.values()) == total
        assert all(spans_per[n] > 0 for n in names), spans_per  # every replica gets a share

        ch = single.channel()
        send(ch, [r.SerializeToString() for r in reqs])
        ch.close()
        for name, agent in zip(names, shards, strict=True):
            ch = agent.channel()
            send(ch, per[name])
            ch.close()
        _settle(single, total)
        for name, agent in zip(names, shards, strict=True):
            _settle(agent, spans_per[name])

        one = view([single])
        many = view(shards)
        assert one[0], "the single agent should find something in the shop recording"
        assert many[0] == one[0], (
            f"only in union: {sorted(many[0] - one[0])}; only in single: {sorted(one[0] - many[0])}")
        assert many[1] == one[1]
        assert many[2] == one[2]
    finally:
        for a in agents:
            a.stop()


def test_ring_routes_every_span_of_a_trace_together() -> None:
    ring = HashRing(["a:4317", "b:4317", "c:4317"])
    counts = {"a:4317": 0, "b:4317": 0, "c:4317": 0}
    for _ in range(3000):
        tid = secrets.token_bytes(16)
        ep = ring.endpoint_for(tid)
        assert ring.endpoint_for(tid) == ep
        counts[ep] += 1
    assert min(counts.values()) > 600  # close to even: about 1000 each
