"""The live feed: polls the query API on a worker thread and posts snapshots.

Polling is coalesced: stats are cheap and asked every interval; the big lists
(graph, inventory, findings, traces) are fetched again only when the stats say
something changed, or when the UI asks for a refresh (after acknowledging a
finding). A dropped connection becomes one :class:`ConnectionProblem` message
and the loop keeps trying, so the banner goes away by itself when the agent is
back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from textual.message import Message

from tui.client import ApiClient, ApiError, Unauthorized
from tui.data import Snapshot, num
from tui.messages import ConnectionProblem, SnapshotReady

# stats fields that change when something new was processed
_CHANGE_KEYS = ("spans_accepted", "spans_processed", "findings", "batches", "spans_received")


class LiveFeed:
    """Runs in a Textual thread worker; ``post`` is the app's ``post_message``."""

    def __init__(
        self, client: ApiClient, post: Callable[[Message], Any], interval: float = 1.0
    ) -> None:
        self.client = client
        self.post = post
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._force = True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def refresh(self) -> None:
        """Fetch everything again now (after a change made from this UI)."""
        self._force = True
        self._wake.set()

    def run(self) -> None:
        last_sig: tuple[Any, ...] | None = None
        last_stats: dict[str, Any] = {}
        last_t = 0.0
        snapshot = Snapshot()
        failing = False
        while not self._stop.is_set():
            try:
                stats = self.client.stats()
                now = time.monotonic()
                sig = tuple(stats.get(k) for k in _CHANGE_KEYS)
                if self._force or sig != last_sig or not snapshot.loaded:
                    self._force = False
                    snapshot = Snapshot(
                        stats=stats,
                        graph=self.client.graph(),
                        inventory=self.client.inventory(),
                        findings=self.client.findings(),
                        traces=self.client.traces(),
                        loaded=True,
                        incidents=self.client.findings(group="incident"),
                    )
                    last_sig = sig
                else:
                    snapshot = Snapshot(
                        stats, snapshot.graph, snapshot.inventory, snapshot.findings,
                        snapshot.traces, True, snapshot.incidents,
                    )  # fmt: skip
                dt = now - last_t if last_t else 0.0
                spans_rate = _rate(stats, last_stats, "spans_accepted", dt)
                findings_rate = _rate(stats, last_stats, "findings", dt)
                last_stats, last_t = stats, now
                failing = False
                self.post(SnapshotReady(snapshot, spans_rate, findings_rate))
            except Unauthorized as err:
                self.post(ConnectionProblem(str(err), fatal=True))
                failing = True
            except ApiError as err:
                if not failing:
                    last_t = 0.0
                failing = True
                self.post(ConnectionProblem(f"Disconnected. {err} Retrying every few seconds…"))
            except Exception as err:  # noqa: BLE001 - the worker must survive anything
                failing = True
                self.post(ConnectionProblem(f"Unexpected answer from the agent: {err!r}"))
            self._wake.wait(self.interval if not failing else max(self.interval, 2.0))
            self._wake.clear()


def _rate(stats: dict[str, Any], last: dict[str, Any], key: str, dt: float) -> float:
    if dt <= 0 or key not in last:
        return 0.0
    return max(0.0, (num(stats.get(key)) - num(last.get(key))) / dt)
