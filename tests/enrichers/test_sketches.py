"""LatencySketch (shared by the inventory and the call graph) against the real DDSketch."""

from __future__ import annotations

import random
from types import ModuleType

import pytest
from ddsketch import DDSketch

from enrichers import sketches

QS = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0)
MODULES = [pytest.param(sketches, id="sketches")]


def _durations(seed: int, n: int) -> list[int]:
    rnd = random.Random(seed)
    out = [int(rnd.lognormvariate(16, 1.5)) for _ in range(n)]  # ns: ~10 us .. ~10 s
    return out + [0, 0, 1, 10**12]


@pytest.mark.parametrize("mod", MODULES)
def test_quantiles_are_the_ddsketch_quantiles(mod: ModuleType) -> None:
    values = _durations(1, 5000)
    ours, ref = mod.LatencySketch(), DDSketch()
    for ns in values:
        ours.add_ns(ns)
        ref.add(ns / 1e9)
    assert ours.count == len(values) == ref.count
    for q, got in zip(QS, ours.quantiles(QS), strict=True):
        want = ref.get_quantile_value(q)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), q
    exact = sorted(values)
    for q in (0.5, 0.95, 0.99):  # and within DDSketch's 1% of the true quantile
        true_s = exact[int(q * (len(exact) - 1))] / 1e9
        assert ours.get_quantile_value(q) == pytest.approx(true_s, rel=0.0201)


@pytest.mark.parametrize("mod", MODULES)
def test_empty_merge_minus_and_round_trip(mod: ModuleType) -> None:
    empty = mod.LatencySketch()
    assert empty.quantiles((0.5,)) == [None] and mod.quantile_ms(empty, 0.5) is None
    a, b, both = mod.LatencySketch(), mod.LatencySketch(), mod.LatencySketch()
    for i, ns in enumerate(_durations(2, 2000)):
        (a if i % 3 else b).add_ns(ns)
        both.add_ns(ns)
    start = a.copy()
    a.merge(b)
    assert a.bins == both.bins and a.count == both.count and a.zero == both.zero
    assert a.minus(start).bins == {k: n for k, n in b.bins.items() if n}
    back = mod.sketch_load(mod.sketch_dump(a))  # DDSketch protobuf, as persisted before
    assert back.bins == a.bins and back.count == a.count and back.zero == a.zero
    assert back.quantiles(QS) == a.quantiles(QS)
    dd = a.to_ddsketch()
    assert [dd.get_quantile_value(q) for q in QS] == pytest.approx(a.quantiles(QS))


@pytest.mark.parametrize("mod", MODULES)
def test_persisted_form_is_ddsketch_protobuf_both_ways(mod: ModuleType) -> None:
    import base64

    from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
    from ddsketch.pb.proto import DDSketchProto

    values = _durations(3, 3000)
    ours, ref = mod.LatencySketch(), DDSketch()
    for ns in values:
        ours.add_ns(ns)
        ref.add(ns / 1e9)
    # what the previous version stored (DDSketchProto of a DDSketch) loads as the same buckets
    old_text = base64.b64encode(DDSketchProto.to_proto(ref).SerializeToString()).decode()
    loaded = mod.sketch_load(old_text)
    assert loaded.count == ours.count and loaded.quantiles(QS) == pytest.approx(ours.quantiles(QS))
    # and what we store reads back with DDSketchProto
    msg = DDSketchMessage()
    msg.ParseFromString(base64.b64decode(mod.sketch_dump(ours)))
    back = DDSketchProto.from_proto(msg)
    assert [back.get_quantile_value(q) for q in QS] == pytest.approx(ours.quantiles(QS))
    # a sketch of another accuracy is re-bucketed, within both accuracies
    coarse = DDSketch(relative_accuracy=0.05)
    for ns in values:
        coarse.add(ns / 1e9)
    text = base64.b64encode(DDSketchProto.to_proto(coarse).SerializeToString()).decode()
    other = mod.sketch_load(text)
    assert other.count == len(values)
    assert other.get_quantile_value(0.5) == pytest.approx(coarse.get_quantile_value(0.5), rel=0.03)
