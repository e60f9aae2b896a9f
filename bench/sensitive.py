"""Sensitive-data detection: apiward vs Microsoft Presidio vs a plain stdlib-``re`` scan.

One run, two labelled corpora (bench/corpus_sensitive.py), three scanners:

- corpora: *dense* (every line holds a sensitive value or a hard negative: the worst
  case) and *realistic* (95% benign telemetry values, 5% from the dense generator:
  what real attribute values look like). Both are reported, clearly labelled; the
  realistic one gives the last two lines;
- apiward: :class:`SensitiveDataScanner` with its hyperscan (or re2) prefilter, fed
  in batches of ``--batch`` values (one prefilter call per batch, as the enricher
  does per span batch), its value cache emptied before each batch;
- plain re: the same recognizers, patterns and validators with no prefilter (every
  pattern runs over every line) — what the prefilter buys;
- Presidio: ``presidio-analyzer``'s predefined recognizers with a blank spaCy
  pipeline (``spacy.blank("en")``, nothing downloaded). It runs all of them, as
  apiward runs all of its own (a full scan against a full scan: that is the
  throughput ratio); F1 is compared on the entity types both support. Presidio
  restricted to those types (``entities=``) is also timed and printed, not used.
  Presidio reports low-confidence matches (score 0.05); its F1 is taken at the
  best of the score thresholds 0, 0.3, 0.4 and 0.5, to be fair to it.

Throughput is corpus bytes per CPU second of the scanning process (process_time), so
other load on the machine does not skew the ratios.

A detection counts as a true positive when its type equals the gold type and its
span overlaps the gold span. Prints per-type and overall precision/recall/F1 and
MB/s, and, last (realistic corpus), ``f1 apiward: X presidio: Y`` (on the shared
types) and ``throughput ratio apiward/presidio: R``.

    .venv/bin/python bench/sensitive.py [--lines N] [--realistic-lines N] [--share F]
                                       [--presidio-lines N] [--batch N] [--seed S]

Presidio is not a dependency of apiward: ``pip install presidio-analyzer`` into the
venv to run this. Without it, the Presidio columns are skipped.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_sensitive import generate, generate_realistic  # noqa: E402

from enrichers.sensitive.scanner import SensitiveDataScanner  # noqa: E402

Pred = tuple[str, int, int]

#: Presidio entity -> the gold types it may match (its IP_ADDRESS covers private ranges).
PRESIDIO_MAP = {
    "EMAIL_ADDRESS": ("EMAIL_ADDRESS",),
    "PHONE_NUMBER": ("PHONE_NUMBER",),
    "CREDIT_CARD": ("CREDIT_CARD",),
    "US_SSN": ("US_SSN",),
    "US_ITIN": ("US_ITIN",),
    "IBAN_CODE": ("IBAN_CODE",),
    "IP_ADDRESS": ("IP_ADDRESS", "PRIVATE_IP_ADDRESS"),
    "MAC_ADDRESS": ("MAC_ADDRESS",),
    "MEDICAL_LICENSE": ("MEDICAL_LICENSE",),
    "CRYPTO": ("CRYPTO",),
    "US_BANK_NUMBER": ("US_BANK_NUMBER",),
}


def score(
    corpus: list[tuple[str, list[Pred]]], preds: list[list[Pred]], types: set[str],
    alias: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, list[int]]:
    """type -> [tp, fp, fn] over ``types`` (gold types; ``alias`` maps predicted types)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for (_line, gold), pred in zip(corpus, preds, strict=True):
        used = [False] * len(gold)
        for typ, s, e in pred:
            targets = alias.get(typ, (typ,)) if alias else (typ,)
            if not any(t in types for t in targets):
                continue
            hit = -1
            for i, (gt, gs, ge) in enumerate(gold):
                if not used[i] and gt in targets and s < ge and gs < e:
                    hit = i
                    break
            if hit >= 0:
                used[hit] = True
                out[gold[hit][0]][0] += 1
            else:
                out[targets[0]][1] += 1
        for i, (gt, _gs, _ge) in enumerate(gold):
            if not used[i] and gt in types:
                out[gt][2] += 1
    return out


def prf(c: list[int]) -> tuple[float, float, float]:
    tp, fp, fn = c
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def total(counts: dict[str, list[int]], types: set[str]) -> list[int]:
    t = [0, 0, 0]
    for typ in types:
        c = counts.get(typ, [0, 0, 0])
        for i in range(3):
            t[i] += c[i]
    return t


