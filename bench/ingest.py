"""OTLP/gRPC ingest benchmark: the real agent against a bare parsing baseline.

One run, one machine, one sender. A sender process replays pre-serialized
``ExportTraceServiceRequest`` messages (~1000 HTTP server/client spans, ~12
attributes each; built directly, not with the SDK) over several concurrent gRPC
channels, first into a bare baseline server (its own process: parses each
request and reads every span and attribute into Python objects, nothing
else), then into the real agent (``apiward run`` as a subprocess; a span counts
once ``GET /api/v1/stats`` reports it in ``spans_processed``).

Prints spans/s of both, CPU per span (the agent with its receiver process, collectors/edge.py), the agent's RSS at start and end (and samples in
between: memory should stay flat), and as the LAST line
``ratio agent/baseline: X.XX``.

    .venv/bin/python bench/ingest.py            # 60 s per side
    .venv/bin/python bench/ingest.py --duration 10
    .venv/bin/python bench/ingest.py --agent-args "--edge-process off"   # receivers in process

The payload set is large enough (distinct ids, paths, ports, addresses) that
the agent's attribute cache sees realistic misses, as in production traffic.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# ------------------------------------------------------------------ helpers


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants (the agent's receiver process: collectors/edge.py)."""
    out = [pid]
    for p in out:
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    out.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    total = 0.0
    for p in _family(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (all threads), from /proc."""
    total = 0
    for p in _family(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def read_payloads(path: str) -> list[bytes]:
    sys.path.insert(0, str(ROOT))
    from collectors.replay import _read_varint  # the same framing the replayer reads

    out = []
    with open(path, "rb") as f:
        while True:
            head = _read_varint(f)
            if head is None:
                return out
            out.append(f.read(head[0]))


# ------------------------------------------------------------------ baseline server


def serve_baseline() -> int:
    """A bare gRPC TraceService: parse, read every span and attribute, answer."""
    from concurrent import futures

    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    lock = threading.Lock()
    count = [0]
    # The same garbage-collector settings as `apiward run`, so both sides compare fairly.
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)

    def attrs(kvs):  # the straightforward efficient way
        return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}

    def export(req, context):
        n = 0
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                scope = ss.scope.name
                for sp in ss.spans:
                    st = sp.status
                    row = (
                        sp.trace_id.hex(),
                        sp.span_id.hex(),
                        sp.parent_span_id.hex(),
                        sp.name,
                        sp.kind,
                        sp.start_time_unix_nano,
                        sp.end_time_unix_nano,
                        st.code,
                        st.message,
                        attrs(sp.attributes),
                        [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in sp.events],
                        resource,
                        scope,
                    )
                    n += 1 if row else 0
        with lock:
            count[0] += n
        return b""

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)],
    )
    handler = grpc.unary_unary_rpc_method_handler(
        export, request_deserializer=ExportTraceServiceRequest.FromString
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening otlp-grpc=127.0.0.1:{port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(0)
    return 0


def serve_receiver_only() -> int:
    """apiward's gRPC receiver and conversion, with a sink that drops every batch.

    A diagnostic (``--agent receiver``): separates the edge from the pipeline.
    """
    sys.path.insert(0, str(ROOT))
    import gc

    from collectors.otlp_grpc import OtlpGrpcReceiver

    class DropSink:
        queue_depth = 0
        queue_spans = 1 << 30

        def offer(self, batch, source):  # type: ignore[no-untyped-def]
            return True

        def count_rejected(self, source, reason, n):  # type: ignore[no-untyped-def]
            pass

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    r = OtlpGrpcReceiver(DropSink(), "127.0.0.1", 0)  # type: ignore[arg-type]
    r.start()
    print(f"listening otlp-grpc=127.0.0.1:{r.port}", flush=True)
    sys.stdin.read()
    r.stop()
    return 0


# ------------------------------------------------------------------ sender


def send(target: str, payload_file: str, duration: float, concurrency: int) -> int:
    """Replay the payloads for ``duration`` seconds; print a JSON summary."""
    import grpc

    payloads = read_payloads(payload_file)
    spans_per = [_count_spans(p) for p in payloads]
    stop_at = time.monotonic() + duration
    totals = {"spans": 0, "requests": 0, "retries": 0, "errors": 0}
    lock = threading.Lock()

    def worker(k: int) -> None:
        ch = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
        )
        call = ch.unary_unary(EXPORT)
        i = k
        spans = reqs = retries = errors = 0
        while time.monotonic() < stop_at:
            j = i % len(payloads)
            try:
                call(payloads[j], timeout=60)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    retries += 1
                    time.sleep(0.05)
                    continue  # same payload again, as an OTLP exporter would
                errors += 1
                time.sleep(0.05)
                continue
            spans += spans_per[j]
            reqs += 1
            i += concurrency
        ch.close()
        with lock:
            totals["spans"] += spans
            totals["requests"] += reqs
            totals["retries"] += retries
            totals["errors"] += errors

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals["seconds"] = time.monotonic() - t0
    print(json.dumps(totals), flush=True)
    return 0


def _count_spans(data: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest.FromString(data)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


# ------------------------------------------------------------------ orchestration


def _start(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT)
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("listening"):
            return proc, line.strip()
    proc.kill()
    raise SystemExit(f"bench: {' '.join(cmd)} did not print its listening line")


def _field(line: str, key: str) -> str:
    for part in line.split():
        if part.startswith(key + "="):
            return part.split("=", 1)[1]
    raise SystemExit(f"bench: no {key}= in {line!r}")


def _run_sender(target: str, payload_file: str, duration: float, concurrency: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--send", target, "--payload-file", payload_file,
         "--duration", str(duration), "--concurrency", str(concurrency)],
        capture_output=True, text=True, check=True, cwd=str(ROOT),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _api_stats(api: str) -> dict:
    with urllib.request.urlopen(f"http://{api}/api/v1/stats", timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load per side")
    ap.add_argument("--concurrency", type=int, default=4, help="sender channels")
    ap.add_argument("--payloads", type=int, default=40, help="distinct requests to replay")
    ap.add_argument("--spans", type=int, default=1000, help="spans per request")
    ap.add_argument("--rounds", type=int, default=6,
                    help="alternating baseline/agent rounds the duration is split into (median ratio)")
    ap.add_argument("--enrichers", default="",
                    help="analyses the agent runs (comma-separated; default all), e.g. service_counts")
    ap.add_argument("--agent-args", default="",
                    help="more `apiward run` options, one string (e.g. \"--queue-spans 50000\")")
    ap.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--agent", choices=("full", "receiver"), default="full",
                    help="what to compare with the baseline: the full agent (default), or only "
                    "apiward's receiver and conversion with the pipeline cut off (a diagnostic)")
    ap.add_argument("--send", metavar="TARGET", help=argparse.SUPPRESS)
    ap.add_argument("--payload-file", dest="payload_file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_baseline:
        return serve_baseline()
    if args.serve_receiver:
        return serve_receiver_only()
    if args.send:
        return send(args.send, args.payload_file, args.duration, args.concurrency)

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from workload import build_payloads

    from collectors.replay import write_delimited

    with tempfile.TemporaryDirectory(prefix="apiward-bench-") as tmp:
        payload_file = os.path.join(tmp, "payloads.bin")
        t = time.monotonic()
        payloads = build_payloads(args.payloads, args.spans)
        with open(payload_file, "wb") as f:
            write_delimited(payloads, f)
        print(f"payloads: {len(payloads)} requests x {args.spans} spans, "
              f"{sum(map(len, payloads)) / len(payloads) / 1024:.0f} KiB each "
              f"(built in {time.monotonic() - t:.1f}s)")
        del payloads

        # Both servers run side by side; the sender alternates between them in
        # short rounds, so load drift on a shared machine hits both alike.
        base, bline = _start([sys.executable, __file__, "--serve-baseline"])
        state = os.path.join(tmp, "state")
        apiward = [sys.executable, "-m", "agent", "run", "--grpc-port", "0", "--http-port", "0",
                   "--api-port", "0", "--bind", "127.0.0.1", "--state-dir", state]
        if args.enrichers:
            apiward += ["--enrichers", args.enrichers]
        apiward += shlex.split(args.agent_args)
        print(f"agent analyses: {args.enrichers or 'all'}")
        if args.agent == "receiver":
            apiward = [sys.executable, __file__, "--serve-receiver"]
        agent, line = _start(apiward)
        rounds = max(1, args.rounds)
        per = args.duration / rounds
        base_spans = base_secs = agent_spans = agent_secs = 0.0
        ratios: list[float] = []
        retries = errors = 0
        try:
            btarget = _field(bline, "otlp-grpc")
            target = _field(line, "otlp-grpc")
            api = _field(line, "api") if args.agent == "full" else ""
            sent_total = [0]

            def _stats(api: str) -> dict:  # noqa: F811 - receiver-only has no API: all sent is done
                if not api:
                    return {"spans_processed": sent_total[0], "spans_dropped": 0}
                return _api_stats(api)

            time.sleep(1.0)
            rss0 = rss_mb(agent.pid)
            samples: list[float] = []
            s = _stats(api)
            base_cpu = agent_cpu = 0.0
            for k in range(rounds):
                c0 = cpu_seconds(base.pid)
                rb = _run_sender(btarget, payload_file, per, args.concurrency)
                base_cpu += cpu_seconds(base.pid) - c0
                c0 = cpu_seconds(agent.pid)
                brate = rb["spans"] / rb["seconds"]
                base_spans += rb["spans"]
                base_secs += rb["seconds"]
                p0 = _stats(api)["spans_processed"]
                t0 = time.monotonic()
                r = _run_sender(target, payload_file, per, args.concurrency)
                sent_total[0] += r["spans"]
                want = p0 + r["spans"]
                while True:
                    s = _stats(api)
                    if s["spans_processed"] >= want or time.monotonic() - t0 > per * 5:
                        break
                    time.sleep(0.05)
                elapsed = time.monotonic() - t0
                agent_cpu += cpu_seconds(agent.pid) - c0
                processed = s["spans_processed"] - p0
                arate = processed / elapsed
                agent_spans += processed
                agent_secs += elapsed
                retries += r["retries"]
                errors += r["errors"] + rb["errors"]
                ratios.append(arate / brate)
                samples.append(rss_mb(agent.pid))
                print(f"round {k + 1}/{rounds}: baseline {brate:,.0f} spans/s, agent {arate:,.0f} spans/s, "
                      f"ratio {arate / brate:.2f}", flush=True)
            rss1 = rss_mb(agent.pid)
        finally:
            for proc in (agent, base):
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        base_rate = base_spans / base_secs
        agent_rate = agent_spans / agent_secs
        ratios.sort()
        median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
        print(f"baseline: {base_rate:,.0f} spans/s; agent: {agent_rate:,.0f} spans/s fully processed "
              f"(retries on RESOURCE_EXHAUSTED {retries}, errors {errors}, dropped {s.get('spans_dropped')})")
        base_us = base_cpu / max(1.0, base_spans) * 1e6
        agent_us = agent_cpu / max(1.0, agent_spans) * 1e6
        print(f"CPU per span: baseline {base_us:.1f} us, agent {agent_us:.1f} us (its processes together) "
              f"(ratio baseline/agent {base_us / agent_us:.2f}; less sensitive to other load)")
        stage = s.get("stage_cpu_seconds") or {}
        if stage:
            # The analysis thread's own CPU per stage (includes the warm-up second).
            done = max(1, s.get("spans_processed", 1))
            print("analysis CPU per span: " + ", ".join(
                f"{k} {v / done * 1e6:.1f} us" for k, v in stage.items()))
        print(f"agent RSS: start {rss0:.0f} MiB, end {rss1:.0f} MiB, after each round "
              + ", ".join(f"{x:.0f}" for x in samples))
        print(f"ratio agent/baseline: {median:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
