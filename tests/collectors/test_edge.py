"""The receivers in their own process (collectors/edge.py), with real clients on loopback.

Counts reach the agent through the pipe a moment after the client has its answer,
so the tests wait for them (``_until``) instead of reading them at once.
"""

from __future__ import annotations

import dataclasses
import decimal
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource as SdkResource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind as SdkKind

from agent.model import Resource, Span, SpanEvent, SpanKind, SpanLink, StatusCode, make_span
from agent.pipeline import Stats
from collectors import edge
from collectors.edge import EdgeProcess, decode_batch, encode_batch
from tests.collectors.conftest import InMemoryTestSink
from tests.collectors.payloads import good_bytes, request

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
ROOT = Path(__file__).resolve().parents[2]


def _until(cond: Callable[[], object], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


class DepthSink(InMemoryTestSink):
    """The test sink with a queue depth the test sets (a full agent: depth >= capacity)."""

    depth = 0

    @property
    def queue_depth(self) -> int:
        return self.depth


@pytest.fixture
def sink() -> DepthSink:
    return DepthSink()


@pytest.fixture
def stats() -> Stats:
    return Stats()


@pytest.fixture
def proc(sink: DepthSink, stats: Stats) -> Iterator[EdgeProcess]:
    e = EdgeProcess(sink, stats, bind="127.0.0.1", grpc_port=0, http_port=0,
                    max_message_bytes=1024 * 1024, queue_spans=1000, grace=1.0)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def export(proc: EdgeProcess) -> Iterator[Callable[..., bytes]]:
    ch = grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port}")
    yield ch.unary_unary(EXPORT)
    ch.close()


# ---------------------------------------------------------------- the codec


def _every_field_spans() -> list[Span]:
    res = Resource.from_attributes({"service.name": "pay", "faas.name": "charge", "k8s.pod.name": "p-1"})
    other = Resource.from_attributes({"service.name": "web"})
    http = make_span(
        trace_id="ab" * 16, span_id="cd" * 8, parent_span_id="ef" * 8, resource=res,
        name="POST /pay/{id}", kind=SpanKind.SERVER, start_ns=1, end_ns=2**63 - 1,
        status_code=StatusCode.ERROR, status_message="boom",
        attributes={
            "http.request.method": "POST", "url.full": "https://pay.example/pay/7?x=1",
            "http.route": "/pay/{id}", "http.response.status_code": 502, "http.request.header.x-api-key": ["k"],
            "http.response.header.content-type": "application/json", "http.request.body": '{"a":1}',
            "faas.trigger": "http", "faas.coldstart": True, "rpc.system": "grpc", "rpc.service": "Pay",
            "messaging.system": "kafka", "messaging.destination.name": "orders", "db.system": "postgresql",
            "db.statement": "SELECT 1", "big": 2**70, "ratio": 0.5, "raw": b"\x00\xff", "list": [1, "a", None],
            "map": {"k": {"n": 1}}, "flag": False,
        },
        events=(SpanEvent("exception", 3, {"exception.type": "ValueError"}), SpanEvent("e2", 4, {})),
        links=(SpanLink("12" * 16, "34" * 8, {"link.kind": "follows"}),),
        source="ebpf", scope_name="tests.edge",
    )
    http = dataclasses.replace(http, enduser_id="user-9")
    plain = make_span(trace_id="01" * 16, span_id="02" * 8, parent_span_id="", resource=other,
                      name="work", kind=SpanKind.INTERNAL, start_ns=5, end_ns=6)
    same_res = make_span(trace_id="03" * 16, span_id="04" * 8, parent_span_id="", resource=res,
                         name="GET /", kind=SpanKind.CLIENT, start_ns=7, end_ns=8,
                         attributes={"http.method": "get", "http.url": "http://a/b"})
    return [http, plain, same_res]


def test_codec_round_trip_keeps_every_field_and_shares_resources() -> None:
    spans = _every_field_spans()
    assert all(v is not None for v in (spans[0].http, spans[0].rpc, spans[0].messaging, spans[0].db, spans[0].faas))
    data = encode_batch(spans, "otlp")
    assert data[:1] == b"B"
    source, back = decode_batch(data)
    assert source == "otlp"
    assert back == spans
    for a, b in zip(back, spans, strict=True):
        for f in dataclasses.fields(Span):
            assert getattr(a, f.name) == getattr(b, f.name), f.name
        assert type(a.kind) is SpanKind and type(a.status_code) is StatusCode
    assert back[0].resource is back[2].resource  # one object per resource, as the receivers build them


