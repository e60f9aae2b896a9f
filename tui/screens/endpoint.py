"""Enter on an inventory row: one endpoint's rates, latency, status mix, callers and findings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Sparkline, Static

from tui.client import ApiError
from tui.data import (
    SEVERITY_STYLE,
    auth_text,
    fmt_int,
    fmt_ms,
    fmt_share,
    lifecycle_of,
    num,
    severity_of,
    text_of,
)
from tui.messages import DetailLoaded
from tui.redact import safe

if TYPE_CHECKING:
    from tui.app import ApiwardApp

_LATENCY_KEYS = ("latency_p95_series", "p95_series", "latency_series", "latency_ms")
_RATE_KEYS = ("rate_series", "calls_series", "rate", "calls_per_interval")


def _series(data: dict[str, Any], keys: tuple[str, ...]) -> list[float]:
    for k in keys:
        v = data.get(k)
        if isinstance(v, list) and v:
            return [num(x[-1] if isinstance(x, (list, tuple)) else x) for x in v]
    return []


class EndpointScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    EndpointScreen { align: center middle; }
    EndpointScreen > Vertical {
        width: 90%; height: 90%; border: thick $accent; background: $surface; padding: 0 1;
    }
    EndpointScreen #sparks { height: 4; }
    EndpointScreen #sparks > Vertical { width: 1fr; padding-right: 2; }
    EndpointScreen Sparkline { height: 2; }
    """
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, endpoint: dict[str, Any]) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.detail: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        ep = self.endpoint
        with Vertical() as box:
            box.border_title = f"{ep.get('method', '?')} {ep.get('route', '?')}  ·  {ep.get('service', '?')}"
            box.border_subtitle = "Esc to close"
            with Horizontal(id="sparks"):
                with Vertical():
                    yield Label("latency p95", id="lat-label")
                    yield Sparkline([], id="latency")
                with Vertical():
                    yield Label("calls", id="rate-label")
                    yield Sparkline([], id="rate")
            with VerticalScroll():
                yield Static(id="body")

    def on_mount(self) -> None:
        self._render_body()
        self.load()

    @work(thread=True, exclusive=True)
    def load(self) -> None:
        ep = self.endpoint
        client = cast("ApiwardApp", self.app).client
        key = f"{ep.get('service')} {ep.get('method')} {ep.get('route')}"
        try:
            data = client.endpoint(
                str(ep.get("service", "")), str(ep.get("method", "")), str(ep.get("route", ""))
            )
            self.post_message(DetailLoaded("endpoint", key, data))
        except ApiError as err:
            self.post_message(DetailLoaded("endpoint", key, None, str(err)))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        self.detail = message.data or {}
        if message.error:
            self.notify(message.error, severity="warning")
        lat = _series(self.detail, _LATENCY_KEYS)
        rate = _series(self.detail, _RATE_KEYS)
        self.query_one("#latency", Sparkline).data = lat
        self.query_one("#rate", Sparkline).data = rate
        if lat:
            self.query_one("#lat-label", Label).update(f"latency p95  [b]{fmt_ms(lat[-1])}[/]")
        self._render_body()

    def _render_body(self) -> None:
        ep = {**self.endpoint, **{k: v for k, v in self.detail.items() if v not in (None, "")}}
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        calls = ep.get("calls")
        grid.add_row("calls", fmt_int(calls))
        grid.add_row("errors", f"{fmt_int(ep.get('errors'))} ({fmt_share(ep.get('errors'), calls)})")
        grid.add_row(
            "latency",
            "  ".join(
                f"{p} {fmt_ms(ep.get(p + '_ms'))}" for p in ("p50", "p95", "p99")
                if ep.get(p + "_ms") is not None
            ) or "-",
        )  # fmt: skip
        grid.add_row("auth seen", auth_text(ep.get("auth")))
        grid.add_row("lifecycle", " ".join(lifecycle_of(ep)) or "active")
        grid.add_row("sensitive", Text(safe(text_of(ep.get("sensitive_types") or [])), "magenta"))
        status = ep.get("status_codes") or ep.get("status_mix") or {}
        if isinstance(status, dict) and status:
            total = sum(num(v) for v in status.values()) or 1
            mix = Text()
            for code, n in sorted(status.items()):
                style = "red" if str(code).startswith("5") else (
                    "yellow" if str(code).startswith("4") else "green")  # fmt: skip
                mix.append(f"{code} {100 * num(n) / total:.0f}%  ", style=style)
            grid.add_row("status mix", mix)
        callers = ep.get("callers") or []
        if callers:
            names = [
                f"{c.get('client', '?')} ({fmt_int(c.get('calls'))})" if isinstance(c, dict)
                else str(c) for c in callers
            ]  # fmt: skip
            grid.add_row("callers", ", ".join(names))
        findings = self.detail.get("findings")
        if not isinstance(findings, list):
            snap = cast("ApiwardApp", self.app).snapshot
            findings = [
                f for f in snap.findings
                if isinstance(f.get("subject"), dict)
                and f["subject"].get("service") == ep.get("service")
                and f["subject"].get("route") in (None, "", ep.get("route"))
                and f["subject"].get("method") in (None, "", ep.get("method"))
            ]  # fmt: skip
        lines = Text()
        for f in findings[:20]:
            if not isinstance(f, dict):
                continue
            sev = severity_of(f)
            lines.append(f"{sev:<8}", style=SEVERITY_STYLE[sev])
            lines.append(safe(f.get("title") or f.get("rule") or "?") + "\n")
        grid.add_row("findings", lines if findings else Text("none", style="dim"))
        self.query_one("#body", Static).update(grid)
