"""Token reuse is judged by who sent the credential: a server span that arrives before its
caller's client span is checked for reuse once the call graph pairs it."""

from __future__ import annotations

from agent.config import Config
from agent.state import State
from agent.wiring import build_enrichers
from tests.enrichers.callgraph.spans import http_client, http_server, new_id

TOKEN = "Bearer svc-token-0123456789abcdef0123"


def _reuse(batches: list[list]) -> list:
    state = State()
    chain = build_enrichers(Config(persist=False, sections={"graph": {"pair_ttl_seconds": 30}}),
                            ["callgraph", "zerotrust"])
    out: list = []
    for batch in batches:
        with state.lock:
            state.batch.clear()
            for e in chain:
                out.extend(e.process(batch, state) or ())
    return [f for f in out if f.rule == "zerotrust.token_reuse"]


def _call(server_first: bool, i: int) -> tuple[list, list]:
    trace = new_id() * 2
    cli = http_client("jobs", "GET", f"http://orders/orders/{i}", trace=trace,
                      attrs={"server.address": "orders", "http.request.header.authorization": [TOKEN]})
    srv = http_server("orders", "GET", f"/orders/{i}", route="/orders/{id}", trace=trace, parent=cli.span_id,
                      attrs={"client.address": "127.0.0.1", "http.request.header.authorization": [TOKEN]})
    return ([srv], [cli]) if server_first else ([cli, srv], [])


def test_server_span_before_its_caller_is_not_token_reuse() -> None:
    paired = _call(False, 1)
    late = _call(True, 2)
    assert _reuse([paired[0] + late[0], late[1]]) == []


def test_the_same_token_from_another_client_is_reuse() -> None:
    paired = _call(False, 1)
    stolen = http_server("orders", "GET", "/orders/3", route="/orders/{id}",
                         attrs={"client.address": "81.2.69.160", "http.request.header.authorization": [TOKEN]})
    found = _reuse([paired[0] + [stolen]])
    assert found and "jobs" in found[0].evidence["clients"]
