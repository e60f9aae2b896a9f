"""Each abuse detection: a positive case and a near miss, with span-time windows."""

from __future__ import annotations

from agent.model import SpanEvent
from tests.enrichers.abuse.spans import Runner, benign, client, db, server

WARM = 75.0  # seconds of benign traffic before an attack (past the warm-up)


def _run(attack: list, *, warm: float = WARM, **settings) -> Runner:
    r = Runner(**settings)
    r.feed(benign(warm + 40) + attack)
    return r


# ------------------------------------------------------------------ floods and bots
def test_client_rate_spike_and_missing_rate_limit():
    attack = [server(WARM + i * 0.02, "/products", route="/products", ip="192.0.2.66") for i in range(400)]
    r = _run(attack)
    f = r.findings("abuse.client_rate_spike")
    assert f and f[0].subject.client == "ip:192.0.2.66"
    assert f[0].evidence["observed_per_window"] >= 100 and "baseline_p99_per_client_per_window" in f[0].evidence
    assert r.findings("abuse.rate_limit_missing")
    assert len(f) == 1 and f[0].count == 400  # one finding for the whole attack


def test_client_spike_near_miss_is_quiet_and_429_means_limited():
    calm = [server(WARM + i * 0.2, "/products", route="/products", ip="192.0.2.66") for i in range(60)]
    assert not _run(calm).findings("abuse.client_rate_spike")
    limited = [server(WARM + i * 0.02, "/products", route="/products", ip="192.0.2.66",
                      status=429 if i > 50 else 200) for i in range(400)]
    r = _run(limited)
    assert r.findings("abuse.client_rate_spike") and not r.findings("abuse.rate_limit_missing")


def test_endpoint_flood_from_many_clients():
    attack = [server(WARM + i * 0.005, "/products", route="/products", ip=f"192.0.2.{i % 250}") for i in range(2000)]
    assert _run(attack).findings("abuse.endpoint_flood")
    mild = [server(WARM + i * 0.1, "/products", route="/products", ip=f"192.0.2.{i % 250}") for i in range(100)]
    assert not _run(mild).findings("abuse.endpoint_flood")


def test_headless_client():
    attack = [server(WARM + i, "/products", route="/products", ip="192.0.2.7", ua="Mozilla/5.0 HeadlessChrome/120")
              for i in range(8)]
    assert _run(attack).findings("abuse.headless_client")
    browser = [server(WARM + i, "/products", route="/products", ip="192.0.2.7") for i in range(8)]
    assert not _run(browser).findings("abuse.headless_client")


def test_metronome_cadence():
    attack = [server(WARM + i * 0.25, "/products", route="/products", ip="192.0.2.8") for i in range(80)]
    assert _run(attack).findings("abuse.metronome_client")
    import random

    rnd = random.Random(3)
    t, human = WARM, []
    for _ in range(80):
        t += rnd.expovariate(4.0)
        human.append(server(t, "/products", route="/products", ip="192.0.2.8"))
    assert not _run(human).findings("abuse.metronome_client")


def test_scraping_many_distinct_resources():
    attack = [server(WARM + i * 0.01, f"/catalog/item-{i}x{i % 7}", ip="192.0.2.9") for i in range(600)]
    assert _run(attack).findings("abuse.scraping")
    few = [server(WARM + i * 0.1, f"/catalog/item-{i % 20}x1", ip="192.0.2.9") for i in range(100)]
    assert not _run(few).findings("abuse.scraping")


# ------------------------------------------------------------------ API1
def test_bola_sequential_enumeration():
    attack = [server(WARM + i * 0.1, f"/orders/{5000 + i}", route="/orders/{id}", user="u3",
                     headers={"authorization": "Bearer tok-3"}, status=403 if i % 2 else 200) for i in range(60)]
    f = _run(attack).findings("abuse.bola_enumeration")
    assert f and f[0].subject.client == "user:u3" and f[0].owasp == "API1:2023"
    assert f[0].evidence["distinct_object_ids"] >= 25 and f[0].trace_ids


def test_bola_near_miss_own_objects():
    own = [server(WARM + i * 0.1, f"/orders/{1030 + i % 3}", route="/orders/{id}", user="u3",
                  headers={"authorization": "Bearer tok-3"}) for i in range(60)]
    assert not _run(own).findings("abuse.bola_enumeration")


def test_bola_foreign_principal_in_path():
    hdr = {"authorization": "Bearer tok-9"}
    attack = [server(WARM + i, f"/users/{name}/profile", route="/users/{username}/profile", user="alice", headers=hdr)
              for i, name in enumerate(["bob", "carol", "dave"])]
    assert _run(attack).findings("abuse.bola_foreign_object")
    own = [server(WARM + i, "/users/alice/profile", route="/users/{username}/profile", user="alice", headers=hdr)
           for i in range(3)]
    assert not _run(own).findings("abuse.bola_foreign_object")


# ------------------------------------------------------------------ API2
def test_credential_stuffing_single_client():
    attack = [server(WARM + i * 0.2, "/login", route="/login", method="POST", ip="192.0.2.10", status=401)
              for i in range(40)]
    f = _run(attack).findings("abuse.credential_stuffing")
    assert f and f[0].subject.client == "ip:192.0.2.10"
    few = [server(WARM + i, "/login", route="/login", method="POST", ip="192.0.2.10", status=401) for i in range(3)]
    assert not _run(few).findings("abuse.credential_stuffing")


def test_credential_stuffing_distributed():
    attack = [server(WARM + i * 0.05, "/login", route="/login", method="POST", ip=f"192.0.2.{i % 200}", status=401)
              for i in range(150)]
    f = _run(attack).findings("abuse.credential_stuffing")
    assert any(x.subject.detail == "distributed" for x in f)


def test_credentials_in_url():
    r = _run([server(WARM, "/products", route="/products", query="q=shoes&api_key=abc123")])
    f = r.findings("abuse.credentials_in_url")
    assert f and "abc123" not in str(f[0].evidence) and f[0].evidence["parameters"] == ["api_key"]
    assert not _run([server(WARM, "/products", route="/products", query="q=shoes&page=2")]).findings(
        "abuse.credentials_in_url")


def test_missing_credentials_on_usually_authenticated_route():
    anon = [server(WARM + i, f"/orders/{1000 + i}", route="/orders/{id}", ip="192.0.2.11", headers={"accept": "*/*"})
            for i in range(2)]
    f = _run(anon).findings("abuse.missing_credentials")
    assert f and f[0].evidence["baseline_share_with_credentials"] > 0.98
    denied = [server(WARM + i, f"/orders/{1000 + i}", route="/orders/{id}", ip="192.0.2.11",
                     headers={"accept": "*/*"}, status=401) for i in range(2)]
    assert not _run(denied).findings("abuse.missing_credentials")


# ------------------------------------------------------------------ API3
def test_mass_assignment():
    r = _run([server(WARM, "/users/u1", route="/users/{id}", method="PATCH", user="u1",
                     body='{"name": "x", "is_admin": true}')])
    f = r.findings("abuse.mass_assignment")
    assert f and f[0].evidence["fields"] == ["is_admin"]
    assert not _run([server(WARM, "/users/u1", route="/users/{id}", method="PATCH", user="u1",
                            body='{"name": "x", "nickname": "y"}')]).findings("abuse.mass_assignment")


# ------------------------------------------------------------------ API4
def test_large_response_and_page_size():
    r = _run([server(WARM, "/export", route="/export", size=50_000_000),
              server(WARM + 1, "/products", route="/products", query="limit=100000")])
    assert r.findings("abuse.large_response") and r.findings("abuse.unbounded_page_size")
    r = _run([server(WARM, "/export", route="/export", size=50_000),
              server(WARM + 1, "/products", route="/products", query="limit=50")])
    assert not r.findings("abuse.large_response") and not r.findings("abuse.unbounded_page_size")


def test_latency_anomaly():
    slow = [server(WARM + i * 0.5, "/products", route="/products", dur_ms=9000) for i in range(15)]
    assert _run(slow).findings("abuse.latency_anomaly")
    ok = [server(WARM + i * 0.5, "/products", route="/products", dur_ms=30) for i in range(15)]
    assert not _run(ok).findings("abuse.latency_anomaly")


def test_error_rate_anomaly():
    errs = [server(WARM + i * 0.04, "/products", route="/products", status=503, ip=f"192.0.2.{i % 50}")
            for i in range(150)]
    assert _run(errs).findings("abuse.error_rate_anomaly")


