"""Writes fixtures/shop.json: what a fixed recording of a small shop looks like
through the query API. Run again after changing it: `python tests/tui/make_fixture.py`.
Kept as code so the fixture stays reviewable and deterministic."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

T0 = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z


def iso(ns: int) -> str:
    import datetime as dt

    return (
        dt.datetime.fromtimestamp(ns / 1e9, tz=dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def tid(n: int) -> str:
    return hashlib.sha256(f"trace{n}".encode()).hexdigest()[:32]


def sid(n: int) -> str:
    return hashlib.sha256(f"span{n}".encode()).hexdigest()[:16]


NODES = [
    {"id": "web-client", "kind": "client"},
    {"id": "frontend", "kind": "service"},
    {"id": "cart", "kind": "service"},
    {"id": "checkout", "kind": "service"},
    {"id": "payments", "kind": "service"},
    {"id": "postgres", "kind": "database"},
    {"id": "api.stripe.com", "kind": "external"},
    {"id": "send-receipt", "kind": "function"},
]


def edge(c, s, calls, errors, verdict, p95, tls=True, auth=("bearer",), ctype="http"):
    return {
        "client": c, "server": s, "connection_type": ctype, "calls": calls, "errors": errors,
        "p50_ms": round(p95 / 3, 1), "p95_ms": p95, "p99_ms": round(p95 * 1.6, 1),
        "tls": tls, "auth": list(auth), "verdict": verdict,
    }  # fmt: skip


EDGES = [
    edge("web-client", "frontend", 1200, 12, "allowed", 84.0),
    edge("frontend", "cart", 640, 0, "allowed", 12.5),
    edge("frontend", "checkout", 210, 9, "allowed", 240.0),
    edge("checkout", "payments", 205, 7, "violation", 180.0, tls=False, auth=()),
    edge("payments", "api.stripe.com", 198, 3, "unknown", 150.0),
    edge("cart", "postgres", 640, 0, "allowed", 3.1, ctype="db", auth=()),
    edge("checkout", "postgres", 420, 1, "allowed", 4.0, ctype="db", auth=()),
    edge("checkout", "send-receipt", 200, 0, "allowed", 35.0, ctype="faas"),
]


def ep(service, method, route, calls, errors, p95, auth, sens=(), life=()):
    return {
        "service": service, "method": method, "route": route, "calls": calls,
        "errors": errors, "p95_ms": p95, "auth": list(auth), "sensitive_types": list(sens),
        "lifecycle": list(life),
    }  # fmt: skip


INVENTORY = [
    ep("frontend", "GET", "/", 600, 0, 40.0, ()),
    ep("frontend", "GET", "/products/{id}", 420, 2, 55.0, ()),
    ep("frontend", "POST", "/checkout", 180, 10, 310.0, ("bearer",), ("email", "card_number")),
    ep("cart", "GET", "/cart/{user_id}", 400, 0, 12.0, ("bearer",), ("email",)),
    ep("cart", "POST", "/cart/{user_id}/items", 240, 0, 15.0, ("bearer",)),
    ep("checkout", "POST", "/orders", 205, 9, 230.0, ("bearer",), ("card_number",), ("new",)),
    ep("checkout", "GET", "/orders/{id}", 90, 1, 22.0, (), ("email", "phone"), ()),
    ep("payments", "POST", "/charge", 205, 7, 170.0, (), ("card_number",), ("shadow",)),
    ep("payments", "GET", "/v1/legacy/refund", 3, 0, 48.0, (), (), ("zombie",)),
    ep("payments", "GET", "/healthz", 60, 0, 1.2, (), (), ("dormant",)),
]

SPANS = {
    1: [
        (1, 0, "frontend", "POST /checkout", 2, 0, 320, "OK", "POST", "/checkout", 200),
        (2, 1, "frontend", "POST", 3, 10, 300, "OK", "POST", "/orders", 200),
        (3, 2, "checkout", "POST /orders", 2, 15, 295, "OK", "POST", "/orders", 200),
        (4, 3, "checkout", "SELECT orders", 3, 20, 30, "OK", "", "", 0),
        (5, 3, "checkout", "POST", 3, 40, 230, "OK", "POST", "/charge", 200),
        (6, 5, "payments", "POST /charge", 2, 45, 225, "OK", "POST", "/charge", 200),
        (7, 6, "payments", "POST", 3, 60, 210, "OK", "POST", "/v1/charges", 200),
        (8, 3, "checkout", "send-receipt", 3, 240, 290, "OK", "", "", 0),
    ],
    2: [
        (21, 0, "frontend", "GET /products/{id}", 2, 0, 60, "OK", "GET", "/products/{id}", 200),
        (22, 21, "cart", "GET /cart/{user_id}", 2, 10, 25, "OK", "GET", "/cart/{user_id}", 200),
        (23, 22, "cart", "SELECT cart", 3, 12, 20, "OK", "", "", 0),
    ],
    3: [
        (31, 0, "checkout", "GET /orders/{id}", 2, 0, 22, "OK", "GET", "/orders/{id}", 200),
    ],
    4: [
        (41, 0, "frontend", "POST /checkout", 2, 0, 900, "ERROR", "POST", "/checkout", 502),
        (42, 41, "checkout", "POST /orders", 2, 20, 880, "ERROR", "POST", "/orders", 502),
        (43, 42, "payments", "POST /charge", 2, 40, 870, "ERROR", "POST", "/charge", 502),
    ],
}
KIND = {1: "internal", 2: "server", 3: "client"}


def trace(n: int, start_offset_ms: int) -> dict:
    base = T0 + start_offset_ms * 1_000_000
    spans = [
        {
            "span_id": sid(s), "parent_span_id": sid(p) if p else "", "service": svc,
            "name": name, "kind": KIND[k], "start_ns": base + a * 1_000_000,
            "end_ns": base + b * 1_000_000, "status": st, "http_method": m, "route": r,
            "status_code": code,
        }  # fmt: skip
        for s, p, svc, name, k, a, b, st, m, r, code in SPANS[n]
    ]
    root = spans[0]
    return {
        "trace_id": tid(n), "root_service": root["service"], "root_name": root["name"],
        "start": iso(root["start_ns"]), "duration_ms": (root["end_ns"] - root["start_ns"]) / 1e6,
        "status": root["status"], "span_count": len(spans), "spans": spans,
    }  # fmt: skip


TRACES = [trace(1, 1000), trace(2, 2000), trace(3, 3000), trace(4, 4000)]


def finding(fid, rule, sev, owasp, title, subject, label, count, trace_n, span_ids, ev,
            explanation, remediation, compliance=(), ack=False, muted=False):  # fmt: skip
    return {
        "id": fid, "rule": rule, "severity": sev, "owasp": owasp, "title": title,
        "subject": subject, "subject_label": label, "count": count,
        "first_seen": iso(T0 + 1_000_000_000), "last_seen": iso(T0 + 65_000_000_000),
        "trace_ids": [tid(trace_n)] if trace_n else [], "span_ids": [sid(s) for s in span_ids],
        "explanation": explanation, "remediation": remediation, "evidence": ev,
        "compliance": list(compliance), "acknowledged": ack, "muted": muted,
    }  # fmt: skip


FINDINGS = [
    finding("a1b2c3d4e5f60001", "zerotrust.violation", "high", "API5:2023",
            "Call not allowed by the zero-trust policy",
            {"client": "checkout", "server": "payments"}, "checkout -> payments", 205, 1, [5, 6],
            {"policy": "deny checkout -> payments without mTLS", "tls": False},
            "checkout called payments over plain HTTP without a client identity; the policy "
            "only allows this flow over mTLS.",
            "Enable mTLS between checkout and payments or update the policy if the flow is "
            "intended.", ("PCI-DSS 4.1",)),
    finding("a1b2c3d4e5f60002", "sensitive.card_in_response", "critical", "API3:2023",
            "Card numbers returned in plain text",
            {"service": "payments", "method": "POST", "route": "/charge"},
            "payments POST /charge", 198, 1, [6],
            {"type": "card_number", "masked": "****1111", "field": "response.body.card",
             "sample": "alice@example.com paid with 4111 1111 1111 1111"},
            "The response body of POST /charge carries full primary account numbers.",
            "Return only the last four digits; tokenise cards at the edge.",
            ("PCI-DSS 3.4", "GDPR Art. 32")),
    finding("a1b2c3d4e5f60003", "auth.unauthenticated", "medium", "API2:2023",
            "Endpoint answers without authentication",
            {"service": "checkout", "method": "GET", "route": "/orders/{id}"},
            "checkout GET /orders/{id}", 90, 3, [31], {"requests_without_auth": 90},
            "GET /orders/{id} returned 200 to requests without any credentials.",
            "Require a bearer token on the route."),
    finding("a1b2c3d4e5f60004", "inventory.shadow", "medium", "API9:2023",
            "Shadow endpoint not in the specification",
            {"service": "payments", "method": "POST", "route": "/charge"},
            "payments POST /charge", 205, 0, [], {"spec": "payments.yaml"},
            "POST /charge is called but not described in payments.yaml.",
            "Add the operation to the spec or remove the endpoint."),
    finding("a1b2c3d4e5f60005", "inventory.zombie", "low", "API9:2023",
            "Deprecated endpoint still called",
            {"service": "payments", "method": "GET", "route": "/v1/legacy/refund"},
            "payments GET /v1/legacy/refund", 3, 0, [], {"deprecated_since": "2023-01-01"},
            "A deprecated operation still receives traffic.",
            "Move callers to /v2/refunds and retire the route.", ack=True),
    finding("a1b2c3d4e5f60006", "abuse.error_burst", "low", "API4:2023",
            "Burst of 5xx answers", {"service": "payments", "route": "/charge"},
            "payments /charge", 7, 4, [43], {"errors": 7, "window_s": 60},
            "payments returned 502 seven times in a minute.",
            "Check the upstream payment provider and add retries with backoff.", muted=True),
    finding("a1b2c3d4e5f60007", "zerotrust.unknown_egress", "info", "API10:2023",
            "Egress to a host not in the policy",
            {"client": "payments", "server": "api.stripe.com"}, "payments -> api.stripe.com", 198,
            1, [7], {"host": "api.stripe.com"},
            "payments calls api.stripe.com, which the policy does not mention.",
            "List the host in the egress policy."),
]

STATS = {
    "spans_received": 4210, "spans_accepted": 4200, "spans_rejected": 10, "spans_dropped": 0,
    "spans_processed": 4200, "spans_by_source": {"otlp": 0, "replay": 4200, "ebpf": 0},
    "rejected_by_reason": {"invalid": 10}, "dropped_by_reason": {}, "queue_depth": 0,
    "queue_capacity": 200000, "batches": 42, "findings": len(FINDINGS), "enricher_errors": {},
    "services": ["cart", "checkout", "frontend", "payments", "send-receipt"],
}  # fmt: skip

ENDPOINTS = {
    "checkout POST /orders": {
        "service": "checkout", "method": "POST", "route": "/orders", "calls": 205, "errors": 9,
        "p50_ms": 80.0, "p95_ms": 230.0, "p99_ms": 400.0,
        "status_codes": {"200": 196, "502": 9},
        "callers": [{"client": "frontend", "calls": 205}],
        "latency_p95_series": [120, 150, 180, 230, 210, 190, 230, 260, 230, 220],
        "rate_series": [10, 12, 18, 20, 22, 19, 21, 23, 20, 20],
    },
}  # fmt: skip


def main() -> None:
    data = {
        "stats": STATS,
        "graph": {"nodes": NODES, "edges": EDGES},
        "inventory": INVENTORY,
        "findings": FINDINGS,
        "traces": TRACES,
        "endpoints": ENDPOINTS,
    }
    out = Path(__file__).parent / "fixtures" / "shop.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
