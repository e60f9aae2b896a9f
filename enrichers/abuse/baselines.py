"""Learned baselines and the bounded, persisted state of the abuse detections.

Per endpoint: robust running statistics of each closed window (EWMA of the
request count with an EWMA of its absolute deviation, latency, error rate,
largest response, distinct object ids per client) and quantile sketches
(DDSketch) of the per-client request count per window and per-client 1-second
peak, which also feed ``apiward ratelimits``. Per client: when it was last
seen and its own baseline (EWMA of requests per window, error share, response
size, distinct object ids; top-K by recency). Per route: which clients read
and which write, and which callers an admin route has. Per service: which API
versions exist. Per endpoint: how often request bodies carry each privileged
field (mass assignment).

Everything is bounded (top-K clients, endpoints and routes, idle ones decay,
sketches rotate) and survives restarts through :meth:`AbuseState.snapshot` /
:meth:`restore`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ddsketch import DDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchPb
from ddsketch.pb.proto import DDSketchProto

from enrichers.abuse.rows import Rows
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.traces import TraceBuffer

if TYPE_CHECKING:
    from enrichers.abuse.windows import Horizon

SKETCH_ACCURACY = 0.02


def _sketch_dump(s: DDSketch | None) -> str | None:
    if s is None or s.count == 0:
        return None
    return base64.b64encode(DDSketchProto.to_proto(s).SerializeToString()).decode()


def _sketch_load(text: str | None) -> DDSketch | None:
    if not text:
        return None
    pb = DDSketchPb()
    pb.ParseFromString(base64.b64decode(text))
    return DDSketchProto.from_proto(pb)  # type: ignore[no-any-return]


class RotatingSketch:
    """A quantile sketch that forgets: the current and the previous epoch are kept."""

    __slots__ = ("cur", "prev", "added")

    def __init__(self) -> None:
        self.cur = DDSketch(SKETCH_ACCURACY)
        self.prev: DDSketch | None = None
        self.added = 0

    def add(self, value: float, weight: float = 1.0) -> None:
        self.cur.add(max(value, 0.0), weight)
        self.added += int(weight)

    def rotate(self) -> None:
        self.prev = self.cur
        self.cur = DDSketch(SKETCH_ACCURACY)

    @property
    def count(self) -> float:
        return self.cur.count + (self.prev.count if self.prev is not None else 0)

    def quantile(self, q: float) -> float:
        if self.prev is None or self.prev.count == 0:
            s = self.cur
        else:
            s = DDSketch(SKETCH_ACCURACY)
            s.merge(self.cur)
            s.merge(self.prev)
        if s.count == 0:
            return 0.0
        v = s.get_quantile_value(q)
        return float(v) if v is not None else 0.0

    def dump(self) -> dict[str, Any]:
        return {"cur": _sketch_dump(self.cur), "prev": _sketch_dump(self.prev)}

    @classmethod
    def load(cls, d: dict[str, Any]) -> RotatingSketch:
        r = cls()
        r.cur = _sketch_load(d.get("cur")) or DDSketch(SKETCH_ACCURACY)
        r.prev = _sketch_load(d.get("prev"))
        return r


@dataclass(slots=True)
class Ewma:
    """Exponentially weighted mean and mean absolute deviation (robust enough, O(1))."""

    mean: float = 0.0
    dev: float = 0.0
    n: int = 0

    def update(self, x: float, alpha: float) -> None:
        if self.n == 0:
            self.mean = x
            self.dev = abs(x) * 0.5
        else:
            d = x - self.mean
            self.mean += alpha * d
            self.dev += alpha * (abs(d) - self.dev)
        self.n += 1

    def dump(self) -> list[float]:
        return [self.mean, self.dev, self.n]

    @classmethod
    def load(cls, v: list[float]) -> Ewma:
        return cls(float(v[0]), float(v[1]), int(v[2]))


@dataclass(slots=True)
class EndpointBaseline:
    """What one endpoint's closed windows usually look like."""

    service: str
    method: str
    route: str
    first_ns: int
    last_ns: int = 0
    windows: int = 0
    total: int = 0
    count: Ewma = field(default_factory=Ewma)
    p95_ms: Ewma = field(default_factory=Ewma)
    err_rate: Ewma = field(default_factory=Ewma)
    fail_count: Ewma = field(default_factory=Ewma)
    max_size: Ewma = field(default_factory=Ewma)
    ids_per_client: Ewma = field(default_factory=Ewma)
    auth_yes: int = 0
    auth_no: int = 0
    saw_429: bool = False
    client_rate: RotatingSketch = field(default_factory=RotatingSketch)
    client_peak: RotatingSketch = field(default_factory=RotatingSketch)
    endpoint_peak: RotatingSketch = field(default_factory=RotatingSketch)

    def warm(self, now_ns: int, s: AbuseSettings) -> bool:
        return self.windows >= s.warmup_windows and now_ns - self.first_ns >= s.warmup_seconds * 1e9

    @property
    def auth_share(self) -> float:
        n = self.auth_yes + self.auth_no
        return self.auth_yes / n if n else 0.0

    def dump(self) -> dict[str, Any]:
        return {
            "service": self.service, "method": self.method, "route": self.route,
            "first_ns": self.first_ns, "last_ns": self.last_ns, "windows": self.windows,
            "total": self.total, "count": self.count.dump(), "p95_ms": self.p95_ms.dump(),
            "err_rate": self.err_rate.dump(), "fail_count": self.fail_count.dump(),
            "max_size": self.max_size.dump(), "ids_per_client": self.ids_per_client.dump(),
            "auth_yes": self.auth_yes, "auth_no": self.auth_no, "saw_429": self.saw_429,
            "client_rate": self.client_rate.dump(), "client_peak": self.client_peak.dump(),
            "endpoint_peak": self.endpoint_peak.dump(),
        }

    @classmethod
    def load(cls, d: dict[str, Any]) -> EndpointBaseline:
        b = cls(str(d["service"]), str(d["method"]), str(d["route"]), int(d["first_ns"]))
        b.last_ns = int(d.get("last_ns", 0))
        b.windows = int(d.get("windows", 0))
        b.total = int(d.get("total", 0))
        for name in ("count", "p95_ms", "err_rate", "fail_count", "max_size", "ids_per_client"):
            if name in d:
                setattr(b, name, Ewma.load(d[name]))
        b.auth_yes = int(d.get("auth_yes", 0))
        b.auth_no = int(d.get("auth_no", 0))
        b.saw_429 = bool(d.get("saw_429", False))
        for name in ("client_rate", "client_peak", "endpoint_peak"):
            if name in d:
                setattr(b, name, RotatingSketch.load(d[name]))
        return b


