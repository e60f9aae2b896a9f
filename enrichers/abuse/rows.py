"""Columnar per-request buffers, collected per window and aggregated once per window.

The per-span path appends each field of a request to its column list (no
tuple, no dict, no object per span): start and end time, the endpoint's code,
the code of the cached :class:`~enrichers.abuse.identity.Principal` (client,
user-agent class and credentials in one shared object), status, response size
(-1 for none), object id and trace id. Endpoints and principals are numbered
once, when their cached object is made, in a :class:`Codebook` (code -> value),
so the pending columns hold small integers and compaction factorises integers,
not objects. Every :data:`CHUNK` rows the lists are compacted into numpy arrays:
numbers as machine integers, the endpoint, client and object id as integer
codes into a chunk's distinct values, and trace ids only for the first few
requests of each endpoint and client (samples for findings). A compacted row
costs ~45 bytes, whatever its strings.

:meth:`Rows.frame` joins the chunks of a closed window into one DataFrame (the
columns of :data:`COLUMNS`) and keeps the window-wide codes of endpoint,
client and object id in :attr:`Rows.codes`, so the aggregation in
:mod:`enrichers.abuse.windows` does not hash a string column again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ("ts", "ep", "client", "status", "dur", "size", "oid", "uac", "auth", "trace")
#: Rows per compacted chunk.
CHUNK = 32_768
#: Trace ids kept per endpoint and client in a chunk (samples for findings).
TRACES_PER_GROUP = 5


class Codebook:
    """Values numbered in the order they were added: the code of a value is its position.

    The owner numbers each distinct value once (an endpoint's or a principal's cached
    object keeps its code), rows keep codes until compaction maps them back to values.
    :meth:`reset` empties the book in place (the rows hold on to it): every row still
    pending must be compacted before, and the owner must forget the objects that carry
    old codes.
    """

    __slots__ = ("values", "fixed")

    def __init__(self, *fixed: Any) -> None:
        #: Values that keep their codes 0, 1, ... across resets.
        self.fixed = len(fixed)
        self.values: list[Any] = list(fixed)

    def __len__(self) -> int:
        return len(self.values)

    def add(self, value: Any) -> int:
        """Append ``value``; returns its code."""
        self.values.append(value)
        return len(self.values) - 1

    @property
    def next_code(self) -> int:
        """The code the next :meth:`add` returns."""
        return len(self.values)

    def reset(self) -> None:
        del self.values[self.fixed:]


@dataclass(slots=True)
class Codes:
    """Window-wide integer codes (first-appearance order, as :func:`pandas.factorize`)."""

    ep: np.ndarray
    ep_uni: np.ndarray
    client: np.ndarray
    client_uni: np.ndarray
    #: -1 where a request has no object id.
    oid: np.ndarray
    #: The object ids (codes in ``oid`` index it).
    oid_uni: np.ndarray


@dataclass(slots=True)
class _Chunk:
    ts: np.ndarray
    dur: np.ndarray
    status: np.ndarray
    size: np.ndarray
    ep: np.ndarray  # codes into ep_uni
    ep_uni: np.ndarray
    who: np.ndarray  # codes into who_uni (Principal objects)
    who_uni: np.ndarray
    oid: np.ndarray  # codes into oid_uni
    oid_uni: np.ndarray
    trace_at: np.ndarray  # row positions of the sampled trace ids
    trace: list[str]


class Rows:
    """The requests of one open window: column lists plus compacted chunks."""

    __slots__ = ("ts", "end", "ep", "who", "status", "size", "oid", "trace", "chunks", "compacted", "codes",
                 "ep_book", "who_book")

    def __init__(self, ep_book: Codebook | None = None, who_book: Codebook | None = None) -> None:
        """``ep_book`` and ``who_book`` resolve the pending endpoint and principal codes
        (needed only by rows that are appended to)."""
        self.ts: list[int] = []
        self.end: list[int] = []
        self.ep: list[int] = []  # codes in ep_book (endpoint keys)
        self.who: list[int] = []  # codes in who_book (Principals)
        self.status: list[int] = []
        self.size: list[int] = []  # -1: no size
        self.oid: list[str] = []
        self.trace: list[str] = []
        self.chunks: list[_Chunk] = []
        self.compacted = 0
        self.codes: Codes | None = None
        self.ep_book = ep_book
        self.who_book = who_book

    def __len__(self) -> int:
        return len(self.ts) + self.compacted

    @property
    def pending(self) -> int:
        """Rows not compacted yet."""
        return len(self.ts)

    def appenders(self) -> tuple[Any, ...]:
        """The ``append`` methods of the columns, in the order of the slots above
        (:meth:`compact` empties the lists in place: they stay valid)."""
        return (self.ts.append, self.end.append, self.ep.append, self.who.append, self.status.append,
                self.size.append, self.oid.append, self.trace.append)

    def compact(self) -> None:
        """Turn the pending column lists into one chunk of arrays."""
        if self.ts:
            self.chunks.append(_compact(self))
            self.compacted += len(self.ts)
            for col in (self.ts, self.end, self.ep, self.who, self.status, self.size, self.oid, self.trace):
                col.clear()

    @classmethod
    def joined(cls, parts: list[Rows]) -> Rows:
        """The rows of several (closed) sub-windows as one window: their compacted
        chunks are shared, not copied."""
        out = cls()
        for r in parts:
            r.compact()
            out.chunks.extend(r.chunks)
            out.compacted += r.compacted
        return out

    def frame(self) -> pd.DataFrame:
        """All the window's requests as one DataFrame (see :data:`COLUMNS`); sets :attr:`codes`."""
        self.compact()
        chunks = self.chunks
        if not chunks:
            empty = np.zeros(0, dtype=np.int64)
            none = np.zeros(0, dtype=object)
            self.codes = Codes(empty, none, empty, none, empty, none)
            return pd.DataFrame({c: [] for c in COLUMNS})
        n = self.compacted
        ep_codes, ep_uni = _merge([c.ep for c in chunks], [c.ep_uni for c in chunks])
        who_codes, who_uni = _merge([c.who for c in chunks], [c.who_uni for c in chunks])
        oid_codes, oid_uni = _merge([c.oid for c in chunks], [c.oid_uni for c in chunks])
        # Principals -> client label, user-agent class and credentials (several principals
        # may share one client label: re-factorise the labels).
        w_client = np.array([p.client for p in who_uni], dtype=object)
        w_uac = np.array([p.uac for p in who_uni], dtype=object)
        w_auth = np.array([p.auth for p in who_uni], dtype=np.int64)
        cmap, client_uni = pd.factorize(w_client)
        client_codes = cmap[who_codes]
        has_oid = oid_uni != ""
        oid_global = np.where(has_oid[oid_codes], oid_codes, -1) if len(oid_uni) else oid_codes
        self.codes = Codes(ep_codes, ep_uni, client_codes, np.asarray(client_uni, dtype=object), oid_global, oid_uni)
        trace = np.full(n, "", dtype=object)
        off = 0
        for c in chunks:
            if len(c.trace_at):
                trace[c.trace_at + off] = c.trace
            off += len(c.ts)

        def cat(name: str) -> np.ndarray:
            arrs = [getattr(c, name) for c in chunks]
            return arrs[0] if len(arrs) == 1 else np.concatenate(arrs)

        def text(values: np.ndarray) -> pd.Series:
            # Kept as object arrays: pandas would otherwise convert each string column to
            # its str dtype (a copy and a type check per value); the window only reads
            # them back as arrays.
            return pd.Series(values, dtype=object, copy=False)

        return pd.DataFrame({
            "ts": cat("ts"),
            "ep": text(ep_uni[ep_codes]),
            "client": text(w_client[who_codes]),
            "status": cat("status").astype(np.int64),
            "dur": cat("dur"),
            "size": cat("size"),
            "oid": text(oid_uni[oid_codes]),
            "uac": text(w_uac[who_codes]),
            "auth": w_auth[who_codes],
            "trace": text(trace),
        }, copy=False)


