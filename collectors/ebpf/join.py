"""One span per request when both an OTel SDK and the eBPF tracer saw it.

:class:`JoiningSink` wraps the pipeline's sink in eBPF mode only (``apiward
run`` without ``--ebpf`` never installs it, so SDK spans then go straight to
the pipeline). The OTLP receivers and the eBPF collector both offer to it.

Which spans are twins
    The eBPF tracer sees the ``traceparent`` header on the wire. For a request
    it saw being *served* (accepted connection), the header's parent id is the
    caller's span, which is also the ``parent_span_id`` of the SDK SERVER span
    of that request: key ``(trace id, parent id, SERVER)``. For a request it
    saw being *sent* (connected connection), the header was injected by the
    SDK CLIENT span, so its parent id *is* that CLIENT span's id: key
    ``(trace id, span id, CLIENT)``. The kind is part of the key because a
    client span and the server span it calls share the same two ids. When a
    key has several candidates (a proxy forwarding the header unchanged), the
    one of the same service is preferred; a differing HTTP method never merges.

Both orders
    * eBPF first: the eBPF span is held up to ``hold_seconds`` (default 8 s,
      longer than the SDK batch processor's 5 s schedule delay). When its SDK
      twin arrives, the SDK span goes on at once, enriched with the eBPF
      evidence, and the eBPF span is dropped.
    * SDK first: the collector *announces* every traced request that carries a
      traceparent as soon as its request headers are parsed
      (:meth:`JoiningSink.expect`), well before the exchange completes. An SDK
      HTTP SERVER/CLIENT span whose key was announced is held until its eBPF
      twin arrives (at most ``hold_seconds``); one not announced yet is held
      for ``sdk_grace_seconds`` (default 1 s), which covers the tracer's own
      polling delay. Either way the SDK span leaves enriched the moment the
      twin arrives, so the sensitive-data and abuse analyses, which read the
      span's headers and bodies, see the eBPF evidence in both orders, and the
      graph and inventory see exactly one span per request. Other SDK spans
      (internal, database, messaging, spans without a key) are never held.
    * Too late: an eBPF span whose SDK twin already left unmerged (the tracer
      lagged more than the grace) is dropped and counted (``late_ebpf``), and
      an SDK span whose eBPF twin already left unmerged goes on and is counted
      (``late_sdk``). Nothing is ever emitted twice on purpose; the evidence
      lost in the first case is visible in the counters.

Bounds
    Each table (held eBPF spans, held SDK spans, announced keys, keys that
    left unmerged) is an insertion-ordered dict with a fixed maximum; when
    one is full its oldest entry leaves first (a held span then goes on
    unchanged). Held spans never wait longer than their deadline: a timer
    thread releases them, and only while something is held.

Back-pressure: when the pipeline refuses a batch of SDK spans (its sender
will retry all of it), the spans that batch put on hold are let go and the
eBPF spans it merged wait again, so a retry neither duplicates nor loses.

``offer`` never blocks: it takes a lock only around dictionary operations.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from typing import Any

from agent.model import SOURCE_EBPF, Span, SpanKind, SpanSink, make_span

from .spans import TRACEPARENT_ATTR

JOINED_ATTR = "apiward.ebpf.joined"
_MAX_HELD = 50_000
_MAX_SDK_HELD = 50_000
_MAX_EXPECTED = 100_000
_MAX_GONE = 100_000

_SERVER = "S"
_CLIENT = "C"
Key = tuple[str, str, str]


def _evidence(ebpf: Span, sdk: Span) -> dict[str, Any]:
    """Attributes of the eBPF span the SDK span lacks (the SDK's own values win)."""
    attrs = dict(sdk.attributes)
    for k, v in ebpf.attributes.items():
        attrs.setdefault(k, v)
    attrs[JOINED_ATTR] = True
    return attrs


def merge(sdk: Span, ebpf: Span) -> Span:
    """The SDK span with the eBPF evidence added."""
    return make_span(
        trace_id=sdk.trace_id,
        span_id=sdk.span_id,
        parent_span_id=sdk.parent_span_id,
        resource=sdk.resource,
        name=sdk.name,
        kind=sdk.kind,
        start_ns=sdk.start_ns,
        end_ns=sdk.end_ns,
        status_code=sdk.status_code,
        status_message=sdk.status_message,
        attributes=_evidence(ebpf, sdk),
        events=sdk.events,
        links=sdk.links,
        source=sdk.source,
        scope_name=sdk.scope_name,
    )


def ebpf_key(span: Span) -> Key | None:
    """The join key of an eBPF span (``None`` when it carried no traceparent)."""
    if not span.parent_span_id or TRACEPARENT_ATTR not in span.attributes:
        return None
    if span.kind == SpanKind.SERVER:
        return (span.trace_id, span.parent_span_id, _SERVER)
    if span.kind == SpanKind.CLIENT:
        return (span.trace_id, span.parent_span_id, _CLIENT)
    return None


def sdk_key(span: Span) -> Key | None:
    """The join key of an SDK span: HTTP SERVER spans by parent, HTTP CLIENT spans by id."""
    if span.http is None:
        return None
    if span.kind == SpanKind.SERVER:
        return (span.trace_id, span.parent_span_id, _SERVER) if span.parent_span_id else None
    if span.kind == SpanKind.CLIENT:
        return (span.trace_id, span.span_id, _CLIENT)
    return None


def _compatible(sdk: Span, ebpf: Span) -> bool:
    a, b = sdk.http, ebpf.http
    if a is None or b is None or not a.method or not b.method:
        return True
    return a.method.upper() == b.method.upper()


class JoiningSink(SpanSink):
    """A :class:`SpanSink` that merges eBPF and SDK spans of the same request.

    See the module docstring for the design. ``hold_seconds`` bounds how long
    an eBPF span waits for its SDK twin (and an SDK span for an announced eBPF
    twin); ``sdk_grace_seconds`` how long an SDK HTTP span waits for a twin the
    tracer has not announced.
    """

    def __init__(
        self, inner: SpanSink, hold_seconds: float = 8.0, sdk_grace_seconds: float = 1.0
    ) -> None:
        self.inner = inner
        self.hold_seconds = hold_seconds
        self.sdk_grace_seconds = sdk_grace_seconds
        self._lock = threading.Lock()
        # key -> [(deadline, span), ...]: eBPF spans waiting for their SDK twin
        self._held: OrderedDict[Key, list[tuple[float, Span]]] = OrderedDict()
        self._held_n = 0
        # key -> (deadline, span, source): SDK spans waiting for their eBPF twin
        self._sdk_held: OrderedDict[Key, tuple[float, Span, str]] = OrderedDict()
        self._sdk_due: list[tuple[float, Key]] = []  # heap; stale entries skipped
        # key -> deadline: requests the tracer saw starting (their span will follow)
        self._expected: OrderedDict[Key, float] = OrderedDict()
        # keys whose SDK / eBPF span left unmerged (to count late twins, never to re-emit)
        self._sdk_gone: OrderedDict[Key, None] = OrderedDict()
        self._ebpf_gone: OrderedDict[Key, None] = OrderedDict()
        self._timer: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self.joined = 0
        self.joined_sdk_first = 0
        self.released = 0
        self.sdk_released = 0
        self.late_ebpf = 0
        self.late_sdk = 0

    # ------------------------------------------------------------- SpanSink

    def offer(self, batch: list[Span], source: str) -> bool:
        now = time.monotonic()
        out: dict[str, list[Span]] = {}
        passed: list[Span] = []
        with self._lock:
            undo: list[tuple[Key, Span | None]] = []
            if source == SOURCE_EBPF:
                for span in batch:
                    self._offer_ebpf(span, now, passed, out)
            else:
                for span in batch:
                    self._offer_sdk(span, source, now, passed, out, undo)
            self._expire(now, out)
            if (self._held or self._sdk_held) and self._timer is None and not self._closed.is_set():
                self._start_timer()
        ok = True
        if passed:
            ok = self.inner.offer(passed, source)
            if not ok and undo:
                self._undo(undo, now)
        self._emit(out)
        return ok

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        self.inner.count_rejected(source, reason, n)

    # ----------------------------------------------------- tracer's side

    def expect(self, trace_id: str, parent_id: str, server: bool) -> None:
        """The tracer saw a request with this traceparent start; its span will follow."""
        key = (trace_id, parent_id, _SERVER if server else _CLIENT)
        deadline = time.monotonic() + self.hold_seconds
        with self._lock:
            self._expected[key] = deadline
            self._expected.move_to_end(key)
            if len(self._expected) > _MAX_EXPECTED:
                self._expected.popitem(last=False)
            held = self._sdk_held.get(key)
            if held is not None and held[0] < deadline:
                # The SDK span is already waiting on a short grace: now it knows a twin is coming.
                self._sdk_held[key] = (deadline, held[1], held[2])
                heapq.heappush(self._sdk_due, (deadline, key))

    def stats(self) -> dict[str, float]:
        """Counters for the eBPF section of /api/v1/stats."""
        with self._lock:
            return {
                "joined": float(self.joined),
                "joined_sdk_first": float(self.joined_sdk_first),
                "join_held_ebpf": float(self._held_n),
                "join_held_sdk": float(len(self._sdk_held)),
                "join_released_ebpf": float(self.released),
                "join_late_ebpf": float(self.late_ebpf),
                "join_late_sdk": float(self.late_sdk),
            }

    # ------------------------------------------------------------ the rest

    def flush(self) -> None:
        """Release every held span now (at shutdown)."""
        out: dict[str, list[Span]] = {}
        with self._lock:
            self._expire(float("inf"), out)
        self._emit(out)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self.flush()

    def stop(self) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Let the runtime reach the pipeline's other methods through the wrapper.
        return getattr(self.inner, name)

    # ------------------------------------------------------------ internals

    def _offer_ebpf(self, span: Span, now: float, passed: list[Span], out: dict[str, list[Span]]) -> None:
        key = ebpf_key(span)
        if key is None:
            passed.append(span)
            return
        self._expected.pop(key, None)
        waiting = self._sdk_held.get(key)
        if waiting is not None and _compatible(waiting[1], span):
            del self._sdk_held[key]
            out.setdefault(waiting[2], []).append(merge(waiting[1], span))
            self.joined += 1
            self.joined_sdk_first += 1
            return
        if key in self._sdk_gone:
            # Its SDK twin already went on unmerged: emitting this one would count the request twice.
            self.late_ebpf += 1
            return
        lst = self._held.get(key)
        if lst is None:
            self._held[key] = [(now + self.hold_seconds, span)]
        else:
            lst.append((now + self.hold_seconds, span))
        self._held_n += 1
        while self._held_n > _MAX_HELD:
            old_key, old = self._held.popitem(last=False)
            self._held_n -= len(old)
            self._mark(self._ebpf_gone, old_key)
            out.setdefault(SOURCE_EBPF, []).extend(s for _, s in old)
            self.released += len(old)

    def _undo(self, undo: list[tuple[Key, Span | None]], now: float) -> None:
        """The pipeline refused the batch: its sender retries all of it, so forget this call.

        SDK spans held by the call are let go (their retry will be held again) and
        eBPF spans merged by it wait again for the retried SDK span.
        """
        with self._lock:
            for key, ebpf in undo:
                if ebpf is None:
                    self._sdk_held.pop(key, None)
                else:
                    self._held.setdefault(key, []).append((now + self.hold_seconds, ebpf))
                    self._held_n += 1
                    self.joined -= 1

    def _offer_sdk(
        self, span: Span, source: str, now: float, passed: list[Span], out: dict[str, list[Span]],
        undo: list[tuple[Key, Span | None]],
    ) -> None:
        key = sdk_key(span)
        if key is None:
            passed.append(span)
            return
        lst = self._held.get(key)
        if lst is not None:
            pick = self._pick(lst, span)
            if pick is not None:
                ebpf = lst.pop(pick)[1]
                self._held_n -= 1
                if not lst:
                    del self._held[key]
                passed.append(merge(span, ebpf))
                undo.append((key, ebpf))
                self.joined += 1
                return
        if key in self._ebpf_gone:
            self.late_sdk += 1
            passed.append(span)
            return
        expected = self._expected.get(key)
        deadline = expected if expected is not None else now + self.sdk_grace_seconds
        if deadline <= now or key in self._sdk_held:
            passed.append(span)
            self._mark(self._sdk_gone, key)
            return
        self._sdk_held[key] = (deadline, span, source)
        heapq.heappush(self._sdk_due, (deadline, key))
        undo.append((key, None))
        if len(self._sdk_held) > _MAX_SDK_HELD:
            old_key, (_, old, old_source) = self._sdk_held.popitem(last=False)
            self._mark(self._sdk_gone, old_key)
            out.setdefault(old_source, []).append(old)
            self.sdk_released += 1

    @staticmethod
    def _pick(candidates: list[tuple[float, Span]], sdk: Span) -> int | None:
        first = None
        for i, (_, ebpf) in enumerate(candidates):
            if not _compatible(sdk, ebpf):
                continue
            if ebpf.service == sdk.service:
                return i
            if first is None:
                first = i
        return first

    @staticmethod
    def _mark(table: OrderedDict[Key, None], key: Key) -> None:
        table[key] = None
        if len(table) > _MAX_GONE:
            table.popitem(last=False)

    def _expire(self, now: float, out: dict[str, list[Span]]) -> None:
        held = self._held
        while held:
            key, lst = next(iter(held.items()))
            if lst[0][0] > now:
                break
            del held[key]
            self._held_n -= len(lst)
            self.released += len(lst)
            self._mark(self._ebpf_gone, key)
            out.setdefault(SOURCE_EBPF, []).extend(s for _, s in lst)
        # SDK deadlines differ (grace or announced): a heap, entries checked against the table.
        due = self._sdk_due
        while due and due[0][0] <= now:
            deadline, key = heapq.heappop(due)
            entry = self._sdk_held.get(key)
            if entry is None or entry[0] != deadline:
                continue  # merged, evicted, or its deadline moved
            del self._sdk_held[key]
            self._mark(self._sdk_gone, key)
            out.setdefault(entry[2], []).append(entry[1])
            self.sdk_released += 1
        if not self._sdk_held:
            due.clear()
        elif len(due) > 4 * len(self._sdk_held) + 1024:
            self._sdk_due = [(v[0], k) for k, v in self._sdk_held.items()]
            heapq.heapify(self._sdk_due)
        expected = self._expected
        while expected:
            key, deadline = next(iter(expected.items()))
            if deadline > now:
                break
            del expected[key]

    def _emit(self, out: dict[str, list[Span]]) -> None:
        for source, spans in out.items():
            if spans:
                self.inner.offer(spans, source)

    def _next_deadline(self) -> float | None:
        with self._lock:
            deadlines = [self._sdk_due[0][0]] if self._sdk_due else []
            if self._held:
                deadlines.append(next(iter(self._held.values()))[0][0])
        return min(deadlines) if deadlines else None

    def _start_timer(self) -> None:
        self._timer = threading.Thread(target=self._tick, name="apiward-join", daemon=True)
        self._timer.start()

    def _tick(self) -> None:
        while not self._closed.is_set():
            nxt = self._next_deadline()
            wait = 0.5 if nxt is None else min(0.5, max(0.02, nxt - time.monotonic()))
            self._wake.wait(wait)
            if self._closed.is_set():
                return
            out: dict[str, list[Span]] = {}
            with self._lock:
                self._expire(time.monotonic(), out)
            self._emit(out)