@dataclass(slots=True)
class ClientBaseline:
    """What one client's active windows usually look like (its own history)."""

    first_ns: int
    last_ns: int = 0
    windows: int = 0
    rate: Ewma = field(default_factory=Ewma)  # requests per window
    err: Ewma = field(default_factory=Ewma)  # share of responses >= 400
    size: Ewma = field(default_factory=Ewma)  # mean response bytes
    ids: Ewma = field(default_factory=Ewma)  # distinct object ids per window

    def warm(self, now_ns: int, s: AbuseSettings) -> bool:
        return self.windows >= s.client_warmup_windows and now_ns - self.first_ns >= s.warmup_seconds * 1e9

    def dump(self) -> list[Any]:
        return [self.first_ns, self.last_ns, self.windows, self.rate.dump(), self.err.dump(),
                self.size.dump(), self.ids.dump()]

    @classmethod
    def load(cls, v: list[Any]) -> ClientBaseline:
        return cls(int(v[0]), int(v[1]), int(v[2]), Ewma.load(v[3]), Ewma.load(v[4]), Ewma.load(v[5]),
                   Ewma.load(v[6]))


@dataclass(slots=True)
class RouteAccess:
    """Who reads and who writes one route (service + template, any method)."""

    first_ns: int
    readers: dict[str, int] = field(default_factory=dict)  # client -> last seen ns
    writers: dict[str, dict[str, int]] = field(default_factory=dict)  # method -> client -> last ns
    flagged: dict[str, str] = field(default_factory=dict)  # client -> method


@dataclass(slots=True)
class AdminAccess:
    """Which callers an admin/internal route usually has."""

    first_ns: int
    total: int = 0
    callers: dict[str, int] = field(default_factory=dict)  # client -> last seen ns
    flagged: set[str] = field(default_factory=set)


