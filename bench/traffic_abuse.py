"""Labelled traffic for the detection benchmark: a multi-service shop API with many
users in bursty sessions (benign), plus injected attacks of every class the
abuse detections know, as real :class:`~agent.model.Span` objects.

Every attack instance carries its class, its attacker client label (as the
abuse enricher names clients) or the routes it touches, and its time range, so
``bench/detection.py`` can score findings against the truth.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.model import Resource, Span, SpanEvent, SpanKind, StatusCode, make_span

T0 = 1_750_000_000 * 10**9
SEC = 10**9
GW = "gateway"
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ShopApp/5.2.1 (iPhone; iOS 17.4)",
    "ShopApp/5.2.0 (Android 14; Pixel 8)",
)

# class -> rules whose findings count as detecting it
CLASSES: dict[str, tuple[str, ...]] = {
    "client_flood": ("abuse.client_rate_spike", "abuse.rate_limit_missing"),
    "ddos": ("abuse.endpoint_flood",),
    "headless_bot": ("abuse.headless_client",),
    "metronome_bot": ("abuse.metronome_client",),
    "scraping": ("abuse.scraping",),
    "bola_enumeration": ("abuse.bola_enumeration",),
    "bola_foreign": ("abuse.bola_foreign_object",),
    "credential_stuffing": ("abuse.credential_stuffing",),
    "credentials_in_url": ("abuse.credentials_in_url",),
    "missing_credentials": ("abuse.missing_credentials",),
    "mass_assignment": ("abuse.mass_assignment",),
    "large_response": ("abuse.large_response",),
    "page_size": ("abuse.unbounded_page_size",),
    "admin_access": ("abuse.admin_unusual_caller",),
    "method_escalation": ("abuse.method_escalation",),
    "flow_burst": ("abuse.business_flow_burst",),
    "ssrf": ("abuse.ssrf",),
    "error_disclosure": ("abuse.error_disclosure",),
    "debug_endpoint": ("abuse.debug_endpoint_exposed",),
    "cors": ("abuse.cors_wildcard_credentials",),
    "plaintext_edge": ("abuse.plaintext_public_edge",),
    "old_version": ("abuse.old_api_version",),
    "plaintext_third_party": ("abuse.plaintext_third_party",),
    "injection": ("abuse.injection_reaches_db",),
    "latency": ("abuse.latency_anomaly",),
    "error_burst": ("abuse.error_rate_anomaly",),
}


@dataclass(slots=True)
class Attack:
    """One injected attack instance and how to recognise findings about it."""

    cls: str
    start_ns: int
    end_ns: int = 0
    clients: set[str] = field(default_factory=set)
    routes: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    requests: int = 0
    #: Every client label and route the attack's requests used: findings about them are
    #: explained by the attack (not false positives) even when filed under another class.
    actors: set[str] = field(default_factory=set)
    touched: set[str] = field(default_factory=set)


class Gen:
    """Span factory with deterministic ids."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.n = 0
        self.res = {s: Resource.from_attributes({"service.name": s, "service.namespace": "shop"})
                    for s in (GW, "orders", "users", "catalog")}
        self.pod_ip = {name: f"10.42.0.{i + 10}" for i, name in enumerate(self.res)}
        self._last_server = ""
        self.first_attack_ns = 0  # start of the current attack's first span
        self.spans: list[Span] = []
        self.benign_requests = 0
        self.actors: set[str] = set()
        self.touched: set[str] = set()

    def ids(self) -> tuple[str, str]:
        self.n += 1
        return f"{self.n:032x}", f"{self.n:016x}"

    def service_call(
        self, trace: str, parent: str, start: int, end: int, caller: str, callee: str, method: str, path: str,
        route: str, status: int, *, token: str = "",
    ) -> None:
        """A call between two services: the caller's CLIENT span and, as its child in the same
        trace, the callee's SERVER span (the gateway forwards the end user's bearer token)."""
        _, csid = self.ids()
        host = f"{callee}.shop.svc.cluster.local"
        self.spans.append(make_span(
            trace_id=trace, span_id=csid, parent_span_id=parent, resource=self.res[caller], name=method,
            kind=SpanKind.CLIENT, start_ns=start, end_ns=end,
            attributes={"http.request.method": method, "url.full": f"http://{host}{path}", "server.address": host,
                        "http.response.status_code": status},
        ))
        _, ssid = self.ids()
        attrs: dict[str, Any] = {
            "http.request.method": method, "url.path": path, "http.route": route, "url.scheme": "http",
            "http.response.status_code": status, "server.address": host, "client.address": self.pod_ip[caller],
            "user_agent.original": "python-httpx/0.27.0",
            "http.request.header.accept": ["application/json"],
        }
        if token:
            attrs["http.request.header.authorization"] = [f"Bearer {token}"]
        self.spans.append(make_span(
            trace_id=trace, span_id=ssid, parent_span_id=csid, resource=self.res[callee], name=f"{method} {route}",
            kind=SpanKind.SERVER, start_ns=start + 200_000, end_ns=max(start + 300_000, end - 200_000),
            status_code=StatusCode.ERROR if status >= 500 else StatusCode.UNSET, attributes=attrs,
        ))
        self._last_server = ssid

    def request(
        self, t: float, method: str, path: str, route: str, *, status: int = 200, ip: str, ua: str,
        user: str = "", token: str = "", query: str = "", dur_ms: float | None = None, size: int | None = None,
        body: str | None = None, resp_body: str | None = None, resp_headers: dict[str, str] | None = None,
        scheme: str = "https", events: tuple[SpanEvent, ...] = (), downstream: str = "", db: str = "",
        outbound: str = "", benign: bool = True,
    ) -> str:
        trace, sid = self.ids()
        start = T0 + int(t * SEC)
        if dur_ms is None:
            dur_ms = self.rnd.lognormvariate(3.2, 0.5)
        attrs: dict[str, Any] = {
            "http.request.method": method, "url.path": path, "http.route": route, "url.scheme": scheme,
            "http.response.status_code": status, "client.address": ip, "user_agent.original": ua,
            "server.address": "api.shop.example", "http.request.header.accept": ["application/json"],
        }
        if token:
            attrs["http.request.header.authorization"] = [f"Bearer {token}"]
        if user:
            attrs["enduser.id"] = user
        if query:
            attrs["url.query"] = query
        if size is not None:
            attrs["http.response.body.size"] = size
        if body is not None:
            attrs["http.request.body"] = body
        if resp_body is not None:
            attrs["http.response.body"] = resp_body
        for k, v in (resp_headers or {}).items():
            attrs[f"http.response.header.{k}"] = [v]
        end = start + int(dur_ms * 1e6)
        self.spans.append(make_span(
            trace_id=trace, span_id=sid, parent_span_id="", resource=self.res[GW], name=f"{method} {route}",
            kind=SpanKind.SERVER, start_ns=start, end_ns=end,
            status_code=StatusCode.ERROR if status >= 500 else StatusCode.UNSET, attributes=attrs, events=events,
        ))
        if downstream:
            # Behind the gateway, services serve the path without its public /api/v2 prefix.
            self.service_call(trace, sid, start + 1_000_000, end - 500_000, GW, downstream, method,
                              path.removeprefix("/api/v2"), route.removeprefix("/api/v2"), status, token=token)
            if downstream == "orders" and method == "POST":
                # Checkout: orders fetches the buyer's shipping address from users (a second hop).
                self.service_call(trace, self._last_server, start + 2_000_000, start + 6_000_000, "orders", "users",
                                  "GET", f"/internal/users/{user or 'anonymous'}/address",
                                  "/internal/users/{username}/address", 200, token=token)
        if db:
            _, dsid = self.ids()
            self.spans.append(make_span(
                trace_id=trace, span_id=dsid, parent_span_id=sid, resource=self.res[GW], name="SELECT",
                kind=SpanKind.CLIENT, start_ns=start + 2_000_000, end_ns=start + 3_000_000,
                attributes={"db.system": "postgresql", "db.statement": db},
            ))
        if outbound:
            _, osid = self.ids()
            self.spans.append(make_span(
                trace_id=trace, span_id=osid, parent_span_id=sid, resource=self.res[GW], name="GET",
                kind=SpanKind.CLIENT, start_ns=start + 1_000_000, end_ns=end - 100_000,
                attributes={"http.request.method": "GET", "url.full": outbound, "http.response.status_code": 200},
            ))
        if benign:
            self.benign_requests += 1
        else:
            if not self.first_attack_ns or start < self.first_attack_ns:
                self.first_attack_ns = start
            self.actors.add("user:" + user if user else "ip:" + ip)
            self.touched.add(route)
        return trace


