"""One span per request when both an OTel SDK and the eBPF tracer saw it.

:class:`JoiningSink` wraps the pipeline's sink; the OTLP receivers and the eBPF
collector both offer to it. An eBPF SERVER span that carried a ``traceparent``
is held back briefly, keyed by (trace id, parent span id). When an SDK SERVER
span with the same trace and parent arrives, the SDK span goes on enriched with
the eBPF evidence (captured headers, body excerpts and sizes, peer addresses)
and the eBPF span is dropped. Held spans with no partner go on unchanged once
their hold time is up. An eBPF span whose SDK twin already went by is dropped
as a duplicate.

``offer`` never blocks: it takes a lock only around dictionary operations.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from agent.model import SOURCE_EBPF, Span, SpanKind, SpanSink, make_span

from .spans import TRACEPARENT_ATTR

JOINED_ATTR = "apiward.ebpf.joined"
_MAX_HELD = 50_000
_MAX_SEEN = 100_000

Key = tuple[str, str]


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


class JoiningSink(SpanSink):
    """A :class:`SpanSink` that merges eBPF and SDK spans of the same request.

    ``hold_seconds`` should cover the SDK's export delay (the batch span
    processor's default schedule delay is 5 s).
    """

    def __init__(self, inner: SpanSink, hold_seconds: float = 8.0) -> None:
        self.inner = inner
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        self._held: OrderedDict[Key, tuple[float, Span]] = OrderedDict()
        self._seen_sdk: OrderedDict[Key, None] = OrderedDict()
        self._timer: threading.Thread | None = None
        self._closed = threading.Event()
        self.joined = 0
        self.duplicates = 0
        self.released = 0

    # ------------------------------------------------------------- SpanSink

    def offer(self, batch: list[Span], source: str) -> bool:
        out: list[Span] = []
        now = time.monotonic()
        with self._lock:
            if source == SOURCE_EBPF:
                for span in batch:
                    key = self._key_ebpf(span)
                    if key is None:
                        out.append(span)
                    elif key in self._seen_sdk:
                        self.duplicates += 1
                    else:
                        self._held[key] = (now + self.hold_seconds, span)
                        if len(self._held) > _MAX_HELD:
                            _, (_, old) = self._held.popitem(last=False)
                            out.append(old)
                            self.released += 1
            else:
                for span in batch:
                    if span.kind == SpanKind.SERVER and span.parent_span_id:
                        key = (span.trace_id, span.parent_span_id)
                        held = self._held.pop(key, None)
                        if held is not None:
                            span = merge(span, held[1])
                            self.joined += 1
                        else:
                            self._seen_sdk[key] = None
                            if len(self._seen_sdk) > _MAX_SEEN:
                                self._seen_sdk.popitem(last=False)
                    out.append(span)
            out.extend(self._expired(now))
            if self._held and self._timer is None:
                self._start_timer()
        if not out:
            return True
        return self.inner.offer(out, source)

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        self.inner.count_rejected(source, reason, n)

    # ------------------------------------------------------------ the rest

    def flush(self) -> None:
        """Release every held span now (at shutdown)."""
        with self._lock:
            spans = [s for _, s in self._held.values()]
            self._held.clear()
            self.released += len(spans)
        if spans:
            self.inner.offer(spans, SOURCE_EBPF)

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def stop(self) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Let the runtime reach the pipeline's other methods through the wrapper.
        return getattr(self.inner, name)

    @staticmethod
    def _key_ebpf(span: Span) -> Key | None:
        if span.kind != SpanKind.SERVER or not span.parent_span_id:
            return None
        if TRACEPARENT_ATTR not in span.attributes:
            return None
        return (span.trace_id, span.parent_span_id)

    def _expired(self, now: float) -> list[Span]:
        out: list[Span] = []
        while self._held:
            key, (deadline, span) = next(iter(self._held.items()))
            if deadline > now:
                break
            del self._held[key]
            out.append(span)
            self.released += 1
        return out

    def _start_timer(self) -> None:
        self._timer = threading.Thread(target=self._tick, name="apiward-join", daemon=True)
        self._timer.start()

    def _tick(self) -> None:
        while not self._closed.wait(0.5):
            with self._lock:
                out = self._expired(time.monotonic())
            if out:
                self.inner.offer(out, SOURCE_EBPF)
