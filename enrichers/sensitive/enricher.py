"""The sensitive-data enricher: finds sensitive values in every span, keeps only their
masked form and keyed hash, and reports where they should not be.

It runs first in the enricher order and publishes, per span, the detections of
that batch in ``state.batch.sensitive[span_id]`` (:class:`Detection`: type,
where, direction, masked, hash, offsets — never a raw value) for the enrichers
after it and for the redacting forwarder. Per endpoint and per edge it keeps
which sensitive types travel in which direction (:class:`SensitiveFacts`, the
State part ``"sensitive"``), for the inventory and the excessive-data-exposure
check.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from agent.model import Finding, Resource, Severity, Span, SpanKind, Subject, tls_evidence
from enrichers.base import Enricher
from enrichers.inventory.routes import PathTemplater, convert_route
from enrichers.sensitive.recognizer import CREDENTIAL, FINANCIAL, HEALTH, NETWORK, THRESHOLD
from enrichers.sensitive.sanitize import replace_values, sanitized
from enrichers.sensitive.scanner import Match, SensitiveDataScanner

if TYPE_CHECKING:
    from agent.config import Config
    from agent.state import State

REQUEST = "request"
RESPONSE = "response"
TELEMETRY = "telemetry"

URL_KEYS = frozenset({"url.full", "http.url", "http.target", "url.path", "url.query"})
_REQUEST_KEYS = frozenset({"db.statement", "db.query.text", "http.request.body", "messaging.message.body"})
_RESPONSE_KEYS = frozenset({"http.response.body"})
_AUTH_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "apikey", "x-auth-token",
     "cookie", "x-api-token", "ocp-apim-subscription-key"}
)  # fmt: skip
#: Types reported as facts but never raised as findings on their own.
_INFO_TYPES = frozenset({"PRIVATE_IP_ADDRESS"})
_NATIONAL_IDS = frozenset(
    {"US_SSN", "US_ITIN", "UK_NINO", "CA_SIN", "IN_AADHAAR", "IN_PAN", "BR_CPF", "ES_NIF",
     "ES_NIE", "PASSPORT", "DRIVER_LICENSE"}
)  # fmt: skip
_SEGMENT_ID = re.compile(r"^(?:\d+|[0-9a-fA-F-]{8,}|[A-Za-z0-9_-]{20,}|.*\d.*\d.*\d.*)$")
_PARAM = re.compile(r"^(?:\{[^}]*\}|:[^/]+|<[^>]+>|\*)$")
_MAX_KEYS = 20_000
#: Attributes whose values are protocol facts (methods, schemes, versions, route
#: templates, host names), never user data: not scanned, which keeps the hot path short.
SKIP_KEYS = frozenset(
    {"http.request.method", "http.method", "url.scheme", "http.scheme", "network.protocol.version",
     "network.protocol.name", "http.flavor", "http.route", "server.address", "net.peer.name",
     "net.host.name", "http.host", "http.server_name", "peer.service", "rpc.system", "rpc.service",
     "rpc.method", "db.system", "db.system.name", "db.operation", "db.operation.name",
     "messaging.system", "messaging.operation", "otel.status_code", "otel.scope.name",
     "network.transport", "network.type", "span.kind", "service.name", "service.version",
     "telemetry.sdk.name", "telemetry.sdk.language", "telemetry.sdk.version", "os.type",
     "host.arch", "process.runtime.name", "process.runtime.version", "faas.trigger",
     "http.request.method_original", "network.peer.port", "server.port", "client.port", "url.port",
     "http.status_code", "http.response.status_code", "rpc.grpc.status_code",
     "messaging.destination.kind", "db.name", "db.namespace", "db.collection.name",
     "code.function", "code.namespace", "code.lineno", "thread.name", "thread.id",
     "k8s.namespace.name", "k8s.deployment.name", "k8s.node.name", "k8s.cluster.name",
     "cloud.provider", "cloud.region", "cloud.platform", "deployment.environment",
     "deployment.environment.name", "service.namespace", "telemetry.auto.version",
     "os.description", "process.runtime.description", "process.executable.name"}
)  # fmt: skip


#: Peer/client address attributes: a bare private address there is skipped quickly.
ADDRESS_KEYS = frozenset(
    {"network.peer.address", "client.address", "net.peer.ip", "net.sock.peer.addr",
     "network.local.address", "net.host.ip", "net.sock.host.addr", "source.address",
     "destination.address", "client.socket.address", "server.socket.address"}
)  # fmt: skip
_PRIVATE_IP = re.compile(
    r"(?:10|127)\.\d{1,3}\.\d{1,3}\.\d{1,3}\Z|192\.168\.\d{1,3}\.\d{1,3}\Z"
    r"|172\.(?:1[6-9]|2\d|3[01])\.\d{1,3}\.\d{1,3}\Z|::1\Z|(?:fd|fe80:)[0-9a-f:]*\Z"
)
#: Integers at least this large in magnitude are scanned as their decimal text (a card
#: number or an SSN sent as a number); smaller ones are ports, sizes and status codes.
MIN_SCANNED_INT = 100_000
#: Per-key value caches hold at most this many results in all.
_MAX_CACHED = 131_072
_MAX_CACHED_LEN = 2048
#: Distinct attribute key sequences remembered (see ``_gather``).
_MAX_SHAPES = 4096


@dataclass(slots=True)
class _KeyPlan:
    """How one attribute key is scanned: address fast path, and its values' results."""

    address: bool
    cache: dict[str, tuple[Match, ...]]


_UNKNOWN: Any = object()

#: A queued value: span index, where prefix, key, fixed direction, list index, its key plan.
_Ref = tuple[int, str, str, "str | None", int, _KeyPlan]
#: Matches found: span index, where, direction, list index, matches.
_Found = tuple[int, str, str, int, tuple[Match, ...]]


@dataclass(frozen=True, slots=True)
class Detection:
    """One sensitive value seen in a span, redacted.

    ``where`` is the attribute key (``url.full``, ``http.request.header.x-api-key``),
    ``event[2]:exception.message`` for an event attribute, ``resource:<key>`` for a
    resource attribute, or ``span.name`` / ``status.message``; ``start``/``end`` are
    character offsets in that value (``index`` the element of a list value).
    """

    type: str
    where: str
    direction: str
    masked: str
    hash: str
    start: int
    end: int
    score: float
    category: str
    index: int = -1

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "where": self.where,
            "direction": self.direction,
            "masked": self.masked,
            "hash": self.hash,
        }


def direction_of(key: str) -> str:
    """Which way a value of attribute ``key`` travelled."""
    if key in URL_KEYS or key in _REQUEST_KEYS or key.startswith("http.request."):
        return REQUEST
    if key in _RESPONSE_KEYS or key.startswith("http.response."):
        return RESPONSE
    low = key.lower()
    if "response" in low:
        return RESPONSE
    if "request" in low:
        return REQUEST
    return TELEMETRY


@lru_cache(maxsize=4096)
def _openapi_route(route: str) -> str:
    """``http.route`` in OpenAPI syntax (``/users/<int:id>`` -> ``/users/{id}``)."""
    return convert_route(route).route


def template_path(path: str) -> str:
    """A low-cardinality form of a URL path: identifier-like segments become ``{}``."""
    segs = path.split("?", 1)[0].split("/")
    return "/".join("{}" if s and _SEGMENT_ID.match(s) else s for s in segs)


def _route_matches(pattern: str, stored: str) -> bool:
    a = pattern.split("/")
    b = stored.split("/")
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y or y == "{}" or _PARAM.match(x):
            continue
        return False
    return True


class SensitiveFacts:
    """Which sensitive types each endpoint and edge carries, in which direction.

    The State part ``"sensitive"``. Keys hold route templates and host names only,
    never values.
    """

    def __init__(self) -> None:
        self.endpoints: dict[tuple[str, str, str], dict[str, set[str]]] = {}
        self.edges: dict[tuple[str, str], dict[str, set[str]]] = {}
        self.type_counts: dict[str, int] = {}

    def add_endpoint(self, key: tuple[str, str, str], typ: str, direction: str) -> None:
        d = self.endpoints.get(key)
        if d is None:
            if len(self.endpoints) >= _MAX_KEYS:
                return
            d = self.endpoints[key] = {}
        d.setdefault(typ, set()).add(direction)

    def add_edge(self, key: tuple[str, str], typ: str, direction: str) -> None:
        d = self.edges.get(key)
        if d is None:
            if len(self.edges) >= _MAX_KEYS:
                return
            d = self.edges[key] = {}
        d.setdefault(typ, set()).add(direction)

    def types_for(self, service: str, method: str, route: str) -> dict[str, list[str]]:
        """Sensitive types seen on an endpoint: ``{type: [directions]}``.

        ``route`` may be the inventory's template (``/users/{id}``, ``/users/:id``);
        paths recorded without a route template match it segment by segment.
        """
        out: dict[str, set[str]] = {}
        exact = self.endpoints.get((service, method, route))
        items: Iterable[tuple[tuple[str, str, str], dict[str, set[str]]]]
        if exact is not None:
            items = [((service, method, route), exact)]
        else:
            items = [
                (k, v)
                for k, v in self.endpoints.items()
                if k[0] == service and (k[1] == method or not k[1] or not method)
                and _route_matches(route, k[2])
            ]
        for _k, v in items:
            for t, dirs in v.items():
                out.setdefault(t, set()).update(dirs)
        return {t: sorted(d) for t, d in sorted(out.items())}

    def edge_types(self, client: str, server: str) -> dict[str, list[str]]:
        """Sensitive types sent or received by ``client`` over its calls to ``server``."""
        v = self.edges.get((client, server)) or {}
        return {t: sorted(d) for t, d in sorted(v.items())}

    def request_types(self, key: tuple[str, str, str]) -> set[str]:
        v = self.endpoints.get(key) or {}
        return {t for t, d in v.items() if REQUEST in d}

    def snapshot(self) -> Any:
        return {
            "endpoints": [[list(k), {t: sorted(d) for t, d in v.items()}] for k, v in self.endpoints.items()],
            "edges": [[list(k), {t: sorted(d) for t, d in v.items()}] for k, v in self.edges.items()],
            "type_counts": dict(self.type_counts),
        }

    def restore(self, data: Any) -> None:
        for k, v in data.get("endpoints", []):
            self.endpoints[(str(k[0]), str(k[1]), str(k[2]))] = {t: set(d) for t, d in v.items()}
        for k, v in data.get("edges", []):
            self.edges[(str(k[0]), str(k[1]))] = {t: set(d) for t, d in v.items()}
        self.type_counts.update({str(k): int(v) for k, v in data.get("type_counts", {}).items()})


class HostClassifier:
    """Tells internal hosts from external ones using ``internal_domains``/``internal_cidrs``."""

    def __init__(self, domains: Sequence[str], cidrs: Sequence[str]) -> None:
        self.domains = tuple(d.lower() for d in domains)
        self.nets = []
        for c in cidrs:
            try:
                self.nets.append(ipaddress.ip_network(c, strict=False))
            except ValueError:
                continue
        self._cache: dict[str, bool] = {}

    def is_external(self, host: str) -> bool:
        h = host.strip().lower().strip("[]").rstrip(".")
        if not h:
            return False
        hit = self._cache.get(h)
        if hit is not None:
            return hit
        try:
            ip = ipaddress.ip_address(h)
        except ValueError:
            ext = "." in h and not any(
                h == d.lstrip(".") or h.endswith(d if d.startswith(".") else "." + d) or h == d
                for d in self.domains
            )
        else:
            if self.nets:
                # The configured internal networks decide, as in the call graph: an address
                # outside them is external even when it is not globally routable.
                ext = not (ip.is_unspecified or any(ip in n for n in self.nets if n.version == ip.version))
            else:
                ext = ip.is_global
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[h] = ext
        return ext


def _severity_for(types: Iterable[str], categories: Iterable[str], base: Severity) -> Severity:
    cats = set(categories)
    if cats & {FINANCIAL, HEALTH, CREDENTIAL} or set(types) & _NATIONAL_IDS:
        return max(base, Severity.HIGH)
    return base


class SensitiveDataEnricher(Enricher):
    """Scans every span for sensitive values. See the module docstring."""

    name = "sensitive"

    def __init__(self, config: Config | None = None) -> None:
        section: Mapping[str, Any] = config.section("sensitive") if config is not None else {}
        self.enabled = bool(section.get("enabled", True))
        self.threshold = float(section.get("threshold", THRESHOLD))
        self.scan_resource = bool(section.get("scan_resource", True))
        ignore = section.get("ignore_types") or ()
        self.ignore_types = frozenset(str(t).upper() for t in ignore)
        from agent.config import internal_hosts

        self.hosts = HostClassifier(*internal_hosts(config))
        self.scanner: SensitiveDataScanner | None = None
        self._resource_cache: dict[int, tuple[Resource, tuple[Detection, ...]]] = {}
        self._plans: dict[str, _KeyPlan | None] = {}
        self._shapes: dict[tuple[str, ...], tuple[tuple[int, str, _KeyPlan, bool], ...]] = {}
        self._cached = 0
        self.spans_scanned = 0
        self.values_scanned = 0

    # ------------------------------------------------------------- scanning
    def _scanner(self, state: State) -> SensitiveDataScanner:
        if self.scanner is None:
            self.scanner = SensitiveDataScanner(state.secret, threshold=self.threshold)
        return self.scanner

    def _emit(
        self, out: list[Detection], matches: Sequence[Match], where: str, direction: str, index: int = -1
    ) -> None:
        ignore = self.ignore_types
        for m in matches:
            if m.type in ignore:
                continue
            out.append(
                Detection(m.type, where, direction, m.masked, m.hash, m.start, m.end, m.score,
                          m.category, index)
            )

    def _key_plan(self, key: str) -> _KeyPlan | None:
        """How values of attribute ``key`` are scanned; ``None``: never (a protocol fact)."""
        if key in self._plans:
            return self._plans[key]
        plan: _KeyPlan | None = None
        if key not in SKIP_KEYS:
            plan = _KeyPlan(key in ADDRESS_KEYS, {})
        if len(self._plans) > _MAX_KEYS:
            self._plans.clear()
            self._shapes.clear()
            self._cached = 0
        self._plans[key] = plan
        return plan

    def _shape(self, keys: tuple[str, ...]) -> tuple[tuple[int, str, _KeyPlan, bool], ...]:
        """The keys worth a look of attributes with that key sequence: position, key, plan,
        and whether it holds a network address."""
        out = []
        for i, k in enumerate(keys):
            plan = self._plans.get(k, _UNKNOWN)
            if plan is _UNKNOWN:
                plan = self._key_plan(k)
            if plan is not None:
                out.append((i, k, plan, plan.address))
        if len(self._shapes) >= _MAX_SHAPES:
            self._shapes.clear()
        shape = self._shapes[keys] = tuple(out)
        return shape

    def _gather(
        self, attrs: Mapping[str, Any], si: int, prefix: str, fixed_dir: str | None,
        todo: list[tuple[str, str]], refs: list[_Ref], found: list[_Found],
    ) -> None:
        """Queue the string values of ``attrs`` not seen before; results of known ones go to ``found``.

        ``si`` is the span's index in the batch (-1 for a resource). Strings in lists and in
        maps (under their key path, ``user.profile.email``) count, and so do large integers.
        """
        # Spans of one instrumentation share their attributes' key sequence: one lookup of
        # it (a C-level tuple build and hash) gives the keys worth a look and their plans,
        # instead of a plan lookup per key, most of them protocol facts (SKIP_KEYS).
        keys = tuple(attrs)
        scan = self._shapes.get(keys)
        if scan is None:
            scan = self._shape(keys)
        values = tuple(attrs.values())  # (by position: cheaper than a lookup by key)
        for i, k, plan, address in scan:
            v = values[i]
            tv = type(v)
            if tv is str:
                if len(v) < 3:
                    continue
                if address and _PRIVATE_IP.match(v):
                    # A private peer/client address: only an informational type, never a
                    # finding, and one per span — not worth a scan. Checked before the cache
                    # (and not cached): these values rarely repeat, and a miss in a large
                    # cache costs more than the match.
                    continue
                hit = plan.cache.get(v)
                if hit is not None:
                    if hit:
                        found.append((si, prefix + k, fixed_dir or direction_of(k), -1, hit))
                    continue
                todo.append((v, k))
                refs.append((si, prefix, k, fixed_dir, -1, plan))
            elif tv is int:
                # Most integers are small (ports, sizes, status codes): one compare skips them.
                # A large one is scanned as its decimal text, like a string of that key.
                # The bound is MIN_SCANNED_INT written out: a literal costs nothing here, while
                # loading the global (or setting up locals per call) measurably slows the loop.
                if -100_000 < v < 100_000:
                    continue
                self._gather({k: str(v)}, si, prefix, fixed_dir, todo, refs, found)
            elif tv is list or tv is tuple:
                for j, item in enumerate(v):
                    if type(item) is str:
                        if len(item) >= 3:
                            todo.append((item, k))
                            refs.append((si, prefix, k, fixed_dir, j, plan))
                    elif type(item) is int and not -100_000 < item < 100_000:  # MIN_SCANNED_INT
                        todo.append((str(item), k))
                        refs.append((si, prefix, k, fixed_dir, j, plan))
            elif tv is dict:
                # A map (an OTLP kvlist): its values are scanned under their key path, which is
                # their context key too (``user.profile.password``) and what redaction follows.
                self._gather({f"{k}.{sk}": sv for sk, sv in v.items()}, si, prefix, fixed_dir, todo, refs, found)

    def _run(self, todo: list[tuple[str, str]], refs: list[_Ref], found: list[_Found], state: State) -> None:
        """Scan the queued values in one prefilter call and remember their results per key."""
        if not todo:
            return
        results = self._scanner(state).scan_many(todo, cache=False)
        self.values_scanned += len(todo)
        if self._cached + len(todo) > _MAX_CACHED:
            for plan in self._plans.values():
                if plan is not None:
                    plan.cache.clear()
            self._cached = 0
        for (v, _k), (si, prefix, k, fixed_dir, idx, plan), ms in zip(todo, refs, results, strict=True):
            if idx < 0 and len(v) <= _MAX_CACHED_LEN:
                plan.cache[v] = ms
                self._cached += 1
            if ms:
                found.append((si, prefix + k, fixed_dir or direction_of(k), idx, ms))

    def _collect_found(self, found: list[_Found], n: int) -> list[list[Detection] | None]:
        per: list[list[Detection] | None] = [None] * n
        for si, where, direction, idx, ms in found:
            out = per[si]
            if out is None:
                out = per[si] = []
            self._emit(out, ms, where, direction, idx)
        return per

    def scan_span(self, span: Span, state: State) -> list[Detection]:
        """Every detection in one span, its events and its resource."""
        return self.scan_batch([span], state)[0] or []

    def scan_batch(self, batch: Sequence[Span], state: State) -> list[list[Detection] | None]:
        """Detections per span of ``batch`` (``None``: none), with one prefilter call for the batch."""
        return self._scan_batch(batch, state)[0]

    def _scan_batch(self, batch: Sequence[Span], state: State) -> tuple[list[list[Detection] | None], list[int]]:
        """:meth:`scan_batch`, and the indices of the spans with a detection, in order."""
        todo: list[tuple[str, str]] = []
        refs: list[_Ref] = []
        found: list[_Found] = []
        gather = self._gather
        scan_resource = self.scan_resource
        # Spans of one resource come together: its (cached) detections are looked up once
        # per run of spans, and only spans of a resource with some are remembered.
        last_res: Resource | None = None
        res_dets: tuple[Detection, ...] = ()
        with_res: list[tuple[int, tuple[Detection, ...]]] = []
        names = self._key_plan("span.name")
        assert names is not None
        name_cache = names.cache
        for si, span in enumerate(batch):
            gather(span.attributes, si, "", None, todo, refs, found)
            name = span.name
            if len(name) >= 7:
                hit = name_cache.get(name)
                if hit is None:
                    todo.append((name, "span.name"))
                    refs.append((si, "", "span.name", REQUEST if span.http is not None else TELEMETRY, -1, names))
                elif hit:
                    found.append((si, "span.name", REQUEST if span.http is not None else TELEMETRY, -1, hit))
            if span.status_message:
                gather({"status.message": span.status_message}, si, "", TELEMETRY, todo, refs, found)
            if span.events:
                for i, ev in enumerate(span.events):
                    if ev.attributes:
                        gather(ev.attributes, si, f"event[{i}]:", TELEMETRY, todo, refs, found)
            if scan_resource:
                res = span.resource
                if res is not last_res:
                    last_res = res
                    res_dets = self._resource(res, state)
                if res_dets:
                    with_res.append((si, res_dets))
        self._run(todo, refs, found, state)
        per = self._collect_found(found, len(batch))
        for si, dets in with_res:
            out = per[si]
            if out is None:
                out = per[si] = []
            out.extend(dets)
        hit_spans = sorted({f[0] for f in found}.union(si for si, _d in with_res)) if found or with_res else []
        return per, hit_spans

    def _resource(self, res: Resource, state: State) -> tuple[Detection, ...]:
        hit = self._resource_cache.get(id(res))
        if hit is not None and hit[0] is res:
            return hit[1]
        todo: list[tuple[str, str]] = []
        refs: list[_Ref] = []
        found: list[_Found] = []
        self._gather(res.attributes, 0, "resource:", TELEMETRY, todo, refs, found)
        self._run(todo, refs, found, state)
        found_t = tuple(self._collect_found(found, 1)[0] or ())
        if len(self._resource_cache) > 4096:
            self._resource_cache.clear()
        self._resource_cache[id(res)] = (res, found_t)
        return found_t

    # ------------------------------------------------------------- the batch
    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        if not self.enabled:
            return ()
        facts: SensitiveFacts = state.part("sensitive", SensitiveFacts)
        published = state.batch.sensitive
        agg: dict[tuple[str, Subject], _Agg] = {}
        per, hit_spans = self._scan_batch(batch, state)
        self.spans_scanned += len(batch)
        # later enrichers see spans without the values found in paths, names, destinations
        replace = batch.__setitem__ if isinstance(batch, list) else None
        for i in hit_spans:
            dets = per[i]
            if not dets:
                continue
            span = batch[i]
            published[span.span_id] = dets
            self._facts_and_findings(span, dets, facts, agg)
            if replace is not None:
                clean = sanitized(span, dets)
                if clean is not None:
                    replace(i, clean)
        return [a.finding() for a in agg.values()]

    def _facts_and_findings(
        self, span: Span, dets: list[Detection], facts: SensitiveFacts, agg: dict[tuple[str, Subject], _Agg]
    ) -> None:
        http = span.http
        service = span.service
        for d in dets:
            facts.type_counts[d.type] = facts.type_counts.get(d.type, 0) + 1
        reportable = [d for d in dets if d.type not in _INFO_TYPES]
        if not reportable:
            return
        kind = span.kind
        # --- where the facts go: endpoint (server side) or edge (client side)
        server_host = ""
        # The callee's network address, the only thing judged internal or external: never
        # a topic, a queue or a database system name (``orders.created`` is no host).
        net_host = ""
        ep_key: tuple[str, str, str] | None = None
        if kind == SpanKind.CLIENT or kind == SpanKind.PRODUCER:
            if http is not None:
                server_host = http.peer_service or http.server_address
                net_host = http.server_address or http.network_peer_address
            elif span.db is not None:
                server_host = span.db.server_address or span.db.system
                net_host = span.db.server_address or _peer_address(span)
            elif span.messaging is not None:
                server_host = span.messaging.destination
                net_host = _peer_address(span)
        elif http is not None:
            # The framework's route in OpenAPI syntax, as the inventory names the endpoint;
            # without one, the template the inventory gives the raw path (see _server_route).
            route = _openapi_route(http.route) if http.route else _server_route(span, http.path or "/", dets)
            ep_key = (service, http.method, route)
        elif span.rpc is not None:
            ep_key = (service, "", f"{span.rpc.service}/{span.rpc.method}")
        traffic = [d for d in reportable if d.direction != TELEMETRY]
        for d in traffic:
            if ep_key is not None:
                facts.add_endpoint(ep_key, d.type, d.direction)
            if server_host:
                facts.add_edge((service, server_host), d.type, d.direction)
        if ep_key is not None:
            subject = Subject(service=service, method=ep_key[1], route=ep_key[2])
        elif server_host:
            subject = Subject(client=service, server=server_host, host=server_host)
        else:
            name = replace_values(span.name, [d for d in dets if d.where == "span.name"], _empty_param)
            subject = Subject(service=service, detail=name[:80] if http is None else "")
        # --- secrets / personal data in URLs
        in_url = [d for d in reportable if d.where in URL_KEYS or d.where == "span.name" and http is not None]
        if in_url:
            secrets = [d for d in in_url if d.category == CREDENTIAL]
            pii = [d for d in in_url if d.category != CREDENTIAL]
            if secrets:
                _add(agg, "sensitive.secret_in_url", subject, span, secrets, Severity.HIGH,
                     "Secret in a URL", "API8:2023",
                     "Credentials in URLs end up in every proxy, access log and browser history.",
                     "Send credentials in an Authorization header or the request body, and rotate the leaked ones.")
            if pii:
                _add(agg, "sensitive.pii_in_url", subject, span, pii,
                     _severity_for((d.type for d in pii), (d.category for d in pii), Severity.MEDIUM),
                     "Sensitive data in a URL", "API8:2023",
                     "Personal or financial data in URLs and query strings is written to every proxy and access log.",
                     "Move the value into the request body (POST) or use an opaque identifier.")
        # --- credentials in telemetry itself (not those already reported in the URL)
        creds = [d for d in reportable if d.category == CREDENTIAL and d.where not in URL_KEYS]
        if creds:
            _add(agg, "sensitive.credential_in_telemetry", Subject(service=service, detail="telemetry"),
                 span, creds, Severity.HIGH, "Credentials recorded in telemetry", "API8:2023",
                 "Span attributes, captured headers or exception messages carry credentials, so every "
                 "tracing backend and everyone with access to it holds them.",
                 "Stop capturing these headers/attributes (or redact them in the SDK or Collector) and "
                 "rotate the exposed credentials.")
        # --- sensitive data to an external host
        if server_host and net_host and self.hosts.is_external(net_host):
            sent = [
                d for d in traffic
                if d.direction == REQUEST and d.category not in (CREDENTIAL, NETWORK)
            ]
            if sent:
                _add(agg, "sensitive.external_transfer", subject, span, sent,
                     _severity_for((d.type for d in sent), (d.category for d in sent), Severity.MEDIUM),
                     "Sensitive data sent to an external host", None,
                     f"{service} sends sensitive data to {server_host}"
                     f"{f' ({net_host})' if net_host != server_host else ''}, outside the internal domains "
                     "and networks: an exfiltration risk and a third-party transfer to account for.",
                     "Confirm the transfer is intended and covered by a data-processing agreement; "
                     "send tokens or masked values instead.")
        # --- sensitive data over plaintext HTTP
        if http is not None and traffic and tls_evidence(span) is False:
            host = http.server_address
            loop = host in ("localhost", "127.0.0.1", "::1")
            if not loop:
                _add(agg, "sensitive.plaintext_http", subject, span, traffic,
                     _severity_for((d.type for d in traffic), (d.category for d in traffic), Severity.MEDIUM),
                     "Sensitive data over plaintext HTTP", "API8:2023",
                     "Sensitive values cross the network unencrypted (http://), readable by anyone on the path.",
                     "Serve and call this API over TLS (https, or mTLS inside the mesh).")
        # --- excessive data exposure: response types the callers never sent (not in error
        # answers: a value in a 5xx body is an error disclosure, reported by its own rules)
        if ep_key is not None and not (http is not None and http.status_code >= 500):
            route = ep_key[2]
            resp = [d for d in traffic if d.direction == RESPONSE and not _issued_credential(d, route)]
            if resp:
                sent_types = facts.request_types(ep_key)
                extra = [d for d in resp if d.type not in sent_types]
                if extra:
                    _add(agg, "sensitive.excessive_exposure", subject, span, extra,
                         _severity_for((d.type for d in extra), (d.category for d in extra), Severity.MEDIUM),
                         "Excessive data exposure", "API3:2023",
                         "Responses of this endpoint return sensitive types its callers never sent; "
                         "the API may return whole objects and rely on clients to filter them.",
                         "Return only the fields the client needs (response schemas / DTOs), masking the rest.")


def _path_without(span: Span, path: str, dets: Sequence[Detection]) -> str:
    """The request path with detected values replaced by ``{}`` (a route must hold none).

    Offsets are in the attribute the path came from (``url.path`` or ``http.target``).
    """
    for key in ("url.path", "http.target"):
        in_path = [d for d in dets if d.where == key]
        raw = span.attributes.get(key)
        if in_path and isinstance(raw, str):
            return replace_values(raw, in_path, _empty_param)
    return path


#: Routes whose responses issue credentials (log-in, token and session endpoints).
_ISSUING_ROUTE = re.compile(
    r"(?i)/(?:log-?in|log-?on|sign-?in|sign-?up|register|o?auth2?|auth(?:[nz]|enticat(?:e|ion)|ori[sz]e)"
    r"|tokens?|sessions?"
    r"|refresh|sso|saml2?|openid[\w-]*|api-?keys?|credentials?)(?=/|\.|\Z)"
)


def _issued_credential(d: Detection, route: str) -> bool:
    """Whether ``d`` is a credential a response issues on purpose: a Set-Cookie header,
    or any response field of a log-in/token endpoint. Not excessive data exposure
    (issuing it is the point of that response); personal, financial and health data
    in the same responses still are."""
    if d.category != CREDENTIAL:
        return False
    return d.where.endswith("header.set-cookie") or _ISSUING_ROUTE.search(route) is not None


def _peer_address(span: Span) -> str:
    """The network address a client span of a database or broker talked to, if recorded."""
    a = span.attributes
    v = a.get("server.address") or a.get("net.peer.name") or a.get("network.peer.address") or a.get("net.peer.ip")
    return v if isinstance(v, str) else ""


def _server_route(span: Span, path: str, dets: Sequence[Detection]) -> str:
    """The route of a server span without ``http.route``, as the inventory names it.

    The inventory templates raw paths after this stage has run (its endpoint for the
    span is published in ``state.batch.endpoints`` only then, and enrichers have no
    step after the batch), so this asks the inventory's own templater what it makes
    of the path on first sight: ``/users/{email}/cards/{id}``. It differs from the
    inventory's only where the inventory learned something since (a literal position
    collapsed after many values, a spec pin). A segment left literal that holds a
    detected value becomes ``{}``: a route never holds one. A 404 is templated without
    learning, as the inventory does (probes must not make literals).
    """
    learn = span.http is None or span.http.status_code != 404
    route = PathTemplater().template(span.service, path.split("?", 1)[0], learn=learn).route
    values = _detected_url_values(span, dets)
    if values and any(v in route for v in values):
        route = "/".join("{}" if any(v in seg for v in values) else seg for seg in route.split("/"))
        if any(v in route for v in values):  # (a value across segments)
            return template_path(_path_without(span, path, dets))
    return route


