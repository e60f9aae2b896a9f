"""The one place that wires collectors to the analysis loop.

Receivers call :meth:`Pipeline.offer`, which never blocks: a bounded queue
(counted in spans) sits between them and one analysis thread. When it is full
the batch is refused and counted as dropped, and the receiver tells its client
to retry later. The analysis thread merges queued batches, runs every enricher
on them with ``state.lock`` held, stores the findings, ticks the enrichers
about once a second and asks the state store to persist every
``flush_interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from time import thread_time
from typing import Any

from agent.model import SOURCES, Finding, Span, SpanSink
from agent.state import State, StateStore
from enrichers.base import Enricher

log = logging.getLogger("apiward.pipeline")

# Processing-latency histogram buckets (seconds), Prometheus style.
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Stats:
    """Counters shared by receivers and the pipeline. Increments take a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: dict[str, int] = dict.fromkeys(SOURCES, 0)
        self.accepted: dict[str, int] = dict.fromkeys(SOURCES, 0)
        self.rejected: dict[tuple[str, str], int] = {}
        self.dropped: dict[tuple[str, str], int] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.batches = 0
        self.spans_processed = 0
        self.findings_emitted = 0
        self.enricher_errors: dict[str, int] = {}
        #: CPU seconds of the analysis thread per stage: each enricher (process and
        #: tick), and "state_capture" (snapshots for the state store). Thread CPU
        #: time, so waiting for the GIL or the lock is not counted.
        self.stage_cpu: dict[str, float] = {}
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.extra: dict[str, Callable[[], dict[str, float]]] = {}
        #: Names of the enrichers that processed the batch now handed to the
        #: ``on_batch`` listeners without raising. The forwarder reads it: a batch the
        #: sensitive-data stage did not scan must not leave the agent as it came in.
        self.batch_completed: frozenset[str] = frozenset()

    def add_received(self, source: str, n: int) -> None:
        with self._lock:
            self.received[source] = self.received.get(source, 0) + n

    def add_accepted(self, source: str, n: int) -> None:
        with self._lock:
            self.accepted[source] = self.accepted.get(source, 0) + n

    def add_rejected(self, source: str, reason: str, n: int) -> None:
        with self._lock:
            k = (source, reason)
            self.rejected[k] = self.rejected.get(k, 0) + n

    def add_dropped(self, source: str, reason: str, n: int) -> None:
        with self._lock:
            k = (source, reason)
            self.dropped[k] = self.dropped.get(k, 0) + n

    def add_request(self, receiver: str, outcome: str) -> None:
        with self._lock:
            k = (receiver, outcome)
            self.requests[k] = self.requests.get(k, 0) + 1

    def observe_latency(self, seconds: float) -> None:
        i = 0
        for i, b in enumerate(LATENCY_BUCKETS):  # noqa: B007
            if seconds <= b:
                break
        else:
            i = len(LATENCY_BUCKETS)
        with self._lock:
            self.latency_buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    @property
    def spans_received(self) -> int:
        return sum(self.received.values())

    @property
    def spans_accepted(self) -> int:
        return sum(self.accepted.values())

    @property
    def spans_rejected(self) -> int:
        return sum(self.rejected.values())

    @property
    def spans_dropped(self) -> int:
        return sum(self.dropped.values())


