"""The join of eBPF and SDK spans, without root: :class:`JoiningSink` on hand-made spans."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent.model import SOURCE_EBPF, SOURCE_OTLP, Resource, Span, SpanKind, make_span
from collectors.ebpf import join as join_mod
from collectors.ebpf.join import JOINED_ATTR, JoiningSink
from collectors.ebpf.spans import TRACEPARENT_ATTR

from .sinks import RecordingSink

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"  # the caller's (SDK CLIENT) span id


class MemorySink(RecordingSink):
    """Everything the joining sink passes on."""


def ebpf_span(kind: SpanKind = SpanKind.SERVER, trace: str = TRACE, parent: str = PARENT,
              span_id: str = "eeee000000000001", method: str = "GET", service: str = "orders") -> Span:
    return make_span(
        trace_id=trace, span_id=span_id, parent_span_id=parent,
        resource=Resource(service), name=method, kind=kind, start_ns=1, end_ns=2,
        attributes={
            "http.request.method": method, "url.path": "/o/1",
            "http.request.header.authorization": ["Bearer x"],
            "http.response.body": '{"ssn": "1"}',
            "apiward.ebpf.direction": "server" if kind == SpanKind.SERVER else "client",
            TRACEPARENT_ATTR: f"00-{trace}-{parent}-01",
        },
        source=SOURCE_EBPF,
    )


def sdk_server(trace: str = TRACE, parent: str = PARENT, span_id: str = "5555000000000001",
               method: str = "GET", service: str = "orders") -> Span:
    return make_span(
        trace_id=trace, span_id=span_id, parent_span_id=parent,
        resource=Resource(service), name="GET /o/{id}", kind=SpanKind.SERVER, start_ns=1, end_ns=3,
        attributes={"http.request.method": method, "http.route": "/o/{id}", "url.path": "/o/1",
                    "http.response.status_code": 200},
    )


def sdk_client(trace: str = TRACE, span_id: str = PARENT, service: str = "gateway") -> Span:
    return make_span(
        trace_id=trace, span_id=span_id, parent_span_id="aaaa000000000001",
        resource=Resource(service), name="GET", kind=SpanKind.CLIENT, start_ns=1, end_ns=3,
        attributes={"http.request.method": "GET", "url.full": "http://orders/o/1",
                    "http.response.status_code": 200},
    )


@pytest.fixture
def sink() -> Any:
    inner = MemorySink()
    s = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=60)
    yield s, inner
    s.close()


def test_ebpf_first_merges_evidence_into_the_sdk_span(sink: Any) -> None:
    join, inner = sink
    assert join.offer([ebpf_span()], SOURCE_EBPF)
    assert inner.spans == []  # held, waiting for its SDK twin
    join.offer([sdk_server()], SOURCE_OTLP)
    ((source, span),) = inner.spans
    assert source == SOURCE_OTLP and span.span_id == "5555000000000001" and span.source == SOURCE_OTLP
    assert span.http is not None and span.http.route == "/o/{id}"
    assert span.http.request_headers["authorization"] == "Bearer x"
    assert span.http.response_body == '{"ssn": "1"}'
    assert span.attributes[JOINED_ATTR] is True
    assert (join.joined, join.joined_sdk_first) == (1, 0)


def test_sdk_first_waits_and_gains_the_evidence(sink: Any) -> None:
    join, inner = sink
    assert join.offer([sdk_server()], SOURCE_OTLP)
    assert inner.spans == []  # an HTTP SERVER span waits (grace) for a possible eBPF twin
    join.offer([ebpf_span()], SOURCE_EBPF)
    ((source, span),) = inner.spans
    assert source == SOURCE_OTLP and span.span_id == "5555000000000001"
    assert span.http is not None and span.http.response_body == '{"ssn": "1"}'
    assert span.attributes[JOINED_ATTR] is True
    assert (join.joined, join.joined_sdk_first) == (1, 1)
    join.close()
    assert len(inner.spans) == 1  # nothing left to release


def test_sdk_without_twin_leaves_after_the_grace_unchanged() -> None:
    inner = MemorySink()
    join = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=0.05)
    try:
        join.offer([sdk_server()], SOURCE_OTLP)
        assert inner.spans == []
        deadline = time.monotonic() + 5
        while not inner.spans and time.monotonic() < deadline:
            time.sleep(0.01)  # the timer thread releases it; no further offer needed
        ((source, span),) = inner.spans
        assert source == SOURCE_OTLP and JOINED_ATTR not in span.attributes
        # its eBPF twin comes too late: dropped, not a second span for the same request
        join.offer([ebpf_span()], SOURCE_EBPF)
        join.flush()
        assert inner.ids() == ["5555000000000001"] and join.late_ebpf == 1
    finally:
        join.close()


def test_announced_request_extends_the_wait_beyond_the_grace() -> None:
    inner = MemorySink()
    join = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=0.05)
    try:
        join.expect(TRACE, PARENT, server=True)  # the tracer saw the request start
        join.offer([sdk_server()], SOURCE_OTLP)
        time.sleep(0.3)
        assert inner.spans == []  # still waiting: its eBPF span is known to be on the way
        join.offer([ebpf_span()], SOURCE_EBPF)
        ((_, span),) = inner.spans
        assert span.attributes[JOINED_ATTR] is True and span.span_id == "5555000000000001"
    finally:
        join.close()


def test_announce_after_the_sdk_span_arrived_extends_its_wait() -> None:
    inner = MemorySink()
    join = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=0.2)
    try:
        join.offer([sdk_server()], SOURCE_OTLP)
        join.expect(TRACE, PARENT, server=True)
        time.sleep(0.5)
        assert inner.spans == []
        join.offer([ebpf_span()], SOURCE_EBPF)
        assert [s.attributes.get(JOINED_ATTR) for _, s in inner.spans] == [True]
    finally:
        join.close()


@pytest.mark.parametrize("sdk_first", [True, False])
def test_client_spans_merge_by_the_injected_span_id(sink: Any, sdk_first: bool) -> None:
    join, inner = sink
    client_ebpf = ebpf_span(SpanKind.CLIENT, span_id="eeee000000000002", service="gateway")
    steps = [([sdk_client()], SOURCE_OTLP), ([client_ebpf], SOURCE_EBPF)]
    for batch, source in steps if sdk_first else reversed(steps):
        join.offer(batch, source)
    ((source, span),) = inner.spans
    assert source == SOURCE_OTLP and span.kind == SpanKind.CLIENT and span.span_id == PARENT
    assert span.attributes[JOINED_ATTR] is True
    assert span.attributes["http.request.header.authorization"] == ["Bearer x"]
    assert span.attributes["url.full"] == "http://orders/o/1"  # the SDK's own values win


def test_client_and_server_of_one_call_share_ids_but_never_cross_merge(sink: Any) -> None:
    join, inner = sink
    # The eBPF client span in the gateway and the eBPF server span in orders carry
    # the same traceparent, so the same (trace, parent) pair as the SDK server span
    # and the SDK client span's (trace, span id): the kind keeps them apart.
    join.offer([ebpf_span(SpanKind.CLIENT, span_id="eeee000000000002", service="gateway"),
                ebpf_span(SpanKind.SERVER, span_id="eeee000000000003")], SOURCE_EBPF)
    join.offer([sdk_server(), sdk_client()], SOURCE_OTLP)
    kinds = sorted((s.kind.name, s.span_id, s.attributes.get("apiward.ebpf.direction")) for _, s in inner.spans)
    assert kinds == [("CLIENT", PARENT, "client"), ("SERVER", "5555000000000001", "server")]
    assert join.joined == 2


def test_same_service_is_preferred_and_methods_must_agree(sink: Any) -> None:
    join, inner = sink
    # a proxy forwarded the header unchanged: two eBPF server spans with one key
    join.offer([ebpf_span(span_id="eeee00000000000a", service="proxy"),
                ebpf_span(span_id="eeee00000000000b", service="orders")], SOURCE_EBPF)
    join.offer([sdk_server(service="orders")], SOURCE_OTLP)
    ((_, span),) = inner.spans
    assert span.resource.service_name == "orders" and span.attributes[JOINED_ATTR] is True
    join.flush()
    assert [s.resource.service_name for _, s in inner.spans[1:]] == ["proxy"]  # released unchanged
    other = MemorySink()
    j2 = JoiningSink(other, hold_seconds=60, sdk_grace_seconds=0.0)
    j2.offer([ebpf_span(method="POST", trace="1" * 32)], SOURCE_EBPF)
    j2.offer([sdk_server(method="GET", trace="1" * 32)], SOURCE_OTLP)
    j2.close()
    assert sorted(s.source for _, s in other.spans) == [SOURCE_EBPF, SOURCE_OTLP]
    assert not any(JOINED_ATTR in s.attributes for _, s in other.spans)


def test_unmatched_ebpf_span_is_released_after_its_hold() -> None:
    inner = MemorySink()
    join = JoiningSink(inner, hold_seconds=0.0)
    join.offer([ebpf_span()], SOURCE_EBPF)
    join.offer([], SOURCE_OTLP)
    assert [(src, s.span_id) for src, s in inner.spans] == [(SOURCE_EBPF, "eeee000000000001")]
    # its SDK twin comes after that: it goes on (it is the authoritative one) and is counted
    join.offer([sdk_server()], SOURCE_OTLP)
    assert join.late_sdk == 1 and len(inner.spans) == 2
    join.close()


def test_spans_that_cannot_have_a_twin_pass_straight_through(sink: Any) -> None:
    join, inner = sink
    no_tp = make_span(trace_id=TRACE, span_id="3333333333333333", parent_span_id="", resource=Resource("x"),
                      name="GET", kind=SpanKind.SERVER, start_ns=1, end_ns=2, source=SOURCE_EBPF,
                      attributes={"http.request.method": "GET"})
    join.offer([no_tp], SOURCE_EBPF)
    internal = make_span(trace_id=TRACE, span_id="4444444444444444", parent_span_id=PARENT, resource=Resource("x"),
                         name="work", kind=SpanKind.INTERNAL, start_ns=1, end_ns=2)
    db = make_span(trace_id=TRACE, span_id="6666666666666666", parent_span_id=PARENT, resource=Resource("x"),
                   name="SELECT", kind=SpanKind.CLIENT, start_ns=1, end_ns=2, attributes={"db.system": "sqlite"})
    root = make_span(trace_id=TRACE, span_id="7777777777777777", parent_span_id="", resource=Resource("x"),
                     name="GET", kind=SpanKind.SERVER, start_ns=1, end_ns=2, attributes={"http.request.method": "GET"})
    join.offer([internal, db, root], SOURCE_OTLP)
    assert inner.ids() == ["3333333333333333", "4444444444444444", "6666666666666666", "7777777777777777"]


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch, sink: Any) -> None:
    monkeypatch.setattr(join_mod, "_MAX_SDK_HELD", 10)
    monkeypatch.setattr(join_mod, "_MAX_HELD", 10)
    join, inner = sink
    join.offer([sdk_server(trace=f"{i:032x}", span_id=f"{i:016x}") for i in range(1, 26)], SOURCE_OTLP)
    join.offer([ebpf_span(trace=f"{i:032x}", parent="1" * 16, span_id=f"{i + 100:016x}")
                for i in range(1, 26)], SOURCE_EBPF)
    assert join.stats()["join_held_sdk"] == 10 and join.stats()["join_held_ebpf"] == 10
    assert len(inner.spans) == 30  # the oldest left unchanged, none lost
    join.flush()
    assert len(inner.spans) == 50 and len(set(inner.ids())) == 50


def test_collector_announces_requests_to_the_joining_sink() -> None:
    from collectors.ebpf.collector import EbpfCollector
    from collectors.ebpf.events import Direction, EventKind, RawEvent, Role, Source

    inner = MemorySink()
    join = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=0.0)

    class Cfg:
        ebpf_ports: list[int] = []
        ebpf_pids: list[int] = []
        ebpf_comms: list[str] = []
        ebpf_capture_bytes = 4096

    col = EbpfCollector(Cfg(), join)
    head = f"GET /o/1 HTTP/1.1\r\nHost: orders\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n".encode()

    def ev(kind: EventKind, seq: int, data: bytes) -> RawEvent:
        return RawEvent(int(kind), 10 + seq, 99, 99, 5, 7, seq, int(Role.SERVER), int(Direction.INGRESS),
                        int(Source.SYSCALL), len(data), data, "srv", "127.0.0.1", 80, "127.0.0.1", 5555)

    col._tracker.handle(ev(EventKind.OPEN, 0, b""))
    col._tracker.handle(ev(EventKind.DATA, 0, head))  # request read, no response yet
    join.offer([sdk_server()], SOURCE_OTLP)  # grace 0, but the request was announced: it waits
    assert inner.spans == [] and join.stats()["join_held_sdk"] == 1
    join.close()


def test_a_refused_batch_is_forgotten_so_its_retry_is_not_duplicated() -> None:
    class Refusing(MemorySink):
        refuse = True

        def offer(self, batch: list[Span], source: str) -> bool:
            if self.refuse and source == SOURCE_OTLP:
                return False
            return super().offer(batch, source)

    inner = Refusing()
    join = JoiningSink(inner, hold_seconds=60, sdk_grace_seconds=60)
    try:
        join.offer([ebpf_span()], SOURCE_EBPF)
        internal = make_span(trace_id=TRACE, span_id="4444444444444444", parent_span_id=PARENT,
                             resource=Resource("x"), name="work", kind=SpanKind.INTERNAL, start_ns=1, end_ns=2)
        batch = [sdk_server(), sdk_client(trace="2" * 32), internal]
        assert not join.offer(batch, SOURCE_OTLP)  # the pipeline is full: the sender retries
        assert join.stats()["join_held_sdk"] == 0 and join.stats()["join_held_ebpf"] == 1
        inner.refuse = False
        assert join.offer(batch, SOURCE_OTLP)
        join.offer([ebpf_span(SpanKind.CLIENT, trace="2" * 32, span_id="eeee000000000009")], SOURCE_EBPF)
        join.flush()
        ids = sorted(inner.ids())
        assert ids == sorted(["5555000000000001", PARENT, "4444444444444444"])
        assert all(JOINED_ATTR in s.attributes for _, s in inner.spans if s.kind != SpanKind.INTERNAL)
    finally:
        join.close()
