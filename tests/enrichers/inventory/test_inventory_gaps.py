"""Inventory gaps found by an audit: late callers in zombie findings, $ref path
items, path-parameter types of framework routes, ids inside ``http.route``,
templating slips and percent-encoded query names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config import Config
from agent.model import Span
from agent.state import State
from enrichers.callgraph import CallGraphEnricher
from enrichers.inventory import InventoryEnricher
from enrichers.inventory.enricher import EndpointRecord
from enrichers.inventory.openapi import reconstruct
from enrichers.inventory.routes import PathTemplater, classify_segment, convert_route
from enrichers.inventory.specs import SpecError, load_spec
from tests.enrichers.callgraph.spans import T0, http_client, http_server

ZOMBIE_SPEC = {
    "openapi": "3.0.3",
    "info": {"title": "users", "version": "1"},
    "paths": {
        "/users/{userId}/legacy": {
            "get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}
        },
    },
}


class Chain:
    """The inventory and the call graph, run the way the pipeline runs them."""

    def __init__(self, tmp_path: Path, specs: dict[str, Any] | None = None) -> None:
        paths = {}
        for svc, doc in (specs or {}).items():
            p = tmp_path / f"{svc}.yaml"
            p.write_text(yaml.safe_dump(doc))
            paths[svc] = str(p)
        cfg = Config(state_dir=tmp_path, specs=paths)
        self.state = State()
        self.chain = [InventoryEnricher(cfg), CallGraphEnricher(cfg)]

    def batch(self, spans: list[Span]) -> None:
        st = self.state
        with st.lock:
            st.batch.clear()
            for e in self.chain:
                st.add_findings(e.process(spans, st) or ())
            for e in self.chain:
                st.add_findings(e.tick(T0, st) or ())

    def finding(self, rule: str) -> Any:
        found = [r.finding for r in self.state.findings.records() if r.finding.rule == rule]
        assert len(found) == 1, found
        return found[0]


def test_zombie_finding_gets_callers_paired_in_a_later_batch(tmp_path: Path) -> None:
    c = Chain(tmp_path, {"users": ZOMBIE_SPEC})
    client = http_client("mobile-bff", "GET", "http://users/users/7/legacy", trace="cd" * 16,
                         attrs={"peer.service": "users"})
    server = http_server("users", "GET", "/users/7/legacy", route="/users/<int:uid>/legacy",
                         trace="cd" * 16, parent=client.span_id, start=T0 + 1)
    c.batch([server])  # the server span is usually exported first
    f = c.finding("zombie_endpoint")
    assert f.evidence["callers"] == []
    c.batch([client])
    f = c.finding("zombie_endpoint")
    assert f.evidence["callers"] == ["mobile-bff"]
    assert f.count == 1  # the update carries evidence, not another call
    rows = [r for r in c.state.parts["inventory"].report() if r["route"] == "/users/{uid}/legacy"]
    assert rows[0]["callers"] == ["mobile-bff"]


# ------------------------------------------------------------------ $ref path items


def test_ref_path_items_local_and_in_another_file(tmp_path: Path) -> None:
    (tmp_path / "paths.yaml").write_text(yaml.safe_dump({
        "steady": {"get": {"responses": {"200": {"description": "ok"}}}},
        "gone": {"get": {"$ref": "#/ops/gone"}},
        "ops": {"gone": {"deprecated": True, "responses": {"200": {"description": "ok"}}}},
    }))
    main = tmp_path / "main.yaml"
    main.write_text(yaml.safe_dump({
        "openapi": "3.1.0", "info": {"title": "shop", "version": "1"},
        "paths": {
            "/steady": {"$ref": "./paths.yaml#/steady"},
            "/gone/{id}": {"$ref": "paths.yaml#/gone"},
            "/old": {"$ref": "#/components/pathItems/old"},
            "/a~b/{x}": {"$ref": "#/components/pathItems/a~0b~1c"},
        },
        "components": {"pathItems": {
            "old": {"get": {"deprecated": True, "responses": {"200": {"description": "ok"}}}},
            "a~b/c": {"post": {"responses": {"200": {"description": "ok"}}}},
        }},
    }))
    spec = load_spec(main, "shop")
    ops = {(o.method, o.path): o.deprecated for o in spec.operations}
    assert ops == {("GET", "/steady"): False, ("GET", "/gone/{id}"): True,
                   ("GET", "/old"): True, ("POST", "/a~b/{x}"): False}
    assert spec.match("GET", "/gone/{gid}") is not None


@pytest.mark.parametrize(("paths", "extra", "words"), [
    ({"/x": {"$ref": "#/components/pathItems/nope"}}, {}, ["'/x'", "#/components/pathItems/nope", "nothing"]),
    ({"/x": {"$ref": "./missing.yaml#/x"}}, {}, ["'/x'", "./missing.yaml#/x", "cannot read"]),
    ({"/x": {"$ref": "https://example.com/p.yaml#/x"}}, {}, ["'/x'", "never URLs"]),
    ({"/x": {"$ref": "#/components/pathItems/a"}},
     {"components": {"pathItems": {"a": {"$ref": "#/components/pathItems/b"},
                                   "b": {"$ref": "#/components/pathItems/a"}}}},
     ["'/x'", "cycle"]),
])
def test_unresolvable_ref_names_file_path_and_ref(
    tmp_path: Path, paths: dict[str, Any], extra: dict[str, Any], words: list[str]
) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump({"openapi": "3.1.0", "info": {"title": "t", "version": "1"},
                                 "paths": paths, **extra}))
    with pytest.raises(SpecError) as exc:
        load_spec(p)
    msg = str(exc.value)
    assert str(p) in msg
    for w in words:
        assert w in msg


def test_ref_spec_endpoints_are_not_shadow(tmp_path: Path) -> None:
    (tmp_path / "paths.yaml").write_text("steady:\n  get: {responses: {'200': {description: ok}}}\n")
    main = tmp_path / "main.yaml"
    main.write_text("openapi: 3.1.0\ninfo: {title: s, version: '1'}\n"
                    "paths:\n  /steady:\n    $ref: './paths.yaml#/steady'\n")
    c = Chain(tmp_path)
    c.chain[0] = InventoryEnricher(Config(state_dir=tmp_path, specs={"shop": str(main)}))
    c.batch([http_server("shop", "GET", "/steady", route="/steady")])
    assert not [r for r in c.state.findings.records() if r.finding.rule == "shadow_endpoint"]


# ------------------------------------------------------------------ parameter types


def _part_after(tmp_path: Path, spans: list[Span], specs: dict[str, Any] | None = None) -> Any:
    c = Chain(tmp_path, specs)
    c.batch(spans)
    return c.state.parts["inventory"]


def _schema(doc: dict[str, Any], route: str, name: str) -> dict[str, Any]:
    for p in doc["paths"][route]["get"]["parameters"]:
        if p["name"] == name:
            return p["schema"]  # type: ignore[no-any-return]
    raise AssertionError(name)


@pytest.mark.parametrize(("values", "schema"), [
    (["1", "22", "333"], {"type": "integer"}),
    (["1", "2.5"], {"type": "number"}),
    ([str(v) for v in ("550e8400-e29b-41d4-a716-446655440000", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")],
     {"type": "string", "format": "uuid"}),
    (["2024-01-02", "2025-12-31"], {"type": "string", "format": "date"}),
    (["bob%40x.com", "a@b.org"], {"type": "string", "format": "email"}),
    (["1", "bob"], {"type": "string"}),
])
def test_route_parameter_types_are_learnt_from_paths(
    tmp_path: Path, values: list[str], schema: dict[str, Any]
) -> None:
    spans = [http_server("users", "GET", f"/api/users/{v}/x", route="/users/:uid/x") for v in values]
    part = _part_after(tmp_path, spans)
    doc = reconstruct(part.records_for("users"), "users")
    assert _schema(doc, "/users/{uid}/x", "uid") == schema


def test_declared_type_wins_and_types_survive_a_restart(tmp_path: Path) -> None:
    spans = [http_server("users", "GET", f"/users/{i}/p/{i}", route="/users/<int:a>/p/<b>") for i in range(3)]
    part = _part_after(tmp_path, spans)
    rec = part.records[("users", "GET", "/users/{a}/p/{b}")]
    assert rec.param_types() == {"a": "integer", "b": "integer"}
    again = EndpointRecord.from_json(rec.to_json())
    assert again.param_types() == {"a": "integer", "b": "integer"}
    old = {k: v for k, v in rec.to_json().items() if k not in ("ptypes", "psamples")}
    legacy = EndpointRecord.from_json(old)  # stored before types were learnt: learns now
    legacy.calls += 1
    legacy.sample_params("/users/5/p/x")
    assert legacy.param_types() == {"a": "integer", "b": "string"}


def test_parameter_sampling_is_bounded(tmp_path: Path) -> None:
    spans = [http_server("users", "GET", f"/users/{i}", route="/users/{id}") for i in range(2000)]
    part = _part_after(tmp_path, spans)
    rec = part.records[("users", "GET", "/users/{id}")]
    assert 32 <= rec.psamples < 50
    assert rec.ptypes is not None and len(rec.ptypes) == 1


def test_spec_parameter_position_gets_the_inferred_type(tmp_path: Path) -> None:
    spec = {"openapi": "3.0.3", "info": {"title": "i", "version": "1"},
            "paths": {"/items/{itemId}": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    part = _part_after(tmp_path, [http_server("inv", "GET", f"/items/{i}") for i in (43, 44)],
                       {"inv": spec})
    doc = reconstruct(part.records_for("inv"), "inv")
    (route,) = doc["paths"]
    assert _schema(doc, route, route.split("{")[1].rstrip("}")) == {"type": "integer"}


# ------------------------------------------------------------------ ids in http.route


def test_raw_paths_reported_as_routes_do_not_blow_up_the_inventory(tmp_path: Path) -> None:
    spans = [http_server("rawroute", "GET", f"/users/{1000 + i}/orders/{i * 7}",
                         route=f"/users/{1000 + i}/orders/{i * 7}") for i in range(3000)]
    part = _part_after(tmp_path, spans)
    assert [r["route"] for r in part.report()] == ["/users/{id}/orders/{id2}"]


@pytest.mark.parametrize(("route", "expected", "types"), [
    ("/users/1000/orders/0", "/users/{id}/orders/{id2}", {"id": "integer", "id2": "integer"}),
    ("/carts/550e8400-e29b-41d4-a716-446655440000", "/carts/{uuid}", {"uuid": "uuid"}),
    ("/files/d41d8cd98f00b204e9800998ecf8427e", "/files/{hash}", {"hash": "hash"}),
    ("/export/12.json", "/export/{id}.json", {"id": "integer"}),
    ("/v1/healthz", "/v1/healthz", {}),
    ("/api/hello.world", "/api/hello.world", {}),
    ("/api/v2/users/:id", "/api/v2/users/{id}", {"id": "string"}),
    ("/a/:id.json", "/a/{id}.json", {"id": "string"}),
    ("/a/:id(\\d+)", "/a/{id}", {"id": "integer"}),
    ("/a/:id([0-9]+)/b", "/a/{id}/b", {"id": "integer"}),
])
def test_route_conversion_slips(route: str, expected: str, types: dict[str, str]) -> None:
    t = convert_route(route)
    assert (t.route, t.param_types) == (expected, types)


def test_digit_literal_pinned_by_a_spec_stays_in_routes(tmp_path: Path) -> None:
    spec = {"openapi": "3.0.3", "info": {"title": "i", "version": "1"},
            "paths": {"/api/2/items": {"get": {"responses": {"200": {"description": "ok"}}}}}}
    part = _part_after(tmp_path, [http_server("inv", "GET", "/api/2/items", route="/api/2/items")],
                       {"inv": spec})
    (rec,) = part.records.values()
    assert rec.route == "/api/2/items" and rec.documented


# ------------------------------------------------------------------ templating slips


@pytest.mark.parametrize(("seg", "typ"), [
    ("d41d8cd98f00b204e9800998ecf8427e", "hash"),  # MD5: version nibble 'b'
    ("550e8400e29b41d4a716446655440000", "uuid"),  # v4, variant 'a'
    ("550e8400-e29b-41d4-a716-446655440000", "uuid"),
    ("bob%40x.com", "email"),
    ("1.5", None),
    ("2.0", None),
])
def test_classify_slips(seg: str, typ: str | None) -> None:
    assert classify_segment(seg) == typ


@pytest.mark.parametrize(("path", "expected"), [
    ("/x/1.5", "/x/1.5"),
    ("/u/bob%40x.com", "/u/{email}"),
    ("/h/d41d8cd98f00b204e9800998ecf8427e", "/h/{hash}"),
    ("/f/12.json", "/f/{id}.json"),
])
def test_templater_slips(path: str, expected: str) -> None:
    assert PathTemplater().template("s", path).route == expected


def test_query_parameter_names_are_decoded(tmp_path: Path) -> None:
    part = _part_after(tmp_path, [http_server("q", "GET", "/s?a%20b=1&c+d=2&plain=3", route="/s")])
    assert part.records[("q", "GET", "/s")].query_params == {"a b", "c d", "plain"}
