"""Write a least-privilege policy from what the zero-trust part observed.

Only what was seen is allowed: each observed edge becomes a rule limited to the
endpoints (method + route template) it carried, with the authentication schemes
every call showed and TLS where it was always used; external hosts become the
egress allowlist; outside callers become ``from: external`` rules (the ingress
allowlist). The YAML is written as text so each rule can carry a comment with its
call count and first/last seen, grouped by calling service.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.model import ns_to_iso
from enrichers.zerotrust.policy import AUTH_SCHEMES, EXTERNAL, POLICY_VERSION
from enrichers.zerotrust.state import EdgeRecord, Observed

_OUTSIDE = ("client", "ingress")
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/{}:]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _q(s: str) -> str:
    """A YAML scalar for ``s``: plain when unambiguous, else double-quoted."""
    if _PLAIN.fullmatch(s) and s.lower() not in _YAML_WORDS and not re.fullmatch(r"[\d.eE+-]+", s) \
            and not s.endswith(":") and ": " not in s and "{" not in s:
        return s
    return json.dumps(s)


def _merge(into: Observed, o: Observed) -> None:
    into.count += o.count
    if o.first_ns and (not into.first_ns or o.first_ns < into.first_ns):
        into.first_ns = o.first_ns
    into.last_ns = max(into.last_ns, o.last_ns)
    for k, v in o.auth.items():
        into.auth[k] = into.auth.get(k, 0) + v
    for k, v in o.tls.items():
        into.tls[k] = into.tls.get(k, 0) + v


def _seen(o: Observed) -> str:
    calls = "1 call" if o.count == 1 else f"{o.count} calls"
    return f"{calls}, first seen {ns_to_iso(o.first_ns)}, last seen {ns_to_iso(o.last_ns)}"


@dataclass(slots=True)
class _Group:
    source: str
    target: str
    connection: str
    seen: Observed = field(default_factory=Observed)
    endpoints: dict[str, Observed] = field(default_factory=dict)
    endpoint_calls: int = 0

    def add(self, rec: EdgeRecord) -> None:
        _merge(self.seen, rec.seen)
        for k, o in rec.endpoints.items():
            ep = self.endpoints.setdefault(k, Observed())
            _merge(ep, o)
            self.endpoint_calls += o.count

    def auth_requirement(self) -> str | None:
        labels = {k for k, v in self.seen.auth.items() if v}
        if not labels or labels & {"?", "-"}:
            return None
        if labels <= set(AUTH_SCHEMES):
            return "[" + ", ".join(sorted(labels)) + "]"
        return "any"

    def tls_required(self) -> bool:
        t = {k for k, v in self.seen.tls.items() if v}
        return t == {"true"}


def _rule_id(source: str, target: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{source}-to-{target}").strip("-").lower() or "rule"
    rid, n = base, 2
    while rid in used:
        rid, n = f"{base}-{n}", n + 1
    used.add(rid)
    return rid


def _endpoint_key(key: str) -> str:
    method, _, route = key.partition(" ")
    route = re.sub(r"\s+", "%20", route.strip()) or "**"
    return f"{method or '*'} {route}"


def learn_policy(edges: Iterable[EdgeRecord], *, source: str = "", now_iso: str = "") -> str:
    """The policy YAML text (see the module docstring)."""
    rules: dict[tuple[str, str, str], _Group] = {}
    egress: dict[str, dict[str, Observed]] = {}
    total = 0
    n_edges = 0
    for rec in edges:
        if rec.seen.count == 0:
            continue
        n_edges += 1
        total += rec.seen.count
        if rec.server_kind == "external":
            host = rec.host or rec.server.removeprefix("ext:").rsplit(":", 1)[0]
            src = EXTERNAL if rec.client_kind in _OUTSIDE else rec.client
            _merge(egress.setdefault(src, {}).setdefault(host.lower(), Observed()), rec.seen)
            continue
        src = EXTERNAL if rec.client_kind in _OUTSIDE else rec.client
        key = (src, rec.server, rec.connection_type)
        g = rules.get(key)
        if g is None:
            g = rules[key] = _Group(src, rec.server, rec.connection_type)
        g.add(rec)

    out: list[str] = [
        "# apiward zero-trust policy, learned from observed traffic.",
        f"# {total} calls over {n_edges} edges" + (f" from {source}" if source else "") + ".",
        "# Least privilege: only the edges, endpoints, auth schemes and external hosts",
        "# that were seen are allowed. Review it, then use it with --policy FILE or",
        "# 'apiward policy check --policy FILE RECORDING...'. Reference: docs/policy.md",
        f"version: {POLICY_VERSION}",
        "default_action: alert",
        "learned:",
        f"  at: {json.dumps(now_iso)}",
        f"  calls: {total}",
        f"  edges: {n_edges}",
    ]
    if source:
        out.append(f"  source: {json.dumps(source)}")
    used: set[str] = set()
    if rules:
        out.append("")
        out.append("rules:")
        by_source: dict[str, list[_Group]] = {}
        for g in rules.values():
            by_source.setdefault(g.source, []).append(g)
        order = sorted(by_source, key=lambda s: (s == EXTERNAL, s))
        for src in order:
            label = "outside clients (ingress)" if src == EXTERNAL else src
            out.append(f"  # ---- {label} " + "-" * max(4, 60 - len(label)))
            for g in sorted(by_source[src], key=lambda g: (g.target, g.connection)):
                out.append(f"  # {g.source} -> {g.target}: {_seen(g.seen)}")
                out.append(f"  - id: {_q(_rule_id(g.source, g.target, used))}")
                out.append(f"    from: {_q(g.source)}")
                out.append(f"    to: {_q(g.target)}")
                if g.connection and g.connection != "http":
                    out.append(f"    connection: {_q(g.connection)}")
                # Restrict to endpoints only when every call's endpoint was known.
                if g.endpoints and g.endpoint_calls >= g.seen.count:
                    out.append("    endpoints:")
                    for ep in sorted(g.endpoints, key=lambda k: (k.partition(" ")[2], k)):
                        out.append(f"      - {json.dumps(_endpoint_key(ep))}  # {_seen(g.endpoints[ep])}")
                auth = g.auth_requirement()
                tls = g.tls_required()
                if auth or tls:
                    out.append("    require:")
                    if auth:
                        out.append(f"      auth: {auth}")
                    if tls:
                        out.append("      tls: true")
                out.append("")
        if out[-1] == "":
            out.pop()
    if egress:
        out.append("")
        out.append("egress:")
        for src in sorted(egress, key=lambda s: (s == EXTERNAL, s)):
            hosts = egress[src]
            merged = Observed()
            for o in hosts.values():
                _merge(merged, o)
            out.append(f"  # ---- {src}: {_seen(merged)}")
            out.append(f"  - id: {_q(_rule_id(src, 'egress', used))}")
            out.append(f"    from: {_q(src)}")
            out.append("    hosts:")
            for host in sorted(hosts):
                out.append(f"      - {json.dumps(host)}  # {_seen(hosts[host])}")
    return "\n".join(out) + "\n"
