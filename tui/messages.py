"""Small messages that carry live data from worker threads to the widgets."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.data import Snapshot


class SnapshotReady(Message):
    """A fresh, complete snapshot of what the agent reports."""

    def __init__(self, snapshot: Snapshot, spans_per_s: float, findings_per_s: float) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.spans_per_s = spans_per_s
        self.findings_per_s = findings_per_s


class ConnectionProblem(Message):
    """The agent could not be asked; ``text`` is the sentence for the banner."""

    def __init__(self, text: str, fatal: bool = False) -> None:
        super().__init__()
        self.text = text
        self.fatal = fatal


class DetailLoaded(Message):
    """A detail object (a trace, an endpoint) fetched for one screen."""

    def __init__(self, kind: str, key: str, data: dict[str, Any] | None, error: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.key = key
        self.data = data
        self.error = error
