"""``apiward detect``: scan a sample of your own data for sensitive values.

Reads text or JSON Lines from FILE (or ``-``/nothing for stdin) and prints, per
line, the detected types with character offsets, scores and masked values — never
the values themselves. ``--list-types`` prints every type apiward recognises.
Exit code 0 when nothing was found, 1 when something was, 2 on bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, TextIO

import orjson


def register(sub: Any) -> None:
    p = sub.add_parser(
        "detect",
        help="scan text or JSON Lines for sensitive data (types, offsets, masked values)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("file", nargs="?", default="-", metavar="FILE", help="input file (default: stdin)")
    p.add_argument("--format", choices=("table", "json", "jsonl"), default="table",
                   help="output format (default: table)")
    p.add_argument("--list-types", action="store_true", help="list the recognised types and exit")
    p.set_defaults(func=main)


def _open(path: str) -> TextIO:
    if path == "-":
        return sys.stdin
    return open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by caller


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except BrokenPipeError:
        # The reader went away (``apiward detect --list-types | head -1``): not an
        # error. Point stdout at /dev/null so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _main(args: argparse.Namespace) -> int:
    from enrichers.sensitive.scanner import SensitiveDataScanner

    scanner = SensitiveDataScanner()
    out = sys.stdout
    if args.list_types:
        rows = scanner.types()
        if args.format == "table":
            out.write(f"{'TYPE':<26} {'CATEGORY':<11} {'COMPLIANCE':<16} DESCRIPTION\n")
            for typ, cat, desc, comp in rows:
                out.write(f"{typ:<26} {cat:<11} {', '.join(comp) or '-':<16} {desc}\n")
        else:
            docs = [{"type": t, "category": c, "description": d, "compliance": list(p)} for t, c, d, p in rows]
            if args.format == "json":
                out.write(orjson.dumps(docs, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                for doc in docs:
                    out.write(orjson.dumps(doc).decode() + "\n")
        return 0
    try:
        fh = _open(args.file)
    except OSError as exc:
        print(f"apiward detect: {args.file}: cannot read it ({exc.strerror}); give a readable file or - for stdin.",
              file=sys.stderr)
        return 2
    found = 0
    table_header = False
    all_rows: list[dict[str, Any]] = []
    try:
        for n, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            matches = scanner.scan(line)
            found += len(matches)
            dets = [m.as_dict() for m in matches]
            if args.format == "jsonl":
                out.write(orjson.dumps({"line": n, "detections": dets}).decode() + "\n")
            elif args.format == "json":
                all_rows.extend({"line": n, **d} for d in dets)
            else:
                if dets and not table_header:
                    out.write(f"{'LINE':>6} {'START':>6} {'END':>6} {'TYPE':<26} {'SCORE':>5}  MASKED\n")
                    table_header = True
                for d in dets:
                    out.write(f"{n:>6} {d['start']:>6} {d['end']:>6} {d['type']:<26} {d['score']:>5.2f}  {d['masked']}\n")
    finally:
        if fh is not sys.stdin:
            fh.close()
    if args.format == "json":
        summary: dict[str, int] = {}
        for r in all_rows:
            summary[r["type"]] = summary.get(r["type"], 0) + 1
        result: dict[str, Any] = {"detections": all_rows, "summary": dict(sorted(summary.items()))}
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.format == "table" and not found:
        out.write("no sensitive data found\n")
    return 1 if found else 0
