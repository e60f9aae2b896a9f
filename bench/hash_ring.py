"""Trace-id routing as the Collector's ``loadbalancing`` exporter does it.

Checked against the exporter's source in opentelemetry-collector-contrib,
``exporter/loadbalancingexporter`` (``consistent_hashing.go`` with its test,
``loadbalancer.go``, ``trace_exporter.go``, ``resolver_static.go``,
``resolver_dns.go``):

- ``newHashRing(endpoints)`` places each endpoint at ``defaultWeight = 100``
  points: point ``i`` is ``crc32.IEEE(endpoint bytes + byte(i)) % 36000``
  (``maxPositions``, "360 degrees with two decimal places").
- A position already taken is skipped, so the endpoint listed first keeps it;
  the resolvers hand the ring a *sorted* list (``sort.Strings`` in the static
  and DNS resolvers), so the first in sorted order wins a collision and the
  order the user lists backends in does not matter. Items are sorted by
  position.
- The ring holds the endpoints exactly as resolved (``host:port`` as
  configured for the static resolver, ``ip`` or ``ip:port`` for DNS);
  ``endpointWithPort`` (adds ``:4317``) only names the exporter, not the
  ring point.
- ``routing_key: traceID`` (the default for traces): the key is the 16 bytes
  of the trace id (``tid[:]`` of the first span of each per-trace batch);
  ``endpointFor`` takes ``crc32.IEEE(key) % 36000`` and ``bsearch`` returns the
  item at that position or the next higher one, wrapping to the first item
  past the last.

``tests/agent/test_hash_ring.py`` checks this module against the values in the
exporter's own ``consistent_hashing_test.go`` and against a transcription of
its ``bsearch``.
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

MAX_POSITIONS = 36_000
DEFAULT_WEIGHT = 100
POINTS_PER_ENDPOINT = DEFAULT_WEIGHT  # the old name


def positions_for(endpoint: str, num_points: int = DEFAULT_WEIGHT) -> list[int]:
    """``positionsFor``: the ring positions of one endpoint, in point order."""
    ep = endpoint.encode()
    return [zlib.crc32(ep + bytes([i & 0xFF])) % MAX_POSITIONS for i in range(num_points)]


def positions_for_endpoints(endpoints: Sequence[str], weight: int = DEFAULT_WEIGHT) -> list[tuple[int, str]]:
    """``positionsForEndpoints``: (position, endpoint) sorted by position; the first claimant keeps a position."""
    items: dict[int, str] = {}
    for ep in endpoints:
        for pos in positions_for(ep, weight):
            items.setdefault(pos, ep)
    return sorted(items.items())


class HashRing:
    """The exporter's ring for a set of resolved endpoints (sorted first, as the resolvers do)."""

    def __init__(self, endpoints: Sequence[str], weight: int = DEFAULT_WEIGHT) -> None:
        self.items = positions_for_endpoints(sorted(endpoints), weight)
        self._pos = [p for p, _ in self.items]
        self._ep = [e for _, e in self.items]

    def position(self, key: bytes) -> int:
        return zlib.crc32(key) % MAX_POSITIONS

    def endpoint_for(self, trace_id: bytes) -> str:
        """The endpoint for a routing key (the trace id's 16 bytes); ``""`` for an empty ring."""
        if not self._pos:
            return ""
        i = bisect.bisect_left(self._pos, self.position(trace_id))
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
