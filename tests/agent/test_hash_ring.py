"""``bench/hash_ring.py`` routes as the Collector's ``loadbalancing`` exporter does.

The expected values are the ones in the exporter's own
``exporter/loadbalancingexporter/consistent_hashing_test.go``
(opentelemetry-collector-contrib), and the lookup is compared position by
position with a line-by-line transcription of its ``bsearch``.
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass

import pytest

from bench.hash_ring import (
    DEFAULT_WEIGHT,
    MAX_POSITIONS,
    HashRing,
    positions_for,
    positions_for_endpoints,
    split_request,
)
from bench.workload import build_request

# consistent_hashing_test.go, TestPositionsForEndpoints (weight 5): "this was
# first calculated by running the algorithm and taking its output".
GO_ENDPOINT_1 = [1401, 4175, 14133, 17836, 21667]
GO_BOTH = [
    (1401, "endpoint-1"), (4175, "endpoint-1"), (10240, "endpoint-2"), (14133, "endpoint-1"),
    (15002, "endpoint-2"), (17836, "endpoint-1"), (21263, "endpoint-2"), (21667, "endpoint-1"),
    (26806, "endpoint-2"), (27020, "endpoint-2"),
]


def test_positions_match_the_exporter_test_values() -> None:
    assert positions_for_endpoints(["endpoint-1"], 5) == [(p, "endpoint-1") for p in GO_ENDPOINT_1]
    # "Duplicate Endpoint": no duplicate items
    assert positions_for_endpoints(["endpoint-1", "endpoint-1"], 5) == [(p, "endpoint-1") for p in GO_ENDPOINT_1]
    assert positions_for_endpoints(["endpoint-1", "endpoint-2"], 5) == GO_BOTH
    assert len(positions_for("host1", 10)) == 10  # TestPositionsFor


def test_ring_size_and_endpoint_for_match_the_exporter_test() -> None:
    ring = HashRing(["endpoint-1", "endpoint-2"])
    assert len(ring.items) == 2 * DEFAULT_WEIGHT  # TestNewHashRing
    # TestEndpointFor
    assert ring.endpoint_for(bytes([1, 2, 0, 0])) == "endpoint-1"
    assert ring.endpoint_for(bytes([128, 128, 0, 0])) == "endpoint-2"
    assert ring.endpoint_for(b"ad-service-7") == "endpoint-1"
    assert ring.endpoint_for(b"get-recommendations-1") == "endpoint-2"


@dataclass
class _Item:
    pos: int
    endpoint: str = ""


def _go_bsearch(pos: int, left: list[_Item], right: list[_Item]) -> _Item:
    """consistent_hashing.go ``bsearch``, transcribed."""
    if left[-1].pos == pos:
        return left[-1]
    if right[0].pos == pos:
        return right[0]
    if pos > right[-1].pos:
        return left[0]
    if pos > left[-1].pos:
        size = len(right)
        if size == 1:
            return right[0]
        return _go_bsearch(pos, right[: size // 2], right[size // 2:])
    size = len(left)
    if size == 1:
        return left[0]
    return _go_bsearch(pos, left[: size // 2], left[size // 2:])


def _go_find(items: list[_Item], pos: int) -> _Item:
    n = len(items)
    return _go_bsearch(pos, items[: n // 2], items[n // 2:])


def test_transcribed_bsearch_matches_the_exporter_test() -> None:
    items = [_Item(p) for p in (14, 25, 33, 47, 56, 121, 134, 158, 240, 270, 350)]  # TestBinarySearch
    for requested, expected in ((85, 121), (14, 14), (351, 14), (270, 270), (271, 350)):
        assert _go_find(items, requested).pos == expected


@pytest.mark.parametrize("endpoints", [
    ["apiward-0.apiward:4317", "apiward-1.apiward:4317"],
    ["apiward-0.apiward.svc:4317", "apiward-1.apiward.svc:4317", "apiward-2.apiward.svc:4317"],
    ["10.0.0.7:4317", "10.0.0.12:4317", "10.0.1.3:4317", "10.0.0.9:4317"],
])
def test_every_position_routes_as_the_exporter(endpoints: list[str]) -> None:
    # The ring, built independently from the Go algorithm (resolver sorts the list).
    taken: dict[int, str] = {}
    for ep in sorted(endpoints):
        for i in range(DEFAULT_WEIGHT):
            taken.setdefault(binascii.crc32(ep.encode() + bytes([i])) % MAX_POSITIONS, ep)
    go_items = [_Item(p, e) for p, e in sorted(taken.items())]
    ring = HashRing(endpoints)
    assert ring.items == [(i.pos, i.endpoint) for i in go_items]
    for pos in range(MAX_POSITIONS):
        assert ring._ep[_lookup(ring, pos)] == _go_find(go_items, pos).endpoint, pos
    # and through the public lookup, with trace ids
    for _ in range(2000):
        tid = secrets.token_bytes(16)
        assert ring.endpoint_for(tid) == _go_find(go_items, binascii.crc32(tid) % MAX_POSITIONS).endpoint


def _lookup(ring: HashRing, pos: int) -> int:
    import bisect

    i = bisect.bisect_left(ring._pos, pos)
    return 0 if i == len(ring._pos) else i


def test_listing_order_does_not_matter_and_the_sorted_first_wins_a_collision() -> None:
    # Find two endpoint names that claim a common position.
    names = [f"backend-{i}:4317" for i in range(200)]
    pos = {n: set(positions_for(n)) for n in names}
    pair = next((a, b) for a in names for b in names if a < b and pos[a] & pos[b])
    a, b = pair
    shared = pos[a] & pos[b]
    for order in ([a, b], [b, a]):
        ring = HashRing(order)
        owner = dict(ring.items)
        assert all(owner[p] == a for p in shared)  # a < b: the sorted-first keeps it
        assert len(ring.items) == len(pos[a] | pos[b])
    assert HashRing([a, b]).items == HashRing([b, a]).items


def test_split_keeps_traces_whole_and_loses_nothing() -> None:
    req = build_request(2000, seed=3)
    ring = HashRing(["a:4317", "b:4317", "c:4317"])
    parts = split_request(req, ring)
    seen: dict[bytes, str] = {}
    n = 0
    for ep, part in parts.items():
        for rs in part.resource_spans:
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    n += 1
                    assert ring.endpoint_for(sp.trace_id) == ep
                    assert seen.setdefault(sp.trace_id, ep) == ep
    assert n == 2000
    assert set(parts) == {"a:4317", "b:4317", "c:4317"}
