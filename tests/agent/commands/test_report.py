"""``apiward report``: JSON, Markdown, SARIF 2.1.0 and HTML from recordings and from a state dir."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from agent.cli import main
from agent.commands.report import layered_layout, render_html, to_sarif

ROOT = Path(__file__).resolve().parents[3]
SHOP = ROOT / "examples" / "recordings" / "shop.jsonl"

# The SARIF 2.1.0 schema is not shipped by any PyPI package we can install, so this
# is the subset of it that code-scanning uploads rely on: the required properties
# (and their types) of sarifLog, run, tool, toolComponent, reportingDescriptor,
# result, message, location, logicalLocation, as written in the OASIS schema.
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "$schema": {"type": "string", "format": "uri"},
        "version": {"enum": ["2.1.0"]},
        "runs": {"type": "array", "items": {"$ref": "#/$defs/run"}},
    },
    "$defs": {
        "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}],
                    "properties": {"text": {"type": "string"}}},
        "run": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"],
                         "properties": {"driver": {"$ref": "#/$defs/toolComponent"}}},
                "results": {"type": "array", "items": {"$ref": "#/$defs/result"}},
            },
        },
        "toolComponent": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "informationUri": {"type": "string", "format": "uri"},
                "rules": {"type": "array", "items": {"$ref": "#/$defs/reportingDescriptor"}},
            },
        },
        "reportingDescriptor": {
            "type": "object",
            "required": ["id"],
            "properties": {
                "id": {"type": "string"},
                "shortDescription": {"$ref": "#/$defs/message"},
                "fullDescription": {"$ref": "#/$defs/message"},
                "help": {"$ref": "#/$defs/message"},
                "defaultConfiguration": {"type": "object", "properties": {
                    "level": {"enum": ["none", "note", "warning", "error"]}}},
                "properties": {"type": "object", "properties": {
                    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                    "security-severity": {"type": "string"}}},
            },
        },
        "result": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "ruleId": {"type": "string"},
                "ruleIndex": {"type": "integer", "minimum": -1},
                "level": {"enum": ["none", "note", "warning", "error"]},
                "message": {"$ref": "#/$defs/message"},
                "occurrenceCount": {"type": "integer", "minimum": 1},
                "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
                "locations": {"type": "array", "items": {"type": "object", "properties": {
                    "logicalLocations": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "fullyQualifiedName": {"type": "string"},
                        "kind": {"type": "string"}}}},
                    "physicalLocation": {"type": "object", "required": ["artifactLocation"]},
                }}},
                "suppressions": {"type": "array", "items": {"type": "object", "required": ["kind"]}},
            },
        },
    },
}

pytestmark = pytest.mark.skipif(not SHOP.is_file(), reason="examples/recordings/shop.jsonl not present")


def run(argv: list[str]) -> int:
    return main(argv)


@pytest.fixture(scope="module")
def shop_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shop recording replayed into a state dir (one install secret, so one set of ids)."""
    state = tmp_path_factory.mktemp("shop") / "state"
    assert run(["replay", str(SHOP), "--state-dir", str(state), "--report", "summary"]) == 0
    return state


def test_sarif_from_state_is_valid_and_complete(tmp_path: Path, shop_state: Path) -> None:
    out_json, out_sarif = tmp_path / "r.json", tmp_path / "r.sarif"
    assert run(["report", "--state-dir", str(shop_state), "--format", "json", "-o", str(out_json)]) == 0
    assert run(["report", "--state-dir", str(shop_state), "--format", "sarif", "-o", str(out_sarif)]) == 0
    rep = orjson.loads(out_json.read_bytes())
    sarif = orjson.loads(out_sarif.read_bytes())
    jsonschema.validate(sarif, SARIF_SUBSET, format_checker=jsonschema.FormatChecker())
    run0 = sarif["runs"][0]
    rules = run0["tool"]["driver"]["rules"]
    results = run0["results"]
    assert rep["findings"], "the shop recording should produce findings"
    assert sorted(r["partialFingerprints"]["apiwardFindingId/v1"] for r in results) == sorted(
        f["id"] for f in rep["findings"])
    assert {r["id"] for r in rules} == {f["rule"] for f in rep["findings"]}
    for r in results:
        assert rules[r["ruleIndex"]]["id"] == r["ruleId"]
    by_id = {f["id"]: f for f in rep["findings"]}
    for r in results:
        f = by_id[r["partialFingerprints"]["apiwardFindingId/v1"]]
        assert r["occurrenceCount"] == f["count"]
        if f["owasp"]:
            assert f"OWASP-{f['owasp']}" in rules[r["ruleIndex"]]["properties"]["tags"]


