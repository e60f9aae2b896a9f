"""Snapshot tests of every screen at 80x24 and 160x48, from the fixture API
(a test double of the agent API serving tests/tui/fixtures/shop.json).

Update after an intended change: `pytest tests/tui/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

from tests.tui.conftest import loaded, wait_for
from tui.widgets.live_table import LiveTable

SCREENS = {"overview": "1", "graph": "2", "inventory": "3", "findings": "4", "traces": "5"}
SIZES = {"80x24": (80, 24), "160x48": (160, 48)}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_compare, make_app, screen, size):
    app = make_app()

    async def ready(pilot):
        await loaded(pilot)
        await pilot.press(SCREENS[screen])
        await wait_for(pilot, lambda: app.screen.__class__.__name__.lower().startswith(screen))
        if screen in ("inventory", "findings", "traces"):
            await wait_for(pilot, lambda: app.screen.query_one(LiveTable).row_count > 0)
        if screen in ("findings", "traces"):  # the evidence trace arrives from a worker
            await wait_for(pilot, lambda: "loading" not in str(app.screen.query_one("#trace").render()))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZES[size], run_before=ready)


def test_findings_light_theme(snap_compare, make_app):
    app = make_app(theme="textual-light")

    async def ready(pilot):
        await loaded(pilot)
        await pilot.press("4")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FindingsScreen")
        await wait_for(pilot, lambda: "loading" not in str(app.screen.query_one("#trace").render()))
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 36), run_before=ready)