def _merge(codes: list[np.ndarray], uniques: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Chunk-local codes -> window-wide codes over the distinct values of all chunks."""
    if len(codes) == 1:
        return codes[0].astype(np.int64), uniques[0]
    allu = np.concatenate(uniques)
    remap, uni = pd.factorize(allu)
    out = []
    off = 0
    for c, u in zip(codes, uniques, strict=True):
        out.append(remap[off + c.astype(np.int64)])
        off += len(u)
    return np.concatenate(out), np.asarray(uni, dtype=object)


def _factorize(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    codes, uni = pd.factorize(np.array(values, dtype=object))
    return codes.astype(np.int32), np.asarray(uni, dtype=object)


def _decode(codes: list[int], book: Codebook | None) -> tuple[np.ndarray, np.ndarray]:
    """Book codes -> chunk codes (first-appearance order) and the chunk's distinct values.
    One value has one code while rows are pending (see :class:`Codebook`), so this is
    :func:`_factorize` of the values, at the price of factorising integers."""
    if not codes:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=object)
    assert book is not None  # rows that were appended to have their books
    local, uni = pd.factorize(_ints(codes))
    values = book.values
    # fromiter: no sequence probing of each value (what np.array/slice assignment do).
    out = np.fromiter([values[c] for c in uni.tolist()], dtype=object, count=len(uni))
    return local.astype(np.int32), out


def _ints(values: list[int]) -> np.ndarray:
    """``np.array(values, dtype=np.int64)`` (same values, same errors), in half the time
    for large integers such as nanosecond times."""
    return np.fromiter(values, dtype=np.int64, count=len(values))


def _first_of_groups(group: np.ndarray, k: int, ngroups: int) -> np.ndarray:
    """Positions of the first ``k`` rows of each group value (0..ngroups-1), ascending
    (a numpy ``groupby(...).cumcount() < k`` without pandas' fixed cost)."""
    n = len(group)
    if not n:
        return np.zeros(0, dtype=np.int64)
    if ngroups > 1 << 16 and n <= 1 << 16:
        group = pd.factorize(group)[0]  # the same groups, numbered below n
        ngroups = n
    # A stable argsort of values narrower than 17 bits is a radix sort (same order, ~10x faster).
    order = np.argsort(group.astype(np.uint16) if ngroups <= 1 << 16 else group, kind="stable")
    g = group[order]
    starts = np.flatnonzero(np.concatenate(([True], g[1:] != g[:-1])))
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))  # cumcount, sorted
    return np.sort(order[rank < k])


