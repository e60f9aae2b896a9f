"""Bad query filters answer 400 with the allowed values; spec errors show in
/api/v1/stats and in the replay report; replay of an unreadable recording exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import report
from agent.config import Config
from agent.runtime import Agent
from tests.agent.test_api import feed, get

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bad_spec(tmp_path: Path) -> Path:
    p = tmp_path / "broken.yaml"
    p.write_text("openapi: 3.0.0\npaths: [not, a, mapping\n")
    return p


@pytest.fixture
def agent(tmp_path: Path, bad_spec: Path):
    a = Agent(Config(state_dir=tmp_path, api_port=0, bind="127.0.0.1", persist=False,
                     specs={"users": str(bad_spec)}))
    a.start(receivers=False)
    yield a
    a.stop()


@pytest.mark.parametrize(("path", "words"), [
    ("/api/v1/findings?severity=bogus", ["severity", "bogus", "info", "low", "medium", "high", "critical"]),
    ("/api/v1/inventory?lifecycle=bogus", ["lifecycle", "bogus", "shadow", "zombie", "dormant"]),
    ("/api/v1/traces?status=bogus", ["status", "bogus", "ok", "error"]),
])
def test_unknown_filter_values_are_400_with_the_allowed_ones(agent, path, words) -> None:
    status, ctype, body = get(f"http://127.0.0.1:{agent.api_port}{path}")
    assert status == 400 and ctype == "application/json"
    msg = json.loads(body)["error"]
    assert all(w in msg for w in words), msg


@pytest.mark.parametrize("path", [
    "/api/v1/findings?severity=HIGH", "/api/v1/findings?severity=", "/api/v1/findings?owasp=API9:2023",
    "/api/v1/findings?rule=zerotrust", "/api/v1/inventory?lifecycle=shadow", "/api/v1/traces?status=error",
])
def test_known_filter_values_still_work(agent, path) -> None:
    status, _, body = get(f"http://127.0.0.1:{agent.api_port}{path}")
    assert status == 200 and isinstance(json.loads(body), list)


def test_stats_lists_spec_errors(agent, bad_spec: Path) -> None:
    for _ in range(2):  # before any traffic, and after the first batch
        status, _, body = get(f"http://127.0.0.1:{agent.api_port}/api/v1/stats")
        assert status == 200
        errors = json.loads(body)["spec_errors"]
        assert len(errors) == 1 and "users" in errors[0] and str(bad_spec) in errors[0]
        feed(agent)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_replay_report_has_spec_errors(tmp_path: Path, bad_spec: Path) -> None:
    rec = ROOT / "examples" / "recordings"
    files = sorted(str(p) for p in rec.glob("*.jsonl"))[:1]
    assert files
    out = _cli("replay", *files, "--spec", f"users={bad_spec}", "--report", "json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert {"graph", "inventory", "findings"} <= set(rep)
    assert len(rep["spec_errors"]) == 1 and str(bad_spec) in rep["spec_errors"][0]
    md = report.render_markdown(rep)
    assert "## Spec errors" in md and str(bad_spec) in md
    clean = _cli("replay", *files, "--report", "json")
    assert json.loads(clean.stdout)["spec_errors"] == []


@pytest.mark.parametrize("target", ["missing.jsonl", "adir"])
def test_replay_of_unreadable_recording_is_one_line_and_exit_2(tmp_path: Path, target: str) -> None:
    (tmp_path / "adir").mkdir()
    out = _cli("replay", str(tmp_path / target))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / target) in lines[0], out.stderr
