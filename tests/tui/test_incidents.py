"""The findings screen against a real agent's query API: one row per incident, with its hops."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import Config
from agent.runtime import Agent
from tests.agent.test_incidents import add_shop_incidents
from tests.tui.conftest import loaded, shows, wait_for
from tests.tui.screen_text import screen_text
from tui.app import ApiwardApp
from tui.client import ApiClient
from tui.screens.findings import FindingsScreen
from tui.widgets.live_table import LiveTable


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    a = Agent(Config(state_dir=tmp_path / "state", api_port=0, bind="127.0.0.1"))
    a.start(receivers=False)
    yield a
    a.stop()


async def test_findings_screen_shows_one_row_per_incident(agent: Agent, tmp_path: Path) -> None:
    ids = add_shop_incidents(agent.state)
    client = ApiClient(f"http://127.0.0.1:{agent.api_port}")
    app = ApiwardApp(client, poll_interval=30.0, export_dir=tmp_path, source="agent")
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert len(app.snapshot.findings) == 4 and len(app.snapshot.incidents) == 2
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, FindingsScreen))
        screen = app.screen
        table = screen.query_one(LiveTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        assert table.selected_key == ids["gateway"]  # the root of the flood incident
        await shows(pilot, "+2 hops")
        await shows(pilot, "Other hops of this incident (2)")
        text = screen_text(app)
        assert "gateway -> 127.0.0.1" in text and "orders GET /orders/{order_id}" in text
        assert f"{ids['orders']} (3 findings)" in text
        # the filter finds an incident by one of its hops
        screen.query_one("#filter").value = "127.0.0.1"
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.selected_key == ids["gateway"]


async def test_overview_top_findings_list_incidents(agent: Agent, tmp_path: Path) -> None:
    add_shop_incidents(agent.state)
    client = ApiClient(f"http://127.0.0.1:{agent.api_port}")
    app = ApiwardApp(client, poll_interval=30.0, export_dir=tmp_path, source="agent")
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await shows(pilot, "+2 hops")  # the overview is the first screen
        text = screen_text(app)
        top = text[text.index("Top open findings"):]
        # the flood's three hops are one row, at its root: the other hops are not listed
        assert "+2 hops gateway GET /api/orders/{order_id}" in top
        assert "orders GET /orders/{order_id}" not in top
        assert "gateway -> 127.0.0.1" not in top
