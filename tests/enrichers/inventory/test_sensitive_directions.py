"""Inventory endpoints record which sensitive types they carry, and in which direction."""

from __future__ import annotations

import json
from pathlib import Path

from agent.config import Config
from agent.state import State
from agent.wiring import build_enrichers
from tests.enrichers.callgraph.spans import http_server


def test_endpoint_rows_give_types_with_directions(tmp_path: Path) -> None:
    state = State(tmp_path)
    chain = build_enrichers(Config(state_dir=tmp_path, persist=False), ["sensitive", "inventory"])
    batch = [
        http_server("users", "POST", "/signup", route="/signup",
                    attrs={"http.request.body": json.dumps({"email": "jane.doe@example.org"}),
                           "http.response.body": json.dumps({"card": "4111111111111111"})}),
        http_server("users", "GET", "/healthz", route="/healthz"),
    ]
    with state.lock:
        state.batch.clear()
        for e in chain:
            list(e.process(batch, state) or ())
    rows = {(r["method"], r["route"]): r for r in state.parts["inventory"].report()}
    signup = rows[("POST", "/signup")]
    assert signup["sensitive"] == {"CREDIT_CARD": ["response"], "EMAIL_ADDRESS": ["request"]}
    assert signup["sensitive_types"] == ["CREDIT_CARD", "EMAIL_ADDRESS"]  # the stable field, kept
    assert rows[("GET", "/healthz")]["sensitive"] == {}
