"""The abuse and anomaly enricher: passive OWASP API Top 10 (2023) checks.

Per span it does only cheap work: resolve the endpoint (published by the
inventory enricher, else a marked fallback), identify the client, append one
lightweight row to the open sub-window, and run the signature checks whose
preconditions the span meets (a query string, an error, captured headers or
bodies, ...). Rate, enumeration and anomaly detections run once per closed
sub-window (half a window) over a pandas aggregation of the last full window,
i.e. on a window that slides by half its length (:mod:`enrichers.abuse.windows`);
slow enumeration and flow abuse are judged over a longer per-client horizon.

Time is span time, never the wall clock: a sub-window closes when spans at least
``lateness_seconds`` past its end have arrived, so a replay of a recording
finds exactly what live traffic found. :meth:`tick` closes sub-windows when live
traffic goes quiet, :meth:`flush` closes them all (end of a replay).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import numpy as np

from agent.config import internal_hosts
from agent.model import Finding, NodeKind, Severity, Span, SpanKind, Subject
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
from enrichers.abuse.findings import FindingSink, Rule
from enrichers.abuse.identity import MAX_CACHED, NOBODY, Identifier
from enrichers.abuse.properties import WRITE_METHODS, check_mass_assignment
from enrichers.abuse.routes import RouteInfo, object_id, path_user, route_info, template_path
from enrichers.abuse.rows import CHUNK, Codebook, Rows
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, build_frame, update_baselines
from enrichers.base import Enricher

if TYPE_CHECKING:
    from agent.state import State

PART = "abuse"
_SERVER_KINDS = frozenset({SpanKind.SERVER, SpanKind.UNSPECIFIED})
_OUT_KINDS = frozenset({SpanKind.CLIENT, SpanKind.PRODUCER})
_CALLER_KINDS = frozenset({NodeKind.SERVICE, NodeKind.FUNCTION})
_EDGE_INFO = route_info("")
#: One scan of the raw query string that every query-string check needs to match before
#: the string is parsed: credential, URL/host and page-size parameter names, URL values,
#: and the characters and words injection payloads are made of (raw or percent-encoded).
_SUSPICIOUS_QUERY = re.compile(
    r"(?:^|&)(?:" + authn.CRED_PARAM_NAMES + "|" + "|".join(sorted(ssrf.HOST_PARAMS)) + r")="
    r"|=(?:\s|\+|%20)*(?:(?:https?|ftp|gopher|file)(?::|%3a)|//|%2f%2f)"
    r"|['\x3b{<$]|%27|%3b|%7b|%24|%3c|%[4-7][0-9a-f]|\.\.|%2e|union|sleep|benchmark|waitfor"
    r"|(?:\s|\+|%20)(?:or|and)(?:\s|\+|%20)+\d",  # unquoted numeric tautologies: id=1 OR 1=1
    re.I,
)


def _no_append(_value: Any) -> None:  # pragma: no cover - replaced before the first row
    raise AssertionError("no open window")


class AbuseEnricher(Enricher):
    """Abuse, anomaly and OWASP API Top 10 detections (State part ``abuse``)."""

    name = "abuse"

    def __init__(self, config: Any = None) -> None:
        section = config.section("abuse") if config is not None and hasattr(config, "section") else {}
        self.settings = AbuseSettings.from_section(section)
        self.internal_domains = tuple(internal_hosts(config)[0])
        self._eps: dict[str, EndpointRef] = {}
        #: Endpoint keys by the code of their EndpointRef (the rows' ``ep`` column).
        self._ep_book = Codebook()
        self._infos: dict[str, RouteInfo] = {}
        self._identifier: Identifier | None = None
        self._foreign = bola.ForeignObjectTracker()
        #: (rule, subject) -> last request time a window finding already counted (so
        #: the overlapping halves of sliding windows are counted once); bounded.
        self._counted: dict[tuple[str, Subject], int] = {}
        self._refs: dict[tuple[str, str, str], EndpointRef] = {}
        # Page sizes above the limit have at least as many digits as limit + 1.
        digits = len(str(self.settings.max_page_size + 1))
        self._suspicious = re.compile(
            _SUSPICIOUS_QUERY.pattern + r"|(?:^|&)(?:" + resources.PAGE_PARAM_NAMES + rf")=\d{{{digits}}}", re.I
        )
        self._edges: dict[tuple[str, str], tuple[EndpointRef, bool]] = {}
        self._last_rows_wall = 0.0
        self._wm_wall: float | None = None  # wall time (monotonic) the watermark last moved

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

    def _endpoint(self, st: AbuseState, service: str, method: str, route: str) -> EndpointRef:
        key = f"{service} {method} {route}"
        ref = self._eps.get(key)
        if ref is None:
            if len(self._eps) > 50_000:
                self._forget_endpoints(st)
            ref = self._eps[key] = EndpointRef(
                key, service, method, route, self._info(route), code=self._ep_book.add(key)
            )
        self._refs[(service, method, route)] = ref
        return ref

    def _edge(self, st: AbuseState, service: str, host: str) -> tuple[EndpointRef, bool]:
        """The call-graph edge ``service -> host`` and whether the host is external."""
        key = f"edge:{service}->{host}"
        ref = self._eps.get(key)
        if ref is None:
            if len(self._eps) > 50_000:
                self._forget_endpoints(st)
            ref = self._eps[key] = EndpointRef(
                key, service, "", "", _EDGE_INFO, edge_server=host, code=self._ep_book.add(key)
            )
        return ref, unsafe_consumption.is_external_host(host, self.internal_domains)

    def _stale(self, now: float) -> bool:
        """Span time has not advanced for a window plus lateness of wall time (the timer
        starts again, so a standing span clock closes one window per such period)."""
        s = self.settings
        if self._wm_wall is not None and now - self._wm_wall >= s.window_seconds + s.lateness_seconds:
            self._wm_wall = now
            return True
        return False

    def _forget_endpoints(self, st: AbuseState) -> None:
        # Bounded caches: open windows resolve their endpoint keys through _eps, so a
        # window that straddles this loses its window findings once (counted nowhere).
        _compact_open(st)  # the pending rows' endpoint codes are about to go
        self._ep_book.reset()
        self._eps.clear()
        self._refs.clear()
        self._edges.clear()

    def _rows(self, st: AbuseState, ts: int) -> tuple[Rows, int, int]:
        """The open sub-window for span time ``ts`` and the span-time range it takes without
        another lookup. Late spans (of sub-windows already closed) are counted in the oldest
        open one, so that sub-window's range starts at the smallest integer."""
        hop = self.settings.hop_ns
        win = ts // hop
        first = st.closed_upto + 1
        if win <= first:
            win = first
            lo = -(2**63)
        else:
            lo = win * hop
        rows = st.rows.get(win)
        if rows is None:
            assert self._identifier is not None  # made by process() before any row
            rows = st.rows[win] = Rows(self._ep_book, self._identifier.book)
        return rows, lo, (win + 1) * hop

    # ------------------------------------------------------------------ process
    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:  # noqa: C901 - the hot loop, inlined
        st = self.state(state)
        s = self.settings
        if self._identifier is None:
            self._identifier = Identifier(state.secret)
        ident = self._identifier
        if len(ident.book) > MAX_CACHED:
            # Bounded: the book keeps every Principal made since the last time.
            _compact_open(st)
            ident.forget()
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
        refs = self._refs
        edges = self._edges
        route_of = st.route_of
        versions_of = st.versions_of
        headers_seen = st.headers_seen
        suspicious = self._suspicious.search
        add_outbound = st.traces.add_outbound
        nobody = NOBODY.code
        lo = hi = 0
        a_ts = a_end = a_ep = a_who = a_st = a_sz = a_oid = a_tr = _no_append
        for span in batch:
            http = span.http
            if http is None:
                db = span.db
                if db is not None and db.statement:
                    unsafe_consumption.on_db(span, st, sink)
                continue
            kind = span.kind
            ts = span.start_ns
            if not lo <= ts < hi:
                rows, lo, hi = self._rows(st, ts)
                a_ts, a_end, a_ep, a_who, a_st, a_sz, a_oid, a_tr = rows.appenders()
            if kind in _OUT_KINDS:
                host = http.server_address
                if not host:
                    host = ssrf.outbound_host(span)
                    if not host:
                        continue
                svc = span.resource.service_name  # Span.service, without the property call
                edge = edges.get((svc, host))
                if edge is None:
                    edge = edges[(svc, host)] = self._edge(st, svc, host.lower())
                eref, external = edge
                tid = span.trace_id
                facts = add_outbound(tid, (svc, eref.edge_server, span.span_id), ts)
                if facts is not None and facts.url_params:
                    ssrf.match(tid, facts, sink, ts)
                if http.scheme == "http" or http.url.startswith("http://"):
                    sk = server_kinds.get(span.span_id) if server_kinds else None
                    if sk is NodeKind.EXTERNAL or (sk is None and external):
                        unsafe_consumption.check_plaintext_third_party(
                            span, eref.edge_server, sk, self.internal_domains, sink
                        )
                size = http.response_body_size
                a_ts(ts)
                a_end(span.end_ns)
                a_ep(eref.code)
                a_who(nobody)
                a_st(http.status_code)
                a_sz(-1 if size is None else size)
                a_oid("")
                a_tr(tid)
                continue
            if kind not in _SERVER_KINDS:
                continue
            if ts > wm:
                wm = ts
            ep = endpoints.get(span.span_id) if endpoints else None
            if ep is not None:
                rk = (ep.service, ep.method, ep.route)
            else:
                # FALLBACK while no inventory enricher published an Endpoint for this span.
                rk = (span.service, http.method or "?", http.route or template_path(http.path))
            ref = refs.get(rk)
            if ref is None:
                ref = self._endpoint(st, *rk)
            info = ref.info
            who = ident.identify(span, http, callers.get(span.span_id, "") if callers else "")
            status = http.status_code
            size = http.response_body_size
            a_ts(ts)
            a_end(span.end_ns)
            a_ep(ref.code)
            a_who(who.code)
            a_st(status)
            a_sz(-1 if size is None else size)
            a_oid(object_id(info, http.path) if info.params else "")
            a_tr(span.trace_id)
            # Per-request checks, each behind a cheap precondition; the Request is built
            # only for the few spans that reach one.
            req: Request | None = None
            query = http.query
            if query and suspicious(query):
                req = Request(span, http, ref, who, ts, status)
                req.params = parse_qsl(query)
                if req.params:
                    authn.check_url(req, sink)
                    resources.check_page_size(req, sink, s)
                    ssrf.on_request(req, st, sink)
                    unsafe_consumption.on_request(req, st, sink)
            elif "@" in http.url:
                req = Request(span, http, ref, who, ts, status)
                authn.check_url(req, sink)
            if status >= 400 and (status >= 500 or http.response_body):
                req = req or Request(span, http, ref, who, ts, status)
                misconfig.check_error(req, sink)
            if info.debug:
                req = req or Request(span, http, ref, who, ts, status)
                misconfig.check_debug(req, sink)
            rh = http.response_headers
            if rh and ("access-control-allow-credentials" in rh or ref not in headers_seen):
                if 200 <= status < 300:
                    headers_seen.add(ref)
                req = req or Request(span, http, ref, who, ts, status)
                misconfig.check_headers(req, st, sink)
            if who.public and http.scheme == "http":
                req = req or Request(span, http, ref, who, ts, status)
                misconfig.check_plaintext(req, sink)
            if http.request_body and http.method in WRITE_METHODS:
                req = req or Request(span, http, ref, who, ts, status)
                check_mass_assignment(req, st, sink)
            if size is not None and size >= large:
                req = req or Request(span, http, ref, who, ts, status)
                resources.check_size(req, st, sink, s)
            if info.user_param >= 0 and who.principal and 200 <= status < 300:
                named = path_user(info, http.path)
                if named and named != who.principal:
                    req = req or Request(span, http, ref, who, ts, status)
                    self._foreign.check(req, sink, s)
            if info.admin and not info.debug:
                req = req or Request(span, http, ref, who, ts, status)
                function_authz.check_admin(req, st, sink, s)
            # Readers and writers of every route (parameterised or not).
            if ref.method in function_authz.READ_METHODS:
                ra = route_of.get(ref)
                if ra is None:
                    ra = function_authz.route_access(st, ref, ts)
                ra.readers[who.client] = ts
            elif ref.method in function_authz.ESCALATION_METHODS:
                req = req or Request(span, http, ref, who, ts, status)
                function_authz.check_methods(req, st, sink, s)
            if info.version:
                vs = versions_of.get(ref)
                if vs is None:
                    vs = versions.versions_of(st, ref)
                if vs is not None:
                    vs[info.version] = ts
                    if len(vs) > 1 and info.version < max(vs):
                        req = req or Request(span, http, ref, who, ts, status)
                        versions.check(req, st, sink)
        now = time.monotonic()
        if wm != st.watermark_ns or self._wm_wall is None:
            self._wm_wall = now
        st.watermark_ns = wm
        self._last_rows_wall = now
        open_rows = 0
        for rows in st.rows.values():
            if rows.pending >= CHUNK:
                rows.compact()
            open_rows += len(rows)
        if open_rows >= s.max_rows or (open_rows and self._stale(now)):
            # Span time stands still (stale or repeated timestamps: a replayed recording
            # looped, clocks far behind): evaluate what is open once a window's worth of
            # wall time has passed, or at the row bound, rather than hold an unbounded
            # pile of rows in one ever-growing "window".
            self._close(st, sink, None)
        else:
            self._close(st, sink, wm - int(s.lateness_seconds * 1e9))
        return sink.drain()

    # ------------------------------------------------------------------ windows
    def _close(self, st: AbuseState, sink: FindingSink, cutoff_ns: int | None) -> None:
        """Close every sub-window that ends at or before ``cutoff_ns`` (all if None)."""
        if st.rows:
            hop = self.settings.hop_ns
            last = None if cutoff_ns is None else cutoff_ns // hop - 1
            for idx in sorted(st.rows):
                if last is not None and idx > last:
                    break
                rows = st.rows.pop(idx)
                st.closed_upto = max(st.closed_upto, idx)
                if len(rows):
                    self._subwindow(idx, rows, st, sink)
        if cutoff_ns is None and st.prev is not None:
            # Nothing follows (end of a replay, traffic quiet): fold what is not folded yet.
            self._fold_alone(st)
            st.prev = None

    def _fold_alone(self, st: AbuseState) -> None:
        """Fold the previous sub-window into the baselines on its own (its partner of the
        aligned pair never came)."""
        prev = st.prev
        if prev is not None and not prev[2]:
            hop = self.settings.hop_ns
            update_baselines(build_frame(prev[0], prev[0] * hop, prev[0] * hop, (prev[0] + 1) * hop,
                                         Rows.joined([prev[1]])), st)
            st.prev = (prev[0], prev[1], True)

    def _subwindow(self, idx: int, rows: Rows, st: AbuseState, sink: FindingSink) -> None:
        """Evaluate the window that ends with sub-window ``idx`` (it and the one before)."""
        s = self.settings
        hop = s.hop_ns
        prev = st.prev
        if prev is not None and prev[0] != idx - 1:
            self._fold_alone(st)
            prev = None
        if prev is not None:
            w = build_frame(idx, prev[0] * hop, idx * hop, (idx + 1) * hop, Rows.joined([prev[1], rows]))
        else:
            w = build_frame(idx, idx * hop, idx * hop, (idx + 1) * hop, rows)
        eps = self._eps
        for key, tmin in zip(w.ep.index, w.ep["tmin"].to_numpy(), strict=True):
            if key not in st.endpoints and key in eps:
                ref = eps[key]
                st.endpoint(key, ref.service, ref.method, ref.route or ref.edge_server, int(tmin))
        ws = _CountOnce(sink, self._counted)
        skip = bola.on_window(w, st, ws, s, eps)
        floods.on_window(w, st, ws, s, eps, skip)
        floods.client_history(w, st, ws, s, eps, skip)
        authn.on_window(w, st, ws, s, eps)
        business_flows.on_window(w, ws, s, eps)
        anomalies.on_window(w, st, ws, s, eps)
        self._horizon(w, st, ws)
        # Baselines learn from the aligned pairs (2k, 2k+1) only: every row once.
        folded = idx % 2 == 1
        if folded:
            update_baselines(w, st)
        st.prev = (idx, rows, folded)
        cc = w.cc
        st.clients.update(zip(cc.index, cc["tmax"].tolist(), strict=True))
        self._foreign.clear()
        st.windows_closed += 1
        st.traces.expire(w.end_ns)
        if (
            st.windows_closed % 30 == 0
            or len(st.endpoints) > 2 * s.max_endpoints
            or len(st.routes) > 2 * s.max_routes
        ):
            st.decay(w.end_ns)
        if len(self._counted) > 50_000:
            self._counted.clear()

    def _horizon(self, w: WindowFrame, st: AbuseState, sink: FindingSink) -> None:
        """Keep the sub-window's requests of parameterised and flow routes; judge the
        per-client horizon every ``horizon_hop_seconds``."""
        s = self.settings
        eps = self._eps
        keep = np.fromiter(
            ((r := eps.get(k)) is not None and (r.info.parameterised or bool(r.info.flow)) for k in w.ep.index),
            dtype=bool, count=len(w.ep),
        )
        if keep.any():
            st.horizon.add(w, keep, s)
        if st.horizon.due(w.end_ns, s):
            h = st.horizon.frame()
            bola.on_horizon(h, sink, s, eps)
            business_flows.on_horizon(h, sink, s, eps)

    # ------------------------------------------------------------------ ticks
    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        st = state.parts.get(PART)
        if not isinstance(st, AbuseState) or not st.rows:
            return ()
        s = self.settings
        sink = FindingSink()
        idle = time.monotonic() - self._last_rows_wall
        if idle >= s.window_seconds + s.lateness_seconds or self._stale(time.monotonic()):
            self._close(st, sink, None)  # traffic went quiet, or span time stands still
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




def _compact_open(st: AbuseState) -> None:
    """Compact the pending rows of every open sub-window (before a code book resets)."""
    for rows in st.rows.values():
        rows.compact()


class _CountOnce(FindingSink):
    """Window detections' sink: passes hits to ``out`` and counts only requests after
    the last one an earlier window already counted for the same rule and subject
    (sliding windows overlap by half). Which requests of a hit's time range are new is
    estimated from the time range, at the hit's average rate."""

    def __init__(self, out: FindingSink, counted: dict[tuple[str, Subject], int]) -> None:
        super().__init__()
        self.out = out
        self.counted = counted

    def hit(self, rule: Rule, subject: Subject, *, first_ns: int, last_ns: int | None = None, count: int = 1,
            severity: Severity | None = None, **kw: Any) -> None:
        last = first_ns if last_ns is None else last_ns
        key = (rule.id, subject)
        done = self.counted.get(key)
        if done is not None and done >= first_ns:
            count = 0 if done >= last else round(count * (last - done) / (last - first_ns))
        self.counted[key] = last if done is None else max(done, last)
        self.out.hit(rule, subject, first_ns=first_ns, last_ns=last, count=count, severity=severity, **kw)
