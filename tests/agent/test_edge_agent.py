"""``apiward run`` with its receivers in a process of their own, or in process.

The same recording through both gives the same analysis; a killed receiver
process is replaced and the agent keeps taking spans.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.agent.agent_proc import AgentProc, load_requests, send, start_agent, wait_processed


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out.extend(int(c) for c in f.read().split())
    return out


def _edge_pid(agent: AgentProc) -> int:
    for c in _children(agent.proc.pid):
        with open(f"/proc/{c}/cmdline", "rb") as f:
            if b"spawn_main" in f.read():
                return c
    raise AssertionError("no receiver process")


def _analyse(tmp_path: Path, mode: str) -> tuple[dict[str, int], set[str], dict]:
    reqs = load_requests()
    payloads = [r.SerializeToString() for r in reqs]
    n = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
    agent = start_agent(tmp_path / mode, "--edge-process", mode)
    try:
        if mode == "off":
            assert _children(agent.proc.pid) == []
        else:
            _edge_pid(agent)
        ch = agent.channel()
        send(ch, payloads)
        ch.close()
        wait_processed(agent, n)
        findings = {f["id"]: f["count"] for f in agent.get("/api/v1/findings")}
        endpoints = {f"{e['service']} {e['method']} {e['route']}" for e in agent.get("/api/v1/inventory")}
        stats = agent.get("/api/v1/stats")
    finally:
        agent.stop()
    return findings, endpoints, stats


def test_same_analysis_with_the_receivers_in_process_or_not(tmp_path: Path) -> None:
    f_on, e_on, s_on = _analyse(tmp_path, "on")
    f_off, e_off, s_off = _analyse(tmp_path, "off")
    assert f_on and e_on
    assert f_on == f_off
    assert e_on == e_off
    for key in ("spans_received", "spans_accepted", "spans_processed", "spans_rejected", "spans_dropped"):
        assert s_on[key] == s_off[key], key
    assert s_on["edge_process"]["restarts"] == 0.0 and "edge_process" not in s_off
    assert s_on["edge_process"]["cpu_seconds"] > 0  # it decoded every span


def test_a_killed_receiver_process_is_replaced(tmp_path: Path) -> None:
    reqs = load_requests()
    payloads = [r.SerializeToString() for r in reqs]
    n = sum(len(ss.spans) for r in reqs for rs in r.resource_spans for ss in rs.scope_spans)
    agent = start_agent(tmp_path / "state", "--edge-process", "on")
    try:
        ch = agent.channel()
        send(ch, payloads)
        wait_processed(agent, n)
        first = _edge_pid(agent)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while agent.get("/api/v1/stats")["edge_process"]["restarts"] < 1:
            assert time.monotonic() < deadline, "not restarted"
            time.sleep(0.1)
        assert _edge_pid(agent) != first
        for _ in range(100):  # the new process listens on the same port
            try:
                send(ch, payloads[:1])
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.1)
        first_len = sum(len(ss.spans) for rs in reqs[0].resource_spans for ss in rs.scope_spans)
        wait_processed(agent, n + first_len)
        ch.close()
    finally:
        agent.stop()
    assert agent.proc.returncode == 0
