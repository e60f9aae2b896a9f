"""Overhead of the eBPF HTTP tracer on a local HTTP server, measured side by side.

Runs as root (the tracer needs it). A keep-alive HTTP server (Python's
threaded ``http.server``) runs in one child process, the load generator in
another (loopback only; every load run stops by itself after ``--seconds``).
The tracer is loaded once, filtered to the server's pid and port, and
attached or detached between runs (:meth:`EbpfCollector.suspend`/``resume``),
so both sides run against the same server process.

1. Calibration, untraced: the request rate at which the server uses
   ``--cpu`` (default 50%) of one core: an unpaced run gives the CPU cost per
   request, paced runs then correct the rate until the server's CPU is there.
2. ``--rounds`` rounds at that paced rate, each an untraced and a traced run
   in alternating order (U T, T U, ...), so machine noise (other processes on
   the machine) hits both sides alike.

Prints req/s and p99 latency both ways (per round and over all rounds), the
server's CPU, the tracer's own CPU (the whole tracer process: polling, parsing,
spans), events and lost events (ring-buffer losses plus sequence gaps), and as
its last line ``throughput ratio traced/untraced: X.XX  lost events: N``.

    sudo .venv/bin/python bench/ebpf_overhead.py [--seconds 3] [--rounds 6]
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
from typing import Any

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
    """Keep-alive clients for ``seconds``; ``rate`` > 0 paces the total request rate.

    A paced client that falls behind sends its late requests back to back, so
    the achieved rate equals ``rate`` exactly when the server keeps up.
    """
    lat: list[list[float]] = [[] for _ in range(conns)]
    req = b"GET /items/7?q=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench/1\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    start = time.monotonic()
    deadline = start + seconds

    def worker(i: int) -> None:
        s = socks[i]
        f = s.makefile("rb")
        interval = conns / rate if rate > 0 else 0.0
        next_t = start + interval * i / conns
        out = lat[i]
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
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            f.read(length)
            out.append(time.perf_counter() - t0)
        s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    all_lat = [round(x * 1e6) for lst in lat for x in lst]
    print(json.dumps({"seconds": elapsed, "lat_us": all_lat}))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p99(lat_us: list[int]) -> float:
    if not lat_us:
        return 0.0
    s = sorted(lat_us)
    return s[max(0, int(len(s) * 0.99) - 1)] / 1e6


def run_load(port: int, server_pid: int, seconds: float, rate: float, conns: int) -> dict[str, Any]:
    cpu0 = _cpu_seconds(server_pid)
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), str(seconds), str(rate), str(conns)],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    )
    r: dict[str, Any] = json.loads(out.stdout)
    r["requests"] = len(r["lat_us"])
    r["rps"] = r["requests"] / r["seconds"]
    r["p99"] = _p99(r["lat_us"])
    r["server_cpu"] = (_cpu_seconds(server_pid) - cpu0) / r["seconds"]
    return r


def calibrate(port: int, pid: int, conns: int, target: float) -> tuple[float, dict[str, Any]]:
    """The paced rate at which the untraced server uses ``target`` of one core."""
    peak = run_load(port, pid, 2.0, 0, conns)
    per_request = peak["server_cpu"] / max(peak["rps"], 1.0)
    rate = min(target / max(per_request, 1e-6), peak["rps"])
    # CPU per request at paced load (it is higher than at full load: fewer requests
    # share each wakeup). CPU readings are noisy on a busy machine: the median of
    # four paced runs' cost per request sets the rate.
    steps = []
    costs = []
    for _ in range(4):
        r = run_load(port, pid, 2.0, rate, conns)
        steps.append(f"{r['rps']:.0f} req/s -> {r['server_cpu'] * 100:.0f}%")
        costs.append(max(r["server_cpu"], 0.01) / max(r["rps"], 1.0))
        cost = sorted(costs)[(len(costs) - 1) // 2]
        rate = min(target / cost, peak["rps"])
    print(
        f"calibration: unpaced {peak['rps']:.0f} req/s at {peak['server_cpu'] * 100:.0f}% cpu; "
        f"paced runs: {', '.join(steps)}; median cost {cost * 1e6:.0f} us cpu/request "
        f"-> {rate:.0f} req/s for {target * 100:.0f}% cpu"
    )
    if peak["server_cpu"] < target:
        print(
            f"warning: unpaced, the server got only {peak['server_cpu'] * 100:.0f}% of a core: the machine is "
            "saturated by other work, so the paced rate is its ceiling and the ratio is not meaningful"
        )
    return rate, peak


class _CountingSink:
    spans = 0

    def offer(self, batch: list[object], source: str) -> bool:
        _CountingSink.spans += len(batch)
        return True

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each measured run")
    ap.add_argument("--rounds", type=int, default=6, help="untraced+traced pairs, order alternating")
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--cpu", type=float, default=0.5, help="server CPU share that sets the paced rate")
    args = ap.parse_args()

    from collectors.ebpf import EbpfCollector, check_environment

    problem = check_environment()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    port = int(server.stdout.readline())

    class Cfg:  # the server's side only: its overhead is what is measured
        ebpf_ports = [port]
        ebpf_pids = [server.pid]
        ebpf_comms: list[str] = []
        ebpf_capture_bytes = 4096

    collector = EbpfCollector(Cfg(), _CountingSink())  # type: ignore[arg-type]
    rows: list[tuple[int, str, dict[str, Any]]] = []
    tracer_cpu = 0.0
    tracer_wall = 0.0
    lost = 0
    try:
        collector.start()
        collector.suspend()
        run_load(port, server.pid, 1.0, 0, args.conns)  # warm up
        rate, _peak = calibrate(port, server.pid, args.conns, args.cpu)
        for i in range(args.rounds):
            order = ("untraced", "traced") if i % 2 == 0 else ("traced", "untraced")
            for mode in order:
                if mode == "traced":
                    collector.resume()
                    before = collector.stats()
                    c0, w0 = time.process_time(), time.monotonic()
                    r = run_load(port, server.pid, args.seconds, rate, args.conns)
                    time.sleep(3 * collector.drain_interval)  # let the tracer drain what is left
                    collector.suspend()
                    time.sleep(3 * collector.drain_interval)
                    tracer_cpu += time.process_time() - c0
                    tracer_wall += time.monotonic() - w0
                    after = collector.stats()
                    r["lost"] = int(
                        after["lost_events"] - before["lost_events"]
                        + after["sequence_gaps"] - before["sequence_gaps"]
                    )
                    r["events"] = int(after["events"] - before["events"])
                    lost += r["lost"]
                else:
                    r = run_load(port, server.pid, args.seconds, rate, args.conns)
                rows.append((i + 1, mode, r))
        stats = collector.stats()
    finally:
        collector.stop()
        server.kill()
        server.wait()

    print(f"{'round':<6}{'mode':<10}{'req/s':>9}{'p99 ms':>9}{'server cpu':>12}{'events':>9}{'lost':>6}")
    for rnd, mode, r in rows:
        ev = f"{r['events']:>9}{r['lost']:>6}" if mode == "traced" else ""
        print(
            f"{rnd:<6}{mode:<10}{r['rps']:>9.0f}{r['p99'] * 1000:>9.2f}"
            f"{r['server_cpu'] * 100:>11.1f}%{ev}"
        )

    def total(mode: str) -> dict[str, float]:
        rs = [r for _, m, r in rows if m == mode]
        secs = sum(r["seconds"] for r in rs)
        lat = [x for r in rs for x in r["lat_us"]]
        cpu = sum(r["server_cpu"] * r["seconds"] for r in rs)
        return {"rps": len(lat) / secs, "p99": _p99(lat), "server_cpu": cpu / secs, "n": len(lat)}

    u, t = total("untraced"), total("traced")
    print(f"paced rate {rate:.0f} req/s (calibrated for the untraced server at {args.cpu * 100:.0f}% cpu), "
          f"{args.rounds} rounds of {args.seconds:g} s each way, alternating order")
    for name, r in (("untraced", u), ("traced", t)):
        print(f"{name:<9} {r['rps']:8.0f} req/s  p99 {r['p99'] * 1000:6.2f} ms  "
              f"server cpu {r['server_cpu'] * 100:5.1f}%")
    share = tracer_cpu / max(tracer_wall, 1e-9)
    print(f"tracer cpu: {share * 100:.1f}% of one core ({tracer_cpu / max(t['n'], 1) * 1e6:.0f} us per request)")
    print(f"events: {stats['events']:.0f}  spans: {_CountingSink.spans}  "
          f"p99 ratio traced/untraced: {t['p99'] / max(u['p99'], 1e-9):.2f}")
    print(f"throughput ratio traced/untraced: {t['rps'] / u['rps']:.2f}  lost events: {lost}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve()
    elif len(sys.argv) > 1 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main())
