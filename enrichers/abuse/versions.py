"""Improper inventory management (API9): an old API version (``/v1/...``) still
called while a newer version of the same route exists."""

from __future__ import annotations

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef, Request
from enrichers.abuse.findings import FindingSink

#: A newer version counts as existing while it was called within this span of time.
NEWER_SEEN_NS = 7 * 24 * 3600 * 10**9


def versions_of(st: AbuseState, ep: EndpointRef) -> dict[int, int] | None:
    """Last-seen time per version of ``ep``'s unversioned route (None past the bounds)."""
    vs = st.versions_of.get(ep)
    if vs is not None:
        return vs
    svc = st.versions.get(ep.service)
    if svc is None:
        if len(st.versions) > 10_000:
            return None
        svc = st.versions[ep.service] = {}
    key = ep.method + " " + ep.info.unversioned
    vs = svc.get(key)
    if vs is None:
        if len(svc) > 5_000:
            return None
        vs = svc[key] = {}
    if len(st.versions_of) > 50_000:
        st.versions_of.clear()
    st.versions_of[ep] = vs
    return vs


def check(req: Request, st: AbuseState, sink: FindingSink) -> None:
    info = req.ep.info
    vs = versions_of(st, req.ep)
    if vs is None:
        return
    vs[info.version] = req.ts
    newer = [v for v, t in vs.items() if v > info.version and req.ts - t <= NEWER_SEEN_NS]
    if not newer:
        return
    sink.hit(
        rules.OLD_VERSION, req.ep.subject(), first_ns=req.ts, confidence=0.85,
        explanation=f"v{info.version} of {info.unversioned} still called; v{max(newer)} exists",
        evidence={"version": info.version, "newest_version": max(newer), "last_client": req.client},
        trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
    )
