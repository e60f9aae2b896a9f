"""Graph edges record which sensitive types travel over them, and which way (never values)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import Config
from agent.state import State
from agent.wiring import build_enrichers
from enrichers.callgraph.enricher import EdgeStats
from tests.enrichers.callgraph.spans import http_client, http_server, new_id

CARD = "4111111111111111"
EMAIL = "jane.doe@example.org"


def _run(tmp_path: Path, *batches: list) -> dict:
    state = State(tmp_path)
    chain = build_enrichers(Config(state_dir=tmp_path, persist=False),
                            ["sensitive", "inventory", "callgraph"])
    for batch in batches:
        with state.lock:
            state.batch.clear()
            for e in chain:
                list(e.process(batch, state) or ())
    for e in chain:  # the end of a recording: unpaired client spans go to virtual nodes
        flush = getattr(e, "flush_all", None)
        if flush is not None:
            flush(state)
    return state.parts["callgraph"].report()  # type: ignore[no-any-return]


def test_request_and_response_types_on_paired_and_external_edges(tmp_path: Path) -> None:
    trace = new_id() * 2
    cli = http_client("web", "POST", "http://users/signup", trace=trace,
                      attrs={"server.address": "users", "http.request.body": json.dumps({"email": EMAIL})})
    srv = http_server("users", "POST", "/signup", route="/signup", trace=trace, parent=cli.span_id,
                      attrs={"http.response.body": json.dumps({"card": CARD})})
    ext = http_client("users", "GET", f"https://api.partner.example.com/v1/check?email={EMAIL}",
                      attrs={"server.address": "api.partner.example.com"})
    plain = http_client("web", "GET", "http://users/healthz", attrs={"server.address": "users"})
    report = _run(tmp_path, [cli, srv, ext, plain])
    edges = {(e["client"], e["server"]): e for e in report["edges"]}
    paired = edges[("web", "users")]
    assert paired["sensitive"] == {"CREDIT_CARD": ["response"], "EMAIL_ADDRESS": ["request"]}
    assert paired["sensitive_types"] == ["CREDIT_CARD", "EMAIL_ADDRESS"]
    out = next(e for (c, s), e in edges.items() if c == "users" and "partner" in s)
    assert out["sensitive"] == {"EMAIL_ADDRESS": ["request"]}
    assert CARD not in json.dumps(report) and EMAIL not in json.dumps(report)


def test_edges_without_sensitive_data_say_so_and_state_round_trips(tmp_path: Path) -> None:
    report = _run(tmp_path, [http_client("web", "GET", "http://users/healthz",
                                         attrs={"server.address": "users"})])
    (edge,) = report["edges"]
    assert edge["sensitive"] == {} and edge["sensitive_types"] == []
    e = EdgeStats("a", "b", "http")
    e.sensitive = {"US_SSN": {"request", "response"}}
    back = EdgeStats.from_json(json.loads(json.dumps(e.to_json())))
    assert back.sensitive == e.sensitive
    assert EdgeStats.from_json({"c": "a", "s": "b", "t": "http"}).sensitive == {}  # older state
