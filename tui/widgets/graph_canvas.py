"""The service graph widget: a scrollable layered drawing with a keyboard cursor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.binding import Binding
from textual.containers import ScrollableContainer
from textual.geometry import Region
from textual.message import Message
from textual.widgets import Static

from tui.graph_layout import GraphLayout


class GraphCanvas(ScrollableContainer, can_focus=True):
    """Arrow keys move between nodes; tab walks the selected node's edges."""

    DEFAULT_CSS = """
    GraphCanvas { height: 1fr; width: 1fr; }
    GraphCanvas > #drawing { width: auto; height: auto; padding: 0 1; }
    """

    BINDINGS = [
        Binding("up,k", "move('up')", "Node up", show=False),
        Binding("down,j", "move('down')", "Node down", show=False),
        Binding("left,h", "move('left')", "Node left", show=False),
        Binding("right,l", "move('right')", "Node right", show=False),
        Binding("tab,]", "next_edge(1)", "Next edge"),
        Binding("shift+tab,[", "next_edge(-1)", "Prev edge", show=False),
    ]

    class Selected(Message):
        def __init__(self, node: str | None, edge: dict[str, Any] | None) -> None:
            super().__init__()
            self.node = node
            self.edge = edge

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layout_: GraphLayout | None = None
        self._sig: tuple[Any, ...] = ()
        self.node: str | None = None
        self.edge: int | None = None

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("", id="drawing")

    def set_graph(self, nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]]) -> None:
        sig = (
            tuple(sorted((str(n["id"]), str(n.get("kind"))) for n in nodes)),
            tuple(
                (str(e["client"]), str(e["server"]), e.get("calls"), e.get("errors"),
                 e.get("verdict"))
                for e in edges
            ),
        )  # fmt: skip
        if sig == self._sig and self.layout_ is not None:
            return
        self._sig = sig
        self.layout_ = GraphLayout(nodes, edges)
        order = self.layout_.order()
        if self.node not in self.layout_.boxes:
            self.node = order[0] if order else None
            self.edge = None
        if self.edge is not None and self.edge >= len(self.layout_.edges):
            self.edge = None
        self._draw()
        self._announce()

    def select(self, node: str | None) -> None:
        if self.layout_ and node in self.layout_.boxes:
            self.node, self.edge = node, None
            self._draw()
            self._announce()

    def action_move(self, direction: str) -> None:
        if not self.layout_:
            return
        self.node = self.layout_.neighbour(self.node, direction)
        self.edge = None
        self._draw()
        self._announce()

    def action_next_edge(self, step: int) -> None:
        if not self.layout_ or self.node is None:
            return
        mine = self.layout_.edges_of(self.node)
        if not mine:
            return
        if self.edge in mine:
            pos = mine.index(self.edge) + step
            self.edge = None if not 0 <= pos < len(mine) else mine[pos]
        else:
            self.edge = mine[0] if step > 0 else mine[-1]
        self._draw()
        self._announce()

    def _draw(self) -> None:
        drawing = self.query_one("#drawing", Static)
        if not self.layout_ or not self.layout_.boxes:
            drawing.update("no services seen yet")
            return
        drawing.update(self.layout_.render(self.node, self.edge))
        box = self.layout_.boxes.get(self.node or "")
        if box is not None:
            self.call_after_refresh(
                self.scroll_to_region, Region(box.x, box.y, box.w + 2, box.h), animate=False
            )

    def _announce(self) -> None:
        edge = None
        if self.layout_ is not None and self.edge is not None:
            edge = self.layout_.edges[self.edge]
        self.post_message(self.Selected(self.node, edge))
