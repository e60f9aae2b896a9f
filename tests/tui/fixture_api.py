"""A test double of the agent's query API, serving a fixed JSON fixture.

This is NOT the agent: it is a real stdlib HTTP server on 127.0.0.1 (ephemeral
port) that answers the query-API routes the TUI uses from
``fixtures/<name>.json``, so the TUI's tests and snapshots are deterministic
while the real API is built and whatever recording it replays changes. It keeps
acknowledge/mute flags in memory like the agent does, checks the bearer token
when one is set, and can be stopped and restarted on the same port to test the
disconnect banner.

Run by hand for development: ``python -m tests.tui.fixture_api [PORT]``.
"""

from __future__ import annotations

import copy
import json
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name: str = "shop") -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


class FixtureApi:
    def __init__(self, data: dict[str, Any] | None = None, token: str | None = None) -> None:
        self.data = copy.deepcopy(data if data is not None else load_fixture())
        self.token = token
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FixtureApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802
                api._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                api._handle(self, "POST")

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ------------------------------------------------------------------ routes

    def _handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urllib.parse.urlsplit(req.path)
        path, query = parts.path, dict(urllib.parse.parse_qsl(parts.query))
        if self.token and req.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(req, 401, {"error": "unauthorized"})
        with self.lock:
            status, body = self._route(method, path, query, req)
        self._send(req, status, body)

    def _route(
        self, method: str, path: str, query: dict[str, str], req: BaseHTTPRequestHandler
    ) -> tuple[int, Any]:
        d = self.data
        if method == "POST":
            segs = path.split("/")
            if path.startswith("/api/v1/findings/") and len(segs) == 6 and segs[5] in ("ack", "mute"):
                length = int(req.headers.get("Content-Length") or 0)
                body = json.loads(req.rfile.read(length) or b"{}")
                f = next((f for f in d["findings"] if f["id"] == segs[4]), None)
                if f is None:
                    return 404, {"error": "no such finding"}
                f["acknowledged" if segs[5] == "ack" else "muted"] = bool(body.get("value"))
                self.posts.append((path, body))
                return 200, f
            return 404, {"error": "not found"}
        if path == "/healthz":
            return 200, {"status": "ok"}
        if path == "/api/v1/stats":
            return 200, d["stats"]
        if path == "/api/v1/graph":
            return 200, d["graph"]
        if path == "/api/v1/inventory":
            return 200, d["inventory"]
        if path == "/api/v1/findings":
            return 200, d["findings"]
        if path.startswith("/api/v1/findings/"):
            f = next((f for f in d["findings"] if f["id"] == path.rsplit("/", 1)[1]), None)
            return (200, f) if f else (404, {"error": "no such finding"})
        if path == "/api/v1/traces":
            return 200, [{k: v for k, v in t.items() if k != "spans"} for t in d["traces"]]
        if path.startswith("/api/v1/traces/"):
            t = next((t for t in d["traces"] if t["trace_id"] == path.rsplit("/", 1)[1]), None)
            return (200, t) if t else (404, {"error": "no such trace"})
        if path == "/api/v1/endpoint":
            key = f"{query.get('service')} {query.get('method')} {query.get('route')}"
            e = d.get("endpoints", {}).get(key)
            if e is None:
                e = next(
                    (x for x in d["inventory"] if (x["service"], x["method"], x["route"])
                     == (query.get("service"), query.get("method"), query.get("route"))),
                    None,
                )  # fmt: skip
            return (200, e) if e else (404, {"error": "no such endpoint"})
        return 404, {"error": "not found"}

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(raw)))
        req.end_headers()
        req.wfile.write(raw)


if __name__ == "__main__":
    api = FixtureApi()
    api.port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    api.start()
    print(f"fixture API (test double of the agent) on {api.url}", flush=True)
    threading.Event().wait()