class Pipeline(SpanSink):
    """Bounded queue + one analysis loop. See the module docstring."""

    def __init__(
        self,
        state: State,
        enrichers: Sequence[Enricher],
        *,
        stats: Stats | None = None,
        queue_spans: int = 50_000,
        batch_spans: int = 4096,
        store: StateStore | None = None,
        flush_interval: float = 5.0,
        tick_interval: float = 1.0,
    ) -> None:
        self.state = state
        self.enrichers = list(enrichers)
        self.stats = stats or Stats()
        self.queue_spans = queue_spans
        self.batch_spans = batch_spans
        self.store = store
        self.flush_interval = flush_interval
        self.tick_interval = tick_interval
        self._queue: deque[tuple[list[Span], str, float]] = deque()
        self._queued = 0
        self._cond = threading.Condition(threading.Lock())
        self._accepting = True
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.on_findings: list[Callable[[list[Finding]], None]] = []
        self.on_batch: list[Callable[[list[Span]], None]] = []

    # ------------------------------------------------------------ SpanSink
    def offer(self, batch: list[Span], source: str) -> bool:
        n = len(batch)
        if n == 0:
            return True
        stats = self.stats
        stats.add_received(source, n)
        with self._cond:
            if not self._accepting:
                stats.add_dropped(source, "shutting_down", n)
                return False
            if self._queued >= self.queue_spans + self.queue_spans // 4:
                # Receivers refuse before decoding once the queue is full
                # (queue_depth >= queue_spans); batches of requests admitted
                # before that, converted while it filled, still go in: dropping
                # converted spans wastes the work spent on them. The quarter of
                # slack bounds that overshoot (and direct offers: replay, eBPF).
                stats.add_dropped(source, "queue_full", n)
                return False
            self._queue.append((batch, source, time.perf_counter()))
            self._queued += n
            self._idle.clear()
            self._cond.notify()
        stats.add_accepted(source, n)
        return True

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        self.stats.add_rejected(source, reason, n)

    @property
    def queue_depth(self) -> int:
        return self._queued

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="apiward-analysis", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting, drain what was accepted, persist, and stop the loop."""
        with self._cond:
            self._accepting = False
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.drain()
        if self.store is not None:
            self.store.flush_now(self.state)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every accepted span has been processed (tests, replay)."""
        return self._idle.wait(timeout)

    def drain(self) -> None:
        """Process everything queued on the calling thread (used without a loop thread)."""
        while True:
            item = self._take()
            if item is None:
                self._idle.set()
                return
            self._process(*item)

    # ------------------------------------------------------------ the loop
    def _take(self) -> tuple[list[Span], float] | None:
        with self._cond:
            if not self._queue:
                return None
            batch, _source, t0 = self._queue.popleft()
            total = len(batch)
            if total < self.batch_spans and self._queue:
                merged = list(batch)
                while self._queue and total < self.batch_spans:
                    b, _s, t = self._queue.popleft()
                    merged.extend(b)
                    total += len(b)
                    t0 = min(t0, t)
                batch = merged
            self._queued -= total
            return batch, t0

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        next_flush = time.monotonic() + self.flush_interval
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._idle.set()
                    timeout = max(0.0, min(next_tick, next_flush) - time.monotonic())
                    if timeout == 0.0:
                        break
                    self._cond.wait(timeout)
                stopping = self._stopping and not self._queue
            if stopping:
                self._idle.set()
                return
            item = self._take()
            if item is not None:
                self._process(*item)
            now = time.monotonic()
            if now >= next_tick:
                self._tick()
                next_tick = now + self.tick_interval
            if now >= next_flush:
                if self.store is not None:
                    c0 = thread_time()
                    try:
                        self.store.capture(self.state)
                    except Exception:  # noqa: BLE001 - persistence must not stop analysis
                        log.exception("state capture failed")
                    cpu = self.stats.stage_cpu
                    cpu["state_capture"] = cpu.get("state_capture", 0.0) + thread_time() - c0
                next_flush = now + self.flush_interval

    def _process(self, batch: list[Span], t0: float) -> None:
        state = self.state
        out: list[Finding] = []
        cpu = self.stats.stage_cpu
        completed: list[str] = []
        # The enrichers get their own list: the sensitive stage puts redacted copies of spans
        # in it (enrichers/sensitive/sanitize.py), while the listeners after it (the
        # forwarder) redact the spans as received, by the detections' offsets.
        work = list(batch)
        with state.lock:
            state.batch.clear()
            c0 = thread_time()
            for enricher in self.enrichers:
                try:
                    res = enricher.process(work, state)
                    if res:
                        out.extend(res)
                    completed.append(enricher.name)
                except Exception:  # noqa: BLE001 - one enricher's bug must not stop the loop
                    n = self.stats.enricher_errors.get(enricher.name, 0)
                    self.stats.enricher_errors[enricher.name] = n + 1
                    if n == 0:
                        log.exception("enricher %s failed on a batch (further errors counted)", enricher.name)
                c1 = thread_time()
                cpu[enricher.name] = cpu.get(enricher.name, 0.0) + c1 - c0
                c0 = c1
            for f in out:
                state.findings.add(f)
        self.stats.batches += 1
        self.stats.spans_processed += len(batch)
        self.stats.findings_emitted += len(out)
        self.stats.observe_latency(time.perf_counter() - t0)
        self.stats.batch_completed = frozenset(completed)
        for batch_cb in self.on_batch:
            try:
                batch_cb(batch)
            except Exception:  # noqa: BLE001
                log.exception("batch listener failed")
        if out:
            for cb in self.on_findings:
                try:
                    cb(out)
                except Exception:  # noqa: BLE001
                    log.exception("findings listener failed")

    def _tick(self) -> None:
        now_ns = time.time_ns()
        out: list[Finding] = []
        cpu = self.stats.stage_cpu
        with self.state.lock:
            c0 = thread_time()
            for enricher in self.enrichers:
                try:
                    res = enricher.tick(now_ns, self.state)
                    if res:
                        out.extend(res)
                except Exception:  # noqa: BLE001
                    log.exception("enricher %s tick failed", enricher.name)
                c1 = thread_time()
                cpu[enricher.name] = cpu.get(enricher.name, 0.0) + c1 - c0
                c0 = c1
            for f in out:
                self.state.findings.add(f)
        if out:
            self.stats.findings_emitted += len(out)

    def tick_now(self) -> None:
        """Run one tick on the calling thread (replay: flush windows at the end)."""
        with self.state.lock:  # enrichers with open windows (abuse) close them all
            for e in self.enrichers:
                flush = getattr(e, "flush", None)
                if flush is not None:
                    self.state.add_findings(flush(self.state))
        self._tick()

    def snapshot_stats(self) -> dict[str, Any]:
        s = self.stats
        with self.state.lock:
            services = sorted(self.state.services)
            nfind = len(self.state.findings)
        return {
            "spans_received": s.spans_received,
            "spans_accepted": s.spans_accepted,
            "spans_rejected": s.spans_rejected,
            "spans_dropped": s.spans_dropped,
            "spans_processed": s.spans_processed,
            "spans_by_source": {src: s.accepted.get(src, 0) for src in SOURCES},
            "rejected_by_reason": _by_reason(s.rejected),
            "dropped_by_reason": _by_reason(s.dropped),
            "queue_depth": self._queued,
            "queue_capacity": self.queue_spans,
            "batches": s.batches,
            "findings": nfind,
            "enricher_errors": dict(s.enricher_errors),
            "stage_cpu_seconds": {k: round(v, 6) for k, v in s.stage_cpu.items()},
            "services": services,
        }


def _by_reason(d: dict[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_src, reason), n in d.items():
        out[reason] = out.get(reason, 0) + n
    return out
