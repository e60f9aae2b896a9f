"""Unit tests of the TUI's pure parts: redaction, graph layout, waterfall, client errors."""

from __future__ import annotations

import pytest

from tests.tui.fixture_api import FixtureApi, load_fixture
from tui.client import ApiClient, ApiError, NotAnAgent, Unauthorized, Unreachable, normalise_url
from tui.data import export_rows, matches, sort_key
from tui.graph_layout import GraphLayout
from tui.redact import safe, safe_tree
from tui.widgets.waterfall import waterfall_text


@pytest.mark.parametrize(
    ("raw", "must_not_contain", "masked"),
    [
        ("card 4111 1111 1111 1111 ok", "4111 1111 1111", "****1111"),
        ("card 4111111111111111", "411111111111", "****1111"),
        ("mail alice@example.com", "alice@", "***@example.com"),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "Bearer ***"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig123", "eyJzdWIi", "eyJ***"),
        ("ssn 123-45-6789", "123-45", "***-**-6789"),
        ("password=hunter22", "hunter22", "password=***"),
    ],
)
def test_safe_masks_raw_values(raw, must_not_contain, masked):
    out = safe(raw)
    assert must_not_contain not in out
    assert masked in out


@pytest.mark.parametrize("text", ["****1111", "j***@example.com", "GET /orders/{id}", "trace 42"])
def test_safe_leaves_masked_and_plain_text_alone(text):
    assert safe(text) == text


def test_safe_tree_walks_nested_values():
    assert safe_tree({"a": ["bob@example.org", 3]}) == {"a": ["***@example.org", 3]}


def test_layout_layers_and_navigation():
    g = load_fixture()["graph"]
    layout = GraphLayout(g["nodes"], g["edges"])
    boxes = layout.boxes
    assert set(boxes) == {n["id"] for n in g["nodes"]}
    # a client is above the service it calls
    assert boxes["web-client"].y < boxes["frontend"].y < boxes["checkout"].y < boxes["payments"].y
    assert layout.neighbour("web-client", "down") == "frontend"
    assert layout.neighbour("frontend", "up") == "web-client"
    text = layout.render("frontend").plain
    assert "frontend" in text and "▼" in text and "db" in text and "ext" in text
    # no two boxes overlap
    spans = sorted((b.y, b.x, b.x + b.w) for b in boxes.values())
    for (y1, _a, e1), (y2, s2, _b) in zip(spans, spans[1:], strict=False):
        assert y1 != y2 or e1 <= s2


def test_layout_survives_cycles_self_loops_and_unknown_nodes():
    edges = [{"client": "a", "server": "b"}, {"client": "b", "server": "a"},
             {"client": "c", "server": "c"}]  # fmt: skip
    layout = GraphLayout([{"id": "a", "kind": "service"}], edges)
    assert set(layout.boxes) == {"a", "b", "c"}
    assert "▲" in layout.render().plain


def test_waterfall_marks_the_offending_span():
    trace = load_fixture()["traces"][0]
    hot = trace["spans"][5]["span_id"]
    text = waterfall_text(trace["spans"], 100, {hot}).plain.splitlines()
    assert len(text) == len(trace["spans"])
    marked = [line for line in text if line.startswith("» ")]
    assert len(marked) == 1 and "payments: POST /charge" in marked[0]


def test_client_errors_are_sentences():
    api = FixtureApi(token="t0k3n").start()
    try:
        with pytest.raises(Unauthorized, match="refused the API token"):
            ApiClient(api.url, "bad").check()
        assert ApiClient(api.url, "t0k3n").check()["findings"] == 7
        assert len(ApiClient(api.url, "t0k3n").findings()) == 7
    finally:
        api.stop()
    with pytest.raises(Unreachable, match="Cannot reach the agent"):
        ApiClient(api.url, timeout=2).check()
    with pytest.raises(ApiError, match="not an agent URL"):
        normalise_url("ftp://x")
    assert normalise_url("127.0.0.1:4320/") == "http://127.0.0.1:4320"


def test_client_tells_when_the_url_is_not_an_agent():
    api = FixtureApi().start()
    try:
        with pytest.raises(NotAnAgent, match="query API port"):
            ApiClient(api.url + "/nope").check()
    finally:
        api.stop()


def test_matches_sort_key_and_export(tmp_path):
    assert matches(["payments", "/charge"], "pay charge")
    assert not matches(["payments"], "orders")
    assert sorted(["10", "9", "-", "abc"], key=sort_key) == ["9", "10", "abc", "-"]
    n = export_rows(tmp_path / "x.json", ["a", "b"], [[1, "x"]])
    assert n == 1 and '"a": 1' in (tmp_path / "x.json").read_text()


def test_health_shows_the_receiver_process_when_there_is_one():
    from rich.console import Console

    from tui.screens.overview import OverviewScreen

    def text(stats):
        console = Console(record=True, width=60)
        console.print(OverviewScreen._health(None, stats))  # type: ignore[arg-type]
        return console.export_text()

    base = {"spans_by_source": {"otlp": 10}, "spans_dropped": 0, "queue_depth": 0, "queue_capacity": 50000}
    assert "receiver process" not in text(base)  # receivers in process: no row
    assert "receiver process" in text({**base, "edge_process": {"restarts": 0.0}})
    assert "up" in text({**base, "edge_process": {"restarts": 0.0}})
    assert "2 restarts" in text({**base, "edge_process": {"restarts": 2.0, "cpu_seconds": 1.5}})
