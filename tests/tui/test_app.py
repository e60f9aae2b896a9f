"""Pilot tests of the TUI against the fixture API (a test double of the agent API)."""

from __future__ import annotations

import copy
import csv

from tests.tui.conftest import loaded, shows, wait_for
from tests.tui.screen_text import screen_text
from tui.screens.endpoint import EndpointScreen
from tui.screens.findings import FindingsScreen
from tui.screens.graph import GraphScreen
from tui.screens.help import HelpScreen
from tui.screens.inventory import InventoryScreen
from tui.screens.overview import OverviewScreen
from tui.screens.traces import TracesScreen
from tui.widgets.graph_canvas import GraphCanvas
from tui.widgets.live_table import LiveTable

SIZE = (120, 36)


async def test_number_keys_and_palette_navigate(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert isinstance(app.screen, OverviewScreen)
        for key, cls in (("2", GraphScreen), ("3", InventoryScreen), ("4", FindingsScreen),
                         ("5", TracesScreen), ("1", OverviewScreen)):  # fmt: skip
            await pilot.press(key)
            await wait_for(pilot, lambda cls=cls: isinstance(app.screen, cls))
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"go to findings")
        await pilot.pause(0.2)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))


async def test_help_lists_the_screens_keys(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("4", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        assert "Acknowledge" in text and "Mute" in text and "Quit" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))


async def test_inventory_filter_toggles_and_sort(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        screen = app.screen
        table = screen.query_one(LiveTable)
        await wait_for(pilot, lambda: table.row_count == 10)
        # sorted by calls, descending
        assert [ep["calls"] for ep in screen.rows] == sorted(
            (ep["calls"] for ep in screen.rows), reverse=True
        )
        await pilot.press("slash", *"payments")
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("enter", "s")  # back to the table, then only shadow
        await wait_for(pilot, lambda: table.row_count == 1)
        assert screen.rows[0]["route"] == "/charge"
        await pilot.press("s", "u")  # shadow off, only unauthenticated
        await wait_for(pilot, lambda: table.row_count == 3)
        assert all(ep["auth"] == [] for ep in screen.rows)
        await pilot.press("u", "slash", "escape", "enter")
        await wait_for(pilot, lambda: table.row_count == 10)
        await pilot.press("o")  # sort by errors
        await wait_for(pilot, lambda: screen.rows[0]["route"] == "/checkout")
        await pilot.press("r")  # ascending
        await wait_for(pilot, lambda: screen.rows[0]["errors"] == 0)
        assert "sort Errors ▲" in screen_text(app)


async def test_inventory_enter_opens_endpoint(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3", "slash", *"POST /orders", "enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one(LiveTable).row_count == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, EndpointScreen))
        await shows(pilot, "502")  # the status mix from /api/v1/endpoint
        text = screen_text(app)
        assert "status mix" in text and "frontend (205)" in text
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))


async def test_findings_detail_trace_and_acknowledge(make_app, api):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one(LiveTable).row_count == 7)
        # first row: the critical card finding; its detail and evidence trace
        await shows(pilot, "Card numbers returned in plain text")
        await shows(pilot, "» ")  # the offending span is highlighted in the trace tree
        text = screen_text(app)
        assert "How to fix" in text and "PCI-DSS 3.4" in text
        # never a raw sensitive value, even when the evidence carries one
        assert "4111 1111 1111 1111" not in text and "alice@example.com" not in text
        assert "****1111" in text
        await pilot.press("a")
        await wait_for(pilot, lambda: api.posts != [])
        fid = "a1b2c3d4e5f60002"
        assert api.posts[0] == (f"/api/v1/findings/{fid}/ack", {"value": True})
        await wait_for(pilot, lambda: any(
            f["id"] == fid and f["acknowledged"] for f in app.snapshot.findings))  # fmt: skip
        assert screen.query_one(LiveTable).selected_key == fid  # selection stays put
        await pilot.press("m")
        await wait_for(pilot, lambda: len(api.posts) == 2)
        assert api.posts[1] == (f"/api/v1/findings/{fid}/mute", {"value": True})


