"""Lightweight per-request rows, collected per window and aggregated once per window.

The per-span path appends one plain tuple (:data:`ROW`) to the open window's
list: no dict, no object per span. Every :data:`CHUNK` rows the list is
compacted into numpy columns (shared strings for endpoint and client, the
numbers as machine integers, trace ids kept only for the first few requests
of each endpoint and client), so a busy window holds ~100 bytes per request
rather than a tuple of Python objects. The window statistics are computed
once per closed window, in :mod:`enrichers.abuse.windows`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("ts", "ep", "client", "status", "dur", "size", "oid", "uac", "auth", "trace")
#: (start ns, end ns, endpoint key, client, status, response size or None, object id,
#: user-agent class, credentials 1/0/-1, trace id). Only atomic values: the garbage
#: collector untracks such tuples, so a window of them costs it nothing to traverse.
ROW = tuple[int, int, str, str, int, "int | None", str, str, int, str]
#: Rows per compacted chunk.
CHUNK = 32_768
#: Trace ids kept per endpoint and client in a chunk (samples for findings).
TRACES_PER_GROUP = 5


class Rows:
    """The requests of one open window: a list of tuples plus compacted chunks."""

    __slots__ = ("items", "chunks", "compacted")

    def __init__(self) -> None:
        self.items: list[ROW] = []
        self.chunks: list[dict[str, np.ndarray]] = []
        self.compacted = 0

    def __len__(self) -> int:
        return len(self.items) + self.compacted

    def compact(self) -> None:
        """Turn the pending tuples into one chunk of columns."""
        if self.items:
            self.chunks.append(_columns(self.items))
            self.compacted += len(self.items)
            self.items = []

    def frame(self) -> pd.DataFrame:
        self.compact()
        if not self.chunks:
            return pd.DataFrame({c: [] for c in COLUMNS})
        if len(self.chunks) == 1:
            data: dict[str, Any] = self.chunks[0]
        else:
            data = {c: np.concatenate([ch[c] for ch in self.chunks]) for c in COLUMNS}
        return pd.DataFrame(data, copy=False)


def _columns(items: list[ROW]) -> dict[str, np.ndarray]:
    # One list per column by index, not ``zip(*items)``: that makes one tuple iterator per
    # row (32k GC-tracked objects), which in the loaded agent sets off young collections over
    # everything else alive; py-spy showed this line at ~8x the time of the lists below.
    ts_l, end_l, ep_l, client_l, status_l, size_l, oid_l, uac_l, auth_l, trace_l = (
        [r[k] for r in items] for k in range(10)  # the 10 fields of ROW
    )
    ts = np.array(ts_l, dtype=np.int64)
    dur = np.maximum(np.array(end_l, dtype=np.int64) - ts, 0) / 1e6
    ep = np.array(ep_l, dtype=object)
    client = np.array(client_l, dtype=object)
    ep_codes, _ = pd.factorize(ep)
    client_codes, clients = pd.factorize(client)
    size = np.array(size_l, dtype=np.float64)  # None -> NaN
    size[np.isnan(size)] = -1
    trace = np.array(trace_l, dtype=object)
    group = pd.Series(ep_codes.astype(np.int64) * len(clients) + client_codes, copy=False)
    trace[group.groupby(group, sort=False).cumcount().to_numpy() >= TRACES_PER_GROUP] = ""
    return {
        "ts": ts,
        "ep": ep,
        "client": client,
        "status": np.array(status_l, dtype=np.int64),
        "dur": dur,
        "size": size.astype(np.int64),
        "oid": np.array(oid_l, dtype=object),
        "uac": np.array(uac_l, dtype=object),
        "auth": np.array(auth_l, dtype=np.int64),
        "trace": trace,
    }
