"""4 Findings: one row per incident (a request's findings at several hops of a call
chain, shown at its root with the number of other hops), grouped by severity and
rule; the detail pane explains, lists the incident's hops, shows the evidence and the
evidence trace, and says how to fix. ``a`` acknowledges and ``m`` mutes the row's
finding, kept in the agent's state so every viewer sees it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Static

from tui.client import ApiError
from tui.data import (
    SEVERITY_RANK,
    SEVERITY_STYLE,
    Snapshot,
    fmt_int,
    hops_of,
    matches,
    num,
    severity_of,
    short_time,
    subject_label,
    text_of,
)
from tui.messages import DetailLoaded
from tui.redact import safe, safe_tree
from tui.screens.base import ApiwardScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.waterfall import Waterfall

COLUMNS = ("Sev", "Rule", "OWASP", "Subject", "Count", "Last seen", "State")
EXPORT_FIELDS = ("id", "severity", "rule", "owasp", "title", "subject_label", "count",
                 "first_seen", "last_seen", "acknowledged", "muted", "compliance",
                 "incident", "hops")  # fmt: skip


def group_key(f: dict[str, Any]) -> tuple[Any, ...]:
    return (SEVERITY_RANK[severity_of(f)], str(f.get("rule") or ""), -num(f.get("count")),
            str(f.get("id") or ""))  # fmt: skip


def state_of(f: dict[str, Any]) -> Text:
    if f.get("muted"):
        return Text("muted", style="dim")
    if f.get("acknowledged"):
        return Text("ack", style="green")
    return Text("open", style="bold")


def subject_cell(f: dict[str, Any], style: str = "") -> Text:
    """The subject of an incident's root, after the number of its other hops (first, so
    that a narrow column never cuts it off)."""
    n = len(hops_of(f))
    cell = Text(f"+{n} hop{'s' if n > 1 else ''} ", style="bold") if n else Text()
    cell.append(safe(subject_label(f)), style=style)
    return cell


def hops_table(f: dict[str, Any]) -> Table:
    """The other findings of the incident: rule (when another), subject, count, state."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column(no_wrap=True)
    for h in hops_of(f):
        sev = severity_of(h)
        label = Text(safe(subject_label(h)))
        if h.get("rule") != f.get("rule"):
            label = Text.assemble((f"{h.get('rule') or '?'} ", "bold"), label)
        grid.add_row(Text(sev, style=SEVERITY_STYLE[sev]), label, fmt_int(h.get("count") or 1), state_of(h))
    return grid


def evidence_table(evidence: Any) -> Table | Text:
    if not evidence:
        return Text("no evidence recorded", style="dim")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    items = evidence.items() if isinstance(evidence, dict) else enumerate(evidence)
    for k, v in items:
        grid.add_row(str(k), text_of(safe_tree(v)))
    return grid


