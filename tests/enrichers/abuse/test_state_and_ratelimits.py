"""Baselines survive a restart; ``apiward ratelimits`` turns them into configuration."""

from __future__ import annotations

import json

import orjson
import yaml

from agent.cli import main as cli
from agent.state import State, StateStore
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.ratelimits import recommend, render
from tests.enrichers.abuse.spans import Runner, benign, server


def _learned() -> Runner:
    r = Runner()
    r.feed(benign(120))
    r.flush()
    return r


def test_snapshot_restore_roundtrip_keeps_baselines():
    r = _learned()
    st = r.enricher.state(r.state)
    data = orjson.loads(orjson.dumps(st.snapshot(), option=orjson.OPT_NON_STR_KEYS))
    back = AbuseState()
    back.restore(data)
    assert back.endpoints.keys() == st.endpoints.keys()
    k = "api GET /products"
    assert back.endpoints[k].windows == st.endpoints[k].windows
    assert abs(back.endpoints[k].client_rate.quantile(0.99) - st.endpoints[k].client_rate.quantile(0.99)) < 1e-6
    assert back.clients == st.clients


def test_restart_does_not_relearn_from_zero(tmp_path):
    r = _learned()
    store = StateStore(tmp_path)
    r.state.state_dir = tmp_path
    store.flush_now(r.state)
    store.close()
    # A new agent: warm baselines come back, so an attack right away is detected.
    fresh = Runner()
    store = StateStore(tmp_path)
    store.load(fresh.state)
    store.close()
    st = fresh.enricher.state(fresh.state)
    assert st.endpoints["api GET /products"].windows >= 6
    fresh.feed([server(125 + i * 0.02, "/products", route="/products", ip="192.0.2.66") for i in range(400)])
    assert fresh.findings("abuse.client_rate_spike")


def test_restore_ignores_foreign_data():
    st = AbuseState()
    st.restore({"version": 99})
    st.restore(["junk"])
    assert st.endpoints == {}


def test_recommendations_and_formats():
    r = _learned()
    st = r.enricher.state(r.state)
    recs = recommend(st)
    assert {x.route for x in recs} >= {"/products", "/orders/{id}"}
    rec = next(x for x in recs if x.route == "/orders/{id}")
    assert rec.per_client_rps >= 1 and rec.per_client_burst >= rec.per_client_rps
    assert rec.evidence["windows"] >= 6 and "per_client_per_window_p99" in rec.evidence
    envoy = yaml.safe_load(render(recs, "envoy"))
    route = envoy["routes"][0]
    cfg = route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    assert cfg["token_bucket"]["fill_interval"] == "1s" and cfg["token_bucket"]["tokens_per_fill"] >= 1
    nginx = render(recs, "nginx")
    assert "limit_req_zone $binary_remote_addr" in nginx and "limit_req zone=" in nginx
    aws = json.loads(render(recs, "aws"))
    assert "/orders/{id}/GET" in aws["apiStages"][0]["throttle"]
    assert json.loads(render(recs, "json"))[0]["evidence"]


def test_cli_from_state_dir(tmp_path, capsys):
    r = _learned()
    store = StateStore(tmp_path)
    store.flush_now(r.state)
    store.close()
    assert cli(["ratelimits", "--state-dir", str(tmp_path), "--format", "nginx"]) == 0
    assert "limit_req_zone" in capsys.readouterr().out


def test_cli_bad_input(tmp_path, capsys):
    assert cli(["ratelimits", "--state-dir", str(tmp_path / "none")]) == 2
    assert "no apiward state" in capsys.readouterr().err
    assert cli(["ratelimits", "--replay", str(tmp_path / "missing.jsonl")]) == 2
    empty = State(tmp_path)
    store = StateStore(tmp_path)
    store.flush_now(empty)
    store.close()
    assert cli(["ratelimits", "--state-dir", str(tmp_path)]) == 1


def _otlp_json(spans) -> bytes:
    """One OTLP/JSON ExportTraceServiceRequest per line (the recording format)."""

    def kv(k, v):
        if isinstance(v, bool):
            return {"key": k, "value": {"boolValue": v}}
        if isinstance(v, int):
            return {"key": k, "value": {"intValue": str(v)}}
        if isinstance(v, list):
            return {"key": k, "value": {"arrayValue": {"values": [{"stringValue": str(x)} for x in v]}}}
        return {"key": k, "value": {"stringValue": str(v)}}

    lines = []
    for i in range(0, len(spans), 500):
        chunk = spans[i : i + 500]
        req = {"resourceSpans": [{
            "resource": {"attributes": [kv("service.name", "api")]},
            "scopeSpans": [{"spans": [{
                "traceId": s.trace_id, "spanId": s.span_id, "name": s.name, "kind": int(s.kind),
                "startTimeUnixNano": str(s.start_ns), "endTimeUnixNano": str(s.end_ns),
                "attributes": [kv(k, v) for k, v in s.attributes.items()],
            } for s in chunk]}],
        }]}
        lines.append(json.dumps(req))
    return ("\n".join(lines) + "\n").encode()


def test_cli_from_replay(tmp_path, capsys):
    rec = tmp_path / "traffic.jsonl"
    rec.write_bytes(_otlp_json(sorted(benign(120), key=lambda s: s.start_ns)))
    code = cli(["ratelimits", "--replay", str(rec), "--format", "aws", "--state-dir", str(tmp_path / "st")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "/orders/{id}/GET" in json.loads(out)["apiStages"][0]["throttle"]
