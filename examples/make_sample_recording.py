"""Write ``examples/recordings/shop.jsonl``: a small, realistic OTLP recording.

Deterministic (fixed seed and clock), so the committed file only changes when
this script does. Run: ``python examples/make_sample_recording.py``.

The shop: ``gateway`` (stable HTTP semantic conventions, behind it the
internet), ``users`` (legacy conventions), ``orders`` (a FaaS function with
``faas.*`` attributes), ``payments`` (calls the external card processor
``api.cardprocessor.example``), ``inventory`` (legacy conventions, an SQLite
client span) and ``notifications`` (a messaging consumer of ``order-events``).
Some requests carry a captured ``Authorization: Bearer <JWT>`` header, some
none. Planted problems: one plaintext ``http://`` call between services
(orders -> payments), an e-mail address in a query string, and a 500 whose
exception event carries a stack trace. A few other errors have exception
events too. Each line is one ``ExportTraceServiceRequest`` in OTLP/JSON, the
OpenTelemetry Collector file exporter's format.
"""

from __future__ import annotations

import base64
import json
import random
import sys
from pathlib import Path
from typing import Any

SEED = 20240501
T0_NS = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
N_TRACES = 48
TRACES_PER_LINE = 4
OUT = Path(__file__).resolve().parent / "recordings" / "shop.jsonl"

SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = 2, 3, 4, 5, 1

RESOURCES: dict[str, dict[str, Any]] = {
    "gateway": {
        "service.name": "gateway",
        "service.namespace": "shop",
        "service.version": "2.3.1",
        "service.instance.id": "gateway-6c7f9d-2xk4p",
        "deployment.environment": "prod",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "gateway-6c7f9d-2xk4p",
        "k8s.deployment.name": "gateway",
        "container.id": "3f9a1c0d5e7b2a4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e3f5a7b9c1d3e5f7a9b1c",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.24.0",
    },
    "users": {
        "service.name": "users",
        "service.namespace": "shop",
        "service.instance.id": "users-5b8d7c-q9z2m",
        "deployment.environment": "prod",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "users-5b8d7c-q9z2m",
        "telemetry.sdk.language": "java",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.19.0",
    },
    "orders": {
        "service.name": "orders",
        "service.namespace": "shop",
        "faas.name": "orders-fn",
        "faas.version": "$LATEST",
        "faas.instance": "2024/05/01/[$LATEST]8f0e4c2a9b7d",
        "faas.max_memory": 536870912,
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "cloud.region": "eu-west-1",
        "cloud.account.id": "123456789012",
        "deployment.environment": "prod",
        "telemetry.sdk.language": "nodejs",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.22.0",
    },
    "payments": {
        "service.name": "payments",
        "service.namespace": "shop",
        "service.instance.id": "payments-7d4b6f-h3k8s",
        "deployment.environment": "prod",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "payments-7d4b6f-h3k8s",
        "telemetry.sdk.language": "go",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.26.0",
    },
    "inventory": {
        "service.name": "inventory",
        "service.namespace": "shop",
        "service.instance.id": "inventory-0",
        "deployment.environment": "prod",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "inventory-0",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.20.0",
    },
    "notifications": {
        "service.name": "notifications",
        "service.namespace": "shop",
        "service.instance.id": "notifications-84c9-w7t5r",
        "deployment.environment": "prod",
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "notifications-84c9-w7t5r",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "1.24.0",
    },
}

SCOPES = {
    "gateway": "opentelemetry.instrumentation.fastapi",
    "users": "io.opentelemetry.spring-webmvc-6.0",
    "orders": "@opentelemetry/instrumentation-aws-lambda",
    "payments": "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
    "inventory": "opentelemetry.instrumentation.flask",
    "notifications": "opentelemetry.instrumentation.kafka",
}

USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
    "ShopApp/4.12.0 (iPhone; iOS 17.4.1)",
    "okhttp/4.12.0",
)

STACKTRACE = (
    "Traceback (most recent call last):\n"
    '  File "/app/payments/handlers.py", line 88, in capture\n'
    "    result = processor.charge(order.card, order.total)\n"
    '  File "/app/payments/processor.py", line 142, in charge\n'
    "    raise ProcessorError(resp.status, resp.body)\n"
    "payments.processor.ProcessorError: 502 upstream card processor error "
    "(merchant_id=shop-prod-01)\n"
)


