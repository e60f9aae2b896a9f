"""The apiward terminal UI: routes screens and key bindings, nothing else.

Live data comes from :class:`tui.live.LiveFeed` on a worker thread as small
messages; the handlers here only set reactive attributes (``snapshot``,
``problem``, ``rates``) that the screens watch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from pathlib import Path

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from tui.client import ApiClient
from tui.data import Snapshot
from tui.live import LiveFeed
from tui.messages import ConnectionProblem, SnapshotReady
from tui.screens.findings import FindingsScreen
from tui.screens.graph import GraphScreen
from tui.screens.help import HelpScreen
from tui.screens.inventory import InventoryScreen
from tui.screens.overview import OverviewScreen
from tui.screens.traces import TracesScreen

RATE_SAMPLES = 60
SCREENS = (
    ("overview", "1", "Overview"),
    ("graph", "2", "Service graph"),
    ("inventory", "3", "API inventory"),
    ("findings", "4", "Findings"),
    ("traces", "5", "Traces"),
)


class ApiwardApp(App[int]):
    """``client`` is connected to an agent's query API (embedded or remote)."""

    CSS_PATH = "app.tcss"
    TITLE = "apiward"
    ENABLE_COMMAND_PALETTE = True
    MODES = {
        "overview": OverviewScreen,
        "graph": GraphScreen,
        "inventory": InventoryScreen,
        "findings": FindingsScreen,
        "traces": TracesScreen,
    }
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", title, show=False) for mode, key, title in SCREENS),
        Binding("question_mark", "help", "Keys"),
        Binding("t", "toggle_theme", "Theme", show=False),
        Binding("q", "quit", "Quit"),
    ]

    snapshot: reactive[Snapshot] = reactive(Snapshot, always_update=True)
    problem: reactive[str] = reactive("")
    rates: reactive[tuple[tuple[float, ...], tuple[float, ...]]] = reactive(
        ((0.0,) * RATE_SAMPLES, (0.0,) * RATE_SAMPLES)
    )

    def __init__(
        self,
        client: ApiClient,
        *,
        poll_interval: float = 1.0,
        export_dir: Path | None = None,
        theme: str | None = None,
        source: str = "",
        start_screen: str = "overview",
    ) -> None:
        super().__init__()
        self.client = client
        self.export_dir = export_dir or Path.cwd()
        self.feed = LiveFeed(client, self.post_message, poll_interval)
        self._spans: deque[float] = deque([0.0] * RATE_SAMPLES, maxlen=RATE_SAMPLES)
        self._findings: deque[float] = deque([0.0] * RATE_SAMPLES, maxlen=RATE_SAMPLES)
        self.start_screen = start_screen
        self.sub_title = source or client.base_url
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        self.switch_mode(self.start_screen)
        self.run_worker(self.feed.run, thread=True, name="live-feed", exit_on_error=False)

    def on_unmount(self) -> None:
        self.feed.stop()

    # ------------------------------------------------------------------ live data

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.problem = ""
        self._spans.append(message.spans_per_s)
        self._findings.append(message.findings_per_s)
        self.rates = (tuple(self._spans), tuple(self._findings))
        self.snapshot = message.snapshot

    def on_connection_problem(self, message: ConnectionProblem) -> None:
        self.problem = message.text

    def refresh_data(self) -> None:
        """Ask the feed for everything again now (thread-safe)."""
        self.feed.refresh()

    # ------------------------------------------------------------------ routing

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen, list(self.BINDINGS)))  # type: ignore[arg-type]

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, key, title in SCREENS:
            yield SystemCommand(
                f"Go to {title}", f"Show the {title} screen (key {key})",
                lambda mode=mode: self.switch_mode(mode),  # type: ignore[misc]
            )  # fmt: skip
        yield SystemCommand("Keys", "Show the key bindings of this screen", self.action_help)
        yield SystemCommand("Export view", "Export the current view to CSV or JSON",
                            lambda: self.screen.run_action("export"))  # fmt: skip