# ------------------------------------------------------------------ API5
def _admin_base(until: float) -> list:
    return [server(t, "/admin/users", route="/admin/users", user="root", headers={"authorization": "Bearer r"})
            for t in range(0, int(until), 2)]


def test_admin_route_unusual_caller():
    r = Runner()
    r.feed(benign(WARM + 40) + _admin_base(WARM) + [
        server(WARM + 10, "/admin/users", route="/admin/users", user="u5", headers={"authorization": "Bearer x"})])
    f = r.findings("abuse.admin_unusual_caller")
    assert f and f[0].subject.client == "user:u5"
    r = Runner()
    r.feed(benign(WARM + 40) + _admin_base(WARM + 20))
    assert not r.findings("abuse.admin_unusual_caller")


def test_method_escalation_delete_by_reader():
    attack = [server(WARM + 5, "/orders/1001", route="/orders/{id}", method="DELETE", user="u0",
                     headers={"authorization": "Bearer tok-0"})]
    f = _run(attack).findings("abuse.method_escalation")
    assert f and f[0].subject.client == "user:u0"
    # PUT is something many callers of this route do: not a privilege.
    put = [server(WARM + 5, "/orders/1001", route="/orders/{id}", method="PUT", user="u0",
                  headers={"authorization": "Bearer tok-0"})]
    assert not _run(put).findings("abuse.method_escalation")


# ------------------------------------------------------------------ API6
def test_business_flow_burst_from_tool():
    attack = [server(WARM + i * 0.3, "/signup", route="/signup", method="POST", ip="192.0.2.12",
                     ua="python-requests/2.31") for i in range(25)]
    f = _run(attack).findings("abuse.business_flow_burst")
    assert f and f[0].evidence["flow"] == "signup"
    human = [server(WARM + i * 4, "/signup", route="/signup", method="POST", ip="192.0.2.12") for i in range(3)]
    assert not _run(human).findings("abuse.business_flow_burst")


# ------------------------------------------------------------------ API7
def test_ssrf_param_then_outbound_in_either_order():
    for reverse in (False, True):
        tr = "ab" * 16
        spans = [server(WARM, "/fetch", route="/fetch", query="url=http://169.254.169.254/latest/meta-data", trace=tr),
                 client(WARM + 0.01, "http://169.254.169.254/latest/meta-data", trace=tr)]
        r = Runner()
        r.feed(benign(WARM))
        r.feed(spans[::-1] if reverse else spans, batch=1)
        f = r.findings("abuse.ssrf")
        assert f and f[0].evidence["internal_host"] is True


def test_ssrf_near_miss_other_host_or_trace():
    tr = "cd" * 16
    r = Runner()
    r.feed([server(10, "/fetch", route="/fetch", query="url=https://example.com/a.png", trace=tr),
            client(10.01, "https://cdn.example.net/a.png", trace=tr),
            client(10.02, "https://example.com/a.png", trace="ef" * 16)])
    assert not r.findings("abuse.ssrf")


# ------------------------------------------------------------------ API8
def test_error_disclosure_stack_trace_and_sql():
    body = 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\nKeyError'
    r = Runner()
    r.feed([server(1, "/orders/1", route="/orders/{id}", status=500, resp_body=body),
            server(2, "/search", route="/search", status=500, events=(SpanEvent("exception", 0, {
                "exception.type": "ProgrammingError",
                "exception.message": 'syntax error at or near "OR" LINE 1: SELECT * FROM items WHERE'}),))])
    subs = {f.subject.route for f in r.findings("abuse.error_disclosure")}
    assert subs == {"/orders/{id}", "/search"}
    r = Runner()
    r.feed([server(1, "/orders/1", route="/orders/{id}", status=500, resp_body='{"error": "internal"}'),
            server(2, "/search", route="/search", status=500, events=(SpanEvent("exception", 0, {
                "exception.type": "TimeoutError", "exception.message": "upstream timed out"}),))])
    assert not r.findings("abuse.error_disclosure")


def test_debug_endpoint_exposed():
    r = Runner()
    r.feed([server(1, "/actuator/env", route="/actuator/env"), server(2, "/debug/pprof/heap")])
    assert {f.subject.route for f in r.findings("abuse.debug_endpoint_exposed")} == {"/actuator/env", "/debug/pprof/heap"}
    r = Runner()
    r.feed([server(1, "/actuator/env", route="/actuator/env", status=404), server(2, "/debugging-tips")])
    assert not r.findings("abuse.debug_endpoint_exposed")


