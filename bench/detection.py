"""Detection quality of the abuse enricher on labelled traffic.

Generates benign traffic of a multi-service shop API (many users, bursty
sessions) with injected attacks of every class (``bench/traffic_abuse.py``),
feeds it through the enrichers in micro-batches of one second of span time
(span time drives every window, so the run is deterministic), and reports per
class precision, recall and time to detect, and the false-positive findings per
100,000 benign requests.

Time to detect runs from an attack's first span to the last span of the batch
after which the finding first appeared (so it is exact to within one batch,
``--batch-seconds``). A finding is correct (precision) when it detects an attack
of its class, or when it is about an injected attacker's client, whatever its
class. The benign traffic includes service-to-service calls (gateway to catalog,
orders and users; orders to users), so the false-positive figure covers them.

    .venv/bin/python bench/detection.py [--benign 100000] [--instances 3] [--chain abuse|all]

The last line is ``min recall: X.XX  false positives per 100k: X.X``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.config import Config  # noqa: E402
from agent.model import Finding, Span  # noqa: E402
from agent.state import State  # noqa: E402
from agent.wiring import build_enrichers  # noqa: E402
from bench.traffic_abuse import CLASSES, Attack, build  # noqa: E402
from enrichers.abuse import AbuseEnricher  # noqa: E402

SLACK_NS = 30 * 10**9  # a window plus lateness after an attack ends


def _matches(f: Finding, a: Attack, *, loose: bool = False) -> bool:
    """Is ``f`` about attack ``a``? Strict: its labelled client/route/host. Loose: any
    client or (for findings without a client) any route the attack's requests used."""
    if f.last_seen_ns < a.start_ns - 10**9 or f.first_seen_ns > a.end_ns + SLACK_NS:
        return False
    s = f.subject
    if s.client and s.client in a.clients:
        return True
    if s.route and s.route in a.routes and not (s.client and loose):
        return True
    if s.host and s.host in a.hosts:
        return True
    if loose:
        return s.client in a.actors if s.client else bool(s.route and s.route in a.touched)
    return False