class FindingsScreen(ApiwardScreen):
    TITLE = "Findings"
    VIEW = "findings"

    BINDINGS = [
        Binding("a", "flag('ack')", "Acknowledge"),
        Binding("m", "flag('mute')", "Mute"),
        Binding("h", "hide_closed", "Hide ack/muted"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._seen: object = None
        self.hide_closed = False
        self.current: dict[str, Any] | None = None
        self.trace_for: str | None = None

    def compose_body(self) -> Iterable[Any]:
        yield Input(placeholder="/ filter findings (rule, severity, service, OWASP…)", id="filter")
        with Horizontal(id="split"):
            yield LiveTable(id="table")
            with VerticalScroll(id="detail"):
                yield Static(id="about")
                yield Static("[b]Evidence trace[/]", id="trace-title")
                yield Waterfall(id="trace")
                yield Static(id="fix")

    def on_mount(self) -> None:
        self.query_one(LiveTable).set_columns(COLUMNS)
        self.query_one("#detail").border_title = "Detail"
        super().on_mount()
        self.query_one(LiveTable).focus()

    def filtered_rows(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        query = self.query_one("#filter", Input).value
        out = []
        for f in self.source(snapshot):
            if self.hide_closed and (f.get("acknowledged") or f.get("muted")):
                continue
            hops = hops_of(f)
            if query and not matches(
                (severity_of(f), f.get("rule"), f.get("owasp"), f.get("title"),
                 subject_label(f), text_of(f.get("compliance") or []), f.get("id"),
                 *(x for h in hops for x in (h.get("rule"), subject_label(h), h.get("id")))),
                query,
            ):  # fmt: skip
                continue
            out.append(f)
        out.sort(key=group_key)
        return out

    @staticmethod
    def source(snapshot: Snapshot) -> list[dict[str, Any]]:
        """The incident rows; the findings themselves when there are none (an agent
        without incidents answers the grouped query with the plain list as well)."""
        return snapshot.incidents or snapshot.findings

    def show(self, snapshot: Snapshot, force: bool = False) -> None:
        source = self.source(snapshot)
        if source is self._seen and not force:
            return
        self._seen = source
        self.rows = self.filtered_rows(snapshot)
        rows = []
        prev: tuple[str, str] | None = None
        for f in self.rows:
            sev, rule = severity_of(f), str(f.get("rule") or "?")
            same = prev == (sev, rule)
            prev = (sev, rule)
            rows.append((
                str(f.get("id") or id(f)),
                (
                    Text("" if same else sev, style=SEVERITY_STYLE[sev]),
                    Text("" if same else rule, style="bold"),
                    str(f.get("owasp") or "-"),
                    subject_cell(f),
                    fmt_int(f.get("count") or 1),
                    short_time(f.get("last_seen")),
                    state_of(f),
                ),
            ))  # fmt: skip
        self.query_one(LiveTable).set_rows(rows)
        self.query_one("#detail").border_subtitle = f"{len(self.rows)}/{len(source)}"
        self._show_selected()

    def refresh_view(self) -> None:
        self.show(self.api_app.snapshot, force=True)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(LiveTable).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.query_one("#detail").focus()

    def selected(self) -> dict[str, Any] | None:
        key = self.query_one(LiveTable).selected_key
        return next((f for f in self.rows if str(f.get("id") or id(f)) == key), None)

    # ------------------------------------------------------------------ detail

    def _show_selected(self) -> None:
        f = self.selected()
        self.current = f
        about = self.query_one("#about", Static)
        fix = self.query_one("#fix", Static)
        if f is None:
            about.update(Text("no finding selected", style="dim"))
            fix.update("")
            self.query_one(Waterfall).show_message("")
            return
        sev = severity_of(f)
        head = Text()
        head.append(f" {sev.upper()} ", style=SEVERITY_STYLE[sev] + " reverse")
        head.append(" " + safe(f.get("title") or f.get("rule") or "?"), style="bold")
        facts = Table.grid(padding=(0, 1))
        facts.add_column(style="dim", no_wrap=True)
        facts.add_column()
        facts.add_row("rule", str(f.get("rule") or "-"))
        facts.add_row("OWASP", str(f.get("owasp") or "-"))
        if f.get("compliance"):
            facts.add_row("compliance", text_of(f.get("compliance")))
        facts.add_row("subject", safe(subject_label(f)))
        facts.add_row("count", fmt_int(f.get("count") or 1))
        facts.add_row("first seen", short_time(f.get("first_seen")))
        facts.add_row("last seen", short_time(f.get("last_seen")))
        facts.add_row("state", state_of(f))
        facts.add_row("id", str(f.get("id") or "-"))
        hops = hops_of(f)
        if hops:
            facts.add_row("incident", f"{f.get('incident') or '-'} ({len(hops) + 1} findings)")
        explanation = Text(safe(f.get("explanation") or "No explanation given."))
        parts: list[Any] = [head, facts, Text(""), explanation]
        if hops:
            parts += [Text(""), Text(f"Other hops of this incident ({len(hops)})", style="bold"),
                      hops_table(f)]  # fmt: skip
        parts += [Text(""), Text("Evidence", style="bold"), evidence_table(f.get("evidence"))]
        about.update(Group(*parts))
        fix.update(
            Group(Text(""), Text("How to fix", style="bold"),
                  Text(safe(f.get("remediation") or "-")))  # fmt: skip
        )
        traces = [t for t in f.get("trace_ids") or [] if t]
        if not traces:
            self.trace_for = None
            self.query_one(Waterfall).show_message("no trace recorded for this finding")
        elif traces[0] != self.trace_for:
            self.trace_for = traces[0]
            self.query_one(Waterfall).show_message(f"loading trace {traces[0][:16]}…")
            self.load_trace(traces[0])

    @work(thread=True, exclusive=True, group="trace")
    def load_trace(self, trace_id: str) -> None:
        try:
            data = self.api_app.client.trace(trace_id)
            self.post_message(DetailLoaded("trace", trace_id, data))
        except ApiError as err:
            self.post_message(DetailLoaded("trace", trace_id, None, str(err)))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.kind != "trace" or message.key != self.trace_for:
            return
        waterfall = self.query_one(Waterfall)
        if message.data is None:
            waterfall.show_message(f"trace {message.key[:16]} is not kept any more")
            return
        spans = message.data.get("spans") or []
        highlight = set((self.current or {}).get("span_ids") or [])
        waterfall.show(spans, highlight)

    # ------------------------------------------------------------------ actions

    def action_flag(self, flag: str) -> None:
        f = self.selected()
        if f is None or not f.get("id"):
            return
        current = bool(f.get("acknowledged" if flag == "ack" else "muted"))
        self.set_flag(str(f["id"]), flag, not current)

    @work(thread=True, group="flags")
    def set_flag(self, fid: str, flag: str, value: bool) -> None:
        try:
            self.api_app.client.set_flag(fid, flag, value)
        except ApiError as err:
            self.app.call_from_thread(self.notify, str(err), severity="error")
            return
        word = {("ack", True): "Acknowledged", ("ack", False): "Reopened",
                ("mute", True): "Muted", ("mute", False): "Unmuted"}[(flag, value)]  # fmt: skip
        self.app.call_from_thread(self.notify, f"{word} finding {fid}")
        self.api_app.refresh_data()

    def action_hide_closed(self) -> None:
        self.hide_closed = not self.hide_closed
        self.refresh_view()

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        rows = []
        for f in self.rows:
            row = []
            for k in EXPORT_FIELDS:
                v = f.get(k)
                if k == "hops":
                    v = [f"{h.get('rule')}: {subject_label(h)}" for h in hops_of(f)]
                row.append(safe(text_of(v)) if isinstance(v, (list, dict, str)) else v)
            rows.append(row)
        return list(EXPORT_FIELDS), rows
