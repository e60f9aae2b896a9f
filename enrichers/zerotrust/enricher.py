"""The zero-trust enricher: every observed call checked against the policy.

It reads the calls the call-graph enricher publishes in ``state.batch.calls``,
evaluates each against the policy (``config.policy``), checks the tokens it can
see, and keeps per-edge verdicts in the State part ``"zerotrust"`` for the graph
and the TUI. Without a policy only the token checks run and every edge is
"unknown".

The policy is reloaded on SIGHUP (the runtime calls :meth:`reload`) and when the
file changes (checked in :meth:`tick`). A bad new file keeps the old policy in
force, is logged, and opens a ``zerotrust.policy_invalid`` finding saying why.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.model import Call, Finding, Severity, Span, SpanKind, Subject
from enrichers.base import Enricher
from enrichers.zerotrust.evaluator import (
    DIRECTION_EGRESS,
    UNKNOWN,
    Evaluation,
    Evaluator,
    Violation,
    call_auth,
    call_endpoint,
    call_tls,
    direction_of,
    server_view,
)
from enrichers.zerotrust.policy import Policy, PolicyError, load_policy
from enrichers.zerotrust.state import MAX_ENDPOINTS_PER_EDGE, MAX_TOKENS, ZeroTrustState, auth_label
from enrichers.zerotrust.tokens import TokenChecker, TokenIssue, load_weak_secrets

if TYPE_CHECKING:
    from agent.state import State

log = logging.getLogger("apiward.zerotrust")

RULE_PREFIX = "zerotrust."
MAX_SAMPLES = 10

#: kind -> (title, severity, OWASP API Top 10 2023 category, remediation)
KINDS: dict[str, tuple[str, Severity, str | None, str]] = {
    "unlisted_edge": (
        "Call over an edge the policy does not allow", Severity.MEDIUM, "API5:2023",
        "If the call is expected, add an allow rule for this edge; otherwise stop the caller.",
    ),
    "endpoint_not_allowed": (
        "Call to an endpoint outside the rule's methods and routes", Severity.MEDIUM, "API5:2023",
        "Add the method and route to the rule if intended; otherwise deny it at the server.",
    ),
    "missing_auth": (
        "Missing authentication where the policy requires it", Severity.HIGH, "API2:2023",
        "Make the caller authenticate with an accepted scheme and the server reject calls without it.",
    ),
    "plaintext": (
        "Plaintext call where the policy requires TLS", Severity.MEDIUM, "API8:2023",
        "Serve and call this edge over TLS (https, or mTLS through a mesh).",
    ),
    "unexpected_egress": (
        "Egress to a host the policy does not allow", Severity.MEDIUM, None,
        "Add the host to the egress allowlist if intended; otherwise block it at the egress gateway.",
    ),
    "unexpected_ingress": (
        "Outside client reached a service not open to ingress", Severity.HIGH, "API5:2023",
        "Expose only the services listed under ingress; route outside traffic through the gateway.",
    ),
    "identity_not_propagated": (
        "End-user identity not propagated", Severity.LOW, None,
        "Forward the end-user identity (token or header) on downstream calls.",
    ),
    "sensitive_data_not_allowed": (
        "Sensitive data sent to a destination not allowed to receive it", Severity.HIGH, "API3:2023",
        "Stop sending these data types there, or allow them for this destination in the policy.",
    ),
    "drift": (
        "Traffic not seen when the policy was learned", Severity.LOW, "API9:2023",
        "Review the change; if it is intended, re-run 'apiward policy learn' or add a rule.",
    ),
    "jwt_alg_none": (
        "Unsigned JWT (alg 'none')", Severity.HIGH, "API2:2023",
        "Reject tokens with alg 'none'; pin the accepted algorithms at the verifier.",
    ),
    "jwt_expired_accepted": (
        "Expired JWT accepted", Severity.HIGH, "API2:2023",
        "Validate 'exp' on every request (with a small leeway) and answer 401 when expired.",
    ),
    "jwt_audience_mismatch": (
        "JWT audience does not match the receiving service", Severity.MEDIUM, "API2:2023",
        "Validate 'aud' at each service and issue tokens per audience.",
    ),
    "jwt_weak_secret": (
        "JWT signed with a common weak secret", Severity.CRITICAL, "API2:2023",
        "Rotate the signing key to a long random secret (or use an asymmetric algorithm) now.",
    ),
    "token_reuse": (
        "Same credential used by different clients", Severity.MEDIUM, "API2:2023",
        "Issue one credential per client; investigate a possibly leaked token.",
    ),
    "evidence_unavailable": (
        "Zero-trust evidence not captured", Severity.INFO, None,
        "Enable the instrumentation setting named in the evidence.",
    ),
    "policy_invalid": (
        "Policy file rejected; the previous policy stays in force", Severity.LOW, None,
        "Fix the policy file at the line named in the explanation; it reloads on save or SIGHUP.",
    ),
}

#: Violation kinds about a whole edge (the rest are about an endpoint).
EDGE_KINDS = frozenset({"unlisted_edge", "unexpected_egress", "unexpected_ingress"})


def hint_for(kind: str, enduser_header: str = "") -> tuple[str, str]:
    """(instrumentation setting, explanation) for evidence that is missing."""
    if kind == "auth":
        return (
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=authorization,x-api-key,host",
            "Request headers are not captured, so authentication is 'unknown' on these edges. "
            "Set OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=authorization,x-api-key,host "
            "on the servers (and ..._CLIENT_REQUEST on callers of external hosts). 'host' is always "
            "sent, so its presence shows capture is on and a missing credential is really missing. "
            "apiward keeps only the scheme and a keyed hash, never the credential.",
        )
    if kind == "tls":
        return (
            "url.scheme",
            "Spans carry neither url.scheme/http.scheme nor tls.* attributes, so TLS is 'unknown'. "
            "Use HTTP instrumentation that records url.scheme (OTEL_SEMCONV_STABILITY_OPT_IN=http).",
        )
    if kind == "enduser":
        if enduser_header:
            setting = f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST={enduser_header}"
            return setting, f"The end-user header is not captured; set {setting}, or set enduser.id on spans."
        return "enduser.id", "Spans carry no enduser.id and no request headers; set enduser.id on server spans."
    if kind == "endpoint":
        return "http.route", "Spans carry no route, so per-endpoint rules cannot be checked; record http.route."
    return kind, f"{kind} evidence is not captured."


@dataclass(slots=True)
class _Agg:
    kind: str
    subject: Subject
    title: str
    explanation: str
    evidence: dict[str, Any]
    confidence: float = 1.0
    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    trace_ids: list[str] = field(default_factory=list)
    span_ids: list[str] = field(default_factory=list)

    def add(self, span: Span) -> None:
        self.count += 1
        ts = span.start_ns
        if not self.first_ns or ts < self.first_ns:
            self.first_ns = ts
        self.last_ns = max(self.last_ns, ts)
        if len(self.trace_ids) < MAX_SAMPLES and span.trace_id not in self.trace_ids:
            self.trace_ids.append(span.trace_id)
            self.span_ids.append(span.span_id)

    def finding(self) -> Finding:
        _title, sev, owasp, fix = KINDS[self.kind]
        return Finding(
            rule=RULE_PREFIX + self.kind,
            title=self.title,
            severity=sev,
            subject=self.subject,
            first_seen_ns=self.first_ns,
            last_seen_ns=self.last_ns,
            count=self.count,
            owasp=owasp,
            confidence=self.confidence,
            explanation=self.explanation,
            remediation=fix,
            evidence=self.evidence,
            trace_ids=tuple(self.trace_ids),
            span_ids=tuple(self.span_ids),
            category="zerotrust",
        )


def _sensitive_types(entries: Iterable[Any]) -> set[str]:
    out: set[str] = set()
    for e in entries:
        t = getattr(e, "type", None)
        if t is None and isinstance(e, Mapping):
            t = e.get("type")
        if t:
            out.add(str(t))
    return out


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _count(group: list[Any], ts: int) -> None:
    """One more call in a group [count, first ts, last ts, ...]."""
    group[0] += 1
    if ts < group[1]:
        group[1] = ts
    elif ts > group[2]:
        group[2] = ts


class ZeroTrustEnricher(Enricher):
    """See the module docstring. Construct with the agent ``Config`` (or ``None``)."""

    name = "zerotrust"

    def __init__(self, config: Any = None, *, policy: Policy | None = None) -> None:
        section: Mapping[str, Any] = config.section("zerotrust") if config is not None else {}
        self.policy_path: str = str(getattr(config, "policy", None) or "")
        self.policy: Policy | None = policy
        self.evaluator: Evaluator | None = Evaluator(policy) if policy is not None else None
        self.policy_error = ""
        self._stamp: tuple[int, int] | None = None
        self._new_policy = False
        self._pending: list[Finding] = []
        weak = section.get("weak_secrets")
        self._weak_secrets = load_weak_secrets(weak) if weak else load_weak_secrets()
        self._checker: TokenChecker | None = None
        # (token fingerprint, trace id) -> first client: tells passing a token on from reuse.
        self._chains: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._calls_done = 0  # calls of state.batch.calls already analysed
        self._token_checked: set[str] = set()  # server spans token-checked without a call
        #: of those, spans with a parent not paired yet: who sent the credential is known only
        #: once the call graph pairs them, so token reuse waits for that call
        self._reuse_deferred: set[str] = set()
        self._labels: dict[tuple[str, ...], str] = {}  # credential schemes -> auth_label (bounded)
        if self.policy_path and policy is None:
            # A bad policy at start-up is a usage error (PolicyError is a ConfigError).
            self._stamp = _stamp(self.policy_path)
            self._install(load_policy(self.policy_path))

    # ----------------------------------------------------------- policy lifecycle
    def _install(self, policy: Policy) -> None:
        self.policy = policy
        self.evaluator = Evaluator(policy)
        self.policy_error = ""
        self._new_policy = True

    def reload(self) -> bool:
        """Load the policy file again; on error keep the old policy and say why."""
        if not self.policy_path:
            return False
        self._stamp = _stamp(self.policy_path)
        try:
            policy = load_policy(self.policy_path)
        except PolicyError as exc:
            self.policy_error = str(exc)
            log.warning("%s; the previous policy stays in force", exc)
            now = _now_ns()
            agg = _Agg("policy_invalid", Subject(detail=self.policy_path), KINDS["policy_invalid"][0],
                       str(exc), {"policy": self.policy_path, "error": str(exc)})
            agg.count, agg.first_ns, agg.last_ns = 1, now, now
            self._pending.append(agg.finding())
            return False
        self._install(policy)
        log.info("zero-trust policy %s loaded (%d rules)", self.policy_path, len(policy.rules))
        return True

    def _part(self, state: State) -> ZeroTrustState:
        part: ZeroTrustState = state.part(self.name, lambda: ZeroTrustState(self.policy_path))
        if self._new_policy:
            self._new_policy = False
            if part.policy_path != self.policy_path or part.policy_loaded_ns:
                part.reset_verdicts()
            part.policy_path = self.policy_path
            part.policy_loaded_ns = _now_ns()
        part.policy_error = self.policy_error
        return part

    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        """Reload a changed policy file; check calls the call graph resolved in its tick."""
        if self.policy_path and _stamp(self.policy_path) != self._stamp:
            self.reload()
        if len(state.batch.calls) < self._calls_done:
            self._calls_done = 0
        return self._analyse((), state)

    # ------------------------------------------------------------------ analysis
    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        # The pipeline cleared state.batch before this batch: every call is new.
        self._calls_done = 0
        return self._analyse(batch, state)

    def _analyse(self, batch: Sequence[Span], state: State) -> list[Finding]:
        part = self._part(state)
        if self._checker is None:
            self._checker = TokenChecker(state.secret, self._weak_secrets)
        aggs: dict[tuple[str, str], _Agg] = {}
        hints: set[str] = set()
        all_calls = state.batch.calls
        calls = [c for c in all_calls[self._calls_done :] if isinstance(c, Call)]
        self._calls_done = len(all_calls)
        if self.evaluator is None:
            due: list[Call] = []
            groups = self._group_unevaluated(calls, hints, due)
            # No violations without a policy: the token findings come in call order either way.
            for call in due:
                self._check_call_tokens(aggs, part, call)
        else:
            groups = self._evaluate(calls, state.batch.sensitive, aggs, part, hints)
        for n, first_ns, last_ns, call, observed in groups.values():
            self._observe(part, call, n, first_ns, last_ns, *observed)
        if batch:
            self._check_uncovered_tokens(aggs, part, batch, calls)
        out = [a.finding() for a in aggs.values()]
        out.extend(self._hints(part, hints))
        if self._pending:
            out.extend(self._pending)
            self._pending = []
        return out

    # Observations are counted per group of alike calls (most calls of a batch repeat a
    # few edges and endpoints), once per batch: see _observe. A group is
    # [calls, first start_ns, last start_ns, first call, (direction, method, route,
    # credential label, tls, verdict, violation kinds)], keyed by the call's edge
    # and what it observed.
    def _group_unevaluated(
        self, calls: list[Call], hints: set[str], due: list[Call],
    ) -> dict[tuple[Any, ...], list[Any]]:
        """Group the calls when no policy is in force (every verdict "unknown"); list in
        ``due`` the calls :meth:`_check_call_tokens` has something to do with (few: a
        server span checked before, or request headers on either side)."""
        groups: dict[tuple[Any, ...], list[Any]] = {}
        get = groups.get
        labels = self._labels
        checked = self._token_checked
        for call in calls:
            ss = call.server_span
            if ss is not None and (ss.span_id in checked or (ss.http is not None and ss.http.request_headers)):
                due.append(call)
            else:
                cs = call.client_span
                if cs is not None and cs.http is not None and cs.http.request_headers:
                    due.append(call)
            auth = call.auth
            if auth is None:
                auth = call_auth(call)  # evidence of a call not built by the call graph
            tls = call.tls
            if tls is None:
                tls = call_tls(call)
            ep = call.endpoint
            if ep is not None and ep.route:  # call_endpoint's first case, inlined (most calls)
                m, r = ep.method.upper(), ep.route
            else:
                m, r = call_endpoint(call)
            label = "?" if auth is None else labels.get(auth) or self._label(auth)
            ts = call.span.start_ns
            # The direction follows from the node kinds: no need to key on it.
            gk = (call.client, call.server, call.connection_type, call.client_kind, call.server_kind,
                  m, r, label, tls)
            g = get(gk)
            if g is None:
                if auth is None:
                    hints.add("auth")
                groups[gk] = [1, ts, ts, call, (direction_of(call), m, r, label, tls, UNKNOWN, ())]
            else:
                _count(g, ts)
        return groups

    def _label(self, auth: tuple[str, ...]) -> str:
        """:func:`auth_label`, remembered per scheme tuple (a few distinct ones, bounded)."""
        labels = self._labels
        if len(labels) >= 256:
            labels.clear()
        label = labels[auth] = auth_label(auth)
        return label

    def _evaluate(
        self, calls: list[Call], sensitive: Mapping[str, Any], aggs: dict[tuple[str, str], _Agg],
        part: ZeroTrustState, hints: set[str],
    ) -> dict[tuple[Any, ...], list[Any]]:
        """Check every call against the policy, and group them (as in :meth:`_group_unevaluated`)."""
        evaluator = self.evaluator
        assert evaluator is not None
        groups: dict[tuple[Any, ...], list[Any]] = {}
        # The evaluator reads the data types only when the policy has a sensitive section.
        sensitive = sensitive if evaluator.policy.has_sensitive else {}
        labels = self._labels
        for call in calls:
            types: set[str] = set()
            if sensitive:
                for s in (call.span, call.client_span, call.server_span):  # no list, no set per span
                    if s is not None:
                        found = sensitive.get(s.span_id)
                        if found:
                            types |= _sensitive_types(found)
            auth = call_auth(call)
            tls = call_tls(call)
            ev = evaluator.evaluate(call, types)
            hints.update(ev.unknown)
            label = "?" if auth is None else labels.get(auth) or self._label(auth)
            gk = (call.client, call.server, call.connection_type, call.client_kind, call.server_kind,
                  ev.direction, ev.method, ev.route, label, tls, ev.verdict,
                  tuple(v.kind for v in ev.violations) if ev.violations else ())
            ts = call.span.start_ns
            g = groups.get(gk)
            if g is None:
                groups[gk] = [1, ts, ts, call, gk[5:]]
            else:
                _count(g, ts)
            for v in ev.violations:
                self._add_violation(aggs, call, ev, v)
            self._check_call_tokens(aggs, part, call)
        return groups

    def _observe(
        self, part: ZeroTrustState, call: Call, n: int, first_ns: int, last_ns: int,
        direction: str, method: str, route: str, label: str, tls: bool | None, verdict: str,
        kinds: tuple[str, ...],
    ) -> None:
        """Count ``n`` alike calls (``call`` is the first of them) into their edge and endpoint."""
        rec = part.edge(call.client, call.server, call.connection_type,
                        call.client_kind.value, call.server_kind.value, n)
        if rec is None:
            return
        rec.direction = direction
        if direction == DIRECTION_EGRESS and not rec.host:
            rec.host = server_view(call).host
        rec.seen.add_many(n, first_ns, last_ns, label, tls)
        if method or route:
            key = f"{method or '*'} {route or '/'}"
            ep = rec.endpoints.get(key)
            if ep is None and len(rec.endpoints) < MAX_ENDPOINTS_PER_EDGE:
                ep = rec.endpoints[key] = type(rec.seen)()
            if ep is not None:
                ep.add_many(n, first_ns, last_ns, label, tls)
        rec.verdicts[verdict] = rec.verdicts.get(verdict, 0) + n
        for kind in kinds:
            rid = RULE_PREFIX + kind
            rec.rules[rid] = rec.rules.get(rid, 0) + n

    def _add_violation(self, aggs: dict[tuple[str, str], _Agg], call: Call, ev: Evaluation, v: Violation) -> None:
        host = server_view(call).host if ev.direction == DIRECTION_EGRESS else ""
        edge_level = v.kind in EDGE_KINDS or (v.kind == "drift" and v.evidence.get("drift") == "new_edge")
        detail = ""
        if v.kind == "drift":
            detail = "new edge" if edge_level else "new endpoint"
        if edge_level:
            subject = Subject(client=call.client, server=call.server, host=host, detail=detail)
        else:
            subject = Subject(service=call.server, method=ev.method, route=ev.route, client=call.client,
                              server=call.server, host=host, detail=detail)
        key = (v.kind, subject.key)
        agg = aggs.get(key)
        if agg is None:
            title = KINDS[v.kind][0]
            if v.kind == "drift":
                title = f"New {'edge' if edge_level else 'endpoint'} since the policy was learned"
            evidence: dict[str, Any] = {
                "policy": self.policy_path,
                "policy_rule": v.rule.describe() if v.rule is not None else {
                    "default_action": self.policy.default_action if self.policy else "alert"},
                "connection_type": call.connection_type,
                "direction": ev.direction,
            }
            evidence.update({k: val for k, val in v.evidence.items() if val not in ("", None)})
            if edge_level and (ev.method or ev.route):
                evidence["endpoint"] = f"{ev.method} {ev.route}".strip()
            agg = aggs[key] = _Agg(v.kind, subject, title, f"{subject.label}: {v.detail}.", evidence)
        agg.add(call.span)

    # ------------------------------------------------------------------ tokens
    def _check_uncovered_tokens(
        self, aggs: dict[tuple[str, str], _Agg], part: ZeroTrustState, batch: Sequence[Span], calls: list[Call],
    ) -> None:
        """Token checks of the server spans (with request headers) no call covers: no call
        graph, or not paired yet. A later call over them is not checked twice for tokens:
        it is keyed by span (see :meth:`_check_call_tokens`)."""
        server = SpanKind.SERVER
        todo = [s for s in batch if s.kind == server and s.http is not None and s.http.request_headers]
        if not todo:
            return
        covered = {s.span_id for c in calls for s in (c.span, c.client_span, c.server_span) if s is not None}
        for span in todo:
            if span.span_id in covered:
                continue
            http = span.http
            assert http is not None
            if len(self._token_checked) > 100_000:
                self._token_checked.clear()
                self._reuse_deferred.clear()
            self._token_checked.add(span.span_id)
            client = http.client_address or http.network_peer_address
            defer = bool(span.parent_span_id)  # a caller that has not reported yet
            if defer:
                self._reuse_deferred.add(span.span_id)
            self._check_tokens(aggs, part, span, client, span.service, span.service, reuse=not defer)

    def _check_call_tokens(self, aggs: dict[tuple[str, str], _Agg], part: ZeroTrustState, call: Call) -> None:
        if call.server_span is not None and call.server_span.span_id in self._token_checked:
            sid = call.server_span.span_id
            self._token_checked.discard(sid)
            if sid in self._reuse_deferred:  # JWT checks done; reuse now that the caller is known
                self._reuse_deferred.discard(sid)
                self._check_tokens(aggs, part, call.server_span, call.client, call.server, call.server,
                                   jwt_checks=False)
            return
        span = call.server_span
        if span is None or span.http is None or not span.http.request_headers:
            span = call.client_span
        if span is None or span.http is None or not span.http.request_headers:
            return
        self._check_tokens(aggs, part, span, call.client, call.server, call.server,
                           status_span=call.server_span or call.span)

    def _check_tokens(
        self,
        aggs: dict[tuple[str, str], _Agg],
        part: ZeroTrustState,
        span: Span,
        client: str,
        receiver: str,
        service: str,
        status_span: Span | None = None,
        *,
        jwt_checks: bool = True,
        reuse: bool = True,
    ) -> None:
        checker = self._checker
        if checker is None:
            return
        creds = checker.credentials(span)
        if not creds:
            return
        st = status_span or span
        status = st.http.status_code if st.http is not None else 0
        audiences = self.policy.audiences.get(receiver) if self.policy is not None else None
        for cred in creds:
            issues: list[TokenIssue] = []
            info = checker.jwt_info(cred) if jwt_checks else None
            if info is not None:
                issues.extend(checker.check_jwt(
                    info, receiver=receiver, status_code=status, time_ns=span.start_ns,
                    audiences=audiences, route=st.http.route or st.http.path if st.http is not None else "",
                ))
            reused = checker.check_reuse(part.tokens, cred, client, MAX_TOKENS, span.trace_id,
                                         self._chains) if reuse else None
            if reused is not None:
                issues.append(reused)
            for issue in issues:
                if issue.kind == "token_reuse":
                    subject = Subject(service=service, detail=f"credential {issue.evidence['token_hash']}")
                else:
                    subject = Subject(service=service, client=client, server=receiver)
                key = (issue.kind, subject.key)
                agg = aggs.get(key)
                if agg is None:
                    agg = aggs[key] = _Agg(issue.kind, subject, KINDS[issue.kind][0],
                                           f"{subject.label}: {issue.detail}.", dict(issue.evidence),
                                           confidence=issue.confidence)
                elif issue.kind == "token_reuse":
                    agg.evidence = dict(issue.evidence)
                agg.add(span)

    # ------------------------------------------------------------------- hints
    def _hints(self, part: ZeroTrustState, kinds: set[str]) -> list[Finding]:
        out = []
        header = self.policy.enduser_header if self.policy is not None else ""
        for kind in sorted(kinds - part.hints):
            part.hints.add(kind)
            setting, text = hint_for(kind, header)
            log.info("zero-trust: %s", text)
            now = _now_ns()
            agg = _Agg("evidence_unavailable", Subject(detail=f"{kind} evidence"),
                       f"Zero-trust {kind} evidence not captured: verdicts are 'unknown'", text,
                       {"missing": kind, "setting": setting})
            agg.count, agg.first_ns, agg.last_ns = 1, now, now
            out.append(agg.finding())
        return out


def _now_ns() -> int:
    return time.time_ns()
