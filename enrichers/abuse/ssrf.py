"""Server-side request forgery (API7): a request parameter holding a URL or host,
then, in the same trace, an outbound call from that service to that host.
The two spans may arrive in either order and in different batches, so both
sides wait in the per-trace buffer until the other shows up or the TTL ends."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from agent.model import Severity, Span, Subject
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.traces import TraceFacts

HOST_PARAMS = frozenset({
    "url", "uri", "host", "target", "dest", "destination", "redirect", "redirect_uri", "callback",
    "webhook", "feed", "image", "image_url", "imageurl", "link", "proxy", "fetch", "endpoint",
    "domain", "site", "src", "source", "next", "return", "returnurl", "return_url", "path", "file",
})


def param_host(name: str, value: str) -> str:
    """The host a parameter value names, or ""."""
    v = value.strip()
    if not v:
        return ""
    low = v.lower()
    if low.startswith(("http://", "https://", "//", "ftp://", "gopher://", "file://")):
        try:
            return (urlsplit(v if not low.startswith("//") else "http:" + v).hostname or "").lower()
        except ValueError:
            return ""
    if name.lower() in HOST_PARAMS and "/" not in v and " " not in v:
        host = low.split(":", 1)[0] if low.count(":") == 1 else low
        if "." in host or host == "localhost":
            return host
    return ""


def is_internal_host(host: str) -> bool:
    if host in ("localhost", "metadata.google.internal") or host.endswith((".internal", ".local")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not ip.is_global


#: Hosts an endpoint must have been asked for in URL parameters before a new one is unusual.
WARM_PARAM_HOSTS = 50
#: Mark in :attr:`TraceFacts.matched` of a parameter named while its endpoint had no history.
_WARMUP_MARK = "ssrf-warmup:"
_AUTOMATION = frozenset({"tool", "scanner", "headless"})


def _host_verdict(st: AbuseState, ep_key: str, host: str) -> str:
    """For an external host named in a URL parameter of ``ep_key``: ``usual`` (asked for
    before, or the state is full), ``unusual`` (new after warm-up) or ``warming`` (new, and
    the endpoint has not yet been asked for enough hosts to tell what is usual)."""
    hosts = st.param_hosts.get(ep_key)
    if hosts is None:
        if len(st.param_hosts) > 10_000:
            return "usual"
        hosts = st.param_hosts[ep_key] = {}
    seen = hosts.get(host, 0)
    total = sum(hosts.values())
    if len(hosts) < 1000 or seen:
        hosts[host] = seen + 1
    if seen:
        return "usual"
    return "unusual" if total >= WARM_PARAM_HOSTS else "warming"


def _suspect_requester(req: Request, host: str) -> bool:
    """During warm-up, whether a new external host is still worth a (low-confidence)
    finding: asked for by automation or without credentials, or named by IP address.
    Authenticated users of a cold URL-fetching endpoint get the benefit of the doubt."""
    who = req.who
    if who.uac in _AUTOMATION or who.has_credentials is not True:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def outbound_host(span: Span) -> str:
    http = span.http
    if http is None:
        return ""
    host = http.server_address
    if not host and http.url:
        try:
            host = urlsplit(http.url).hostname or ""
        except ValueError:
            host = ""
    return host.lower()


def on_request(req: Request, st: AbuseState, sink: FindingSink) -> None:
    for name, value in req.params or ():
        host = param_host(name, value)
        if not host:
            continue
        warming = False
        if not is_internal_host(host):
            verdict = _host_verdict(st, req.ep.key, host)
            if verdict == "usual":
                continue  # a URL-fetching feature fetching what it always fetches
            warming = verdict == "warming"
            if warming and not _suspect_requester(req, host):
                continue
        span = req.span
        facts = st.traces.facts(span.trace_id, req.ts)
        if len(facts.url_params) < 8:
            facts.url_params.append(
                (req.ep.service, host, name, span.span_id, req.client, req.ep.method, req.ep.route)
            )
            if warming:
                facts.matched.add(_WARMUP_MARK + span.span_id)
        match(span.trace_id, facts, sink, req.ts)


def on_outbound(span: Span, host: str, st: AbuseState, sink: FindingSink) -> None:
    facts = st.traces.add_outbound(span.trace_id, (span.service, host, span.span_id), span.start_ns)
    if facts is not None and facts.url_params:
        match(span.trace_id, facts, sink, span.start_ns)


def match(trace_id: str, facts: TraceFacts, sink: FindingSink, ts: int) -> None:
    for svc, host, name, sid, client, method, route in facts.url_params:
        for osvc, ohost, osid in facts.outbound:
            if osvc != svc or ohost != host:
                continue
            mark = f"ssrf:{sid}:{osid}"
            if mark in facts.matched:
                continue
            facts.matched.add(mark)
            internal = is_internal_host(host)
            warming = not internal and _WARMUP_MARK + sid in facts.matched
            sink.hit(
                rules.SSRF, Subject(service=svc, method=method, route=route, client=client), first_ns=ts,
                confidence=0.9 if internal else 0.5 if warming else 0.75,
                severity=Severity.CRITICAL if internal else Severity.MEDIUM if warming else None,
                explanation=f"parameter {name!r} named {host}, and {svc} then called {host} in the same trace"
                + (" (the endpoint has no history of the hosts it is asked for yet)" if warming else ""),
                evidence={"parameter": name, "host": host, "internal_host": internal, "endpoint_warming_up": warming},
                trace_ids=(trace_id,), span_ids=(sid, osid),
            )
