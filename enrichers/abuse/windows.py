"""Window statistics: one pandas aggregation per evaluated window, shared by every
window-based detection, then the baseline update.

Windows slide: rows are collected per sub-window (half a window) and every
closed sub-window is evaluated together with the one before it, so a burst
is judged whole wherever it falls against a boundary. Baselines are updated
only from the aligned pairs (sub-windows ``2k, 2k+1``), so every row is
counted into them once.

Detections compare a window with the baselines learned from the windows before
it; the window then updates the baselines, clipped so an attack in progress
does not teach the baseline that attacks are normal (windows that meet the
flood thresholds do not feed the endpoint's peak, clients above the spike
limit do not feed the per-client distributions).

Slow attacks (an id walk of one request every few seconds) never fill a
window: :class:`Horizon` keeps, per hop, the distinct (endpoint, client,
object) requests of parameterised and business-flow routes over the last
``horizon_seconds`` and aggregates them per client and endpoint once per
``horizon_hop_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from enrichers.abuse.baselines import AbuseState, ClientBaseline, EndpointBaseline
from enrichers.abuse.rows import Rows


class Positions:
    """Row positions of each group of a window, looked up by group key.

    One sorted array of positions and the group bounds (made while the window is
    aggregated) replace a dict of one array per group, which costs more than the
    whole aggregation when a window has many clients and only a few of them are
    ever looked up.
    """

    __slots__ = ("_code_of", "_order", "_bounds")

    def __init__(self, code_of: Callable[[Any], int], order: np.ndarray, counts: np.ndarray) -> None:
        """``order``: the rows grouped by code; ``counts``: the rows of each code."""
        self._code_of = code_of
        self._order = order
        self._bounds = np.concatenate(([0], np.cumsum(counts)))

    def get(self, key: Any) -> np.ndarray | None:
        code = self._code_of(key)
        if code < 0 or code + 1 >= len(self._bounds):
            return None
        return self._order[self._bounds[code] : self._bounds[code + 1]]

    def __getitem__(self, key: Any) -> np.ndarray:
        pos = self.get(key)
        if pos is None:
            raise KeyError(key)
        return pos


@dataclass(slots=True)
class WindowFrame:
    """The requests of one closed window and their aggregates."""

    index: int  # the newest sub-window's index
    start_ns: int
    end_ns: int
    #: Start of the newest sub-window (rows before it were evaluated in the previous window too).
    mid_ns: int
    df: pd.DataFrame
    ep: pd.DataFrame  # index: ep
    cl: pd.DataFrame  # index: (ep, client)
    cc: pd.DataFrame  # index: client; "cv" = inter-arrival coefficient of variation
    cl_pos: Positions
    cc_pos: Positions
    ep_pos: Positions
    #: Per row, the position of its endpoint in ``ep``'s index.
    ep_code: np.ndarray
    #: Per row, the position of its object id in ``oid_uni`` (-1: no id).
    oid_code: np.ndarray
    oid_uni: np.ndarray

    def traces(self, positions: np.ndarray, n: int = 5) -> list[str]:
        col = self.df["trace"].to_numpy()
        out: list[str] = []
        for p in positions[:200]:
            t = col[p]
            if t and t not in out:
                out.append(t)
                if len(out) >= n:
                    break
        return out

    def client_traces(self, ep: str, client: str, n: int = 5) -> list[str]:
        pos = self.cl_pos.get((ep, client))
        return [] if pos is None else self.traces(pos, n)




def _group_order(codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Row positions grouped by ``codes`` (0..ngroups-1), in row order within a group:
    ``np.argsort(codes, kind="stable")``. A stable argsort of values narrower than 17
    bits is a radix sort (~10x faster than on int64), so the codes are narrowed first.
    ``base[_group_order(codes[base], n)]`` groups the rows in ``base``'s order within a
    group (``np.lexsort((by, codes))`` with ``base`` a stable argsort of ``by``)."""
    return np.argsort(codes.astype(np.uint16) if ngroups <= 1 << 16 else codes, kind="stable")


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of an integer array: sort and drop repeats (numpy's own
    unique is several times slower on large int64 arrays)."""
    v = np.sort(values)
    if len(v):
        keep = np.empty(len(v), dtype=bool)
        keep[0] = True
        np.not_equal(v[1:], v[:-1], out=keep[1:])
        v = v[keep]
    return v


def _first_rows(codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Position of each group's first row (``np.unique(codes, return_index=True)[1]``).

    Codes from :func:`pandas.factorize` (and :class:`~enrichers.abuse.rows.Codes`) number
    the groups in order of first appearance, so the first rows are where a code exceeds
    every code before it: one pass. Checked; anything else takes np.unique."""
    if len(codes):
        new = np.empty(len(codes), dtype=bool)
        new[0] = True
        np.greater(codes[1:], np.maximum.accumulate(codes)[:-1], out=new[1:])
        first = np.flatnonzero(new)
        if len(first) == ngroups and np.array_equal(codes[first], np.arange(ngroups)):
            return first
    return np.unique(codes, return_index=True)[1]


