"""Scale-out on one machine: spans/s of 1 and 2 ``apiward run`` processes fed by trace-id routing.

The load is the ingest benchmark's OTLP requests (``bench/workload.py``),
routed per trace id with the Collector ``loadbalancing`` exporter's ring
(``bench/hash_ring.py``), so each agent gets whole traces, as behind a real
Collector. Each agent's share is re-batched into requests of the original size
(the exporter's per-backend OTLP exporter batches too) and serialised before
the clock starts, so the 2-agent run is not charged for routing or for twice as
many small requests.

Timing, per configuration: from the first request sent to the moment the last
agent has analysed all its spans (``spans_processed`` on ``/api/v1/stats``,
polled sparingly so the polls cost the agents next to nothing). The agents are
real ``apiward run`` processes with their default analyses and settings, each
with a fresh state dir; only the queue is made large enough that no request is
refused (a refusal would measure the sender's back-off, not the agents). One
sender process per agent pushes its pre-serialised share over one gRPC channel,
one request in flight, as a Collector exporter does with a queue of 1 consumer.

1 and 2 agents are measured side by side in one invocation, interleaved
(``1,2`` then ``2,1``, ...); each repeat's factor compares adjacent runs, and
the reported factor is the median over repeats. To make the figure readable on
a shared 2-core machine, every run also reports where the CPU went: the agents'
CPU per span, the senders' CPU, and the CPU used by *other* processes during
the run (``foreign``: ``/proc/stat`` busy time minus ours). A run with more
than ``--max-foreign`` cores of foreign load cannot show 2-core scaling; it is
marked, and ``--wait-quiet`` waits (bounded) for a quiet machine before each
run. Run it under the shared lock::

    flock /tmp/apiward-bench.lock .venv/bin/python bench/scale.py [--requests 240] [--repeats 4]

The last line is ``scaling factor 2 agents/1 agent: X.XX`` (target >= 1.7).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from bench.hash_ring import HashRing, split_request  # noqa: E402
from bench.ingest import cpu_seconds  # noqa: E402
from bench.workload import build_payloads  # noqa: E402
from tests.agent.agent_proc import AgentProc, start_agent  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Names as a static resolver would list them; the ring sorts them as the exporter does.
BACKENDS = ("apiward-0.apiward:4317", "apiward-1.apiward:4317")


# ---------------------------------------------------------------- CPU accounting
def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


def machine_load(seconds: float) -> float:
    """Cores busy over the next ``seconds`` (all processes)."""
    b0, _ = machine_cpu()
    time.sleep(seconds)
    b1, _ = machine_cpu()
    return (b1 - b0) / seconds


def isolate(nice: int) -> str:
    """Give this benchmark (and the agents and senders it starts) the CPU ahead of unrelated work.

    The kernel schedules by autogroup (one per session): every busy session
    gets an equal share whatever its process count, so on a machine where
    other sessions keep both cores busy, two agents get no more CPU than one
    and a scaling figure measures the neighbours. A new session with a high
    autogroup priority takes the cores back for the few seconds of each run.
    Returns what was done, for the report.
    """
    try:
        os.setsid()
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
        with open("/proc/self/autogroup") as f:
            return f"own session, {f.read().strip()}"
    except OSError as exc:
        return f"not isolated ({exc.strerror or exc})"


def wait_quiet(max_wait: float, threshold: float) -> float:
    """Wait (at most ``max_wait`` s) until the machine's load is under ``threshold`` cores."""
    deadline = time.monotonic() + max_wait
    load = machine_load(0.5)
    while load > threshold and time.monotonic() < deadline:
        load = machine_load(0.5)
    return load


# ---------------------------------------------------------------- the load
def shares_for(payloads: list[bytes], n_agents: int, spans_per_request: int) -> tuple[list[list[bytes]], list[int]]:
    """Each agent's requests (re-batched to ``spans_per_request``) and span count."""
    names = list(BACKENDS[:n_agents]) if n_agents <= len(BACKENDS) else [f"apiward-{i}.apiward:4317"
                                                                         for i in range(n_agents)]
    ring = HashRing(names)
    out: list[list[bytes]] = [[] for _ in names]
    spans = [0] * n_agents
    pending: list[list[bytes]] = [[] for _ in names]
    pending_n = [0] * n_agents
    for data in payloads:
        req = ExportTraceServiceRequest.FromString(data)
        for ep, part in split_request(req, ring).items():
            i = names.index(ep)
            n = sum(len(ss.spans) for rs in part.resource_spans for ss in rs.scope_spans)
            spans[i] += n
            # Concatenated serialised messages parse as one with the repeated
            # resource_spans of all: a batch of several parts, no re-encoding.
            pending[i].append(part.SerializeToString())
            pending_n[i] += n
            if pending_n[i] >= spans_per_request:
                out[i].append(b"".join(pending[i]))
                pending[i], pending_n[i] = [], 0
    for i in range(n_agents):
        if pending[i]:
            out[i].append(b"".join(pending[i]))
    return out, spans


