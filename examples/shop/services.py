"""The demo shop: small real services instrumented with the real OpenTelemetry SDK.

Run one service per process: ``python services.py NAME``. Each binds an ephemeral
port on its loopback address, prints ``ready NAME PORT`` and serves until its
stdin closes (the demo owns it). Peers are found through ``SHOP_<NAME>_URL``
environment variables; spans go to ``OTEL_EXPORTER_OTLP_ENDPOINT`` over gRPC.

Planted problems (what apiward must find) are marked ``PLANTED``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Capture the headers apiward needs (the values are masked by apiward, never kept raw).
_HDRS = "authorization,x-api-key,content-type,user-agent,x-forwarded-for"
os.environ.setdefault("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", _HDRS)
os.environ.setdefault("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST", _HDRS)
os.environ.setdefault(
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
    "content-type,access-control-allow-origin,access-control-allow-credentials,x-content-type-options",
)
os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
# Internal services record that a credential was sent, not the credential itself
# (the gateway keeps the Authorization header: apiward checks the tokens at the edge).
_SANITIZE = "x-api-key" if sys.argv[1:2] == ["gateway"] else "authorization,x-api-key"
os.environ.setdefault("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", _SANITIZE)

import jwt  # noqa: E402
import requests  # noqa: E402
from flask import Flask, Response, jsonify, request  # noqa: E402
from opentelemetry import propagate, trace  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.instrumentation.flask import FlaskInstrumentor  # noqa: E402
from opentelemetry.instrumentation.requests import RequestsInstrumentor  # noqa: E402
from opentelemetry.instrumentation.utils import suppress_instrumentation  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

SERVICE_TOKEN = "svc-internal-7c1f"  # what internal callers put in X-Api-Key
ORDERS: dict[int, dict[str, Any]] = {
    i: {"id": i, "owner": f"user{i % 40}", "total": 10 + i % 90, "items": i % 5 + 1} for i in range(1, 3001)
}


def peer(name: str) -> str:
    return os.environ[f"SHOP_{name.upper()}_URL"]


def setup(service: str, **resource: Any) -> TracerProvider:
    attrs = {"service.name": service, "service.namespace": "shop", "deployment.environment.name": "demo"}
    attrs.update(resource)
    tp = TracerProvider(resource=Resource.create(attrs))
    tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(insecure=True), schedule_delay_millis=300))
    trace.set_tracer_provider(tp)
    RequestsInstrumentor().instrument(tracer_provider=tp)
    return tp


def flask_app(service: str, tp: TracerProvider) -> Flask:
    app = Flask(service)
    FlaskInstrumentor().instrument_app(app, tracer_provider=tp)

    @app.after_request
    def record_error_body(resp: Response) -> Response:
        # Error bodies go on the span for debugging, as many teams do; it is also how the
        # verbose 500 below is visible to apiward without eBPF.
        if resp.status_code >= 500 and not resp.direct_passthrough:
            trace.get_current_span().set_attribute("http.response.body", resp.get_data(as_text=True)[:4096])
        return resp

    return app


def bearer_subject() -> str:
    """The ``sub`` of the request's bearer JWT (the gateway verified it), or ``""``."""
    word, _, tok = request.headers.get("Authorization", "").partition(" ")
    if word.lower() != "bearer" or not tok:
        return ""
    try:
        return str(jwt.decode(tok, options={"verify_signature": False}).get("sub") or "")
    except jwt.PyJWTError:
        return ""


# ------------------------------------------------------------------ gateway


