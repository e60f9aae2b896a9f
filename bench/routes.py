"""Route-cardinality bench: 1,000,000 distinct raw paths of one service, no http.route.

Feeds server spans through the real inventory enricher in batches and prints,
at checkpoints, the number of endpoints, template nodes and the process RSS.
The inventory must stay at a few hundred endpoints and memory flat, whatever
the paths: ids, UUIDs, hashes, emails, dates, user names, slugs, file names,
search words and 404 probes from a scanner.

    .venv/bin/python bench/routes.py [--paths N]
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.config import Config  # noqa: E402
from agent.model import Resource, SpanKind, make_span  # noqa: E402
from agent.state import State  # noqa: E402
from enrichers.inventory import InventoryEnricher  # noqa: E402

RES = Resource.from_attributes({"service.name": "shop"})
T0 = 1_700_000_000_000_000_000


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=n))


def paths(n: int, seed: int = 7) -> Iterator[tuple[str, int]]:
    """``n`` distinct (path, status) pairs: the counter ``i`` is in every path."""
    rng = random.Random(seed)
    for i in range(n):
        k = i % 10
        if k == 0:
            p, s = f"/api/v1/users/{i}/orders/{rng.randint(1, 10**9)}", 200
        elif k == 1:
            p, s = f"/api/v1/carts/{uuid.UUID(int=rng.getrandbits(128))}", 200
        elif k == 2:
            p, s = f"/api/v1/users/{_word(rng, 6)}{i}/profile", 200  # user names: literal-looking
        elif k == 3:
            p, s = f"/blog/{_word(rng, 5)}-{_word(rng, 7)}-{i}", 200  # slugs
        elif k == 4:
            p, s = f"/files/{_word(rng, 8)}_{i}.pdf", 200  # file names
        elif k == 5:
            p, s = f"/api/v1/search/{_word(rng, 4)}{i}?q={i}", 200
        elif k == 6:
            p, s = f"/objects/{rng.getrandbits(160):040x}/{i}", 200  # hashes
        elif k == 7:
            p, s = f"/api/v1/users/{_word(rng, 5)}{i}@example.com/settings", 200
        elif k == 8:
            p, s = f"/reports/2024-{1 + i % 12:02d}-{1 + i % 28:02d}/{i}.csv", 200
        else:
            depth = rng.randint(1, 6)  # a scanner: random words at random depth, 404
            p = "/" + "/".join(_word(rng, rng.randint(3, 10)) for _ in range(depth)) + f"/{i}x"
            s = 404
        yield p, s


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: peak instead
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paths", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    enr = InventoryEnricher(Config())
    state = State()
    marks = {int(args.paths * f) for f in (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)}
    print(f"{'paths':>10} {'endpoints':>10} {'nodes':>7} {'rss MiB':>8} {'spans/s':>9}")
    t0 = time.perf_counter()
    batch = []
    done = 0
    for i, (path, status) in enumerate(paths(args.paths)):
        p, _, q = path.partition("?")
        attrs = {"http.request.method": "GET", "url.path": p, "http.response.status_code": status}
        if q:
            attrs["url.query"] = q
        batch.append(make_span(
            trace_id=f"{i:032x}", span_id=f"{i:016x}", parent_span_id="", resource=RES,
            name="GET", kind=SpanKind.SERVER, start_ns=T0 + i * 1000, end_ns=T0 + i * 1000 + 500,
            attributes=attrs,
        ))
        if len(batch) >= args.batch or i + 1 == args.paths:
            state.batch.clear()
            enr.process(batch, state)
            done += len(batch)
            batch = []
            hit = [m for m in marks if m <= done]
            for m in hit:
                marks.discard(m)
            if hit:
                part = state.parts["inventory"]
                st = part.stats()
                rate = done / (time.perf_counter() - t0)
                print(f"{done:>10,} {st['endpoints']:>10} {st['template_nodes']:>7} "
                      f"{rss_mib():>8.1f} {rate:>9,.0f}", flush=True)
    part = state.parts["inventory"]
    rows = part.report()
    print(f"\n{len(rows)} endpoints after {args.paths:,} distinct paths "
          f"in {time.perf_counter() - t0:.1f} s; largest:")
    for r in sorted(rows, key=lambda r: -r["calls"])[:12]:
        print(f"  {r['calls']:>8}  {r['method']} {r['route']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
