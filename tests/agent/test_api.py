"""The query API of a real agent on loopback: health, metrics, stats, findings flags, token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from agent.config import Config
from agent.model import Finding, Resource, Severity, SpanKind, Subject, make_span
from agent.runtime import Agent


def get(url, token=None, method="GET", body=None):
    req = urllib.request.Request(url, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def agent(tmp_path):
    a = Agent(Config(state_dir=tmp_path, api_port=0, bind="127.0.0.1"))
    a.start(receivers=False)
    yield a
    a.stop()


def feed(agent, n=4):
    res = Resource.from_attributes({"service.name": "users"})
    batch = [make_span(trace_id=f"{i + 1:032x}", span_id=f"{i + 1:016x}", parent_span_id="", resource=res,
                       name="GET /u", kind=SpanKind.SERVER, start_ns=10**18, end_ns=10**18 + 5_000_000,
                       attributes={"http.request.method": "GET", "url.path": "/u", "http.route": "/u",
                                   "http.response.status_code": 200})
             for i in range(n)]
    assert agent.pipeline.offer(batch, "otlp")
    agent.pipeline.wait_idle(10)


def test_health_stats_metrics(agent):
    feed(agent)
    base = f"http://127.0.0.1:{agent.api_port}"
    assert get(base + "/healthz")[0] == 200
    status, ctype, body = get(base + "/api/v1/stats")
    st = json.loads(body)
    assert status == 200 and ctype == "application/json"
    for k in ("spans_received", "spans_accepted", "spans_rejected", "spans_dropped"):
        assert isinstance(st[k], int)
    assert st["spans_accepted"] == 4 and st["spans_by_source"] == {"otlp": 4, "replay": 0, "ebpf": 0}
    assert st["services"] == ["users"]
    status, ctype, body = get(base + "/metrics")
    text = body.decode()
    assert status == 200 and ctype.startswith("text/plain")
    assert 'apiward_spans_accepted_total{collector="otlp"} 4' in text
    assert "apiward_queue_depth 0" in text
    assert "apiward_processing_latency_seconds_count 1" in text
    assert 'apiward_stage_cpu_seconds_total{stage="inventory"}' in text
    assert set(st["stage_cpu_seconds"]) >= {"inventory", "callgraph"}
    assert get(base + "/nope")[0] == 404
    assert get(base + "/api/v1/stats", method="POST", body=b"{}")[0] == 405
    traces = json.loads(get(base + "/api/v1/traces?service=users")[2])
    assert len(traces) == 4 and traces[0]["root_service"] == "users"
    one = json.loads(get(base + f"/api/v1/traces/{traces[0]['trace_id']}")[2])
    assert one["spans"][0]["route"] == "/u"


def test_findings_flags(agent):
    f = Finding(rule="test.x", title="X", severity=Severity.HIGH, subject=Subject(service="users"),
                first_seen_ns=1, last_seen_ns=2, owasp="API8:2023")
    with agent.state.lock:
        agent.state.findings.add(f)
    base = f"http://127.0.0.1:{agent.api_port}/api/v1/findings"
    lst = json.loads(get(base)[2])
    assert [x["id"] for x in lst] == [f.id] and lst[0]["owasp"] == "API8:2023"
    assert json.loads(get(base + "?severity=critical")[2]) == []
    assert get(base + f"/{f.id}/ack", method="POST", body=b'{"value": true}')[0] == 200
    assert json.loads(get(base + f"/{f.id}")[2])["acknowledged"] is True
    assert get(base + "/nope/ack", method="POST", body=b"{}")[0] == 404
    assert get(base + f"/{f.id}/ack", method="POST", body=b"{not json")[0] == 400


def test_token_required_when_set(tmp_path):
    a = Agent(Config(state_dir=tmp_path, api_port=0, api_token="s3cret"))
    a.start(receivers=False)
    try:
        base = f"http://127.0.0.1:{a.api_port}"
        assert get(base + "/healthz")[0] == 200
        status, _, body = get(base + "/api/v1/stats")
        assert status == 401 and b"token" in body
        assert get(base + "/api/v1/stats", token="wrong")[0] == 401
        assert get(base + "/api/v1/stats", token="s3cret")[0] == 200
    finally:
        a.stop()


def test_events_stream_stats_and_findings(agent):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", agent.api_port, timeout=10)
    conn.request("GET", "/api/v1/events")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    f = Finding(rule="test.sse", title="SSE", severity=Severity.LOW, subject=Subject(service="s"),
                first_seen_ns=1, last_seen_ns=2)
    with agent.state.lock:
        agent.state.findings.add(f)
    seen = set()
    for _ in range(40):
        line = resp.fp.readline().decode()
        if line.startswith("event: "):
            seen.add(line.split(": ", 1)[1].strip())
        if line.startswith("data: ") and '"test.sse"' in line:
            seen.add("finding-data")
        if {"stats", "finding", "finding-data"} <= seen:
            break
    conn.close()
    assert {"stats", "finding", "finding-data"} <= seen
