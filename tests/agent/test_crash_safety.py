"""``kill -9`` in the middle of a load, three times: State opens cleanly and keeps what was flushed.

A real ``apiward run`` (``--flush-interval 0.5``) gets the shop recording over
OTLP/gRPC. Each round: load A, wait until it is analysed and two flush
intervals passed (so it is committed), note what the agent knows, start load B
and ``kill -9`` the agent while B is in flight. Then the state dir must open
(``PRAGMA integrity_check``, ``apiward report --state-dir``) and hold at least
everything noted after A; the next round starts the agent on the same dir.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.agent.agent_proc import ROOT, SHOP, load_requests, send, start_agent, wait_processed

pytestmark = pytest.mark.skipif(not SHOP.is_file(), reason="examples/recordings/shop.jsonl not present")


def offline_report(state: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "report", "--state-dir", str(state), "--format", "json"],
        capture_output=True, cwd=ROOT, timeout=120, check=True,
    )
    return orjson.loads(out.stdout)


def edge_calls(graph: dict) -> dict[tuple[str, str, str], int]:
    return {(e["client"], e["server"], e.get("connection_type", "")): int(e.get("calls", 0))
            for e in graph["edges"]}


def test_kill_9_mid_load_three_times(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reqs = load_requests()
    payloads = [r.SerializeToString() for r in reqs]
    n_spans = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
    previous: dict[str, int] = {}
    for round_ in range(3):
        agent = start_agent(state, "--flush-interval", "0.5")
        try:
            ch = agent.channel()
            send(ch, payloads)  # load A
            wait_processed(agent, n_spans)
            time.sleep(1.5)  # > 2 flush intervals: A is committed
            committed_findings = {f["id"]: f["count"] for f in agent.get("/api/v1/findings")}
            committed_edges = edge_calls(agent.get("/api/v1/graph"))
            assert committed_findings and committed_edges

            stop = threading.Event()

            def load_b(ch=ch, stop=stop) -> None:  # noqa: ANN001
                try:
                    while not stop.is_set():
                        send(ch, payloads)
                except Exception:  # noqa: BLE001 - the agent is being killed under us
                    pass

            t = threading.Thread(target=load_b, daemon=True)
            t.start()
            time.sleep(0.8)
            agent.kill9()  # mid-load
            stop.set()
            t.join(10)
            ch.close()
        finally:
            if agent.proc.poll() is None:
                agent.kill9()

        db = sqlite3.connect(state / "state.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        rep = offline_report(state)
        found = {f["id"]: f["count"] for f in rep["findings"]}
        missing = set(committed_findings) - set(found)
        assert not missing, f"round {round_}: findings lost after kill -9: {missing}"
        for fid, count in committed_findings.items():
            assert found[fid] >= count
        for fid, count in previous.items():
            assert found[fid] >= count  # nothing from earlier rounds went backwards
        edges = edge_calls(rep["graph"])
        for k, calls in committed_edges.items():
            assert edges.get(k, 0) >= calls, f"round {round_}: edge {k} lost calls"
        previous = found

    # And a clean start on top of it all still works.
    agent = start_agent(state, "--flush-interval", "0.5")
    try:
        assert agent.get("/healthz") == {"status": "ok"}
    finally:
        agent.stop()
    assert agent.proc.returncode == 0
