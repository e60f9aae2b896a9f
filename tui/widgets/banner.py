"""The connection banner shown on every screen while the agent cannot be reached."""

from __future__ import annotations

from textual.widgets import Static


class ConnectionBanner(Static):
    """Hidden while connected; a one-line red banner with the reason otherwise."""

    DEFAULT_CSS = """
    ConnectionBanner {
        display: none;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    ConnectionBanner.-shown { display: block; }
    """

    def show_problem(self, text: str) -> None:
        self.update(text)
        self.set_class(bool(text), "-shown")