async def test_selection_stays_put_while_rows_update(make_app, api):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))
        table = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        await pilot.press("down", "down")
        chosen = table.selected_key
        new = copy.deepcopy(api.data["findings"][0])
        new.update(id="ffff000000000001", rule="aaa.new", severity="critical")
        with api.lock:
            api.data["findings"].insert(0, new)
            api.data["stats"]["findings"] += 1
        app.refresh_data()
        await wait_for(pilot, lambda: table.row_count == 8)
        assert table.selected_key == chosen
        assert table.cursor_row == 3  # moved down with its row


async def test_disconnect_banner_and_reconnect(make_app, api):
    app = make_app(poll_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        api.stop()
        await shows(pilot, "Disconnected")
        assert "Cannot reach the agent" in screen_text(app)
        api.start()  # same port
        await wait_for(pilot, lambda: app.problem == "", tries=600)
        assert "Disconnected" not in screen_text(app)


async def test_wrong_token_gets_a_clear_banner(api, make_app):
    api.token = "s3cret"
    app = make_app(token="wrong")
    async with app.run_test(size=SIZE) as pilot:
        await shows(pilot, "refused the API token")
        assert "--token" in screen_text(app)


async def test_graph_navigation_edges_and_neighbourhood(make_app):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.screen, GraphScreen))
        canvas = app.screen.query_one(GraphCanvas)
        await wait_for(pilot, lambda: canvas.node == "web-client")
        await pilot.press("down")
        await wait_for(pilot, lambda: canvas.node == "frontend")
        await shows(pilot, "← web-client")
        await pilot.press("tab")
        await wait_for(pilot, lambda: canvas.edge is not None)
        await shows(pilot, "verdict")
        assert canvas.layout_ is not None and len(canvas.layout_.boxes) == 8
        await pilot.press("f")  # frontend's neighbourhood only
        await wait_for(pilot, lambda: len(canvas.layout_.boxes) == 4)
        await pilot.press("f")
        await wait_for(pilot, lambda: len(canvas.layout_.boxes) == 8)


async def test_traces_search_and_waterfall(make_app):
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("5")
        await wait_for(pilot, lambda: isinstance(app.screen, TracesScreen))
        table = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        await pilot.press("slash", *"error")
        await wait_for(pilot, lambda: table.row_count == 1)
        await shows(pilot, "payments: POST /charge")  # fetched from /api/v1/traces/<id>


async def test_export_current_view(make_app, tmp_path):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        await wait_for(pilot, lambda: app.screen.query_one(LiveTable).row_count == 10)
        await pilot.press("e")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: list(tmp_path.glob("apiward-inventory-*.csv")) != [])
        rows = list(csv.reader(next(tmp_path.glob("*.csv")).open()))
        assert rows[0][:3] == ["service", "method", "route"] and len(rows) == 11


async def test_ten_thousand_endpoints_and_findings(make_app, api):
    base = api.data["inventory"][0]
    api.data["inventory"] = [
        {**base, "service": f"svc-{i % 50}", "route": f"/r/{i}", "calls": i} for i in range(10_000)
    ]
    f0 = api.data["findings"][2]
    api.data["findings"] = [{**f0, "id": f"{i:016x}", "count": i} for i in range(10_000)]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, InventoryScreen))
        table = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: table.row_count == 10_000)
        await pilot.press("ctrl+end")
        await wait_for(pilot, lambda: table.cursor_row == 9_999)
        await pilot.press("pageup", "pageup")
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))
        ftable = app.screen.query_one(LiveTable)
        await wait_for(pilot, lambda: ftable.row_count == 10_000)


async def test_every_screen_renders_in_the_light_theme(make_app):
    app = make_app(theme="textual-light")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        for key in "23451":
            await pilot.press(key)
            await pilot.pause()
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"