def _batches(spans: list[Span], span_ns: int, most: int) -> Iterator[list[Span]]:
    """Consecutive batches covering at most ``span_ns`` of span time and ``most`` spans."""
    i = 0
    while i < len(spans):
        end_ns = spans[i].start_ns + span_ns
        j = i + 1
        while j < len(spans) and j - i < most and spans[j].start_ns < end_ns:
            j += 1
        yield spans[i:j]
        i = j


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benign", type=int, default=100_000, help="benign requests (default 100000)")
    ap.add_argument("--users", type=int, default=3000)
    ap.add_argument("--instances", type=int, default=3, help="instances of each attack class")
    ap.add_argument("--batch", type=int, default=2000, help="at most this many spans per pipeline batch")
    ap.add_argument("--batch-seconds", type=float, default=1.0, help="span time per pipeline batch (default 1)")
    ap.add_argument("--chain", choices=("abuse", "all"), default="abuse",
                    help="run the call graph and the abuse enricher (default; the call graph names service "
                         "callers) or the whole wired chain")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--verbose", action="store_true", help="list false-positive findings")
    args = ap.parse_args(argv)

    t0 = time.process_time()  # CPU time: the machine is shared
    spans, attacks, benign_n = build(args.benign, args.users, instances=args.instances, seed=args.seed,
                                     progress=lambda m: print(m, flush=True))
    t_gen = time.process_time() - t0
    config = Config()
    enrichers = build_enrichers(config, None if args.chain == "all" else ["callgraph", "abuse"])
    assert any(isinstance(e, AbuseEnricher) for e in enrichers)
    state = State()
    emitted: list[tuple[int, Finding]] = []  # (watermark at emission, observation)
    t1 = time.process_time()
    for batch in _batches(spans, int(args.batch_seconds * 1e9), args.batch):
        wm = batch[-1].start_ns
        with state.lock:
            state.batch.clear()
            for e in enrichers:
                for f in e.process(batch, state) or ():
                    if f.rule.startswith("abuse."):
                        emitted.append((wm, f))
                    state.findings.add(f)
    for e in enrichers:
        flush = getattr(e, "flush", None)
        if flush is not None:
            emitted.extend((spans[-1].start_ns, f) for f in flush(state))
    t_proc = time.process_time() - t1

    # Score: an observation detects an attack instance when its rule belongs to the
    # instance's class and its subject and time match the instance.
    detected_at: dict[int, int] = {}
    fid_class_hit: dict[str, bool] = {}
    fid_explained: dict[str, bool] = {}
    fid_attacker: dict[str, bool] = {}  # about an injected attacker's client
    fid_rule: dict[str, str] = {}
    rule_class = {r: c for c, rs in CLASSES.items() for r in rs}
    for wm, f in emitted:
        fid_rule[f.id] = f.rule
        cls = rule_class.get(f.rule)
        hit = explained = attacker = False
        for idx, a in enumerate(attacks):
            if not _matches(f, a, loose=True):
                continue
            explained = True
            attacker = attacker or bool(f.subject.client and f.subject.client in a.clients | a.actors)
            if a.cls == cls and _matches(f, a):
                hit = True
                if idx not in detected_at or wm < detected_at[idx]:
                    detected_at[idx] = wm
        fid_class_hit[f.id] = fid_class_hit.get(f.id, False) or hit
        fid_explained[f.id] = fid_explained.get(f.id, False) or explained
        fid_attacker[f.id] = fid_attacker.get(f.id, False) or attacker
    print(f"\n{len(spans)} spans ({benign_n} benign requests, {len(attacks)} attack instances); "
          f"generated in {t_gen:.1f}s CPU, processed in {t_proc:.1f}s CPU ({len(spans) / t_proc:,.0f} spans/CPU s)")
    print(f"\n{'class':24} {'owasp':11} {'recall':>6} {'precision':>9} {'ttd p50 s':>9} {'ttd max s':>9}")
    recalls = []
    owasp = {f.rule: f.owasp for _, f in emitted}
    for cls, rules in CLASSES.items():
        inst = [i for i, a in enumerate(attacks) if a.cls == cls]
        if not inst:
            continue
        hits = [i for i in inst if i in detected_at]
        recall = len(hits) / len(inst)
        recalls.append(recall)
        fids = [fid for fid, r in fid_rule.items() if r in rules]
        tp = sum(1 for fid in fids if fid_class_hit[fid] or fid_attacker[fid])
        precision = tp / len(fids) if fids else float("nan")
        ttd = [(detected_at[i] - attacks[i].start_ns) / 1e9 for i in hits]
        med = f"{statistics.median(ttd):9.1f}" if ttd else f"{'-':>9}"
        mx = f"{max(ttd):9.1f}" if ttd else f"{'-':>9}"
        cat = next((owasp[r] for r in rules if r in owasp), "") or ""
        print(f"{cls:24} {cat:11} {recall:6.2f} {precision:9.2f} {med} {mx}")
    fps = [fid for fid, ok in fid_explained.items() if not ok]
    cross = [fid for fid, ok in fid_class_hit.items() if not ok and fid_explained[fid]]
    print(f"\nfindings: {len(fid_rule)} distinct; unexplained (false positives): {len(fps)}; "
          f"about an attacker but another class: {len(cross)}")
    from collections import Counter

    print("  unexplained by rule:", dict(Counter(fid_rule[f] for f in fps)))
    print("  other-class by rule:", dict(Counter(fid_rule[f] for f in cross)))
    if args.verbose:
        for fid in fps[:20]:
            rec = state.findings.get(fid)
            if rec is not None:
                f = rec.finding
                print(f"  FP {f.rule} {f.subject.label} count={f.count} {dict(f.evidence)}")
    fp100k = len(fps) * 100_000 / max(benign_n, 1)
    print(f"min recall: {min(recalls) if recalls else 0.0:.2f}  false positives per 100k: {fp100k:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
