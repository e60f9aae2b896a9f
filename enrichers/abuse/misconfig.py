"""Security misconfiguration (API8): stack traces or SQL disclosed on errors,
debug and management endpoints that answer, CORS that allows any origin with
credentials, missing security headers, and public clients over plain HTTP."""

from __future__ import annotations

import re

from agent.model import Severity
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.identity import is_public_ip

_STACK = re.compile(
    r"(Traceback \(most recent call last\)|^\s+at [\w$.]+\([\w$]+\.(java|kt|scala):\d+\)|Exception in thread"
    r"|\bat [\w.$<>]+ in [/\\\w.]+:line \d+|goroutine \d+ \[running\]|\.rb:\d+:in `"
    r"|File \"[^\"]+\", line \d+)",
    re.M,
)
_SQL = re.compile(
    r"(You have an error in your SQL syntax|syntax error at or near|ORA-\d{5}|SQLSTATE\[|PG::\w+Error"
    r"|sqlite3?\.\w*Error|Unclosed quotation mark|quoted string not properly terminated"
    r"|\bSELECT\b[^;]{1,200}\bFROM\b|psycopg2\.\w+|java\.sql\.SQL\w*Exception)",
    re.I,
)


def check_error(req: Request, sink: FindingSink) -> None:
    """Stack traces or SQL in the error response body, or SQL in a 5xx exception."""
    http = req.http
    found: list[str] = []
    where = ""
    body = http.response_body
    if body:
        text = body[:16384]
        if _STACK.search(text):
            found.append("stack_trace")
        if _SQL.search(text):
            found.append("sql")
        where = "response_body"
    if not found and req.status >= 500:
        for exc in req.span.exceptions:
            if _SQL.search(exc.message[:4096]):
                found.append("sql")
                where = "exception_event"
                break
    if not found:
        return
    sink.hit(
        rules.ERROR_DISCLOSURE, req.ep.subject(), first_ns=req.ts, confidence=0.9 if where == "response_body" else 0.6,
        explanation=f"{' and '.join(found)} in the {where.replace('_', ' ')} of a {req.status} response",
        evidence={"kinds": found, "where": where, "status": req.status},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )


#: Health and readiness checks: meant to answer anyone (load balancers, orchestrators).
_HEALTH = re.compile(r"(^|/)(actuator/health|healthz|readyz|livez)(/|$)", re.I)


def check_debug(req: Request, sink: FindingSink) -> None:
    if not (200 <= req.status < 400):
        return
    path = req.http.path or req.ep.route
    if ".." not in path and (_HEALTH.search(path) or _HEALTH.search(req.ep.route)):
        return
    who = req.who
    if who.uac == "probe" and not who.public:
        return  # an orchestrator's or load balancer's probe (a public "probe" may be spoofed)
    # Certain exposure: a client on the internet got the management endpoint's content.
    exposed = who.public and 200 <= req.status < 300
    sink.hit(
        rules.DEBUG_ENDPOINT, req.ep.subject(), first_ns=req.ts, confidence=0.9 if exposed else 0.7,
        severity=Severity.HIGH if exposed else Severity.MEDIUM,
        explanation=f"{req.ep.method} {path} answered {req.status}" + (" to a public client" if exposed else ""),
        evidence={"status": req.status, "last_client": req.client, "public_client": who.public},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )


#: Response headers whose presence in the capture shows security headers are captured.
_SECURITY_HEADERS = ("x-content-type-options", "strict-transport-security", "content-security-policy",
                     "x-frame-options", "referrer-policy", "permissions-policy", "cross-origin-opener-policy")


def check_headers(req: Request, st: AbuseState, sink: FindingSink) -> None:
    h = req.http.response_headers
    acao = h.get("access-control-allow-origin", "").strip()
    if acao and h.get("access-control-allow-credentials", "").strip().lower() == "true":
        # A reflected origin cannot be told from an allow-listed one by one response; only
        # the wildcard and "null" are certain.
        if acao == "*" or acao == "null":
            sink.hit(
                rules.CORS, req.ep.subject(), first_ns=req.ts, confidence=0.9,
                explanation=f"Access-Control-Allow-Origin {acao!r} with Access-Control-Allow-Credentials: true",
                evidence={"allow_origin": acao, "allow_credentials": True},
                trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
            )
    mark = "hdr:" + req.ep.key
    if mark in st.reported_once or not (200 <= req.status < 300):
        return
    # Judged only on evidence and where it matters: the capture must include security
    # headers (with only content-type captured, "not captured" is not "not sent"), and the
    # response must go to a browser (these headers protect browsers, not service callers).
    if not any(k in h for k in _SECURITY_HEADERS) or req.who.uac != "browser":
        return
    st.reported_once.add(mark)
    missing = []
    if "x-content-type-options" not in h:
        missing.append("x-content-type-options")
    if req.http.scheme == "https" and "strict-transport-security" not in h:
        missing.append("strict-transport-security")
    if missing:
        sink.hit(
            rules.SECURITY_HEADERS, req.ep.subject(), first_ns=req.ts, confidence=0.6,
            explanation=f"response lacks {', '.join(missing)}",
            evidence={"missing": missing}, trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
        )


def check_plaintext(req: Request, sink: FindingSink) -> None:
    http = req.http
    if http.scheme != "http" or not is_public_ip(http.client_address):
        return
    if http.request_headers.get("x-forwarded-proto", "").lower() == "https":
        return
    sink.hit(
        rules.PLAINTEXT_EDGE, req.ep.subject(), first_ns=req.ts, confidence=0.8,
        explanation=f"a public client ({req.client}) called {req.ep.route} over plain HTTP",
        evidence={"scheme": "http", "last_client": req.client},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )
