"""Sensitive-data detection: apiward vs Microsoft Presidio vs a plain stdlib-``re`` scan.

One run, one labelled corpus (bench/corpus_sensitive.py), three scanners:

- apiward: :class:`SensitiveDataScanner` with its hyperscan (or re2) prefilter;
- plain re: the same recognizers, patterns and validators with no prefilter (every
  pattern runs over every line) — what the prefilter buys;
- Presidio: ``presidio-analyzer``'s predefined recognizers with a blank spaCy
  pipeline (``spacy.blank("en")``, nothing downloaded), on the entity types both
  support. Presidio reports low-confidence matches (score 0.05); its F1 is taken at
  the best of the score thresholds 0, 0.3, 0.4 and 0.5, to be fair to it.

Throughput is corpus bytes per CPU second of the scanning process (process_time), so
other load on the machine does not skew the ratios.

A detection counts as a true positive when its type equals the gold type and its
span overlaps the gold span. Prints per-type and overall precision/recall/F1 and
MB/s, and, last, ``f1 apiward: X presidio: Y`` (on the shared types) and
``throughput ratio apiward/presidio: R``.

    .venv/bin/python bench/sensitive.py [--lines N] [--presidio-lines N] [--seed S]

Presidio is not a dependency of apiward: ``pip install presidio-analyzer`` into the
venv to run this. Without it, the Presidio columns are skipped.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus_sensitive import generate  # noqa: E402

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


def run_scanner(scanner: SensitiveDataScanner, lines: list[str]) -> tuple[list[list[Pred]], float]:
    t0 = time.process_time()
    preds = [[(m.type, m.start, m.end) for m in scanner.scan(line)] for line in lines]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=20000, help="corpus lines for apiward and plain re")
    ap.add_argument("--presidio-lines", type=int, default=3000, help="first N lines also run through Presidio")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.environ.setdefault("TLDEXTRACT_CACHE", "/tmp/tldextract-cache")

    corpus = generate(args.lines, args.seed)
    lines = [c[0] for c in corpus]
    nbytes = sum(len(x.encode()) for x in lines)
    all_types = {t for _l, g in corpus for t, _s, _e in g}

    scanner = SensitiveDataScanner(secret=b"k" * 32)
    plain = SensitiveDataScanner(secret=b"k" * 32, engine="re", cache_size=1)
    run_scanner(scanner, lines[:200])  # warm caches of the libraries (phonenumbers metadata...)
    scanner._cache.clear()
    ap_preds, ap_t = run_scanner(scanner, lines)
    re_preds, re_t = run_scanner(plain, lines)
    mb = nbytes / 1e6
    print(f"corpus: {len(lines)} lines, {mb:.2f} MB, {len(all_types)} types "
          f"(prefilter engine: {scanner.engine})")
    ap_counts = score(corpus, ap_preds, all_types)
    re_counts = score(corpus, re_preds, all_types)

    presidio = build_presidio()
    pr_counts_best: dict[str, list[int]] = {}
    pr_mbps = 0.0
    shared = {t for t in PRESIDIO_MAP if t in all_types}
    pr_thr = 0.0
    if presidio is not None:
        sub = corpus[: args.presidio_lines]
        sub_lines = [c[0] for c in sub]
        entities = list(PRESIDIO_MAP)
        presidio.analyze(text=sub_lines[0], language="en", entities=entities)
        t0 = time.process_time()
        raw = [presidio.analyze(text=x, language="en", entities=entities) for x in sub_lines]
        pr_t = time.process_time() - t0
        pr_mbps = sum(len(x.encode()) for x in sub_lines) / 1e6 / pr_t
        best = -1.0
        alias = {k: v for k, v in PRESIDIO_MAP.items()}
        for thr in (0.0, 0.3, 0.4, 0.5):
            preds = [[(r.entity_type, r.start, r.end) for r in res if r.score >= thr] for res in raw]
            c = score(sub, preds, shared, alias)
            f = prf(total(c, shared))[2]
            if f > best:
                best, pr_counts_best, pr_thr = f, c, thr
        ap_sub_counts = score(sub, ap_preds[: len(sub)], shared)
    else:
        print("presidio-analyzer is not installed: Presidio columns skipped")
        ap_sub_counts = {}

    print()
    print(f"{'type':<26} {'apiward P/R/F1':>20} {'plain re F1':>12} {'presidio P/R/F1':>20}")
    for typ in sorted(all_types):
        p, r, f = prf(ap_counts.get(typ, [0, 0, 0]))
        rf = prf(re_counts.get(typ, [0, 0, 0]))[2]
        pcol = ""
        if presidio is not None and typ in shared:
            pp, prr, pf = prf(pr_counts_best.get(typ, [0, 0, 0]))
            pcol = f"{pp:.3f}/{prr:.3f}/{pf:.3f}"
        print(f"{typ:<26} {p:.3f}/{r:.3f}/{f:.3f} {rf:>12.3f} {pcol:>20}")
    ap_all = prf(total(ap_counts, all_types))
    re_all = prf(total(re_counts, all_types))
    ap_mbps = mb / ap_t
    re_mbps = mb / re_t
    print()
    print(f"overall, all {len(all_types)} types: apiward P={ap_all[0]:.3f} R={ap_all[1]:.3f} F1={ap_all[2]:.3f}; "
          f"plain re F1={re_all[2]:.3f}")
    print(f"throughput: apiward {ap_mbps:.2f} MB/s, plain re {re_mbps:.2f} MB/s "
          f"(apiward/re {ap_mbps / re_mbps:.1f}x)" + (f", presidio {pr_mbps:.4f} MB/s" if presidio else ""))
    if presidio is None:
        return 0
    ap_shared = prf(total(ap_sub_counts, shared))
    pr_shared = prf(total(pr_counts_best, shared))
    print(f"shared types ({len(shared)}) on the first {args.presidio_lines} lines: apiward "
          f"P={ap_shared[0]:.3f} R={ap_shared[1]:.3f}; presidio P={pr_shared[0]:.3f} R={pr_shared[1]:.3f} "
          f"(best score threshold {pr_thr})")
    print(f"f1 apiward: {ap_shared[2]:.3f} presidio: {pr_shared[2]:.3f}")
    print(f"throughput ratio apiward/presidio: {ap_mbps / pr_mbps:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
