"""Recent traces, kept small and free of sensitive values, for the Traces view.

Only structure is kept: ids, service, name, kind, timings, status, HTTP method,
route template and status code. No attribute values, no URLs, no headers, so
nothing sensitive can reach the screen through this store.

Every span lands here, so the store keeps one plain tuple per span (a
:data:`SpanRow`: strings, ints and a bool, which the garbage collector stops
tracking) and builds dicts only when the query API asks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Final

from agent.model import Finding, Span, SpanKind, StatusCode, ns_to_iso
from enrichers.base import Enricher

if TYPE_CHECKING:
    from agent.config import Config
    from agent.state import State

#: (span_id, parent_span_id, service, name, kind, start_ns, end_ns, error,
#:  http_method, route, status_code, source); ``kind`` is the lowercase kind name.
SpanRow = tuple[str, str, str, str, str, int, int, bool, str, str, int, str]
_SPAN_ID: Final = 0
_PARENT: Final = 1
_SERVICE: Final = 2
_NAME: Final = 3
_KIND: Final = 4
_START: Final = 5
_END: Final = 6
_ERROR: Final = 7
_METHOD: Final = 8
_ROUTE: Final = 9
_CODE: Final = 10
_SOURCE: Final = 11
#: keyed by the members (a plain int finds the same entry), so the usual lookup by a
#: member hits by identity
_KIND_NAMES: dict[int, str] = {k: k.name.lower() for k in SpanKind}
_NO_NAMES: dict[str, str] = {}


@dataclass(frozen=True, slots=True)
class SpanSummary:
    """One span of a trace, as the API shows it (built from a :data:`SpanRow` on demand)."""

    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    http_method: str
    route: str
    status_code: int
    source: str

    @classmethod
    def from_row(cls, r: SpanRow) -> SpanSummary:
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], r[6], "error" if r[7] else "ok",
                   r[8], r[9], r[10], r[11])

    def row(self) -> SpanRow:
        return (self.span_id, self.parent_span_id, self.service, self.name, self.kind,
                self.start_ns, self.end_ns, self.status == "error", self.http_method,
                self.route, self.status_code, self.source)

    def to_dict(self) -> dict[str, Any]:
        return _row_dict(self.row())


def _row_dict(r: SpanRow) -> dict[str, Any]:
    return {
        "span_id": r[_SPAN_ID],
        "parent_span_id": r[_PARENT],
        "service": r[_SERVICE],
        "name": r[_NAME],
        "kind": r[_KIND],
        "start_ns": r[_START],
        "end_ns": r[_END],
        "duration_ms": round((r[_END] - r[_START]) / 1e6, 3),
        "status": "error" if r[_ERROR] else "ok",
        "http_method": r[_METHOD],
        "route": r[_ROUTE],
        "status_code": r[_CODE],
        "source": r[_SOURCE],
    }


class TraceStore:
    """A bounded store of recent traces (by trace id), each a bounded list of span rows.

    ``traces`` maps a trace id to its rows, oldest trace first; a trace that gets
    a new span moves to the end. A trace of one span holds its row directly (no
    list until a second span arrives). When the store holds ``max_traces`` plus a
    slack of an eighth, the oldest are dropped down to ``max_traces`` in one go.
    """

    def __init__(self, max_traces: int = 2000, max_spans_per_trace: int = 500) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans_per_trace
        self.slack = max_traces // 8
        self.traces: dict[str, list[SpanRow] | SpanRow] = {}

    def add(self, trace_id: str, s: SpanSummary | SpanRow) -> None:
        row = s.row() if isinstance(s, SpanSummary) else s
        traces = self.traces
        got = traces.pop(trace_id, None)
        if got is None:
            traces[trace_id] = row
            if len(traces) > self.max_traces + self.slack:
                self.trim()
        elif type(got) is list:
            traces[trace_id] = got
            if len(got) < self.max_spans:
                got.append(row)
        else:
            traces[trace_id] = [got, row] if self.max_spans > 1 else [got]  # type: ignore[list-item]

    def trim(self) -> None:
        """Drop the oldest traces down to ``max_traces``."""
        traces = self.traces
        extra = len(traces) - self.max_traces
        if extra > 0:
            for tid in list(islice(traces, extra)):
                del traces[tid]

    def rows(self, trace_id: str) -> list[SpanRow]:
        got = self.traces.get(trace_id)
        if got is None:
            return []
        return got if type(got) is list else [got]  # type: ignore[list-item]

    def spans(self, trace_id: str) -> list[SpanSummary]:
        return [SpanSummary.from_row(r) for r in self.rows(trace_id)]

    @staticmethod
    def _summary(trace_id: str, spans: list[SpanRow]) -> dict[str, Any]:
        ids = {s[_SPAN_ID] for s in spans}
        roots = [s for s in spans if not s[_PARENT] or s[_PARENT] not in ids]
        root = min(roots or spans, key=lambda s: s[_START])
        start = min(s[_START] for s in spans)
        end = max(s[_END] for s in spans)
        error = any(s[_ERROR] or s[_CODE] >= 500 for s in spans)
        return {
            "trace_id": trace_id,
            "root_service": root[_SERVICE],
            "root_name": root[_NAME],
            "route": root[_ROUTE],
            "http_method": root[_METHOD],
            "status_code": root[_CODE],
            "start": ns_to_iso(start),
            "start_ns": start,
            "duration_ms": round((end - start) / 1e6, 3),
            "status": "error" if error else "ok",
            "span_count": len(spans),
            "services": sorted({s[_SERVICE] for s in spans}),
        }

    def list(
        self,
        *,
        service: str = "",
        route: str = "",
        status: str = "",
        q: str = "",
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for tid in islice(reversed(self.traces), self.max_traces):
            spans = self.rows(tid)
            if q and q.lower() not in tid:
                continue
            if service and not any(s[_SERVICE] == service for s in spans):
                continue
            if route and not any(route in s[_ROUTE] for s in spans):
                continue
            summ = self._summary(tid, spans)
            if status and summ["status"] != status:
                continue
            out.append(summ)
            if len(out) >= limit:
                break
        return out

    def get(self, trace_id: str) -> dict[str, Any] | None:
        spans = self.rows(trace_id)
        if not spans:
            return None
        d = self._summary(trace_id, spans)
        d["spans"] = [_row_dict(s) for s in sorted(spans, key=lambda s: s[_START])]
        return d


#: Hash buckets of the admission share (a trace is admitted when its bucket is below the cut).
_BUCKETS: Final = 1 << 16


class TraceStoreEnricher(Enricher):
    """Keeps :class:`TraceStore` (State part "traces") up to date.

    The store is a view for people: at more than ``admit_per_second`` new traces per
    second it would hold only the last fraction of a second. Past that rate it admits a
    share of the new traces instead, chosen by trace id (every span of an admitted trace
    is kept, whichever batch or service it comes from), so the store covers the last
    ``max_traces / admit_per_second`` seconds or more, and the spans of the others cost one
    hash each instead of a row made and thrown away. The analyses see every span either way.
    """

    name = "traces"

    def __init__(self, config: Config | None = None) -> None:
        sec = config.section("traces") if config is not None else {}
        self.max_traces = int(sec.get("max_traces", 2000))
        self.admit_per_second = int(sec.get("admit_per_second", max(1, self.max_traces // 4)))
        #: new traces are admitted when ``hash(trace_id) % _BUCKETS < cut`` (all: _BUCKETS)
        self.cut = _BUCKETS
        self.refused = 0
        self.clock = time.monotonic  # (seconds; tests step their own)
        self._period_start = self.clock()
        self._period_new = 0
        #: method -> route -> "METHOD route": the names of spans named by their route
        #: template, one shared string each instead of one per span (bounded)
        self._names: dict[str, dict[str, str]] = {}
        self._n_names = 0

    def stats(self) -> dict[str, Any]:
        """For ``/api/v1/stats``: the share of new traces the store admits now, and the spans
        of traces it did not keep."""
        return {"admitted_share": round(self.cut / _BUCKETS, 4), "refused_spans": self.refused,
                "admit_per_second": self.admit_per_second}

    def _admission(self, new: int) -> None:
        """Count ``new`` traces; once a second, set the share admitted from the rate seen."""
        self._period_new += new
        now = self.clock()
        elapsed = now - self._period_start
        if elapsed >= 1.0:
            rate = self._period_new / elapsed
            share = 1.0 if rate <= self.admit_per_second else self.admit_per_second / rate
            self.cut = max(1, min(_BUCKETS, int(share * _BUCKETS)))
            self._period_start = now
            self._period_new = 0

    def _name(self, method: str, route: str) -> str:
        """``"METHOD route"``, remembered (see ``_names``)."""
        if self._n_names >= 4096:
            self._names.clear()
            self._n_names = 0
        self._n_names += 1
        name = self._names.setdefault(method, {})[route] = f"{method} {route}"
        return name

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        store: TraceStore = state.part("traces", lambda: TraceStore(self.max_traces))
        traces = store.traces
        limit = store.max_traces + store.slack
        max_spans = store.max_spans
        endpoints = state.batch.endpoints
        get_ep = endpoints.get
        kind_names = _KIND_NAMES
        names = self._names
        error = StatusCode.ERROR
        last_tid = ""
        last: list[SpanRow] | None = None  # the rows of the trace of the previous span
        cut = self.cut
        new = refused = 0
        for span in batch:
            if cut < _BUCKETS:  # under load: a trace not stored yet is admitted by its id
                tid = span.trace_id
                if tid == last_tid:
                    if last is None and tid not in traces:
                        continue  # (refused just before)
                elif tid not in traces and hash(tid) % _BUCKETS >= cut:
                    new += 1  # (the admitted ones are counted below, where they are stored)
                    refused += 1
                    last_tid, last = tid, None
                    continue
            http = span.http
            ep = get_ep(span.span_id) if endpoints else None
            if http is None:
                route = ep.route if ep is not None else ""
                name, method, code = span.name, "", 0
            else:
                route = ep.route if ep is not None else http.route
                method, code = http.method, http.status_code
                hr = http.route
                name = span.name
                if hr:
                    # "GET /orders/<int:id>" (the framework's own syntax, as Flask names its
                    # spans) is shown as the inventory's template, like the rest of apiward;
                    # a name of the instrumentation's own choosing stays as it is
                    template = bool(method) and route != hr and name.endswith(hr) and (
                        len(name) == len(method) + 1 + len(hr) and name.startswith(method))
                elif http.path:  # the name may carry the raw path (eBPF): use the template
                    template = bool(route and method)
                    if not template:
                        name = route or method or kind_names[span.kind]
                else:
                    template = False
                if template:
                    name = names.get(method, _NO_NAMES).get(route) or self._name(method, route)
            row = (
                span.span_id, span.parent_span_id, span.resource.service_name, name,
                kind_names[span.kind], span.start_ns, span.end_ns, span.status_code == error,
                method, route, code, span.source,
            )
            tid = span.trace_id
            if tid == last_tid:  # spans of one trace often arrive together
                if last is None:
                    first = traces.get(tid)
                    if first is None or max_spans < 2:  # trimmed away (max_traces 0), or full
                        continue
                    last = traces[tid] = [first, row]  # type: ignore[list-item]
                elif len(last) < max_spans:
                    last.append(row)
                continue
            last_tid = tid
            got = traces.pop(tid, None)
            if got is None:
                new += 1
                traces[tid] = row
                last = None
                if len(traces) > limit:
                    store.trim()
            elif type(got) is list:
                traces[tid] = last = got
                if len(got) < max_spans:
                    got.append(row)
            else:
                traces[tid] = last = [got, row] if max_spans > 1 else [got]  # type: ignore[list-item]
        self.refused += refused
        self._admission(new)
        return ()
