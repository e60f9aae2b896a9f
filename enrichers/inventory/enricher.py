"""The API inventory: every (service, method, route template) the traffic shows.

:class:`InventoryEnricher` runs before the call graph. For every HTTP or RPC
span it computes the :class:`~agent.model.Endpoint` and publishes it in
``state.batch.endpoints[span_id]``; server-side spans are also counted into the
State part ``"inventory"`` (:class:`InventoryPart`): calls, errors, status
codes, latency sketch, callers, auth schemes, query parameter names, content
types, first/last seen and a lifecycle (new, active, shadow, zombie, dormant,
revived; ``unused`` for documented operations never called).

Route templates come from ``http.route`` (converted to OpenAPI syntax; literal
segments that look like ids become typed parameters too) or, when there is none,
are inferred from ``url.path`` with bounded cardinality
(:class:`~enrichers.inventory.routes.PathTemplater`). The path parameters of a
framework route get the narrowest type (integer, number, uuid, date, email,
else string) that every sampled ``url.path`` value fitted
(:meth:`EndpointRecord.sample_params`: the first calls of an endpoint, then one
in :data:`PARAM_SAMPLE_EVERY`). Client spans get an
endpoint on the callee (named by ``peer.service`` or the host) so calls to
uninstrumented services carry one too; those are not part of the inventory.

Specs come from ``config.specs`` and the ``inventory`` section's ``specs``;
endpoints are matched to operations by shape. Findings: ``shadow_endpoint``
(served, not in the service's spec; API9:2023), ``zombie_endpoint`` (deprecated
in the spec, still called; with the callers) and ``undocumented_service``
(traffic but no spec; info). Shadow and zombie observations are gathered per
endpoint and emitted on the next tick (or batch), so the callers the call graph
adds in the same batch are in the evidence; a caller the call graph adds later
(its client span came in a later batch) re-emits the finding with count 0, so the
findings store merges the new callers into its evidence.

Settings (``config.section("inventory")``): ``max_distinct_per_segment`` (25),
``max_depth`` (12), ``max_nodes_per_service`` (2000), ``max_endpoints`` (20000),
``dormant_after_seconds`` (7 days), ``new_for_seconds`` (1 day), ``specs``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from math import ceil, log2
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from agent.model import (
    SOURCE_REPLAY,
    Endpoint,
    Finding,
    HttpView,
    Severity,
    Span,
    SpanKind,
    StatusCode,
    Subject,
    auth_evidence,
    ns_to_iso,
)
from enrichers.base import Enricher
from enrichers.inventory.routes import (
    PathTemplater,
    Template,
    canonical_path,
    convert_route,
    mask_type,
    normalize_method,
    split_path,
    value_mask,
)
from enrichers.inventory.specs import Operation, Spec, SpecError, load_spec
from enrichers.sketches import MULT, LatencySketch, sketch_dump, sketch_load

if TYPE_CHECKING:
    from agent.state import State

log = logging.getLogger("apiward.inventory")

PART = "inventory"
OWASP_INVENTORY = "API9:2023"
MAX_CALLERS = 50
MAX_SMALL_SET = 20
MAX_QUERY_NAMES = 50
MAX_TRACES = 10
#: Per-minute series kept per endpoint (latency p95, calls) for sparklines.
SERIES_MINUTES = 30
_MINUTE_NS = 60_000_000_000
_CACHE_MAX = 16_384
_NOT_SERVED = (404, 405)
_MISKINDS = (SpanKind.INTERNAL, SpanKind.UNSPECIFIED)
_DAY = 86_400
_ERROR = StatusCode.ERROR
#: Path-parameter types of framework routes are learnt from the first
#: PARAM_SAMPLES_FIRST calls of an endpoint, then from one call in PARAM_SAMPLE_EVERY
#: (a sample costs a path split; the other calls one compare), until only "string"
#: is left.
PARAM_SAMPLES_FIRST = 32
PARAM_SAMPLE_EVERY = 256


@dataclass(slots=True)
class EndpointRecord:
    """Mutable statistics of one endpoint (owned by :class:`InventoryPart`)."""

    service: str
    method: str
    route: str
    protocol: str = "http"
    inferred: bool = False
    params: dict[str, str] = field(default_factory=dict)
    calls: int = 0
    errors: int = 0
    status: dict[int, int] = field(default_factory=dict)
    sketch: LatencySketch = field(default_factory=LatencySketch)
    callers: dict[str, int] = field(default_factory=dict)
    auth: dict[str, int] = field(default_factory=dict)
    unauthenticated: int = 0
    query_params: set[str] = field(default_factory=set)
    request_types: set[str] = field(default_factory=set)
    response_types: set[str] = field(default_factory=set)
    first_ns: int = 0
    last_ns: int = 0
    served: bool = False
    revived_ns: int = 0
    documented: bool | None = None  # None: the service has no spec
    deprecated: bool = False
    operation: str = ""
    operation_id: str = ""
    traces: deque[str] = field(default_factory=lambda: deque(maxlen=MAX_TRACES))
    # observations not yet turned into findings
    pend_calls: int = 0
    pend_first: int = 0
    pend_last: int = 0
    pend_traces: list[str] = field(default_factory=list)
    pend_spans: list[str] = field(default_factory=list)
    # per-minute series (data time): finished minutes, and where this minute started
    series: deque[tuple[int, int, float | None]] = field(
        default_factory=lambda: deque(maxlen=SERIES_MINUTES)
    )
    minute: int = 0
    next_minute_ns: int = 0
    minute_calls: int = 0
    minute_sketch: LatencySketch | None = None
    #: per path parameter of a framework route, the value types (routes.value_mask
    #: flags) every sampled value fitted; ``None``: nothing to learn (no parameter,
    #: inferred template, RPC) or nothing narrower than a string is left
    ptypes: list[int] | None = None
    psamples: int = 0
    #: the call count at which the next sample is taken; 0: none (not persisted)
    pnext: int = 0
    #: (segment index, name, suffix) of each parameter of the route (derived)
    _pslots: tuple[tuple[int, str, str], ...] | None = None
    _ep: Endpoint | None = None

    @property
    def endpoint(self) -> Endpoint:
        """The record's :class:`Endpoint` (one shared object while the route holds)."""
        ep = self._ep
        if ep is None or ep.route != self.route:
            ep = self._ep = Endpoint(self.service, self.method, self.route)
        return ep

    def roll(self, minute: int) -> None:
        """Close the minutes before ``minute`` into :attr:`series` (data time)."""
        if minute <= self.minute:
            return
        if self.minute:
            calls = self.calls - self.minute_calls
            start = self.minute_sketch
            window = self.sketch.minus(start) if start is not None else self.sketch
            self.series.append((self.minute, calls, window.quantiles_ms((0.95,))[0]))
            gap = min(minute - self.minute - 1, SERIES_MINUTES)
            for i in range(gap, 0, -1):
                self.series.append((minute - i, 0, None))
        self.minute = minute
        self.next_minute_ns = (minute + 1) * _MINUTE_NS
        self.minute_calls = self.calls
        self.minute_sketch = self.sketch.copy()

    def series_view(self) -> dict[str, Any]:
        """Per-minute calls and p95 latency, oldest first; the last is the current minute."""
        rows = list(self.series)
        if self.minute:
            start = self.minute_sketch
            window = self.sketch.minus(start) if start is not None else self.sketch
            rows.append((self.minute, self.calls - self.minute_calls,
                         window.quantiles_ms((0.95,))[0]))
        rows = rows[-SERIES_MINUTES:]
        return {
            "series_interval_seconds": 60,
            "series_start": ns_to_iso(rows[0][0] * _MINUTE_NS) if rows else "",
            "rate_series": [r[1] for r in rows],
            "latency_p95_series": [r[2] for r in rows],
        }

    def merge(self, o: EndpointRecord) -> None:
        self.calls += o.calls
        self.errors += o.errors
        for code, n in o.status.items():
            self.status[code] = self.status.get(code, 0) + n
        self.sketch.merge(o.sketch)
        for who, n in o.callers.items():
            if who in self.callers or len(self.callers) < MAX_CALLERS:
                self.callers[who] = self.callers.get(who, 0) + n
        for scheme, n in o.auth.items():
            self.auth[scheme] = self.auth.get(scheme, 0) + n
        self.unauthenticated += o.unauthenticated
        _bounded_update(self.query_params, o.query_params, MAX_QUERY_NAMES)
        _bounded_update(self.request_types, o.request_types, MAX_SMALL_SET)
        _bounded_update(self.response_types, o.response_types, MAX_SMALL_SET)
        self.first_ns = min(x for x in (self.first_ns, o.first_ns) if x) if o.first_ns else self.first_ns
        self.last_ns = max(self.last_ns, o.last_ns)
        self.served = self.served or o.served
        if o.psamples and o.ptypes is not None and self.ptypes is not None:
            if len(o.ptypes) == len(self.ptypes):
                self.ptypes = [a & b for a, b in zip(self.ptypes, o.ptypes, strict=True)]
                self.psamples += o.psamples
        self.traces.extend(o.traces)
        if o.pend_calls:
            self.pend_first = min(x for x in (self.pend_first, o.pend_first) if x)
            self.pend_last = max(self.pend_last, o.pend_last)
            self.pend_calls += o.pend_calls
            self.pend_traces = (self.pend_traces + o.pend_traces)[:MAX_TRACES]
            self.pend_spans = (self.pend_spans + o.pend_spans)[:MAX_TRACES]

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service, "method": self.method, "route": self.route,
            "protocol": self.protocol, "inferred": self.inferred, "params": self.params,
            "calls": self.calls, "errors": self.errors,
            "status": {str(k): v for k, v in self.status.items()},
            "sketch": sketch_dump(self.sketch), "callers": self.callers, "auth": self.auth,
            "unauthenticated": self.unauthenticated, "query_params": sorted(self.query_params),
            "request_types": sorted(self.request_types),
            "response_types": sorted(self.response_types),
            "first_ns": self.first_ns, "last_ns": self.last_ns, "served": self.served,
            "revived_ns": self.revived_ns, "traces": list(self.traces),
            "ptypes": self.ptypes, "psamples": self.psamples,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EndpointRecord:
        r = cls(str(d["service"]), str(d["method"]), str(d["route"]))
        r.protocol = str(d.get("protocol") or "http")
        r.inferred = bool(d.get("inferred"))
        r.params = {str(k): str(v) for k, v in (d.get("params") or {}).items()}
        r.calls = int(d.get("calls") or 0)
        r.errors = int(d.get("errors") or 0)
        r.status = {int(k): int(v) for k, v in (d.get("status") or {}).items()}
        if d.get("sketch"):
            r.sketch = sketch_load(d["sketch"])
        r.callers = {str(k): int(v) for k, v in (d.get("callers") or {}).items()}
        r.auth = {str(k): int(v) for k, v in (d.get("auth") or {}).items()}
        r.unauthenticated = int(d.get("unauthenticated") or 0)
        r.query_params = set(d.get("query_params") or ())
        r.request_types = set(d.get("request_types") or ())
        r.response_types = set(d.get("response_types") or ())
        r.first_ns = int(d.get("first_ns") or 0)
        r.last_ns = int(d.get("last_ns") or 0)
        r.served = bool(d.get("served"))
        r.revived_ns = int(d.get("revived_ns") or 0)
        r.traces.extend(d.get("traces") or ())
        pt = d.get("ptypes")
        r.ptypes = [int(x) for x in pt] if isinstance(pt, list) else None
        r.psamples = int(d.get("psamples") or 0)
        if "ptypes" not in d and not r.inferred and r.protocol == "http":
            r.track_params()  # stored before parameter types were learnt
        elif r.ptypes and any(r.ptypes) and not r.inferred:
            r.pnext = r.calls + 1
        return r

    def track_params(self) -> None:
        """Start learning the types of the route's path parameters (framework routes)."""
        n = sum(1 for seg in split_path(self.route) if seg.startswith("{"))
        self.ptypes = [-1] * n if n else None
        self.pnext = self.calls + 1 if n else 0

    def sample_params(self, path: str) -> None:
        """Narrow each parameter's type flags by its value in ``path`` (``url.path``).

        The path is aligned on the route from the end (a mount prefix may precede
        the route); a literal that differs (a wildcard spanning segments) skips it.
        """
        masks = self.ptypes
        if masks is None:
            self.pnext = 0
            return
        calls = self.calls
        self.pnext = calls + (1 if self.psamples < PARAM_SAMPLES_FIRST else PARAM_SAMPLE_EVERY)
        if not path:
            return
        slots = self._pslots
        if slots is None:
            slots = _route_slots(self.route)
            if sum(1 for _i, lit, _s in slots[1:] if not lit) != len(masks):
                slots = ()
            self._pslots = slots
        if not slots:  # a route shape the values cannot be read from
            self.pnext = 0
            return
        psegs = split_path(path)
        off = len(psegs) - slots[0][0]
        if off < 0:
            return
        for i, lit, _suffix in slots[1:]:
            if lit and psegs[i + off] != lit:
                return
        left = 0
        j = 0
        for i, lit, suffix in slots[1:]:
            if lit:
                continue
            v = psegs[i + off]
            if suffix:
                if not v.endswith(suffix):
                    j += 1
                    continue
                v = v[: -len(suffix)]
            masks[j] &= value_mask(v)
            left |= masks[j]
            j += 1
        self.psamples += 1
        if not left:  # strings everywhere: nothing narrower to learn, stop sampling
            self.pnext = 0

    def param_types(self) -> dict[str, str]:
        """Type of each path parameter: the framework's when it says more than
        "string", else the narrowest type all sampled values fitted."""
        out = dict(self.params)
        masks = self.ptypes
        if masks is None or not self.psamples:
            return out
        names = [seg[1 : seg.find("}")] for seg in split_path(self.route) if seg.startswith("{")]
        for name, m in zip(names, masks, strict=False):
            if m != -1 and out.get(name, "string") == "string":
                out[name] = mask_type(m)
        return out


def _route_slots(route: str) -> tuple[tuple[int, str, str], ...]:
    """How to read a route's parameters from a path: first ``(number of segments,
    "", "")``, then per segment ``(index, literal, "")`` or ``(index, "", suffix)``
    for a parameter (``{id}.json`` has the suffix ``.json``). Only literals and
    whole-segment parameters; a route with another shape gives ``()``."""
    segs = split_path(route)
    out: list[tuple[int, str, str]] = [(len(segs), "", "")]
    for i, seg in enumerate(segs):
        if seg.startswith("{"):
            close = seg.find("}")
            suffix = seg[close + 1 :]
            if "{" in suffix:
                return ()
            out.append((i, "", suffix))
        elif "{" in seg:
            return ()
        else:
            out.append((i, seg, ""))
    return tuple(out)


def _flagged(rec: EndpointRecord) -> bool:
    """Whether ``rec``'s calls make a finding: zombie (deprecated) or shadow."""
    return rec.deprecated or (rec.documented is False and rec.served)


def _bounded_update(dst: set[str], src: Iterable[str], cap: int) -> None:
    for x in src:
        if len(dst) >= cap:
            return
        dst.add(x)


def _observe_message(rec: EndpointRecord, http: HttpView) -> None:
    """The query parameter names and content types of one request/response."""
    q = http.query
    if q and len(rec.query_params) < MAX_QUERY_NAMES:
        encoded = "%" in q or "+" in q  # names are decoded (a%20b is "a b"); most need not be
        for pair in q.split("&"):
            name = pair.partition("=")[0]
            if encoded:
                name = unquote_plus(name)
            name = name[:64]
            if name and len(rec.query_params) < MAX_QUERY_NAMES:
                rec.query_params.add(name)
    h = http.request_headers
    if h:
        ct = h.get("content-type")
        if ct and len(rec.request_types) < MAX_SMALL_SET:
            rec.request_types.add(ct.partition(";")[0].strip().lower()[:100])
    h = http.response_headers
    if h:
        ct = h.get("content-type")
        if ct and len(rec.response_types) < MAX_SMALL_SET:
            rec.response_types.add(ct.partition(";")[0].strip().lower()[:100])


Key = tuple[str, str, str]


class InventoryPart:
    """The inventory in State (part ``"inventory"``). See the module docstring.

    Readers: :meth:`report` (list of endpoint dicts), :meth:`endpoint` (one
    endpoint with details: the report row plus ``callers`` as ``[{client,
    calls}]``, ``trace_ids``, ``params``, and per-minute ``rate_series`` and
    ``latency_p95_series`` of the last :data:`SERIES_MINUTES` minutes, oldest
    first, ``None`` for a minute without calls), :meth:`records_for` (for OpenAPI
    reconstruction),
    ``spec_errors`` (one message per spec that could not be used). Writers other
    than the inventory enricher: the call graph calls :meth:`record_caller`.
    """

    def __init__(self, settings: dict[str, Any] | None = None, state: State | None = None) -> None:
        s = settings or {}
        self.templater = PathTemplater(
            max_distinct=int(s.get("max_distinct_per_segment", 25)),
            max_depth=int(s.get("max_depth", 12)),
            max_nodes=int(s.get("max_nodes_per_service", 2_000)),
        )
        self.outbound = PathTemplater(
            max_distinct=int(s.get("max_distinct_per_segment", 25)),
            max_depth=int(s.get("max_depth", 12)),
            max_nodes=int(s.get("max_nodes_per_service", 2_000)) // 4,
            max_services=500,
        )
        self.max_endpoints = int(s.get("max_endpoints", 20_000))
        self.dormant_after_ns = int(float(s.get("dormant_after_seconds", 7 * _DAY)) * 1e9)
        self.new_for_ns = int(float(s.get("new_for_seconds", _DAY)) * 1e9)
        self.records: dict[Key, EndpointRecord] = {}
        self.specs: dict[str, Spec] = {}
        self.spec_errors: list[str] = []
        self.flagged_services: set[str] = set()
        self.data_clock_ns = 0
        self.live = False
        self.data_wall_ns = 0
        self.overflow = 0
        self.state = state
        self._route_cache: dict[str, Template] = {}
        #: (service, method, route or raw path) -> record; emptied when records move
        self._rec_cache: dict[tuple[Any, ...], EndpointRecord] = {}
        #: (callee, method, raw path) -> Endpoint of client spans
        self._client_cache: dict[tuple[str, str, str], Endpoint] = {}
        #: shadow/zombie records that gained a caller after their finding went out
        #: (the call graph pairs a client span after the inventory counted its
        #: server span): their finding is emitted again, count 0, with the callers
        self._new_callers: set[Key] = set()

    # ------------------------------------------------------------------ specs
    def set_specs(self, specs: dict[str, Spec], errors: list[str]) -> None:
        self.specs = specs
        self.spec_errors = list(errors)
        self._rec_cache.clear()
        self._client_cache.clear()
        for svc, spec in specs.items():
            for op in spec.operations:
                for prefix in spec.prefixes:
                    self.templater.pin(svc, (*prefix, *op.shape))
        for rec in self.records.values():
            self._match(rec)

    def _match(self, rec: EndpointRecord) -> None:
        spec = self.specs.get(rec.service)
        if spec is None or rec.protocol != "http":
            rec.documented, rec.deprecated, rec.operation, rec.operation_id = None, False, "", ""
            return
        op: Operation | None = spec.match(rec.method, rec.route)
        if op is None and rec.method == "OPTIONS" and spec.has_path(rec.route):
            rec.documented, rec.deprecated, rec.operation = True, False, ""
            return
        rec.documented = op is not None
        rec.deprecated = bool(op and op.deprecated)
        rec.operation = op.key if op else ""
        rec.operation_id = op.operation_id if op else ""

    # ------------------------------------------------------------------ clock
    def now_ns(self) -> int:
        """The data's own clock (latest span end), advanced by the wall time elapsed
        since the last live span: replays are judged by their own time, live traffic
        that stops still turns dormant."""
        if self.live and self.data_wall_ns:
            return self.data_clock_ns + max(0, time.time_ns() - self.data_wall_ns)
        return self.data_clock_ns

    # ------------------------------------------------------------------ endpoints
    def server_template(self, span: Span) -> tuple[str, Template] | None:
        """(method, template) of a server-side HTTP/RPC span, or ``None``."""
        rpc = span.rpc
        if rpc is not None and rpc.service:
            return "POST", Template(f"/{rpc.service}/{rpc.method or '{method}'}")
        http = span.http
        if http is None:
            return None
        method = normalize_method(http.method or "GET")
        if http.route:
            if self.templater.pins_digits(span.service):  # keep its digit literals (rare)
                return method, convert_route(http.route, template_ids=False)
            t = self._route_cache.get(http.route)
            if t is None:
                if len(self._route_cache) > 10_000:
                    self._route_cache.clear()
                t = convert_route(http.route)
                self._route_cache[http.route] = t
            return method, t
        if http.path:
            if http.status_code == 404:
                return method, self.templater.template(span.service, http.path, learn=False)
            return method, self.templater.template(span.service, http.path)
        return None

    def record_for(self, span: Span) -> EndpointRecord | None:
        """The record a server-side span counts into, or ``None``.

        Cached per (service, method, ``http.route`` or raw path; RPC service and
        method) in a bounded dict, so a span of a known endpoint costs one lookup.
        The cache is emptied whenever records move (collapse, restore). Raw paths
        are keyed by :func:`canonical_path`; those of 404s are not cached: they
        never teach the templater, so their template follows what it learns later.
        """
        http = span.http
        rpc = span.rpc
        svc = span.resource.service_name
        ck: tuple[Any, ...] | None
        if rpc is not None and rpc.service:
            ck = (svc, rpc.system, rpc.service, rpc.method, 1)
        elif http is None:
            return None
        elif http.route:
            ck = (svc, http.method, http.route)
        elif http.path and http.status_code != 404:
            path = http.path
            if not self.templater.pins_digits(svc):
                path = canonical_path(path)  # /users/1, /users/2: one entry
            ck = (svc, http.method, path, 0)
        else:
            ck = None
        cache = self._rec_cache
        if ck is not None:
            rec = cache.get(ck)
            if rec is not None:
                return rec
        mt = self.server_template(span)
        if mt is None:
            return None
        rec = self._record(span, mt[0], mt[1])
        if ck is not None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[ck] = rec
        return rec

    def client_endpoint(self, span: Span) -> Endpoint | None:
        """Endpoint on the callee of a client span (not recorded in the inventory)."""
        rpc = span.rpc
        http = span.http
        callee = ""
        if http is not None:
            callee = http.peer_service or http.server_address or http.network_peer_address
        if rpc is not None and rpc.service:
            peer = str(span.attributes.get("peer.service") or "") or callee or rpc.service
            return Endpoint(peer, "POST", f"/{rpc.service}/{rpc.method}")
        if http is None or not callee:
            return None
        cache = self._client_cache
        raw = (callee, http.method, http.path)
        ep = cache.get(raw)
        if ep is not None:
            return ep
        # A path whose last segment sits in a collapsed position (``/items/SKU-1``,
        # ``/items/SKU-2``, ...) is cached by the path up to that segment ("shape" key,
        # marked by a NUL before the method): per-value keys would miss every time.
        prefix, sep, last = http.path.rpartition("/")
        shape = None
        if sep and last and "." not in last and "?" not in last and "#" not in last:
            shape = (callee, "\x00" + http.method, prefix)
            ep = cache.get(shape)
            if ep is not None:
                return ep
        canon = canonical_path(http.path)  # outbound: no pins
        ck = (callee, http.method, canon)
        # (the same object when there was no digit segment: the raw key missed already)
        ep = cache.get(ck) if canon is not http.path else None
        if ep is not None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            cache[raw] = ep
            return ep
        method = normalize_method(http.method or "GET")
        if not http.path:
            ep = Endpoint(callee, method, "/")
        else:
            t = self.outbound.template(callee, http.path)
            ep = Endpoint(callee, method, t.route)
            if self.outbound.take_collapsed():  # what the cache holds may be too literal now
                cache.clear()
                return ep
            if shape is not None and self.outbound.last_collapsed:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[shape] = ep
                return ep
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[ck] = cache[raw] = ep
        return ep

    def _record(self, span: Span, method: str, tmpl: Template) -> EndpointRecord:
        key = (span.service, method, tmpl.route)
        rec = self.records.get(key)
        if rec is None:
            if len(self.records) >= self.max_endpoints:
                self.overflow += 1
                key = (span.service, method, "/{overflow}")
                rec = self.records.get(key)
            if rec is None:
                rec = EndpointRecord(key[0], key[1], key[2], inferred=tmpl.inferred)
                rec.params = tmpl.param_types
                if span.rpc is not None and span.rpc.service:
                    rec.protocol = span.rpc.system or "rpc"
                elif not tmpl.inferred and tmpl.params:
                    rec.track_params()
                self._match(rec)
                self.records[key] = rec
        elif rec.inferred and tmpl.inferred and tmpl.params != tuple(rec.params.items()):
            # the templater widened a parameter's type since (or typed a spec's one)
            if [n for n, _ in tmpl.params] == list(rec.params):
                rec.params = tmpl.param_types
        return rec

    def observe(self, span: Span, rec: EndpointRecord) -> None:
        """Count one server-side span into its endpoint record (the hot path: what
        most spans lack, a query, headers, identity or a client certificate, is
        looked at only when there)."""
        start = span.start_ns
        end = span.end_ns or start
        last = rec.last_ns
        if end > last:
            if last and end - last > self.dormant_after_ns:
                rec.revived_ns = end
            rec.last_ns = end
        first = rec.first_ns
        if end < first or not first:
            rec.first_ns = end
        if end >= rec.next_minute_ns:
            rec.roll(end // _MINUTE_NS)
        rec.calls += 1
        # LatencySketch.add_ns, inlined
        d = span.end_ns - start
        sk = rec.sketch
        sk.count += 1
        if d > 0:
            k = ceil(log2(d * 1e-9) * MULT)
            b = sk.bins
            b[k] = b.get(k, 0) + 1
        else:
            sk.zero += 1
        rec.traces.append(span.trace_id)
        err = span.status_code == _ERROR
        http = span.http
        pnext = rec.pnext
        if pnext and rec.calls >= pnext and http is not None:
            rec.sample_params(http.path)
        rpc = span.rpc
        code = 0
        if http is not None:
            code = http.status_code
            if code:
                st = rec.status
                st[code] = st.get(code, 0) + 1
                if code >= 500:
                    err = True
            if http.query or http.request_headers or http.response_headers:
                _observe_message(rec, http)
        if rpc is not None and rpc.grpc_status is not None:
            if http is None:
                code = rpc.grpc_status
                rec.status[code] = rec.status.get(code, 0) + 1
            if rpc.grpc_status != 0:
                err = True
        if err:
            rec.errors += 1
        if not rec.served and code not in _NOT_SERVED:
            rec.served = True
        auth = auth_evidence(span)  # None at once for the many spans without evidence
        if auth is not None:
            if auth:
                for a in auth:
                    rec.auth[a] = rec.auth.get(a, 0) + 1
            else:
                rec.unauthenticated += 1
        if rec.deprecated or (rec.documented is False and rec.served):  # _flagged, inlined
            # A finding's time range runs from the first call's start (as every analysis
            # stamps it: an incident's root is its earliest hop) to the last call's end.
            if not rec.pend_calls:
                rec.pend_first = start
                rec.pend_traces = []
                rec.pend_spans = []
            rec.pend_calls += 1
            rec.pend_first = min(rec.pend_first, start)
            rec.pend_last = max(rec.pend_last, end)
            if len(rec.pend_traces) < 3:
                rec.pend_traces.append(span.trace_id)
                rec.pend_spans.append(span.span_id)

    def record_caller(self, endpoint: Endpoint, caller: str) -> None:
        """One call of ``caller`` to ``endpoint``."""
        self.record_callers([endpoint], [caller])

    def record_callers(self, endpoints: list[Endpoint | None], callers: list[str]) -> None:
        """Called by the call graph with the calls it paired or resolved: the endpoint
        (``None``: none) and the caller of each, in order.

        Counted per distinct (endpoint object, caller) pair, in the order each first
        appears, which adds callers to a record in the order one call at a time
        would (so the :data:`MAX_CALLERS` cap keeps the same ones). Keyed by object
        (an int hash, no dataclass ``__hash__``): a record shares one Endpoint.
        """
        ids = list(map(id, endpoints))
        by_id = dict(zip(ids, endpoints, strict=True))
        records = self.records
        for (i, caller), n in Counter(zip(ids, callers, strict=True)).items():
            ep = by_id[i]
            if ep is None:
                continue
            rec = records.get((ep.service, ep.method, ep.route))
            if rec is None:
                continue
            callers_of = rec.callers
            m = callers_of.get(caller)
            if m is not None:
                callers_of[caller] = m + n
            elif len(callers_of) < MAX_CALLERS:
                callers_of[caller] = n
                if _flagged(rec):
                    self._new_callers.add((rec.service, rec.method, rec.route))

    def apply_collapses(self, batch_endpoints: dict[str, Any] | None = None) -> int:
        """Merge records whose inferred template a collapse just generalised."""
        dirty = self.templater.take_collapsed()
        if not dirty:
            return 0
        self._rec_cache.clear()
        moved: dict[Key, Key] = {}
        for key, rec in list(self.records.items()):
            if not rec.inferred or rec.service not in dirty:
                continue
            t = self.templater.retemplate(rec.service, rec.route)
            if t.route == rec.route:
                continue
            del self.records[key]
            nkey = (rec.service, rec.method, t.route)
            moved[key] = nkey
            into = self.records.get(nkey)
            if into is None:
                rec.route = t.route
                rec.params = t.param_types
                self._match(rec)
                self.records[nkey] = rec
            else:
                into.merge(rec)
        if batch_endpoints and moved:
            for sid, ep in list(batch_endpoints.items()):
                nk = moved.get((ep.service, ep.method, ep.route))
                if nk is not None:
                    batch_endpoints[sid] = Endpoint(*nk)
        return len(moved)

    # ------------------------------------------------------------------ findings
    def take_findings(self) -> list[Finding]:
        out: list[Finding] = []
        for rec in self.records.values():
            if not rec.pend_calls:
                continue
            out.append(self._finding(rec))
            rec.pend_calls = 0
            rec.pend_traces = []
            rec.pend_spans = []
        if self._new_callers:
            for key in self._new_callers:
                again = self.records.get(key)
                # (one with calls pending went out above, with its callers)
                if again is not None and again.calls and not again.pend_calls and _flagged(again):
                    out.append(self._finding(again, count=0))
            self._new_callers = set()
        return out

    def _finding(self, rec: EndpointRecord, count: int | None = None) -> Finding:
        """The shadow or zombie finding of ``rec``: its pending observations, or with
        ``count=0`` an update of the evidence alone (callers; the same finding id)."""
        if count is None:
            count, first, last = rec.pend_calls, rec.pend_first, rec.pend_last
        else:
            first = last = rec.last_ns
        spec = self.specs.get(rec.service)
        callers = sorted(rec.callers, key=lambda c: -rec.callers[c])[:10]
        subject = Subject(service=rec.service, method=rec.method, route=rec.route)
        evidence: dict[str, Any] = {
            "spec": spec.path if spec else "",
            "calls": rec.calls,
            "callers": callers,
            "status_codes": {str(k): v for k, v in sorted(rec.status.items())},
        }
        if rec.deprecated:
            evidence["operation"] = rec.operation
            return Finding(
                rule="zombie_endpoint",
                title=f"Deprecated endpoint {rec.method} {rec.route} of {rec.service} is still called",
                severity=Severity.MEDIUM,
                subject=subject,
                first_seen_ns=first,
                last_seen_ns=last,
                count=count,
                owasp=OWASP_INVENTORY,
                explanation=(
                    f"The spec marks {rec.operation} as deprecated, yet it received calls"
                    + (f" from {', '.join(callers)}." if callers else ".")
                ),
                remediation="Move the callers to the replacement operation, then retire the endpoint.",
                evidence=evidence,
                trace_ids=tuple(rec.pend_traces),
                span_ids=tuple(rec.pend_spans),
                category="inventory",
            )
        return Finding(
            rule="shadow_endpoint",
            title=f"Shadow endpoint {rec.method} {rec.route} is not in {rec.service}'s spec",
            severity=Severity.MEDIUM,
            subject=subject,
            first_seen_ns=first,
            last_seen_ns=last,
            count=count,
            owasp=OWASP_INVENTORY,
            explanation=(
                f"{rec.service} answered {rec.method} {rec.route}, which no operation of "
                f"{spec.path if spec else 'its spec'} describes (matched by shape)."
            ),
            remediation="Document the endpoint in the spec, or remove it if nobody should call it.",
            evidence=evidence,
            trace_ids=tuple(rec.pend_traces),
            span_ids=tuple(rec.pend_spans),
            category="inventory",
        )

    # ------------------------------------------------------------------ readers
    def lifecycle(self, rec: EndpointRecord, now: int) -> str:
        if rec.calls == 0:
            return "unused"
        if now - rec.last_ns > self.dormant_after_ns:
            return "dormant"
        if rec.deprecated:
            return "zombie"
        if rec.documented is False and rec.served:
            return "shadow"
        if rec.revived_ns and now - rec.revived_ns < self.new_for_ns:
            return "revived"
        if now - rec.first_ns < self.new_for_ns:
            return "new"
        return "active"

    def _sensitive(self, rec: EndpointRecord) -> dict[str, list[str]]:
        """Sensitive types the endpoint carried: ``{type: [directions]}`` (request, response)."""
        part = self.state.parts.get("sensitive") if self.state is not None else None
        fn = getattr(part, "types_for", None)
        if fn is None:
            return {}
        try:
            found = fn(rec.service, rec.method, rec.route) or {}
            return {str(t): sorted(d) for t, d in sorted(found.items())}
        except Exception:  # noqa: BLE001 - another part's bug must not break the report
            return {}

    def row(self, rec: EndpointRecord, now: int) -> dict[str, Any]:
        p50, p95, p99 = rec.sketch.quantiles_ms((0.5, 0.95, 0.99))
        sensitive = self._sensitive(rec)
        return {
            "service": rec.service,
            "method": rec.method,
            "route": rec.route,
            "protocol": rec.protocol,
            "calls": rec.calls,
            "errors": rec.errors,
            "status_codes": {str(k): v for k, v in sorted(rec.status.items())},
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "lifecycle": self.lifecycle(rec, now),
            "documented": rec.documented,
            "deprecated": rec.deprecated,
            "spec_operation": rec.operation,
            "inferred": rec.inferred,
            "callers": sorted(rec.callers),
            "auth": sorted(rec.auth),
            "unauthenticated_calls": rec.unauthenticated,
            "query_params": sorted(rec.query_params),
            "request_content_types": sorted(rec.request_types),
            "response_content_types": sorted(rec.response_types),
            "first_seen": ns_to_iso(rec.first_ns),
            "last_seen": ns_to_iso(rec.last_ns),
            "first_seen_ns": rec.first_ns,
            "last_seen_ns": rec.last_ns,
            "sensitive_types": sorted(sensitive),
            "sensitive": sensitive,
        }

    def unused_operations(self) -> list[tuple[str, Operation]]:
        """Documented operations no observed endpoint matched."""
        used: dict[str, set[str]] = {}
        for rec in self.records.values():
            if rec.operation:
                used.setdefault(rec.service, set()).add(rec.operation)
        return [
            (svc, op)
            for svc, spec in sorted(self.specs.items())
            for op in spec.operations
            if op.key not in used.get(svc, set())
        ]

    def report(self) -> list[dict[str, Any]]:
        now = self.now_ns()
        rows = [self.row(r, now) for r in self.records.values()]
        for svc, op in self.unused_operations():
            rows.append({
                "service": svc, "method": op.method, "route": op.path, "protocol": "http",
                "calls": 0, "errors": 0, "status_codes": {}, "p50_ms": None, "p95_ms": None,
                "p99_ms": None, "lifecycle": "unused", "documented": True,
                "deprecated": op.deprecated, "spec_operation": op.key, "inferred": False,
                "callers": [], "auth": [], "unauthenticated_calls": 0, "query_params": [],
                "request_content_types": [], "response_content_types": [],
                "first_seen": "", "last_seen": "", "first_seen_ns": 0, "last_seen_ns": 0,
                "sensitive_types": [], "sensitive": {},
            })
        rows.sort(key=lambda r: (r["service"], r["route"], r["method"]))
        return rows

    def endpoint(self, service: str, method: str, route: str) -> dict[str, Any] | None:
        rec = self.records.get((service, method.upper(), route))
        if rec is None:
            return None
        d = self.row(rec, self.now_ns())
        d["params"] = dict(rec.params)
        d["auth_counts"] = dict(rec.auth)
        d["callers_counts"] = dict(rec.callers)
        # the detail view's shapes: callers with their call counts, busiest first, and
        # short per-minute series (data time) for sparklines
        d["callers"] = [
            {"client": c, "calls": n}
            for c, n in sorted(rec.callers.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        d.update(rec.series_view())
        d["trace_ids"] = list(dict.fromkeys(reversed(rec.traces)))
        d["operation_id"] = rec.operation_id
        spec = self.specs.get(service)
        d["spec"] = spec.path if spec else None
        return d

    def records_for(self, service: str) -> list[EndpointRecord]:
        return [r for r in self.records.values() if r.service == service]

    def stats(self) -> dict[str, int]:
        return {
            "endpoints": len(self.records),
            "template_nodes": self.templater.node_count(),
            "overflow": self.overflow + self.templater.overflow,
        }

    # ------------------------------------------------------------------ StatePart
    def snapshot(self) -> dict[str, Any]:
        return {
            "v": 1,
            "records": [r.to_json() for r in self.records.values()],
            "trie": self.templater.snapshot(),
            "flagged": sorted(self.flagged_services),
            "clock": self.data_clock_ns,
        }

    def restore(self, data: Any) -> None:
        if not isinstance(data, dict) or data.get("v") != 1:
            return
        self.templater.restore(data.get("trie") or {})
        self._rec_cache.clear()
        self._client_cache.clear()
        for svc, spec in self.specs.items():  # pins survive a spec added since
            for op in spec.operations:
                for prefix in spec.prefixes:
                    self.templater.pin(svc, (*prefix, *op.shape))
        self.records.clear()
        for d in data.get("records") or ():
            rec = EndpointRecord.from_json(d)
            self._match(rec)
            self.records[(rec.service, rec.method, rec.route)] = rec
        self.flagged_services = set(data.get("flagged") or ())
        self.data_clock_ns = max(self.data_clock_ns, int(data.get("clock") or 0))


def load_specs(config: Any) -> tuple[dict[str, Spec], list[str]]:
    """Specs from ``config.specs`` and the ``inventory`` section; errors as sentences."""
    paths: dict[str, str] = {}
    sect = _section(config)
    extra = sect.get("specs")
    if isinstance(extra, dict):
        paths.update({str(k): str(v) for k, v in extra.items()})
    paths.update(dict(getattr(config, "specs", None) or {}))
    specs: dict[str, Spec] = {}
    errors: list[str] = []
    for svc, path in paths.items():
        try:
            specs[svc] = load_spec(Path(path), svc)
        except SpecError as exc:
            msg = f"spec of service {svc!r}: {exc} apiward goes on without it."
            log.error("%s", msg)
            errors.append(msg)
    return specs, errors


def _section(config: Any) -> dict[str, Any]:
    fn = getattr(config, "section", None)
    if fn is None:
        return {}
    s = fn("inventory")
    return s if isinstance(s, dict) else {}


class InventoryEnricher(Enricher):
    """Computes endpoints, keeps the inventory part, flags shadow/zombie endpoints."""

    name = PART

    def __init__(self, config: Any = None) -> None:
        self.config = config
        self.settings = _section(config)
        self.specs, self.spec_errors = load_specs(config)

    def attach(self, state: State) -> InventoryPart:
        """The inventory part of ``state`` (created, specs applied, on first use)."""
        part = state.parts.get(PART)
        if part is None:
            fresh = InventoryPart(self.settings, state)
            fresh.set_specs(self.specs, self.spec_errors)
            part = state.part(PART, lambda: fresh)
        return part  # type: ignore[no-any-return]

    def reload(self) -> None:
        """SIGHUP: re-read the spec files (applied on the next batch)."""
        self.specs, self.spec_errors = load_specs(self.config)
        self._reload = True

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        part = self.attach(state)
        if getattr(self, "_reload", False):
            part.set_specs(self.specs, self.spec_errors)
            self._reload = False
        out = part.take_findings()
        endpoints = state.batch.endpoints
        clock = part.data_clock_ns
        live = part.live
        flagged = part.flagged_services
        record_for = part.record_for
        rec_cache = part._rec_cache
        observe = part.observe
        client_endpoint = part.client_endpoint
        server = SpanKind.SERVER
        client = SpanKind.CLIENT
        miskinds = _MISKINDS
        # Spans are counted as they come (records are independent, and nothing in the
        # loop reads what counting changes); collapses are applied after the loop.
        for span in batch:
            http = span.http
            rpc = span.rpc
            if http is None and rpc is None:
                continue
            kind = span.kind
            if kind == server or (kind in miskinds and http is not None and http.route):
                # record_for's cache lookup, inlined for a span with a route and no RPC view
                rec = (
                    rec_cache.get((span.resource.service_name, http.method, http.route))
                    if rpc is None and http is not None and http.route else None
                )
                if rec is None:
                    rec = record_for(span)
                    if rec is None:
                        continue
                ep = rec._ep
                if ep is None or ep.route is not rec.route:
                    ep = rec.endpoint
                endpoints[span.span_id] = ep
                observe(span, rec)
                end = span.end_ns
                if end > clock:
                    clock = end
                if not live and span.source != SOURCE_REPLAY:
                    live = part.live = True
                if (
                    rec.documented is None
                    and rec.protocol == "http"
                    and rec.service not in flagged
                ):
                    flagged.add(rec.service)
                    out.append(_undocumented(rec, span))
            elif kind == client or kind in miskinds:
                ep = client_endpoint(span)
                if ep is not None:
                    endpoints[span.span_id] = ep
        part.data_clock_ns = clock
        if live:
            part.data_wall_ns = time.time_ns()
        part.apply_collapses(endpoints)
        return out

    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        part = state.parts.get(PART)
        if part is None:
            return ()
        return part.take_findings()  # type: ignore[no-any-return]


def _undocumented(rec: EndpointRecord, span: Span) -> Finding:
    return Finding(
        rule="undocumented_service",
        title=f"Service {rec.service} serves API traffic but has no spec",
        severity=Severity.INFO,
        subject=Subject(service=rec.service),
        first_seen_ns=span.start_ns,
        last_seen_ns=span.end_ns,
        owasp=OWASP_INVENTORY,
        explanation=(
            f"{rec.service} answered API calls, but no OpenAPI spec is configured for it, so "
            "shadow and deprecated endpoints cannot be told apart."
        ),
        remediation=(
            f"Add the service's spec under 'specs' (or --spec {rec.service}=PATH); "
            f"'apiward openapi {rec.service}' writes a starting point from traffic."
        ),
        evidence={"first_endpoint": f"{rec.method} {rec.route}"},
        trace_ids=(span.trace_id,),
        span_ids=(span.span_id,),
        category="inventory",
    )


__all__ = ["InventoryEnricher", "InventoryPart", "EndpointRecord", "load_specs", "split_path"]
