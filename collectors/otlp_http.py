"""OTLP/HTTP receiver: ``POST /v1/traces`` analysed, ``/v1/logs`` and ``/v1/metrics`` acknowledged.

Bodies are ``application/x-protobuf`` or ``application/json`` (OTLP/JSON),
optionally ``Content-Encoding: gzip``/``deflate``. Answers follow the OTLP/HTTP
specification, in the request's encoding: an ``ExportTraceServiceResponse``
(with ``partial_success`` when some spans were rejected), or a
``google.rpc.Status`` error body with 400 (bad body), 413 (over
``max_message_bytes``, also after decompression: gzip bombs stop at the limit),
415 (unknown content type or encoding), 429 + ``Retry-After`` (queue full),
404/405 for other paths and methods.

A threaded stdlib server: each connection has its own thread, every request is
answered, and an exception in one request is counted and answered with 500
without affecting the others.
"""

from __future__ import annotations

import logging
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from agent.model import SOURCE_OTLP, SpanSink
from collectors.otlp_convert import FULL, INVALID, PARTIAL, count_request, ingest_traces

log = logging.getLogger("apiward.otlp.http")

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
RECEIVER = "otlp-http"
RETRY_AFTER_SECONDS = 1
TRACES_PATH = "/v1/traces"
OTHER_PATHS = ("/v1/logs", "/v1/metrics")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

# google.rpc.Code values used in error bodies
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNIMPLEMENTED = 12
_INTERNAL = 13
_NOT_FOUND = 5


