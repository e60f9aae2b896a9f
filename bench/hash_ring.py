"""Trace-id routing as the Collector's ``loadbalancing`` exporter does it.

The exporter (``routing_key: traceID``) puts every backend on a consistent-hash
ring of 36 000 positions, 100 points per backend at ``crc32(endpoint + byte(i))
% 36000``, and sends a trace to the first backend point at or after
``crc32(trace id bytes) % 36000`` (wrapping around). This is our reading of its
``consistent_hashing.go``; what the tests and benchmarks depend on is only the
property that matters for apiward: every span of a trace goes to one backend,
and the split is close to even.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_POSITIONS = 36_000
POINTS_PER_ENDPOINT = 100


class HashRing:
    def __init__(self, endpoints: Sequence[str]) -> None:
        items: dict[int, str] = {}
        for ep in endpoints:
            for i in range(POINTS_PER_ENDPOINT):
                pos = zlib.crc32(ep.encode() + bytes([i % 256])) % MAX_POSITIONS
                items.setdefault(pos, ep)
        self._pos = sorted(items)
        self._ep = [items[p] for p in self._pos]

    def endpoint_for(self, trace_id: bytes) -> str:
        pos = zlib.crc32(trace_id) % MAX_POSITIONS
        i = bisect.bisect_left(self._pos, pos)
        return self._ep[0 if i == len(self._pos) else i]


def split_request(req: ExportTraceServiceRequest, ring: HashRing) -> dict[str, ExportTraceServiceRequest]:
    """One request per backend with the spans the ring routes to it (resource and scope kept)."""
    out: dict[str, ExportTraceServiceRequest] = {}
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            by_ep: dict[str, list] = {}
            for sp in ss.spans:
                by_ep.setdefault(ring.endpoint_for(sp.trace_id), []).append(sp)
            for ep, spans in by_ep.items():
                r = out.setdefault(ep, ExportTraceServiceRequest())
                nrs = r.resource_spans.add()
                nrs.resource.CopyFrom(rs.resource)
                nrs.schema_url = rs.schema_url
                nss = nrs.scope_spans.add()
                nss.scope.CopyFrom(ss.scope)
                nss.schema_url = ss.schema_url
                nss.spans.extend(spans)
    return out
