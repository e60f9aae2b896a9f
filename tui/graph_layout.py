"""The service graph as a layered drawing made of terminal characters.

``grandalf`` (Sugiyama layering) decides which layer each node is in and where
it sits in that layer, including invisible "dummy" points that long edges pass
through. This module turns that into character boxes and orthogonal edges
(down, across, down) merged with box-drawing characters, an arrow head at the
server end and a small label with the call count and error share.

The layout is computed once per graph (:class:`GraphLayout`); drawing with a
different selection (:meth:`GraphLayout.render`) is cheap. No Textual here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from tui.data import VERDICT_STYLE, fmt_int, fmt_share, num

BOX_H = 3
GAP = 4  # rows between layers: exit, across, down, arrow+label
XSPACE = 4
MAX_LABEL = 26
MAX_NODES = 120

_U, _D, _L, _R = 1, 2, 4, 8
_LINE = {
    _U: "│", _D: "│", _U | _D: "│", _L: "─", _R: "─", _L | _R: "─",
    _D | _R: "┌", _D | _L: "┐", _U | _R: "└", _U | _L: "┘",
    _U | _D | _R: "├", _U | _D | _L: "┤", _D | _L | _R: "┬", _U | _L | _R: "┴",
    _U | _D | _L | _R: "┼",
}  # fmt: skip

# border characters per node kind: top-left, horizontal, top-right, vertical, bottom-left,
# bottom-right; and the tag written into the top border
_BORDERS = {
    "service": "┌─┐│└┘",
    "database": "╔═╗║╚╝",
    "external": "╭┄╮┆╰╯",
    "function": "┏━┓┃┗┛",
    "client": "╭─╮│╰╯",
    "ingress": "╭─╮│╰╯",
    "queue": "╔═╗║╚╝",
}
KIND_TAG = {
    "database": "db",
    "external": "ext",
    "function": "λ fn",
    "client": "client",
    "ingress": "ingress",
    "queue": "queue",
}
KIND_STYLE = {
    "service": "bold",
    "database": "bold blue",
    "external": "bold magenta",
    "function": "bold cyan",
    "client": "bold",
    "ingress": "bold",
    "queue": "bold blue",
}


@dataclass(slots=True)
class Box:
    id: str
    kind: str
    label: str
    x: int
    y: int
    w: int
    h: int = BOX_H

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2


@dataclass(slots=True)
class Route:
    """One drawn edge: the cells of its line and where its arrow and label go."""

    index: int
    client: str
    server: str
    cells: list[tuple[int, int, int]] = field(default_factory=list)  # x, y, mask
    arrow: tuple[int, int, str] | None = None
    label: str = ""
    style: str = ""


def edge_label(edge: dict[str, Any]) -> str:
    calls = edge.get("calls")
    rate = edge.get("rate") or edge.get("calls_per_s")
    head = f"{num(rate):.1f}/s" if rate else f"{fmt_int(calls)} calls"
    errors = num(edge.get("errors"))
    return f"{head} {fmt_share(errors, calls)} err" if errors else head


def edge_style(edge: dict[str, Any]) -> str:
    verdict = str(edge.get("verdict") or "unknown")
    return VERDICT_STYLE.get(verdict, "yellow")


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


class GraphLayout:
    """A layered drawing of ``nodes`` and ``edges`` (API graph shapes)."""

    def __init__(self, nodes: Sequence[dict[str, Any]], edges: Sequence[dict[str, Any]]) -> None:
        kinds = {str(n["id"]): str(n.get("kind") or "service") for n in nodes}
        for e in edges:  # edges may name nodes the node list forgot
            kinds.setdefault(str(e["client"]), "service")
            kinds.setdefault(str(e["server"]), "service")
        self.omitted = 0
        if len(kinds) > MAX_NODES:
            weight: dict[str, float] = defaultdict(float)
            for e in edges:
                weight[str(e["client"])] += num(e.get("calls")) + 1
                weight[str(e["server"])] += num(e.get("calls")) + 1
            keep = set(sorted(kinds, key=lambda k: (-weight[k], k))[:MAX_NODES])
            self.omitted = len(kinds) - len(keep)
            kinds = {k: v for k, v in kinds.items() if k in keep}
        self.edges = [
            e for e in edges if str(e["client"]) in kinds and str(e["server"]) in kinds
        ]
        self.boxes: dict[str, Box] = {}
        self.routes: list[Route] = []
        self.width = 0
        self.height = 0
        self._layout(kinds)

    # ------------------------------------------------------------------ layout

    def _layout(self, kinds: dict[str, str]) -> None:
        from grandalf.graphs import Edge as GEdge
        from grandalf.graphs import Graph, Vertex
        from grandalf.layouts import SugiyamaLayout

        class _View:
            def __init__(self, w: int, h: int) -> None:
                self.w, self.h, self.xy = w, h, (0.0, 0.0)

        verts: dict[str, Any] = {}
        for nid in sorted(kinds):
            v = Vertex(nid)
            label = _short(nid)
            tag = KIND_TAG.get(kinds[nid], "")
            v.view = _View(max(len(label) + 4, len(tag) + 6), BOX_H)
            verts[nid] = v
        gedges: list[tuple[int, Any]] = []
        for i, e in enumerate(self.edges):
            a, b = str(e["client"]), str(e["server"])
            if a != b:
                gedges.append((i, GEdge(verts[a], verts[b])))
        graph = Graph(list(verts.values()), [ge for _, ge in gedges])

        # lay out each connected component, then place them side by side
        centers: dict[str, tuple[float, float]] = {}
        dummies: dict[int, list[tuple[float, float]]] = {}
        layer_of: dict[str, int] = {}
        offset = 0.0
        edge_index = {id(ge): i for i, ge in gedges}
        for comp in sorted(graph.C, key=lambda c: -len(c.sV)):
            sug = SugiyamaLayout(comp)
            sug.xspace, sug.yspace = XSPACE, GAP
            sug.dw, sug.dh = 1, 1
            sug.init_all()
            sug.draw(4)
            xs = [v.view.xy[0] - v.view.w / 2 for v in comp.sV] + [0.0]
            xe = [v.view.xy[0] + v.view.w / 2 for v in comp.sV] + [0.0]
            for r, layer in enumerate(sug.layers):
                for v in layer:
                    if hasattr(v, "data"):
                        layer_of[v.data] = r
            for ctrl in sug.ctrls.values():
                for d in ctrl.values():
                    xs.append(d.view.xy[0])
                    xe.append(d.view.xy[0])
            left = min(xs)
            for v in comp.sV:
                centers[v.data] = (v.view.xy[0] - left + offset, v.view.xy[1])
            for ge, ctrl in sug.ctrls.items():
                found = edge_index.get(id(ge))
                if found is None:
                    continue
                pts = [
                    (d.view.xy[0] - left + offset, d.view.xy[1])
                    for rank, d in sorted(ctrl.items())
                    if not hasattr(d, "data")
                ]
                dummies[found] = pts
            offset += max(xe) - left + XSPACE * 2

        for nid, (cx, _cy) in centers.items():
            w = verts[nid].view.w
            r = layer_of.get(nid, 0)
            self.boxes[nid] = Box(
                nid, kinds[nid], _short(nid), max(0, round(cx - w / 2)), r * (BOX_H + GAP), w
            )
        self._route(dummies)
        self.width = max([b.x + b.w for b in self.boxes.values()] + [1]) + 14
        self.height = max([b.y + b.h for b in self.boxes.values()] + [1])

    def _route(self, dummies: dict[int, list[tuple[float, float]]]) -> None:
        # spread exits along the bottom of a box and entries along the top
        outs: dict[str, list[int]] = defaultdict(list)
        ins: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(self.edges):
            a, b = self.boxes[str(e["client"])], self.boxes[str(e["server"])]
            if a.id == b.id:
                continue
            upper, lower = (a, b) if a.y <= b.y else (b, a)
            outs[upper.id].append(i)
            ins[lower.id].append(i)
        port: dict[tuple[str, int], int] = {}
        for table in (outs, ins):
            for nid, idxs in table.items():
                box = self.boxes[nid]
                idxs.sort(key=lambda i: self._other_x(i, nid))
                for k, i in enumerate(idxs):
                    port[(nid, i)] = box.x + 1 + (k + 1) * (box.w - 2) // (len(idxs) + 1)

        for i, e in enumerate(self.edges):
            a, b = self.boxes[str(e["client"])], self.boxes[str(e["server"])]
            route = Route(i, a.id, b.id, label=edge_label(e), style=edge_style(e))
            self.routes.append(route)
            if a.id == b.id:
                continue
            upper, lower = (a, b) if a.y <= b.y else (b, a)
            pts = [(port[(upper.id, i)], upper.y + BOX_H)]
            for dx, dy in dummies.get(i, []):
                layer_top = round(dy - 0.5) // (BOX_H + GAP) * (BOX_H + GAP)
                pts.append((round(dx), layer_top))
            pts.append((port[(lower.id, i)], lower.y))
            # pts: (x, top row of its layer); the first is the upper box's exit row
            pts[0] = (pts[0][0], upper.y)
            cells: dict[tuple[int, int], int] = defaultdict(int)
            last = len(pts) - 1
            for k in range(last):
                (x1, t1), (x2, t2) = pts[k], pts[k + 1]
                exit_row = t1 + BOX_H
                _vline(cells, x1, exit_row if k == 0 else t1, exit_row + 1)
                _hline(cells, exit_row + 1, x1, x2)
                _vline(cells, x2, exit_row + 1, t2 - 1 if k + 1 == last else t2)
            cells[(pts[0][0], upper.y + BOX_H)] |= _U
            route.cells = [(x, y, m) for (x, y), m in cells.items()]
            if lower is b:
                route.arrow = (pts[-1][0], pts[-1][1] - 1, "▼")
            else:
                route.arrow = (pts[0][0], upper.y + BOX_H, "▲")

    def _other_x(self, i: int, nid: str) -> float:
        e = self.edges[i]
        other = str(e["server"]) if str(e["client"]) == nid else str(e["client"])
        return self.boxes[other].cx

    # ------------------------------------------------------------------ queries

    def order(self) -> list[str]:
        """Node ids in reading order (by layer, then left to right)."""
        return [b.id for b in sorted(self.boxes.values(), key=lambda b: (b.y, b.x))]

    def neighbour(self, nid: str | None, direction: str) -> str | None:
        """The nearest node from ``nid`` in ``direction`` (up, down, left, right)."""
        order = self.order()
        if not order:
            return None
        if nid not in self.boxes:
            return order[0]
        me = self.boxes[nid]
        best: tuple[float, str] | None = None
        for b in self.boxes.values():
            if b.id == nid:
                continue
            dx, dy = b.cx - me.cx, b.cy - me.cy
            ok = {
                "up": dy < 0,
                "down": dy > 0,
                "left": dx < 0 and abs(dy) < 1,
                "right": dx > 0 and abs(dy) < 1,
            }[direction]
            if not ok:
                continue
            dist = abs(dx) + abs(dy) * 4 if direction in ("up", "down") else abs(dx)
            if best is None or dist < best[0]:
                best = (dist, b.id)
        return best[1] if best else nid

    def edges_of(self, nid: str) -> list[int]:
        return [
            i
            for i, e in enumerate(self.edges)
            if str(e["client"]) == nid or str(e["server"]) == nid
        ]

    # ------------------------------------------------------------------ drawing

    def render(self, selected: str | None = None, selected_edge: int | None = None) -> Text:
        w, h = self.width, self.height
        chars = [[" "] * w for _ in range(h)]
        styles: list[list[str]] = [[""] * w for _ in range(h)]
        masks: dict[tuple[int, int], int] = defaultdict(int)
        cell_style: dict[tuple[int, int], str] = {}
        # draw the selected edge last so its colour wins where lines overlap
        routes = sorted(self.routes, key=lambda r: r.index == selected_edge)
        for r in routes:
            hot = r.index == selected_edge
            for x, y, m in r.cells:
                masks[(x, y)] |= m
                cell_style[(x, y)] = f"{r.style} reverse" if hot else r.style
        for (x, y), m in masks.items():
            if 0 <= y < h and 0 <= x < w:
                chars[y][x] = _LINE.get(m, "┼")
                styles[y][x] = cell_style[(x, y)]
        for b in self.boxes.values():
            self._draw_box(chars, styles, b, b.id == selected)
        for r in routes:
            if r.arrow is None:
                continue
            x, y, ch = r.arrow
            if 0 <= y < h and 0 <= x < w:
                chars[y][x] = ch
                styles[y][x] = r.style + (" reverse" if r.index == selected_edge else "")
            label = " " + r.label
            if ch == "▼" and all(
                0 <= x + 1 + k < w and chars[y][x + 1 + k] == " " for k in range(len(label) + 1)
            ):
                for k, c in enumerate(label):
                    chars[y][x + 1 + k] = c
                    styles[y][x + 1 + k] = r.style if r.index == selected_edge else "dim"
        text = Text(no_wrap=True, overflow="crop")
        for y in range(h):
            row, srow = chars[y], styles[y]
            start = 0
            for x in range(1, w + 1):
                if x == w or srow[x] != srow[start]:
                    text.append("".join(row[start:x]), style=srow[start] or None)
                    start = x
            if y < h - 1:
                text.append("\n")
        text.rstrip()
        return text

    def _draw_box(self, chars: list[list[str]], styles: list[list[str]], b: Box, hot: bool) -> None:
        tl, hz, tr, vt, bl, br = tuple(_BORDERS.get(b.kind, _BORDERS["service"]))
        style = KIND_STYLE.get(b.kind, "bold")
        if hot:
            style = f"{style} reverse"
        top = tl + hz * (b.w - 2) + tr
        tag = KIND_TAG.get(b.kind)
        if tag:
            top = tl + hz + f" {tag} " + hz * (b.w - 5 - len(tag)) + tr
        mid = vt + b.label.center(b.w - 2) + vt
        bottom = bl + hz * (b.w - 2) + br
        for dy, line in enumerate((top, mid, bottom)):
            y = b.y + dy
            for dx, c in enumerate(line):
                x = b.x + dx
                if 0 <= y < len(chars) and 0 <= x < len(chars[0]):
                    chars[y][x] = c
                    styles[y][x] = style


def _vline(cells: dict[tuple[int, int], int], x: int, y1: int, y2: int) -> None:
    lo, hi = sorted((y1, y2))
    for y in range(lo, hi):
        cells[(x, y)] |= _D
        cells[(x, y + 1)] |= _U


def _hline(cells: dict[tuple[int, int], int], y: int, x1: int, x2: int) -> None:
    lo, hi = sorted((x1, x2))
    for x in range(lo, hi):
        cells[(x, y)] |= _R
        cells[(x + 1, y)] |= _L
