"""Evaluate one observed call against a policy: allowed, violation or unknown.

The evaluator is pure: it reads a :class:`~agent.model.Call` and a
:class:`~enrichers.zerotrust.policy.Policy` and returns an :class:`Evaluation`
listing the broken rules and the evidence that was missing. Missing evidence
(headers not captured, scheme not recorded) gives "unknown", never a violation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from agent.model import Call, NodeKind, Span, auth_evidence, tls_evidence
from enrichers.zerotrust.policy import (
    ANY,
    EXTERNAL,
    NO_REQUIREMENT,
    Identity,
    Policy,
    Requirement,
    Rule,
    host_matches,
)

ALLOWED = "allowed"
VIOLATION = "violation"
UNKNOWN = "unknown"

DIRECTION_INTERNAL = "internal"
DIRECTION_EGRESS = "egress"
DIRECTION_INGRESS = "ingress"

_OUTSIDE_CLIENTS = (NodeKind.CLIENT, NodeKind.INGRESS)
_SERVICE_LIKE = (NodeKind.SERVICE, NodeKind.FUNCTION, NodeKind.QUEUE)
_PREFIXES = ("ext:", "db:", "client:")

#: Schemes that satisfy each scheme a policy can require.
ACCEPTS = {
    "bearer": frozenset({"bearer", "jwt"}),
    "jwt": frozenset({"jwt"}),
    "basic": frozenset({"basic"}),
    "apikey": frozenset({"apikey"}),
    "mtls": frozenset({"mtls"}),
}
#: Schemes that are not a credential by themselves.
NOT_CREDENTIALS = frozenset({"enduser"})

SA_ATTRS = ("k8s.serviceaccount.name", "k8s.service_account.name", "k8s.pod.service_account")
SPIFFE_ATTRS = ("spiffe.id", "tls.client.spiffe_id", "tls.client.subject", "tls.client.san")


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the policy can match on for one end of a call."""

    id: str
    kind: NodeKind
    service: str = ""
    namespace: str = ""
    address: str = ""
    host: str = ""
    service_account: str = ""
    spiffe: str = ""


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule. ``kind`` is the short finding kind (``unlisted_edge``, ...)."""

    kind: str
    rule: Rule | None = None
    detail: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evaluation:
    verdict: str
    direction: str
    method: str
    route: str
    violations: tuple[Violation, ...] = ()
    unknown: tuple[str, ...] = ()
    rule: Rule | None = None


def _strip_prefix(node_id: str) -> str:
    for p in _PREFIXES:
        if node_id.startswith(p):
            return node_id[len(p) :]
    return node_id


def _first_attr(spans: Iterable[Span | None], names: Iterable[str], resource: bool) -> str:
    for s in spans:
        if s is None:
            continue
        src = s.resource.attributes if resource else s.attributes
        for n in names:
            v = src.get(n)
            if v:
                return str(v)
    return ""


def client_view(call: Call) -> NodeView:
    cs, ss = call.client_span, call.server_span
    address = ""
    if call.client_kind in _OUTSIDE_CLIENTS:
        for s in (ss, call.span):
            if s is not None and s.http is not None:
                address = s.http.client_address or s.http.network_peer_address
                if address:
                    break
        if not address:
            address = _strip_prefix(call.client)
    spiffe = _first_attr((cs,), ("spiffe.id",), resource=True) or _first_attr(
        (ss,), SPIFFE_ATTRS, resource=False
    )
    if spiffe and not spiffe.startswith("spiffe://"):
        idx = spiffe.find("spiffe://")
        spiffe = spiffe[idx:].split(",")[0].strip() if idx >= 0 else ""
    return NodeView(
        id=call.client,
        kind=call.client_kind,
        service=cs.service if cs is not None else call.client,
        namespace=cs.resource.namespace if cs is not None else "",
        address=address,
        service_account=_first_attr((cs,), SA_ATTRS, resource=True),
        spiffe=spiffe,
    )


def server_view(call: Call) -> NodeView:
    cs, ss = call.client_span, call.server_span
    host = ""
    if call.server_kind == NodeKind.EXTERNAL:
        for s in (cs, call.span):
            if s is not None and s.http is not None and s.http.server_address:
                host = s.http.server_address
                break
        if not host:
            host = _strip_prefix(call.server)
            if host.count(":") == 1:
                host = host.partition(":")[0]
    address = ""
    if host:
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            address = ""
    return NodeView(
        id=call.server,
        kind=call.server_kind,
        service=ss.service if ss is not None else call.server,
        namespace=ss.resource.namespace if ss is not None else "",
        address=address,
        host=host.lower(),
        service_account=_first_attr((ss,), SA_ATTRS, resource=True),
        spiffe=_first_attr((ss,), ("spiffe.id",), resource=True),
    )


def direction_of(call: Call) -> str:
    if call.server_kind == NodeKind.EXTERNAL:
        return DIRECTION_EGRESS
    if call.client_kind in _OUTSIDE_CLIENTS:
        return DIRECTION_INGRESS
    return DIRECTION_INTERNAL


def call_endpoint(call: Call) -> tuple[str, str]:
    """(method, route template) of a call, the same way for learning and checking."""
    ep = call.endpoint
    if ep is not None and (ep.method or ep.route):
        return ep.method.upper(), ep.route
    span = call.server_span or call.span
    for s in (span, call.client_span):
        if s is None:
            continue
        if s.http is not None and (s.http.route or s.http.path):
            return s.http.method, s.http.route or s.http.path
        if s.rpc is not None:
            return "RPC", f"/{s.rpc.service}/{s.rpc.method}"
        if s.messaging is not None:
            return s.messaging.operation.upper(), s.messaging.destination
        if s.db is not None:
            return s.db.operation.upper(), s.db.name
    return "", ""


def call_auth(call: Call) -> tuple[str, ...] | None:
    if call.auth is not None:
        return call.auth
    # auth_evidence of each side (it answers None at once for spans without a source of
    # evidence); call.span is one of the two sides for the call graph's calls.
    ss, cs, span = call.server_span, call.client_span, call.span
    for s in (ss, cs) if span is ss or span is cs else (ss, cs, span):
        if s is not None:
            ev = auth_evidence(s)
            if ev is not None:
                return ev
    return None


def call_tls(call: Call) -> bool | None:
    if call.tls is not None:
        return call.tls
    for s in (call.client_span, call.server_span, call.span):
        if s is not None:
            ev = tls_evidence(s)
            if ev is not None:
                return ev
    return None


class Matcher:
    """Resolves ``from``/``to`` references of one policy against node views."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.identities: Mapping[str, Identity] = policy.identities

    def matches(self, ref: str, node: NodeView, depth: int = 0) -> bool:
        if ref == ANY:
            return True
        if ref == EXTERNAL:
            return node.kind in (*_OUTSIDE_CLIENTS, NodeKind.EXTERNAL)
        if ref == "ingress":
            return node.kind == NodeKind.INGRESS
        ident = self.identities.get(ref)
        if ident is not None:
            return self._identity(ident, node, depth)
        return self._literal(ref, node)

    def any_matches(self, refs: Iterable[str], node: NodeView) -> bool:
        return any(self.matches(r, node) for r in refs)

    def _literal(self, ref: str, node: NodeView) -> bool:
        if ref == node.id:
            return True
        kind = node.kind
        if kind in _SERVICE_LIKE:
            return ref == node.service
        if kind == NodeKind.EXTERNAL:
            return host_matches(ref.lower(), node.host)
        if kind == NodeKind.CLIENT:
            if "/" in ref:
                return _in_cidr(node.address, ref)
            return ref == node.address
        if kind == NodeKind.DATABASE:
            return "db:" + ref == node.id
        return False

    def _identity(self, ident: Identity, node: NodeView, depth: int) -> bool:
        if ident.service:
            return (
                node.kind in _SERVICE_LIKE
                and ident.service == node.service
                and (not ident.namespace or ident.namespace == node.namespace)
            )
        if ident.group:
            if depth > 8:
                return False
            return any(self.matches(m, node, depth + 1) for m in ident.group)
        if ident.cidrs:
            try:
                ip = ipaddress.ip_address(node.address)
            except ValueError:
                return False
            return any(ip in net for net in ident.cidrs)
        if ident.hosts:
            return node.kind == NodeKind.EXTERNAL and any(host_matches(h, node.host) for h in ident.hosts)
        if ident.service_account:
            return ident.service_account == node.service_account and (
                not ident.namespace or ident.namespace == node.namespace
            )
        if ident.spiffe:
            return bool(node.spiffe) and any(fnmatchcase(node.spiffe, p) for p in ident.spiffe)
        return False


def _in_cidr(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _rule_applies(rule: Rule, direction: str, call: Call) -> bool:
    if rule.kind == "egress" and direction != DIRECTION_EGRESS:
        return False
    if rule.kind == "ingress" and direction != DIRECTION_INGRESS:
        return False
    return not rule.connection or rule.connection == call.connection_type


def enduser_propagated(call: Call, header: str) -> bool | None:
    spans = [s for s in (call.server_span, call.client_span, call.span) if s is not None]
    if any(s.enduser_id for s in spans):
        return True
    captured = False
    for s in spans:
        if s.http is not None and s.http.request_headers:
            captured = True
            if header and s.http.request_headers.get(header):
                return True
    return False if captured else None


class Evaluator:
    """Checks calls against one policy. Build once per policy (reload = new evaluator)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.matcher = Matcher(policy)

    def evaluate(self, call: Call, sensitive_types: Iterable[str] = ()) -> Evaluation:
        policy = self.policy
        direction = direction_of(call)
        method, route = call_endpoint(call)
        client = client_view(call)
        server = server_view(call)
        m = self.matcher
        candidates = [
            r
            for r in policy.rules
            if _rule_applies(r, direction, call)
            and m.any_matches(r.sources, client)
            and m.any_matches(r.targets, server)
        ]
        violations: list[Violation] = []
        unknown: list[str] = []
        learned = policy.is_learned
        endpoint_reqs = self._endpoint_requirement(server, method, route)
        chosen: Rule | None = None
        options: list[tuple[Rule | None, Requirement]] = []
        if not candidates:
            if policy.default_action != "allow":
                violations.append(self._unlisted(direction, server, learned))
            if not endpoint_reqs.empty:
                options.append((None, endpoint_reqs))
        else:
            known = bool(method or route)
            permitted = [
                r
                for r in candidates
                if not r.restricts_endpoints or (known and r.allows_endpoint(method, route))
            ]
            if permitted:
                options = [(r, r.require.merged(endpoint_reqs)) for r in permitted]
                chosen = permitted[0]
            elif not known:
                unknown.append("endpoint")
            else:
                first = candidates[0]
                violations.append(
                    Violation(
                        "drift" if learned else "endpoint_not_allowed",
                        first,
                        f"{method} {route} is outside what rule {first.id!r} allows",
                        {"drift": "new_endpoint" if learned else "", "direction": direction},
                    )
                )
        best: tuple[list[Violation], list[str]] | None = None
        for rule, req in options:
            v, u = self._requirements(req, call, rule)
            if best is None or (len(v), len(u)) < (len(best[0]), len(best[1])):
                best = (v, u)
                chosen = rule or chosen
            if not v and not u:
                break
        if best is not None:
            violations.extend(best[0])
            unknown.extend(best[1])
        if policy.has_sensitive and sensitive_types:
            allowed: set[str] = set()
            for s in policy.sensitive:
                if m.any_matches(s.targets, server):
                    allowed |= s.types
            bad = sorted({t.lower() for t in sensitive_types} - allowed)
            if bad:
                violations.append(
                    Violation(
                        "sensitive_data_not_allowed",
                        chosen,
                        f"{', '.join(bad)} may not flow to {server.id}",
                        {"types": bad, "allowed_types": sorted(allowed)},
                    )
                )
        verdict = VIOLATION if violations else (UNKNOWN if unknown else ALLOWED)
        return Evaluation(verdict, direction, method, route, tuple(violations), tuple(unknown), chosen)

    def _unlisted(self, direction: str, server: NodeView, learned: bool) -> Violation:
        if learned:
            kind, detail = "drift", "new edge since the policy was learned"
        elif direction == DIRECTION_EGRESS:
            kind, detail = "unexpected_egress", f"egress to {server.host or server.id} is not allowed"
        elif direction == DIRECTION_INGRESS:
            kind, detail = "unexpected_ingress", f"{server.id} does not accept traffic from outside"
        else:
            kind, detail = "unlisted_edge", "no rule allows this edge"
        evidence = {"default_action": self.policy.default_action, "direction": direction}
        if learned:
            evidence["drift"] = "new_edge"
        return Violation(kind, None, detail, evidence)

    def _endpoint_requirement(self, server: NodeView, method: str, route: str) -> Requirement:
        req = NO_REQUIREMENT
        for q in self.policy.requirements:
            if self.matcher.any_matches(q.services, server) and q.applies(method, route):
                req = req.merged(q.require)
        return req

    def _requirements(
        self, req: Requirement, call: Call, rule: Rule | None
    ) -> tuple[list[Violation], list[str]]:
        violations: list[Violation] = []
        unknown: list[str] = []
        if req.auth is not None:
            seen = call_auth(call)
            if seen is None:
                unknown.append("auth")
            else:
                creds = set(seen) - NOT_CREDENTIALS
                if req.auth:
                    accepted: set[str] = set()
                    for s in req.auth:
                        accepted |= ACCEPTS.get(s, frozenset({s}))
                    ok = bool(creds & accepted)
                else:
                    ok = bool(creds)
                if not ok:
                    violations.append(
                        Violation(
                            "missing_auth",
                            rule,
                            "no credential" if not creds else f"scheme {', '.join(sorted(creds))} is not accepted",
                            {"required": list(req.auth) or ["any"], "seen": sorted(creds)},
                        )
                    )
        if req.tls:
            tls = call_tls(call)
            if tls is None:
                unknown.append("tls")
            elif not tls:
                violations.append(Violation("plaintext", rule, "plaintext where TLS is required", {"required": "tls"}))
        if req.enduser:
            prop = enduser_propagated(call, self.policy.enduser_header)
            if prop is None:
                unknown.append("enduser")
            elif not prop:
                violations.append(
                    Violation(
                        "identity_not_propagated",
                        rule,
                        "end-user identity was not propagated",
                        {"required": "enduser", "header": self.policy.enduser_header or "enduser.id"},
                    )
                )
        return violations, unknown
