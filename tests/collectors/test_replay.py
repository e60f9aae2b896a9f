"""Replay of all three recording formats, gzip, stdin, and bad lines."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from collectors.replay import RecordingError, ReplaySummary, iter_recording, write_delimited
from tests.collectors.payloads import SPEC_JSON_EXAMPLE, request

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "recordings" / "shop.jsonl"


def _read(path: str) -> tuple[list, ReplaySummary]:
    summary = ReplaySummary()
    spans = [s for batch in iter_recording(path, summary) for s in batch]
    return spans, summary


def test_sample_recording_jsonl() -> None:
    spans, summary = _read(str(SAMPLE))
    assert summary.formats == ["otlp-jsonl"] and summary.ok and summary.records > 5
    assert all(s.source == "replay" for s in spans)
    services = {s.service for s in spans}
    assert {"gateway", "users", "orders", "payments", "inventory", "notifications"} <= services
    assert len({s.trace_id for s in spans}) >= 24
    assert any(s.faas and s.faas.trigger == "http" for s in spans)
    assert any(s.db and s.db.system == "sqlite" for s in spans)
    assert any(s.messaging and s.messaging.destination == "order-events" for s in spans)
    assert any("http.method" in s.attributes for s in spans)  # legacy conventions
    assert any("http.request.method" in s.attributes for s in spans)  # stable conventions
    assert any(s.http and s.http.server_address == "api.cardprocessor.example" for s in spans)
    assert any(s.http and "email=" in s.http.query for s in spans)
    assert any(e.stacktrace for s in spans for e in s.exceptions)
    assert any(s.http and s.http.scheme == "http" for s in spans)
    authz = [s.http.request_headers.get("authorization", "") for s in spans if s.http]
    assert any(a.startswith("Bearer eyJ") for a in authz) and "" in authz


def test_sample_generator_is_deterministic(tmp_path: Path) -> None:
    out = tmp_path / "shop.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "make_sample_recording.py"), str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == SAMPLE.read_bytes()
    assert out.stat().st_size < 1024 * 1024


def test_plain_otlp_json_pretty(tmp_path: Path) -> None:
    p = tmp_path / "one.json"
    p.write_bytes(SPEC_JSON_EXAMPLE)  # pretty-printed, several lines
    spans, summary = _read(str(p))
    assert summary.formats == ["otlp-json"] and summary.ok
    assert [s.name for s in spans] == ["I'm a server span"]


@pytest.mark.parametrize("compress", [False, True])
def test_length_delimited_protobuf(tmp_path: Path, compress: bool) -> None:
    p = tmp_path / "rec.pb"
    with gzip.open(p, "wb") if compress else open(p, "wb") as f:
        write_delimited([request(2).SerializeToString(), request(3).SerializeToString()], f)
    spans, summary = _read(str(p))
    assert summary.formats == ["otlp-protobuf-delimited"] and summary.records == 2
    assert len(spans) == 5 and spans[0].http is not None


def test_gzip_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "shop.jsonl.gz"
    p.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    spans, summary = _read(str(p))
    assert summary.ok and len(spans) == len(_read(str(SAMPLE))[0])


def test_bad_lines_are_skipped_and_named(tmp_path: Path) -> None:
    line = orjson.dumps(orjson.loads(SPEC_JSON_EXAMPLE))
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(line + b"\n{broken\n" + line + b"\n" + b'{"resourceSpans": 3}\n' + line + b"\n")
    spans, summary = _read(str(p))
    assert len(spans) == 3
    assert summary.bad_records == 2 and not summary.ok
    assert summary.errors[0].startswith(f"{p}:2: ") and f"{p}:4: " in summary.errors[1]


def test_bad_protobuf_record_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "rec.pb"
    with open(p, "wb") as f:
        write_delimited(
            [
                request(1).SerializeToString(),
                b"\xff\xff\xff garbage",
                request(2).SerializeToString(),
            ],
            f,
        )
    spans, summary = _read(str(p))
    assert len(spans) == 3 and summary.bad_records == 1 and "record 2" in summary.errors[0]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read recording .*nope.jsonl"):
        list(iter_recording(str(tmp_path / "nope.jsonl")))


def test_stdin() -> None:
    code = (
        "import sys; from collectors.replay import iter_recording, ReplaySummary\n"
        "s = ReplaySummary(); n = sum(len(b) for b in iter_recording('-', s))\n"
        "print(n, s.formats[0], s.records)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=gzip.compress(SAMPLE.read_bytes()),
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    n, fmt, records = out.stdout.decode().split()
    assert int(n) == len(_read(str(SAMPLE))[0]) and fmt == "otlp-jsonl" and int(records) > 5
