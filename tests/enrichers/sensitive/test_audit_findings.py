"""Finding gaps an audit found: topics taken for hosts, issued session cookies taken for
excessive exposure, findings of untemplated paths missing from their endpoint, and the
catalogue (docs/findings.md) disagreeing with the code. Real enrichers, real State."""

from __future__ import annotations

import re
from pathlib import Path

from agent.config import Config
from agent.model import Resource, SpanKind, make_span
from agent.report import endpoint_view
from agent.state import State
from enrichers.inventory import InventoryEnricher
from enrichers.sensitive.enricher import SensitiveDataEnricher

RES = Resource.from_attributes({"service.name": "shop"})
ROOT = Path(__file__).resolve().parents[3]


def span(kind: SpanKind, attrs: dict, sid: str = "b" * 16, name: str = "op") -> object:
    return make_span(trace_id="a" * 32, span_id=sid, parent_span_id="", resource=RES, name=name,
                     kind=kind, start_ns=10, end_ns=20, attributes=attrs)


def run(tmp_path: Path, *spans: object) -> tuple[State, list]:
    state = State(tmp_path)
    enr = SensitiveDataEnricher(Config(state_dir=tmp_path))
    return state, list(enr.process(list(spans), state))  # type: ignore[arg-type]


def by_rule(findings: list, rule: str) -> list:
    return [f for f in findings if f.rule == rule]


# ------------------------------------------------- 1. topics are not hosts
def test_topic_with_a_dot_is_not_an_external_host(tmp_path: Path) -> None:
    s = span(SpanKind.PRODUCER, {"messaging.system": "kafka", "messaging.destination.name": "orders.created",
                                 "messaging.message.body": '{"email": "jane@example.org"}'})
    state, findings = run(tmp_path, s)
    assert state.batch.sensitive["b" * 16]  # detected...
    assert by_rule(findings, "sensitive.external_transfer") == []  # ...but no host to judge


def test_broker_at_an_external_address_is_judged(tmp_path: Path) -> None:
    s = span(SpanKind.PRODUCER, {"messaging.system": "kafka", "messaging.destination.name": "orders.created",
                                 "server.address": "broker.saas-queue.com",
                                 "messaging.message.body": '{"email": "jane@example.org"}'})
    _state, findings = run(tmp_path, s)
    ext = by_rule(findings, "sensitive.external_transfer")
    assert len(ext) == 1 and ext[0].subject.server == "orders.created"
    assert "broker.saas-queue.com" in ext[0].explanation


def test_database_system_name_is_not_a_host_but_its_address_is(tmp_path: Path) -> None:
    body = {"db.system": "postgresql", "db.statement": "INSERT INTO users VALUES ('jane@example.org')"}
    internal = span(SpanKind.CLIENT, {**body, "server.address": "db.svc.cluster.local"})
    external = span(SpanKind.CLIENT, {**body, "server.address": "db.hosted-sql.com"}, sid="c" * 16)
    _state, findings = run(tmp_path, internal, external)
    ext = by_rule(findings, "sensitive.external_transfer")
    assert [f.subject.server for f in ext] == ["db.hosted-sql.com"]


# ------------------------------------------------- 2. issued credentials are not over-exposure
def login(attrs: dict, route: str = "/login") -> object:
    return span(SpanKind.SERVER, {"http.request.method": "POST", "url.scheme": "https", "http.route": route,
                                  "http.response.status_code": 200, **attrs})


def test_session_cookie_of_a_login_is_not_excessive_exposure(tmp_path: Path) -> None:
    s = login({"http.response.header.set-cookie": ["session=Zx9Qm2Lr8TtB4vWc7NkPj3Hs; HttpOnly; Secure"]})
    state, findings = run(tmp_path, s)
    assert any(d.type == "GENERIC_SECRET" for d in state.batch.sensitive["b" * 16])
    assert by_rule(findings, "sensitive.excessive_exposure") == []


def test_token_response_body_is_not_excessive_exposure(tmp_path: Path) -> None:
    s = login({"http.response.body": '{"access_token": "Zx9Qm2Lr8TtB4vWc7NkPj3Hs", "token_type": "Bearer"}'},
              route="/oauth/token")
    _state, findings = run(tmp_path, s)
    assert by_rule(findings, "sensitive.excessive_exposure") == []