# ---------------------------------------------------------------- sender processes
def _sender(port: int, payloads: list[bytes], go: Any, done: Any) -> None:
    """Child process: push ``payloads`` to one agent, one request in flight; report retries and CPU."""
    import grpc

    from tests.agent.agent_proc import EXPORT

    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = ch.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    grpc.channel_ready_future(ch).result(timeout=30)
    retries = 0
    go.wait()
    c0 = time.process_time()
    for data in payloads:
        while True:
            try:
                call(data, timeout=60)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
                    raise
                retries += 1
                time.sleep(0.01)
    t_sent = time.perf_counter()
    cpu = time.process_time() - c0
    ch.close()
    done.put((port, t_sent, cpu, retries))


def _wait_processed(agent: AgentProc, n_spans: int, deadline: float) -> tuple[float, int]:
    """Time at which ``agent`` had analysed ``n_spans``; polls sparingly (each poll costs the agent a request)."""
    polls = 0
    last_n, last_t = -1, 0.0
    while True:
        st = agent.get("/api/v1/stats")
        now = time.perf_counter()
        polls += 1
        n = int(st["spans_processed"])
        if n >= n_spans:
            return now, polls
        if now > deadline:
            raise RuntimeError(f"agent analysed {n} of {n_spans} spans before the deadline")
        # Sleep for most of the expected remaining time (at the recent rate), then close in.
        delay = 0.05
        if last_n >= 0 and n > last_n:
            rate = (n - last_n) / (now - last_t)
            delay = 0.7 * (n_spans - n) / rate
        last_n, last_t = n, now
        time.sleep(min(max(delay, 0.005), 0.5))


@dataclass
class Run:
    n_agents: int
    total_spans: int
    elapsed: float
    spans: list[int]
    finish: list[float]  # per agent, seconds from the start
    agent_cpu: list[float]  # per agent, CPU seconds during the timed window
    sender_cpu: float
    ours_cpu: float  # agents + senders + this process
    foreign: float  # cores used by other processes during the window
    steal: float  # cores stolen by the hypervisor during the window
    retries: int
    polls: int
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.total_spans / self.elapsed


def run(n_agents: int, payloads: list[bytes], spans_per_request: int, base: Path, tag: str) -> Run:
    shares, spans = shares_for(payloads, n_agents, spans_per_request)
    total = sum(spans)
    agents: list[AgentProc] = []
    senders: list[Any] = []
    ctx = mp.get_context("spawn")  # no fork of a process that has loaded grpc
    go = ctx.Event()
    done = ctx.Queue()
    try:
        for i in range(n_agents):
            agents.append(start_agent(base / f"{tag}-{n_agents}-{i}", "--queue-spans", str(4 * total)))
        for a in agents:
            a.get("/api/v1/stats")  # API up; receivers were up before the listening line
        for a, share in zip(agents, shares, strict=True):
            sp = ctx.Process(target=_sender, args=(a.ports["otlp-grpc"], share, go, done), daemon=True)
            sp.start()
            senders.append(sp)
        time.sleep(1.0)  # senders connected, agents idle
        pids = [a.proc.pid for a in agents]
        a0 = [cpu_seconds(pid) for pid in pids]
        me0 = time.process_time()
        m0, st0 = machine_cpu()
        t0 = time.perf_counter()
        go.set()
        deadline = t0 + 600
        finish: list[float] = [0.0] * n_agents
        polls = 0
        sent = [done.get(timeout=600) for _ in senders]
        by_port = {port: (t, cpu, r) for port, t, cpu, r in sent}
        order = sorted(range(n_agents), key=lambda i: by_port[agents[i].ports["otlp-grpc"]][0])
        for i in order:
            t, n_polls = _wait_processed(agents[i], spans[i], deadline)
            finish[i] = t - t0
            polls += n_polls
        elapsed = max(finish)
        # CPU of each agent up to the end of the window (an agent that finished
        # earlier has been idle since, apart from its side threads: counted).
        a1 = [cpu_seconds(pid) for pid in pids]
        m1, st1 = machine_cpu()
        me1 = time.process_time()
        sender_cpu = sum(by_port[a.ports["otlp-grpc"]][1] for a in agents)
        agent_cpu = [b - a for a, b in zip(a0, a1, strict=True)]
        ours = sum(agent_cpu) + sender_cpu + (me1 - me0)
        wall = time.perf_counter() - t0
        r = Run(
            n_agents=n_agents,
            total_spans=total,
            elapsed=elapsed,
            spans=spans,
            finish=finish,
            agent_cpu=agent_cpu,
            sender_cpu=sender_cpu,
            ours_cpu=ours,
            foreign=max(0.0, (m1 - m0) - ours) / wall,
            steal=(st1 - st0) / wall,
            retries=sum(x[2] for x in by_port.values()),
            polls=polls,
        )
        for a in agents:
            st = a.get("/api/v1/stats")
            if st["spans_dropped"] or st["spans_rejected"]:
                r.notes.append(f"agent dropped {st['spans_dropped']} rejected {st['spans_rejected']}")
        return r
    finally:
        go.set()
        for sp in senders:
            sp.join(10)
            if sp.is_alive():
                sp.kill()
        for a in agents:
            a.stop()


def describe(r: Run, max_foreign: float) -> str:
    per = ", ".join(
        f"agent{i}: {s} spans in {f:.2f}s = {s / f:,.0f}/s, {c / f:.2f} cores, {1e6 * c / s:.0f} us/span"
        for i, (s, f, c) in enumerate(zip(r.spans, r.finish, r.agent_cpu, strict=True))
    )
    flag = "  << machine busy: not a valid scaling figure" if r.foreign > max_foreign else ""
    return (
        f"  {r.n_agents} agent{'s' if r.n_agents > 1 else ' '}: {r.rate:10,.0f} spans/s  ({r.elapsed:.2f}s)  "
        f"[{per}; senders {r.sender_cpu:.2f}s CPU; foreign load {r.foreign:.2f} cores, "
        f"steal {r.steal:.2f}; retries {r.retries}; polls {r.polls}]{flag}"
        + ("".join(f"\n    ! {n}" for n in r.notes))
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=240, help="OTLP requests in the load")
    ap.add_argument("--spans", type=int, default=1000, help="spans per request")
    ap.add_argument("--repeats", type=int, default=4, help="pairs of runs (order alternates 1,2 / 2,1)")
    ap.add_argument("--max-foreign", type=float, default=0.15,
                    help="foreign load (cores) above which a run is marked not valid")
    ap.add_argument("--nice", type=int, default=-20,
                    help="autogroup priority of the benchmark's own session (see isolate())")
    ap.add_argument("--no-isolate", action="store_true", help="share the CPU with other sessions as they are")
    ap.add_argument("--wait-quiet", type=float, default=0.0,
                    help="before each run wait up to this many seconds for the machine to be quiet")
    args = ap.parse_args()
    how = "not isolated (--no-isolate)" if args.no_isolate else isolate(args.nice)
    print(f"scheduling: {how}; machine load before start: {machine_load(1.0):.2f} cores", flush=True)
    payloads = build_payloads(args.requests, args.spans)
    total = args.requests * args.spans
    _, split = shares_for(payloads, 2, args.spans)
    print(f"load: {total} spans in {args.requests} requests of {args.spans}; "
          f"2-agent split by trace id: {split[0]} / {split[1]} "
          f"(ideal factor with this split: {total / max(split):.2f})", flush=True)
    factors: list[float] = []
    runs: dict[int, list[Run]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            order = (1, 2) if rep % 2 == 0 else (2, 1)
            pair: dict[int, Run] = {}
            for n in order:
                if args.wait_quiet > 0:
                    wait_quiet(args.wait_quiet, args.max_foreign + 0.05)
                r = run(n, payloads, args.spans, Path(tmp), f"r{rep}")
                assert r.total_spans == total
                pair[n] = r
                runs[n].append(r)
                if n == order[0]:
                    print(f"repeat {rep + 1}:", flush=True)
                print(describe(r, args.max_foreign), flush=True)
            factors.append(pair[2].rate / pair[1].rate)
            print(f"  factor: {factors[-1]:.2f}", flush=True)
    one = statistics.median(r.rate for r in runs[1])
    two = statistics.median(r.rate for r in runs[2])
    cpu1 = statistics.median(sum(r.agent_cpu) / r.total_spans for r in runs[1])
    cpu2 = statistics.median(sum(r.agent_cpu) / r.total_spans for r in runs[2])
    busy = sum(r.foreign > args.max_foreign for rs in runs.values() for r in rs)
    print(f"agent CPU per span: 1 agent {1e6 * cpu1:.0f} us, 2 agents {1e6 * cpu2:.0f} us "
          f"(x{cpu2 / cpu1:.2f}); runs on a busy machine: {busy} of {2 * args.repeats}")
    print(f"1 agent:  {one:10.0f} spans/s (median)")
    print(f"2 agents: {two:10.0f} spans/s (median)")
    print(f"scaling factor 2 agents/1 agent: {statistics.median(factors):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
