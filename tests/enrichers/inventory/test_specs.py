"""Spec loading (OpenAPI 3.0/3.1, Swagger 2.0; YAML/JSON; prefixes) and shape matching."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from enrichers.inventory.specs import SpecError, check_spec_file, load_spec

OAS3 = {
    "openapi": "3.0.3",
    "info": {"title": "users", "version": "1"},
    "servers": [{"url": "https://api.example.com/api/{version}", "variables": {"version": {"default": "v1"}}}],
    "paths": {
        "/users": {"get": {"responses": {"200": {"description": "ok"}}},
                   "post": {"responses": {"201": {"description": "ok"}}}},
        "/users/{userId}": {"get": {"operationId": "getUser", "responses": {"200": {"description": "ok"}}},
                            "delete": {"deprecated": True, "responses": {"204": {"description": "ok"}}}},
        "/users/me": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/exports/{id}.json": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}

SWAGGER2 = {
    "swagger": "2.0",
    "info": {"title": "orders", "version": "1"},
    "basePath": "/shop",
    "paths": {"/orders/{order_id}": {"get": {"responses": {"200": {"description": "ok"}}}}},
}


@pytest.fixture
def oas3(tmp_path: Path) -> Path:
    p = tmp_path / "users.yaml"
    p.write_text(yaml.safe_dump(OAS3))
    return p


# (method, observed route, expected spec operation or None)
MATCHES = [
    ("GET", "/users", "GET /users"),
    ("POST", "/users", "POST /users"),
    ("PUT", "/users", None),  # method matters
    ("GET", "/users/{user_id}", "GET /users/{userId}"),  # names differ, shape matches
    ("GET", "/users/{id}", "GET /users/{userId}"),
    ("GET", "/users/42", "GET /users/{userId}"),  # a literal fits a spec parameter
    ("GET", "/users/me", "GET /users/me"),  # the literal operation wins
    ("HEAD", "/users/me", "GET /users/me"),  # HEAD falls back to GET
    ("DELETE", "/users/{uid}", "DELETE /users/{userId}"),
    ("GET", "/api/v1/users/{id}", "GET /users/{userId}"),  # server prefix
    ("GET", "/users/{id}/orders", None),  # longer path
    ("GET", "/admin/users", None),
    ("GET", "/exports/{id}.json", "GET /exports/{id}.json"),
    ("GET", "/exports/7.json", "GET /exports/{id}.json"),
    ("GET", "/exports/{id}.csv", None),
]


@pytest.mark.parametrize(("method", "route", "op"), MATCHES)
def test_match_by_shape(oas3: Path, method: str, route: str, op: str | None) -> None:
    spec = load_spec(oas3, "users")
    got = spec.match(method, route)
    assert (got.key if got else None) == op


def test_deprecated_flag(oas3: Path) -> None:
    spec = load_spec(oas3, "users")
    op = spec.match("DELETE", "/users/{x}")
    assert op is not None and op.deprecated
    assert not spec.match("GET", "/users/{x}").deprecated  # type: ignore[union-attr]


def test_swagger2_json_with_base_path(tmp_path: Path) -> None:
    p = tmp_path / "orders.json"
    p.write_bytes(orjson.dumps(SWAGGER2))
    spec = load_spec(p, "orders")
    assert spec.version == "2.0"
    assert spec.match("GET", "/orders/{id}") is not None
    assert spec.match("GET", "/shop/orders/{id}") is not None
    assert spec.match("GET", "/other/orders/{id}") is None


def test_openapi31_json(tmp_path: Path) -> None:
    doc = dict(OAS3, openapi="3.1.0")
    p = tmp_path / "u.json"
    p.write_bytes(orjson.dumps(doc))
    assert len(load_spec(p, "users").operations) == 6
    assert "userId" in check_spec_file(p)[0]  # loads, though the validator objects


# (file content, words the message must contain)
BAD = [
    ("openapi: 3.0.0\npaths: [unclosed", ["not valid YAML", "line"]),
    ("- just\n- a list\n", ["must be a mapping"]),
    ("info: {title: x}\npaths: {}\n", ["no 'openapi'"]),
    ("openapi: 4.0.0\npaths: {}\n", ["not supported"]),
    ("swagger: '1.2'\npaths: {}\n", ["not supported"]),
    ("openapi: 3.0.0\ninfo: {title: x, version: '1'}\n", ["'paths'"]),
    ("openapi: 3.0.0\npaths:\n  users: {get: {}}\n", ["must start with '/'"]),
]


@pytest.mark.parametrize(("text", "words"), BAD)
def test_bad_spec_one_clear_message(tmp_path: Path, text: str, words: list[str]) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(SpecError) as ei:
        load_spec(p, "svc")
    msg = str(ei.value)
    assert msg.startswith(str(p))
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "nope.yaml", "svc")


def test_check_spec_reports_validation_problem(tmp_path: Path) -> None:
    p = tmp_path / "loose.yaml"
    p.write_text("openapi: 3.0.0\npaths:\n  /x:\n    get: {}\n")  # no info, no responses
    problems = check_spec_file(p)
    assert problems and str(p) in problems[0]
