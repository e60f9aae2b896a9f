"""``apiward ratelimits`` output checked by the real consumers: NGINX loads the recommended
``limit_req`` configuration and enforces it on loopback traffic, and botocore's own
API Gateway model accepts the usage plan as a ``CreateUsagePlan`` input."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from enrichers.abuse.ratelimits import Recommendation, render

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def _rec(method: str, route: str, rps: int, burst: int, ep: int) -> Recommendation:
    evidence = {"windows": 8, "window_seconds": 10.0, "requests": 500, "clients_observed": 40,
                "per_client_per_window_p50": 2.0, "per_client_per_window_p99": 9.0,
                "per_client_peak_second_p99": 3.0, "endpoint_peak_second_p99": 20.0, "headroom": 2.0,
                "ever_429": False}
    return Recommendation("shop", method, route, rps, burst, ep, evidence)


RECS = [
    _rec("GET", "/orders/{id}", 50, 40, 500),
    _rec("PUT", "/orders/{id}", 1, 3, 100),
    _rec("GET", "/orders/export", 1, 2, 100),
    _rec("POST", "/login", 1, 5, 100),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Ok(BaseHTTPRequestHandler):
    def _ok(self) -> None:
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = do_PUT = do_POST = _ok  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


def _nginx_conf(tmp: Path, backend: int, port: int) -> Path:
    """The recommendation as a user deploys it: its http-level part (maps, zones) in the
    http block, its locations in the server block of the service, ``shop`` an upstream."""
    text = render(RECS, "nginx")
    http_part, _, server_part = text.partition("\n# server {} block of shop")
    server_part = server_part.split("\n", 2)[2]  # past the rest of that comment
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream shop {{ server 127.0.0.1:{backend}; }}
{http_part}
    server {{
        listen 127.0.0.1:{port};
{server_part}
    }}
}}
""")
    return conf


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[int]:
    if NGINX is None:
        pytest.skip("needs nginx (scripts/setup_system.sh installs Debian's nginx when run as root)")
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = _free_port()
    conf = _nginx_conf(tmp_path, backend.server_address[1], port)
    test = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True,
                          timeout=30)
    assert test.returncode == 0, f"nginx -t refused the recommended configuration:\n{test.stderr}\n{conf.read_text()}"
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
                assert time.monotonic() < deadline, "nginx did not listen"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.shutdown()
        backend.server_close()


def _burst(port: int, method: str, path: str, n: int) -> list[int]:
    """``n`` requests back to back from one client (one keep-alive connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    codes = []
    try:
        for _ in range(n):
            conn.request(method, path, body=b"{}" if method in ("PUT", "POST") else None)
            r = conn.getresponse()
            r.read()
            codes.append(r.status)
    finally:
        conn.close()
    return codes


def test_nginx_loads_and_enforces_the_recommended_limits(nginx: int) -> None:
    # POST /login: 1 r/s per client, burst 5 (nodelay): six pass at once, the rest get 429
    login = _burst(nginx, "POST", "/login", 12)
    assert login[:6] == [200] * 6 and login.count(429) >= 5 and set(login) <= {200, 429}, login
    # each method of a route has its own limits: PUT /orders/{id} (1 r/s, burst 3) runs out...
    put = _burst(nginx, "PUT", "/orders/7", 8)
    assert put[:4] == [200] * 4 and put.count(429) >= 3, put
    # ...while GET on the same location (50 r/s, burst 40) is untouched by it
    assert _burst(nginx, "GET", "/orders/8", 20) == [200] * 20
    # the literal route is an exact location ahead of the parameterised one: its own limit
    export = _burst(nginx, "GET", "/orders/export", 6)
    assert export[:3] == [200] * 3 and export.count(429) >= 2, export


def test_aws_usage_plan_is_a_valid_create_usage_plan_input_for_botocore() -> None:
    botocore_session = pytest.importorskip("botocore.session")
    from botocore.validate import ParamValidator

    model = botocore_session.get_session().get_service_model("apigateway")
    shape = model.operation_model("CreateUsagePlan").input_shape
    plan = json.loads(render(RECS, "aws"))
    report = ParamValidator().validate(plan, shape)
    assert not report.has_errors(), report.generate_report()
    # a key the API does not know is refused by the same check (the check can fail)
    bad = ParamValidator().validate({**plan, "evidence": {}}, shape)
    assert bad.has_errors() and "evidence" in bad.generate_report()
