"""The real BCC tracer against real servers and clients on 127.0.0.1 (root only).

Servers and clients the tracer must see run in child processes (the tracer
never traces its own process); the program is filtered to the test servers'
ports, so other traffic on the machine does not interfere.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.model import SOURCE_EBPF, Span, SpanKind
from collectors.ebpf import EbpfCollector, check_environment

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
PROBLEM = check_environment()
pytestmark = [
    pytest.mark.skipif(PROBLEM is not None, reason=f"needs root and BCC: {PROBLEM}"),
    pytest.mark.timeout(120),
]
SERVICE = "ebpf-test-server"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class MemorySink:
    """In-memory SpanSink the tests assert on."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def offer(self, batch: list[Span], source: str) -> bool:
        assert source == SOURCE_EBPF
        with self._lock:
            self.spans.extend(batch)
        return True

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        pass

    def wait_for(self, pred: Callable[[Span], bool], n: int = 1, timeout: float = 15.0) -> list[Span]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [s for s in self.spans if pred(s)]
            if len(found) >= n or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def _start_server(cert: Path | None = None, key: Path | None = None) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, str(HERE / "http_servers.py"), "server"]
    if cert and key:
        args += [str(cert), str(key)]
    env = dict(os.environ, OTEL_SERVICE_NAME=SERVICE)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, port


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


@pytest.fixture(scope="module")
def traced(certs: tuple[Path, Path]) -> Iterator[dict[str, object]]:
    http_proc, http_port = _start_server()
    https_proc, https_port = _start_server(*certs)
    sink = MemorySink()

    class Cfg:
        ebpf_ports = [http_port, https_port]
        ebpf_pids: list[int] = []
        ebpf_comms: list[str] = []
        ebpf_capture_bytes = 4096

    collector = EbpfCollector(Cfg(), sink)
    collector.start()
    try:
        yield {
            "sink": sink, "collector": collector, "http_port": http_port, "https_port": https_port,
            "http_pid": http_proc.pid, "https_pid": https_proc.pid, "cert": certs[0],
        }
    finally:
        collector.stop()
        for p in (http_proc, https_proc):
            p.kill()
            p.wait(timeout=10)


def _server_span(s: Span, pid: int, path: str) -> bool:
    return s.kind == SpanKind.SERVER and s.attributes.get("apiward.ebpf.pid") == pid and s.http is not None and s.http.path == path