def test_personal_data_in_a_login_response_still_is(tmp_path: Path) -> None:
    s = login({"http.response.header.set-cookie": ["session=Zx9Qm2Lr8TtB4vWc7NkPj3Hs; HttpOnly"],
               "http.response.body": '{"ok": true, "ssn": "536-90-4399"}'})
    _state, findings = run(tmp_path, s)
    exp = by_rule(findings, "sensitive.excessive_exposure")
    assert len(exp) == 1 and exp[0].evidence["types"] == {"US_SSN": 1}


def test_credential_in_a_response_of_another_route_still_is(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https", "http.route": "/users/{id}",
                               "http.response.body": '{"id": 7, "api_key": "Zx9Qm2Lr8TtB4vWc7NkPj3Hs"}'})
    _state, findings = run(tmp_path, s)
    exp = by_rule(findings, "sensitive.excessive_exposure")
    assert len(exp) == 1 and exp[0].evidence["types"] == {"GENERIC_SECRET": 1}


# ------------------------------------------------- 3. findings land on their endpoint
def run_with_inventory(tmp_path: Path, *spans: object) -> tuple[State, list]:
    """The sensitive stage, then the inventory, as agent/wiring.py orders them."""
    state = State(tmp_path)
    config = Config(state_dir=tmp_path)
    findings = list(SensitiveDataEnricher(config).process(list(spans), state))  # type: ignore[arg-type]
    findings += list(InventoryEnricher(config).process(list(spans), state))  # type: ignore[arg-type]
    for f in findings:
        state.findings.add(f)
    return state, findings


def test_finding_of_an_untemplated_path_names_the_inventory_endpoint(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https",
                               "url.path": "/users/jose@example.com/cards/4111111111111111"})
    state, findings = run_with_inventory(tmp_path, s)
    pii = by_rule(findings, "sensitive.pii_in_url")
    ep = state.batch.endpoints["b" * 16]
    assert ep.route == "/users/{email}/cards/{id}"
    assert len(pii) == 1 and pii[0].subject.route == ep.route and pii[0].subject.method == "GET"
    view = endpoint_view(state, "shop", "GET", ep.route)
    assert view is not None and "sensitive.pii_in_url" in {f["rule"] for f in view["findings"]}
    assert set(view["sensitive_types"]) >= {"EMAIL_ADDRESS", "CREDIT_CARD"}


def test_literal_segment_holding_a_value_never_names_the_route(tmp_path: Path) -> None:
    # The templater leaves "+442079460958" literal on first sight; the finding must not.
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https",
                               "url.path": "/v1/lookup/+442079460958/profile"})
    _state, findings = run_with_inventory(tmp_path, s)
    pii = by_rule(findings, "sensitive.pii_in_url")
    assert len(pii) == 1 and pii[0].subject.route == "/v1/lookup/{}/profile"
    assert all("442079460958" not in repr(f) for f in findings if f.rule.startswith("sensitive."))


# ------------------------------------------------- 4. the catalogue says what the code does
def catalogue() -> dict[str, tuple[str, str]]:
    rows = {}
    for line in (ROOT / "docs" / "findings.md").read_text().splitlines():
        m = re.match(r"\| `(sensitive\.[a-z_]+)` \| (\w+) \| ([^|]+) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip())
    return rows


def test_catalogue_matches_default_severity_and_owasp(tmp_path: Path) -> None:
    # One span per rule, each with data that keeps the rule at its default severity
    # (an e-mail address, a phone number; credentials are the exception: they are high by nature).
    spans = [
        span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "http", "http.route": "/a",
                               "server.address": "shop.example.com", "url.query": "email=jane@example.org",
                               "http.response.body": '{"phone": "+44 20 7946 0958"}'}, sid="1" * 16),
        span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https", "http.route": "/b",
                               "url.query": "token=ghp_" + "a" * 36,
                               "http.request.header.authorization": "Bearer Zx9Qm2Lr8TtB4vWc7NkPj3Hs"},
             sid="2" * 16),
        span(SpanKind.CLIENT, {"http.request.method": "POST", "url.full": "https://api.partner.com/x",
                               "server.address": "api.partner.com",
                               "http.request.body": '{"email": "jane@example.org"}'}, sid="3" * 16),
    ]
    _state, findings = run(tmp_path, *spans)
    got = {f.rule: (f.severity.name.lower(), f.owasp or "-") for f in findings}
    docs = catalogue()
    assert set(got) == set(docs)  # every sensitive rule was raised once
    assert got == docs
