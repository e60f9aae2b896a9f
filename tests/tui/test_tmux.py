"""Runs the installed `apiward tui --replay examples/recordings/shop.jsonl` in a
real pseudo-terminal (tmux), presses keys and reads the screen text back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.tui.fixture_api import FixtureApi

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "examples" / "recordings" / "shop.jsonl"
APIWARD = Path(sys.executable).with_name("apiward")

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, command: str) -> None:
        self.name = f"apiward-test-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", self.name, "-x", "100", "-y", "30",
             f"{command}; echo EXIT=$?; sleep 30"],
            check=True, cwd=ROOT,
        )  # fmt: skip

    def text(self) -> str:
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        )
        return out.stdout

    def press(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, needle: str, tries: int = 600) -> str:
        for _ in range(tries):
            text = self.text()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared; screen:\n{self.text()}")

    def wait_gone(self, needle: str, tries: int = 600) -> None:
        for _ in range(tries):
            if needle not in self.text():
                return
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never went away; screen:\n{self.text()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def _command() -> tuple[str, FixtureApi | None]:
    if RECORDING.is_file():
        return f"{APIWARD} tui --replay {RECORDING}", None
    api = FixtureApi().start()  # the recording is not there: attach to the test double
    return f"{APIWARD} tui --connect {api.url}", api


def test_installed_tui_in_a_real_terminal():
    if not APIWARD.exists():
        pytest.skip(f"{APIWARD} is not installed (pip install -e .)")
    command, api = _command()
    tmux = Tmux(command)
    try:
        screen = tmux.wait_for("Overview")
        tmux.wait_for("spans replay" if api is None else "services")
        tmux.press("4")
        tmux.wait_for("Acknowledge")
        tmux.press("?")
        screen = tmux.wait_for("Keys: Findings")
        assert "Mute" in screen
        tmux.press("Escape")
        tmux.wait_gone("Keys: Findings")  # a terminal needs a moment to tell Esc from Alt+key
        tmux.press("3")
        screen = tmux.wait_for("endpoints")
        assert "Method" in screen and "Route" in screen
        tmux.press("5")
        tmux.wait_for("Waterfall")
        tmux.press("2")
        tmux.wait_for("Service graph")
        tmux.press("q")
        tmux.wait_for("EXIT=0")
    finally:
        tmux.close()
        if api is not None:
            api.stop()


def test_connect_with_a_wrong_token_or_url_says_so(tmp_path):
    if not APIWARD.exists():
        pytest.skip(f"{APIWARD} is not installed (pip install -e .)")
    api = FixtureApi(token="s3cret").start()
    try:
        bad = subprocess.run([str(APIWARD), "tui", "--connect", api.url, "--token", "nope"],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert bad.returncode == 2
        assert "refused the API token" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        api.stop()
    gone = subprocess.run([str(APIWARD), "tui", "--connect", api.url],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert gone.returncode == 2
    assert "Cannot reach the agent" in gone.stderr and "Traceback" not in gone.stderr
