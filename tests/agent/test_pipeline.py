"""The queue, the analysis loop, findings merging and persistence across restarts."""

from __future__ import annotations

import threading
import time

from agent.model import Finding, Resource, Severity, SpanKind, Subject, make_span
from agent.pipeline import Pipeline
from agent.state import State, StateStore
from enrichers.base import Enricher
from enrichers.service_counts import ServiceCountsEnricher


def spans(service, n, start=0):
    res = Resource.from_attributes({"service.name": service})
    return [
        make_span(trace_id=f"{i + 1 + start:032x}", span_id=f"{i + 1 + start:016x}", parent_span_id="",
                  resource=res, name="GET /", kind=SpanKind.SERVER, start_ns=1, end_ns=2,
                  attributes={"http.request.method": "GET", "url.path": "/"})
        for i in range(n)
    ]


class FindingPerSpan(Enricher):
    name = "per_span"

    def process(self, batch, state):
        return [Finding(rule="test.rule", title="t", severity=Severity.LOW, subject=Subject(service=s.service),
                        first_seen_ns=s.start_ns, last_seen_ns=s.end_ns, trace_ids=(s.trace_id,))
                for s in batch]


class Exploding(Enricher):
    name = "boom"

    def process(self, batch, state):
        raise RuntimeError("bug")


def test_offer_process_and_count():
    state = State()
    p = Pipeline(state, [Exploding(), ServiceCountsEnricher(), FindingPerSpan()])
    p.start()
    assert p.offer(spans("a", 10), "otlp")
    assert p.offer(spans("b", 5), "replay")
    assert p.wait_idle(10)
    p.stop()
    assert state.services == {"a": 10, "b": 5}
    st = p.snapshot_stats()
    assert st["spans_accepted"] == 15 and st["spans_by_source"]["replay"] == 5
    assert st["services"] == ["a", "b"]
    assert st["enricher_errors"] == {"boom": 1} or st["enricher_errors"]["boom"] >= 1
    f = [r.finding for r in state.findings.records()]
    assert len(f) == 2  # merged by (rule, subject)
    assert sorted(x.count for x in f) == [5, 10]
    assert all(len(x.trace_ids) <= 10 for x in f)


def test_full_queue_refuses_without_blocking_and_counts():
    state = State()
    p = Pipeline(state, [ServiceCountsEnricher()], queue_spans=10)  # loop not started
    assert p.offer(spans("a", 8), "otlp")
    # Below capacity a converted batch still goes in (the bound may overshoot
    # by one request: dropping spans already decoded would waste the work).
    assert p.offer(spans("a", 8), "otlp")
    assert p.queue_depth == 16
    assert not p.offer(spans("a", 8), "otlp")
    assert p.stats.dropped[("otlp", "queue_full")] == 8
    p.drain()
    assert p.offer(spans("a", 8), "otlp")
    p.stop()
    assert state.services["a"] == 24


def test_stop_drains_everything_accepted():
    state = State()
    gate = threading.Event()

    class Slow(Enricher):
        name = "slow"

        def process(self, batch, state):
            gate.wait(5)
            return ()

    p = Pipeline(state, [Slow(), ServiceCountsEnricher()], batch_spans=1)
    p.start()
    for i in range(5):
        assert p.offer(spans("a", 3, start=i * 3), "otlp")
    gate.set()
    p.stop()
    assert state.services["a"] == 15
    assert not p.offer(spans("a", 1), "otlp")  # no longer accepting


class CounterPart:
    def __init__(self):
        self.n = 0

    def snapshot(self):
        return {"n": self.n}

    def restore(self, data):
        self.n = data["n"]


def test_state_survives_restart(tmp_path):
    state = State(tmp_path)
    store = StateStore(tmp_path)
    store.load(state)
    state.part("counter", CounterPart).n = 7
    p = Pipeline(state, [ServiceCountsEnricher(), FindingPerSpan()], store=store)
    p.start()
    p.offer(spans("a", 3), "otlp")
    p.wait_idle(10)
    rec = state.findings.records()[0]
    state.findings.set_flags(rec.id, acknowledged=True)
    p.stop()
    store.close()

    state2 = State(tmp_path)
    store2 = StateStore(tmp_path)
    store2.load(state2)
    assert state2.services == {"a": 3}
    assert state2.part("counter", CounterPart).n == 7  # restored when the part is created
    r2 = state2.findings.get(rec.id)
    assert r2 is not None and r2.finding.count == 3 and r2.acknowledged
    assert state.secret == state2.secret and len(state.secret) == 32
    store2.close()


class Busy(Enricher):
    """Burns a known amount of CPU per batch, so its share of the stage CPU is measurable."""

    name = "busy"

    def process(self, batch, state):
        t = time.thread_time()
        while time.thread_time() - t < 0.02:
            pass
        return ()


def test_stage_cpu_is_counted_per_enricher_and_served():
    state = State()
    p = Pipeline(state, [ServiceCountsEnricher(), Busy()])
    p.start()
    for k in range(3):
        assert p.offer(spans("a", 10, start=10 * k), "otlp")
        assert p.wait_idle(10)
    p.stop()
    cpu = p.snapshot_stats()["stage_cpu_seconds"]
    assert set(cpu) >= {"service_counts", "busy"}
    assert cpu["busy"] >= 0.02 * p.stats.batches * 0.9  # thread CPU: the busy loop, counted where it ran
    assert cpu["service_counts"] < cpu["busy"]
