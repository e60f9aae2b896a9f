"""Scale-out on one machine: spans/s of 1 and 2 ``apiward run`` processes fed by trace-id routing.

The load is the ingest benchmark's pre-serialised OTLP requests
(``bench/workload.py``), split per trace id with the Collector's
``loadbalancing`` ring (``bench/hash_ring.py``), so each agent gets whole
traces, as behind a real Collector. Each configuration is timed from the first
request sent to the last span analysed (polled on ``/api/v1/stats``); senders
are threads pushing pre-serialised bytes (gRPC does the I/O outside the GIL).
Both runs use the same load, side by side in one invocation. The last line is
``scaling factor 2 agents/1 agent: X.XX`` (target >= 1.7 on 2 cores).

    .venv/bin/python bench/scale.py [--requests 60] [--spans 1000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from bench.hash_ring import HashRing, split_request  # noqa: E402
from bench.workload import build_payloads  # noqa: E402
from tests.agent.agent_proc import AgentProc, send, start_agent  # noqa: E402


def run(n_agents: int, payloads: list[bytes], total_spans: int, base: Path) -> float:
    names = [f"apiward-{i}:4317" for i in range(n_agents)]
    ring = HashRing(names)
    shares: dict[str, list[bytes]] = {n: [] for n in names}
    spans: dict[str, int] = dict.fromkeys(names, 0)
    for data in payloads:
        req = ExportTraceServiceRequest.FromString(data)
        for ep, part in split_request(req, ring).items():
            shares[ep].append(part.SerializeToString())
            spans[ep] += sum(len(ss.spans) for rs in part.resource_spans for ss in rs.scope_spans)
    assert sum(spans.values()) == total_spans
    agents: list[AgentProc] = []
    try:
        for i in range(n_agents):
            d = base / f"{n_agents}-{i}"
            agents.append(start_agent(d, "--flush-interval", "60", "--queue-spans", "2000000"))
        time.sleep(1.0)
        channels = [a.channel() for a in agents]
        t0 = time.perf_counter()
        threads = [threading.Thread(target=send, args=(ch, shares[n])) for ch, n in zip(channels, names, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for a, n in zip(agents, names, strict=True):
            while True:
                st = a.get("/api/v1/stats")
                if st["spans_processed"] >= spans[n]:
                    break
                time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        for ch in channels:
            ch.close()
    finally:
        for a in agents:
            a.stop()
    return total_spans / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=60, help="OTLP requests in the load")
    ap.add_argument("--spans", type=int, default=1000, help="spans per request")
    args = ap.parse_args()
    payloads = build_payloads(args.requests, args.spans)
    total = args.requests * args.spans
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, payloads, total, Path(tmp))
        two = run(2, payloads, total, Path(tmp))
    print(f"load: {total} spans in {args.requests} requests, routed by trace id")
    print(f"1 agent:  {one:10.0f} spans/s")
    print(f"2 agents: {two:10.0f} spans/s")
    print(f"scaling factor 2 agents/1 agent: {two / one:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