def test_cors_and_security_headers():
    # x-frame-options captured: the capture covers security headers, so nosniff's absence counts
    bad = {"access-control-allow-origin": "*", "access-control-allow-credentials": "true",
           "x-frame-options": "DENY"}
    r = Runner()
    r.feed([server(1, "/me", route="/me", resp_headers=bad)])
    assert r.findings("abuse.cors_wildcard_credentials") and r.findings("abuse.missing_security_headers")
    # near misses: only content-type captured (no evidence either way); a service caller
    r = Runner()
    r.feed([server(1, "/me", route="/me", resp_headers={"content-type": "application/json"}),
            server(1, "/internal/stock", route="/internal/stock", ip="10.0.0.7", ua="Go-http-client/1.1",
                   resp_headers={"x-frame-options": "DENY"})])
    assert not r.findings("abuse.missing_security_headers")
    good = {"access-control-allow-origin": "https://app.example.com", "access-control-allow-credentials": "true",
            "x-content-type-options": "nosniff", "strict-transport-security": "max-age=31536000"}
    r = Runner()
    r.feed([server(1, "/me", route="/me", resp_headers=good, headers={"origin": "https://app.example.com"})])
    assert not r.findings("abuse.cors_wildcard_credentials") and not r.findings("abuse.missing_security_headers")


def test_plaintext_public_edge():
    r = Runner()
    r.feed([server(1, "/me", route="/me", scheme="http", ip="81.2.69.160")])
    assert r.findings("abuse.plaintext_public_edge")
    r = Runner()
    r.feed([server(1, "/me", route="/me", scheme="http", ip="10.1.2.3"),
            server(2, "/me", route="/me", scheme="http", ip="81.2.69.160", headers={"x-forwarded-proto": "https"})])
    assert not r.findings("abuse.plaintext_public_edge")


# ------------------------------------------------------------------ API9
def test_old_version_still_called():
    r = Runner()
    r.feed([server(1, "/api/v2/users/7", route="/api/v2/users/{userId}"),
            server(2, "/api/v1/users/7", route="/api/v1/users/{id}")])
    f = r.findings("abuse.old_api_version")
    assert f and f[0].subject.route == "/api/v1/users/{id}" and f[0].evidence["newest_version"] == 2
    r = Runner()
    r.feed([server(1, "/api/v2/users/7", route="/api/v2/users/{id}"),
            server(2, "/api/v1/orders/7", route="/api/v1/orders/{id}")])
    assert not r.findings("abuse.old_api_version")


# ------------------------------------------------------------------ API10
def test_plaintext_third_party():
    r = Runner()
    r.feed([client(1, "http://api.partner-payments.com/charge", trace="11" * 16)])
    assert r.findings("abuse.plaintext_third_party")
    r = Runner()
    r.feed([client(1, "https://api.partner-payments.com/charge", trace="12" * 16),
            client(2, "http://users.shop.svc.cluster.local/u/1", trace="13" * 16)])
    assert not r.findings("abuse.plaintext_third_party")


def test_injection_reaches_db_in_either_order():
    for reverse in (False, True):
        tr = ("14" if reverse else "15") * 16
        spans = [server(1, "/search", route="/search", query="q=%27%20OR%20%271%27%3D%271", trace=tr),
                 db(1.01, "SELECT * FROM items WHERE name = '' OR '1'='1'", trace=tr)]
        r = Runner()
        r.feed(spans[::-1] if reverse else spans, batch=1)
        f = r.findings("abuse.injection_reaches_db")
        assert f and f[0].owasp == "API10:2023" and f[0].evidence["kind"] == "tautology"


def test_injection_near_miss_parameterised_statement():
    tr = "16" * 16
    r = Runner()
    r.feed([server(1, "/search", route="/search", query="q=%27%20OR%20%271%27%3D%271", trace=tr),
            db(1.01, "SELECT * FROM items WHERE name = $1", trace=tr)])
    assert not r.findings("abuse.injection_reaches_db")


def test_benign_traffic_is_quiet():
    r = Runner()
    r.feed(benign(300, seed=7))
    assert r.findings() == []
