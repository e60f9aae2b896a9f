"""``apiward detect`` through the real CLI entry point, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def detect(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", "detect", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, timeout=120)


def test_jsonl_offsets_per_line(tmp_path: Path) -> None:
    f = tmp_path / "sample.txt"
    f.write_text('card 4111 1111 1111 1111\nnothing\n{"email": "jane@example.org", "password": "Hunter22!"}\n')
    p = detect("--format", "jsonl", str(f))
    assert p.returncode == 1, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["line"] for x in lines] == [1, 2, 3]
    assert lines[0]["detections"] == [
        {"type": "CREDIT_CARD", "start": 5, "end": 24, "score": 1.0, "masked": "4111********1111"}
    ]
    assert lines[1]["detections"] == []
    assert {d["type"] for d in lines[2]["detections"]} == {"EMAIL_ADDRESS", "PASSWORD"}
    assert "Hunter22!" not in p.stdout and "jane@example.org" not in p.stdout


def test_table_from_stdin_and_list_types() -> None:
    p = detect(stdin="nothing to see here\n")
    assert p.returncode == 0 and "no sensitive data found" in p.stdout
    p = detect("--list-types", "--format", "json")
    types = {t["type"] for t in json.loads(p.stdout)}
    assert len(types) >= 40 and {"CREDIT_CARD", "JWT", "US_SSN"} <= types


def test_missing_file_is_one_sentence() -> None:
    p = detect("/nonexistent/file.txt")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "/nonexistent/file.txt" in p.stderr


def test_list_types_into_a_closed_pipe_is_quiet() -> None:
    # ``apiward detect --list-types | head -1``: the reader leaves after one line.
    p = subprocess.run(f"{sys.executable} -m agent.cli detect --list-types | head -1", shell=True, text=True,
                       capture_output=True, cwd=ROOT, timeout=120)
    assert p.stdout.startswith("TYPE") and p.stdout.count("\n") == 1
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr
