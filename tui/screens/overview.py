"""1 Overview: rates, counts, findings by severity and OWASP, top findings, health."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Label, Sparkline, Static

from tui.data import (
    SEVERITIES,
    SEVERITY_RANK,
    SEVERITY_STYLE,
    Snapshot,
    fmt_int,
    fmt_rate,
    num,
    severity_of,
)
from tui.redact import safe
from tui.screens.base import ApiwardScreen
from tui.screens.findings import subject_cell


def _bars(counts: Sequence[tuple[str, int, str]], width: int = 14) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, expand=True)
    table.add_column(no_wrap=True, ratio=3)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True, ratio=2, overflow="crop")
    top = max([n for _, n, _ in counts] + [1])
    for label, n, style in counts:
        bar = "█" * (round(n / top * width) if n else 0)
        table.add_row(Text(label, style=style), fmt_int(n), Text(bar, style=style))
    if not counts:
        table.add_row(Text("none", style="dim"), "", "")
    return table


def open_findings(findings: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in findings if not f.get("acknowledged") and not f.get("muted")]


class OverviewScreen(ApiwardScreen):
    TITLE = "Overview"
    VIEW = "overview"

    def compose_body(self) -> Iterable[Any]:
        with Horizontal(id="rates"):
            with Vertical(classes="rate"):
                yield Label("spans/s", id="spans-label")
                yield Sparkline([0.0], id="spans-spark")
            with Vertical(classes="rate"):
                yield Label("findings/s", id="findings-label")
                yield Sparkline([0.0], id="findings-spark")
        yield Static(id="counts")
        with Grid(id="panels"):
            yield Static(id="severity", classes="panel")
            yield Static(id="owasp", classes="panel")
            yield Static(id="health", classes="panel")
        yield Static(id="top", classes="panel")

    def on_mount(self) -> None:
        super().on_mount()
        titles = {
            "severity": "Findings by severity",
            "owasp": "By OWASP category",
            "health": "Collector health",
            "top": "Top open findings",
        }
        for wid, title in titles.items():
            self.query_one(f"#{wid}").border_title = title
        self.watch(self.app, "rates", self._show_rates, init=True)

    def _show_rates(self, rates: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
        spans, findings = rates
        self.query_one("#spans-spark", Sparkline).data = list(spans)
        self.query_one("#findings-spark", Sparkline).data = list(findings)
        self.query_one("#spans-label", Label).update(
            f"spans/s  [b]{fmt_rate(spans[-1] if spans else 0.0)}[/]"
        )
        self.query_one("#findings-label", Label).update(
            f"findings/s  [b]{fmt_rate(findings[-1] if findings else 0.0)}[/]"
        )

    def show(self, snapshot: Snapshot) -> None:
        stats = snapshot.stats
        findings = snapshot.findings
        open_ = open_findings(findings)
        counts = Text()
        for label, value in (
            ("services", len(stats.get("services") or []) or len(snapshot.nodes)),
            ("endpoints", len(snapshot.inventory)),
            ("edges", len(snapshot.edges)),
            ("findings", len(findings)),
            ("open", len(open_)),
            ("traces", len(snapshot.traces)),
        ):
            counts.append(f" {label} ", style="dim")
            counts.append(fmt_int(value), style="bold")
            counts.append("  ")
        if not snapshot.loaded:
            counts = Text(" waiting for the agent…", style="dim italic")
        self.query_one("#counts", Static).update(counts)

        by_sev = Counter(severity_of(f) for f in open_)
        self.query_one("#severity", Static).update(
            _bars([(s, by_sev.get(s, 0), SEVERITY_STYLE[s]) for s in SEVERITIES])
        )
        by_owasp = Counter(str(f.get("owasp") or "other") for f in open_)
        self.query_one("#owasp", Static).update(
            _bars([(k, n, "cyan") for k, n in sorted(by_owasp.items(), key=lambda kv: -kv[1])])
        )
        self.query_one("#health", Static).update(self._health(stats))

        # one row per incident (a request's findings at several hops), as on the findings screen
        top = sorted(
            open_findings(snapshot.incidents) if snapshot.incidents else open_,
            key=lambda f: (SEVERITY_RANK[severity_of(f)], -num(f.get("count"))),
        )[:12]
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column(no_wrap=True, width=8)
        table.add_column(no_wrap=True, ratio=2)
        table.add_column(no_wrap=True, ratio=3)
        table.add_column(justify="right", no_wrap=True)
        for f in top:
            sev = severity_of(f)
            table.add_row(
                Text(sev, style=SEVERITY_STYLE[sev]),
                safe(f.get("title") or f.get("rule") or "?"),
                subject_cell(f, style="dim"),
                f"×{fmt_int(f.get('count') or 1)}",
            )
        if not top:
            table.add_row("", Text("no open findings", style="dim"), "", "")
        self.query_one("#top", Static).update(table)

    def _health(self, stats: dict[str, Any]) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False, expand=True)
        table.add_column(no_wrap=True, style="dim")
        table.add_column(no_wrap=True, justify="right")
        by_source = stats.get("spans_by_source") or {}
        for src in ("otlp", "replay", "ebpf"):
            if src in by_source:
                table.add_row(f"spans {src}", fmt_int(by_source[src]))
        dropped = num(stats.get("spans_dropped"))
        table.add_row(
            "dropped", Text(fmt_int(dropped), style="bold red" if dropped else "green")
        )
        rejected = num(stats.get("spans_rejected"))
        if rejected:
            table.add_row("rejected", Text(fmt_int(rejected), style="yellow"))
        depth, cap = stats.get("queue_depth"), stats.get("queue_capacity")
        queue = fmt_int(depth) + (f"/{fmt_int(cap)}" if cap else "")
        table.add_row("queue", queue)
        edge = stats.get("edge_process")
        if isinstance(edge, dict):  # the OTLP receivers run in a process of their own
            restarts = num(edge.get("restarts"))
            table.add_row("receiver process", Text(
                f"{fmt_int(restarts)} restarts" if restarts else "up",
                style="yellow" if restarts else "green"))
        receivers = stats.get("receivers")
        if isinstance(receivers, dict):
            for name, state in receivers.items():
                table.add_row(str(name), str(state))
        ebpf = stats.get("ebpf")
        if ebpf is not None:
            state = ebpf.get("state", "on") if isinstance(ebpf, dict) else ebpf
            table.add_row("ebpf", "on" if state is True else "off" if not state else str(state))
        errors = stats.get("enricher_errors") or {}
        if errors:
            table.add_row("enricher errors", Text(fmt_int(sum(errors.values())), style="red"))
        return table

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        snap = self.api_app.snapshot
        rows: list[Sequence[Any]] = [
            (k, v) for k, v in snap.stats.items() if isinstance(v, (int, float, str))
        ]
        rows += [(f"open_{s}", n) for s, n in Counter(
            severity_of(f) for f in open_findings(snap.findings)).items()]  # fmt: skip
        return ["metric", "value"], rows