def run_scanner(
    scanner: SensitiveDataScanner, lines: list[str], batch: int = 0
) -> tuple[list[list[Pred]], float]:
    """Predictions and CPU seconds; ``batch`` > 0 scans that many lines per
    :meth:`~SensitiveDataScanner.scan_many` call without the scanner's value cache
    (exactly as the enricher calls it with the novel values of a span batch), else one
    :meth:`~SensitiveDataScanner.scan` per line with the cache emptied before each, so
    repeated lines are never free."""
    preds: list[list[Pred]] = []
    t0 = time.process_time()
    if batch > 0:
        for i in range(0, len(lines), batch):
            for ms in scanner.scan_many([(x, "") for x in lines[i : i + batch]], cache=False):
                preds.append([(m.type, m.start, m.end) for m in ms])
    else:
        for x in lines:
            scanner.clear_cache()
            preds.append([(m.type, m.start, m.end) for m in scanner.scan(x)])
    return preds, time.process_time() - t0


def build_presidio():  # type: ignore[no-untyped-def]
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import SpacyNlpEngine
    except ImportError:
        return None
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    class BlankSpacy(SpacyNlpEngine):
        """Presidio's spaCy engine on a blank English pipeline (no model download)."""

        def __init__(self) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": "blank"}])

        def load(self) -> None:
            self.nlp = {"en": spacy.blank("en")}

    registry = RecognizerRegistry()
    registry.load_predefined_recognizers(languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=BlankSpacy(), supported_languages=["en"])


@dataclass
class Result:
    """Accuracy and throughput of one corpus."""

    label: str
    lines: int
    mb: float
    f1_all: float
    p_all: float
    r_all: float
    f1_re: float
    ap_mbps: float
    re_mbps: float
    pr_mbps: float = 0.0
    #: Presidio restricted to the shared entity types (printed for reference only).
    pr_shared_mbps: float = 0.0
    pr_lines: int = 0
    f1_shared_ap: float = 0.0
    f1_shared_pr: float = 0.0
    pr_thr: float = 0.0
    worse_than_presidio: list[str] = field(default_factory=list)


