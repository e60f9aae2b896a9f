"""``?``: the key bindings of the screen the user is on."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def _key_label(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "escape": "Esc", "enter": "Enter"}
    return " ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 64; max-width: 95%; height: auto; max-height: 90%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, screen: Screen[object], global_bindings: list[Binding]) -> None:
        super().__init__()
        self.target = screen
        self.global_bindings = global_bindings

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, expand=True, pad_edge=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        seen: set[str] = set()
        rows: list[tuple[str, str]] = []
        sources: list[list[Binding]] = [self.target_bindings(), self.global_bindings]
        for group in sources:
            for b in group:
                if not isinstance(b, Binding) or not b.description or b.key in seen:
                    continue
                seen.add(b.key)
                rows.append((_key_label(b.key), b.description))
        for key, desc in rows:
            table.add_row(key, desc)
        title = getattr(self.target, "TITLE", None) or self.target.__class__.__name__
        with VerticalScroll() as scroll:
            scroll.border_title = f"Keys: {title}"
            scroll.border_subtitle = "Esc to close"
            yield Static(table)

    def target_bindings(self) -> list[Binding]:
        """The screen's own bindings and those of the focused widget and its parents
        (not the editing keys of an input box)."""
        from textual.widgets import Input

        out: list[Binding] = []
        nodes: list[object] = [self.target]
        focused = self.target.focused
        while focused is not None and focused is not self.target:
            if not isinstance(focused, Input):
                nodes.insert(0, focused)
            focused = focused.parent  # type: ignore[assignment]
        for node in nodes:
            for b in getattr(node, "BINDINGS", []):
                if isinstance(b, Binding):
                    out.append(b)
        return out
