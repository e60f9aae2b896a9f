"""One instrumented service of the zero-trust end-to-end tests, run as a subprocess.

A Flask app instrumented with the real OpenTelemetry SDK (Flask server spans,
``requests`` client spans), serving on 127.0.0.1 over HTTP or HTTPS (and
optionally a second plain-HTTP port). Spans are written, as they end, to a
recording in length-delimited OTLP protobuf (the SDK's own encoder), which
``apiward replay`` and ``apiward policy`` read.

Routes: ``GET /orders/<id>``, ``POST /orders``, ``GET /admin/stats`` answer 200;
``GET|POST /call?url=...&method=...`` calls ``url`` with the bearer token from
the ``X-Forward-Token`` request header and the ``X-User-Id`` header, if given.

Prints ``PORTS <main> <plain>`` on stdout once listening.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import requests
from flask import Flask, jsonify, request
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from werkzeug.serving import make_server


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class RecordingExporter(SpanExporter):
    """Appends each export as one length-delimited ExportTraceServiceRequest."""

    def __init__(self, path: str) -> None:
        self._fh = open(path, "ab")  # noqa: SIM115 - lives as long as the process
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = encode_spans(spans).SerializeToString()
        with self._lock:
            self._fh.write(_varint(len(data)) + data)
            self._fh.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._fh.close()


def build_app(ca: str | None) -> Flask:
    app = Flask(__name__)

    @app.get("/orders/<int:oid>")
    def get_order(oid: int) -> Any:
        return jsonify({"id": oid})

    @app.post("/orders")
    def post_order() -> Any:
        return jsonify({"id": 1}), 201

    @app.get("/admin/stats")
    def admin() -> Any:
        return jsonify({"ok": True})

    @app.route("/call", methods=["GET", "POST"])
    def call() -> Any:
        url = request.args["url"]
        method = request.args.get("method", "GET")
        headers = {}
        token = request.headers.get("X-Forward-Token")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        user = request.headers.get("X-User-Id")
        if user:
            headers["X-User-Id"] = user
        r = requests.request(method, url, headers=headers, verify=ca or True, timeout=10)
        return jsonify({"status": r.status_code})

    return app


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--ca")
    ap.add_argument("--plain-too", action="store_true")
    args = ap.parse_args()

    provider = TracerProvider(resource=Resource.create({"service.name": args.name}))
    provider.add_span_processor(SimpleSpanProcessor(RecordingExporter(args.record)))
    trace.set_tracer_provider(provider)
    RequestsInstrumentor().instrument()
    app = build_app(args.ca)
    FlaskInstrumentor().instrument_app(app)

    ssl = (args.cert, args.key) if args.cert else None
    servers = [make_server("127.0.0.1", 0, app, threaded=True, ssl_context=ssl)]
    if args.plain_too:
        servers.append(make_server("127.0.0.1", 0, app, threaded=True))
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ports = [s.server_port for s in servers] + [0]
    print(f"PORTS {ports[0]} {ports[1]}", flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    for s in servers:
        s.shutdown()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