def _first_max(codes: np.ndarray, sec: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group, the busiest second's request count."""
    nsec = int(sec.max()) + 1 if len(sec) else 1
    counts = np.bincount(codes.astype(np.int64) * nsec + sec, minlength=ngroups * nsec)
    return counts.reshape(ngroups, nsec).max(axis=1)


def _cadence_cv(codes: np.ndarray, ts: np.ndarray, ngroups: int, order: np.ndarray) -> np.ndarray:
    """Per group, the inter-arrival coefficient of variation (NaN under 3 requests);
    ``order``: the rows grouped by ``codes``, in time order within a group."""
    c = codes[order]
    d = np.diff(ts[order]).astype(np.float64) / 1e9
    same = c[1:] == c[:-1]
    g = c[1:][same]
    d = d[same]
    k = np.bincount(g, minlength=ngroups).astype(np.float64)
    s1 = np.bincount(g, weights=d, minlength=ngroups)
    s2 = np.bincount(g, weights=d * d, minlength=ngroups)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = s1 / k
        var = np.maximum(s2 / k - mean * mean, 0.0)
        cv = np.where((k >= 2) & (mean > 0), np.sqrt(var) / mean, np.nan)
    return cv


def _group_stats(
    codes: np.ndarray, ngroups: int, flags: dict[str, np.ndarray], ts: np.ndarray, size: np.ndarray | None,
    order: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per group (``codes`` cover 0..ngroups-1, every group non-empty; ``order``: the rows
    grouped by code): the row count ``n``, the sum of each flag, first and last time and
    (with ``size``) the largest response; numpy bincounts and reduceat, one pass each,
    no pandas groupby."""
    out = {"n": np.bincount(codes, minlength=ngroups).astype(np.int64)}
    for name, v in flags.items():
        # Flags are boolean masks: counting the flagged rows' codes is exact and ~10x
        # cheaper than a float-weighted bincount.
        out[name] = np.bincount(codes[v], minlength=ngroups).astype(np.int64)
    if not len(codes):
        empty = np.zeros(0, dtype=np.int64)
        out.update(tmin=empty, tmax=empty)
        if size is not None:
            out["maxsize"] = empty
        return out
    starts = np.concatenate(([0], np.cumsum(out["n"])[:-1]))
    t = ts[order]
    out["tmin"] = np.minimum.reduceat(t, starts)
    out["tmax"] = np.maximum.reduceat(t, starts)
    if size is not None:
        out["maxsize"] = np.maximum.reduceat(size[order], starts)
    return out


def _quantiles(
    codes: np.ndarray, ngroups: int, values: np.ndarray, qs: tuple[float, ...], order: np.ndarray,
) -> list[np.ndarray]:
    """Per group, each quantile of ``values`` with linear interpolation (as pandas);
    ``order``: the rows grouped by code."""
    if not len(codes):
        return [np.zeros(0) for _ in qs]
    m = np.bincount(codes, minlength=ngroups)
    starts = np.concatenate(([0], np.cumsum(m)[:-1]))
    pos = [starts + q * (m - 1) for q in qs]
    lo = [np.floor(p).astype(np.int64) for p in pos]
    hi = [np.ceil(p).astype(np.int64) for p in pos]
    if ngroups * 500 <= len(codes):
        # Few large groups: per group, a partial sort (np.partition) around the few
        # positions read below puts the same values there as a full sort, in a third
        # of the time; the per-group call would cost more than it saves for many groups.
        v = values[order].astype(np.float64)
        for g, (s, k) in enumerate(zip(starts.tolist(), m.tolist(), strict=True)):
            kth = sorted({int(x[g]) - s for x in lo + hi})
            v[s : s + k] = np.partition(v[s : s + k], kth)
    else:
        # Values sorted within each group. Only the values are read, so the value sort
        # need not be stable (equal values are interchangeable); the group pass is.
        by_value = np.argsort(values)
        v = values[by_value[_group_order(codes[by_value], ngroups)]].astype(np.float64)
    return [v[a] + (v[b] - v[a]) * (p - a) for p, a, b in zip(pos, lo, hi, strict=True)]


def build_frame(index: int, start_ns: int, mid_ns: int, end_ns: int, rows: Rows) -> WindowFrame:
    """Aggregate one window per endpoint, per endpoint and client, and per client.

    Grouping runs on integer codes (endpoints and clients factorised once), and
    distinct counts, busiest seconds and cadence are numpy bincounts, so a
    window of a few hundred thousand requests closes in a fraction of a second.
    """
    df = rows.frame()
    n = len(df)
    codes = rows.codes
    assert codes is not None  # set by frame()
    ep_codes, ep_uni = codes.ep, codes.ep_uni
    cc_codes, cc_uni = codes.client, codes.client_uni
    oid_codes = codes.oid
    ne, nc = len(ep_uni), max(len(cc_uni), 1)
    pair = ep_codes.astype(np.int64) * nc + cc_codes
    pair_codes, pair_uni = pd.factorize(pair)
    npair = len(pair_uni)
    st = df["status"].to_numpy()
    auth = df["auth"].to_numpy()
    ts = df["ts"].to_numpy()
    sec = ts // 1_000_000_000
    sec = sec - (sec.min() if n else 0)
    ok = (st >= 200) & (st < 400)
    size_col = df["size"].to_numpy()
    dur = df["dur"].to_numpy()
    flags = {
        "err": st >= 500, "deny": (st == 401) | (st == 403), "nf": st == 404, "ok": ok, "r429": st == 429,
        "authy": auth == 1, "authn": auth == 0, "noauth_ok": (auth == 0) & ok,
    }
    # Rows grouped per endpoint (in row order), per endpoint and client and per client
    # (in time order, as np.lexsort((ts, codes)): cadence and the samples of findings);
    # one time sort for both.
    ep_order = _group_order(ep_codes, ne)
    by_time = np.argsort(ts, kind="stable")
    pair_order = by_time[_group_order(pair_codes[by_time], npair)]
    nclients = len(cc_uni)
    cc_order = by_time[_group_order(cc_codes[by_time], nclients)]

    # Per endpoint.
    ep = _group_stats(ep_codes, ne, flags, ts, size_col, ep_order)
    pair_ep = (pair_uni // nc).astype(np.int64)
    pair_cc = (pair_uni % nc).astype(np.int64)
    real = cc_uni[pair_cc] != "" if npair else np.zeros(0, dtype=bool)
    ep["clients"] = np.bincount(pair_ep[real], minlength=ne)
    ep["p95"], ep["p50"] = _quantiles(ep_codes, ne, dur, (0.95, 0.5), ep_order)
    ep["peak"] = _first_max(ep_codes, sec, ne)
    ep_df = pd.DataFrame(ep, index=pd.Index(ep_uni, name="ep"), copy=False)

    # Per endpoint and client.
    cl = _group_stats(pair_codes, npair, flags, ts, size_col, pair_order)
    has_oid = oid_codes >= 0
    any_oid = bool(has_oid.any())
    if any_oid:
        noid = int(oid_codes.max()) + 1
        # Distinct (endpoint and client, object id) pairs, an id-less row counting as id -1:
        # distinct resources per client (an id-less endpoint counting once), and, without
        # the -1s, distinct ids per endpoint and client and (projected) per client.
        res = _distinct(pair_codes.astype(np.int64) * (noid + 1) + (oid_codes + 1))
        res_pair = res // (noid + 1)
        res_oid = res % (noid + 1) - 1
        with_id = res_oid >= 0
        cl["ids"] = np.bincount(res_pair[with_id], minlength=npair)
    else:
        cl["ids"] = np.zeros(npair, dtype=np.int64)
        res_pair = np.arange(npair)
    uac = df["uac"].to_numpy()
    cl["uac"] = uac[_first_rows(pair_codes, npair)]
    cl["peak"] = _first_max(pair_codes, sec, npair)
    cl_df = pd.DataFrame(cl, index=pd.MultiIndex.from_arrays([ep_uni[pair_ep], cc_uni[pair_cc]],
                                                            names=["ep", "client"]), copy=False)
    cl_df = cl_df[real]  # edge rows have no client

    # Per client.
    cc = _group_stats(cc_codes, nclients, {"ok": ok}, ts, None, cc_order)
    cc["bad"] = np.bincount(cc_codes, weights=st >= 400, minlength=nclients)
    sized = size_col >= 0
    cc["sized"] = np.bincount(cc_codes[sized], minlength=nclients)
    cc["bytes"] = np.bincount(cc_codes[sized], weights=size_col[sized], minlength=nclients)
    if any_oid:
        cc_ids = _distinct(pair_cc[res_pair[with_id]] * noid + res_oid[with_id]) // noid
        cc["ids"] = np.bincount(cc_ids, minlength=nclients)
    else:
        cc["ids"] = np.zeros(nclients, dtype=np.int64)
    cc["paths"] = np.bincount(pair_cc[res_pair], minlength=nclients)
    cc["eps"] = np.bincount(pair_cc, minlength=nclients)
    cc["uac"] = uac[_first_rows(cc_codes, nclients)]
    cc["cv"] = _cadence_cv(cc_codes, ts, nclients, cc_order)
    cc_df = pd.DataFrame(cc, index=pd.Index(cc_uni, name="client"), copy=False)
    cc_df = cc_df[cc_df.index != ""]

    ep_idx = {k: i for i, k in enumerate(ep_uni)}
    cc_idx = {k: i for i, k in enumerate(cc_uni)}
    pair_idx = pd.Index(pair_uni)

    def pair_of(key: tuple[str, str]) -> int:
        e, c = ep_idx.get(key[0], -1), cc_idx.get(key[1], -1)
        if e < 0 or c < 0:
            return -1
        try:
            return int(pair_idx.get_loc(e * nc + c))  # pair_uni holds distinct values
        except KeyError:
            return -1

    return WindowFrame(
        index=index,
        start_ns=start_ns,
        end_ns=end_ns,
        mid_ns=mid_ns,
        df=df,
        ep=ep_df,
        cl=cl_df,
        cc=cc_df,
        cl_pos=Positions(pair_of, pair_order, cl["n"]),
        cc_pos=Positions(lambda k: cc_idx.get(k, -1), cc_order, cc["n"]),
        ep_pos=Positions(lambda k: ep_idx.get(k, -1), ep_order, ep["n"]),
        ep_code=ep_codes,
        oid_code=oid_codes,
        oid_uni=codes.oid_uni,
    )


def iter_rows(df: pd.DataFrame) -> Iterator[tuple[Any, dict[str, Any]]]:
    """``df.iterrows()`` without a Series per row (~40 us each): the same keys, and the
    same values by column name (rows of ``df.values``, one dtype for the whole frame, so
    an all-numeric frame's integers come as floats, as from iterrows)."""
    cols = df.columns.tolist()
    for key, values in zip(df.index, df.values, strict=True):
        yield key, dict(zip(cols, values, strict=True))


def flooded(b: EndpointBaseline, n: float, s: Any) -> bool:
    """Does a window of ``n`` requests meet the endpoint-flood thresholds of ``b``?"""
    base = b.count
    return (
        n >= s.endpoint_spike_min
        and n > s.endpoint_spike_ratio * base.mean
        and n > base.mean + s.endpoint_spike_devs * max(base.dev, 1.0)
    )


def client_limit(b: EndpointBaseline, s: Any) -> float:
    """Requests per window above which one client on ``b``'s endpoint is a spike."""
    p99 = b.client_rate.quantile(0.99) if b.client_rate.count >= 50 else 0.0
    return max(float(s.client_spike_min), s.client_spike_ratio * (p99 + 1.0))


def update_baselines(w: WindowFrame, st: AbuseState) -> None:
    """Fold a window into the endpoint and client baselines (clipped after warm-up)."""
    s = st.settings
    a = s.ewma_alpha
    cl_n = w.cl["n"]
    cl_ids = w.cl["ids"]
    cl_peak = w.cl["peak"]
    per_ep_max_ids = cl_ids.groupby(level=0).max().to_dict()
    limits: dict[str, float] = {}
    e = w.ep
    # Plain column arrays rather than iterrows (a Series per endpoint costs more than the update).
    cols = zip(e.index.tolist(), e["n"].tolist(), e["tmax"].tolist(), e["p95"].tolist(), e["err"].tolist(),
               e["deny"].tolist(), e["maxsize"].tolist(), e["authy"].tolist(), e["authn"].tolist(),
               e["r429"].tolist(), e["peak"].tolist(), strict=True)
    for ep, n_req, tmax, p95, err, deny, maxsize, authy, authn, r429, peak in cols:
        b: EndpointBaseline | None = st.endpoints.get(str(ep))
        if b is None:
            continue
        warm = b.warm(int(tmax), s)
        n = float(n_req)
        # An attack window must not teach the endpoint's busiest second (rate limits).
        attacked = warm and b.count.n > 0 and flooded(b, n, s)
        if warm:
            limits[str(ep)] = client_limit(b, s)
        if warm and b.count.n:
            n = min(n, b.count.mean + 4 * b.count.dev + 1)
        b.count.update(n, a)
        b.p95_ms.update(float(p95) if not warm else min(float(p95), 3 * b.p95_ms.mean + 1), a)
        b.err_rate.update(float(err) / max(1.0, float(n_req)), a)
        b.fail_count.update(float(deny), a)
        ms = float(maxsize)
        if ms >= 0:
            b.max_size.update(ms if not warm else min(ms, 4 * b.max_size.mean + 1), a)
        ids = float(per_ep_max_ids.get(ep, 0) or 0)
        b.ids_per_client.update(ids if not warm else min(ids, 3 * b.ids_per_client.mean + 2), a)
        b.auth_yes += int(authy)
        b.auth_no += int(authn)
        if r429:
            b.saw_429 = True
        b.total += int(n_req)
        b.windows += 1
        b.last_ns = max(b.last_ns, int(tmax))
        if not attacked:
            b.endpoint_peak.add(float(peak))
        if b.windows % s.sketch_rotate_windows == 0:
            b.client_rate.rotate()
            b.client_peak.rotate()
            b.endpoint_peak.rotate()
    # Per-client distributions (sketches), skipping clients far above the usual p99 (once
    # there are enough) and, for the peak, clients above the spike limit; equal values are
    # added once with their multiplicity (one sketch update per distinct value).
    ep_level = cl_n.index.get_level_values(0)
    n_all = cl_n.to_numpy()
    peak_all = cl_peak.to_numpy()
    codes, keys = pd.factorize(ep_level)
    for i, ep in enumerate(keys):
        b = st.endpoints.get(str(ep))
        if b is None:
            continue
        sel = codes == i
        n = n_all[sel]
        peak = peak_all[sel]
        keep = np.ones(len(n), dtype=bool)
        if b.client_rate.count > 200:
            keep &= n <= max(s.client_spike_min, s.client_spike_ratio * (b.client_rate.quantile(0.99) + 1))
        rate = n[keep]
        lim = limits.get(str(ep))
        if lim is not None:
            keep &= n <= lim  # a client that raised a spike finding does not teach the peak either
        n, peak = rate, peak[keep]
        for value, count in zip(*np.unique(n, return_counts=True), strict=True):
            b.client_rate.add(float(value), float(count))
        for value, count in zip(*np.unique(peak, return_counts=True), strict=True):
            b.client_peak.add(float(value), float(count))
    update_clients(w, st)


def update_clients(w: WindowFrame, st: AbuseState) -> None:
    """Fold the window into each active client's own baseline (EWMA of requests per
    window, error share, mean response size, distinct object ids), clipped after the
    client's warm-up like the endpoint baselines. Bounded: :meth:`AbuseState.decay`
    keeps the most recently seen ``max_client_baselines``."""
    s = st.settings
    a = s.ewma_alpha
    cc = w.cc
    if cc.empty:
        return
    clients = st.client_stats
    n_col = cc["n"].to_numpy()
    bad = cc["bad"].to_numpy()
    sized = cc["sized"].to_numpy()
    nbytes = cc["bytes"].to_numpy()
    ids = cc["ids"].to_numpy()
    tmax = cc["tmax"].to_numpy()
    for k, client in enumerate(cc.index.tolist()):
        c = clients.get(client)
        if c is None:
            c = clients[client] = ClientBaseline(int(w.start_ns))
        n = float(n_col[k])
        err = float(bad[k]) / n
        nid = float(ids[k])
        if c.windows >= s.client_warmup_windows:
            n = min(n, c.rate.mean + 4 * c.rate.dev + 1)
            err = min(err, c.err.mean + 4 * c.err.dev + 0.05)
            nid = min(nid, 3 * c.ids.mean + 2)
        c.rate.update(n, a)
        c.err.update(err, a)
        c.ids.update(nid, a)
        if sized[k]:
            c.size.update(float(nbytes[k]) / float(sized[k]), a)
        c.windows += 1
        c.last_ns = max(c.last_ns, int(tmax[k]))
    if len(clients) > 2 * s.max_client_baselines:
        st.prune_client_stats()


class Horizon:
    """Per hop, the requests of parameterised and business-flow routes (time, endpoint,
    client, object id, user-agent class, denied), kept for ``horizon_seconds`` as
    plain arrays; :meth:`frame` joins them for the horizon detections."""

    __slots__ = ("parts", "rows", "last_eval_ns")

    COLUMNS = ("ts", "ep", "client", "oid", "uac", "denied")

    def __init__(self) -> None:
        self.parts: list[tuple[int, tuple[np.ndarray, ...]]] = []  # (sub-window start ns, columns)
        self.rows = 0
        self.last_eval_ns = 0

    def add(self, w: WindowFrame, keep: np.ndarray, s: Any) -> None:
        """Keep the newest sub-window's rows of the endpoints where ``keep`` (a mask over
        ``w.ep``'s index) is true."""
        df = w.df
        ts = df["ts"].to_numpy()
        client = df["client"].to_numpy()
        sel = np.flatnonzero(keep[w.ep_code] & (ts >= w.mid_ns) & (client != ""))
        if len(sel):
            st = df["status"].to_numpy()[sel]
            cols = (ts[sel], df["ep"].to_numpy()[sel], client[sel], df["oid"].to_numpy()[sel],
                    df["uac"].to_numpy()[sel], (st == 401) | (st == 403) | (st == 404))
            self.parts.append((w.mid_ns, cols))
            self.rows += len(sel)
        horizon = w.end_ns - int(s.horizon_seconds * 1e9)
        while self.parts and (self.parts[0][0] < horizon or self.rows > s.max_horizon_rows):
            self.rows -= len(self.parts.pop(0)[1][0])

    def due(self, now_ns: int, s: Any) -> bool:
        if self.parts and now_ns - self.last_eval_ns >= s.horizon_hop_seconds * 1e9:
            self.last_eval_ns = now_ns
            return True
        return False

    def frame(self) -> pd.DataFrame:
        """All kept requests (columns of :attr:`COLUMNS`)."""
        return pd.DataFrame({
            name: np.concatenate([cols[i] for _, cols in self.parts]) for i, name in enumerate(self.COLUMNS)
        }, copy=False)
