"""Latency sketches shared by the inventory and the call graph: DDSketch buckets, cheap adds.

``DDSketch.add`` costs over a microsecond in pure Python (method calls, range
checks, store growth), and the inventory adds one value per span.
:class:`LatencySketch` keeps the very same logarithmic buckets (the default
DDSketch mapping, 1% relative accuracy) in a dict: one ``log2`` and one dict
update per value. Quantiles are read from the buckets the way DDSketch reads
them, sketches merge by adding buckets, and persistence goes through
DDSketch's protobuf, so stored state and other DDSketch users stay compatible.

(Each enricher package keeps its own copy: enrichers share data only through State.)
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable
from typing import Any

from ddsketch import DDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto, KeyMappingProto

_MAPPING: Any = DDSketch()._mapping  # the default mapping every DDSketch() uses
assert isinstance(_MAPPING, LogarithmicMapping)
#: key(seconds) = ceil(log2(seconds) * MULT): LogarithmicMapping.key with offset 0.
MULT: float = _MAPPING._multiplier
_MIN_SECONDS: float = _MAPPING.min_possible
log2 = math.log2
ceil = math.ceil


class LatencySketch:
    """A mergeable sketch of durations (seconds) in DDSketch's buckets.

    ``bins`` maps a bucket key to its count; ``zero`` counts zero durations.
    Hot loops may inline :meth:`add_ns`:
    ``k = ceil(log2(ns * 1e-9) * MULT); bins[k] = bins.get(k, 0) + 1; count += 1``.
    """

    __slots__ = ("bins", "count", "zero")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add_ns(self, ns: int) -> None:
        self.count += 1
        if ns <= 0:
            self.zero += 1
            return
        k = ceil(log2(ns * 1e-9) * MULT)
        b = self.bins
        b[k] = b.get(k, 0) + 1

    def add(self, seconds: float, weight: int = 1) -> None:
        self.count += weight
        if seconds <= _MIN_SECONDS:
            self.zero += weight
            return
        k = ceil(log2(seconds) * MULT)
        self.bins[k] = self.bins.get(k, 0) + weight

    def merge(self, other: LatencySketch) -> None:
        b = self.bins
        for k, n in other.bins.items():
            b[k] = b.get(k, 0) + n
        self.zero += other.zero
        self.count += other.count

    def copy(self) -> LatencySketch:
        c = LatencySketch()
        c.bins = dict(self.bins)
        c.zero, c.count = self.zero, self.count
        return c

    def minus(self, earlier: LatencySketch) -> LatencySketch:
        """What was added since ``earlier`` (a :meth:`copy` of this sketch)."""
        d = LatencySketch()
        eb = earlier.bins
        d.bins = {k: n - eb.get(k, 0) for k, n in self.bins.items() if n != eb.get(k, 0)}
        d.zero, d.count = self.zero - earlier.zero, self.count - earlier.count
        return d

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """Quantiles in seconds, as ``DDSketch.get_quantile_value`` computes them."""
        qs = list(qs)
        if self.count <= 0:
            return [None] * len(qs)
        keys = sorted(self.bins)
        out: list[float | None] = []
        for q in qs:
            if q < 0 or q > 1:
                out.append(None)
                continue
            rank = q * (self.count - 1) - self.zero
            if rank < 0:
                out.append(0.0)
                continue
            running = 0
            key = keys[-1] if keys else 0
            for k in keys:
                running += self.bins[k]
                if running > rank:
                    key = k
                    break
            out.append(_MAPPING.value(key))
        return out

    def get_quantile_value(self, q: float) -> float | None:
        return self.quantiles((q,))[0]

    def quantiles_ms(self, qs: Iterable[float]) -> list[float | None]:
        return [None if v is None else round(v * 1000.0, 3) for v in self.quantiles(qs)]

    def to_ddsketch(self) -> DDSketch:
        s = DDSketch()
        store = s._store
        for k in sorted(self.bins):
            store.add(k, float(self.bins[k]))
        s._zero_count = float(self.zero)
        s._count = float(self.count)
        return s

    @classmethod
    def from_ddsketch(cls, s: Any) -> LatencySketch:
        """Take the positive values of a DDSketch (another mapping is re-bucketed)."""
        out = cls()
        store = s._store
        mapping = s._mapping
        same = _same_mapping(mapping.gamma, mapping._offset, type(mapping) is LogarithmicMapping)
        for i, n in enumerate(store.bins):
            if n:
                k = i + store.offset
                if not same:
                    k = ceil(log2(mapping.value(k)) * MULT)
                out.bins[k] = out.bins.get(k, 0) + int(round(n))
        out.zero = int(round(s._zero_count))
        out.count = sum(out.bins.values()) + out.zero
        return out


_MAPPING_PB = KeyMappingProto.to_proto(_MAPPING)


def _same_mapping(gamma: float, offset: float, logarithmic: bool) -> bool:
    return logarithmic and gamma == _MAPPING.gamma and offset == _MAPPING._offset


def sketch_dump(s: LatencySketch) -> str:
    """Base64 DDSketch protobuf (what ``DDSketchProto.to_proto`` writes), built directly."""
    msg = DDSketchMessage()
    msg.mapping.CopyFrom(_MAPPING_PB)
    bins = s.bins
    if bins:
        lo, hi = min(bins), max(bins)
        get = bins.get
        msg.positiveValues.contiguousBinIndexOffset = lo
        msg.positiveValues.contiguousBinCounts.extend([float(get(k, 0)) for k in range(lo, hi + 1)])
    msg.zeroCount = float(s.zero)
    return base64.b64encode(msg.SerializeToString()).decode()


def sketch_load(text: str) -> LatencySketch:
    msg = DDSketchMessage()
    msg.ParseFromString(base64.b64decode(text))
    m = msg.mapping
    if not _same_mapping(m.gamma, m.indexOffset, m.interpolation == m.NONE):
        return LatencySketch.from_ddsketch(DDSketchProto.from_proto(msg))
    out = LatencySketch()
    bins = out.bins
    store = msg.positiveValues
    k = store.contiguousBinIndexOffset
    for n in store.contiguousBinCounts:
        if n:
            bins[k] = int(round(n))
        k += 1
    for k, n in store.binCounts.items():
        if n:
            bins[k] = bins.get(k, 0) + int(round(n))
    out.zero = int(round(msg.zeroCount))
    out.count = sum(bins.values()) + out.zero
    return out


def quantile_ms(s: LatencySketch, q: float) -> float | None:
    """Quantile ``q`` of a sketch of seconds, in milliseconds; ``None`` when empty."""
    return s.quantiles_ms((q,))[0]
