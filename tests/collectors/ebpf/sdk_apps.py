"""OTel-SDK-instrumented server and client the root join tests run in child processes.

Real instrumentation, real exporter: the OpenTelemetry WSGI middleware on a
threaded ``wsgiref`` server, and the ``urllib`` instrumentation for the
client; spans go by OTLP/HTTP to the endpoint given.

``python sdk_apps.py server ENDPOINT simple|batch`` prints its port and serves
until killed (``simple`` exports each span when it ends, ``batch`` after 1.5 s).
``python sdk_apps.py client ENDPOINT URL`` makes one request, prints the body
and flushes its spans before exiting.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor


def _provider(endpoint: str, mode: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create())  # service.name from OTEL_SERVICE_NAME
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5)
    if mode == "simple":
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1500))
    trace.set_tracer_provider(provider)
    return provider


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({"path": environ.get("PATH_INFO"), "email": "ann@example.com"}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                              ("X-Served-By", "sdk-app")])
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(endpoint: str, mode: str) -> None:
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    provider = _provider(endpoint, mode)
    wrapped = OpenTelemetryMiddleware(app, tracer_provider=provider)
    srv = make_server("127.0.0.1", 0, wrapped, server_class=_Server, handler_class=_Quiet)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def fetch(endpoint: str, url: str) -> None:
    from opentelemetry.instrumentation.urllib import URLLibInstrumentor

    provider = _provider(endpoint, "simple")
    URLLibInstrumentor().instrument(tracer_provider=provider)
    req = urllib.request.Request(url, headers={"X-Client": "sdk-client"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        sys.stdout.write(resp.read().decode())
    provider.force_flush()
    provider.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3])
    else:
        fetch(sys.argv[2], sys.argv[3])
