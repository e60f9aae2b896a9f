"""The sensitive-data enricher on real spans built with make_span."""

from __future__ import annotations

from pathlib import Path

from agent.config import Config
from agent.model import Resource, SpanEvent, SpanKind, make_span
from agent.state import State
from enrichers.sensitive.enricher import SensitiveDataEnricher, SensitiveFacts
from enrichers.sensitive.redaction import redact_span
from tests.enrichers.sensitive.test_recognizers import JWT_HS256

RES = Resource.from_attributes({"service.name": "shop"})


def span(kind: SpanKind, attrs: dict, sid: str = "b" * 16, events: tuple = ()) -> object:
    return make_span(trace_id="a" * 32, span_id=sid, parent_span_id="", resource=RES, name="op",
                     kind=kind, start_ns=10, end_ns=20, attributes=attrs, events=events)


def run(tmp_path: Path, *spans: object) -> tuple[State, list]:
    state = State(tmp_path)
    enr = SensitiveDataEnricher(Config(state_dir=tmp_path))
    findings = list(enr.process(list(spans), state))  # type: ignore[arg-type]
    return state, findings


def rules(findings: list) -> set[str]:
    return {f.rule for f in findings}


def test_pii_and_secret_in_url(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https", "http.route": "/users",
                               "url.path": "/users", "url.query": "email=jane@example.org&token=ghp_" + "a" * 36})
    state, findings = run(tmp_path, s)
    assert {"sensitive.pii_in_url", "sensitive.secret_in_url"} <= rules(findings)
    pii = next(f for f in findings if f.rule == "sensitive.pii_in_url")
    assert pii.subject.route == "/users" and "GDPR" in pii.compliance
    assert pii.evidence["masked"] == ["j***@example.org"]
    dets = state.batch.sensitive["b" * 16]
    assert {d.type for d in dets} == {"EMAIL_ADDRESS", "GITHUB_TOKEN"}
    assert all(d.where == "url.query" and d.direction == "request" for d in dets)


def test_credentials_in_telemetry_and_exception(tmp_path: Path) -> None:
    ev = SpanEvent("exception", 15, {"exception.message": "db login failed: password=Hunter22!"})
    s = span(SpanKind.SERVER, {"http.request.method": "POST", "url.scheme": "https", "http.route": "/login",
                               "http.request.header.authorization": f"Bearer {JWT_HS256}"}, events=(ev,))
    _state, findings = run(tmp_path, s)
    cred = next(f for f in findings if f.rule == "sensitive.credential_in_telemetry")
    assert set(cred.evidence["types"]) == {"JWT", "PASSWORD"}
    assert "event[0]:exception.message" in cred.evidence["locations"]


def test_external_transfer_and_plaintext(tmp_path: Path) -> None:
    ext = span(SpanKind.CLIENT, {"http.request.method": "POST", "url.full": "http://api.partner.com/v1/x",
                                 "server.address": "api.partner.com", "http.request.body": '{"ssn": "536-90-4399"}'})
    internal = span(SpanKind.CLIENT, {"http.request.method": "POST", "url.full": "https://users.svc.cluster.local/x",
                                      "http.request.body": '{"ssn": "536-90-4399"}'}, sid="c" * 16)
    state, findings = run(tmp_path, ext, internal)
    ext_f = [f for f in findings if f.rule == "sensitive.external_transfer"]
    assert len(ext_f) == 1 and ext_f[0].subject.server == "api.partner.com"
    assert ext_f[0].evidence["types"] == {"US_SSN": 1}
    assert any(f.rule == "sensitive.plaintext_http" for f in findings)
    facts: SensitiveFacts = state.parts["sensitive"]
    assert facts.edge_types("shop", "api.partner.com") == {"US_SSN": ["request"]}


def test_excessive_exposure_and_endpoint_facts(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "https", "url.path": "/users/42",
                               "http.response.body": '{"id": 42, "email": "jane@example.org", "ssn": "536-90-4399"}'})
    state, findings = run(tmp_path, s)
    exp = next(f for f in findings if f.rule == "sensitive.excessive_exposure")
    assert exp.owasp == "API3:2023" and set(exp.evidence["types"]) == {"EMAIL_ADDRESS", "US_SSN"}
    facts: SensitiveFacts = state.parts["sensitive"]
    assert facts.types_for("shop", "GET", "/users/{id}") == {"EMAIL_ADDRESS": ["response"], "US_SSN": ["response"]}
    again = SensitiveFacts()
    again.restore(facts.snapshot())
    assert again.types_for("shop", "GET", "/users/:id") == facts.types_for("shop", "GET", "/users/{id}")



def test_excessive_exposure_names_the_route_as_the_inventory_does(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "http.route": "/users/<int:user_id>",
                               "url.path": "/users/42",
                               "http.response.body": '{"id": 42, "ssn": "536-90-4399"}'})
    _state, findings = run(tmp_path, s)
    exp = next(f for f in findings if f.rule == "sensitive.excessive_exposure")
    assert exp.subject.route == "/users/{user_id}"

def test_resource_attributes_scanned_once_per_resource(tmp_path: Path) -> None:
    res = Resource.from_attributes({"service.name": "shop", "deploy.db_url": "postgres://u:Sup3rS3cret@db/x"})
    spans = [make_span(trace_id="a" * 32, span_id=f"{i:016x}", parent_span_id="", resource=res, name="op",
                       kind=SpanKind.INTERNAL, start_ns=1, end_ns=2) for i in range(3)]
    state, findings = run(tmp_path, *spans)
    assert len(state.batch.sensitive) == 3
    cred = next(f for f in findings if f.rule == "sensitive.credential_in_telemetry")
    assert cred.count == 3 and cred.evidence["locations"] == ["resource:deploy.db_url"]


