"""3 API inventory: every endpoint seen, sortable, filterable, with quick toggles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from tui.data import (
    LIFECYCLE_STYLE,
    Snapshot,
    auth_text,
    fmt_int,
    fmt_ms,
    is_unauthenticated,
    lifecycle_of,
    matches,
    num,
    sort_key,
    text_of,
)
from tui.screens.base import ApiwardScreen
from tui.widgets.live_table import LiveTable

COLUMNS = ("Service", "Method", "Route", "Calls", "Errors", "p95", "Auth", "Lifecycle", "Sensitive")
# the raw value each column sorts by
_SORT_FIELDS = ("service", "method", "route", "calls", "errors", "p95_ms", "auth",
                "lifecycle", "sensitive_types")  # fmt: skip


def endpoint_key(ep: dict[str, Any]) -> str:
    return f"{ep.get('service', '')}\x1f{ep.get('method', '')}\x1f{ep.get('route', '')}"


def endpoint_row(ep: dict[str, Any]) -> tuple[Any, ...]:
    badges = Text()
    for tag in lifecycle_of(ep):
        badges.append(f"{tag} ", style=LIFECYCLE_STYLE.get(tag, "bold"))
    errors = num(ep.get("errors"))
    sensitive = text_of(ep.get("sensitive_types") or [])
    auth = auth_text(ep.get("auth"))
    return (
        str(ep.get("service") or "?"),
        str(ep.get("method") or "?"),
        str(ep.get("route") or "?"),
        fmt_int(ep.get("calls")),
        Text(fmt_int(errors), style="red") if errors else "0",
        fmt_ms(ep.get("p95_ms")),
        Text(auth, style="bold yellow") if auth == "none" else auth,
        badges,
        Text(sensitive, style="magenta") if sensitive != "-" else "-",
    )


class InventoryScreen(ApiwardScreen):
    TITLE = "API inventory"
    VIEW = "inventory"

    BINDINGS = [
        Binding("enter", "open", "Open", show=False),
        Binding("s", "only('shadow')", "Only shadow"),
        Binding("u", "only('unauth')", "Only unauthenticated"),
        Binding("d", "only('sensitive')", "Only sensitive data"),
        Binding("o", "sort_next", "Sort column"),
        Binding("r", "sort_reverse", "Reverse sort"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.toggles: dict[str, bool] = {"shadow": False, "unauth": False, "sensitive": False}
        self.sort_column = 3  # calls
        self.sort_reverse = True
        self.rows: list[dict[str, Any]] = []
        self._seen: object = None

    def compose_body(self) -> Iterable[Any]:
        yield Input(placeholder="/ filter endpoints (service, route, auth, type…)", id="filter")
        yield Static(id="toggles")
        yield LiveTable(id="table")

    def on_mount(self) -> None:
        self.query_one(LiveTable).set_columns(COLUMNS)
        super().on_mount()
        self.query_one(LiveTable).focus()

    # ------------------------------------------------------------------ data

    def filtered_rows(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        query = self.query_one("#filter", Input).value
        out = []
        for ep in snapshot.inventory:
            if self.toggles["shadow"] and "shadow" not in lifecycle_of(ep):
                continue
            if self.toggles["unauth"] and not is_unauthenticated(ep):
                continue
            if self.toggles["sensitive"] and not ep.get("sensitive_types"):
                continue
            if query and not matches(
                (ep.get("service"), ep.get("method"), ep.get("route"), auth_text(ep.get("auth")),
                 text_of(ep.get("sensitive_types") or []), " ".join(lifecycle_of(ep))),
                query,
            ):  # fmt: skip
                continue
            out.append(ep)
        field = _SORT_FIELDS[self.sort_column]

        def key(ep: dict[str, Any]) -> Any:
            v = ep.get(field)
            if isinstance(v, (list, tuple)):
                v = ", ".join(map(str, v))
            return sort_key(v)

        out.sort(key=endpoint_key)  # stable tiebreak
        out.sort(key=key, reverse=self.sort_reverse)
        return out

    def show(self, snapshot: Snapshot, force: bool = False) -> None:
        if snapshot.inventory is self._seen and not force:
            return
        self._seen = snapshot.inventory
        self.rows = self.filtered_rows(snapshot)
        self.query_one(LiveTable).set_rows([(endpoint_key(ep), endpoint_row(ep)) for ep in self.rows])
        self._show_toggles(len(snapshot.inventory))

    def _show_toggles(self, total: int) -> None:
        text = Text()
        for key, name, label in (("s", "shadow", "shadow"), ("u", "unauth", "unauthenticated"),
                                 ("d", "sensitive", "sensitive data")):  # fmt: skip
            on = self.toggles[name]
            text.append(f" {key} ", style="reverse bold" if on else "reverse dim")
            text.append(f" {label}  ", style="bold" if on else "dim")
        arrow = "▼" if self.sort_reverse else "▲"
        text.append(f"sort {COLUMNS[self.sort_column]} {arrow}  ", style="dim")
        text.append(f"{fmt_int(len(self.rows))}/{fmt_int(total)} endpoints", style="dim")
        self.query_one("#toggles", Static).update(text)

    def refresh_view(self) -> None:
        self.show(self.api_app.snapshot, force=True)

    # ------------------------------------------------------------------ actions

    def on_input_changed(self, event: Input.Changed) -> None:
        self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one(LiveTable).focus()

    def action_only(self, name: str) -> None:
        self.toggles[name] = not self.toggles[name]
        self.refresh_view()

    def action_sort_next(self) -> None:
        self.sort_column = (self.sort_column + 1) % len(COLUMNS)
        self.refresh_view()

    def action_sort_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refresh_view()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.column_index == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = event.column_index, event.column_index >= 3
        self.refresh_view()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from tui.screens.endpoint import EndpointScreen

        table = self.query_one(LiveTable)
        key = table.selected_key
        ep = next((e for e in self.rows if endpoint_key(e) == key), None)
        if ep is not None:
            self.app.push_screen(EndpointScreen(ep))

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        rows = [
            [text_of(ep.get(f)) if isinstance(ep.get(f), (list, dict)) else ep.get(f)
             for f in _SORT_FIELDS]
            for ep in self.rows
        ]  # fmt: skip
        return list(_SORT_FIELDS), rows
