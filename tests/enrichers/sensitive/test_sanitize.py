"""Later analyses see spans without the values detected in paths, names and destinations."""

from __future__ import annotations

from pathlib import Path

from agent.config import Config
from agent.model import Resource, SpanKind, make_span
from agent.state import State
from enrichers.sensitive.enricher import SensitiveDataEnricher
from enrichers.sensitive.sanitize import placeholder, sanitized

RES = Resource.from_attributes({"service.name": "shop"})
IBAN = "GB82WEST12345698765432"
EMAIL = "alice.liddell@example.com"
CARD = "4000056655665556"


def _span(kind: SpanKind, name: str, attrs: dict) -> object:
    return make_span(trace_id="a" * 32, span_id="b" * 16, parent_span_id="", resource=RES, name=name,
                     kind=kind, start_ns=10, end_ns=20, attributes=attrs)


def _detect(tmp_path: Path, span: object) -> list:
    enr = SensitiveDataEnricher(Config(state_dir=tmp_path))
    return enr.scan_span(span, State(tmp_path))  # type: ignore[arg-type]


def test_outbound_url_path_loses_detected_values(tmp_path: Path) -> None:
    url = f"https://maps.example.com/v1/lookup/{EMAIL}/iban/{IBAN}?card={CARD}"
    s = _span(SpanKind.CLIENT, "GET", {"http.request.method": "GET", "url.full": url})
    dets = _detect(tmp_path, s)
    assert {"EMAIL_ADDRESS", "IBAN_CODE", "CREDIT_CARD"} <= {d.type for d in dets}
    clean = sanitized(s, dets)  # type: ignore[arg-type]
    assert clean is not None and clean.http is not None
    assert clean.http.path == "/v1/lookup/{email_address}/iban/{iban_code}"
    assert clean.http.query == "card={credit_card}"
    assert clean.http.server_address == "maps.example.com"
    for raw in (EMAIL, IBAN, CARD):
        assert raw not in clean.http.url and raw not in repr(clean.attributes)
    # the original is untouched (the forwarder redacts it by the detections' offsets)
    assert s.attributes["url.full"] == url  # type: ignore[attr-defined]


def test_span_name_and_messaging_destination(tmp_path: Path) -> None:
    s = _span(SpanKind.PRODUCER, f"notify {EMAIL} re card {CARD}",
              {"messaging.system": "kafka", "messaging.destination.name": f"orders/{EMAIL}"})
    dets = _detect(tmp_path, s)
    clean = sanitized(s, dets)  # type: ignore[arg-type]
    assert clean is not None and clean.messaging is not None
    assert clean.name == "notify {email_address} re card {credit_card}"
    assert clean.messaging.destination == "orders/{email_address}"
    assert clean.span_id == s.span_id and clean.kind == s.kind  # type: ignore[attr-defined]


def test_no_copy_without_a_structural_detection(tmp_path: Path) -> None:
    # a detection in a header is the forwarder's business, not a structural string
    s = _span(SpanKind.SERVER, "GET /users/{id}",
              {"http.request.method": "GET", "url.path": "/users/42", "http.route": "/users/{id}",
               "http.request.header.x-email": EMAIL})
    dets = _detect(tmp_path, s)
    assert dets and sanitized(s, dets) is None  # type: ignore[arg-type]
    assert sanitized(s, []) is None  # type: ignore[arg-type]


def test_placeholder_reads_as_a_path_parameter() -> None:
    assert placeholder("CREDIT_CARD") == "{credit_card}"


def test_through_the_pipeline_no_analysis_keeps_a_detected_value(tmp_path: Path) -> None:
    """Inventory, call graph and trace store keep no detected value; listeners get the spans as
    received (the forwarder redacts those by offsets)."""
    import json

    from agent.pipeline import Pipeline
    from agent.wiring import build_enrichers

    state = State(tmp_path)
    chain = build_enrichers(Config(state_dir=tmp_path, persist=False))
    seen: list = []
    p = Pipeline(state, chain)
    p.on_batch.append(seen.extend)
    out = _span(SpanKind.CLIENT, "GET", {"http.request.method": "GET", "server.address": "maps.example.com",
                                         "url.full": f"https://maps.example.com/v1/lookup/{EMAIL}/iban/{IBAN}"})
    named = make_span(trace_id="c" * 32, span_id="d" * 16, parent_span_id="", resource=RES,
                      name=f"notify {EMAIL} re card {CARD}", kind=SpanKind.PRODUCER, start_ns=10, end_ns=20,
                      attributes={"messaging.system": "kafka", "messaging.destination.name": f"orders/{EMAIL}"})
    assert p.offer([out, named], "otlp")  # type: ignore[list-item]
    p.drain()
    for e in chain:
        flush = getattr(e, "flush_all", None)
        if flush is not None:
            flush(state)
    def dump(part: object) -> object:
        fn = getattr(part, "snapshot", None) or getattr(part, "report", None)
        return fn() if fn is not None else None

    stored = json.dumps({k: dump(v) for k, v in state.parts.items()}, default=str)
    stored += json.dumps([r.to_dict() for r in state.findings.records()], default=str)
    for raw in (EMAIL, IBAN, CARD):
        assert raw not in stored, raw
    assert "/v1/lookup/{email_address}/iban/{iban_code}" in stored or "{param}" in stored
    assert seen[0] is out and seen[1] is named  # listeners: the spans as received
