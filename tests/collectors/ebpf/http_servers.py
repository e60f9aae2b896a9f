"""Servers and clients the root eBPF tests run in child processes.

The tracer never traces its own process, so everything it must see runs in a
separate process: ``python http_servers.py server [CERT KEY]`` prints its port
and serves until killed; ``python http_servers.py urllib URL [CAFILE]`` makes
one request and prints the response body.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reply(self, status: int, payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Served-By", "ebpf-test")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        status = 404 if self.path.startswith("/missing") else 200
        self._reply(status, {"path": self.path, "email": "ann@example.com"})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        self._reply(201, {"got": body.decode("utf-8", "replace")})

    def log_message(self, *args: object) -> None:
        pass


def serve(cert: str | None, key: str | None) -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if cert and key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def fetch(url: str, cafile: str | None) -> None:
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    req = urllib.request.Request(url, headers={"X-Client": "urllib-test"})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        sys.stdout.write(resp.read().decode())


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(*(sys.argv[2:4] if len(sys.argv) >= 4 else (None, None)))
    else:
        fetch(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