def test_keepalive_http_client_with_chunked_body(traced: dict) -> None:
    sink: MemorySink = traced["sink"]
    port, pid = traced["http_port"], traced["http_pid"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/items?id=7", headers={"X-Api-Key": "k-123"})
    assert conn.getresponse().read()
    conn.request("POST", "/orders", body=iter([b'{"item": 7,', b' "card": "4111"}']),
                 headers={"Content-Type": "application/json"}, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 201 and resp.read()
    conn.request("GET", "/missing/thing")
    assert conn.getresponse().read()
    conn.close()

    (get,) = sink.wait_for(lambda s: _server_span(s, pid, "/items"))
    (post,) = sink.wait_for(lambda s: _server_span(s, pid, "/orders"))
    (missing,) = sink.wait_for(lambda s: _server_span(s, pid, "/missing/thing"))
    h = get.http
    assert h is not None
    assert (h.method, h.query, h.status_code, h.scheme) == ("GET", "id=7", 200, "http")
    assert h.request_headers["x-api-key"] == "k-123"
    assert get.attributes["http.request.header.x-api-key"] == ["k-123"]
    assert h.response_headers["x-served-by"] == "ebpf-test"
    assert h.response_body is not None and "ann@example.com" in h.response_body
    assert h.server_port == port and h.client_address == "127.0.0.1"
    assert h.network_peer_address == "127.0.0.1" and h.network_peer_port > 0
    assert get.duration_ns > 0 and abs(get.start_ns - time.time_ns()) < 60 * 10**9
    assert get.service == SERVICE
    assert get.resource.attributes["process.pid"] == pid
    assert get.resource.attributes["process.executable.name"].startswith("python")
    assert get.source == SOURCE_EBPF
    p = post.http
    assert p is not None and p.status_code == 201
    assert p.request_headers["transfer-encoding"] == "chunked"
    assert p.request_body == '{"item": 7, "card": "4111"}'
    assert p.request_body_size == len(p.request_body)
    assert missing.http is not None and missing.http.status_code == 404
    # all three on one keep-alive connection
    assert len({s.attributes["network.peer.port"] for s in (get, post, missing)}) == 1


def test_pipelined_requests(traced: dict) -> None:
    sink: MemorySink = traced["sink"]
    port, pid = traced["http_port"], traced["http_pid"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\n"
            b"POST /p2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 ") == 3
    spans = sink.wait_for(lambda s: s.kind == SpanKind.SERVER and s.attributes.get("apiward.ebpf.pid") == pid
                          and s.http is not None and s.http.path in ("/p1", "/p2", "/p3"), n=3)
    spans.sort(key=lambda s: s.start_ns)
    assert [(s.http.method, s.http.path, s.http.status_code) for s in spans if s.http] == [
        ("GET", "/p1", 200), ("POST", "/p2", 201), ("GET", "/p3", 200)
    ]
    assert spans[1].http is not None and spans[1].http.request_body == "hello"


def test_curl_client_and_traceparent(traced: dict) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (scripts/setup_ebpf.sh installs it)")
    sink: MemorySink = traced["sink"]
    port, pid = traced["http_port"], traced["http_pid"]
    out = subprocess.run(
        [curl, "-s", "-H", f"traceparent: 00-{TRACE}-{PARENT}-01", f"http://127.0.0.1:{port}/curl?x=1"],
        capture_output=True, timeout=20, check=True,
    )
    assert b"/curl" in out.stdout
    (client,) = sink.wait_for(lambda s: s.kind == SpanKind.CLIENT and s.http is not None and s.http.path == "/curl")
    (server,) = sink.wait_for(lambda s: _server_span(s, pid, "/curl"))
    assert client.resource.attributes["process.executable.name"] == "curl"
    assert client.http is not None and client.http.user_agent.startswith("curl/")
    assert client.http.url == f"http://127.0.0.1:{port}/curl?x=1"
    assert client.http.status_code == 200 and client.http.server_port == port
    assert client.duration_ns > 0
    for span in (client, server):
        assert (span.trace_id, span.parent_span_id) == (TRACE, PARENT)
        assert span.attributes["apiward.ebpf.traceparent"] == f"00-{TRACE}-{PARENT}-01"


def test_urllib_client_in_child_process(traced: dict) -> None:
    sink: MemorySink = traced["sink"]
    port = traced["http_port"]
    proc = subprocess.run(
        [sys.executable, str(HERE / "http_servers.py"), "urllib", f"http://127.0.0.1:{port}/from-urllib"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert "/from-urllib" in proc.stdout
    (client,) = sink.wait_for(lambda s: s.kind == SpanKind.CLIENT and s.http is not None and s.http.path == "/from-urllib")
    assert client.http is not None
    assert client.http.request_headers["x-client"] == "urllib-test"
    assert client.http.response_body is not None and "/from-urllib" in client.http.response_body


def test_https_plaintext_from_openssl(traced: dict) -> None:
    sink: MemorySink = traced["sink"]
    port, pid, cert = traced["https_port"], traced["https_pid"], traced["cert"]
    proc = subprocess.run(
        [sys.executable, str(HERE / "http_servers.py"), "urllib", f"https://127.0.0.1:{port}/secure?tls=1", str(cert)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert "/secure" in proc.stdout
    (server,) = sink.wait_for(lambda s: _server_span(s, pid, "/secure"))
    assert server.http is not None
    assert (server.http.scheme, server.http.status_code, server.http.query) == ("https", 200, "tls=1")
    assert server.http.request_headers["x-client"] == "urllib-test"
    assert server.http.response_body is not None and "ann@example.com" in server.http.response_body
    (client,) = sink.wait_for(lambda s: s.kind == SpanKind.CLIENT and s.http is not None and s.http.path == "/secure")
    assert client.http is not None and client.http.scheme == "https" and client.http.status_code == 200
    curl = shutil.which("curl")
    if curl:
        subprocess.run([curl, "-s", "--cacert", str(cert), "-d", "secret=1", f"https://127.0.0.1:{port}/curl-tls"],
                       capture_output=True, timeout=20, check=True)
        (post,) = sink.wait_for(lambda s: _server_span(s, pid, "/curl-tls"))
        assert post.http is not None and post.http.request_body == "secret=1" and post.http.status_code == 201
        (cc,) = sink.wait_for(lambda s: s.kind == SpanKind.CLIENT and s.http is not None and s.http.path == "/curl-tls")
        assert cc.http is not None and cc.http.scheme == "https" and cc.http.response_body


def test_stats(traced: dict) -> None:
    stats = traced["collector"].stats()
    for k in ("events", "lost_events", "connections", "spans"):
        assert k in stats
    assert stats["events"] > 0 and stats["lost_events"] == 0