def evaluate(label: str, corpus: list[tuple[str, list[Pred]]], presidio: Any, args: argparse.Namespace,
             per_type: bool) -> Result:
    lines = [c[0] for c in corpus]
    nbytes = sum(len(x.encode()) for x in lines)
    mb = nbytes / 1e6
    all_types = {t for _l, g in corpus for t, _s, _e in g}
    scanner = SensitiveDataScanner(secret=b"k" * 32)
    plain = SensitiveDataScanner(secret=b"k" * 32, engine="re")
    run_scanner(scanner, lines[:300], args.batch)  # warm the libraries (phonenumbers metadata...)
    run_scanner(plain, lines[:100])
    # What is loaded by now (Presidio's spaCy pipeline, the corpus) stays for the whole
    # run: freeze it, as `apiward run` freezes its start-up objects, so no side pays for
    # the garbage collector walking the other's objects.
    gc.collect()
    gc.freeze()
    ap_preds, ap_t = run_scanner(scanner, lines, args.batch)
    re_preds, re_t = run_scanner(plain, lines)
    benign = sum(1 for _l, g in corpus if not g)
    print(f"== {label} corpus: {len(lines)} lines ({benign / len(lines):.0%} without a sensitive value), "
          f"{mb:.2f} MB, {len(all_types)} types (prefilter engine: {scanner.engine}, "
          f"batches of {args.batch} values)")
    ap_counts = score(corpus, ap_preds, all_types)
    re_counts = score(corpus, re_preds, all_types)

    pr_counts_best: dict[str, list[int]] = {}
    shared = {t for t in PRESIDIO_MAP if t in all_types}
    res = Result(label, len(lines), mb, 0, 0, 0, 0, mb / ap_t, mb / re_t)
    ap_sub_counts: dict[str, list[int]] = {}
    if presidio is not None:
        sub = corpus[: args.presidio_lines]
        sub_lines = [c[0] for c in sub]
        sub_mb = sum(len(x.encode()) for x in sub_lines) / 1e6
        entities = list(PRESIDIO_MAP)
        presidio.analyze(text=sub_lines[0], language="en")
        presidio.analyze(text=sub_lines[0], language="en", entities=entities)
        t0 = time.process_time()
        raw = [presidio.analyze(text=x, language="en") for x in sub_lines]  # all its recognizers
        pr_t = time.process_time() - t0
        t0 = time.process_time()
        for x in sub_lines:
            presidio.analyze(text=x, language="en", entities=entities)
        res.pr_shared_mbps = sub_mb / (time.process_time() - t0)
        res.pr_mbps = sub_mb / pr_t
        res.pr_lines = len(sub)
        best = -1.0
        for thr in (0.0, 0.3, 0.4, 0.5):
            preds = [[(r.entity_type, r.start, r.end) for r in rs if r.score >= thr] for rs in raw]
            c = score(sub, preds, shared, PRESIDIO_MAP)
            f = prf(total(c, shared))[2]
            if f > best:
                best, pr_counts_best, res.pr_thr = f, c, thr
        ap_sub_counts = score(sub, ap_preds[: len(sub)], shared)
        res.f1_shared_ap = prf(total(ap_sub_counts, shared))[2]
        res.f1_shared_pr = prf(total(pr_counts_best, shared))[2]
        for typ in sorted(shared):
            if prf(ap_sub_counts.get(typ, [0, 0, 0]))[2] < prf(pr_counts_best.get(typ, [0, 0, 0]))[2]:
                res.worse_than_presidio.append(typ)

    if per_type:
        print(f"{'type':<26} {'apiward P/R/F1':>20} {'plain re F1':>12} {'presidio P/R/F1':>20}")
        for typ in sorted(all_types):
            p, r, f = prf(ap_counts.get(typ, [0, 0, 0]))
            rf = prf(re_counts.get(typ, [0, 0, 0]))[2]
            pcol = ""
            if presidio is not None and typ in shared:
                pp, prr, pf = prf(pr_counts_best.get(typ, [0, 0, 0]))
                pcol = f"{pp:.3f}/{prr:.3f}/{pf:.3f}"
            print(f"{typ:<26} {p:.3f}/{r:.3f}/{f:.3f} {rf:>12.3f} {pcol:>20}")
    res.p_all, res.r_all, res.f1_all = prf(total(ap_counts, all_types))
    res.f1_re = prf(total(re_counts, all_types))[2]
    print(f"{label}: overall, all {len(all_types)} types: apiward P={res.p_all:.3f} R={res.r_all:.3f} "
          f"F1={res.f1_all:.3f}; plain re F1={res.f1_re:.3f}")
    print(f"{label}: throughput apiward {res.ap_mbps:.2f} MB/s, plain re {res.re_mbps:.2f} MB/s "
          f"(apiward/re {res.ap_mbps / res.re_mbps:.1f}x)"
          + (f", presidio {res.pr_mbps:.4f} MB/s (apiward/presidio {res.ap_mbps / res.pr_mbps:.1f}x; "
             f"presidio on the shared types only {res.pr_shared_mbps:.4f} MB/s, "
             f"{res.ap_mbps / res.pr_shared_mbps:.1f}x)"
             if presidio is not None else ""))
    if presidio is not None:
        ap_sh = prf(total(ap_sub_counts, shared))
        pr_sh = prf(total(pr_counts_best, shared))
        print(f"{label}: shared types ({len(shared)}) on the first {res.pr_lines} lines: apiward "
              f"P={ap_sh[0]:.3f} R={ap_sh[1]:.3f} F1={ap_sh[2]:.3f}; presidio P={pr_sh[0]:.3f} "
              f"R={pr_sh[1]:.3f} F1={pr_sh[2]:.3f} (best score threshold {res.pr_thr}); "
              f"shared types where apiward is below presidio: {', '.join(res.worse_than_presidio) or 'none'}")
    print()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=20000, help="dense corpus lines for apiward and plain re")
    ap.add_argument("--realistic-lines", type=int, default=100000,
                    help="realistic corpus lines for apiward and plain re")
    ap.add_argument("--share", type=float, default=0.05,
                    help="share of realistic lines holding a sensitive value (default 0.05)")
    ap.add_argument("--presidio-lines", type=int, default=3000, help="first N lines also run through Presidio")
    ap.add_argument("--batch", type=int, default=1000, help="values per scan_many call (0: one scan per line)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("TLDEXTRACT_CACHE", "/tmp/tldextract-cache")

    presidio = build_presidio()
    if presidio is None:
        print("presidio-analyzer is not installed: Presidio columns skipped")
    dense = evaluate("dense", generate(args.lines, args.seed), presidio, args, per_type=True)
    real = evaluate(f"realistic ({args.share:.0%} sensitive)",
                    generate_realistic(args.realistic_lines, args.seed, args.share), presidio, args,
                    per_type=False)
    print("summary (targets: F1 >= 0.95, not below presidio on any shared type; "
          ">= 200x presidio and >= 10x plain re throughput):")
    for r in (dense, real):
        line = (f"  {r.label}: F1 {r.f1_all:.3f}, apiward {r.ap_mbps:.2f} MB/s = "
                f"{r.ap_mbps / r.re_mbps:.1f}x plain re")
        if presidio is not None:
            line += (f" = {r.ap_mbps / r.pr_mbps:.1f}x presidio; shared-type F1 apiward "
                     f"{r.f1_shared_ap:.3f} presidio {r.f1_shared_pr:.3f}")
        print(line)
    if presidio is None:
        return 0
    print(f"dense f1 apiward: {dense.f1_shared_ap:.3f} presidio: {dense.f1_shared_pr:.3f}")
    print(f"dense throughput ratio apiward/presidio: {dense.ap_mbps / dense.pr_mbps:.1f}")
    print("realistic (the last two lines):")
    print(f"f1 apiward: {real.f1_shared_ap:.3f} presidio: {real.f1_shared_pr:.3f}")
    print(f"throughput ratio apiward/presidio: {real.ap_mbps / real.pr_mbps:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