def test_sarif_maps_severity_and_spec_location() -> None:
    rep = {"findings": [
        {"id": "a1", "rule": "zerotrust.unlisted_edge", "severity": "high", "owasp": "API8:2023",
         "title": "Call not allowed by policy", "subject": {"client": "gw", "server": "db"},
         "subject_label": "gw -> db", "count": 3, "confidence": 1.0, "compliance": ["PCI-DSS:1.2"],
         "remediation": "Add the edge to the policy or stop the call.", "muted": True},
        {"id": "b2", "rule": "inventory.shadow_endpoint", "severity": "low", "owasp": "API9:2023",
         "title": "Endpoint not in the spec", "subject": {"service": "users", "method": "GET", "route": "/x"},
         "subject_label": "users GET /x", "count": 1, "confidence": 0.5},
    ]}
    s = to_sarif(rep, {"users": "specs/users.yaml"})
    jsonschema.validate(s, SARIF_SUBSET)
    r0, r1 = s["runs"][0]["results"]
    assert r0["level"] == "error" and r0["suppressions"][0]["justification"] == "muted"
    assert r1["level"] == "note"
    assert r1["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "specs/users.yaml"
    assert r1["locations"][0]["logicalLocations"][0]["fullyQualifiedName"] == "users:GET /x"
    rules = s["runs"][0]["tool"]["driver"]["rules"]
    assert rules[0]["properties"]["security-severity"] == "8.0"
    assert rules[0]["help"]["text"].startswith("Add the edge")


class _Checker(HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k in ("src", "href") and v and not v.startswith("#"):
                self.external.append(v)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_one_self_contained_page_with_graph_and_tables(tmp_path: Path, shop_state: Path) -> None:
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    assert run(["report", "--state-dir", str(shop_state), "--format", "json", "-o", str(out_json)]) == 0
    assert run(["report", "--replay", str(SHOP), "--format", "html", "-o", str(out_html)]) == 0
    rep = orjson.loads(out_json.read_bytes())
    page = out_html.read_text()
    c = _Checker()
    c.feed(page)
    c.close()
    assert c.stack == [] and c.external == []
    assert {"svg", "table", "path", "rect"} <= c.tags
    text = " ".join(c.text)
    for n in rep["graph"]["nodes"]:
        assert n["id"][:22] in text
    assert page.count("marker-end=") == len(rep["graph"]["edges"])
    for f in rep["findings"][:5]:
        assert f["rule"] in text


def test_html_escapes_hostile_names() -> None:
    rep: dict[str, Any] = {
        "graph": {"nodes": [{"id": "<script>alert(1)</script>", "kind": "service"}], "edges": []},
        "inventory": [], "findings": [],
    }
    page = render_html(rep)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_layered_layout_puts_callers_left_and_survives_cycles() -> None:
    pos = layered_layout(["gw", "orders", "pay", "db"],
                         [("gw", "orders"), ("orders", "pay"), ("pay", "db"), ("orders", "db"), ("pay", "orders")])
    assert pos["gw"][0] < pos["orders"][0] < pos["db"][0]
    assert len(set(pos.values())) == 4


def test_report_from_state_dir_matches_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    capsys.readouterr()
    assert run(["replay", str(SHOP), "--state-dir", str(state), "--report", "json"]) == 0
    ra = orjson.loads(capsys.readouterr().out)
    b = tmp_path / "state.json"
    assert run(["report", "--state-dir", str(state), "--format", "json", "-o", str(b)]) == 0
    rb = orjson.loads(b.read_bytes())
    assert sorted(f["id"] for f in ra["findings"]) == sorted(f["id"] for f in rb["findings"])
    edges = lambda r: sorted((e["client"], e["server"], e["connection_type"], e["calls"])  # noqa: E731
                             for e in r["graph"]["edges"])
    assert edges(ra) == edges(rb)
    assert sorted((e["service"], e["method"], e["route"]) for e in ra["inventory"]) == sorted(
        (e["service"], e["method"], e["route"]) for e in rb["inventory"])
    md = tmp_path / "r.md"
    assert run(["report", "--state-dir", str(state), "--format", "markdown", "-o", str(md)]) == 0
    assert md.read_text().startswith("# apiward report")


def test_missing_state_is_one_clear_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["report", "--state-dir", str(tmp_path / "nope"), "--format", "json"]) == 2
    err = capsys.readouterr().err
    assert "no apiward state here" in err and "Traceback" not in err
    assert run(["report", "--replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def _incident_report() -> dict[str, Any]:
    def finding(fid: str, label: str, sev: str, incident: str) -> dict[str, Any]:
        return {"id": fid, "rule": "abuse.endpoint_flood", "severity": sev, "owasp": "API4:2023",
                "title": "Request flood on an endpoint", "subject": {"service": label},
                "subject_label": label, "count": 10, "confidence": 0.9, "incident": incident}

    findings = [finding("h1", "orders GET /o", "high", "r1"), finding("x9", "users GET /u", "low", "x9"),
                finding("r1", "gateway GET /api/o", "high", "r1")]
    incidents = [{**findings[2], "hops": [{"id": "h1"}]}, {**findings[1], "hops": []}]
    return {"findings": findings, "incidents": incidents}


def test_sarif_results_carry_their_incident() -> None:
    s = to_sarif(_incident_report())
    jsonschema.validate(s, SARIF_SUBSET)
    props = {r["partialFingerprints"]["apiwardFindingId/v1"]: r["properties"] for r in s["runs"][0]["results"]}
    assert props["r1"]["incident"] == props["h1"]["incident"] == "r1"
    assert props["r1"]["incidentRoot"] is True and props["h1"]["incidentRoot"] is False
    assert props["x9"]["incident"] == "x9" and props["x9"]["incidentRoot"] is True


def test_html_lists_each_incident_root_then_its_hops() -> None:
    page = render_html(_incident_report())
    rows = [r for r in page.split("<tr") if "abuse.endpoint_flood" in r]
    assert [("gateway" in r, "orders" in r, "users" in r) for r in rows] == [
        (True, False, False), (False, True, False), (False, False, True)]
    assert rows[1].startswith(' class="hop"') and "&#8627; orders" in rows[1]
    assert not rows[0].startswith(' class="hop"') and not rows[2].startswith(' class="hop"')
