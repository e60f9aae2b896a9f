"""Overhead of the eBPF HTTP tracer on a local HTTP server, measured side by side.

Runs as root (the tracer needs it). A keep-alive HTTP server runs in one child
process, a load generator in another (loopback only; each run stops by itself
after ``--seconds``). Steps:

1. untraced, unpaced: the server's maximum rate R;
2. untraced, paced at half of R (about 50% of the server's CPU);
3. traced, same pace;
4. traced, unpaced (for information).

Prints req/s and p99 latency both ways, the server's and the tracer's CPU, the
events and lost events, and as its last line
``throughput ratio traced/untraced: X.XX  lost events: N`` (the paced runs).

    sudo .venv/bin/python bench/ebpf_overhead.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BODY = b'{"id": 7, "name": "widget", "email": "ann@example.com"}'


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


def serve() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


def load(port: int, seconds: float, rate: float, conns: int) -> None:
    """Keep-alive clients; ``rate`` > 0 paces the total request rate."""
    lat: list[list[float]] = [[] for _ in range(conns)]
    deadline = time.monotonic() + seconds
    req = b"GET /items/7?q=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1\r\n\r\n"

    def worker(i: int) -> None:
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        interval = conns / rate if rate > 0 else 0.0
        next_t = time.monotonic() + interval * i / conns
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if interval:
                if next_t > now:
                    time.sleep(next_t - now)
                next_t += interval
            t0 = time.perf_counter()
            s.sendall(req)
            length = 0
            while True:
                line = f.readline()
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            f.read(length)
            lat[i].append(time.perf_counter() - t0)
        s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    all_lat = sorted(x for lst in lat for x in lst)
    p99 = all_lat[int(len(all_lat) * 0.99) - 1] if all_lat else 0.0
    print(json.dumps({"requests": len(all_lat), "seconds": elapsed, "p99": p99}))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(port: int, server_pid: int, seconds: float, rate: float, conns: int) -> dict[str, float]:
    cpu0 = _cpu_seconds(server_pid)
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), str(seconds), str(rate), str(conns)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    r = json.loads(out.stdout)
    r["rps"] = r["requests"] / r["seconds"]
    r["server_cpu"] = (_cpu_seconds(server_pid) - cpu0) / r["seconds"]
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--conns", type=int, default=4)
    args = ap.parse_args()

    from collectors.ebpf import EbpfCollector, check_environment

    problem = check_environment()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline())
    try:
        run_load(port, server.pid, 1.0, 0, args.conns)  # warm up
        peak = run_load(port, server.pid, args.seconds, 0, args.conns)
        # The load the untraced server sustains at about 50% of one core.
        pace = min(peak["rps"] * 0.5 / max(peak["server_cpu"], 0.01), peak["rps"])
        untraced = run_load(port, server.pid, args.seconds, pace, args.conns)

        class Sink:
            spans = 0

            def offer(self, batch: list[object], source: str) -> bool:
                Sink.spans += len(batch)
                return True

            def count_rejected(self, source: str, reason: str, n: int) -> None:
                pass

        class Cfg:  # the server's side only: its overhead is what is measured
            ebpf_ports = [port]
            ebpf_pids = [server.pid]
            ebpf_comms: list[str] = []
            ebpf_capture_bytes = 4096

        collector = EbpfCollector(Cfg(), Sink())  # type: ignore[arg-type]
        collector.start()
        try:
            cpu0 = time.process_time()
            w0 = time.monotonic()
            traced = run_load(port, server.pid, args.seconds, pace, args.conns)
            time.sleep(0.5)
            tracer_cpu = (time.process_time() - cpu0) / (time.monotonic() - w0)
            stats_paced = collector.stats()
            traced_peak = run_load(port, server.pid, args.seconds, 0, args.conns)
            time.sleep(0.5)
            stats_all = collector.stats()
        finally:
            collector.stop()
    finally:
        server.kill()
        server.wait()

    lost = int(stats_paced["lost_events"] + stats_paced["sequence_gaps"])
    lost_peak = int(stats_all["lost_events"] + stats_all["sequence_gaps"]) - lost

    def row(name: str, r: dict[str, float]) -> None:
        print(
            f"{name:<22} {r['rps']:9.0f} req/s  p99 {r['p99'] * 1000:7.2f} ms  "
            f"server cpu {r['server_cpu'] * 100:5.1f}%"
        )

    row("untraced peak", peak)
    row("untraced paced", untraced)
    row("traced paced", traced)
    row("traced peak", traced_peak)
    print(f"tracer cpu (paced run): {tracer_cpu * 100:.1f}% of one core")
    print(
        f"events (paced): {stats_paced['events']:.0f}  spans: {stats_paced['spans']:.0f}  "
        f"lost: {lost}   peak-run lost: {lost_peak}"
    )
    print(f"peak throughput ratio traced/untraced: {traced_peak['rps'] / peak['rps']:.2f}")
    print(f"p99 ratio traced/untraced (paced): {traced['p99'] / max(untraced['p99'], 1e-9):.2f}")
    ratio = traced["rps"] / untraced["rps"]
    print(f"throughput ratio traced/untraced: {ratio:.2f}  lost events: {lost}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve()
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