def _jwt(rnd: random.Random, sub: str) -> str:
    def b64(d: dict[str, Any]) -> str:
        raw = json.dumps(d, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    sig = base64.urlsafe_b64encode(rnd.randbytes(32)).rstrip(b"=").decode()
    claims = {"sub": sub, "iss": "https://auth.shop.example", "exp": 1714568400}
    return f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{b64(claims)}.{sig}"


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, (list, tuple)):
        return {"arrayValue": {"values": [_value(x) for x in v]}}
    return {"stringValue": str(v)}


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items()]


class Trace:
    """Collects the spans of one trace, per service."""

    def __init__(self, rnd: random.Random, start_ns: int) -> None:
        self.rnd = rnd
        self.trace_id = rnd.randbytes(16).hex()
        self.clock = start_ns
        self.spans: list[tuple[str, dict[str, Any]]] = []

    def span(
        self,
        service: str,
        name: str,
        kind: int,
        parent: str,
        attrs: dict[str, Any],
        *,
        dur_ms: float,
        offset_ms: float = 0.5,
        error: str | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> str:
        span_id = self.rnd.randbytes(8).hex()
        start = self.clock + int(offset_ms * 1e6)
        end = start + int(dur_ms * 1e6)
        self.clock = start
        sp: dict[str, Any] = {
            "traceId": self.trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": kind,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": _attrs(attrs),
            "status": {"code": 2, "message": error} if error else {},
        }
        if events:
            sp["events"] = events
        self.spans.append((service, sp))
        return span_id


def _exception(t_ns: int, typ: str, message: str, stack: str = "") -> dict[str, Any]:
    a: dict[str, Any] = {"exception.type": typ, "exception.message": message}
    if stack:
        a["exception.stacktrace"] = stack
    return {"timeUnixNano": str(t_ns), "name": "exception", "attributes": _attrs(a)}


def _auth_headers(rnd: random.Random, user: int, with_token: bool) -> dict[str, Any]:
    h: dict[str, Any] = {"http.request.header.content-type": ["application/json"]}
    if with_token:
        h["http.request.header.authorization"] = [f"Bearer {_jwt(rnd, f'user-{user}')}"]
    return h


# ------------------------------------------------------------------ flows


def gateway_in(
    tr: Trace,
    method: str,
    route: str,
    path: str,
    query: str,
    status: int,
    ua: str,
    client_ip: str,
    auth: dict[str, Any],
    dur_ms: float,
) -> str:
    attrs = {
        "http.request.method": method,
        "url.scheme": "https",
        "url.path": path,
        "http.route": route,
        "http.response.status_code": status,
        "server.address": "api.shop.example",
        "server.port": 443,
        "client.address": client_ip,
        "network.peer.address": "10.42.0.1",
        "network.protocol.version": "1.1",
        "user_agent.original": ua,
        **auth,
    }
    if query:
        attrs["url.query"] = query
    return tr.span(
        "gateway",
        f"{method} {route}",
        SERVER,
        "",
        attrs,
        dur_ms=dur_ms,
        offset_ms=0,
        error=None if status < 500 else f"HTTP {status}",
    )


def stable_client(
    tr: Trace,
    service: str,
    parent: str,
    method: str,
    host: str,
    port: int,
    path: str,
    status: int,
    dur_ms: float,
    scheme: str = "https",
    headers: dict[str, Any] | None = None,
    peer: str = "",
) -> str:
    attrs: dict[str, Any] = {
        "http.request.method": method,
        "url.full": f"{scheme}://{host}{'' if port in (80, 443) else f':{port}'}{path}",
        "server.address": host,
        "server.port": port,
        "http.response.status_code": status,
        "network.protocol.version": "1.1",
        **(headers or {}),
    }
    if peer:
        attrs["peer.service"] = peer
    return tr.span(
        service,
        method,
        CLIENT,
        parent,
        attrs,
        dur_ms=dur_ms,
        error=None if status < 500 else f"HTTP {status}",
    )


def legacy_server(
    tr: Trace,
    service: str,
    parent: str,
    method: str,
    route: str,
    target: str,
    status: int,
    host: str,
    dur_ms: float,
    headers: dict[str, Any] | None = None,
    error: str | None = None,
    events: list[dict[str, Any]] | None = None,
) -> str:
    attrs: dict[str, Any] = {
        "http.method": method,
        "http.scheme": "https",
        "http.target": target,
        "http.route": route,
        "http.status_code": status,
        "http.flavor": "1.1",
        "net.host.name": host,
        "net.host.port": 8443,
        "net.peer.ip": f"10.42.{tr.rnd.randrange(1, 8)}.{tr.rnd.randrange(2, 250)}",
        "http.user_agent": "python-httpx/0.27.0",
        **(headers or {}),
    }
    return tr.span(
        service,
        f"{method} {route}",
        SERVER,
        parent,
        attrs,
        dur_ms=dur_ms,
        error=error,
        events=events,
    )


def stable_server(
    tr: Trace,
    service: str,
    parent: str,
    method: str,
    route: str,
    path: str,
    status: int,
    host: str,
    port: int,
    dur_ms: float,
    scheme: str = "https",
    extra: dict[str, Any] | None = None,
    error: str | None = None,
    events: list[dict[str, Any]] | None = None,
) -> str:
    attrs: dict[str, Any] = {
        "http.request.method": method,
        "url.scheme": scheme,
        "url.path": path,
        "http.route": route,
        "http.response.status_code": status,
        "server.address": host,
        "server.port": port,
        "client.address": f"10.42.{tr.rnd.randrange(1, 8)}.{tr.rnd.randrange(2, 250)}",
        "network.protocol.version": "1.1",
        **(extra or {}),
    }
    return tr.span(
        service,
        f"{method} {route}",
        SERVER,
        parent,
        attrs,
        dur_ms=dur_ms,
        error=error,
        events=events,
    )


def flow_get_user(tr: Trace, user: int, token: bool, ua: str, ip: str) -> None:
    rnd = tr.rnd
    status = 200 if token else 401
    auth = _auth_headers(rnd, user, token)
    g = gateway_in(tr, "GET", "/api/users/{id}", f"/api/users/{user}", "", status, ua, ip, auth, 24)
    if not token:
        return
    c = stable_client(
        tr,
        "gateway",
        g,
        "GET",
        "users.shop.svc.cluster.local",
        8443,
        f"/users/{user}",
        200,
        18,
        headers=auth,
        peer="users",
    )
    legacy_server(
        tr,
        "users",
        c,
        "GET",
        "/users/{id}",
        f"/users/{user}",
        200,
        "users.shop.svc.cluster.local",
        15,
        headers=auth,
    )


def flow_search_user(tr: Trace, user: int, ua: str, ip: str) -> None:
    """Planted: an e-mail address in a query string."""
    rnd = tr.rnd
    email = f"alice.{user}@example.com"
    auth = _auth_headers(rnd, user, True)
    g = gateway_in(
        tr, "GET", "/api/users/search", "/api/users/search", f"email={email}", 200, ua, ip, auth, 31
    )
    c = stable_client(
        tr,
        "gateway",
        g,
        "GET",
        "users.shop.svc.cluster.local",
        8443,
        f"/users/search?email={email}",
        200,
        25,
        headers=auth,
        peer="users",
    )
    legacy_server(
        tr,
        "users",
        c,
        "GET",
        "/users/search",
        f"/users/search?email={email}",
        200,
        "users.shop.svc.cluster.local",
        21,
        headers=auth,
    )


def flow_inventory(tr: Trace, sku: str, ua: str, ip: str, locked: bool) -> None:
    g = gateway_in(
        tr,
        "GET",
        "/api/inventory/{sku}",
        f"/api/inventory/{sku}",
        "",
        500 if locked else 200,
        ua,
        ip,
        {},
        12,
    )
    _inventory_lookup(tr, "gateway", g, sku, locked)


def _inventory_lookup(tr: Trace, caller: str, parent: str, sku: str, locked: bool) -> None:
    status = 500 if locked else 200
    c = stable_client(
        tr,
        caller,
        parent,
        "GET",
        "inventory.shop.svc.cluster.local",
        8443,
        f"/items/{sku}",
        status,
        9,
        peer="inventory",
    )
    events = None
    if locked:
        events = [
            _exception(tr.clock + 4_000_000, "sqlite3.OperationalError", "database is locked")
        ]
    s = legacy_server(
        tr,
        "inventory",
        c,
        "GET",
        "/items/<sku>",
        f"/items/{sku}",
        status,
        "inventory.shop.svc.cluster.local",
        7,
        error="database is locked" if locked else None,
        events=events,
    )
    db_attrs = {
        "db.system": "sqlite",
        "db.name": "inventory.db",
        "db.statement": "SELECT sku, name, stock, price_cents FROM items WHERE sku = ?",
        "db.operation": "SELECT",
    }
    tr.span(
        "inventory",
        "SELECT inventory.db",
        CLIENT,
        s,
        db_attrs,
        dur_ms=2,
        error="database is locked" if locked else None,
    )


def flow_create_order(
    tr: Trace, user: int, ua: str, ip: str, n: int, fail_payment: bool, cold: bool
) -> None:
    rnd = tr.rnd
    auth = _auth_headers(rnd, user, True)
    status = 500 if fail_payment else 201
    g = gateway_in(tr, "POST", "/api/orders", "/api/orders", "", status, ua, ip, auth, 180)
    c = stable_client(
        tr,
        "gateway",
        g,
        "POST",
        "lambda.eu-west-1.amazonaws.com",
        443,
        "/2015-03-31/functions/orders-fn/invocations",
        status,
        170,
        headers=auth,
    )
    # the client span of a FaaS invocation names the function it calls
    tr.spans[-1][1]["attributes"] += _attrs(
        {
            "faas.invoked_name": "orders-fn",
            "faas.invoked_provider": "aws",
            "faas.invoked_region": "eu-west-1",
        }
    )
    invocation = f"{rnd.randbytes(4).hex()}-{rnd.randbytes(2).hex()}-{rnd.randbytes(2).hex()}"
    o = stable_server(
        tr,
        "orders",
        c,
        "POST",
        "/orders",
        "/orders",
        status,
        "orders-fn.lambda-url.eu-west-1.on.aws",
        443,
        160,
        extra={
            "faas.trigger": "http",
            "faas.invocation_id": invocation,
            "faas.coldstart": cold,
            **auth,
        },
        error=f"HTTP {status}" if fail_payment else None,
    )
    sku = f"SKU-{rnd.randrange(1000, 9999)}"
    _inventory_lookup(tr, "orders", o, sku, False)
    # Planted: the one plaintext call between services (orders -> payments over http://).
    order_id = 10_000 + n
    pay_status = 500 if fail_payment else 201
    pc = stable_client(
        tr,
        "orders",
        o,
        "POST",
        "payments.shop.svc.cluster.local",
        8080,
        f"/payments/{order_id}/capture",
        pay_status,
        90,
        scheme="http",
        peer="payments",
        headers={"http.request.header.content-type": ["application/json"]},
    )
    events = None
    if fail_payment:
        # Planted: a 500 with a stack trace in the exception event.
        events = [
            _exception(
                tr.clock + 60_000_000,
                "payments.processor.ProcessorError",
                "502 upstream card processor error",
                STACKTRACE,
            )
        ]
    ps = stable_server(
        tr,
        "payments",
        pc,
        "POST",
        "/payments/{order_id}/capture",
        f"/payments/{order_id}/capture",
        pay_status,
        "payments.shop.svc.cluster.local",
        8080,
        85,
        scheme="http",
        error="ProcessorError" if fail_payment else None,
        events=events,
    )
    stable_client(
        tr,
        "payments",
        ps,
        "POST",
        "api.cardprocessor.example",
        443,
        "/v1/charges",
        502 if fail_payment else 200,
        70,
        headers={"http.request.header.authorization": ["Basic c2hvcC1wcm9kLTAxOioqKio="]}
        if n % 3 == 0
        else None,
    )
    if fail_payment:
        return
    msg_attrs = {
        "messaging.system": "kafka",
        "messaging.destination.name": "order-events",
        "messaging.operation": "publish",
        "messaging.kafka.message.key": str(order_id),
        "server.address": "kafka.shop.svc.cluster.local",
    }
    p = tr.span("orders", "order-events publish", PRODUCER, o, msg_attrs, dur_ms=3)
    consume = dict(
        msg_attrs,
        **{"messaging.operation": "process", "messaging.kafka.consumer.group": "notifications"},
    )
    n_span = tr.span(
        "notifications", "order-events process", CONSUMER, p, consume, dur_ms=40, offset_ms=25
    )
    stable_client(
        tr,
        "notifications",
        n_span,
        "POST",
        "api.mailer.example",
        443,
        "/v3/mail/send",
        202,
        30,
        headers={"http.request.header.x-api-key": ["[REDACTED]"]},
    )


def flow_get_order(tr: Trace, user: int, ua: str, ip: str, order_id: int, cold: bool) -> None:
    rnd = tr.rnd
    auth = _auth_headers(rnd, user, True)
    g = gateway_in(
        tr, "GET", "/api/orders/{id}", f"/api/orders/{order_id}", "", 200, ua, ip, auth, 45
    )
    c = stable_client(
        tr,
        "gateway",
        g,
        "POST",
        "lambda.eu-west-1.amazonaws.com",
        443,
        "/2015-03-31/functions/orders-fn/invocations",
        200,
        40,
        headers=auth,
    )
    tr.spans[-1][1]["attributes"] += _attrs(
        {
            "faas.invoked_name": "orders-fn",
            "faas.invoked_provider": "aws",
            "faas.invoked_region": "eu-west-1",
        }
    )
    stable_server(
        tr,
        "orders",
        c,
        "GET",
        "/orders/{id}",
        f"/orders/{order_id}",
        200,
        "orders-fn.lambda-url.eu-west-1.on.aws",
        443,
        35,
        extra={
            "faas.trigger": "http",
            "faas.coldstart": cold,
            "faas.invocation_id": rnd.randbytes(8).hex(),
            **auth,
        },
    )


# ------------------------------------------------------------------ output


def build() -> list[dict[str, Any]]:
    rnd = random.Random(SEED)
    traces: list[Trace] = []
    t = T0_NS
    for i in range(N_TRACES):
        t += rnd.randrange(200, 1500) * 1_000_000
        tr = Trace(rnd, t)
        user = rnd.randrange(1000, 1100)
        ua = USER_AGENTS[i % len(USER_AGENTS)]
        ip = f"203.0.113.{rnd.randrange(2, 250)}"
        k = i % 8
        if k in (0, 4):
            flow_get_user(tr, user, token=(i % 12 != 4), ua=ua, ip=ip)
        elif k == 1:
            flow_create_order(tr, user, ua, ip, i, fail_payment=(i == 17), cold=(i < 8))
        elif k == 2:
            flow_inventory(tr, f"SKU-{rnd.randrange(1000, 9999)}", ua, ip, locked=(i == 26))
        elif k == 3:
            flow_get_order(tr, user, ua, ip, 10_000 + rnd.randrange(i + 1), cold=False)
        elif k == 5 and i == 13:
            flow_search_user(tr, user, ua, ip)
        elif k == 5:
            flow_create_order(tr, user, ua, ip, i, fail_payment=False, cold=False)
        else:
            flow_inventory(tr, f"SKU-{rnd.randrange(1000, 9999)}", ua, ip, locked=False)
        traces.append(tr)
    lines = []
    for start in range(0, len(traces), TRACES_PER_LINE):
        by_service: dict[str, list[dict[str, Any]]] = {}
        for tr in traces[start : start + TRACES_PER_LINE]:
            # Exporters send children before parents (spans end first): keep that order.
            for service, sp in reversed(tr.spans):
                by_service.setdefault(service, []).append(sp)
        lines.append(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": _attrs(RESOURCES[svc])},
                        "scopeSpans": [{"scope": {"name": SCOPES[svc]}, "spans": spans}],
                        "schemaUrl": "https://opentelemetry.io/schemas/1.24.0",
                    }
                    for svc, spans in by_service.items()
                ]
            }
        )
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for line in build():
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
