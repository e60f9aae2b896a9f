"""Read OTLP trace recordings back as batches of spans (source ``replay``).

Three formats, told apart by sniffing the first bytes (after gzip, which is
detected by its magic number):

- JSON Lines, one OTLP/JSON ``ExportTraceServiceRequest`` per line: what the
  OpenTelemetry Collector's file exporter writes;
- one plain OTLP/JSON ``ExportTraceServiceRequest`` (may be pretty-printed);
- length-delimited protobuf: each ``ExportTraceServiceRequest`` preceded by
  its size as a varint (``writeDelimitedTo`` framing).

``-`` reads standard input. A bad line or record does not stop the replay:
it is skipped, and :class:`ReplaySummary` (pass one in to get it filled)
counts it and keeps a message naming the file and the line. Only a file that
cannot be opened raises :class:`RecordingError`.
"""

from __future__ import annotations

import gzip
import io
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import orjson

from agent.model import SOURCE_REPLAY, Span
from collectors.otlp_convert import (
    Conversion,
    OtlpDecodeError,
    convert_json,
    convert_proto,
    decode_json,
    decode_proto,
)

log = logging.getLogger("apiward.replay")

MAX_RECORD_BYTES = 256 * 1024 * 1024
_MAX_ERRORS_KEPT = 20


class RecordingError(Exception):
    """A recording that cannot be read at all (missing file, unreadable gzip)."""


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read: counts and the first few error messages.

    ``bad_records`` counts skipped lines (JSON) or records (protobuf);
    ``rejected_spans`` counts spans dropped for bad ids inside good records.
    """

    files: int = 0
    records: int = 0
    spans: int = 0
    bad_records: int = 0
    rejected_spans: int = 0
    formats: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS_KEPT:
            self.errors.append(message)
        log.warning("%s", message)

    @property
    def ok(self) -> bool:
        return self.bad_records == 0


def _open(path: str) -> tuple[IO[bytes], str]:
    name = "<stdin>" if path == "-" else path
    if path == "-":
        raw: IO[bytes] = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except OSError as e:
            raise RecordingError(
                f"cannot read recording {path}: {e.strerror or e}; check the path"
            ) from None
    buf = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
    if buf.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buf, mode="rb"), name  # type: ignore[return-value]
    return buf, name


def iter_recording(path: str, summary: ReplaySummary | None = None) -> Iterator[list[Span]]:
    """Yield one list of spans per request in the recording at ``path`` (``-``: stdin)."""
    summary = summary if summary is not None else ReplaySummary()
    stream, name = _open(path)
    summary.files += 1
    try:
        head = _peek_nonspace(stream)
        if head == b"{":
            yield from _read_json(stream, name, summary)
        elif head == b"":
            summary.formats.append("empty")
        else:
            yield from _read_delimited(stream, name, summary)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        summary.bad_records += 1
        summary.error(f"{name}: cannot read further ({e}); the rest of the file was skipped")
    finally:
        if path != "-":
            stream.close()


def _peek_nonspace(stream: IO[bytes]) -> bytes:
    """First non-whitespace byte without consuming anything but leading whitespace."""
    while True:
        chunk = stream.peek(64)  # type: ignore[attr-defined]
        if not chunk:
            return b""
        stripped = chunk.lstrip()
        if stripped:
            return stripped[:1]
        stream.read(len(chunk))


def _take(conv: Conversion, where: str, summary: ReplaySummary) -> list[Span]:
    summary.records += 1
    if conv.rejected:
        summary.rejected_spans += conv.rejected
        summary.error(f"{where}: {conv.rejected} span(s) rejected: {conv.message}")
    summary.spans += len(conv.spans)
    return conv.spans


def _read_json(stream: IO[bytes], name: str, summary: ReplaySummary) -> Iterator[list[Span]]:
    first = stream.readline()
    try:
        obj = orjson.loads(first)
        one_line = isinstance(obj, dict)
    except orjson.JSONDecodeError:
        one_line = False
    if not one_line:
        # Not one object per line: a plain (pretty-printed) OTLP/JSON file.
        summary.formats.append("otlp-json")
        data = first + stream.read()
        try:
            conv = convert_json(decode_json(data), SOURCE_REPLAY)
        except OtlpDecodeError as e:
            summary.bad_records += 1
            summary.error(f"{name}: not a valid OTLP/JSON ExportTraceServiceRequest: {e}")
            return
        spans = _take(conv, name, summary)
        if spans:
            yield spans
        return
    summary.formats.append("otlp-jsonl")
    lineno = 0
    line = first
    while line:
        lineno += 1
        if line.strip():
            try:
                conv = convert_json(decode_json(line), SOURCE_REPLAY)
            except OtlpDecodeError as e:
                summary.bad_records += 1
                summary.error(f"{name}:{lineno}: skipped: {e}")
            else:
                spans = _take(conv, f"{name}:{lineno}", summary)
                if spans:
                    yield spans
        line = stream.readline()


def _read_varint(stream: IO[bytes]) -> tuple[int, int] | None:
    """(value, bytes used) of the next varint, ``None`` at a clean end of file."""
    shift = 0
    value = 0
    for i in range(10):
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise EOFError("file ends inside a length prefix")
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value, i + 1
        shift += 7
    raise EOFError("length prefix is not a valid varint")


def _read_delimited(stream: IO[bytes], name: str, summary: ReplaySummary) -> Iterator[list[Span]]:
    summary.formats.append("otlp-protobuf-delimited")
    index = 0
    offset = 0
    while True:
        head = _read_varint(stream)
        if head is None:
            return
        size, used = head
        index += 1
        if size > MAX_RECORD_BYTES:
            summary.bad_records += 1
            summary.error(
                f"{name}: record {index} (byte {offset}) claims {size} bytes; this is not a "
                "length-delimited protobuf recording, or it is corrupt; the rest was skipped"
            )
            return
        data = stream.read(size)
        if len(data) < size:
            summary.bad_records += 1
            summary.error(f"{name}: record {index} (byte {offset}) is truncated; file ends early")
            return
        where = f"{name}: record {index} (byte {offset})"
        offset += used + size
        try:
            conv = convert_proto(decode_proto(data), SOURCE_REPLAY)
        except OtlpDecodeError as e:
            summary.bad_records += 1
            summary.error(f"{where}: skipped: {e}")
            continue
        spans = _take(conv, where, summary)
        if spans:
            yield spans


def write_delimited(requests: list[bytes], out: IO[bytes]) -> None:
    """Write serialized requests with varint length prefixes (the format read above)."""
    for data in requests:
        n = len(data)
        prefix = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                prefix.append(b | 0x80)
            else:
                prefix.append(b)
                break
        out.write(bytes(prefix))
        out.write(data)
