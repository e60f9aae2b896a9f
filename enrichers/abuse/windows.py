"""Window statistics: one pandas aggregation per closed window, shared by every
window-based detection, then the baseline update.

Detections compare a window with the baselines learned from the windows before
it; the window then updates the baselines, clipped so an attack in progress
does not teach the baseline that attacks are normal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from enrichers.abuse.baselines import AbuseState, EndpointBaseline
from enrichers.abuse.rows import Rows


@dataclass(slots=True)
class WindowFrame:
    """The requests of one closed window and their aggregates."""

    index: int
    start_ns: int
    end_ns: int
    df: pd.DataFrame
    ep: pd.DataFrame  # index: ep
    cl: pd.DataFrame  # index: (ep, client)
    cc: pd.DataFrame  # index: client
    cl_pos: dict[Any, np.ndarray]
    cc_pos: dict[Any, np.ndarray]
    ep_pos: dict[Any, np.ndarray]

    def traces(self, positions: np.ndarray, n: int = 5) -> list[str]:
        col = self.df["trace"].to_numpy()
        out: list[str] = []
        for p in positions[:50]:
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


def build_frame(index: int, window_ns: int, rows: Rows) -> WindowFrame:
    df = rows.frame()
    st = df["status"].to_numpy()
    auth = df["auth"].to_numpy()
    ok = (st >= 200) & (st < 400)
    df["one"] = 1
    df["err"] = st >= 500
    df["deny"] = (st == 401) | (st == 403)
    df["nf"] = st == 404
    df["ok"] = ok
    df["r429"] = st == 429
    df["authy"] = auth == 1
    df["authn"] = auth == 0
    df["noauth_ok"] = (auth == 0) & ok
    df["oidn"] = df["oid"].replace("", None)
    df["sec"] = df["ts"] // 1_000_000_000
    # Few cython aggregations (sum/min/max/nunique), not a per-column dict of functions.
    g = df.groupby("ep", sort=False)
    ep = g[_FLAGS].sum().rename(columns={"one": "n"})
    ts = g["ts"]
    ep["tmin"] = ts.min()
    ep["tmax"] = ts.max()
    ep["maxsize"] = g["size"].max()
    ep["clients"] = g["client"].nunique()
    dur = g["dur"]
    ep["p95"] = dur.quantile(0.95)
    ep["p50"] = dur.median()
    ep["peak"] = df.groupby(["ep", "sec"], sort=False).size().groupby(level=0).max()
    gc = df.groupby(["ep", "client"], sort=False)
    cl = gc[_FLAGS].sum().rename(columns={"one": "n"})
    ts = gc["ts"]
    cl["tmin"] = ts.min()
    cl["tmax"] = ts.max()
    cl["maxsize"] = gc["size"].max()
    cl["ids"] = gc["oidn"].nunique()
    cl["uac"] = gc["uac"].first()
    cl["peak"] = df.groupby(["ep", "client", "sec"], sort=False).size().groupby(level=[0, 1]).max()
    cl = cl.drop(index="", level=1, errors="ignore")  # edge rows have no client
    gcc = df.groupby("client", sort=False)
    cc = gcc[["one", "ok"]].sum().rename(columns={"one": "n"})
    ts = gcc["ts"]
    cc["tmin"] = ts.min()
    cc["tmax"] = ts.max()
    cc["paths"] = gcc["path"].nunique()
    cc["eps"] = gcc["ep"].nunique()
    cc["uac"] = gcc["uac"].first()
    cc = cc.drop(index="", errors="ignore")
    return WindowFrame(
        index=index,
        start_ns=index * window_ns,
        end_ns=(index + 1) * window_ns,
        df=df,
        ep=ep,
        cl=cl,
        cc=cc,
        cl_pos=gc.indices,
        cc_pos=gcc.indices,
        ep_pos=g.indices,
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
    # Per-client distributions (sketches), skipping clients flagged as outliers.
    idx = cl_n.index
    limits: dict[str, float] = {}
    for (ep, _client), n, peak in zip(idx, cl_n.to_numpy(), cl_peak.to_numpy(), strict=True):
        b = st.endpoints.get(str(ep))
        if b is None:
            continue
        lim = limits.get(ep)
        if lim is None:
            lim = limits[ep] = (
                max(s.client_spike_min, s.client_spike_ratio * (b.client_rate.quantile(0.99) + 1))
                if b.client_rate.count > 200
                else float("inf")
            )
        if n > lim:
            continue
        b.client_rate.add(float(n))
        b.client_peak.add(float(peak))
