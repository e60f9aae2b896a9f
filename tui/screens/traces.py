"""5 Traces: recent traces, searchable by service, route, status and trace id,
with the selected one drawn as a waterfall."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input

from tui.client import ApiError
from tui.data import Snapshot, fmt_ms, matches, num, short_time
from tui.messages import DetailLoaded
from tui.redact import safe
from tui.screens.base import ApiwardScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.waterfall import Waterfall

COLUMNS = ("Trace", "Service", "Root", "Start", "Duration", "Status", "Spans")
EXPORT_FIELDS = ("trace_id", "root_service", "root_name", "start", "duration_ms", "status",
                 "span_count")  # fmt: skip


def is_error(t: dict[str, Any]) -> bool:
    return str(t.get("status") or "").lower() in ("error", "2") or num(t.get("status_code")) >= 500


class TracesScreen(ApiwardScreen):
    TITLE = "Traces"
    VIEW = "traces"

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self.trace_for: str | None = None
        self._seen: object = None

    def compose_body(self) -> Iterable[Any]:
        yield Input(placeholder="/ search traces (service, route, status, trace id)", id="filter")
        with Horizontal(id="split"):
            yield LiveTable(id="table")
            with VerticalScroll(id="detail"):
                yield Waterfall(id="trace")

    def on_mount(self) -> None:
        self.query_one(LiveTable).set_columns(COLUMNS)
        self.query_one("#detail").border_title = "Waterfall"
        super().on_mount()
        self.query_one(LiveTable).focus()

    def filtered_rows(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        query = self.query_one("#filter", Input).value
        out = [
            t for t in snapshot.traces
            if not query or matches(
                (t.get("trace_id"), t.get("root_service"), t.get("root_name"), t.get("status"),
                 "error" if is_error(t) else "ok",
                 " ".join(str(s.get("service", "")) + " " + str(s.get("route") or "")
                          for s in t.get("spans") or [] if isinstance(s, dict))),
                query,
            )
        ]  # fmt: skip
        out.sort(key=lambda t: str(t.get("start") or ""), reverse=True)
        return out

    def show(self, snapshot: Snapshot, force: bool = False) -> None:
        if snapshot.traces is self._seen and not force:
            return
        self._seen = snapshot.traces
        self.rows = self.filtered_rows(snapshot)
        rows = []
        for t in self.rows:
            status = str(t.get("status") or "-")
            rows.append((
                str(t.get("trace_id") or id(t)),
                (
                    str(t.get("trace_id") or "?")[:12],
                    str(t.get("root_service") or "?"),
                    safe(t.get("root_name") or "?"),
                    short_time(t.get("start")),
                    fmt_ms(t.get("duration_ms")),
                    Text(status, style="bold red" if is_error(t) else "green"),
                    str(t.get("span_count") or len(t.get("spans") or [])),
                ),
            ))  # fmt: skip
        self.query_one(LiveTable).set_rows(rows)
        sub = f"{len(self.rows)}/{len(snapshot.traces)}"
        share = (snapshot.stats.get("traces") or {}).get("admitted_share", 1)
        if isinstance(share, (int, float)) and share < 1:  # busy: the store keeps a sample
            sub += f" · keeping {share:.0%} of new traces"
        self.query_one("#detail").border_subtitle = sub
        self._show_selected()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show(self.api_app.snapshot, force=True)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(LiveTable).focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_selected()

    def _show_selected(self) -> None:
        key = self.query_one(LiveTable).selected_key
        t = next((t for t in self.rows if str(t.get("trace_id")) == key), None)
        waterfall = self.query_one(Waterfall)
        if t is None:
            self.trace_for = None
            waterfall.show_message("no trace selected")
            return
        if key == self.trace_for:
            return
        self.trace_for = key
        spans = t.get("spans")
        if isinstance(spans, list) and spans and all("start_ns" in s for s in spans):
            waterfall.show(spans)
        else:
            waterfall.show_message("loading…")
            self.load_trace(str(key))

    @work(thread=True, exclusive=True, group="trace")
    def load_trace(self, trace_id: str) -> None:
        try:
            self.post_message(DetailLoaded("trace", trace_id, self.api_app.client.trace(trace_id)))
        except ApiError as err:
            self.post_message(DetailLoaded("trace", trace_id, None, str(err)))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        if message.kind == "trace" and message.key == self.trace_for:
            if message.data is None:
                self.query_one(Waterfall).show_message(message.error or "trace not found")
            else:
                self.query_one(Waterfall).show(message.data.get("spans") or [])

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        return list(EXPORT_FIELDS), [[t.get(k) for k in EXPORT_FIELDS] for t in self.rows]