def test_nothing_raw_in_findings_or_detections(tmp_path: Path) -> None:
    raw = ["jane@example.org", "536-90-4399", JWT_HS256, "Hunter22!"]
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.path": "/u", "url.query": "e=jane@example.org",
                               "app.note": "ssn 536-90-4399 pwd=Hunter22!",
                               "http.request.header.authorization": f"Bearer {JWT_HS256}"})
    state, findings = run(tmp_path, s)
    text = repr(findings) + repr(state.batch.sensitive) + repr(state.parts["sensitive"].snapshot())
    for r in raw:
        assert r not in text


def test_redact_span_actions(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.path": "/u",
                               "url.query": "e=jane@example.org&card=4111111111111111",
                               "app.secret_note": ["ok", "ssn 536-90-4399"], "app.password": "Hunter22!"})
    state, _ = run(tmp_path, s)
    dets = state.batch.sensitive[s.span_id]  # type: ignore[attr-defined]
    red = redact_span(s, dets, {"CREDIT_CARD": "hash", "PASSWORD": "drop"})  # type: ignore[arg-type]
    a = red.attributes
    assert a["url.query"].startswith("e=j***@example.org&card=[CREDIT_CARD:")
    assert a["app.secret_note"] == ["ok", "ssn ***-**-4399"]
    assert "app.password" not in a
    assert red.http is not None and "jane" not in red.http.query


def test_batch_scan_matches_per_value_scan_and_caches(tmp_path: Path) -> None:
    from enrichers.sensitive.scanner import SensitiveDataScanner

    texts = [("card 4111 1111 1111 1111", ""), ("nothing to see", ""), ("536904399", "customer.ssn"),
             ("app.password=Hunter22! (retry)", ""), ("résumé of jane@example.org", ""),
             ("email=jane%40example.org&card=4111+1111+1111+1111", ""), ("/api/v1/orders/1234", "url.path")]
    batch = SensitiveDataScanner(secret=b"k" * 32)
    single = SensitiveDataScanner(secret=b"k" * 32)
    many = batch.scan_many(texts)
    assert many == [single.scan(t, k) for t, k in texts]
    assert batch.scan_many(texts, cache=False) == many
    assert {m.type for m in many[5]} == {"EMAIL_ADDRESS", "CREDIT_CARD"}


def test_private_peer_addresses_are_skipped_but_public_ones_found(tmp_path: Path) -> None:
    a = span(SpanKind.SERVER, {"http.request.method": "GET", "url.path": "/x", "network.peer.address": "10.1.2.3",
                               "client.address": "8.8.8.8"})
    state, _ = run(tmp_path, a)
    dets = state.batch.sensitive["b" * 16]
    assert [(d.type, d.where) for d in dets] == [("IP_ADDRESS", "client.address")]


def test_spans_sharing_a_key_sequence_are_scanned_by_their_own_values(tmp_path: Path) -> None:
    # The enricher remembers which keys of a key sequence it looks at: spans with the same
    # keys (in the same or another order, with strings, lists, maps and large integers)
    # and spans of interleaved resources still get exactly their own detections.
    leaky = Resource.from_attributes({"service.name": "shop", "deploy.db_url": "postgres://u:Sup3rS3cret@db/x"})
    attrs = [
        {"http.request.method": "GET", "url.path": "/a", "app.note": "mail jane@example.org",
         "network.peer.address": "10.0.0.1", "app.n": 4111111111111111},
        {"http.request.method": "GET", "url.path": "/b", "app.note": "nothing here",
         "network.peer.address": "8.8.4.4", "app.n": 7},
        {"app.n": ["ssn 536-90-4399", 5], "network.peer.address": "192.168.1.1", "url.path": "/c",
         "http.request.method": "GET", "app.note": {"email": "bob@example.org"}},
        {"http.request.method": "GET", "url.path": "/a", "app.note": "mail jane@example.org",
         "network.peer.address": "10.0.0.1", "app.n": 4111111111111111},
    ]
    spans = [make_span(trace_id="a" * 32, span_id=f"{i:016x}", parent_span_id="", resource=leaky if i % 2 else RES,
                       name="op", kind=SpanKind.INTERNAL, start_ns=1, end_ns=2, attributes=a)
             for i, a in enumerate(attrs)]
    state, _ = run(tmp_path, *spans)
    got = {sid: [(d.type, d.where, d.index) for d in dets] for sid, dets in state.batch.sensitive.items()}
    db = ("DB_CONNECTION_STRING", "resource:deploy.db_url", -1)
    assert got == {
        f"{0:016x}": [("EMAIL_ADDRESS", "app.note", -1), ("CREDIT_CARD", "app.n", -1)],
        f"{1:016x}": [("IP_ADDRESS", "network.peer.address", -1), db],
        f"{2:016x}": [("US_SSN", "app.n", 0), ("EMAIL_ADDRESS", "app.note.email", -1)],
        f"{3:016x}": [("EMAIL_ADDRESS", "app.note", -1), ("CREDIT_CARD", "app.n", -1), db],
    }


def test_route_of_an_untemplated_path_holds_no_detected_value(tmp_path: Path) -> None:
    s = span(SpanKind.SERVER, {"http.request.method": "GET", "url.scheme": "http", "server.address": "shop.example.com",
                               "url.path": "/users/jane.doe@example.org/reset"})
    state, findings = run(tmp_path, s)
    assert findings and all("jane.doe" not in repr(f) for f in findings)
    facts: SensitiveFacts = state.parts["sensitive"]
    assert "jane.doe" not in repr(facts.snapshot())
