"""Traffic for the demo shop: normal users, then attackers, each from its own address.

Every client binds its own loopback source address (127.0.0.0/8 is all local on
Linux), so the gateway sees distinct client addresses just as it would behind a
load balancer that preserves them. All traffic goes to 127.0.0.1 and stops when
``stop`` is set.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt

# The weak secret is the point of one planted problem; pyjwt rightly warns about it.
warnings.filterwarnings("ignore", message="The HMAC key is")

STRONG_SECRET = "d3m0-7f2b9c1e4a6d8f0b2c4e6a8d0f1b3c5e"
WEAK_SECRET = "secret"  # PLANTED: in every weak-secret list


def token(sub: str, *, key: str = STRONG_SECRET, alg: str = "HS256") -> str:
    payload = {"sub": sub, "aud": "shop", "iat": int(time.time()), "exp": int(time.time()) + 3600}
    if alg == "none":
        return jwt.encode(payload, key="", algorithm="none")
    return jwt.encode(payload, key, algorithm=alg)


class Client:
    """One HTTP/1.1 keep-alive client bound to its own source address."""

    def __init__(self, port: int, source: str, user_agent: str) -> None:
        self.port = port
        self.source = source
        self.ua = user_agent
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0
        self.errors = 0

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> int:
        h = {"User-Agent": self.ua, "Accept": "application/json"}
        if headers:
            h.update(headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        for _attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10,
                                                           source_address=(self.source, 0))
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                r.read()
                self.sent += 1
                return r.status
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        self.errors += 1
        return 0

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def normal_user(i: int, port: int, stop: threading.Event, external_url: str) -> None:
    rnd = random.Random(i)
    c = Client(port, f"127.0.1.{10 + i}", BROWSER)
    uid = 100 + i
    auth = {"Authorization": f"Bearer {token(f'user{uid}')}"}
    my_orders = [rnd.randint(1, 3000) for _ in range(3)]
    while not stop.is_set():
        action = rnd.random()
        if action < 0.30:
            c.request("GET", "/api/products")
        elif action < 0.50:
            c.request("GET", f"/api/users/{uid}", headers=auth)
        elif action < 0.65:
            c.request("GET", f"/api/orders/{rnd.choice(my_orders)}", headers=auth)
        elif action < 0.72:
            c.request("POST", "/api/login", body={"user": f"user{uid}", "password": "correct horse"})
        elif action < 0.80:
            c.request("POST", "/api/orders", body={"items": [rnd.randint(1, 20)]}, headers=auth)
        elif action < 0.86:
            c.request("POST", "/api/checkout", headers=auth,
                      body={"card": "4111111111111111", "email": f"user{uid}@example.com", "amount": 25})
        elif action < 0.90:
            c.request("GET", f"/api/v1/users/{uid}", headers=auth)  # an old client still on v1
        elif action < 0.94:
            c.request("GET", f"/api/users/search?email=user{uid}%40example.com", headers=auth)
        else:
            c.request("GET", f"/api/users/{uid}/export", headers=auth)
        stop.wait(rnd.uniform(0.15, 0.45))
    c.close()


def attacker_enumerate(port: int, stop: threading.Event) -> None:
    """PLANTED: a bot walking order ids (BOLA)."""
    c = Client(port, "127.0.0.66", "python-requests/2.32.3")
    auth = {"Authorization": f"Bearer {token('user7')}"}
    oid = 1
    while not stop.is_set() and oid < 2500:
        c.request("GET", f"/api/orders/{oid}", headers=auth)
        oid += 1
        stop.wait(0.02)
    c.close()


def attacker_stuffing(port: int, stop: threading.Event) -> None:
    """PLANTED: credential stuffing against the login route."""
    c = Client(port, "127.0.0.77", "python-requests/2.32.3")
    n = 0
    while not stop.is_set() and n < 600:
        c.request("POST", "/api/login", body={"user": f"victim{n % 97}", "password": f"hunter{n}"})
        n += 1
        stop.wait(0.01)
    c.close()


def attacker_flood(port: int, stop: threading.Event, seconds: float = 12.0, connections: int = 2) -> None:
    """PLANTED: a flood on the orders function, which never answers 429."""
    auth = {"Authorization": f"Bearer {token('user9')}"}
    end = time.monotonic() + seconds

    def one() -> None:
        c = Client(port, "127.0.0.88", "Go-http-client/1.1")
        while not stop.is_set() and time.monotonic() < end:
            c.request("GET", "/api/orders/42", headers=auth)
        c.close()

    workers = [threading.Thread(target=one, daemon=True, name="traffic-flood") for _ in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def attacker_tokens(port: int, stop: threading.Event) -> None:
    """PLANTED: a JWT with alg none and one signed with a weak secret."""
    c = Client(port, "127.0.0.99", "curl/8.5.0")
    for _ in range(5):
        if stop.is_set():
            break
        c.request("GET", "/api/users/101", headers={"Authorization": f"Bearer {token('admin', alg='none')}"})
        c.request("GET", "/api/users/102", headers={"Authorization": f"Bearer {token('admin', key=WEAK_SECRET)}"})
        stop.wait(0.5)
    c.close()


def attacker_probe(port: int, stop: threading.Event, internal_url: str) -> None:
    """PLANTED: SSRF through the preview URL parameter; a request that triggers a verbose 500."""
    c = Client(port, "127.0.0.111", "curl/8.5.0")
    for _ in range(5):
        if stop.is_set():
            break
        c.request("GET", f"/api/preview?url={internal_url}/latest/meta-data/")
        c.request("GET", "/api/users/0", headers={"Authorization": f"Bearer {token('user1')}"})
        stop.wait(0.5)
    c.close()


def attacker_mass_assignment(port: int, stop: threading.Event) -> None:
    """PLANTED (seen with --ebpf, which captures bodies): privileged fields in an order body."""
    c = Client(port, "127.0.0.122", BROWSER)
    auth = {"Authorization": f"Bearer {token('user12')}"}
    for _ in range(3):
        if stop.is_set():
            break
        c.request("POST", "/api/orders", headers=auth, body={"items": [3], "price": 0, "owner_id": 1})
        stop.wait(0.5)
    c.close()


def run(port: int, stop: threading.Event, *, users: int = 6, attack_after: float = 12.0,
        internal_url: str = "http://127.0.0.3:9", external_url: str = "") -> list[threading.Thread]:
    """Start the traffic threads; they end when ``stop`` is set (or their budget ends)."""
    threads: list[threading.Thread] = []

    def start(fn: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name=f"traffic-{fn.__name__}")
        t.start()
        threads.append(t)

    for i in range(users):
        start(normal_user, i, port, stop, external_url)

    def attacks() -> None:
        if stop.wait(attack_after):
            return
        # The flood comes before the enumeration, so each stands out against normal traffic.
        for fn, extra in ((attacker_tokens, ()), (attacker_probe, (internal_url,)), (attacker_flood, ()),
                          (attacker_stuffing, ()), (attacker_mass_assignment, ()), (attacker_enumerate, ())):
            start(fn, port, stop, *extra)
            if stop.wait(1.0):
                return

    start(attacks)
    return threads
