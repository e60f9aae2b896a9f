"""What every main screen shares: header, connection banner, footer, search,
export and the hook through which new snapshots arrive."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from tui.data import Snapshot, export_rows
from tui.widgets.banner import ConnectionBanner

if TYPE_CHECKING:
    from tui.app import ApiwardApp


class ApiwardScreen(Screen[None]):
    """A main screen. Subclasses implement :meth:`compose_body`, :meth:`show`
    and :meth:`export_view`."""

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("e", "export", "Export"),
        Binding("escape", "leave_search", "Back", show=False),
    ]
    VIEW = "view"

    @property
    def api_app(self) -> ApiwardApp:
        return cast("ApiwardApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◆")
        yield ConnectionBanner()
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> Iterable[Any]:  # pragma: no cover - overridden
        return []

    def on_mount(self) -> None:
        self.watch(self.app, "problem", self._show_problem, init=True)
        self.watch(self.app, "snapshot", self._on_snapshot, init=True)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        self.show(snapshot)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 120, "-narrow")

    def _show_problem(self, text: str) -> None:
        self.query_one(ConnectionBanner).show_problem(text)

    def show(self, snapshot: Snapshot) -> None:  # pragma: no cover - overridden
        pass

    # ------------------------------------------------------------------ search

    def action_search(self) -> None:
        inputs = self.query(Input)
        if inputs:
            inputs.first().focus()
        else:
            self.notify("Nothing to search on this screen.", severity="warning")

    def action_leave_search(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            if focused.value:
                focused.value = ""
            else:
                self.focus_next()

    # ------------------------------------------------------------------ export

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        return [], []

    def action_export(self) -> None:
        from tui.screens.export import ExportScreen

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        default = self.api_app.export_dir / f"apiward-{self.VIEW}-{stamp}.csv"
        self.app.push_screen(ExportScreen(default), self._export_to)

    def _export_to(self, path: Path | None) -> None:
        if path is None:
            return
        columns, rows = self.export_view()
        try:
            n = export_rows(path, columns, rows)
        except OSError as err:
            self.notify(f"Could not write {path}: {err.strerror or err}.", severity="error")
            return
        self.notify(f"Exported {n} rows to {path}")
