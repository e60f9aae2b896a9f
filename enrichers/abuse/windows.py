"""Window statistics: one pandas aggregation per closed window, shared by every
window-based detection, then the baseline update.

Detections compare a window with the baselines learned from the windows before
it; the window then updates the baselines, clipped so an attack in progress
does not teach the baseline that attacks are normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from enrichers.abuse.baselines import AbuseState, EndpointBaseline
from enrichers.abuse.rows import Rows


class Positions:
    """Row positions of each group of a window, looked up by group key.

    Sorting once (lazily, on the first lookup) replaces building a dict of one
    array per group, which costs more than the whole aggregation when a
    window has many clients and only a few of them are ever looked up.
    """

    __slots__ = ("_codes", "_code_of", "_order", "_bounds", "_sort_by")

    def __init__(self, codes: np.ndarray, code_of: Callable[[Any], int], sort_by: np.ndarray | None = None) -> None:
        self._codes = codes
        self._code_of = code_of
        self._sort_by = sort_by
        self._order: np.ndarray | None = None
        self._bounds: np.ndarray | None = None

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None or self._bounds is None:
            codes = self._codes
            if self._sort_by is not None:
                self._order = np.lexsort((self._sort_by, codes))
            else:
                self._order = np.argsort(codes, kind="stable")
            self._bounds = np.concatenate(([0], np.cumsum(np.bincount(codes))))
        return self._order, self._bounds

    def get(self, key: Any) -> np.ndarray | None:
        code = self._code_of(key)
        if code < 0:
            return None
        order, bounds = self._sorted()
        if code + 1 >= len(bounds):
            return None
        return order[bounds[code] : bounds[code + 1]]

    def __getitem__(self, key: Any) -> np.ndarray:
        pos = self.get(key)
        if pos is None:
            raise KeyError(key)
        return pos


@dataclass(slots=True)
class WindowFrame:
    """The requests of one closed window and their aggregates."""

    index: int
    start_ns: int
    end_ns: int
    df: pd.DataFrame
    ep: pd.DataFrame  # index: ep
    cl: pd.DataFrame  # index: (ep, client)
    cc: pd.DataFrame  # index: client; "cv" = inter-arrival coefficient of variation
    cl_pos: Positions
    cc_pos: Positions
    ep_pos: Positions

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


_FLAGS = ["one", "err", "deny", "nf", "ok", "r429", "authy", "authn", "noauth_ok"]


def _first_max(codes: np.ndarray, sec: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group, the busiest second's request count."""
    nsec = int(sec.max()) + 1 if len(sec) else 1
    counts = np.bincount(codes.astype(np.int64) * nsec + sec, minlength=ngroups * nsec)
    return counts.reshape(ngroups, nsec).max(axis=1)