def gateway() -> Flask:
    tp = setup("gateway")
    app = flask_app("gateway", tp)
    session = requests.Session()

    def fwd_headers() -> dict[str, str]:
        h = {"X-Api-Key": SERVICE_TOKEN}
        if "Authorization" in request.headers:
            h["Authorization"] = request.headers["Authorization"]
        return h

    def relay(r: requests.Response) -> Response:
        return Response(r.content, status=r.status_code, content_type=r.headers.get("content-type", "application/json"))

    @app.get("/api/users/<int:user_id>")
    def user(user_id: int) -> Response:
        return relay(session.get(f"{peer('users')}/users/{user_id}", headers=fwd_headers(), timeout=5))

    @app.get("/api/v1/users/<int:user_id>")
    def user_v1(user_id: int) -> Response:
        # PLANTED: a deprecated endpoint still called.
        return relay(session.get(f"{peer('users')}/v1/users/{user_id}", headers=fwd_headers(), timeout=5))

    @app.get("/api/users/<int:user_id>/export")
    def user_export(user_id: int) -> Response:
        # PLANTED: calls an endpoint that is not in the users spec (shadow).
        return relay(session.get(f"{peer('users')}/users/{user_id}/export", headers=fwd_headers(), timeout=5))

    @app.get("/api/users/search")
    def user_search() -> Response:
        # PLANTED: clients put emails in the query string; passed on as is.
        return relay(session.get(f"{peer('users')}/users/search", params=request.args, headers=fwd_headers(),
                                 timeout=5))

    @app.post("/api/login")
    def login() -> Response:
        return relay(session.post(f"{peer('users')}/login", json=request.get_json(silent=True) or {},
                                  headers=fwd_headers(), timeout=5))

    @app.get("/api/orders/<int:order_id>")
    def order(order_id: int) -> Response:
        return relay(session.get(f"{peer('orders')}/orders/{order_id}", headers=fwd_headers(), timeout=5))

    @app.post("/api/orders")
    def create_order() -> Response:
        return relay(session.post(f"{peer('orders')}/orders", json=request.get_json(silent=True) or {},
                                  headers=fwd_headers(), timeout=5))

    @app.get("/api/products")
    def products() -> Response:
        # PLANTED: an internal call without any authentication.
        return relay(session.get(f"{peer('inventory')}/products", timeout=5))

    @app.post("/api/checkout")
    def checkout() -> Response:
        body = request.get_json(silent=True) or {}
        # PLANTED: card number and email in the query string; plaintext to payments.
        params = {"card": body.get("card", ""), "email": body.get("email", ""), "amount": body.get("amount", 1)}
        return relay(session.post(f"{peer('payments')}/charge", params=params, headers=fwd_headers(), timeout=5))

    @app.get("/api/preview")
    def preview() -> Response:
        # PLANTED: SSRF: fetches whatever URL the client gives.
        url = request.args.get("url", "")
        try:
            r = session.get(url, timeout=3)
            return jsonify({"status": r.status_code, "length": len(r.content)})
        except requests.RequestException as exc:
            return jsonify({"error": str(exc)}), 502

    return app


# -------------------------------------------------------------------- users


def users() -> Flask:
    tp = setup("users")
    app = flask_app("users", tp)

    @app.get("/users/<int:user_id>")
    def get_user(user_id: int) -> Response:
        if user_id == 0:
            # PLANTED: a token in an exception message, and a verbose 500.
            raise RuntimeError(
                "profile backend refused token=ghp_" + "R7x2Kq9LmN4pV8sT1wY6zA3bC5dE0fG2hJ4k" + " for user 0"
            )
        return jsonify({"id": user_id, "name": f"user{user_id}", "plan": "basic"})

    @app.get("/v1/users/<int:user_id>")
    def get_user_v1(user_id: int) -> Response:
        return jsonify({"id": user_id, "name": f"user{user_id}"})

    @app.get("/users/<int:user_id>/export")
    def export_user(user_id: int) -> Response:
        return jsonify({"id": user_id, "email": f"user{user_id}@example.com", "ssn": "078-05-1120"})

    @app.get("/users/search")
    def search() -> Response:
        return jsonify({"results": [{"id": 1}]})

    @app.post("/login")
    def do_login() -> Response | tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        if body.get("password") == "correct horse":
            return jsonify({"token": "ok"})
        return jsonify({"error": "invalid credentials"}), 401

    @app.errorhandler(500)
    def verbose(exc: Exception) -> tuple[str, int]:
        # PLANTED: the stack trace goes back to the client.
        return "Internal Server Error\n" + traceback.format_exc(), 500

    return app


# ------------------------------------------------------------ orders (FaaS)


def orders() -> Flask:
    tp = setup("orders", **{"faas.name": "orders", "faas.version": "12", "cloud.provider": "aws",
                            "cloud.platform": "aws_lambda", "cloud.region": "eu-west-1",
                            "faas.instance": uuid.uuid4().hex[:12]})
    app = flask_app("orders", tp)
    tracer = tp.get_tracer("shop.orders")
    cold = {"start": True}

    @app.before_request
    def faas_attrs() -> None:
        span = trace.get_current_span()
        span.set_attribute("faas.trigger", "http")
        span.set_attribute("faas.invocation_id", uuid.uuid4().hex)
        span.set_attribute("faas.coldstart", cold["start"])
        cold["start"] = False
        user = bearer_subject()
        if user:
            span.set_attribute("enduser.id", user)

    @app.get("/orders/<int:order_id>")
    def get_order(order_id: int) -> Response | tuple[Response, int]:
        # PLANTED: no ownership check (BOLA) and no rate limiting (floods get no 429).
        o = ORDERS.get(order_id)
        if o is None:
            return jsonify({"error": "not found"}), 404
        return jsonify(o)

    @app.post("/orders")
    def create() -> tuple[Response, int]:
        oid = len(ORDERS) + 1
        ORDERS[oid] = {"id": oid, "owner": "new", "total": 42}
        with tracer.start_as_current_span(
            "order-events publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "aws_sqs", "messaging.destination.name": "order-events",
                        "messaging.operation.type": "publish"},
        ):
            headers: dict[str, str] = {}
            propagate.inject(headers)
            # The queue delivers to the notification function (simulated by an HTTP push).
            try:
                with suppress_instrumentation():  # the push itself is the queue's, not traced
                    requests.post(f"{peer('notification')}/invoke", json={"order": oid}, headers=headers, timeout=5)
            except requests.RequestException:
                pass
        return jsonify({"id": oid}), 201

    return app


