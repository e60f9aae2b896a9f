"""2 Service graph: the call graph as a layered drawing, a side panel with the
selected node's or edge's stats and findings, and a neighbourhood filter."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Static

from tui.data import (
    SEVERITY_RANK,
    SEVERITY_STYLE,
    VERDICT_STYLE,
    Snapshot,
    finding_involves,
    fmt_int,
    fmt_ms,
    fmt_share,
    severity_of,
    text_of,
)
from tui.graph_layout import KIND_TAG
from tui.redact import safe
from tui.screens.base import ApiwardScreen
from tui.widgets.graph_canvas import GraphCanvas

EXPORT_FIELDS = ("client", "server", "connection_type", "calls", "errors", "p50_ms", "p95_ms",
                 "p99_ms", "tls", "auth", "verdict")  # fmt: skip


def neighbourhood(
    nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]], centre: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``centre`` and the nodes one edge away from it, with the edges between them."""
    keep_edges = [e for e in edges if centre in (str(e["client"]), str(e["server"]))]
    ids = {centre} | {str(e["client"]) for e in keep_edges} | {str(e["server"]) for e in keep_edges}
    return [n for n in nodes if str(n["id"]) in ids], keep_edges


class GraphScreen(ApiwardScreen):
    TITLE = "Service graph"
    VIEW = "graph"

    BINDINGS = [
        Binding("f", "focus_node", "Neighbourhood"),
        Binding("c", "clear_filter", "All services", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.centre: str = ""
        self.node: str | None = None
        self.edge: dict[str, Any] | None = None

    def compose_body(self) -> Iterable[Any]:
        yield Input(placeholder="/ show one service's neighbourhood (Enter), Esc clears", id="filter")
        with Horizontal(id="split"):
            yield GraphCanvas(id="canvas")
            with VerticalScroll(id="side"):
                yield Static(id="panel")
        yield Static(id="legend")

    def on_mount(self) -> None:
        self.query_one("#side").border_title = "Selection"
        legend = Text(" edges: ")
        for verdict, style in VERDICT_STYLE.items():
            legend.append("── " + verdict + "  ", style=style)
        legend.append(" ↑↓←→ move  tab edges  f neighbourhood", style="dim")
        self.query_one("#legend", Static).update(legend)
        super().on_mount()
        self.query_one(GraphCanvas).focus()

    def show(self, snapshot: Snapshot) -> None:
        nodes, edges = snapshot.nodes, snapshot.edges
        if self.centre:
            known = {str(n["id"]) for n in nodes} | {str(e["client"]) for e in edges} | {
                str(e["server"]) for e in edges
            }
            if self.centre in known:
                nodes, edges = neighbourhood(nodes, edges, self.centre)
                if not any(str(n["id"]) == self.centre for n in nodes):
                    nodes = [*nodes, {"id": self.centre, "kind": "service"}]
        canvas = self.query_one(GraphCanvas)
        canvas.set_graph(nodes, edges)
        layout = canvas.layout_
        title = "Selection"
        if layout is not None and layout.omitted:
            title = f"{layout.omitted} quiet nodes hidden: / to focus"
        self.query_one("#side").border_title = title
        self._panel()

    def on_graph_canvas_selected(self, message: GraphCanvas.Selected) -> None:
        self.node, self.edge = message.node, message.edge
        self._panel()

    def _panel(self) -> None:
        snap = self.api_app.snapshot
        panel = self.query_one("#panel", Static)
        if self.edge is not None:
            panel.update(self._edge_panel(self.edge, snap))
        elif self.node is not None:
            panel.update(self._node_panel(self.node, snap))
        else:
            panel.update(Text("no services seen yet", style="dim"))

    def _node_panel(self, nid: str, snap: Snapshot) -> Group:
        kind = next((str(n.get("kind") or "service") for n in snap.nodes if n["id"] == nid),
                    "service")  # fmt: skip
        head = Text(nid, style="bold")
        head.append(f"  {KIND_TAG.get(kind, kind)}", style="dim")
        table = Table(box=None, pad_edge=False, expand=True, show_header=True)
        table.add_column("peer", no_wrap=True, ratio=1, overflow="ellipsis")
        table.add_column("calls", justify="right", no_wrap=True)
        table.add_column("err", justify="right", no_wrap=True)
        table.add_column("p95", justify="right", no_wrap=True)
        for e in snap.edges:
            if str(e["server"]) == nid:
                peer = "← " + str(e["client"])
            elif str(e["client"]) == nid:
                peer = "→ " + str(e["server"])
            else:
                continue
            style = VERDICT_STYLE.get(str(e.get("verdict") or "unknown"), "yellow")
            table.add_row(Text(peer, style=style), fmt_int(e.get("calls")),
                          fmt_share(e.get("errors"), e.get("calls")), fmt_ms(e.get("p95_ms")))
        return Group(head, table, Text(""), self._findings(snap, lambda f: finding_involves(f, nid)))

    def _edge_panel(self, e: dict[str, Any], snap: Snapshot) -> Group:
        verdict = str(e.get("verdict") or "unknown")
        head = Text(f"{e['client']} → {e['server']}", style="bold")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        grid.add_row("verdict", Text(verdict, style=VERDICT_STYLE.get(verdict, "yellow")))
        grid.add_row("type", str(e.get("connection_type") or "-"))
        grid.add_row("calls", fmt_int(e.get("calls")))
        grid.add_row("errors", f"{fmt_int(e.get('errors'))} ({fmt_share(e.get('errors'), e.get('calls'))})")
        grid.add_row("latency", f"p50 {fmt_ms(e.get('p50_ms'))}  p95 {fmt_ms(e.get('p95_ms'))}  "
                     f"p99 {fmt_ms(e.get('p99_ms'))}")  # fmt: skip
        grid.add_row("tls", text_of(e.get("tls")))
        grid.add_row("auth", safe(text_of(e.get("auth"))))

        def about(f: dict[str, Any]) -> bool:
            subj = f.get("subject")
            return isinstance(subj, dict) and (
                subj.get("client") == e["client"] and subj.get("server") == e["server"]
            )

        return Group(head, grid, Text(""), self._findings(snap, about))

    def _findings(self, snap: Snapshot, pred: Any) -> Text:
        found = sorted((f for f in snap.findings if pred(f)),
                       key=lambda f: SEVERITY_RANK[severity_of(f)])  # fmt: skip
        text = Text("Findings\n", style="bold")
        if not found:
            text.append("none", style="dim")
        for f in found[:15]:
            sev = severity_of(f)
            text.append(f"{sev:<9}", style=SEVERITY_STYLE[sev])
            text.append(safe(f.get("title") or f.get("rule") or "?") + "\n")
        return text

    # ------------------------------------------------------------------ filter

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._set_centre(event.value.strip())
        self.query_one(GraphCanvas).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if not event.value.strip() and self.centre:
            self._set_centre("")

    def _set_centre(self, value: str) -> None:
        snap = self.api_app.snapshot
        ids = sorted({str(n["id"]) for n in snap.nodes})
        if value and value not in ids:
            hits = [i for i in ids if value.lower() in i.lower()]
            if not hits:
                self.notify(f"No service matches '{value}'.", severity="warning")
                return
            value = hits[0]
        self.centre = value
        self.show(snap)
        if value:
            self.query_one(GraphCanvas).select(value)

    def action_focus_node(self) -> None:
        if self.centre:
            self.action_clear_filter()
        elif self.node:
            self.query_one("#filter", Input).value = self.node
            self._set_centre(self.node)

    def action_clear_filter(self) -> None:
        self.query_one("#filter", Input).value = ""
        self._set_centre("")

    def export_view(self) -> tuple[Sequence[str], Sequence[Sequence[Any]]]:
        canvas = self.query_one(GraphCanvas)
        edges = canvas.layout_.edges if canvas.layout_ else []
        rows = [[text_of(e.get(k)) if isinstance(e.get(k), (list, dict)) else e.get(k)
                 for k in EXPORT_FIELDS] for e in edges]  # fmt: skip
        return list(EXPORT_FIELDS), rows
