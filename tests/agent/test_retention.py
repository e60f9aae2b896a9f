"""Retention: evidence samples and finding history stay capped by size and age under a long run."""

from __future__ import annotations

from agent.model import Finding, Severity, Subject
from agent.state import MAX_TRACE_IDS, FindingStore

DAY = 86_400 * 1_000_000_000
T0 = 1_700_000_000_000_000_000


def obs(i: int, t: int) -> Finding:
    return Finding(rule="API4.rate", title="t", severity=Severity.LOW, subject=Subject(service="s"),
                   first_seen_ns=t, last_seen_ns=t, trace_ids=(f"{i:032x}",), span_ids=(f"{i:016x}",),
                   evidence={"sample": f"masked-{i % 3}"})


def test_caps_hold_over_a_long_run() -> None:
    store = FindingStore()
    # 30 simulated days, one observation every ~2.6 minutes: 16 500 observations.
    n = 16_500
    step = 30 * DAY // n
    for i in range(n):
        store.add(obs(i, T0 + i * step))
        rec = store.records()[0]
        assert len(rec.finding.trace_ids) <= MAX_TRACE_IDS
        assert len(rec.finding.span_ids) <= MAX_TRACE_IDS
        assert len(rec.history) <= 256
    rec = store.records()[0]
    assert rec.finding.count == n
    newest = rec.history[-1][0]
    assert newest == T0 + (n - 1) * step
    assert all(newest - t <= store.history_max_age_ns for t, _ in rec.history)
    assert len(rec.finding.evidence) == 1  # evidence merges by key, it does not grow per request


def test_old_history_is_dropped_even_when_sparse() -> None:
    store = FindingStore()
    store.add(obs(0, T0))
    store.add(obs(1, T0 + DAY))
    store.add(obs(2, T0 + 10 * DAY))
    rec = store.records()[0]
    assert [t for t, _ in rec.history] == [T0 + 10 * DAY]
    assert rec.history[-1][1] == 3
