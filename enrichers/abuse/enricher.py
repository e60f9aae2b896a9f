"""The abuse and anomaly enricher: passive OWASP API Top 10 (2023) checks.

Per span it does only cheap work: resolve the endpoint (published by the
inventory enricher, else a marked fallback), identify the client, append one
lightweight row to the open window, and run the signature checks whose
preconditions the span meets (a query string, an error, captured headers or
bodies, ...). Rate, enumeration and anomaly detections run once per closed
window over a pandas aggregation (:mod:`enrichers.abuse.windows`).

Time is span time, never the wall clock: a window closes when spans at least
``lateness_seconds`` past its end have arrived, so a replay of a recording
finds exactly what live traffic found. :meth:`tick` closes windows when live
traffic goes quiet, :meth:`flush` closes them all (end of a replay).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from agent.model import Endpoint, Finding, NodeKind, Span, SpanKind
from enrichers.abuse import (
    anomalies,
    authn,
    bola,
    business_flows,
    floods,
    function_authz,
    misconfig,
    resources,
    ssrf,
    unsafe_consumption,
    versions,
)
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef, Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.identity import Identifier, ua_class
from enrichers.abuse.properties import MassAssignmentCheck
from enrichers.abuse.routes import RouteInfo, object_id, route_info, template_path
from enrichers.abuse.rows import Rows
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import build_frame, update_baselines
from enrichers.base import Enricher

if TYPE_CHECKING:
    from agent.state import State

PART = "abuse"
_SERVER_KINDS = frozenset({SpanKind.SERVER, SpanKind.UNSPECIFIED})
_OUT_KINDS = frozenset({SpanKind.CLIENT, SpanKind.PRODUCER})
_CALLER_KINDS = frozenset({NodeKind.SERVICE, NodeKind.FUNCTION})
_DEFAULT_INTERNAL = (".local", ".internal", ".svc", ".cluster.local", "localhost")
_EDGE_INFO = route_info("")


class AbuseEnricher(Enricher):
    """Abuse, anomaly and OWASP API Top 10 detections (State part ``abuse``)."""

    name = "abuse"

    def __init__(self, config: Any = None) -> None:
        section = config.section("abuse") if config is not None and hasattr(config, "section") else {}
        self.settings = AbuseSettings.from_section(section)
        self.internal_domains = tuple(getattr(config, "internal_domains", None) or _DEFAULT_INTERNAL)
        self._eps: dict[str, EndpointRef] = {}
        self._infos: dict[str, RouteInfo] = {}
        self._identifier: Identifier | None = None
        self._foreign = bola.ForeignObjectTracker()
        self._mass = MassAssignmentCheck()
        self._open_rows = 0
        self._last_rows_wall = 0.0

    # ------------------------------------------------------------------ helpers
    def state(self, state: State) -> AbuseState:
        s = self.settings
        return state.part(PART, lambda: AbuseState(s))  # type: ignore[no-any-return]

    def _info(self, route: str) -> RouteInfo:
        info = self._infos.get(route)
        if info is None:
            if len(self._infos) > 50_000:
                self._infos.clear()
            info = self._infos[route] = route_info(route)
        return info

    def _endpoint(self, span: Span, ep: Endpoint | None) -> EndpointRef:
        http = span.http
        assert http is not None
        if ep is not None:
            service, method, route = ep.service, ep.method, ep.route
        else:
            # FALLBACK while no inventory enricher published an Endpoint for this span.
            service, method = span.service, http.method or "?"
            route = http.route or template_path(http.path)
        key = f"{service} {method} {route}"
        ref = self._eps.get(key)
        if ref is None:
            if len(self._eps) > 50_000:
                self._eps.clear()
            ref = self._eps[key] = EndpointRef(key, service, method, route, self._info(route))
        return ref

    def _edge(self, service: str, host: str) -> EndpointRef:
        key = f"edge:{service}->{host}"
        ref = self._eps.get(key)
        if ref is None:
            ref = self._eps[key] = EndpointRef(key, service, "", "", _EDGE_INFO, edge_server=host)
        return ref

    def _rows(self, st: AbuseState, ts: int) -> Rows | None:
        win = ts // self.settings.window_ns
        if win <= st.closed_upto:
            win = st.closed_upto + 1  # late span: counted in the oldest open window
        rows = st.rows.get(win)
        if rows is None:
            rows = st.rows[win] = Rows()
        if self._open_rows >= self.settings.max_rows:
            st.rows_dropped += 1  # counted; the batch end evaluates the open windows early
            return None
        self._open_rows += 1
        return rows

    # ------------------------------------------------------------------ process
    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        st = self.state(state)
        s = self.settings
        if self._identifier is None:
            self._identifier = Identifier(state.secret)
        ident = self._identifier
        sink = FindingSink()
        endpoints = state.batch.endpoints
        callers: dict[str, str] = {}
        server_kinds: dict[str, NodeKind] = {}
        for c in state.batch.calls:
            if c.server_span is not None and c.client_kind in _CALLER_KINDS:
                callers[c.server_span.span_id] = c.client
            if c.client_span is not None:
                server_kinds[c.client_span.span_id] = c.server_kind
        wm = st.watermark_ns
        large = s.large_response_bytes
        clients = st.clients
        for span in batch:
            http = span.http
            if http is None:
                if span.db is not None and span.db.statement:
                    unsafe_consumption.on_db(span, st, sink)
                continue
            kind = span.kind
            ts = span.start_ns
            if kind in _OUT_KINDS:
                host = ssrf.outbound_host(span)
                if host:
                    ssrf.on_outbound(span, host, st, sink)
                    if http.scheme == "http" or http.url.startswith("http://"):
                        unsafe_consumption.check_plaintext_third_party(
                            span, host, server_kinds.get(span.span_id), self.internal_domains, sink
                        )
                    rows = self._rows(st, ts)
                    if rows is not None:
                        size = http.response_body_size
                        rows.append(
                            ts, self._edge(span.service, host).key, "", http.status_code,
                            span.duration_ns / 1e6, -1 if size is None else size, "", "", "", -1, span.trace_id,
                        )
                continue
            if kind not in _SERVER_KINDS:
                continue
            if ts > wm:
                wm = ts
            ref = self._endpoint(span, endpoints.get(span.span_id))
            info = ref.info
            who = ident.identify(span, http, callers.get(span.span_id, ""))
            status = http.status_code
            size = http.response_body_size
            rows = self._rows(st, ts)
            if rows is not None:
                rows.append(
                    ts, ref.key, who.client, status, span.duration_ns / 1e6, -1 if size is None else size,
                    object_id(info, http.path) if info.params else "", http.path, ua_class(http.user_agent),
                    -1 if who.has_credentials is None else int(who.has_credentials), span.trace_id,
                )
            clients[who.client] = ts
            req = Request(span, http, ref, who, ts, status)
            if http.query:
                req.params = parse_qsl(http.query)
                if req.params:
                    authn.check_url(req, sink)
                    resources.check_page_size(req, sink, s)
                    ssrf.on_request(req, st, sink)
                    unsafe_consumption.on_request(req, st, sink)
            elif "@" in http.url:
                authn.check_url(req, sink)
            if status >= 500 or (status >= 400 and http.response_body):
                misconfig.check_error(req, sink)
            if info.debug:
                misconfig.check_debug(req, sink)
            if http.response_headers:
                misconfig.check_headers(req, st, sink)
            if http.scheme == "http":
                misconfig.check_plaintext(req, sink)
            if http.request_body:
                self._mass.check(req, sink)
            if size is not None and size >= large:
                resources.check_size(req, st, sink, s)
            if info.user_param >= 0 and who.principal:
                self._foreign.check(req, sink, s)
            if info.admin and not info.debug:
                function_authz.check_admin(req, st, sink, s)
            if info.params:
                function_authz.check_methods(req, st, sink, s)
            if info.version:
                versions.check(req, st, sink)
        st.watermark_ns = wm
        self._last_rows_wall = time.monotonic()
        if self._open_rows >= s.max_rows:
            # Span time stands still (stale or repeated timestamps): evaluate what is open
            # rather than hold an unbounded pile of rows.
            self._close(st, sink, None)
        else:
            self._close(st, sink, wm - int(s.lateness_seconds * 1e9))
        return sink.drain()

    # ------------------------------------------------------------------ windows
    def _close(self, st: AbuseState, sink: FindingSink, cutoff_ns: int | None) -> None:
        """Close every window that ends at or before ``cutoff_ns`` (all if None)."""
        if not st.rows:
            return
        wn = self.settings.window_ns
        last = None if cutoff_ns is None else cutoff_ns // wn - 1
        for idx in sorted(st.rows):
            if last is not None and idx > last:
                break
            rows = st.rows.pop(idx)
            self._open_rows -= len(rows)
            st.closed_upto = max(st.closed_upto, idx)
            if len(rows):
                self._window(idx, rows, st, sink)
        if not st.rows:
            self._open_rows = 0

    def _window(self, idx: int, rows: Rows, st: AbuseState, sink: FindingSink) -> None:
        s = self.settings
        w = build_frame(idx, s.window_ns, rows)
        eps = self._eps
        for key, tmin in zip(w.ep.index, w.ep["tmin"].to_numpy(), strict=True):
            if key not in st.endpoints and key in eps:
                ref = eps[key]
                st.endpoint(key, ref.service, ref.method, ref.route or ref.edge_server, int(tmin))
        skip = bola.on_window(w, st, sink, s, eps)
        floods.on_window(w, st, sink, s, eps, skip)
        authn.on_window(w, st, sink, s, eps)
        business_flows.on_window(w, sink, s, eps)
        anomalies.on_window(w, st, sink, s, eps)
        update_baselines(w, st)
        self._foreign.clear()
        st.windows_closed += 1
        st.traces.expire(w.end_ns)
        if st.windows_closed % 30 == 0:
            st.decay(w.end_ns)

    # ------------------------------------------------------------------ ticks
    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        st = state.parts.get(PART)
        if not isinstance(st, AbuseState) or not st.rows:
            return ()
        s = self.settings
        sink = FindingSink()
        idle = time.monotonic() - self._last_rows_wall
        if idle >= s.window_seconds + s.lateness_seconds:
            self._close(st, sink, None)  # traffic went quiet: evaluate what is open
        elif abs(now_ns - st.watermark_ns) < 300 * 10**9:
            self._close(st, sink, now_ns - int(s.lateness_seconds * 1e9))  # live: wall clock ~ span time
        return sink.drain()

    def flush(self, state: State) -> list[Finding]:
        """Close every open window now (end of a replay or of a test)."""
        st = state.parts.get(PART)
        if not isinstance(st, AbuseState):
            return []
        sink = FindingSink()
        self._close(st, sink, None)
        return sink.drain()


