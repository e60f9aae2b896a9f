"""Real services on loopback, instrumented with the real OpenTelemetry packages,
exporting over OTLP/gRPC to a real agent: the graph, inventory and findings.

    driver --(plain http.client)--> web (wsgiref + OTel WSGI middleware)
      web --(requests, instrumented)--> users (Flask, instrumented)
      users --(sqlite3, instrumented)--> db:sqlite/...
      users --(urllib, instrumented)--> rates (stdlib http.server, NOT instrumented)
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.request import urlopen
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
import yaml
from flask import Flask
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agent.config import Config
from agent.runtime import Agent

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "users", "version": "1"},
    "paths": {
        "/users/{userId}": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/users/{userId}/legacy": {"get": {"deprecated": True,
                                           "responses": {"200": {"description": "ok"}}}},
    },
}


class _Quiet(WSGIRequestHandler):
    def log_message(self, *a: Any) -> None:
        pass


class _Rates(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b'{"eur": 1.0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: Any) -> None:
        pass


def _serve(server: Any) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def _provider(service: str, grpc_port: int) -> TracerProvider:
    tp = TracerProvider(resource=Resource.create({"service.name": service}))
    tp.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{grpc_port}", insecure=True),
        schedule_delay_millis=100))
    return tp


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    spec = tmp_path / "users.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    cfg = Config(state_dir=tmp_path, grpc_port=0, http_port=0, api_port=0, bind="127.0.0.1",
                 specs={"users": str(spec)},
                 # loopback counts as external here, so the uninstrumented peer shows as ext:
                 internal_cidrs=["10.0.0.0/8"],
                 sections={"graph": {"pair_ttl_seconds": 0.5, "internal_defaults": False}})
    agent = Agent(cfg)
    agent.start(api=False)
    tp_web = _provider("web", agent.grpc_port)
    tp_users = _provider("users", agent.grpc_port)

    rates = ThreadingHTTPServer(("127.0.0.1", 0), _Rates)
    _serve(rates)
    rates_url = f"http://127.0.0.1:{rates.server_address[1]}/rates/eur"

    SQLite3Instrumentor().instrument(tracer_provider=tp_users)
    users_db = sqlite3.connect(":memory:", check_same_thread=False)  # instrumented connection
    users_db.cursor().execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    lock = threading.Lock()

    users = Flask("users")

    @users.get("/users/<int:user_id>")
    def get_user(user_id: int) -> Any:
        with lock:
            users_db.cursor().execute("SELECT name FROM users WHERE id = ?", (user_id,)).fetchall()
        with urlopen(rates_url, timeout=5) as r:
            r.read()
        return {"id": user_id}

    @users.get("/users/<int:user_id>/legacy")
    def legacy(user_id: int) -> Any:
        return {"id": user_id, "legacy": True}

    @users.get("/internal/debug")
    def debug() -> Any:
        return {"debug": True}

    FlaskInstrumentor().instrument_app(users, tracer_provider=tp_users)
    URLLibInstrumentor().instrument(tracer_provider=tp_users)
    users_srv = make_server("127.0.0.1", 0, users, server_class=WSGIServer, handler_class=_Quiet)
    _serve(users_srv)
    users_base = f"http://127.0.0.1:{users_srv.server_port}"

    RequestsInstrumentor().instrument(tracer_provider=tp_web)

    def web_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        r = requests.get(users_base + path, timeout=5)
        start_response(f"{r.status_code} X", [("Content-Type", "application/json")])
        return [r.content]

    web_srv = make_server("127.0.0.1", 0, OpenTelemetryMiddleware(web_app, tracer_provider=tp_web),
                          server_class=WSGIServer, handler_class=_Quiet)
    _serve(web_srv)
    try:
        yield {"agent": agent, "web_port": web_srv.server_port, "providers": (tp_web, tp_users)}
    finally:
        RequestsInstrumentor().uninstrument()
        URLLibInstrumentor().uninstrument()
        SQLite3Instrumentor().uninstrument()
        FlaskInstrumentor().uninstrument_app(users)
        for s in (web_srv, users_srv, rates):
            s.shutdown()
            s.server_close()
        tp_web.shutdown()
        tp_users.shutdown()
        agent.stop()


def _get(port: int, path: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def _wait(agent: Agent, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with agent.state.lock:
            try:
                last = check(agent.state)
                if last:
                    return last
            except (KeyError, AssertionError):
                pass
        time.sleep(0.1)
    with agent.state.lock:
        g = agent.state.parts["callgraph"].report() if "callgraph" in agent.state.parts else None
    raise AssertionError(f"condition not met in {timeout}s; last={last!r}; graph={g!r}")


def test_graph_inventory_and_findings_from_real_services(world: dict[str, Any]) -> None:
    agent = world["agent"]
    for path in ("/users/7", "/users/8", "/users/7/legacy", "/internal/debug"):
        assert _get(world["web_port"], path) == 200
    for tp in world["providers"]:
        tp.force_flush()

    def edges(state: Any) -> dict[tuple[str, str], dict[str, Any]]:
        g = state.parts["callgraph"].report()
        got = {(e["client"], e["server"]): e for e in g["edges"]}
        needed = {("web", "users"), ("users", "ext:127.0.0.1")}
        if not needed <= set(got) or not any(s.startswith("db:sqlite") for _c, s in got):
            return {}
        if not any(c.startswith("client:127.0.0.0/24") for c, _s in got):
            return {}
        return got

    got = _wait(agent, edges)
    assert got[("web", "users")]["calls"] == 4
    assert got[("web", "users")]["connection_type"] == "http"
    assert "GET /users/{user_id}" in got[("web", "users")]["endpoints"]
    assert got[("users", "ext:127.0.0.1")]["calls"] == 2
    assert got[("client:127.0.0.0/24", "web")]["calls"] == 4
    db_edges = [e for (c, s), e in got.items() if c == "users" and s.startswith("db:sqlite")]
    assert db_edges and db_edges[0]["connection_type"] == "database"
    with agent.state.lock:
        nodes = {n["id"]: n for n in agent.state.parts["callgraph"].report()["nodes"]}
    assert nodes["ext:127.0.0.1"]["kind"] == "external"
    assert nodes["client:127.0.0.0/24"]["kind"] == "client"

    def findings(state: Any) -> dict[str, Any]:
        by = {(r.finding.rule, r.finding.subject.service, r.finding.subject.route): r.finding
              for r in state.findings.records()}
        need = [("shadow_endpoint", "users", "/internal/debug"),
                ("zombie_endpoint", "users", "/users/{user_id}/legacy"),
                ("undocumented_service", "web", "")]
        return by if all(k in by for k in need) else {}

    by = _wait(agent, findings)
    zombie = by[("zombie_endpoint", "users", "/users/{user_id}/legacy")]
    assert zombie.owasp == "API9:2023" and "web" in zombie.evidence["callers"]
    assert by[("shadow_endpoint", "users", "/internal/debug")].owasp == "API9:2023"
    assert ("shadow_endpoint", "users", "/users/{user_id}") not in by

    with agent.state.lock:
        inv = {(r["service"], r["method"], r["route"]): r for r in agent.state.parts["inventory"].report()}
    assert inv[("users", "GET", "/users/{user_id}")]["calls"] == 2
    assert inv[("users", "GET", "/users/{user_id}")]["lifecycle"] == "new"
    assert inv[("users", "GET", "/users/{user_id}")]["callers"] == ["web"]
    assert inv[("users", "GET", "/internal/debug")]["lifecycle"] == "shadow"
    assert inv[("users", "GET", "/users/{user_id}/legacy")]["lifecycle"] == "zombie"
    # web has no http.route (plain WSGI): its templates are inferred from the path
    assert ("web", "GET", "/users/{id}") in inv and ("web", "GET", "/users/{id}/legacy") in inv
    assert inv[("web", "GET", "/users/{id}")]["calls"] == 2
    report = json.dumps(agent.state.parts["inventory"].report())
    assert "/users/7" not in report
