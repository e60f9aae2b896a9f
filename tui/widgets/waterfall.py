"""A trace drawn as a waterfall: the span tree on the left, timing bars on the right."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any

from rich.text import Text
from textual.widgets import Static

from tui.data import fmt_ms, num
from tui.redact import safe


def span_label(span: dict[str, Any]) -> str:
    method, route = span.get("http_method"), span.get("route")
    name = f"{method} {route}" if method and route else str(span.get("name") or "?")
    return f"{span.get('service') or '?'}: {safe(name)}"


def waterfall_text(
    spans: Sequence[dict[str, Any]], width: int, highlight: Collection[str] = ()
) -> Text:
    """Render ``spans`` (trace API shape) as tree lines with bars, ``width`` columns wide.

    Spans whose id is in ``highlight`` (the offending spans of a finding) are
    marked with a ``»`` and drawn in reverse.
    """
    if not spans:
        return Text("no spans", style="dim")
    ids = {str(s.get("span_id")) for s in spans}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in spans:
        parent = str(s.get("parent_span_id") or "")
        children[parent if parent in ids else ""].append(s)
    for kids in children.values():
        kids.sort(key=lambda s: num(s.get("start_ns")))
    t0 = min(num(s.get("start_ns")) for s in spans)
    t1 = max(num(s.get("end_ns")) for s in spans)
    total = max(t1 - t0, 1.0)
    rows: list[tuple[str, dict[str, Any]]] = []

    def walk(parent: str, prefix: str) -> None:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            branch = "" if parent == "" else ("└─" if last else "├─")
            rows.append((prefix + branch, s))
            sid = str(s.get("span_id"))
            if sid != parent and len(rows) < 2000:
                walk(sid, prefix + ("" if parent == "" else ("  " if last else "│ ")))

    walk("", "")
    label_w = max(18, min(width * 3 // 5, max(len(p) + len(span_label(s)) for p, s in rows) + 2))
    bar_w = max(10, width - label_w - 10)
    out = Text(no_wrap=True, overflow="ellipsis")
    for n, (prefix, s) in enumerate(rows):
        hot = str(s.get("span_id")) in highlight
        error = str(s.get("status") or "").lower() in ("error", "2") or (
            num(s.get("status_code")) >= 500
        )
        label = (prefix + span_label(s))[: label_w - 2]
        start = num(s.get("start_ns")) - t0
        dur = max(num(s.get("end_ns")) - num(s.get("start_ns")), 0.0)
        a = int(start / total * bar_w)
        b = max(a + 1, int((start + dur) / total * bar_w))
        style = "bold red" if error else ("bold magenta" if hot else "green")
        out.append("» " if hot else "  ", style="bold magenta")
        out.append(label.ljust(label_w - 2), style="reverse" if hot else None)
        out.append(" " * a)
        out.append("█" * (b - a), style=style)
        out.append(" " * (bar_w - b))
        out.append(f" {fmt_ms(dur / 1e6):>7}", style="dim")
        if n < len(rows) - 1:
            out.append("\n")
    return out


class Waterfall(Static):
    """Shows one trace; set :attr:`spans` and :attr:`highlight` via :meth:`show`."""

    DEFAULT_CSS = """
    Waterfall { height: auto; width: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self._spans: list[dict[str, Any]] = []
        self._highlight: frozenset[str] = frozenset()
        self._message = "select a trace"

    def show(self, spans: Sequence[dict[str, Any]], highlight: Collection[str] = ()) -> None:
        self._spans = list(spans)
        self._highlight = frozenset(highlight)
        self._render_now()

    def show_message(self, text: str) -> None:
        self._spans = []
        self._message = text
        self._render_now()

    def on_resize(self) -> None:
        self._render_now()

    def _render_now(self) -> None:
        if not self._spans:
            self.update(Text(self._message, style="dim"))
            return
        self.update(waterfall_text(self._spans, max(self.size.width, 40), self._highlight))
