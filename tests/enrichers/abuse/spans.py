"""Span builders for the abuse tests (real :func:`agent.model.make_span`, explicit times)."""

from __future__ import annotations

import itertools
from typing import Any

from agent.model import Finding, Resource, Span, SpanEvent, SpanKind, StatusCode, make_span
from agent.state import State
from enrichers.abuse import AbuseEnricher

T0 = 1_700_000_000 * 10**9
SEC = 10**9
_ids = itertools.count(1)
_RES: dict[str, Resource] = {}

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"


def res(service: str) -> Resource:
    r = _RES.get(service)
    if r is None:
        r = _RES[service] = Resource.from_attributes({"service.name": service})
    return r


def server(
    t: float, path: str, *, service: str = "api", method: str = "GET", route: str | None = None,
    status: int = 200, ip: str = "203.0.113.5", user: str = "", ua: str = BROWSER, dur_ms: float = 20.0,
    query: str = "", trace: str | None = None, headers: dict[str, str] | None = None,
    resp_headers: dict[str, str] | None = None, size: int | None = None, body: str | None = None,
    resp_body: str | None = None, scheme: str = "https", events: tuple[SpanEvent, ...] = (),
) -> Span:
    n = next(_ids)
    attrs: dict[str, Any] = {
        "http.request.method": method, "url.path": path, "url.scheme": scheme,
        "http.response.status_code": status, "client.address": ip, "user_agent.original": ua,
    }
    if route is not None:
        attrs["http.route"] = route
    if query:
        attrs["url.query"] = query
    if user:
        attrs["enduser.id"] = user
    for k, v in (headers or {}).items():
        attrs[f"http.request.header.{k}"] = [v]
    for k, v in (resp_headers or {}).items():
        attrs[f"http.response.header.{k}"] = [v]
    if size is not None:
        attrs["http.response.body.size"] = size
    if body is not None:
        attrs["http.request.body"] = body
    if resp_body is not None:
        attrs["http.response.body"] = resp_body
    start = T0 + int(t * SEC)
    return make_span(
        trace_id=trace or f"{n:032x}", span_id=f"{n:016x}", parent_span_id="", resource=res(service),
        name=f"{method} {route or path}", kind=SpanKind.SERVER, start_ns=start,
        end_ns=start + int(dur_ms * 1e6), status_code=StatusCode.ERROR if status >= 500 else StatusCode.UNSET,
        attributes=attrs, events=events,
    )


def client(t: float, url: str, *, service: str = "api", trace: str, method: str = "GET", status: int = 200) -> Span:
    n = next(_ids)
    start = T0 + int(t * SEC)
    return make_span(
        trace_id=trace, span_id=f"{n:016x}", parent_span_id="", resource=res(service), name=method,
        kind=SpanKind.CLIENT, start_ns=start, end_ns=start + 5_000_000,
        attributes={"http.request.method": method, "url.full": url, "http.response.status_code": status},
    )


def db(t: float, statement: str, *, service: str = "api", trace: str) -> Span:
    n = next(_ids)
    start = T0 + int(t * SEC)
    return make_span(
        trace_id=trace, span_id=f"{n:016x}", parent_span_id="", resource=res(service), name="SELECT",
        kind=SpanKind.CLIENT, start_ns=start, end_ns=start + 1_000_000,
        attributes={"db.system": "postgresql", "db.statement": statement},
    )


class Runner:
    """Feeds batches through a real State + AbuseEnricher and keeps the merged findings."""

    def __init__(self, **settings: Any) -> None:
        from agent.config import Config

        self.state = State()
        # Shorter warm-up than the default keeps the tests quick; the logic is the same.
        settings = {"warmup_seconds": 60, "warmup_windows": 4, **settings}
        self.enricher = AbuseEnricher(Config(sections={"abuse": settings}))

    def feed(self, spans: list[Span], batch: int = 256) -> None:
        spans = sorted(spans, key=lambda s: s.start_ns)
        for i in range(0, len(spans), batch):
            with self.state.lock:
                self.state.batch.clear()
                self.state.add_findings(self.enricher.process(spans[i : i + batch], self.state))

    def flush(self) -> None:
        self.state.add_findings(self.enricher.flush(self.state))

    def findings(self, rule: str | None = None) -> list[Finding]:
        self.flush()
        out = [r.finding for r in self.state.findings.records()]
        return [f for f in out if rule is None or f.rule == rule]

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings()}


def benign(seconds: float, *, users: int = 40, rate: float = 20.0, service: str = "api", seed: int = 1) -> list[Span]:
    """Steady, varied benign traffic: users reading and updating their own things."""
    import random

    rnd = random.Random(seed)
    out = []
    t = 0.0
    while t < seconds:
        t += rnd.expovariate(rate)
        u = rnd.randrange(users)
        r = rnd.random()
        hdr = {"authorization": f"Bearer tok-{u}"}
        if r < 0.5:
            out.append(server(t, f"/orders/{1000 + u * 10 + rnd.randrange(3)}", route="/orders/{id}",
                              user=f"u{u}", ip=f"198.51.100.{u}", service=service, headers=hdr))
        elif r < 0.8:
            out.append(server(t, "/products", route="/products", user=f"u{u}", ip=f"198.51.100.{u}",
                              service=service, headers=hdr, size=rnd.randrange(500, 5000)))
        elif r < 0.9:
            out.append(server(t, "/login", route="/login", method="POST", ip=f"198.51.100.{u}",
                              status=401 if rnd.random() < 0.1 else 200, service=service))
        else:
            out.append(server(t, f"/orders/{1000 + u * 10}", route="/orders/{id}", method="PUT",
                              user=f"u{u}", ip=f"198.51.100.{u}", service=service, headers=hdr))
    return out