# ------------------------------------------------------------------ benign
def benign_traffic(g: Gen, requests: int, users: int, rps: float) -> float:
    """Sessions of many users; returns the duration in seconds."""
    rnd = g.rnd
    duration = requests / rps
    admins = {f"staff{i}" for i in range(4)}
    t_session = 0.0
    session_rate = rps / 12.0
    while g.benign_requests < requests:
        t_session += rnd.expovariate(session_rate)
        if t_session > duration:
            t_session = rnd.uniform(0, duration)
        u = rnd.randrange(users)
        user = f"user{u}"
        ua = BROWSERS[u % len(BROWSERS)]
        ip = f"81.{(u >> 8) % 200 + 20}.{u % 250}.{(u * 7) % 250 + 1}"
        token = f"tok{u}"
        t = t_session
        # login (sometimes a typo first)
        if rnd.random() < 0.06:
            g.request(t, "POST", "/api/v2/login", "/api/v2/login", status=401, ip=ip, ua=ua)
            t += rnd.uniform(2, 8)
        g.request(t, "POST", "/api/v2/login", "/api/v2/login", ip=ip, ua=ua)
        is_admin = u < 4
        staff = f"staff{u}" if is_admin else ""
        n = max(2, int(rnd.lognormvariate(2.2, 0.6)))
        for _ in range(n):
            t += rnd.expovariate(0.5)
            r = rnd.random()
            kw: dict[str, Any] = {"ip": ip, "ua": ua, "user": staff or user, "token": token}
            if r < 0.30:
                sku = rnd.randrange(1, 5000)
                g.request(t, "GET", f"/api/v2/products/{sku}", "/api/v2/products/{sku}", downstream="catalog",
                          size=rnd.randrange(800, 4000), **kw)
            elif r < 0.45:
                g.request(t, "GET", "/api/v2/products", "/api/v2/products", query=f"page={rnd.randrange(1, 9)}&limit=20",
                          size=rnd.randrange(5000, 40000), downstream="catalog", **kw)
            elif r < 0.57:
                oid = 100_000 + u * 20 + rnd.randrange(6)
                g.request(t, "GET", f"/api/v2/orders/{oid}", "/api/v2/orders/{id}", downstream="orders",
                          db="SELECT * FROM orders WHERE id = $1 AND owner = $2", **kw)
            elif r < 0.65:
                g.request(t, "GET", "/api/v2/search", "/api/v2/search", query=f"q={rnd.choice(['shoes', 'red hat', 'lamp'])}",
                          db="SELECT id FROM products WHERE name ILIKE $1", **kw)
            elif r < 0.72:
                g.request(t, "GET", f"/api/v2/users/{staff or user}/profile", "/api/v2/users/{username}/profile",
                          downstream="users", **kw)
            elif r < 0.76:
                g.request(t, "PUT", f"/api/v2/users/{staff or user}/profile", "/api/v2/users/{username}/profile",
                          body='{"display_name": "Sam", "newsletter": true}', **kw)
            elif r < 0.80:
                g.request(t, "POST", "/api/v2/checkout", "/api/v2/checkout", downstream="orders", **kw)
            elif r < 0.84:
                g.request(t, "GET", "/api/v2/images/proxy", "/api/v2/images/proxy",
                          query=f"url=https://cdn.shop-media.net/img/{rnd.randrange(900)}.jpg",
                          outbound=f"https://cdn.shop-media.net/img/{rnd.randrange(900)}.jpg", **kw)
            elif r < 0.87:
                g.request(t, "GET", "/api/v2/recommendations", "/api/v2/recommendations",
                          status=503 if rnd.random() < 0.01 else 200, **kw)
            elif r < 0.90:
                g.request(t, "GET", "/api/v2/export/orders", "/api/v2/export/orders", size=rnd.randrange(20_000, 900_000), **kw)
            elif r < 0.905:
                g.request(t, "POST", "/api/v2/password-reset", "/api/v2/password-reset", ip=ip, ua=ua)
            elif r < 0.91:
                g.request(t, "POST", "/api/v2/signup", "/api/v2/signup", ip=ip, ua=ua)
            elif is_admin and r < 0.96:
                oid = 100_000 + rnd.randrange(users) * 20
                g.request(t, "DELETE", f"/api/v2/orders/{oid}", "/api/v2/orders/{id}", **kw)
                g.request(t + 1, "GET", "/admin/reports", "/admin/reports", **kw)
            else:
                g.request(t, "GET", "/api/v2/orders", "/api/v2/orders", downstream="orders", **kw)
            if rnd.random() < 0.01:
                g.request(t + 0.2, "GET", f"/api/v2/products/{rnd.randrange(5000, 9000)}", "/api/v2/products/{sku}",
                          status=404, **kw)
    # Staff work all day long: admin routes have a steady set of callers.
    t = 0.0
    while t < duration:
        t += rnd.expovariate(0.2)
        s = rnd.choice(sorted(admins))
        g.request(t, "GET", "/admin/reports", "/admin/reports", ip="10.20.0.5", ua=BROWSERS[0], user=s, token="st" + s)
        g.request(t + 0.5, "DELETE", f"/api/v2/orders/{100_000 + rnd.randrange(users) * 20}", "/api/v2/orders/{id}",
                  ip="10.20.0.5", ua=BROWSERS[0], user=s, token="st" + s)
    return duration


