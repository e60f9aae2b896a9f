"""The zero-trust State part: per-edge verdict counts and what was observed.

Per edge it keeps the verdict counts under the policy in force (reset when a new
policy is loaded, so colours follow the policy), and what ``policy learn`` needs:
calls, first/last seen, the endpoints, the authentication schemes and whether
TLS was used. It also keeps keyed hashes of credentials with the clients that
used them, to spot a token shared between clients. Never a token.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from agent.model import ns_to_iso

VERDICTS = ("allowed", "violation", "unknown")
MAX_ENDPOINTS_PER_EDGE = 500
MAX_EDGES = 20_000
MAX_TOKENS = 50_000

#: Order in which one call's credential schemes are labelled, strongest first.
SCHEME_PREFERENCE = ("mtls", "jwt", "bearer", "apikey", "basic")


def auth_label(schemes: tuple[str, ...] | None) -> str:
    """One label for the credential of a call: ``?`` unknown, ``-`` none, else a scheme."""
    if schemes is None:
        return "?"
    creds = [s for s in schemes if s != "enduser"]
    if not creds:
        return "-"
    for s in SCHEME_PREFERENCE:
        if s in creds:
            return s
    return sorted(creds)[0]


@dataclass(slots=True)
class Observed:
    """Counts of one edge or endpoint that ``policy learn`` turns into a rule."""

    count: int = 0
    first_ns: int = 0
    last_ns: int = 0
    auth: dict[str, int] = field(default_factory=dict)  # label -> calls
    tls: dict[str, int] = field(default_factory=dict)  # "true"/"false"/"unknown" -> calls

    def add(self, ts_ns: int, auth: str, tls: bool | None) -> None:
        self.add_many(1, ts_ns, ts_ns, auth, tls)

    def add_many(self, n: int, first_ns: int, last_ns: int, auth: str, tls: bool | None) -> None:
        """``n`` calls with the same credential label and TLS, seen from ``first_ns`` to ``last_ns``."""
        self.count += n
        if not self.first_ns or first_ns < self.first_ns:
            self.first_ns = first_ns
        if last_ns > self.last_ns:
            self.last_ns = last_ns
        self.auth[auth] = self.auth.get(auth, 0) + n
        t = "unknown" if tls is None else ("true" if tls else "false")
        self.tls[t] = self.tls.get(t, 0) + n

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "first_ns": self.first_ns, "last_ns": self.last_ns,
                "auth": dict(self.auth), "tls": dict(self.tls)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Observed:
        return cls(int(d.get("count", 0)), int(d.get("first_ns", 0)), int(d.get("last_ns", 0)),
                   {str(k): int(v) for k, v in (d.get("auth") or {}).items()},
                   {str(k): int(v) for k, v in (d.get("tls") or {}).items()})


@dataclass(slots=True)
class EdgeRecord:
    client: str
    server: str
    connection_type: str
    client_kind: str
    server_kind: str
    direction: str = "internal"
    host: str = ""
    seen: Observed = field(default_factory=Observed)
    endpoints: dict[str, Observed] = field(default_factory=dict)  # "METHOD route" -> counts
    verdicts: dict[str, int] = field(default_factory=dict)
    rules: dict[str, int] = field(default_factory=dict)  # finding rule id -> calls

    @property
    def key(self) -> str:
        return edge_key(self.client, self.server, self.connection_type)

    @property
    def verdict(self) -> str:
        v = self.verdicts
        if v.get("violation"):
            return "violation"
        if v.get("unknown"):
            return "unknown"
        if v.get("allowed"):
            return "allowed"
        return "unknown"

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client, "server": self.server, "connection_type": self.connection_type,
            "client_kind": self.client_kind, "server_kind": self.server_kind,
            "direction": self.direction, "host": self.host, "seen": self.seen.to_dict(),
            "endpoints": {k: o.to_dict() for k, o in self.endpoints.items()},
            "verdicts": dict(self.verdicts), "rules": dict(self.rules),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EdgeRecord:
        return cls(
            client=str(d["client"]), server=str(d["server"]),
            connection_type=str(d.get("connection_type", "http")),
            client_kind=str(d.get("client_kind", "service")), server_kind=str(d.get("server_kind", "service")),
            direction=str(d.get("direction", "internal")), host=str(d.get("host", "")),
            seen=Observed.from_dict(d.get("seen") or {}),
            endpoints={str(k): Observed.from_dict(v) for k, v in (d.get("endpoints") or {}).items()},
            verdicts={str(k): int(v) for k, v in (d.get("verdicts") or {}).items()},
            rules={str(k): int(v) for k, v in (d.get("rules") or {}).items()},
        )


def edge_key(client: str, server: str, connection_type: str) -> str:
    return f"{client}->{server}/{connection_type}"


class ZeroTrustState:
    """State part ``"zerotrust"`` (see the module docstring)."""

    def __init__(self, policy_path: str = "") -> None:
        self.edges: dict[str, EdgeRecord] = {}
        self.tokens: OrderedDict[str, list[str]] = OrderedDict()
        self.hints: set[str] = set()
        self.policy_path = policy_path
        self.policy_error = ""
        self.policy_loaded_ns = 0
        self.dropped_edges = 0

    def edge(
        self, client: str, server: str, connection_type: str, client_kind: str, server_kind: str,
        calls: int = 1,
    ) -> EdgeRecord | None:
        """The record of an edge, created on first sight; ``None`` (and ``calls`` counted as
        dropped) when the table is full."""
        key = edge_key(client, server, connection_type)
        rec = self.edges.get(key)
        if rec is None:
            if len(self.edges) >= MAX_EDGES:
                self.dropped_edges += calls
                return None
            rec = EdgeRecord(client, server, connection_type, client_kind, server_kind)
            self.edges[key] = rec
        return rec

    def reset_verdicts(self) -> None:
        """A new policy is in force: verdicts start again, observations stay."""
        for rec in self.edges.values():
            rec.verdicts.clear()
            rec.rules.clear()

    # ------------------------------------------------ what the graph and TUI ask
    def verdict(self, client: str, server: str, connection_type: str = "http") -> str:
        rec = self.edges.get(edge_key(client, server, connection_type))
        return rec.verdict if rec is not None else "unknown"

    def report(self) -> list[dict[str, Any]]:
        out = []
        for rec in sorted(self.edges.values(), key=lambda r: r.key):
            out.append({
                "client": rec.client,
                "server": rec.server,
                "connection_type": rec.connection_type,
                "client_kind": rec.client_kind,
                "server_kind": rec.server_kind,
                "direction": rec.direction,
                "host": rec.host,
                "verdict": rec.verdict,
                "verdicts": {v: rec.verdicts.get(v, 0) for v in VERDICTS},
                "rules": sorted(rec.rules),
                "count": rec.seen.count,
                "first_seen": ns_to_iso(rec.seen.first_ns),
                "last_seen": ns_to_iso(rec.seen.last_ns),
                "policy": self.policy_path,
            })
        return out

    # ------------------------------------------------------------- persistence
    def snapshot(self) -> Any:
        return {
            "edges": [r.to_dict() for r in self.edges.values()],
            "tokens": [[k, v] for k, v in self.tokens.items()],
            "hints": sorted(self.hints),
            "policy_path": self.policy_path,
        }

    def restore(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for d in data.get("edges") or []:
            rec = EdgeRecord.from_dict(d)
            self.edges[rec.key] = rec
        for k, v in data.get("tokens") or []:
            self.tokens[str(k)] = [str(x) for x in v]
        self.hints.update(str(h) for h in data.get("hints") or [])
        # Verdicts of an older run were under a policy that may have changed.
        if data.get("policy_path", "") != self.policy_path:
            self.reset_verdicts()
