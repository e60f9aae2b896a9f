"""Lightweight per-request rows, collected per window and aggregated with pandas.

The per-span path only appends a few values to column lists; the window
statistics are computed once per closed window, in :mod:`enrichers.abuse.windows`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = ("ts", "ep", "client", "status", "dur", "size", "oid", "path", "uac", "auth", "trace")


class Rows:
    """Column lists of one window's requests."""

    __slots__ = COLUMNS

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.ep: list[str] = []
        self.client: list[str] = []
        self.status: list[int] = []
        self.dur: list[float] = []
        self.size: list[int] = []
        self.oid: list[str] = []
        self.path: list[str] = []
        self.uac: list[str] = []
        self.auth: list[int] = []
        self.trace: list[str] = []

    def __len__(self) -> int:
        return len(self.ts)

    def append(
        self, ts: int, ep: str, client: str, status: int, dur: float, size: int, oid: str,
        path: str, uac: str, auth: int, trace: str,
    ) -> None:
        self.ts.append(ts)
        self.ep.append(ep)
        self.client.append(client)
        self.status.append(status)
        self.dur.append(dur)
        self.size.append(size)
        self.oid.append(oid)
        self.path.append(path)
        self.uac.append(uac)
        self.auth.append(auth)
        self.trace.append(trace)

    def frame(self) -> pd.DataFrame:
        data: dict[str, Any] = {c: getattr(self, c) for c in COLUMNS}
        return pd.DataFrame(data)
