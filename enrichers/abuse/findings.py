"""One place that turns detections into :class:`~agent.model.Finding` observations.

Detections call :meth:`FindingSink.hit` as often as they like; observations
with the same rule and subject are folded into one per batch or window (count,
time range, a few sample trace ids), and the findings store folds batches into
one finding per problem. A 10,000-request attack is therefore one finding
whose count and ``last_seen`` grow while it goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.model import Finding, Severity, Subject

MAX_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Rule:
    """Static facts of one detection."""

    id: str
    title: str
    owasp: str | None
    severity: Severity
    remediation: str
    category: str = "abuse"


@dataclass(slots=True)
class _Pending:
    rule: Rule
    subject: Subject
    first_ns: int
    last_ns: int
    count: int = 0
    confidence: float = 0.0
    severity: Severity = Severity.INFO
    explanation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    traces: list[str] = field(default_factory=list)
    spans: list[str] = field(default_factory=list)


class FindingSink:
    """Collects observations, merged by (rule, subject); :meth:`drain` emits them."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Subject], _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def hit(
        self,
        rule: Rule,
        subject: Subject,
        *,
        first_ns: int,
        last_ns: int | None = None,
        count: int = 1,
        confidence: float = 0.8,
        explanation: str = "",
        evidence: Mapping[str, Any] | None = None,
        trace_ids: Iterable[str] = (),
        span_ids: Iterable[str] = (),
        severity: Severity | None = None,
    ) -> None:
        key = (rule.id, subject)
        p = self._pending.get(key)
        last = first_ns if last_ns is None else last_ns
        if p is None:
            p = _Pending(rule, subject, first_ns, last, severity=severity or rule.severity)
            self._pending[key] = p
        else:
            p.first_ns = min(p.first_ns, first_ns)
            p.last_ns = max(p.last_ns, last)
            if severity is not None and severity > p.severity:
                p.severity = severity
        p.count += count
        p.confidence = max(p.confidence, confidence)
        if explanation:
            p.explanation = explanation
        if evidence:
            p.evidence.update(evidence)
        if len(p.traces) < MAX_SAMPLES:
            for t in trace_ids:
                if t and t not in p.traces:
                    p.traces.append(t)
                    if len(p.traces) >= MAX_SAMPLES:
                        break
        if len(p.spans) < MAX_SAMPLES:
            for s in span_ids:
                if s and s not in p.spans:
                    p.spans.append(s)
                    if len(p.spans) >= MAX_SAMPLES:
                        break

    def drain(self) -> list[Finding]:
        out = []
        for p in self._pending.values():
            r = p.rule
            out.append(
                Finding(
                    rule=r.id,
                    title=r.title,
                    severity=p.severity,
                    subject=p.subject,
                    first_seen_ns=p.first_ns,
                    last_seen_ns=p.last_ns,
                    count=p.count,
                    owasp=r.owasp,
                    confidence=round(min(1.0, p.confidence), 3),
                    explanation=p.explanation or r.title,
                    remediation=r.remediation,
                    evidence=dict(p.evidence),
                    trace_ids=tuple(p.traces),
                    span_ids=tuple(p.spans),
                    category=r.category,
                )
            )
        self._pending.clear()
        return out
