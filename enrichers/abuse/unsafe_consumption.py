"""Unsafe consumption of APIs (API10): third-party APIs called over plain HTTP,
and injection payloads from a query string that reach ``db.statement`` in the
same trace (the service passed untrusted input through to its database)."""

from __future__ import annotations

import re

from agent.model import NodeKind, Span, Subject
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.identity import is_public_ip
from enrichers.abuse.traces import TraceFacts

_INJECTION = re.compile(
    r"('\s*(or|and)\s+'?[\w]+'?\s*=\s*'?[\w]+|'\s*(or|and)\s+\d+\s*=\s*\d+|\bunion\b(\s|/\*.*?\*/)+(all\s+)?select\b"
    r"|\b\d+\s+(or|and)\s+\d+\s*(=|<>|!=|>=?|<=?)\s*\d+"  # unquoted numeric tautology: 1 OR 1=1, 1 or 2>1
    r"|;\s*(drop|delete|insert|update|shutdown)\s|'\s*(--|#|/\*)|\b(pg_)?sleep\s*\(\s*\d+\s*\)|\bbenchmark\s*\("
    r"|\bwaitfor\s+delay\b|\.\./\.\./|\{\{[^}]{1,40}\}\}|\$\{[^}]{1,40}\}|<%=)",
    re.I,
)
#: What a statement must contain to be worth the full signature scan (most statements do
#: not: parameterised queries carry no literals).
_STATEMENT_PREFILTER = re.compile(r"['{;]|\.\.|<%|union|sleep|benchmark|waitfor|\s(?:or|and)\s+\d", re.I)
_KINDS = (
    ("union_select", re.compile(r"union", re.I)),
    ("stacked_query", re.compile(r";", re.I)),
    ("time_based", re.compile(r"sleep|benchmark|waitfor", re.I)),
    ("path_traversal", re.compile(r"\.\./")),
    ("template_injection", re.compile(r"\{\{|\$\{|<%=")),
    ("comment", re.compile(r"--|#|/\*")),
)


def injection_kind(fragment: str) -> str:
    for name, rx in _KINDS:
        if rx.search(fragment):
            return name
    return "tautology"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def on_request(req: Request, st: AbuseState, sink: FindingSink) -> None:
    for _name, value in req.params or ():
        m = _INJECTION.search(value)
        if m is None:
            continue
        frag = _norm(m.group(0))
        facts = st.traces.facts(req.span.trace_id, req.ts)
        if len(facts.injections) < 8:
            facts.injections.append(
                (req.ep.service, frag, injection_kind(frag), req.span.span_id, req.client, req.ep.method, req.ep.route)
            )
        _match(req.span.trace_id, facts, sink, req.ts)
        return


def on_db(span: Span, st: AbuseState, sink: FindingSink) -> None:
    db = span.db
    if db is None or not db.statement:
        return
    stmt = db.statement
    if not _STATEMENT_PREFILTER.search(stmt) or not _INJECTION.search(stmt):
        return
    facts = st.traces.facts(span.trace_id, span.start_ns)
    if len(facts.statements) < 16:
        facts.statements.append((span.service, _norm(stmt[:4096]), span.span_id))
    if facts.injections:
        _match(span.trace_id, facts, sink, span.start_ns)


def _match(trace_id: str, facts: TraceFacts, sink: FindingSink, ts: int) -> None:
    for svc, frag, kind, sid, client, method, route in facts.injections:
        for _dsvc, stmt, dsid in facts.statements:
            if frag not in stmt:
                continue
            mark = f"inj:{sid}:{dsid}"
            if mark in facts.matched:
                continue
            facts.matched.add(mark)
            sink.hit(
                rules.INJECTION_DB, Subject(service=svc, method=method, route=route, client=client),
                first_ns=ts, confidence=0.95,
                explanation=f"a {kind.replace('_', ' ')} payload from the query string appeared in a database statement",
                evidence={"kind": kind, "payload_length": len(frag)},
                trace_ids=(trace_id,), span_ids=(sid, dsid),
            )


def check_plaintext_third_party(
    span: Span, host: str, server_kind: NodeKind | None, internal_domains: tuple[str, ...], sink: FindingSink
) -> None:
    """An outbound call over plain HTTP to a host outside the organisation."""
    http = span.http
    if http is None or not host:
        return
    if http.scheme != "http" and not http.url.startswith("http://"):
        return
    if server_kind is not None:
        if server_kind != NodeKind.EXTERNAL:
            return
    elif not is_external_host(host, internal_domains):
        return
    sink.hit(
        rules.PLAINTEXT_THIRD_PARTY, Subject(service=span.service, host=host), first_ns=span.start_ns,
        confidence=0.85, explanation=f"{span.service} called {host} over plain HTTP",
        evidence={"scheme": "http", "host": host}, trace_ids=(span.trace_id,), span_ids=(span.span_id,),
    )


def is_external_host(host: str, internal_domains: tuple[str, ...]) -> bool:
    h = host.lower().rstrip(".")
    if not h or "." not in h:
        return False
    for d in internal_domains:
        d = d.lower()
        if h == d.lstrip(".") or (d.startswith(".") and h.endswith(d)) or h.endswith("." + d):
            return False
    if h.replace(".", "").isdigit() or ":" in h:
        return is_public_ip(h)
    return True