def _sizes(values: list[int]) -> np.ndarray:
    """Response sizes as int64 (-1: none; as through float64, then truncated)."""
    try:
        # Integers straight to int64: half the cost of the float64 round trip below.
        size = _ints(values)
    except (OverflowError, TypeError, ValueError):
        size = None
    if size is None or (len(size) and (size.max() > 2**53 or size.min() < -(2**53))):
        # Bad input (NaN, huge or non-integral values): the float64 path, whose rounding
        # and clipping the window statistics always had.
        f = np.array(values, dtype=np.float64)
        f[np.isnan(f)] = -1
        size = f.astype(np.int64)
    return size


def _statuses(values: list[int]) -> np.ndarray:
    """Status codes as int32; out-of-range numbers from bad input are clipped, never an error."""
    try:
        # Integers (always, from the span model) straight to int64; the same result as
        # the float64 path below for any int64, which takes whatever else comes.
        return np.clip(_ints(values), -1, 2**31 - 1).astype(np.int32)
    except (OverflowError, TypeError, ValueError):
        return np.clip(np.array(values, dtype=np.float64), -1, 2**31 - 1).astype(np.int32)


def _compact(r: Rows) -> _Chunk:
    ts = _ints(r.ts)
    dur = np.maximum(_ints(r.end) - ts, 0) / 1e6
    ep, ep_uni = _decode(r.ep, r.ep_book)
    who, who_uni = _decode(r.who, r.who_book)
    oid, oid_uni = _factorize(r.oid)
    size = _sizes(r.size)
    status = _statuses(r.status)
    nwho = max(len(who_uni), 1)
    keep = _first_of_groups(ep.astype(np.int64) * nwho + who, TRACES_PER_GROUP, max(len(ep_uni), 1) * nwho)
    trace = np.fromiter(r.trace, dtype=object, count=len(r.trace))[keep].tolist()
    if not all(trace):  # drop the rows without a trace id
        sel = [j for j, t in enumerate(trace) if t]
        keep, trace = keep[sel], [trace[j] for j in sel]
    return _Chunk(ts, dur, status, size, ep, ep_uni, who, who_uni, oid, oid_uni, keep.astype(np.int64), trace)
