"""A small per-trace buffer with a time-to-live, for detections that need two
spans of one trace that may arrive in either order and in different batches:
SSRF (a URL in a request parameter, then an outbound call to that host) and
injection reaching the database (a signature in the query string, then the
same text in ``db.statement``).

Two generations of plain dicts keep it O(1) per span and bounded: entries live
between one and two TTLs (of span time), and a generation that grows past the
size bound is retired early.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TraceFacts:
    """What one trace has shown so far (only the few facts the correlations need)."""

    ts: int
    #: (service, host, param name, span id, client, method, route) from server spans' parameters.
    url_params: list[tuple[str, str, str, str, str, str, str]] = field(default_factory=list)
    #: (service, host, span id) of outbound HTTP calls.
    outbound: list[tuple[str, str, str]] = field(default_factory=list)
    #: (service, payload fragment, kind, span id, client, method, route) from query strings.
    injections: list[tuple[str, str, str, str, str, str, str]] = field(default_factory=list)
    #: (service, lowercased statement, span id) of database statements.
    statements: list[tuple[str, str, str]] = field(default_factory=list)
    matched: set[str] = field(default_factory=set)


#: One outbound call (service, host, span id), or several.
_Out = tuple[str, str, str] | tuple[tuple[str, str, str], ...]


def _calls(out: _Out) -> tuple[tuple[str, str, str], ...]:
    """The calls of a stored outbound entry (one call is stored unwrapped)."""
    return (out,) if type(out[0]) is str else out  # type: ignore[return-value]


class TraceBuffer:
    """Bounded, expiring map of trace id to :class:`TraceFacts` (plus bare outbound calls)."""

    def __init__(self, max_traces: int, ttl_ns: int) -> None:
        self.max_traces = max_traces
        self.ttl_ns = ttl_ns
        self._cur: dict[str, TraceFacts] = {}
        self._prev: dict[str, TraceFacts] = {}
        #: Outbound calls of traces without facts: the one call itself, or a tuple of calls
        #: (most traces have one; see :func:`_calls`).
        self._out: dict[str, _Out] = {}
        self._out_prev: dict[str, _Out] = {}
        self._gen_start = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._cur) + len(self._prev)

    def get(self, trace_id: str) -> TraceFacts | None:
        f = self._cur.get(trace_id)
        return f if f is not None else self._prev.get(trace_id)

    def facts(self, trace_id: str, ts: int) -> TraceFacts:
        f = self.get(trace_id)
        if f is None:
            f = TraceFacts(ts)
            out = self._out.get(trace_id) or self._out_prev.get(trace_id)
            if out:
                f.outbound.extend(_calls(out))
            self._cur[trace_id] = f
            self._maybe_rotate(ts)
        return f

    def add_outbound(self, trace_id: str, item: tuple[str, str, str], ts: int) -> TraceFacts | None:
        """Remember an outbound call; returns the trace's facts when it has any."""
        if self._cur or self._prev:  # facts are rare (suspicious requests only)
            f = self._cur.get(trace_id)
            if f is None:
                f = self._prev.get(trace_id)
            if f is not None:
                if len(f.outbound) < 32:
                    f.outbound.append(item)
                return f
        # Tuples of strings, not lists: the garbage collector untracks them. A trace's first
        # call is stored as it is (no wrapping tuple per span); a second one makes a tuple.
        outs = self._out
        out = outs.get(trace_id)
        if out is None:
            outs[trace_id] = item
            if ts - self._gen_start >= self.ttl_ns or len(self._cur) + len(outs) > self.max_traces:
                self._maybe_rotate(ts)
        else:
            calls = _calls(out)
            if len(calls) < 32:
                outs[trace_id] = (*calls, item)
        return None

    def _maybe_rotate(self, ts: int) -> None:
        if ts - self._gen_start >= self.ttl_ns or len(self._cur) + len(self._out) > self.max_traces:
            self.evicted += len(self._prev) + len(self._out_prev)
            self._prev, self._cur = self._cur, {}
            self._out_prev, self._out = self._out, {}
            self._gen_start = ts

    def expire(self, now_ns: int) -> None:
        if now_ns - self._gen_start >= 2 * self.ttl_ns:
            self._prev.clear()
            self._out_prev.clear()
            self._maybe_rotate(now_ns)
