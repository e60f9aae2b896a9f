"""Broken object-level authorization (API1): one client touching many distinct
object ids on a parameterised route (with a high 403/404 share, a sequential
walk, or far more ids than clients usually touch), and a principal reading
objects whose path names another principal."""

from __future__ import annotations

import numpy as np
import pandas as pd

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef, Request
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.routes import path_user
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, iter_rows


def on_window(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
) -> set[str]:
    """Flag enumerating clients; returns them so scraping does not double-report."""
    flagged: set[str] = set()
    cand = w.cl[w.cl["ids"] >= s.bola_min_distinct_ids]
    if cand.empty:
        return flagged
    ts_col = w.df["ts"].to_numpy()
    numbers: np.ndarray | None = None  # each distinct id's number, made on first use
    for (key, client), row in iter_rows(cand):
        ref = eps.get(str(key))
        if ref is None or not ref.info.parameterised:
            continue
        n = int(row["n"])
        ids = int(row["ids"])
        denied = (int(row["deny"]) + int(row["nf"])) / max(n, 1)
        pos = w.cl_pos[(key, client)]
        if numbers is None:
            numbers = _id_numbers(w.oid_uni)
        # sequential_share, from each distinct id's number (converted once per window)
        x = numbers[w.oid_code[pos][np.argsort(ts_col[pos], kind="stable")]]
        seq = _unit_steps(x[x >= 0])
        b = st.endpoints.get(str(key))
        usual = b.ids_per_client.mean + 2 * b.ids_per_client.dev if b is not None and b.ids_per_client.n else 0.0
        far = b is not None and b.warm(w.start_ns, s) and ids > max(4 * usual, 2 * s.bola_min_distinct_ids)
        # Walking public objects (a catalog) is scraping; walking objects that belong to
        # someone (orders, users, ...) or being refused on most of them is BOLA.
        if denied < s.bola_min_denied_share and not (ref.info.private and (seq >= s.bola_sequential_share or far)):
            continue
        flagged.add(str(client))
        reasons = []
        if denied >= s.bola_min_denied_share:
            reasons.append(f"{denied:.0%} denied or not found")
        if seq >= s.bola_sequential_share:
            reasons.append("sequential id walk")
        if far:
            reasons.append(f"usual clients touch up to {usual:.0f}")
        sink.hit(
            rules.BOLA_ENUM, ref.subject(str(client)), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
            count=n, confidence=min(0.99, 0.55 + 0.2 * len(reasons)),
            explanation=f"{client} touched {ids} distinct ids on {ref.route} in {s.window_seconds:g}s ("
            + ", ".join(reasons) + ")",
            evidence={"distinct_object_ids": ids, "denied_or_not_found_share": round(denied, 3),
                      "sequential_share": round(seq, 3), "baseline_ids_per_client": round(usual, 1),
                      "threshold": s.bola_min_distinct_ids},
            trace_ids=w.traces(pos),
        )
    return flagged


