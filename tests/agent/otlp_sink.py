"""Real OTLP receivers for export tests: gRPC LogsService/MetricsService and HTTP.

The gRPC side uses the ``opentelemetry-proto`` service stubs on grpcio; the
HTTP side a stdlib server decoding ``/v1/logs`` and ``/v1/metrics`` protobuf.
Both bind 127.0.0.1 on an ephemeral port and keep every request for asserts.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc


class OtlpSink:
    """What the receivers got, with helpers to flatten it."""

    def __init__(self) -> None:
        self.logs: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.metrics: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.fail_next = 0  # answer UNAVAILABLE / 503 to this many requests
        self.cond = threading.Condition()

    def add(self, kind: str, req: Any) -> bool:
        with self.cond:
            if self.fail_next > 0:
                self.fail_next -= 1
                return False
            (self.logs if kind == "logs" else self.metrics).append(req)
            self.cond.notify_all()
            return True

    def log_records(self) -> list[tuple[Any, Any]]:
        """(resource, log record) pairs of everything received."""
        with self.cond:
            return [(rl.resource, lr) for req in self.logs for rl in req.resource_logs
                    for sl in rl.scope_logs for lr in sl.log_records]

    def metric_points(self) -> dict[str, list[tuple[dict[str, Any], Any]]]:
        """Latest request's metrics: name -> [(labels, point)]."""
        with self.cond:
            if not self.metrics:
                return {}
            req = self.metrics[-1]
        out: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    pts = getattr(m, kind).data_points
                    out[m.name] = [({a.key: attr_value(a.value) for a in p.attributes}, p) for p in pts]
        return out

    def wait(self, pred: Any, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
        return True


def attr_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [attr_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attrs(pb_attrs: Any) -> dict[str, Any]:
    return {a.key: attr_value(a.value) for a in pb_attrs}


class GrpcOtlpServer:
    def __init__(self, sink: OtlpSink) -> None:
        self.sink = sink
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        outer = self

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                if not outer.sink.add("logs", request):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "test: try again")
                return logs_service_pb2.ExportLogsServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                if not outer.sink.add("metrics", request):
                    context.abort(grpc.StatusCode.UNAVAILABLE, "test: try again")
                return metrics_service_pb2.ExportMetricsServiceResponse()

        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GrpcOtlpServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(0)


class HttpOtlpServer:
    def __init__(self, sink: OtlpSink) -> None:
        self.sink = sink
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/logs":
                    req: Any = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                    ok = outer.sink.add("logs", req)
                    resp = logs_service_pb2.ExportLogsServiceResponse()
                elif self.path == "/v1/metrics":
                    req = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
                    ok = outer.sink.add("metrics", req)
                    resp = metrics_service_pb2.ExportMetricsServiceResponse()
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = resp.SerializeToString()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self._t: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpOtlpServer:
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._t.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
