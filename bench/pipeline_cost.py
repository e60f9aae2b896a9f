"""CPU cost per span of each stage of the agent, side by side with the bare baseline.

Same process, same pre-serialised requests as ``bench/ingest.py``, no network:
this separates what apiward costs from gRPC and scheduling noise, and shows
which stage to make faster. For each enricher profile it prints the predicted
ratio baseline / (edge conversion + analysis), which ``bench/ingest.py``
measures end to end.

    python bench/pipeline_cost.py [--payloads 8] [--spans 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))


def baseline_read(payloads: list[bytes]) -> int:
    """What the baseline server of bench/ingest.py does per request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    def attrs(kvs):  # type: ignore[no-untyped-def]
        return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}

    n = 0
    for data in payloads:
        req = ExportTraceServiceRequest()
        req.ParseFromString(data)
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                scope = ss.scope.name
                for sp in ss.spans:
                    st = sp.status
                    row = (sp.trace_id.hex(), sp.span_id.hex(), sp.parent_span_id.hex(), sp.name, sp.kind,
                           sp.start_time_unix_nano, sp.end_time_unix_nano, st.code, st.message,
                           attrs(sp.attributes),
                           [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in sp.events],
                           resource, scope)
                    n += 1 if row else 0
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--payloads", type=int, default=8)
    ap.add_argument("--spans", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from workload import build_payloads

    from agent.cli import tune_gc
    from agent.config import Config
    from agent.state import State
    from agent.wiring import ENRICHER_NAMES, build_enrichers
    from collectors.otlp_convert import convert_proto, decode_proto

    payloads = build_payloads(args.payloads, args.spans)
    tune_gc()  # the agent's garbage-collector settings
    nspans = args.payloads * args.spans

    def best(fn) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times) / nspans * 1e6

    base_us = best(lambda: baseline_read(payloads))
    conv_us = best(lambda: [convert_proto(decode_proto(p)) for p in payloads])
    batches = [convert_proto(decode_proto(p)).spans for p in payloads]
    print(f"spans: {nspans} in {args.payloads} requests, best of {args.rounds}")
    print(f"{'stage':<28}{'us/span':>10}")
    print(f"{'baseline parse+read':<28}{base_us:>10.2f}")
    print(f"{'edge: decode+convert':<28}{conv_us:>10.2f}")

    config = Config(persist=False)
    costs: dict[str, float] = {}
    for name in ENRICHER_NAMES:
        enrichers = build_enrichers(config, only=[name])
        enrichers = [e for e in enrichers if e.name == name or name == "service_counts"]
        if not enrichers:
            continue
        e = enrichers[0]
        # Fresh state per round so warm caches are not all that is measured: the
        # first round fills baselines, the best round is the steady state.
        state = State()

        def run(e=e, state=state) -> None:  # type: ignore[no-untyped-def]
            for b in batches:
                with state.lock:
                    state.batch.clear()
                    list(e.process(b, state) or ())
            list(e.tick(int(time.time_ns()), state) or ())

        costs[name] = best(run)
        print(f"{'enricher ' + name:<28}{costs[name]:>10.2f}")

    # The same enrichers chained as `apiward run` chains them (one state, every batch
    # through all of them in order): the stages that read what others publish in
    # state.batch (zerotrust and abuse read the call graph's calls) cost what they
    # cost in the agent only here. As above, rounds share the state (the ingest bench
    # replays its payloads in a loop too): the best round is the steady state.
    chain_best: dict[str, float] = {}
    state = State()
    chain = build_enrichers(config)
    for _ in range(args.rounds):
        spent = dict.fromkeys((e.name for e in chain), 0.0)
        for b in batches:
            with state.lock:
                state.batch.clear()
                for e in chain:
                    t = time.perf_counter()
                    list(e.process(b, state) or ())
                    spent[e.name] += time.perf_counter() - t
        for e in chain:
            t = time.perf_counter()
            list(e.tick(int(time.time_ns()), state) or ())
            spent[e.name] += time.perf_counter() - t
        for n, v in spent.items():
            chain_best[n] = min(chain_best.get(n, v), v)
    print("in the full chain (as `apiward run` runs them):")
    for n, v in chain_best.items():
        print(f"{'  ' + n:<28}{v / nspans * 1e6:>10.2f}")
    chain_total = sum(chain_best.values()) / nspans * 1e6
    print(f"{'  all enrichers':<28}{chain_total:>10.2f}")
    print(f"predicted ratio all (chained)                  {base_us / (conv_us + chain_total):.2f}")

    print()
    profiles = {
        "foundation (service_counts)": ["service_counts"],
        "graph+inventory": ["service_counts", "inventory", "callgraph"],
        "+ sensitive": ["service_counts", "inventory", "callgraph", "sensitive"],
        "all": list(costs),
    }
    for label, names in profiles.items():
        total = conv_us + sum(costs.get(n, 0.0) for n in names)
        print(f"predicted ratio {label:<30} {base_us / total:.2f}")
    total_all = conv_us + sum(costs.values())
    print(f"predicted ratio all/baseline: {base_us / total_all:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
