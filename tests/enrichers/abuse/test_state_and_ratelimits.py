"""Baselines survive a restart; ``apiward ratelimits`` turns them into configuration."""

from __future__ import annotations

import json
import re

import orjson
import yaml

from agent.cli import main as cli
from agent.state import State, StateStore
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.ratelimits import Recommendation, aws_evidence, recommend, render
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
    assert "limit_req_zone $apiward_client_get" in nginx and "limit_req zone=" in nginx
    aws = json.loads(render(recs, "aws"))
    assert "/orders/{id}/GET" in aws["apiStages"][0]["throttle"]
    assert json.loads(render(recs, "json"))[0]["evidence"]


def _rec(service: str, method: str, route: str, rps: int, burst: int, ep: int) -> Recommendation:
    evidence = {"windows": 8, "window_seconds": 10.0, "requests": 500, "clients_observed": 40,
                "per_client_per_window_p50": 2.0, "per_client_per_window_p99": 9.0,
                "per_client_peak_second_p99": 3.0, "endpoint_peak_second_p99": 20.0, "headroom": 2.0,
                "ever_429": False}
    return Recommendation(service, method, route, rps, burst, ep, evidence)


LONG = "/v1/tenants/{tenant}/projects/{project}/environments/{environment}/deployments"
RECS = [
    _rec("shop", "GET", "/orders/{id}", 5, 12, 80),
    _rec("shop", "PUT", "/orders/{id}", 1, 3, 10),
    _rec("shop", "GET", "/orders/export", 2, 4, 6),
    _rec("shop", "POST", "/login", 1, 5, 30),
    # Slugs that collide once cut to a fixed length, or differ only in punctuation.
    _rec("shop", "GET", LONG + "/{id}/logs", 3, 6, 9),
    _rec("shop", "GET", LONG + "/{id}/events", 4, 8, 12),
    _rec("shop", "GET", "/a-b", 1, 2, 3),
    _rec("shop", "GET", "/a_b", 1, 2, 3),
]


def test_envoy_is_a_complete_local_ratelimit_config():
    doc = yaml.safe_load(render(RECS, "envoy"))
    (flt,) = doc["http_filters"]
    assert flt["name"] == "envoy.filters.http.local_ratelimit"
    typ = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
    assert flt["typed_config"]["@type"] == typ and flt["typed_config"]["stat_prefix"]
    routes = doc["routes"]
    assert len(routes) == len(RECS)
    prefixes = set()
    by_key = {}
    for route in routes:
        method = route["match"]["headers"][0]
        assert method["name"] == ":method"
        regex = route["match"]["safe_regex"]["regex"]
        by_key[(method["string_match"]["exact"], regex)] = route
        assert route["route"]["cluster"] == "shop"
        assert route["route"]["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
        cfg = route["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
        assert cfg["@type"] == typ and len(cfg["stat_prefix"]) >= 1
        prefixes.add(cfg["stat_prefix"])
        for pct in (cfg["filter_enabled"], cfg["filter_enforced"]):
            assert pct["default_value"] == {"numerator": 100, "denominator": "HUNDRED"} and pct["runtime_key"]
        for bucket in (cfg["token_bucket"], cfg["descriptors"][0]["token_bucket"]):
            assert set(bucket) == {"max_tokens", "tokens_per_fill", "fill_interval"}
            assert bucket["fill_interval"] == "1s" and bucket["max_tokens"] >= bucket["tokens_per_fill"] >= 1
        assert cfg["descriptors"][0]["entries"] == [{"key": "remote_address", "value": ""}]
        assert cfg["max_dynamic_descriptors"] >= 1000
    assert len(prefixes) == len(RECS)
    # Per-method limits: the endpoint bucket and each client's bucket.
    get = by_key[("GET", "^/orders/[^/]+$")]["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    put = by_key[("PUT", "^/orders/[^/]+$")]["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    assert get["token_bucket"]["tokens_per_fill"] == 80 and put["token_bucket"]["tokens_per_fill"] == 10
    assert get["descriptors"][0]["token_bucket"] == {"max_tokens": 12, "tokens_per_fill": 5, "fill_interval": "1s"}
    assert put["descriptors"][0]["token_bucket"] == {"max_tokens": 3, "tokens_per_fill": 1, "fill_interval": "1s"}
    # First match wins: the literal /orders/export comes before /orders/{id}.
    regexes = [r["match"]["safe_regex"]["regex"] for r in routes]
    assert regexes.index("^/orders/export$") < regexes.index("^/orders/[^/]+$")


def _nginx_blocks(text: str) -> dict[str, str]:
    """location match -> its body."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^location (.+?) \{\n(.*?)^\}", text, re.M | re.S)}


def test_nginx_one_location_per_route_with_per_method_limits():
    text = render(RECS, "nginx")
    zones = {}
    for m in re.finditer(r"^limit_req_zone (\$\w+) zone=(\w+):\d+[km] rate=(\d+)r/s;$", text, re.M):
        assert m.group(2) not in zones, f"zone {m.group(2)} declared twice"
        zones[m.group(2)] = (m.group(1), int(m.group(3)))
    assert len(zones) == 2 * len(RECS)  # a per-client and a per-endpoint zone each, all distinct
    # var -> (method that gets a key, the key); every other method gets the empty key.
    maps = {v: (m, k) for v, m, k in re.findall(
        r"^map \$request_method (\$\w+) \{\n\s+\"(\w+)\" ([^;]+);\n\s+default \"\";", text, re.M)}
    assert maps["$apiward_client_get"] == ("GET", "$binary_remote_addr")
    assert maps["$apiward_client_put"] == ("PUT", "$binary_remote_addr")
    assert maps["$apiward_endpoint_put"][0] == "PUT" and not maps["$apiward_endpoint_put"][1].startswith("$")
    assert {var for var, _ in zones.values()} <= set(maps)
    blocks = _nginx_blocks(text)
    matches = list(blocks)
    assert len(matches) == len({r.route for r in RECS}) == len(re.findall(r"^location ", text, re.M))
    body = blocks['~ "^/orders/[^/]+$"']
    limits = re.findall(r"limit_req zone=(\w+) burst=(\d+) nodelay;", body)
    assert len(limits) == 4 and "limit_req_status 429;" in body
    used = {zones[z] for z, _ in limits}
    assert used == {("$apiward_client_get", 5), ("$apiward_endpoint_get", 80),
                    ("$apiward_client_put", 1), ("$apiward_endpoint_put", 10)}
    assert {b for _, b in limits} == {"12", "80", "3", "10"}
    for body in blocks.values():
        for z, _ in re.findall(r"limit_req zone=(\w+) burst=(\d+)", body):
            assert z in zones
    assert 'location = "/orders/export"' in text  # exact match: wins over the regex location
    assert '~ "^/v1/tenants/[^/]+/projects/[^/]+/environments/[^/]+/deployments/[^/]+/events$"' in blocks


def test_aws_is_valid_create_usage_plan_input(tmp_path, capsys):
    plan = json.loads(render(RECS, "aws"))
    assert set(plan) <= {"name", "description", "apiStages", "throttle", "quota", "tags"}
    assert plan["name"] and isinstance(plan["description"], str)
    assert set(plan["throttle"]) == {"rateLimit", "burstLimit"}
    (stage,) = plan["apiStages"]
    assert set(stage) == {"apiId", "stage", "throttle"}
    th = stage["throttle"]
    assert th["/orders/{id}/GET"] == {"rateLimit": 5, "burstLimit": 12}
    assert th["/orders/{id}/PUT"] == {"rateLimit": 1, "burstLimit": 3}
    assert all(re.fullmatch(r"/\S*/[A-Z]+", k) for k in th)
    ev = json.loads(aws_evidence(RECS))
    assert ev["shop /orders/{id}/PUT"]["evidence"]["windows"] == 8
    assert ev["shop /orders/{id}/PUT"]["endpoint_rps"] == 10


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
    code = cli(["ratelimits", "--replay", str(rec), "--format", "aws", "--evidence", "--state-dir", str(tmp_path / "st")])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["api /orders/{id}/GET"]["evidence"]["windows"] >= 6
    assert cli(["ratelimits", "--state-dir", str(tmp_path / "st"), "--format", "nginx", "--evidence"]) == 2
    assert "--evidence goes with --format aws" in capsys.readouterr().err
