"""The join with OTel SDK spans, live: real tracer, real SDK apps, real OTLP receiver (root only).

The SDK apps (``sdk_apps.py``) run in child processes and export by OTLP/HTTP
to the agent's receiver, which offers to the same :class:`JoiningSink` the
eBPF collector offers to, as in ``apiward run --ebpf``. Each request must end
up as exactly one span that carries the eBPF evidence, whichever side arrived
first, on the server side and on the client side.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.model import SOURCE_EBPF, SOURCE_OTLP, Span, SpanKind
from collectors.ebpf import EbpfCollector, JoiningSink, check_environment
from collectors.ebpf.join import JOINED_ATTR
from collectors.otlp_http import OtlpHttpReceiver

from .sinks import RecordingSink

HERE = Path(__file__).parent
PROBLEM = check_environment()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"needs root and BCC: {PROBLEM}"),
    pytest.mark.timeout(120),
]


class Inner(RecordingSink):
    """The pipeline stand-in behind the joining sink: records (source, span)."""

    def wait_for(self, pred: Callable[[Span], bool], timeout: float = 20.0) -> list[tuple[str, Span]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(pred)
            if found and all(JOINED_ATTR in s.attributes for _, s in found):
                return found
            time.sleep(0.05)
        return self.matching(pred)


def _start(args: list[str], service: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, OTEL_SERVICE_NAME=service)
    proc = subprocess.Popen([sys.executable, str(HERE / "sdk_apps.py"), *args], stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


@pytest.fixture(scope="module")
def live() -> Iterator[dict[str, object]]:
    inner = Inner()
    join = JoiningSink(inner)
    receiver = OtlpHttpReceiver(join, "127.0.0.1", 0, max_message_bytes=4 * 1024 * 1024)
    receiver.start()
    endpoint = f"http://127.0.0.1:{receiver.port}"
    procs: list[subprocess.Popen[str]] = []
    try:
        simple, simple_port = _start(["server", endpoint, "simple"], "sdk-simple")
        procs.append(simple)
        batch, batch_port = _start(["server", endpoint, "batch"], "sdk-batch")
        procs.append(batch)

        class Cfg:
            ebpf_ports = [simple_port, batch_port]
            ebpf_pids: list[int] = []
            ebpf_comms: list[str] = []
            ebpf_capture_bytes = 4096

        collector = EbpfCollector(Cfg(), join)
        # eBPF spans leave the tracer 0.6 s after their request: later than a span the
        # SDK exports when it ends, earlier than one its batch processor sends after 1.5 s.
        collector.flush_interval = 0.6
        collector.start()
        try:
            yield {"inner": inner, "join": join, "collector": collector, "endpoint": endpoint,
                   "simple_port": simple_port, "batch_port": batch_port}
        finally:
            collector.stop()
            join.close()
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)
        receiver.stop()


def _server(path: str) -> Callable[[Span], bool]:
    return lambda s: s.kind == SpanKind.SERVER and s.http is not None and s.http.path == path


def _client(path: str) -> Callable[[Span], bool]:
    return lambda s: s.kind == SpanKind.CLIENT and s.http is not None and s.http.path == path


def _request(port: int, path: str, trace_id: str, parent: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"traceparent": f"00-{trace_id}-{parent}-01", "X-Api-Key": "k-live-1"})
    resp = conn.getresponse()
    assert resp.status == 200 and b"ann@example.com" in resp.read()
    conn.close()


def _assert_one_joined_server_span(found: list[tuple[str, Span]], trace_id: str, parent: str) -> Span:
    assert len(found) == 1, [(src, s.source, s.attributes.get(JOINED_ATTR)) for src, s in found]
    source, span = found[0]
    assert source == SOURCE_OTLP and span.source == SOURCE_OTLP
    assert span.scope_name.startswith("opentelemetry.instrumentation.wsgi")
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent)
    assert span.attributes[JOINED_ATTR] is True
    # the eBPF evidence the SDK span did not have
    assert span.attributes["http.request.header.x-api-key"] == ["k-live-1"]
    assert span.attributes["http.response.header.x-served-by"] == ["sdk-app"]
    assert "ann@example.com" in str(span.attributes["http.response.body"])
    assert span.http is not None and span.http.request_headers["x-api-key"] == "k-live-1"
    return span


def test_sdk_span_first_gains_the_ebpf_evidence(live: dict) -> None:
    inner: Inner = live["inner"]
    join: JoiningSink = live["join"]
    before = join.joined_sdk_first
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    _request(live["simple_port"], "/sdk-first", trace_id, parent)
    found = inner.wait_for(_server("/sdk-first"))
    span = _assert_one_joined_server_span(found, trace_id, parent)
    assert span.service == "sdk-simple"
    assert join.joined_sdk_first > before  # the SDK span really arrived first and waited
    time.sleep(1.0)  # nothing else about this request comes later
    assert len(inner.matching(_server("/sdk-first"))) == 1


def test_ebpf_span_first_is_merged_into_the_sdk_span(live: dict) -> None:
    inner: Inner = live["inner"]
    join: JoiningSink = live["join"]
    first_sdk, joined = join.joined_sdk_first, join.joined
    trace_id, parent = os.urandom(16).hex(), os.urandom(8).hex()
    _request(live["batch_port"], "/ebpf-first", trace_id, parent)
    found = inner.wait_for(_server("/ebpf-first"))
    span = _assert_one_joined_server_span(found, trace_id, parent)
    assert span.service == "sdk-batch"
    assert join.joined > joined and join.joined_sdk_first == first_sdk  # the eBPF span waited
    time.sleep(1.0)
    assert len(inner.matching(_server("/ebpf-first"))) == 1


def test_client_spans_merge_too(live: dict) -> None:
    inner: Inner = live["inner"]
    port = live["batch_port"]
    env = dict(os.environ, OTEL_SERVICE_NAME="sdk-client")
    out = subprocess.run(
        [sys.executable, str(HERE / "sdk_apps.py"), "client", live["endpoint"], f"http://127.0.0.1:{port}/via-client"],
        capture_output=True, text=True, timeout=60, check=True, env=env,
    )
    assert "/via-client" in out.stdout
    clients = inner.wait_for(_client("/via-client"))
    servers = inner.wait_for(_server("/via-client"))
    assert len(clients) == 1 and len(servers) == 1, (clients, servers)
    (csrc, client), (_, server) = clients[0], servers[0]
    assert csrc == SOURCE_OTLP and client.source == SOURCE_OTLP and client.service == "sdk-client"
    assert client.scope_name.startswith("opentelemetry.instrumentation.urllib")
    assert client.attributes[JOINED_ATTR] is True
    assert client.attributes["http.request.header.x-client"] == ["sdk-client"]
    assert "ann@example.com" in str(client.attributes["http.response.body"])
    assert client.attributes["apiward.ebpf.direction"] == "client"
    # the server span of the same call: its parent is the client span, merged on its own side
    assert server.parent_span_id == client.span_id and server.trace_id == client.trace_id
    assert server.attributes[JOINED_ATTR] is True and server.attributes["apiward.ebpf.direction"] == "server"
    assert not inner.matching(lambda s: s.source == SOURCE_EBPF and s.http is not None
                              and s.http.path == "/via-client")