def _cadence_cv(codes: np.ndarray, ts: np.ndarray, ngroups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the inter-arrival coefficient of variation (NaN under 3 requests)
    and the time order of the rows grouped by ``codes``."""
    order = np.lexsort((ts, codes))
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
    return cv, order


def build_frame(index: int, window_ns: int, rows: Rows) -> WindowFrame:
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
    flags = pd.DataFrame({
        "one": np.ones(n, dtype=np.int64), "err": st >= 500, "deny": (st == 401) | (st == 403),
        "nf": st == 404, "ok": ok, "r429": st == 429, "authy": auth == 1, "authn": auth == 0,
        "noauth_ok": (auth == 0) & ok, "ts": ts, "size": df["size"].to_numpy(), "dur": df["dur"].to_numpy(),
    }, copy=False)

    # Per endpoint.
    g = flags.groupby(ep_codes, sort=True)
    ep = g[_FLAGS].sum().rename(columns={"one": "n"})
    gts = g["ts"]
    ep["tmin"] = gts.min()
    ep["tmax"] = gts.max()
    ep["maxsize"] = g["size"].max()
    pair_ep = (pair_uni // nc).astype(np.int64)
    pair_cc = (pair_uni % nc).astype(np.int64)
    real = cc_uni[pair_cc] != "" if npair else np.zeros(0, dtype=bool)
    ep["clients"] = np.bincount(pair_ep[real], minlength=ne)
    gd = g["dur"]
    ep["p95"] = gd.quantile(0.95)
    ep["p50"] = gd.median()
    ep["peak"] = _first_max(ep_codes, sec, ne)
    ep.index = pd.Index(ep_uni, name="ep")

    # Per endpoint and client.
    gc = flags.groupby(pair_codes, sort=True)
    cl = gc[_FLAGS].sum().rename(columns={"one": "n"})
    gts = gc["ts"]
    cl["tmin"] = gts.min()
    cl["tmax"] = gts.max()
    cl["maxsize"] = gc["size"].max()
    has_oid = oid_codes >= 0
    if has_oid.any():
        noid = int(oid_codes.max()) + 1
        uniq = np.unique(pair_codes[has_oid].astype(np.int64) * noid + oid_codes[has_oid])
        cl["ids"] = np.bincount(uniq // noid, minlength=npair)
        # Distinct resources: distinct (endpoint, object id) pairs, an id-less endpoint counting once.
        res = np.unique(pair_codes.astype(np.int64) * (noid + 1) + (oid_codes + 1))
        res_pair = res // (noid + 1)
    else:
        cl["ids"] = 0
        res_pair = np.arange(npair)
    first = np.unique(pair_codes, return_index=True)[1]
    uac = df["uac"].to_numpy()
    cl["uac"] = uac[first]
    cl["peak"] = _first_max(pair_codes, sec, npair)
    cl.index = pd.MultiIndex.from_arrays([ep_uni[pair_ep], cc_uni[pair_cc]], names=["ep", "client"])
    cl = cl[real]  # edge rows have no client

    # Per client.
    gcc = flags.groupby(cc_codes, sort=True)
    cc = gcc[["one", "ok"]].sum().rename(columns={"one": "n"})
    gts = gcc["ts"]
    cc["tmin"] = gts.min()
    cc["tmax"] = gts.max()
    cc["paths"] = np.bincount(pair_cc[res_pair], minlength=len(cc_uni))
    cc["eps"] = np.bincount(pair_cc, minlength=len(cc_uni))
    cc["uac"] = uac[np.unique(cc_codes, return_index=True)[1]]
    cv, cc_order = _cadence_cv(cc_codes, ts, len(cc_uni))
    cc["cv"] = cv
    cc.index = pd.Index(cc_uni, name="client")
    cc = cc[cc.index != ""]

    ep_idx = {k: i for i, k in enumerate(ep_uni)}
    cc_idx = {k: i for i, k in enumerate(cc_uni)}
    pair_idx = pd.Index(pair_uni)

    def pair_of(key: tuple[str, str]) -> int:
        e, c = ep_idx.get(key[0], -1), cc_idx.get(key[1], -1)
        if e < 0 or c < 0:
            return -1
        loc = pair_idx.get_indexer([e * nc + c])[0]
        return int(loc)

    cc_pos = Positions(cc_codes, lambda k: cc_idx.get(k, -1))
    cc_pos._order, cc_pos._bounds = cc_order, np.concatenate(([0], np.cumsum(np.bincount(cc_codes))))
    return WindowFrame(
        index=index,
        start_ns=index * window_ns,
        end_ns=(index + 1) * window_ns,
        df=df,
        ep=ep,
        cl=cl,
        cc=cc,
        cl_pos=Positions(pair_codes, pair_of, ts),
        cc_pos=cc_pos,
        ep_pos=Positions(ep_codes, lambda k: ep_idx.get(k, -1)),
    )


def update_baselines(w: WindowFrame, st: AbuseState) -> None:
    """Fold a closed window into the endpoint baselines (clipped after warm-up)."""
    s = st.settings
    a = s.ewma_alpha
    cl_n = w.cl["n"]
    cl_ids = w.cl["ids"]
    cl_peak = w.cl["peak"]
    per_ep_max_ids = cl_ids.groupby(level=0).max()
    for ep, row in w.ep.iterrows():
        b: EndpointBaseline | None = st.endpoints.get(str(ep))
        if b is None:
            continue
        warm = b.warm(int(row["tmax"]), s)
        n = float(row["n"])
        if warm and b.count.n:
            n = min(n, b.count.mean + 4 * b.count.dev + 1)
        b.count.update(n, a)
        b.p95_ms.update(float(row["p95"]) if not warm else min(float(row["p95"]), 3 * b.p95_ms.mean + 1), a)
        b.err_rate.update(float(row["err"]) / max(1.0, float(row["n"])), a)
        b.fail_count.update(float(row["deny"]), a)
        ms = float(row["maxsize"])
        if ms >= 0:
            b.max_size.update(ms if not warm else min(ms, 4 * b.max_size.mean + 1), a)
        ids = float(per_ep_max_ids.get(ep, 0) or 0)
        b.ids_per_client.update(ids if not warm else min(ids, 3 * b.ids_per_client.mean + 2), a)
        b.auth_yes += int(row["authy"])
        b.auth_no += int(row["authn"])
        if row["r429"]:
            b.saw_429 = True
        b.total += int(row["n"])
        b.windows += 1
        b.last_ns = max(b.last_ns, int(row["tmax"]))
        b.endpoint_peak.add(float(row["peak"]))
        if b.windows % s.sketch_rotate_windows == 0:
            b.client_rate.rotate()
            b.client_peak.rotate()
            b.endpoint_peak.rotate()
    # Per-client distributions (sketches), skipping clients flagged as outliers; equal
    # values are added once with their multiplicity (one sketch update per distinct value).
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
        if b.client_rate.count > 200:
            lim = max(s.client_spike_min, s.client_spike_ratio * (b.client_rate.quantile(0.99) + 1))
            keep = n <= lim
            n, peak = n[keep], peak[keep]
        for value, count in zip(*np.unique(n, return_counts=True), strict=True):
            b.client_rate.add(float(value), float(count))
        for value, count in zip(*np.unique(peak, return_counts=True), strict=True):
            b.client_peak.add(float(value), float(count))
