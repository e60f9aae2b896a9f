"""Shared fixtures of the TUI tests: the fixture API (a test double of the
agent's query API, see fixture_api.py) and helpers to drive the app."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tui.fixture_api import FixtureApi
from tests.tui.screen_text import screen_text
from tui.app import ApiwardApp
from tui.client import ApiClient


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests on a fresh asyncio loop (no async plugin needed)."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


@pytest.fixture
def api() -> Iterator[FixtureApi]:
    server = FixtureApi().start()
    yield server
    server.stop()


@pytest.fixture
def make_app(api: FixtureApi, tmp_path: Path) -> Callable[..., ApiwardApp]:
    def make(**kwargs: Any) -> ApiwardApp:
        kwargs.setdefault("poll_interval", 30.0)
        kwargs.setdefault("export_dir", tmp_path)
        kwargs.setdefault("source", "fixture: shop.json")
        token = kwargs.pop("token", None)
        return ApiwardApp(ApiClient(kwargs.pop("url", api.url), token), **kwargs)

    return make


async def wait_for(pilot: Any, predicate: Callable[[], bool], tries: int = 200) -> None:
    """Let the app run until ``predicate()`` holds (no wall-clock assert)."""
    for _ in range(tries):
        if predicate():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"condition never held; screen was:\n{screen_text(pilot.app)}")


async def loaded(pilot: Any) -> None:
    await wait_for(pilot, lambda: pilot.app.snapshot.loaded)
    await pilot.pause()


async def shows(pilot: Any, text: str) -> None:
    await wait_for(pilot, lambda: text in screen_text(pilot.app))