def _detected_url_values(span: Span, dets: Sequence[Detection]) -> list[str]:
    """The raw values detected in the span's URL attributes and name (to keep them out of a route)."""
    out = []
    for d in dets:
        if d.where in URL_KEYS or d.where == "span.name":
            raw = span.name if d.where == "span.name" else span.attributes.get(d.where)
            if isinstance(raw, str) and 0 <= d.start < d.end <= len(raw):
                out.append(raw[d.start : d.end])
    return out


def _empty_param(_d: Detection) -> str:
    """What a detected value becomes in a finding's route or name: an unnamed parameter."""
    return "{}"


_COMPLIANCE_BY_TYPE: dict[str, tuple[str, ...]] = {}


def _compliance(types: Iterable[str]) -> tuple[str, ...]:
    if not _COMPLIANCE_BY_TYPE:
        from enrichers.sensitive.recognizers import ALL

        for cls in ALL:
            _COMPLIANCE_BY_TYPE.setdefault(cls.ENTITY, cls.COMPLIANCE)
    out: set[str] = set()
    for t in types:
        out.update(_COMPLIANCE_BY_TYPE.get(t, ()))
    return tuple(sorted(out))


class _Agg:
    """Observations of one (rule, subject) within a batch, merged into one finding."""

    __slots__ = ("rule", "subject", "title", "owasp", "severity", "explanation", "remediation",
                 "count", "first", "last", "types", "where", "masked", "hashes", "trace_ids", "span_ids")

    def __init__(self, rule: str, subject: Subject, title: str, owasp: str | None, severity: Severity,
                 explanation: str, remediation: str) -> None:
        self.rule, self.subject, self.title, self.owasp = rule, subject, title, owasp
        self.severity, self.explanation, self.remediation = severity, explanation, remediation
        self.count = 0
        self.first = 0
        self.last = 0
        self.types: dict[str, int] = {}
        self.where: dict[str, None] = {}
        self.masked: dict[str, None] = {}
        self.hashes: dict[str, None] = {}
        self.trace_ids: dict[str, None] = {}
        self.span_ids: dict[str, None] = {}

    def finding(self) -> Finding:
        return Finding(
            rule=self.rule,
            title=self.title,
            severity=self.severity,
            subject=self.subject,
            first_seen_ns=self.first,
            last_seen_ns=self.last,
            count=self.count,
            owasp=self.owasp,
            confidence=0.9,
            explanation=self.explanation,
            remediation=self.remediation,
            evidence={
                "types": dict(sorted(self.types.items())),
                "locations": list(self.where)[:10],
                "masked": list(self.masked)[:5],
                "hashes": list(self.hashes)[:5],
            },
            trace_ids=tuple(self.trace_ids)[:10],
            span_ids=tuple(self.span_ids)[:10],
            compliance=_compliance(self.types),
            category="sensitive-data",
        )


def _add(
    agg: dict[tuple[str, Subject], _Agg], rule: str, subject: Subject, span: Span, dets: Sequence[Detection],
    severity: Severity, title: str, owasp: str | None, explanation: str, remediation: str,
) -> None:
    a = agg.get((rule, subject))
    if a is None:
        a = agg[(rule, subject)] = _Agg(rule, subject, title, owasp, severity, explanation, remediation)
    a.severity = max(a.severity, severity)
    a.count += 1
    a.first = span.start_ns if not a.first else min(a.first, span.start_ns)
    a.last = max(a.last, span.end_ns)
    for d in dets:
        a.types[d.type] = a.types.get(d.type, 0) + 1
        a.where[d.where] = None
        if len(a.masked) < 5:
            a.masked[d.masked] = None
        if len(a.hashes) < 5:
            a.hashes[f"{d.type}:{d.hash}"] = None
    if len(a.trace_ids) < 10:
        a.trace_ids[span.trace_id] = None
        a.span_ids[span.span_id] = None