def on_horizon(h: pd.DataFrame, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef]) -> None:
    """Slow enumeration: over the per-client horizon (see :class:`~enrichers.abuse.windows.Horizon`),
    one client touching many distinct ids of a parameterised route with a high
    denied share, or walking a private route's ids in sequence."""
    oids = h["oid"].to_numpy()
    has = oids != ""
    if not has.any():
        return
    oids = oids[has]
    ep_c, ep_u = pd.factorize(h["ep"].to_numpy()[has])
    cl_c, cl_u = pd.factorize(h["client"].to_numpy()[has])
    oid_c, oid_u = pd.factorize(oids)
    nc, noid = len(cl_u), len(oid_u)
    pair_c, pair_u = pd.factorize(ep_c.astype(np.int64) * nc + cl_c)
    distinct = np.unique(pair_c.astype(np.int64) * noid + oid_c)
    ids = np.bincount(distinct // noid, minlength=len(pair_u))
    cand = np.flatnonzero(ids >= s.horizon_min_distinct_ids)
    if not len(cand):
        return
    ts = h["ts"].to_numpy()[has]
    n_all = np.bincount(pair_c, minlength=len(pair_u))
    denied_all = np.bincount(pair_c, weights=h["denied"].to_numpy()[has], minlength=len(pair_u))
    minutes = s.horizon_seconds / 60
    for p in cand.tolist():
        key, client = str(ep_u[pair_u[p] // nc]), str(cl_u[pair_u[p] % nc])
        ref = eps.get(key)
        if ref is None or not ref.info.parameterised:
            continue
        pos = np.flatnonzero(pair_c == p)
        n = int(n_all[p])
        denied = float(denied_all[p]) / max(n, 1)
        # Each distinct id once, at its first request: repeated reads of the client's own
        # objects between the steps of a walk do not hide it.
        o, t = oid_c[pos], ts[pos]
        order = np.lexsort((t, o))
        first = order[np.concatenate(([True], o[order][1:] != o[order][:-1]))]
        seq = sequential_share(oids[pos][first], t[first])
        if denied < s.bola_min_denied_share and not (ref.info.private and seq >= s.bola_sequential_share):
            continue
        reasons = []
        if denied >= s.bola_min_denied_share:
            reasons.append(f"{denied:.0%} denied or not found")
        if seq >= s.bola_sequential_share:
            reasons.append("sequential id walk")
        sink.hit(
            rules.BOLA_ENUM, ref.subject(client), first_ns=int(t.min()), last_ns=int(t.max()),
            count=n, confidence=min(0.95, 0.55 + 0.2 * len(reasons)),
            explanation=f"{client} touched {int(ids[p])} distinct ids on {ref.route} within {minutes:g} min ("
            + ", ".join(reasons) + ")",
            evidence={"distinct_object_ids": int(ids[p]), "denied_or_not_found_share": round(denied, 3),
                      "sequential_share": round(seq, 3), "horizon_seconds": s.horizon_seconds,
                      "threshold": s.horizon_min_distinct_ids},
        )


def sequential_share(oids: np.ndarray, ts: np.ndarray) -> float:
    """Share of consecutive requests (in time order) whose numeric ids differ by one."""
    order = np.argsort(ts, kind="stable")
    # One comprehension over a plain list (not a loop over numpy object scalars).
    nums = [int(o) for o in oids[order].tolist() if o and o.isdecimal() and len(o) < 18]
    return _unit_steps(np.asarray(nums, dtype=np.int64))


def _unit_steps(nums: np.ndarray) -> float:
    """:func:`sequential_share` of the numeric ids, in time order."""
    if len(nums) < 5:
        return 0.0
    d = np.abs(np.diff(nums))
    return float((d == 1).mean())


def _id_numbers(oids: np.ndarray) -> np.ndarray:
    """Per distinct object id, the number :func:`sequential_share` reads from it (-1: not
    a plain number), then one -1 more for the code -1 (no id). (``isdecimal``, not
    ``isdigit``: ``int`` refuses superscript digits such as ``²``, which ``isdigit`` accepts.)"""
    nums = [int(o) if o and o.isdecimal() and len(o) < 18 else -1 for o in oids.tolist()]
    nums.append(-1)
    return np.asarray(nums, dtype=np.int64)


class ForeignObjectTracker:
    """Per window: distinct foreign user identifiers each principal read."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], set[str]] = {}

    def clear(self) -> None:
        self._seen.clear()

    def check(self, req: Request, sink: FindingSink, s: AbuseSettings) -> None:
        info = req.ep.info
        me = req.who.principal
        if info.user_param < 0 or not me or not (200 <= req.status < 300):
            return
        named = path_user(info, req.http.path)
        if not named or named == me or named.lower() in ("me", "self", "current"):
            return
        key = (req.ep.key, req.client)
        seen = self._seen.get(key)
        if seen is None:
            if len(self._seen) > 10_000:
                self._seen.clear()
            seen = self._seen[key] = set()
        if len(seen) < 1000:
            seen.add(named)
        if len(seen) >= s.bola_foreign_min:
            sink.hit(
                rules.BOLA_FOREIGN, req.ep.subject(req.client), first_ns=req.ts, confidence=0.8,
                explanation=f"{req.client} read {len(seen)} objects whose path names another principal",
                evidence={"distinct_foreign_identifiers": len(seen), "threshold": s.bola_foreign_min},
                trace_ids=(req.span.trace_id,), span_ids=(req.span.span_id,),
            )
