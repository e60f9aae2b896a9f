"""Property-level authorization (API3): privileged property names in request
bodies (mass assignment), when a collector captured the bodies. Excessive data
exposure is reported by the sensitive-data enricher."""

from __future__ import annotations

import re

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import Request
from enrichers.abuse.findings import FindingSink

_PRIVILEGED = re.compile(
    r"""["']?\b(is_?admin|isAdmin|is_?staff|is_?superuser|admin|role|roles|permissions?|scopes?|groups?"""
    r"""|balance|credits?|account_?type|plan|tier|verified|email_?verified|is_?verified|approved"""
    r"""|owner_?id|tenant_?id|org_?id|price|discount)\b["']?\s*[:=]""",
    re.I,
)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


def check_mass_assignment(req: Request, st: AbuseState, sink: FindingSink) -> None:
    """Flag privileged fields that this endpoint's bodies do not usually carry (what
    bodies usually carry is learned in the persisted state, so a restart does not
    re-flag an endpoint's contract)."""
    body = req.http.request_body
    if not body or req.http.method not in WRITE_METHODS:
        return
    key = req.ep.key
    bodies = st.bodies
    total = bodies.get(key, 0) + 1
    if key in bodies or len(bodies) < 50_000:
        bodies[key] = total
    found = sorted({m.group(1).lower() for m in _PRIVILEGED.finditer(body[:8192])})
    unusual = []
    fields = st.body_fields
    for f in found:
        k = (key, f)
        seen = fields.get(k, 0)
        if seen or len(fields) < 100_000:
            fields[k] = seen + 1
        # A field most bodies of this endpoint carry is part of its contract.
        if total < 20 or seen / total < 0.05:
            unusual.append(f)
    if not unusual:
        return
    sink.hit(
        rules.MASS_ASSIGNMENT, req.ep.subject(req.client), first_ns=req.ts,
        confidence=0.5 if total < 20 else 0.8,
        explanation=f"request body sets privileged field(s) {', '.join(unusual)}",
        evidence={"fields": unusual, "bodies_seen_on_endpoint": total},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )
