"""The redacting forwarder against a real OTLP TraceService (gRPC) and an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from agent import config as cfgmod
from agent.config import Config
from agent.forwarder import SpanForwarder, build_request, parse_target
from agent.model import Resource, SpanKind, make_span
from agent.pipeline import Pipeline, Stats
from agent.state import State
from agent.wiring import build_enrichers
from enrichers.sensitive.enricher import SensitiveDataEnricher
from enrichers.sensitive.recognizers import ALL
from enrichers.sensitive.recognizers.financial import CreditCardRecognizer
from enrichers.sensitive.redaction import UNSCANNED, redact_span
from enrichers.sensitive.scanner import SensitiveDataScanner

SECRET_CARD = "4111111111111111"
SECRET_MAIL = "jane.roe@example.org"


class TraceSink(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.cond = threading.Condition()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[Any]:
        with self.cond:
            return [s for r in self.requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]

    def wait(self, n: int, timeout: float = 30.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.spans()) >= n:
                return True
            time.sleep(0.05)
        return False


def start_grpc(sink: TraceSink, port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_batch(n: int, start: int = 0) -> list[Any]:
    res = Resource.from_attributes({"service.name": "checkout"})
    return [
        make_span(trace_id="ab" * 16, span_id=f"{i + 1:016x}", parent_span_id="", resource=res, name="POST /pay",
                  kind=SpanKind.SERVER, start_ns=1_000 + i, end_ns=2_000 + i, scope_name="test",
                  attributes={"http.request.method": "POST", "url.path": "/pay", "url.scheme": "https",
                              "url.query": f"email={SECRET_MAIL}", "app.card": f"card {SECRET_CARD}",
                              "app.password": "Hunter22!", "http.response.status_code": 200})
        for i in range(start, start + n)
    ]


def attrs(span: Any) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in span.attributes}


def setup(tmp_path: Path, url: str, **section: Any) -> tuple[Pipeline, SpanForwarder]:
    cfg = Config(state_dir=tmp_path, forward=url)
    if section:
        cfg.sections["sensitive"] = section  # type: ignore[attr-defined]
    state = State(tmp_path)
    stats = Stats()
    pipe = Pipeline(state, [SensitiveDataEnricher(cfg)], stats=stats)
    fwd = SpanForwarder(cfg, state, stats)
    fwd.start()
    pipe.on_batch.append(fwd.submit)
    return pipe, fwd


def test_endpoint_rule() -> None:
    assert parse_target("grpc://collector:4317").protocol == "grpc"
    assert parse_target("collector:4317").protocol == "grpc"
    assert parse_target("http://collector:4317").protocol == "grpc"
    t = parse_target("http://collector:4318")
    assert (t.protocol, t.address) == ("http", "http://collector:4318/v1/traces")
    assert parse_target("https://otel.example.com/custom/v1/traces").address.endswith("/custom/v1/traces")
    with pytest.raises(ValueError):
        parse_target("ftp://x")


def test_grpc_forwarding_redacts_in_place(tmp_path: Path) -> None:
    sink = TraceSink()
    server, port = start_grpc(sink)
    try:
        pipe, fwd = setup(tmp_path, f"grpc://127.0.0.1:{port}",
                          forward_actions={"CREDIT_CARD": "hash", "PASSWORD": "drop"})
        pipe.offer(make_batch(5), "otlp")
        pipe.drain()
        assert sink.wait(5)
        fwd.stop()
        spans = sink.spans()
        assert len(spans) == 5
        a = attrs(spans[0])
        assert a["url.query"] == "email=j***@example.org"
        assert a["app.card"].startswith("card [CREDIT_CARD:")
        assert "app.password" not in a
        assert spans[0].span_id == bytes.fromhex("0000000000000001")
        raw = b"".join(r.SerializeToString() for r in sink.requests)
        for secret in (SECRET_CARD, SECRET_MAIL, "Hunter22!"):
            assert secret.encode() not in raw
    finally:
        server.stop(None)


def test_next_hop_down_then_up_delivers_everything(tmp_path: Path) -> None:
    port = free_port()
    pipe, fwd = setup(tmp_path, f"grpc://127.0.0.1:{port}")
    pipe.offer(make_batch(3), "otlp")
    pipe.drain()  # the receivers' side is not held up: offer/drain return at once
    time.sleep(0.5)
    assert fwd.failed_attempts >= 1 and fwd.sent == 0
    sink = TraceSink()
    server, _ = start_grpc(sink, port)
    try:
        pipe.offer(make_batch(2, start=3), "otlp")
        pipe.drain()
        assert sink.wait(5, timeout=40)
        fwd.stop()
        ids = sorted(int(s.span_id.hex(), 16) for s in sink.spans())
        assert ids[:5] == [1, 2, 3, 4, 5]
        assert fwd.metrics()["forward_spans_sent"] >= 5
    finally:
        server.stop(None)


def test_bounded_queue_counts_drops(tmp_path: Path) -> None:
    cfg = Config(state_dir=tmp_path, forward=f"grpc://127.0.0.1:{free_port()}")
    state = State(tmp_path)
    fwd = SpanForwarder(cfg, state, Stats(), max_queue_spans=4)  # not started: nothing drains
    fwd.submit(make_batch(3))
    fwd.submit(make_batch(3, start=3))
    assert fwd.metrics()["forward_spans_queued"] == 4 and fwd.dropped == 2


def test_http_protobuf_forwarding(tmp_path: Path) -> None:
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(body)
            assert self.path == "/v1/traces"
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        pipe, fwd = setup(tmp_path, f"http://127.0.0.1:{srv.server_address[1]}")
        pipe.offer(make_batch(2), "otlp")
        pipe.drain()
        end = time.monotonic() + 20
        while not got and time.monotonic() < end:
            time.sleep(0.05)
        fwd.stop()
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(got[0])
        span = req.resource_spans[0].scope_spans[0].spans[0]
        assert attrs(span)["app.card"] == "card 4111********1111"
    finally:
        srv.shutdown()


# ------------------------------------------------ never forward what was not scanned


class RaisingCardRecognizerMock(CreditCardRecognizer):
    """A mock: the real card recognizer, made to fail the way a recognizer bug would."""

    def validate(self, text: str) -> bool | None:
        raise RuntimeError("recognizer bug")


def _failing_scan_pipeline(tmp_path: Path, url: str) -> tuple[Pipeline, SpanForwarder, Stats]:
    cfg = Config(state_dir=tmp_path, forward=url)
    state = State(tmp_path)
    stats = Stats()
    enricher = SensitiveDataEnricher(cfg)
    enricher.scanner = SensitiveDataScanner(
        state.secret, recognizers=[RaisingCardRecognizerMock if r is CreditCardRecognizer else r for r in ALL]
    )
    pipe = Pipeline(state, [enricher], stats=stats)
    fwd = SpanForwarder(cfg, state, stats)
    fwd.start()
    pipe.on_batch.append(fwd.submit)
    return pipe, fwd, stats


def _assert_blanked(sink: TraceSink, n: int) -> None:
    spans = sink.spans()
    assert len(spans) == n
    for sp in spans:
        a = attrs(sp)
        assert a["url.query"] == a["app.card"] == a["app.password"] == UNSCANNED
        assert a["http.request.method"] == "POST"  # protocol facts the scanner never reads stay
        assert sp.name == UNSCANNED
    raw = b"".join(r.SerializeToString() for r in sink.requests)
    for secret in (SECRET_CARD, SECRET_MAIL, "Hunter22!"):
        assert secret.encode() not in raw


def test_batch_whose_scan_failed_is_forwarded_blanked(tmp_path: Path) -> None:
    sink = TraceSink()
    server, port = start_grpc(sink)
    try:
        pipe, fwd, stats = _failing_scan_pipeline(tmp_path, f"grpc://127.0.0.1:{port}")
        pipe.offer(make_batch(4), "otlp")
        pipe.drain()
        assert stats.enricher_errors == {"sensitive": 1}
        assert sink.wait(4)
        fwd.stop()
        _assert_blanked(sink, 4)
        m = fwd.metrics()
        assert m["forward_spans_unscanned"] == 4 and m["forward_spans_sent"] == 4
    finally:
        server.stop(None)


def test_without_the_sensitive_stage_spans_are_blanked(tmp_path: Path) -> None:
    """A Config built in code can leave the stage out; the forwarder still sends nothing raw."""
    sink = TraceSink()
    server, port = start_grpc(sink)
    try:
        cfg = Config(state_dir=tmp_path, forward=f"grpc://127.0.0.1:{port}")
        state, stats = State(tmp_path), Stats()
        pipe = Pipeline(state, [], stats=stats)
        fwd = SpanForwarder(cfg, state, stats)
        fwd.start()
        pipe.on_batch.append(fwd.submit)
        pipe.offer(make_batch(2), "otlp")
        pipe.drain()
        assert sink.wait(2)
        fwd.stop()
        _assert_blanked(sink, 2)
        assert fwd.unscanned == 2
    finally:
        server.stop(None)


def test_forward_turns_the_sensitive_analysis_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="apiward.config"):
        cfg = cfgmod.load(environ={}, overrides={"forward": "grpc://127.0.0.1:4317",
                                                 "enrichers": ["inventory", "callgraph"]})
    assert cfg.enrichers == ["inventory", "callgraph", "sensitive"]
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "sensitive" in caplog.records[0].getMessage()
    assert "sensitive" in [e.name for e in build_enrichers(cfg)]
    # Without forwarding the choice stands.
    assert cfgmod.load(environ={}, overrides={"enrichers": ["inventory"]}).enrichers == ["inventory"]


def test_queued_counts_the_request_being_retried(tmp_path: Path) -> None:
    pipe, fwd = setup(tmp_path, f"grpc://127.0.0.1:{free_port()}")  # nobody listens
    pipe.offer(make_batch(3), "otlp")
    pipe.drain()
    end = time.monotonic() + 10
    while fwd.failed_attempts == 0 and time.monotonic() < end:
        time.sleep(0.05)
    assert fwd.failed_attempts >= 1
    assert fwd.metrics()["forward_spans_queued"] == 3
    fwd.stop(timeout=0.1)
    assert fwd.metrics()["forward_spans_queued"] == 0 and fwd.dropped == 3


# ------------------------------------------------ numbers and maps


def test_int_and_map_attributes_are_scanned_and_redacted(tmp_path: Path) -> None:
    res = Resource.from_attributes({"service.name": "checkout", "deploy.owner": {"email": SECRET_MAIL}})
    span = make_span(trace_id="ab" * 16, span_id="00000000000000aa", parent_span_id="", resource=res,
                     name="POST /pay", kind=SpanKind.SERVER, start_ns=1, end_ns=2, scope_name="test",
                     attributes={"http.request.method": "POST", "url.path": "/pay",
                                 "user.card_int": int(SECRET_CARD), "user.ssn_int": 536904399,
                                 "user.profile": {"email": SECRET_MAIL, "password": "Hunter22!",
                                                  "phones": ["+14155552671"], "age": 42},
                                 "http.response.status_code": 200, "app.cards": [int(SECRET_CARD), 7]})
    state = State(tmp_path)
    dets = SensitiveDataEnricher(Config(state_dir=tmp_path)).scan_span(span, state)
    got = {(d.where, d.type) for d in dets}
    assert {("user.card_int", "CREDIT_CARD"), ("user.ssn_int", "US_SSN"),
            ("user.profile.email", "EMAIL_ADDRESS"), ("user.profile.password", "PASSWORD"),
            ("user.profile.phones", "PHONE_NUMBER"), ("app.cards", "CREDIT_CARD"),
            ("resource:deploy.owner.email", "EMAIL_ADDRESS")} <= got, got
    out = redact_span(span, dets, {"PASSWORD": "drop", "US_SSN": "hash"})
    assert out.attributes["user.card_int"] == "4111********1111"
    assert str(out.attributes["user.ssn_int"]).startswith("[US_SSN:")
    profile = out.attributes["user.profile"]
    assert profile["email"] == "j***@example.org" and "password" not in profile and profile["age"] == 42
    assert SECRET_CARD not in str(out.attributes["app.cards"]) and out.attributes["app.cards"][1] == 7
    assert out.attributes["http.response.status_code"] == 200  # small ints are left alone
    assert out.resource.attributes["deploy.owner"] == {"email": "j***@example.org"}
    raw = build_request([out]).SerializeToString()
    for secret in (SECRET_CARD, SECRET_MAIL, "Hunter22!", "536904399", "4155552671"):
        assert secret.encode() not in raw
