"""A DataTable that takes whole new row sets and keeps the user's place.

Live updates replace every row many times a minute. Rebuilding a table would
move the cursor and the scroll position, so :meth:`LiveTable.set_rows` updates
only the cells that changed when the rows are the same ones in the same order,
and otherwise rebuilds and puts the cursor back on the row with the same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

Row = tuple[str, Sequence[Any]]


class LiveTable(DataTable[Any]):
    DEFAULT_CSS = """
    LiveTable { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._keys: list[str] = []
        self._cells: dict[str, tuple[Any, ...]] = {}
        self._columns: list[str] = []

    def set_columns(self, labels: Sequence[str]) -> None:
        if list(labels) == self._columns:
            return
        self.clear(columns=True)
        self._keys, self._cells = [], {}
        self._columns = list(labels)
        for label in labels:
            self.add_column(label, key=label)

    @property
    def selected_key(self) -> str | None:
        if not self._keys or not (0 <= self.cursor_row < len(self._keys)):
            return None
        return self._keys[self.cursor_row]

    def set_rows(self, rows: Sequence[Row]) -> None:
        keys = [k for k, _ in rows]
        if keys == self._keys:
            for key, cells in rows:
                new = tuple(cells)
                old = self._cells.get(key)
                if new != old:
                    for col, value in zip(self._columns, new, strict=False):
                        if old is None or value != old[self._columns.index(col)]:
                            self.update_cell(key, col, value)
                    self._cells[key] = new
            return
        selected = self.selected_key
        scroll_y = self.scroll_y
        self.clear()
        self._keys = keys
        self._cells = {k: tuple(c) for k, c in rows}
        self.add_rows_keyed(rows)
        if selected is not None:
            try:
                index = self.get_row_index(selected)
            except RowDoesNotExist:
                index = min(self.cursor_row, max(0, len(keys) - 1))
            self.move_cursor(row=index, animate=False, scroll=False)
        self.scroll_to(y=scroll_y, animate=False, immediate=True)

    def add_rows_keyed(self, rows: Sequence[Row]) -> None:
        for key, cells in rows:
            self.add_row(*cells, key=key)