class _BodyError(Exception):
    """A request body we refuse before decoding: HTTP status + message + reason label."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


def _decompress(data: bytes, encoding: str, limit: int) -> bytes:
    """Inflate ``data`` but never past ``limit`` bytes (gzip bombs stop there)."""
    wbits = 16 + zlib.MAX_WBITS if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _BodyError(
                413,
                f"decompressed body is larger than the {limit}-byte limit",
                "too_large",
            )
        out += d.flush()
    except zlib.error as e:
        raise _BodyError(
            400, f"body is not valid {encoding} data ({e})", "invalid_encoding"
        ) from None
    if not d.eof:
        raise _BodyError(400, f"{encoding} body is truncated", "invalid_encoding")
    if len(out) > limit:
        raise _BodyError(
            413, f"decompressed body is larger than the {limit}-byte limit", "too_large"
        )
    return out


class _Handler(BaseHTTPRequestHandler):
    server_version = "apiward-otlp"
    protocol_version = "HTTP/1.1"
    timeout = 60  # a silent client cannot hold a thread forever
    receiver: OtlpHttpReceiver  # set on the subclass made per receiver

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    # ------------------------------------------------------------ routing
    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        rcv = self.receiver
        try:
            if path == TRACES_PATH:
                self._traces()
            elif path in OTHER_PATHS:
                self._other()
            else:
                self._drain_body()
                self._error(404, _NOT_FOUND, f"no OTLP endpoint at {path}; use {TRACES_PATH}", JSON)
        except _BodyError as e:
            rcv.sink.count_rejected(SOURCE_OTLP, e.reason, 1)
            count_request(rcv.sink, RECEIVER, e.reason)
            self.close_connection = True
            code = _RESOURCE_EXHAUSTED if e.status == 413 else _INVALID_ARGUMENT
            self._error(e.status, code, e.message, self._reply_type())
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - one bad request must not stop the server
            log.exception("unexpected error handling an OTLP/HTTP request")
            rcv.sink.count_rejected(SOURCE_OTLP, "internal_error", 1)
            count_request(rcv.sink, RECEIVER, "error")
            self.close_connection = True
            try:
                self._error(500, _INTERNAL, "internal error in apiward", JSON)
            except OSError:
                pass

    def do_GET(self) -> None:  # noqa: N802
        self._not_allowed()

    def do_PUT(self) -> None:  # noqa: N802
        self._not_allowed()

    def do_DELETE(self) -> None:  # noqa: N802
        self._not_allowed()

    def do_PATCH(self) -> None:  # noqa: N802
        self._not_allowed()

    def _not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        self._drain_body()
        if path == TRACES_PATH or path in OTHER_PATHS:
            self._error(
                405,
                _UNIMPLEMENTED,
                f"{self.command} is not allowed on {path}; use POST",
                JSON,
                extra=(("Allow", "POST"),),
            )
        else:
            self._error(404, _NOT_FOUND, f"no OTLP endpoint at {path}", JSON)

    # ------------------------------------------------------------ traces
    def _media_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()

    def _reply_type(self) -> str:
        return PROTOBUF if self._media_type() == PROTOBUF else JSON

    def _traces(self) -> None:
        rcv = self.receiver
        sink = rcv.sink
        media = self._media_type()
        if media not in (PROTOBUF, JSON):
            self._drain_body()
            raise _BodyError(
                415,
                f"unsupported Content-Type {media or '(none)'!r}; send {PROTOBUF} or {JSON}",
                "unsupported_media_type",
            )
        body = self._read_body()
        res = ingest_traces(sink, body, json=media == JSON, source=SOURCE_OTLP)
        count_request(sink, RECEIVER, res.outcome)
        if res.outcome == INVALID:
            self._error(400, _INVALID_ARGUMENT, res.message, media)
        elif res.outcome == FULL:
            self._error(
                429,
                _RESOURCE_EXHAUSTED,
                res.message,
                media,
                extra=(("Retry-After", str(RETRY_AFTER_SECONDS)),),
            )
        elif res.outcome == PARTIAL:
            if media == JSON:
                payload = orjson.dumps(
                    {
                        "partialSuccess": {
                            "rejectedSpans": str(res.rejected),
                            "errorMessage": res.message,
                        }
                    }
                )
            else:
                payload = ExportTraceServiceResponse(
                    partial_success=ExportTracePartialSuccess(
                        rejected_spans=res.rejected, error_message=res.message
                    )
                ).SerializeToString()
            self._send(200, media, payload)
        else:
            self._send(200, media, b"{}" if media == JSON else b"")

    def _other(self) -> None:
        media = self._media_type()
        if media not in (PROTOBUF, JSON):
            self._drain_body()
            raise _BodyError(
                415,
                f"unsupported Content-Type {media or '(none)'!r}; send {PROTOBUF} or {JSON}",
                "unsupported_media_type",
            )
        self._read_body()
        count_request(self.receiver.sink, RECEIVER, "ignored_signal")
        self._send(200, media, b"{}" if media == JSON else b"")

    # ------------------------------------------------------------ bodies
    def _read_body(self) -> bytes:
        limit = self.receiver.max_message_bytes
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
            self._drain_body()
            raise _BodyError(
                415,
                f"unsupported Content-Encoding {encoding!r}; use gzip or none",
                "unsupported_encoding",
            )
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = self._read_chunked(limit)
        else:
            length = self._content_length()
            if length > limit:
                self.close_connection = True  # do not read the oversized body
                raise _BodyError(
                    413,
                    f"body of {length} bytes is larger than the {limit}-byte limit",
                    "too_large",
                )
            data = self.rfile.read(length) if length else b""
            if len(data) < length:
                raise ConnectionError("client closed the connection mid-body")
        if encoding != "identity" and data:
            data = _decompress(data, encoding, limit)
        return data

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            n = int(raw)
        except ValueError:
            n = -1
        if n < 0:
            self.close_connection = True
            raise _BodyError(400, f"invalid Content-Length {raw!r}", "invalid_request")
        return n

    def _read_chunked(self, limit: int) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _BodyError(400, "malformed chunked body", "invalid_request") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                self.close_connection = True
                raise _BodyError(413, f"body is larger than the {limit}-byte limit", "too_large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _drain_body(self) -> None:
        """Consume a small unwanted body so the connection can be reused; close on big ones."""
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if (
            "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            or n < 0
            or (n > 1024 * 1024)
        ):
            self.close_connection = True
        elif n:
            self.rfile.read(n)

    # ------------------------------------------------------------ replies
    def _error(
        self,
        status: int,
        code: int,
        message: str,
        media: str,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> None:
        if media == PROTOBUF:
            body = status_pb2.Status(code=code, message=message).SerializeToString()
        else:
            media = JSON
            body = orjson.dumps({"code": code, "message": message})
        self._send(status, media, body, extra)

    def _send(
        self, status: int, media: str, body: bytes, extra: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class OtlpHttpReceiver:
    """Serves OTLP/HTTP on ``host:port`` and hands trace spans to ``sink``.

    ``port=0`` binds a free port; :attr:`port` is the bound one after :meth:`start`.
    """

    def __init__(
        self,
        sink: SpanSink,
        host: str = "0.0.0.0",
        port: int = 4318,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.sink = sink
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and serve on a background thread. Raises ``OSError`` naming the address."""
        handler = type("OtlpHttpHandler", (_Handler,), {"receiver": self})
        try:
            server = _Server((self.host, self.port), handler)
        except OSError as e:
            raise OSError(
                f"cannot bind OTLP/HTTP receiver to {self.host}:{self.port}: {e.strerror or e}"
            ) from None
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="otlp-http",
            daemon=True,
        )
        self._thread.start()
        log.info("OTLP/HTTP receiver listening on %s:%d", self.host, self.port)

    def stop(self, grace: float | None = 5.0) -> None:
        """Stop accepting new connections and close the listening socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(grace)
            self._thread = None
