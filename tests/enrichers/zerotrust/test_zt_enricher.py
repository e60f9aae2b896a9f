"""The zero-trust enricher on Calls built from spans: each finding, verdicts, reload."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jwt
import pytest

from agent.model import Call, Finding, Resource, SpanKind, make_span
from agent.state import State
from enrichers.zerotrust import ZeroTrustEnricher
from enrichers.zerotrust.policy import parse_policy_text
from tests.enrichers.zerotrust.calls import T0, egress_call, ingress_call, internal_call, span

POLICY = """
version: 1
settings:
  enduser_header: x-user-id
  audiences:
    orders: [api://orders]
identities:
  web: {service: web}
  office: {cidr: [10.20.0.0/16]}
  stripe: {host: ["*.stripe.com"]}
rules:
  - id: web-orders
    from: web
    to: orders
    endpoints: ["GET /orders/{id}", "POST /orders"]
    require: {auth: [jwt], tls: true}
  - id: orders-payments
    from: orders
    to: payments
    require: {auth: any, enduser: true}
  - id: office-admin
    from: office
    to: admin
egress:
  - {id: pay-stripe, from: payments, hosts: [stripe]}
ingress: [web]
sensitive:
  - {to: payments, types: [credit_card]}
"""

SECRET_JWT_KEY = "a-very-long-random-signing-key-nobody-would-guess-0123456789"


def good_jwt(**claims: object) -> str:
    body = {"sub": "u1", "aud": "api://orders", "exp": T0 // 10**9 + 3600, **claims}
    return jwt.encode(body, SECRET_JWT_KEY, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def run(enricher: ZeroTrustEnricher, calls: list[Call], state: State | None = None,
        sensitive: dict[str, list[object]] | None = None) -> tuple[list[Finding], State]:
    state = state or State()
    state.batch.clear()
    state.batch.calls.extend(calls)
    state.batch.sensitive.update(sensitive or {})
    spans = [s for c in calls for s in (c.client_span, c.server_span) if s is not None]
    out = list(enricher.process(spans, state))
    return out, state


def enricher(text: str = POLICY) -> ZeroTrustEnricher:
    return ZeroTrustEnricher(None, policy=parse_policy_text(text, "policy.yaml"))


def rules(findings: list[Finding]) -> list[str]:
    return sorted(f.rule for f in findings)


def test_allowed_call_is_allowed_and_silent() -> None:
    e = enricher()
    calls = [internal_call("web", "orders", route="/orders/{id}", path="/orders/7", headers=bearer(good_jwt()))]
    out, state = run(e, calls)
    assert out == []
    assert state.parts["zerotrust"].verdict("web", "orders", "http") == "allowed"


def test_unlisted_edge() -> None:
    e = enricher()
    c = internal_call("payments", "orders", headers=bearer(good_jwt()))
    out, state = run(e, [c, internal_call("payments", "orders", headers=bearer(good_jwt()))])
    assert rules(out) == ["zerotrust.unlisted_edge"]
    f = out[0]
    assert (f.subject.client, f.subject.server) == ("payments", "orders")
    assert f.count == 2 and len(f.trace_ids) == 2 and f.first_seen_ns == T0
    assert f.owasp == "API5:2023"
    assert f.evidence["policy_rule"] == {"default_action": "alert"}
    assert state.parts["zerotrust"].verdict("payments", "orders") == "violation"


def test_endpoint_outside_rule() -> None:
    out, _ = run(enricher(), [internal_call("web", "orders", method="DELETE", route="/orders/{id}",
                                             headers=bearer(good_jwt()))])
    assert rules(out) == ["zerotrust.endpoint_not_allowed"]
    f = out[0]
    assert (f.subject.method, f.subject.route) == ("DELETE", "/orders/{id}")
    assert f.evidence["policy_rule"]["id"] == "web-orders"
    assert f.evidence["policy_rule"]["line"] == 12


def test_missing_auth_and_wrong_scheme() -> None:
    e = enricher()
    out, _ = run(e, [internal_call("web", "orders", headers={"user-agent": "x"})])
    assert rules(out) == ["zerotrust.missing_auth"]
    assert out[0].owasp == "API2:2023" and out[0].evidence["seen"] == []
    out, _ = run(e, [internal_call("web", "orders", headers={"authorization": "Basic dTpw"})])
    assert rules(out) == ["zerotrust.missing_auth"]
    assert out[0].evidence["seen"] == ["basic"] and out[0].evidence["required"] == ["jwt"]


def test_plaintext_where_tls_required() -> None:
    out, _ = run(enricher(), [internal_call("web", "orders", scheme="http", headers=bearer(good_jwt()))])
    assert rules(out) == ["zerotrust.plaintext"]


def test_identity_not_propagated() -> None:
    e = enricher()
    out, _ = run(e, [internal_call("orders", "payments", route="/pay", headers=bearer(good_jwt(aud="payments")))])
    assert rules(out) == ["zerotrust.identity_not_propagated"]
    hdr = {**bearer(good_jwt(aud="payments")), "x-user-id": "u1"}
    out, _ = run(e, [internal_call("orders", "payments", route="/pay", headers=hdr)])
    assert out == []


def test_unexpected_egress_with_host_and_allowed_egress() -> None:
    e = enricher()
    out, state = run(e, [egress_call("payments", "api.stripe.com"), egress_call("orders", "evil.example.net")])
    assert rules(out) == ["zerotrust.unexpected_egress"]
    assert out[0].subject.host == "evil.example.net"
    assert state.parts["zerotrust"].verdict("payments", "ext:api.stripe.com") == "allowed"


def test_unexpected_ingress_and_cidr_identity() -> None:
    e = enricher()
    out, _ = run(e, [ingress_call("203.0.113.9", "orders"), ingress_call("203.0.113.9", "web"),
                     ingress_call("10.20.3.4", "admin")])
    assert rules(out) == ["zerotrust.unexpected_ingress"]
    assert out[0].subject.server == "orders" and out[0].owasp == "API5:2023"


def test_sensitive_types_per_destination() -> None:
    e = enricher()
    ok = internal_call("orders", "payments", route="/pay", headers={**bearer(good_jwt(aud="payments")), "x-user-id": "u"})
    bad = internal_call("orders", "payments", route="/pay", headers={**bearer(good_jwt(aud="payments")), "x-user-id": "u"})
    sens = {ok.server_span.span_id: [{"type": "credit_card"}],  # type: ignore[union-attr]
            bad.server_span.span_id: [{"type": "ssn"}, {"type": "credit_card"}]}  # type: ignore[union-attr]
    out, _ = run(e, [ok, bad], sensitive=sens)  # type: ignore[arg-type]
    assert rules(out) == ["zerotrust.sensitive_data_not_allowed"]
    assert out[0].evidence["types"] == ["ssn"]


def test_unknown_when_headers_not_captured_with_one_hint() -> None:
    e = enricher()
    calls = [internal_call("web", "orders") for _ in range(3)]  # no headers captured
    out, state = run(e, calls)
    assert rules(out) == ["zerotrust.evidence_unavailable"]
    hint = out[0]
    assert hint.severity.label == "info"
    assert hint.evidence["setting"].startswith("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=authorization")
    assert state.parts["zerotrust"].verdict("web", "orders") == "unknown"
    out, _ = run(e, [internal_call("web", "orders")], state)
    assert out == []  # told once


def test_no_policy_verdicts_unknown_token_checks_still_run() -> None:
    e = ZeroTrustEnricher(None)
    none_tok = jwt.encode({"sub": "x"}, None, algorithm="none")
    out, state = run(e, [internal_call("a", "b", headers=bearer(none_tok))])
    assert rules(out) == ["zerotrust.jwt_alg_none"]
    assert state.parts["zerotrust"].verdict("a", "b") == "unknown"


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_token_checks() -> None:
    e = ZeroTrustEnricher(None, policy=parse_policy_text(POLICY))
    expired = good_jwt(exp=T0 // 10**9 - 3600)
    weak = jwt.encode({"sub": "u", "aud": "api://orders"}, "your-256-bit-secret", algorithm="HS256")
    wrong_aud = good_jwt(aud="api://billing")
    calls = [
        internal_call("web", "orders", headers=bearer(expired)),
        internal_call("web", "orders", headers=bearer(expired), status=401),
        internal_call("web", "orders", headers=bearer(weak)),
        internal_call("web", "orders", headers=bearer(wrong_aud)),
    ]
    out, _ = run(e, calls)
    by_rule = {f.rule: f for f in out}
    assert set(by_rule) == {"zerotrust.jwt_expired_accepted", "zerotrust.jwt_weak_secret",
                            "zerotrust.jwt_audience_mismatch"}
    assert by_rule["zerotrust.jwt_expired_accepted"].count == 1  # the 401 is fine
    assert by_rule["zerotrust.jwt_weak_secret"].severity.label == "critical"
    assert by_rule["zerotrust.jwt_audience_mismatch"].evidence["aud"] == ["api://billing"]
    for f in out:
        text = repr(f)
        assert weak not in text and expired not in text and wrong_aud not in text


def test_no_audience_guess_without_configured_audiences() -> None:
    # An issuer's audience names an API (acme-web, https://api.example.com), rarely the
    # service: without settings.audiences there is nothing to compare it with.
    e = ZeroTrustEnricher(None)
    tokens = [jwt.encode({"aud": aud}, SECRET_JWT_KEY, algorithm="HS256")
              for aud in ("https://inventory.internal/", "billing-api", "acme-web")]
    out, _ = run(e, [internal_call("a", "inventory", headers=bearer(t)) for t in tokens])
    assert "zerotrust.jwt_audience_mismatch" not in rules(out)


def test_stale_token_sent_to_a_login_route_is_not_accepted_expired() -> None:
    e = ZeroTrustEnricher(None)
    expired = good_jwt(exp=T0 // 10**9 - 3600)
    login = internal_call("web", "users", method="POST", route="/login", path="/login", headers=bearer(expired))
    out, _ = run(e, [login])
    assert "zerotrust.jwt_expired_accepted" not in rules(out)
    out, _ = run(ZeroTrustEnricher(None), [internal_call("web", "users", headers=bearer(expired))])
    f = [x for x in out if x.rule == "zerotrust.jwt_expired_accepted"]
    assert f and f[0].evidence["route"] == "/orders/{id}"


def test_token_reuse_across_clients_keeps_only_hashes() -> None:
    e = ZeroTrustEnricher(None)
    tok = good_jwt()
    state = State()
    out, _ = run(e, [internal_call("web", "orders", headers=bearer(tok)),
                     internal_call("web", "orders", headers=bearer(tok))], state)
    assert out == []
    out, _ = run(e, [internal_call("batch", "orders", headers=bearer(tok))], state)
    assert rules(out) == ["zerotrust.token_reuse"]
    assert out[0].evidence["clients"] == ["web", "batch"]
    snap = repr(state.parts["zerotrust"].snapshot())
    assert tok not in snap and tok.split(".")[2] not in snap


def test_server_spans_without_calls_get_token_checks() -> None:
    e = ZeroTrustEnricher(None)
    state = State()
    none_tok = jwt.encode({"sub": "x"}, None, algorithm="none")
    s = span("orders", SpanKind.SERVER, {"http.request.method": "GET", "url.path": "/",
                                           "http.request.header.authorization": [f"Bearer {none_tok}"]})
    out = list(e.process([s], state))
    assert rules(out) == ["zerotrust.jwt_alg_none"]


def test_report_and_snapshot_restore() -> None:
    e = enricher()
    _, state = run(e, [internal_call("payments", "orders", headers=bearer(good_jwt())),
                       internal_call("web", "orders", route="/orders/{id}", headers=bearer(good_jwt()))])
    part = state.parts["zerotrust"]
    rep = {(r["client"], r["server"]): r for r in part.report()}
    assert rep[("payments", "orders")]["verdict"] == "violation"
    assert rep[("payments", "orders")]["rules"] == ["zerotrust.unlisted_edge"]
    assert rep[("web", "orders")]["verdicts"] == {"allowed": 1, "violation": 0, "unknown": 0}
    from enrichers.zerotrust.state import ZeroTrustState

    again = ZeroTrustState("")
    again.restore(part.snapshot())
    assert again.report()[0]["count"] == 1


def test_reload_on_file_change_and_bad_file_keeps_old(tmp_path: Path) -> None:
    from agent.config import Config

    path = tmp_path / "apiward-policy.yaml"
    path.write_text("version: 1\nrules:\n  - {from: a, to: b}\n")
    e = ZeroTrustEnricher(Config(state_dir=tmp_path, policy=str(path)))
    state = State()
    out, _ = run(e, [internal_call("a", "b"), internal_call("a", "c")], state)
    assert [f.rule for f in out if f.rule != "zerotrust.evidence_unavailable"] == ["zerotrust.unlisted_edge"]
    assert state.parts["zerotrust"].verdict("a", "c") == "violation"

    path.write_text("version: 1\nrules:\n  - {from: a, to: '*'}\n")
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert list(e.tick(time.time_ns(), state)) == []
    assert state.parts["zerotrust"].verdict("a", "c") == "unknown"  # counts start again
    out, _ = run(e, [internal_call("a", "c")], state)
    assert out == [] and state.parts["zerotrust"].verdict("a", "c") == "allowed"

    path.write_text("version: 1\nrules:\n  - {from: a}\n")
    os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
    out = list(e.tick(time.time_ns(), state))
    assert [f.rule for f in out] == ["zerotrust.policy_invalid"]
    assert f"{path}:3:" in out[0].explanation and "'to' is a required property" in out[0].explanation
    assert list(e.tick(time.time_ns(), state)) == []  # said once, not every tick
    out, _ = run(e, [internal_call("a", "c")], state)
    assert out == []  # the old policy is still in force
    assert e.reload() is False  # SIGHUP with the bad file: still the old one


def test_bad_policy_at_startup_is_a_config_error(tmp_path: Path) -> None:
    from agent.config import Config, ConfigError

    path = tmp_path / "p.yaml"
    path.write_text("version: 1\ndefault_action: maybe\n")
    with pytest.raises(ConfigError, match=r"p.yaml:2: default_action"):
        ZeroTrustEnricher(Config(state_dir=tmp_path, policy=str(path)))


def test_identities_namespace_service_account_and_spiffe() -> None:
    text = """
version: 1
identities:
  orders-prod: {service: orders, namespace: prod}
  batch-sa: {k8s_service_account: batch}
  mesh: {spiffe: "spiffe://cluster.local/ns/shop/*"}
rules:
  - {from: batch-sa, to: orders-prod}
  - {from: mesh, to: orders-prod}
"""
    e = enricher(text)
    sa = internal_call("batch", "orders", server_namespace="prod",
                       client_resource={"k8s.serviceaccount.name": "batch"})
    mesh = internal_call("web", "orders", server_namespace="prod",
                         client_resource={"spiffe.id": "spiffe://cluster.local/ns/shop/sa/web"})
    wrong_ns = internal_call("batch", "orders", server_namespace="dev",
                             client_resource={"k8s.serviceaccount.name": "batch"})
    out, state = run(e, [sa, mesh, wrong_ns])
    part = state.parts["zerotrust"]
    assert part.edges["batch->orders/http"].verdicts == {"allowed": 1, "violation": 1}
    assert part.verdict("web", "orders") == "allowed"


def test_calls_without_a_resource_namespace_do_not_break() -> None:
    s = make_span(trace_id="1" * 32, span_id="2" * 16, parent_span_id="", resource=Resource("x"),
                  name="n", kind=SpanKind.SERVER, start_ns=1, end_ns=2)
    out = list(ZeroTrustEnricher(None).process([s], State()))
    assert out == []
