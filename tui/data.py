"""Pure helpers the screens share: the snapshot of what the agent reported,
formatting, filtering and export. No Textual here, so it is cheap to test.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
VERDICT_STYLE = {"allowed": "green", "violation": "bold red", "unknown": "yellow"}
LIFECYCLE_STYLE = {
    "new": "bold green",
    "shadow": "bold magenta",
    "zombie": "bold red",
    "dormant": "dim",
}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the UI shows, fetched in one go from the query API."""

    stats: dict[str, Any] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)
    inventory: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)
    traces: list[dict[str, Any]] = field(default_factory=list)
    loaded: bool = False
    #: one row per incident (``findings?group=incident``): its root finding with ``hops``
    incidents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.graph.get("nodes") or [] if isinstance(n, dict) and "id" in n]

    @property
    def edges(self) -> list[dict[str, Any]]:
        return [
            e
            for e in self.graph.get("edges") or []
            if isinstance(e, dict) and e.get("client") is not None and e.get("server") is not None
        ]


# ------------------------------------------------------------------ formatting


def num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def fmt_int(v: Any) -> str:
    n = num(v)
    if n >= 10_000_000:
        return f"{n / 1e6:.0f}M"
    if n >= 100_000:
        return f"{n / 1e3:.0f}k"
    return f"{int(n):,}"


def fmt_ms(v: Any) -> str:
    if v is None or v == "":
        return "-"
    n = num(v)
    if n >= 10_000:
        return f"{n / 1000:.1f}s"
    if n >= 100:
        return f"{n:.0f}ms"
    return f"{n:.1f}ms"


def fmt_rate(v: float) -> str:
    return f"{v:,.1f}/s" if v < 1000 else f"{v / 1000:,.1f}k/s"


def fmt_share(part: Any, whole: Any) -> str:
    w = num(whole)
    return f"{100 * num(part) / w:.1f}%" if w else "0%"


def short_time(iso: Any) -> str:
    """``2024-05-01T12:03:04.123Z`` -> ``05-01 12:03:04``; anything else as text."""
    if not isinstance(iso, str) or "T" not in iso:
        return "-" if not iso else str(iso)
    date, _, rest = iso.partition("T")
    return f"{date[5:]} {rest[:8]}"


def text_of(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (list, tuple, set)):
        return ", ".join(str(x) for x in v) if v else "-"
    if isinstance(v, dict):
        return ", ".join(f"{k}={v2}" for k, v2 in v.items()) if v else "-"
    return str(v)


def auth_text(v: Any) -> str:
    """The inventory's ``auth`` field: a bool, a list of schemes, or a word."""
    if v is None or v == "" or v == []:
        return "none"
    if v is True:
        return "yes"
    if v is False:
        return "none"
    return text_of(v)


def is_unauthenticated(ep: dict[str, Any]) -> bool:
    return auth_text(ep.get("auth")) in ("none", "no", "unknown", "-")


def lifecycle_of(ep: dict[str, Any]) -> list[str]:
    v = ep.get("lifecycle")
    if isinstance(v, str):
        return [v] if v and v != "active" else []
    if isinstance(v, (list, tuple)):
        return [str(x) for x in v]
    return []


def severity_of(f: dict[str, Any]) -> str:
    s = str(f.get("severity") or "info").lower()
    return s if s in SEVERITY_RANK else "info"


def subject_label(f: dict[str, Any]) -> str:
    label = f.get("subject_label")
    if label:
        return str(label)
    subj = f.get("subject")
    return text_of(subj) if subj else "-"


def hops_of(f: dict[str, Any]) -> list[dict[str, Any]]:
    """The other findings of an incident row (``[]`` for a lone finding)."""
    hops = f.get("hops")
    return [h for h in hops if isinstance(h, dict)] if isinstance(hops, list) else []


def finding_involves(f: dict[str, Any], service: str) -> bool:
    subj = f.get("subject")
    if isinstance(subj, dict):
        return service in (subj.get("service"), subj.get("client"), subj.get("server"))
    return service in subject_label(f).split()


def matches(haystack: Iterable[Any], query: str) -> bool:
    """Every whitespace-separated word of ``query`` occurs in one of the fields."""
    words = query.lower().split()
    if not words:
        return True
    text = " ".join(str(x) for x in haystack).lower()
    return all(w in text for w in words)


def sort_key(value: Any) -> tuple[int, Any]:
    """A key that sorts numbers numerically, text case-insensitively, missing last."""
    if value is None or value == "-":
        return (2, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (0, value)
    try:
        return (0, float(str(value).replace(",", "").rstrip("%")))
    except ValueError:
        return (1, str(value).lower())


# ------------------------------------------------------------------ export


def export_rows(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write ``rows`` to ``path`` as JSON (``.json``) or CSV (anything else).

    Returns the number of rows written.
    """
    data = [list(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        records = [dict(zip(columns, r, strict=False)) for r in data]
        path.write_text(json.dumps(records, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(data)
    return len(data)