# ----------------------------------------------------------------- payments


def payments() -> Flask:
    tp = setup("payments")
    app = flask_app("payments", tp)

    @app.post("/charge")
    def charge() -> Response:
        # PLANTED: PII (email, card) sent to the external card processor.
        r = requests.post(f"{peer('cardprocessor')}/v1/charges",
                          params={"card": request.args.get("card", ""), "email": request.args.get("email", ""),
                                  "amount": request.args.get("amount", "1")},
                          timeout=5)
        return Response(r.content, status=r.status_code, content_type="application/json")

    return app


# ---------------------------------------------------------------- inventory


def inventory() -> Flask:
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    tp = setup("inventory")
    SQLite3Instrumentor().instrument(tracer_provider=tp)
    app = flask_app("inventory", tp)
    db_path = os.path.join(os.environ.get("SHOP_DATA_DIR", "/tmp"), f"inventory-{os.getpid()}.db")
    con = sqlite3.connect(db_path, check_same_thread=False)
    con.execute("CREATE TABLE IF NOT EXISTS products (id INTEGER PRIMARY KEY, name TEXT, stock INTEGER)")
    con.executemany("INSERT OR REPLACE INTO products VALUES (?, ?, ?)",
                    [(i, f"product {i}", 100 - i) for i in range(1, 21)])
    con.commit()
    lock = threading.Lock()

    @app.get("/products")
    def products() -> Response:
        with lock:
            # through a cursor: the OpenTelemetry dbapi wrapper traces cursor.execute, not the
            # connection's execute shortcut
            cur = con.cursor()
            rows = cur.execute("SELECT id, name, stock FROM products WHERE stock > ?", (0,)).fetchall()
        return jsonify([{"id": r[0], "name": r[1], "stock": r[2]} for r in rows])

    return app


# ------------------------------------------------------- notification (FaaS)


def notification() -> Flask:
    tp = setup("notification", **{"faas.name": "notification", "cloud.provider": "aws",
                                  "cloud.platform": "aws_lambda", "cloud.region": "eu-west-1"})
    tracer = tp.get_tracer("shop.notification")
    app = Flask("notification")  # invoked by the queue: the function reports its own CONSUMER span
    cold = {"start": True}

    @app.post("/invoke")
    def invoke() -> Response:
        ctx = propagate.extract(dict(request.headers))
        with tracer.start_as_current_span(
            "order-events process",
            context=ctx,
            kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "aws_sqs", "messaging.destination.name": "order-events",
                        "messaging.operation.type": "process", "faas.trigger": "pubsub",
                        "faas.coldstart": cold["start"], "faas.invocation_id": uuid.uuid4().hex},
        ):
            cold["start"] = False
            # PLANTED: egress to a webhook host that the policy does not allow.
            try:
                requests.post(f"{peer('webhook')}/hooks/orders", json=request.get_json(silent=True), timeout=3)
            except requests.RequestException:
                pass
        return jsonify({"ok": True})

    return app


# ------------------------------------------------- external, uninstrumented


class _External(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"ok": True, "path": self.path.split("?")[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _reply  # noqa: N815
    do_POST = _reply  # noqa: N815


SERVICES = {
    "gateway": gateway,
    "users": users,
    "orders": orders,
    "payments": payments,
    "inventory": inventory,
    "notification": notification,
}
EXTERNAL = {"cardprocessor": "127.0.0.2", "webhook": "127.0.0.3"}


def main() -> None:
    name = sys.argv[1]
    if name in EXTERNAL:
        srv = ThreadingHTTPServer((EXTERNAL[name], 0), _External)
        srv.daemon_threads = True
        port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    else:
        app = SERVICES[name]()
        wsrv = make_server("127.0.0.1", 0, app, threaded=True)
        port = wsrv.port
        threading.Thread(target=wsrv.serve_forever, daemon=True).start()
    print(f"ready {name} {port}", flush=True)
    sys.stdin.read()  # the demo closes our stdin to stop us
    if name not in EXTERNAL:
        trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
    time.sleep(0.1)


if __name__ == "__main__":
    main()
