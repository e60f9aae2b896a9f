"""Broken function-level authorization (API5): admin and internal routes called
by callers they do not usually have, and write methods (PUT/PATCH/DELETE) on a
route by a caller that only ever read it, where writing is the privilege of few."""

from __future__ import annotations

from agent.model import Severity
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState, AdminAccess, RouteAccess
from enrichers.abuse.context import EndpointRef, Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.settings import AbuseSettings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ESCALATION_METHODS = frozenset({"PUT", "PATCH", "DELETE"})


#: User-agent classes of automation (see :func:`enrichers.abuse.identity.ua_class`).
_AUTOMATION = frozenset({"tool", "scanner", "headless"})


def _internal_only(route: str) -> bool:
    """``/internal/...`` or ``/_x/...``: routes meant for the organisation's own callers."""
    return any(seg == "internal" or (seg.startswith("_") and len(seg) > 1) for seg in route.lower().split("/"))


def cold_suspect(req: Request) -> str:
    """Why a first caller of an admin route without a warmed-up history is not learned as
    one of its usual callers ("" = learn it): a client from outside the organisation that
    is automation, unauthenticated, or public on an internal-only route. Internal callers
    (services, private addresses) are learned."""
    who = req.who
    if who.internal:
        return ""
    if who.uac in _AUTOMATION:
        return f"{who.uac} user agent"
    if who.has_credentials is False:
        return "no credentials"
    if who.public and _internal_only(req.ep.route):
        return "public address on an internal route"
    return ""


def check_admin(req: Request, st: AbuseState, sink: FindingSink, s: AbuseSettings) -> None:
    ep = req.ep
    a = st.admin.get(ep.key)
    if a is None:
        a = st.admin[ep.key] = AdminAccess(first_ns=req.ts)
    a.total += 1
    client = req.client
    known = client in a.callers
    warm = a.total > s.admin_min_calls and req.ts - a.first_ns >= s.warmup_seconds * 1e9
    reason = ""
    if not known and not warm:
        # No history to compare with yet: learn insiders, but never learn an outsider.
        reason = cold_suspect(req)
    if (not known and warm) or reason or client in a.flagged:
        if req.who.uac == "probe":
            return
        a.flagged.add(client)
        ok = 200 <= req.status < 400
        evidence: dict[str, object] = {"usual_callers": len(a.callers), "status": req.status, "calls_seen": a.total}
        if reason:
            evidence["warming_up"] = True
            evidence["reason"] = reason
        sink.hit(
            rules.ADMIN_CALLER, ep.subject(client), first_ns=req.ts,
            confidence=(0.8 if ok else 0.6) - (0.1 if reason else 0.0),
            severity=Severity.HIGH if ok else Severity.MEDIUM,
            explanation=f"{client} called {ep.method} {ep.route} ({req.status}); it has {len(a.callers)} usual callers"
            + (f" (no history yet; {reason})" if reason else ""),
            evidence=evidence, trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
        )
        return
    a.callers[client] = req.ts


def route_access(st: AbuseState, ep: EndpointRef, ts: int) -> RouteAccess:
    """Who reads and writes ``ep``'s route (service + template, any method)."""
    r = st.route_of.get(ep)
    if r is not None:
        return r
    rkey = ep.service + " " + ep.route
    r = st.routes.get(rkey)
    if r is None:
        r = st.routes[rkey] = RouteAccess(first_ns=ts)
    if len(st.route_of) > 50_000:
        st.route_of.clear()
    st.route_of[ep] = r
    return r


def check_methods(req: Request, st: AbuseState, sink: FindingSink, s: AbuseSettings) -> None:
    ep = req.ep
    method = ep.method
    r = route_access(st, ep, req.ts)
    client = req.client
    if method in READ_METHODS:
        r.readers[client] = req.ts
        return
    if method not in ESCALATION_METHODS:
        return
    writers = r.writers.get(method)
    if writers is None:
        writers = r.writers[method] = {}
    if client in writers and r.flagged.get(client) != method:
        writers[client] = req.ts
        return
    nread = len(r.readers)
    warm = req.ts - r.first_ns >= s.warmup_seconds * 1e9 and nread >= s.escalation_min_readers
    if r.flagged.get(client) == method or (
        warm and client in r.readers and len(writers) <= s.escalation_writer_share * nread
    ):
        r.flagged[client] = method
        ok = 200 <= req.status < 400
        sink.hit(
            rules.ESCALATION, ep.subject(client), first_ns=req.ts, confidence=0.8 if ok else 0.6,
            severity=Severity.HIGH if ok else Severity.MEDIUM,
            explanation=f"{client} only ever read {ep.route} and now sent {method} ({req.status}); "
            f"{len(writers)} of {nread} callers use {method} here",
            evidence={"usual_writers": len(writers), "readers": nread, "status": req.status},
            trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
        )
        return
    writers[client] = req.ts
