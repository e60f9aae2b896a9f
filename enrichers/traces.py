"""Recent traces, kept small and free of sensitive values, for the Traces view.

Only structure is kept: ids, service, name, kind, timings, status, HTTP method,
route template and status code. No attribute values, no URLs, no headers, so
nothing sensitive can reach the screen through this store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.model import Finding, Span, StatusCode, ns_to_iso
from enrichers.base import Enricher

if TYPE_CHECKING:
    from agent.config import Config
    from agent.state import State


@dataclass(frozen=True, slots=True)
class SpanSummary:
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": self.service,
            "name": self.name,
            "kind": self.kind,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ms": round((self.end_ns - self.start_ns) / 1e6, 3),
            "status": self.status,
            "http_method": self.http_method,
            "route": self.route,
            "status_code": self.status_code,
            "source": self.source,
        }


class TraceStore:
    """A bounded LRU of traces (by trace id), each a bounded list of summaries."""

    def __init__(self, max_traces: int = 2000, max_spans_per_trace: int = 500) -> None:
        self.max_traces = max_traces
        self.max_spans = max_spans_per_trace
        self.traces: OrderedDict[str, list[SpanSummary]] = OrderedDict()

    def add(self, trace_id: str, s: SpanSummary) -> None:
        spans = self.traces.get(trace_id)
        if spans is None:
            spans = []
            self.traces[trace_id] = spans
            if len(self.traces) > self.max_traces:
                self.traces.popitem(last=False)
        else:
            self.traces.move_to_end(trace_id)
        if len(spans) < self.max_spans:
            spans.append(s)

    @staticmethod
    def _summary(trace_id: str, spans: list[SpanSummary]) -> dict[str, Any]:
        ids = {s.span_id for s in spans}
        roots = [s for s in spans if not s.parent_span_id or s.parent_span_id not in ids]
        root = min(roots or spans, key=lambda s: s.start_ns)
        start = min(s.start_ns for s in spans)
        end = max(s.end_ns for s in spans)
        error = any(s.status == "error" or s.status_code >= 500 for s in spans)
        return {
            "trace_id": trace_id,
            "root_service": root.service,
            "root_name": root.name,
            "route": root.route,
            "http_method": root.http_method,
            "status_code": root.status_code,
            "start": ns_to_iso(start),
            "start_ns": start,
            "duration_ms": round((end - start) / 1e6, 3),
            "status": "error" if error else "ok",
            "span_count": len(spans),
            "services": sorted({s.service for s in spans}),
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
        out = []
        for tid in reversed(self.traces):
            spans = self.traces[tid]
            if q and q.lower() not in tid:
                continue
            if service and not any(s.service == service for s in spans):
                continue
            if route and not any(route in s.route for s in spans):
                continue
            summ = self._summary(tid, spans)
            if status and summ["status"] != status:
                continue
            out.append(summ)
            if len(out) >= limit:
                break
        return out

    def get(self, trace_id: str) -> dict[str, Any] | None:
        spans = self.traces.get(trace_id)
        if spans is None:
            return None
        d = self._summary(trace_id, spans)
        d["spans"] = [s.to_dict() for s in sorted(spans, key=lambda s: s.start_ns)]
        return d


class TraceStoreEnricher(Enricher):
    """Keeps :class:`TraceStore` (State part "traces") up to date."""

    name = "traces"

    def __init__(self, config: Config | None = None) -> None:
        sec = config.section("traces") if config is not None else {}
        self.max_traces = int(sec.get("max_traces", 2000))

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        store: TraceStore = state.part("traces", lambda: TraceStore(self.max_traces))
        endpoints = state.batch.endpoints
        for span in batch:
            http = span.http
            ep = endpoints.get(span.span_id)
            route = ep.route if ep is not None else (http.route if http is not None else "")
            store.add(
                span.trace_id,
                SpanSummary(
                    span_id=span.span_id,
                    parent_span_id=span.parent_span_id,
                    service=span.resource.service_name,
                    name=span.name if not http or http.route or not http.path else _safe_name(span, route),
                    kind=span.kind.name.lower(),
                    start_ns=span.start_ns,
                    end_ns=span.end_ns,
                    status="error" if span.status_code == StatusCode.ERROR else "ok",
                    http_method=http.method if http is not None else "",
                    route=route,
                    status_code=http.status_code if http is not None else 0,
                    source=span.source,
                ),
            )
        return ()


def _safe_name(span: Span, route: str) -> str:
    # Span names of uninstrumented HTTP (eBPF) may carry the raw path; use the template.
    http = span.http
    method = http.method if http is not None else ""
    return f"{method} {route}".strip() if route else method or span.kind.name.lower()
