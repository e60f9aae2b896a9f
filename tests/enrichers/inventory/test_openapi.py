"""``apiward openapi``: reconstruction from a recording and from a state dir, and --diff.

The recording is written by the real OpenTelemetry SDK (in-memory exporter,
then the OTLP protobuf encoder) in the length-delimited format replay reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from agent.cli import main as cli
from collectors.replay import write_delimited
from enrichers.inventory.enricher import EndpointRecord
from enrichers.inventory.openapi import reconstruct

# (method, route reported by the framework or None, path, status, extra attributes)
TRAFFIC: list[tuple[str, str | None, str, int, dict[str, Any]]] = [
    ("GET", "/users/<int:user_id>", "/users/1", 200, {"http.request.header.authorization": "Bearer x",
                                                       "http.response.header.content-type": "application/json"}),
    ("GET", "/users/<int:user_id>", "/users/2?expand=orders&fields=name", 200, {}),
    ("DELETE", "/users/<int:user_id>", "/users/2", 204, {"http.request.header.x-api-key": "k"}),
    ("POST", "/users", "/users", 201, {"http.request.header.content-type": "application/json"}),
    ("GET", None, "/users/3/avatar.png", 200, {}),
    ("GET", None, "/reports/2024-01-02", 404, {}),
    ("GET", "/internal/debug", "/internal/debug", 500, {}),
]

SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "users", "version": "1"},
    "paths": {
        "/users/{id}": {
            "get": {"responses": {"200": {"description": "ok"}}},
            "delete": {"deprecated": True, "responses": {"204": {"description": "ok"}}},
            "put": {"responses": {"200": {"description": "ok"}}},
        },
        "/users": {"post": {"responses": {"201": {"description": "ok"}}}},
    },
}


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mem = InMemorySpanExporter()
    tp = TracerProvider(resource=Resource.create({"service.name": "users"}))
    tp.add_span_processor(SimpleSpanProcessor(mem))
    tracer = tp.get_tracer("test")
    for method, route, path, status, extra in TRAFFIC:
        attrs: dict[str, Any] = {"http.method": method, "http.target": path, "http.status_code": status,
                                 "http.scheme": "http", **extra}
        if route:
            attrs["http.route"] = route
        tracer.start_span(f"{method} {route or ''}", kind=SpanKind.SERVER, attributes=attrs).end()
    tp.shutdown()
    req = encode_spans(mem.get_finished_spans())
    p = tmp_path_factory.mktemp("rec") / "users.otlp"
    with p.open("wb") as fh:
        write_delimited([req.SerializeToString()], fh)
    return p


def test_openapi_from_recording_validates(recording: Path, tmp_path: Path) -> None:
    out = tmp_path / "users.yaml"
    code = cli(["openapi", "users", "--replay", str(recording), "-o", str(out),
                "--state-dir", str(tmp_path / "st")])
    assert code == 0
    doc = yaml.safe_load(out.read_text())
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    assert set(paths) == {"/users/{user_id}", "/users", "/users/{id}/avatar.png",
                          "/{param}/{date}", "/internal/debug"}  # 404: not learnt
    get = paths["/users/{user_id}"]["get"]
    assert get["parameters"][0] == {"name": "user_id", "in": "path", "required": True,
                                    "schema": {"type": "integer"}}
    assert {p["name"] for p in get["parameters"] if p["in"] == "query"} == {"expand", "fields"}
    assert get["responses"]["200"]["content"] == {"application/json": {}}
    assert get["security"] == [{"bearerAuth": []}]  # the call without captured headers is unknown, not anonymous
    assert paths["/users/{user_id}"]["delete"]["security"] == [{"apiKeyAuth": []}]
    assert set(doc["components"]["securitySchemes"]) == {"bearerAuth", "apiKeyAuth"}
    assert paths["/users"]["post"]["requestBody"] == {"content": {"application/json": {}}}
    assert paths["/{param}/{date}"]["get"]["parameters"][1]["schema"] == {"type": "string", "format": "date"}
    assert list(paths["/internal/debug"]["get"]["responses"]) == ["500"]


def test_openapi_diff(recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    code = cli(["openapi", "users", "--replay", str(recording), "--diff", str(spec)])
    out = capsys.readouterr().out
    assert code == 1
    assert "+ GET /internal/debug" in out
    assert "+ GET /{param}/{date}" in out and "(only 404/405 answers)" in out
    assert "- PUT /users/{id}" in out
    assert "! DELETE /users/{id}  1 calls" in out
    assert "+ GET /users/{user_id}" not in out


def test_openapi_from_state_dir(recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    st = tmp_path / "state"
    assert cli(["replay", str(recording), "--state-dir", str(st)]) == 0
    capsys.readouterr()
    assert cli(["openapi", "users", "--state-dir", str(st), "--format", "json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    validate(doc)
    assert "/users/{user_id}" in doc["paths"]


def test_openapi_errors_are_one_line(recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["openapi", "users", "--state-dir", str(tmp_path / "empty")]) == 2
    assert "no apiward state" in capsys.readouterr().err
    assert cli(["openapi", "nobody", "--replay", str(recording)]) == 2
    err = capsys.readouterr().err
    assert "no API traffic of service 'nobody'" in err and "users" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("openapi: [")
    assert cli(["openapi", "users", "--replay", str(recording), "--diff", str(bad)]) == 2
    assert "bad.yaml" in capsys.readouterr().err


def test_equivalent_paths_are_merged() -> None:
    a = EndpointRecord("s", "GET", "/users/{user_id}", params={"user_id": "integer"}, calls=3)
    a.status = {200: 3}
    b = EndpointRecord("s", "GET", "/users/{id}", inferred=True, params={"id": "integer"}, calls=1)
    b.status = {404: 1}
    doc = reconstruct([a, b], "s")
    validate(doc)
    assert list(doc["paths"]) == ["/users/{user_id}"]
    assert set(doc["paths"]["/users/{user_id}"]["get"]["responses"]) == {"200", "404"}