# ------------------------------------------------------------------ attacks
def _jitter(rnd: random.Random, rate: float) -> float:
    return rnd.expovariate(rate)


def attack_traffic(g: Gen, cls: str, k: int, start: float) -> Attack:  # noqa: C901 - one branch per class
    rnd = g.rnd
    a = Attack(cls, T0 + int(start * SEC))
    g.actors = a.actors
    g.touched = a.touched
    g.first_attack_ns = 0
    ip = f"45.{60 + k}.{sorted(CLASSES).index(cls)}.{k + 10}"
    ua = BROWSERS[0]
    label_ip = "ip:" + ip
    t = start
    req = g.request

    def add(n: int = 1) -> None:
        a.requests += n

    if cls == "client_flood":
        a.clients.add(label_ip)
        for _ in range(900):
            t += _jitter(rnd, 30)
            req(t, "GET", "/api/v2/products", "/api/v2/products", ip=ip, ua=ua, query="page=1&limit=20", benign=False)
            add()
    elif cls == "ddos":
        a.routes.add("/api/v2/products/{sku}")
        for i in range(12_000):
            t += _jitter(rnd, 400)
            bip = f"77.{k}.{i % 250}.{(i // 250) % 250}"
            req(t, "GET", f"/api/v2/products/{rnd.randrange(5000)}", "/api/v2/products/{sku}", ip=bip, ua=ua, benign=False)
            add()
    elif cls == "headless_bot":
        a.clients.add(label_ip)
        for _ in range(60):
            t += _jitter(rnd, 1)
            req(t, "GET", f"/api/v2/products/{rnd.randrange(5000)}", "/api/v2/products/{sku}", ip=ip,
                ua="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/124.0 Safari/537.36", benign=False)
            add()
    elif cls == "metronome_bot":
        a.clients.add(label_ip)
        for _ in range(120):
            t += 0.5
            req(t, "GET", "/api/v2/products", "/api/v2/products", ip=ip, ua=ua, query="page=1&limit=20", benign=False)
            add()
    elif cls == "scraping":
        a.clients.add(label_ip)
        for i in range(900):
            t += _jitter(rnd, 30)
            req(t, "GET", f"/api/v2/products/{i + 1}", "/api/v2/products/{sku}", ip=ip, ua=ua, benign=False)
            add()
    elif cls == "bola_enumeration":
        user = f"user{100 + k}"
        a.clients.add("user:" + user)
        for i in range(200):
            t += _jitter(rnd, 5)
            req(t, "GET", f"/api/v2/orders/{200_000 + i}", "/api/v2/orders/{id}", ip=ip, ua=ua, user=user,
                token=f"tok{100 + k}", status=403 if rnd.random() < 0.7 else 200, benign=False)
            add()
    elif cls == "bola_foreign":
        user = f"user{200 + k}"
        a.clients.add("user:" + user)
        for i in range(6):
            t += _jitter(rnd, 0.5)
            req(t, "GET", f"/api/v2/users/user{300 + i}/profile", "/api/v2/users/{username}/profile", ip=ip, ua=ua,
                user=user, token=f"tok{200 + k}", benign=False)
            add()
    elif cls == "credential_stuffing":
        a.clients.add(label_ip)
        for _ in range(300):
            t += _jitter(rnd, 10)
            req(t, "POST", "/api/v2/login", "/api/v2/login", ip=ip, ua=ua, status=401, benign=False)
            add()
    elif cls == "credentials_in_url":
        a.routes.add("/api/v2/orders")
        for _ in range(3):
            t += _jitter(rnd, 0.3)
            req(t, "GET", "/api/v2/orders", "/api/v2/orders", ip=ip, ua=ua, query=f"access_token=eyJx{k}abc", benign=False)
            add()
    elif cls == "missing_credentials":
        a.clients.add(label_ip)
        for i in range(5):
            t += _jitter(rnd, 0.5)
            req(t, "GET", f"/api/v2/orders/{100_000 + i}", "/api/v2/orders/{id}", ip=ip, ua=ua, benign=False)
            add()
    elif cls == "mass_assignment":
        user = f"user{400 + k}"
        a.clients.add("user:" + user)
        req(t, "PUT", f"/api/v2/users/{user}/profile", "/api/v2/users/{username}/profile", ip=ip, ua=ua, user=user,
            token="tok" + user, body='{"display_name": "x", "role": "admin", "is_admin": true}', benign=False)
        add()
    elif cls == "large_response":
        user = f"user{500 + k}"
        a.clients.add("user:" + user)
        req(t, "GET", "/api/v2/export/orders", "/api/v2/export/orders", ip=ip, ua=ua, user=user, token="t" + user,
            size=80_000_000, benign=False)
        add()
    elif cls == "page_size":
        user = f"user{600 + k}"
        a.clients.add("user:" + user)
        req(t, "GET", "/api/v2/products", "/api/v2/products", ip=ip, ua=ua, user=user, token="t" + user,
            query="page=1&limit=500000", benign=False)
        add()
    elif cls == "admin_access":
        user = f"user{700 + k}"
        a.clients.add("user:" + user)
        req(t, "GET", "/admin/reports", "/admin/reports", ip=ip, ua=ua, user=user, token="t" + user, benign=False)
        add()
    elif cls == "method_escalation":
        user = f"user{800 + k}"
        a.clients.add("user:" + user)
        req(t, "GET", f"/api/v2/orders/{100_000 + (800 + k) * 20}", "/api/v2/orders/{id}", ip=ip, ua=ua, user=user,
            token="t" + user, benign=False)
        req(t + 2, "DELETE", f"/api/v2/orders/{100_000 + 5 * 20}", "/api/v2/orders/{id}", ip=ip, ua=ua, user=user,
            token="t" + user, benign=False)
        add(2)
    elif cls == "flow_burst":
        a.clients.add(label_ip)
        for _ in range(60):
            t += _jitter(rnd, 2)
            req(t, "POST", "/api/v2/signup", "/api/v2/signup", ip=ip, ua="python-requests/2.31.0", benign=False)
            add()
    elif cls == "ssrf":
        a.clients.add(label_ip)
        target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
        req(t, "GET", "/api/v2/images/proxy", "/api/v2/images/proxy", ip=ip, ua=ua, query="url=" + target,
            outbound=target, benign=False)
        add()
    elif cls == "error_disclosure":
        a.routes.add("/api/v2/search")
        ev = (SpanEvent("exception", T0 + int(t * SEC), {
            "exception.type": "psycopg2.errors.SyntaxError",
            "exception.message": 'syntax error at or near "\'" LINE 1: SELECT id FROM products WHERE name = \'\'\'',
        }),)
        req(t, "GET", "/api/v2/search", "/api/v2/search", ip=ip, ua=ua, query="q=%27", status=500, events=ev, benign=False)
        add()
    elif cls == "debug_endpoint":
        a.routes.add("/actuator/env")
        req(t, "GET", "/actuator/env", "/actuator/env", ip=ip, ua=ua, benign=False)
        add()
    elif cls == "cors":
        a.routes.add("/api/v2/widgets")
        req(t, "GET", "/api/v2/widgets", "/api/v2/widgets", ip=ip, ua=ua, benign=False,
            resp_headers={"access-control-allow-origin": "*", "access-control-allow-credentials": "true",
                          "x-content-type-options": "nosniff", "strict-transport-security": "max-age=1"})
        add()
    elif cls == "plaintext_edge":
        a.routes.add("/api/v2/legacy-feed")
        req(t, "GET", "/api/v2/legacy-feed", "/api/v2/legacy-feed", ip=ip, ua=ua, scheme="http", benign=False)
        add()
    elif cls == "old_version":
        a.routes.add("/api/v1/products")
        for _ in range(3):
            t += 1
            req(t, "GET", "/api/v1/products", "/api/v1/products", ip=ip, ua=ua, benign=False)
            add()
    elif cls == "plaintext_third_party":
        a.hosts.add("api.partner-shipping.com")
        req(t, "POST", "/api/v2/checkout", "/api/v2/checkout", ip=ip, ua=ua, benign=False,
            outbound="http://api.partner-shipping.com/v1/quote")
        add()
    elif cls == "injection":
        a.clients.add(label_ip)
        req(t, "GET", "/api/v2/search", "/api/v2/search", ip=ip, ua=ua, query="q=%27%20OR%20%271%27%3D%271",
            db="SELECT id FROM products WHERE name = '' OR '1'='1'", benign=False)
        add()
    elif cls == "latency":
        a.routes.add("/api/v2/search")
        for _ in range(40):
            t += _jitter(rnd, 2)
            req(t, "GET", "/api/v2/search", "/api/v2/search", ip=ip, ua=ua, query="q=" + "a" * 40 + "!",
                dur_ms=rnd.uniform(6000, 12000), benign=False)
            add()
    elif cls == "error_burst":
        a.routes.add("/api/v2/recommendations")
        for i in range(400):
            t += _jitter(rnd, 20)
            req(t, "GET", "/api/v2/recommendations", "/api/v2/recommendations", ip=f"81.1.{i % 200}.9", ua=ua,
                status=503, benign=False)
            add()
    else:  # pragma: no cover - CLASSES and this function are kept in step
        raise ValueError(cls)
    a.start_ns = g.first_attack_ns or a.start_ns  # time to detect counts from the first attack span
    a.end_ns = T0 + int(t * SEC)
    return a


def build(
    benign_requests: int = 100_000, users: int = 3000, rps: float = 60.0, instances: int = 3, seed: int = 7,
    classes: list[str] | None = None, progress: Callable[[str], None] | None = None,
) -> tuple[list[Span], list[Attack], int]:
    """All spans sorted by start time, the attack instances, and the benign request count."""
    g = Gen(seed)
    duration = benign_traffic(g, benign_requests, users, rps)
    benign_n = g.benign_requests
    if progress:
        progress(f"benign: {benign_n} requests over {duration:.0f}s, {len(g.spans)} spans")
    attacks: list[Attack] = []
    names = classes or list(CLASSES)
    warm = 420.0  # past the warm-up of every baseline
    slots = max(1, len(names) * instances)
    step = (duration - warm - 120) / slots
    i = 0
    for k in range(instances):
        for cls in names:
            attacks.append(attack_traffic(g, cls, k, warm + i * step))
            i += 1
    g.spans.sort(key=lambda s: s.start_ns)
    return g.spans, attacks, benign_n
