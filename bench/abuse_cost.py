"""Amortised CPU cost per span of the abuse enricher, window aggregation included,
and whether its memory stays flat over a long run.

Benign shop traffic (``bench/traffic_abuse.py``: many users, tokens, sessions,
downstream, database and outbound calls) is re-timed to ``--rate`` spans per
second of span time and replayed ``--repeat`` times back to back (fresh trace
ids each time), in batches like the pipeline's, with one tick per batch. So
10-second windows close at the rate they would on a busy node, and the time of
every window close is inside the measurement. Only the enricher calls are
timed; re-timing the spans is not.

CPU time of this process (not wall time: the bench shares its machine). Printed every ``--report`` seconds of span time: us/span so far, windows closed,
open rows, the sizes of the enricher's state, and the process RSS. The last line
is ``abuse us/span: X.XX (per-span A.AA + windows W.WW)  rss MiB: start S end E``.

    .venv/bin/python bench/abuse_cost.py [--rate 40000] [--seconds 120] [--batch 4096]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import Config  # noqa: E402
from agent.state import State  # noqa: E402
from bench.traffic_abuse import T0, build  # noqa: E402
from enrichers.abuse import AbuseEnricher  # noqa: E402
from enrichers.abuse.baselines import AbuseState  # noqa: E402


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def state_sizes(e: AbuseEnricher, st: AbuseState) -> str:
    rows = sum(len(r) for r in st.rows.values())
    return (f"open_rows={rows} endpoints={len(st.endpoints)} clients={len(st.clients)} routes={len(st.routes)} "
            f"readers={sum(len(r.readers) for r in st.routes.values())} admin={len(st.admin)} "
            f"traces={len(st.traces)} reported_once={len(st.reported_once)} "
            f"param_hosts={sum(len(v) for v in st.param_hosts.values())} "
            f"eps_cache={len(e._eps)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=40_000, help="spans per second of span time")
    ap.add_argument("--seconds", type=float, default=120, help="seconds of span time to replay")
    ap.add_argument("--base", type=int, default=60_000, help="benign requests in the generated base")
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=4096, help="spans per batch (the pipeline's default)")
    ap.add_argument("--report", type=float, default=30, help="print progress every N seconds of span time")
    args = ap.parse_args(argv)

    print("generating...", flush=True)
    base, _, _ = build(args.base, args.users, instances=0, seed=11)
    span_ns = base[-1].start_ns - base[0].start_ns
    scale = len(base) / args.rate * 1e9 / span_ns
    starts = [T0 + int((s.start_ns - T0) * scale) for s in base]
    durs = [s.end_ns - s.start_ns for s in base]
    traces = [s.trace_id for s in base]
    period = int(len(base) / args.rate * 1e9)
    total = int(args.seconds * args.rate)
    print(f"base: {len(base)} spans re-timed to {args.rate:,.0f} spans/s ({period / 1e9:.1f}s), "
          f"replaying {total:,} spans ({args.seconds:g}s of span time)", flush=True)

    e = AbuseEnricher(Config(persist=False))
    state = State()
    spent = [0.0]
    window = e._window

    def timed_window(*a, **kw):  # type: ignore[no-untyped-def]
        t = time.process_time()
        try:
            return window(*a, **kw)
        finally:
            spent[0] += time.process_time() - t

    e._window = timed_window  # type: ignore[method-assign]
    gc.collect()
    rss0 = rss_mib()
    t_proc = t_tick = 0.0
    done = 0
    rep = 0
    next_report = args.report * 1e9
    while done < total:
        off = rep * period
        for i, s in enumerate(base):  # re-time in place (outside the timer)
            s.start_ns = starts[i] + off
            s.end_ns = s.start_ns + durs[i]
            s.trace_id = f"{rep:04x}{traces[i][4:]}"
        for i in range(0, len(base), args.batch):
            batch = base[i : i + args.batch]
            now = batch[-1].start_ns
            t = time.process_time()
            with state.lock:
                state.batch.clear()
                for _ in e.process(batch, state) or ():
                    pass
            t2 = time.process_time()
            for _ in e.tick(now, state) or ():
                pass
            t3 = time.process_time()
            t_proc += t2 - t
            t_tick += t3 - t2
            done += len(batch)
            if now - T0 >= next_report:
                next_report += args.report * 1e9
                st = e.state(state)
                print(f"{(now - T0) / 1e9:6.0f}s  {(t_proc + t_tick) / done * 1e6:5.2f} us/span  "
                      f"windows={st.windows_closed} dropped={st.rows_dropped} {state_sizes(e, st)} "
                      f"rss={rss_mib():.0f}MiB", flush=True)
            if done >= total:
                break
        rep += 1
    st = e.state(state)
    win = spent[0]
    print(f"windows closed: {st.windows_closed}, rows dropped: {st.rows_dropped}, "
          f"window aggregation {win:.2f}s of {t_proc + t_tick:.2f}s")
    print(f"abuse us/span: {(t_proc + t_tick) / done * 1e6:.2f} (per-span {(t_proc + t_tick - win) / done * 1e6:.2f} "
          f"+ windows {win / done * 1e6:.2f})  rss MiB: start {rss0:.0f} end {rss_mib():.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
