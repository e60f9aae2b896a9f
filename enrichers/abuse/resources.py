"""Unrestricted resource consumption (API4) per request: very large responses
and unbounded page sizes. Rate-based API4 checks live in ``floods.py``,
latency and error anomalies in ``anomalies.py``."""

from __future__ import annotations

import re

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.settings import AbuseSettings

PAGE_PARAM_NAMES = r"\$?top|limit|page_?size|pagesize|per_?page|perpage|size|count|max|max_?results|first|take|rows|n"
_PAGE_PARAM = re.compile(f"^({PAGE_PARAM_NAMES})$", re.I)


def check_size(req: Request, st: AbuseState, sink: FindingSink, s: AbuseSettings) -> None:
    size = req.http.response_body_size
    if size is None or size < s.large_response_bytes:
        return
    b = st.endpoints.get(req.ep.key)
    usual = b.max_size.mean if b is not None and b.max_size.n else 0.0
    if usual and size < s.large_response_ratio * usual and b is not None and b.warm(req.ts, s):
        return  # this endpoint is a bulk endpoint; large is its normal
    sink.hit(
        rules.LARGE_RESPONSE, req.ep.subject(req.client), first_ns=req.ts, confidence=0.7,
        explanation=f"{size} byte response (usual largest {usual:.0f})",
        evidence={"response_bytes": size, "baseline_max_bytes": round(usual), "threshold": s.large_response_bytes},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )


def check_page_size(req: Request, sink: FindingSink, s: AbuseSettings) -> None:
    for k, v in req.params or ():
        if v.isdecimal() and len(v) < 12 and _PAGE_PARAM.match(k) and int(v) > s.max_page_size:
            sink.hit(
                rules.PAGE_SIZE, req.ep.subject(req.client), first_ns=req.ts, confidence=0.7,
                explanation=f"page size {k}={v} above {s.max_page_size}",
                evidence={"parameter": k, "requested": int(v), "threshold": s.max_page_size,
                          "status": req.status},
                trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
            )
            return