def test_codec_takes_values_marshal_cannot_write() -> None:
    spans = _every_field_spans()
    odd = dataclasses.replace(spans[1], attributes={"amount": decimal.Decimal("1.50")})
    data = encode_batch([spans[0], odd], "replay")
    assert data[:1] == b"P"
    source, back = decode_batch(data)
    assert source == "replay" and back == [spans[0], odd]


def test_codec_layout_matches_the_model() -> None:
    assert tuple(f.name for f in dataclasses.fields(Span)) == edge._SPAN_LAYOUT


# ---------------------------------------------------------------- the process


def _sdk_spans(exporter) -> None:
    provider = TracerProvider(resource=SdkResource.create({"service.name": "orders"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.edge")
    with tracer.start_as_current_span("POST /api/orders", kind=SdkKind.SERVER, attributes={
        "http.request.method": "POST", "url.path": "/api/orders/7", "http.route": "/api/orders/{id}",
        "http.response.status_code": 201,
    }) as s:
        s.add_event("order.created", {"order.id": 7})
    provider.shutdown()


def test_sdk_spans_over_grpc_and_http_reach_the_agent(sink, stats, proc) -> None:
    assert proc.pid is not None and proc.pid != os.getpid()
    _sdk_spans(GrpcExporter(endpoint=f"127.0.0.1:{proc.grpc_port}", insecure=True))
    _sdk_spans(HttpExporter(endpoint=f"http://127.0.0.1:{proc.http_port}/v1/traces"))
    _until(lambda: len(sink.spans) == 2)
    for span in sink.spans:
        assert span.service == "orders" and span.kind == SpanKind.SERVER
        assert span.http is not None and span.http.method == "POST" and span.http.path == "/api/orders/7"
        assert span.http.route == "/api/orders/{id}" and span.http.status_code == 201
        assert [e.name for e in span.events] == ["order.created"]
    _until(lambda: stats.requests.get(("otlp-grpc", "ok")) == 1 and stats.requests.get(("otlp-http", "ok")) == 1)


def test_bad_input_gets_a_clear_error_and_the_receivers_keep_serving(sink, stats, proc, export) -> None:
    with pytest.raises(grpc.RpcError) as info:
        export(b"\x0a\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "protobuf" in info.value.details()
    req = urllib.request.Request(f"http://127.0.0.1:{proc.http_port}/v1/traces", data=b"{not json",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as herr:
        urllib.request.urlopen(req, timeout=10)
    assert herr.value.code == 400 and b"JSON" in herr.value.read()
    # a request with one bad span: the rest go through, the client learns what was refused
    ps = ExportTraceServiceResponse.FromString(
        export(request(3, span_id=b"\x00" * 8).SerializeToString(), timeout=10)).partial_success
    assert ps.rejected_spans == 1 and "span_id" in ps.error_message
    assert export(good_bytes(), timeout=10) == b""
    _until(lambda: len(sink.spans) == 3)
    _until(lambda: sink.rejected.get("invalid_protobuf") == 1 and sink.rejected.get("invalid_json") == 1)
    _until(lambda: stats.requests.get(("otlp-grpc", "invalid")) == 1
           and stats.requests.get(("otlp-grpc", "partial")) == 1)


def test_a_full_agent_is_answered_retry_later(sink, proc, export) -> None:
    sink.depth = 1000  # = queue_spans
    _until(lambda: proc._shared[0] == 1000)  # what the child reads: the agent shares it every poll
    with pytest.raises(grpc.RpcError) as info:
        export(good_bytes(), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    req = urllib.request.Request(f"http://127.0.0.1:{proc.http_port}/v1/traces", data=good_bytes(),
                                 headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as herr:
        urllib.request.urlopen(req, timeout=10)
    assert herr.value.code == 429 and herr.value.headers.get("Retry-After")
    sink.depth = 0
    _until(lambda: proc._shared[0] == 0)
    assert export(good_bytes(), timeout=10) == b""
    _until(lambda: len(sink.spans) == 1)


def test_stop_hands_over_everything_accepted(sink, stats) -> None:
    e = EdgeProcess(sink, stats, bind="127.0.0.1", grpc_port=0, http_port=0,
                    max_message_bytes=1024 * 1024, queue_spans=100_000, grace=2.0)
    e.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{e.grpc_port}")
    export = ch.unary_unary(EXPORT)
    body = request(200).SerializeToString()
    for _ in range(10):
        assert export(body, timeout=10) == b""
    ch.close()
    e.stop()  # no waiting before: stop itself must deliver what was answered OK
    assert len(sink.spans) == 2000
    assert stats.requests[("otlp-grpc", "ok")] == 10


def test_a_dead_receiver_process_is_replaced_on_the_same_ports(sink, proc, export) -> None:
    first, port = proc.pid, proc.grpc_port
    assert first is not None
    os.kill(first, signal.SIGKILL)
    _until(lambda: proc.pid != first, timeout=30)
    assert proc.grpc_port == port and proc.stats_report()["restarts"] == 1

    def served() -> bool:
        try:
            return export(good_bytes(), timeout=2) == b""
        except grpc.RpcError:
            return False

    _until(served, timeout=30)
    _until(lambda: len(sink.spans) >= 1)


def test_a_port_in_use_is_named(sink, stats) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        e = EdgeProcess(sink, stats, bind="127.0.0.1", grpc_port=0, http_port=port,
                        max_message_bytes=1024 * 1024, queue_spans=1000)
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            e.start()
    assert e.pid is None


def test_the_receiver_process_exits_when_the_agent_dies(tmp_path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from collectors.edge import EdgeProcess
        from tests.collectors.conftest import InMemoryTestSink
        if __name__ == "__main__":
            e = EdgeProcess(InMemoryTestSink(), None, bind="127.0.0.1", grpc_port=0, http_port=0,
                            max_message_bytes=1 << 20, queue_spans=1000)
            e.start()
            print(e.pid, flush=True)
            time.sleep(60)
    """))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        child = int(p.stdout.readline())  # type: ignore[union-attr]
        os.kill(child, 0)  # alive
        p.kill()
        p.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            # reaped by init once it exits; a zombie still answers kill(0)
            with open(f"/proc/{child}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"

        _until(gone, timeout=10)
    finally:
        if p.poll() is None:
            p.kill()


def test_accepted_spans_wait_for_room_instead_of_being_dropped(sink, stats) -> None:
    """Spans the receivers answered OK reach a full queue: they wait until it has room."""
    import threading

    from agent.pipeline import Pipeline
    from agent.state import State

    pipeline = Pipeline(State(), [], stats=stats, queue_spans=1000)
    e = EdgeProcess(pipeline, stats, bind="127.0.0.1", grpc_port=0, http_port=0,
                    max_message_bytes=1 << 20, queue_spans=1000, queue=pipeline)
    batch = _every_field_spans()
    assert pipeline.offer(batch * 420, "otlp")  # 1260 queued: a further offer would be refused
    drained: list[float] = []

    def drain_later() -> None:
        time.sleep(0.3)
        drained.append(time.monotonic())
        pipeline.drain()

    t = threading.Thread(target=drain_later)
    t.start()
    e._handle(encode_batch(batch, "otlp"))  # the reader thread's step for one batch
    handed = time.monotonic()
    t.join()
    assert drained and handed >= drained[0]
    assert stats.spans_dropped == 0
    assert pipeline.queue_depth == 3


def test_auto_counts_a_container_cpu_limit(tmp_path) -> None:
    from collectors.edge import available_cpus, edge_wanted

    assert available_cpus(str(tmp_path)) == len(os.sched_getaffinity(0))  # no limit written
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2: 1.5 CPUs
    assert available_cpus(str(tmp_path)) == min(1.5, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "cpu"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(str(tmp_path)) == 0.5
    assert edge_wanted("on") and not edge_wanted("off")


def test_an_unreadable_batch_is_counted_and_frees_its_place(sink, stats) -> None:
    e = EdgeProcess(sink, stats, bind="127.0.0.1", grpc_port=0, http_port=0,
                    max_message_bytes=1 << 20, queue_spans=1000)
    good = encode_batch(_every_field_spans(), "otlp")
    with pytest.raises(ValueError):
        e._handle(good[:5] + b"\xff not marshal")  # the reader thread logs it and reads on
    assert e._shared[1] == 3 and stats.dropped == {("otlp", "unreadable"): 3}
    e._handle(good)
    assert len(sink.spans) == 3 and e._shared[1] == 6