class AbuseState:
    """The ``abuse`` State part. See the module docstring."""

    def __init__(self, settings: AbuseSettings | None = None) -> None:
        self.settings = settings or AbuseSettings()
        self.endpoints: dict[str, EndpointBaseline] = {}
        self.clients: dict[str, int] = {}  # client -> last seen ns
        self.routes: dict[str, RouteAccess] = {}
        self.admin: dict[str, AdminAccess] = {}
        self.versions: dict[str, dict[str, dict[int, int]]] = {}  # service -> unversioned -> v -> last
        self.reported_once: set[str] = set()
        self.param_hosts: dict[str, dict[str, int]] = {}  # endpoint -> hosts named in URL parameters
        self.client_stats: dict[str, ClientBaseline] = {}
        #: Mass assignment: request bodies seen per endpoint, and per (endpoint, field).
        self.bodies: dict[str, int] = {}
        self.body_fields: dict[tuple[str, str], int] = {}
        self.rows: dict[int, Rows] = {}  # open sub-windows by index
        self.closed_upto = -1  # highest closed sub-window index
        self.watermark_ns = 0
        self.traces = TraceBuffer(self.settings.max_traces, int(self.settings.trace_ttl_seconds * 1e9))
        self.windows_closed = 0
        self.rows_dropped = 0
        self.transient()

    def transient(self) -> None:
        """Per-endpoint shortcuts into the maps above for the per-span path (not persisted;
        keyed by the enricher's cached endpoint objects, rebuilt when they are)."""
        self.route_of: dict[Any, RouteAccess] = {}
        self.versions_of: dict[Any, dict[int, int]] = {}
        self.headers_seen: set[Any] = set()
        #: The last closed sub-window (index, rows, folded into the baselines yet):
        #: the next one is evaluated together with it.
        from enrichers.abuse.windows import Horizon  # windows imports this module

        self.prev: tuple[int, Rows, bool] | None = None
        self.horizon: Horizon = Horizon()

    # ------------------------------------------------------------------ access
    def endpoint(self, key: str, service: str, method: str, route: str, ts: int) -> EndpointBaseline:
        b = self.endpoints.get(key)
        if b is None:
            b = EndpointBaseline(service, method, route, ts)
            self.endpoints[key] = b
        return b

    def decay(self, now_ns: int) -> None:
        """Forget idle clients, endpoints and routes and cap every map (bounded state)."""
        s = self.settings
        horizon = now_ns - int(s.idle_client_seconds * 1e9)
        if len(self.clients) > s.max_clients or (self.clients and min(self.clients.values()) < horizon):
            kept = {c: t for c, t in self.clients.items() if t >= horizon}
            if len(kept) > s.max_clients:
                kept = dict(sorted(kept.items(), key=lambda kv: kv[1])[-s.max_clients :])
            self.clients = kept
        if self.client_stats and (
            len(self.client_stats) > s.max_client_baselines
            or min(c.last_ns for c in self.client_stats.values()) < horizon
        ):
            self.prune_client_stats(horizon)
        idle = now_ns - int(s.idle_endpoint_seconds * 1e9)
        ep_last = {k: b.last_ns or b.first_ns for k, b in self.endpoints.items()}
        if len(ep_last) > s.max_endpoints or any(t < idle for t in ep_last.values()):
            eps = sorted(((t, k) for k, t in ep_last.items()), reverse=True)
            keep = {k for t, k in eps[: s.max_endpoints] if t >= idle}
            self.endpoints = {k: b for k, b in self.endpoints.items() if k in keep}
            self.bodies = {k: n for k, n in self.bodies.items() if k in keep}
            self.body_fields = {k: n for k, n in self.body_fields.items() if k[0] in keep}
        cap = s.max_clients_per_endpoint * 50
        for ra in self.routes.values():
            if len(ra.readers) > cap:
                ra.readers = dict(sorted(ra.readers.items(), key=lambda kv: kv[1])[-cap:])
        route_last = {k: _route_last(r) for k, r in self.routes.items()}
        if len(route_last) > s.max_routes or any(t < idle for t in route_last.values()):
            rs = sorted(((t, k) for k, t in route_last.items()), reverse=True)
            keep = {k for t, k in rs[: s.max_routes] if t >= idle}
            self.routes = {k: r for k, r in self.routes.items() if k in keep}
            self.route_of.clear()  # shortcuts into dropped records
        for aa in self.admin.values():
            if len(aa.callers) > s.max_clients_per_endpoint:
                top = sorted(aa.callers.items(), key=lambda kv: kv[1])
                aa.callers = dict(top[-s.max_clients_per_endpoint :])

    def prune_client_stats(self, horizon_ns: int = 0) -> None:
        """Keep the most recently seen ``max_client_baselines`` client baselines."""
        k = self.settings.max_client_baselines
        kept = [(c.last_ns, name) for name, c in self.client_stats.items() if c.last_ns >= horizon_ns]
        kept.sort(reverse=True)
        self.client_stats = {name: self.client_stats[name] for _, name in kept[:k]}

    # ----------------------------------------------------------- persistence
    def snapshot(self) -> dict[str, Any]:
        s = self.settings
        clients = self.clients
        if len(clients) > s.max_clients:
            clients = dict(sorted(clients.items(), key=lambda kv: kv[1])[-s.max_clients :])
        return {
            "version": 1,
            "watermark_ns": self.watermark_ns,
            "closed_upto": self.closed_upto,
            "endpoints": {k: b.dump() for k, b in self.endpoints.items()},
            "clients": clients,
            "routes": {
                k: {"first_ns": r.first_ns, "readers": r.readers, "writers": r.writers, "flagged": r.flagged}
                for k, r in self.routes.items()
            },
            "admin": {
                k: {"first_ns": a.first_ns, "total": a.total, "callers": a.callers, "flagged": sorted(a.flagged)}
                for k, a in self.admin.items()
            },
            "versions": {
                svc: {u: {str(v): t for v, t in vs.items()} for u, vs in d.items()}
                for svc, d in self.versions.items()
            },
            "reported_once": sorted(self.reported_once),
            "param_hosts": self.param_hosts,
            "client_stats": {c: b.dump() for c, b in self.client_stats.items()},
            "bodies": self.bodies,
            "body_fields": [[ep, f, n] for (ep, f), n in self.body_fields.items()],
        }

    def restore(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("version") != 1:
            return
        self.transient()
        self.watermark_ns = int(data.get("watermark_ns", 0))
        self.closed_upto = int(data.get("closed_upto", -1))
        self.endpoints = {k: EndpointBaseline.load(v) for k, v in (data.get("endpoints") or {}).items()}
        self.clients = {str(k): int(v) for k, v in (data.get("clients") or {}).items()}
        self.routes = {
            k: RouteAccess(
                int(v["first_ns"]),
                {str(c): int(t) for c, t in v.get("readers", {}).items()},
                {m: {str(c): int(t) for c, t in cs.items()} for m, cs in v.get("writers", {}).items()},
                dict(v.get("flagged", {})),
            )
            for k, v in (data.get("routes") or {}).items()
        }
        self.admin = {
            k: AdminAccess(
                int(v["first_ns"]), int(v.get("total", 0)),
                {str(c): int(t) for c, t in v.get("callers", {}).items()}, set(v.get("flagged", ())),
            )
            for k, v in (data.get("admin") or {}).items()
        }
        self.versions = {
            svc: {u: {int(v): int(t) for v, t in vs.items()} for u, vs in d.items()}
            for svc, d in (data.get("versions") or {}).items()
        }
        self.reported_once = set(data.get("reported_once") or ())
        self.param_hosts = {
            str(k): {str(h): int(n) for h, n in v.items()} for k, v in (data.get("param_hosts") or {}).items()
        }
        self.client_stats = {str(c): ClientBaseline.load(v) for c, v in (data.get("client_stats") or {}).items()}
        self.bodies = {str(k): int(v) for k, v in (data.get("bodies") or {}).items()}
        self.body_fields = {(str(ep), str(f)): int(n) for ep, f, n in (data.get("body_fields") or ())}


def _route_last(r: RouteAccess) -> int:
    """When a route was last read or written."""
    last = max(r.readers.values(), default=r.first_ns)
    for cs in r.writers.values():
        last = max(last, max(cs.values(), default=0))
    return last
