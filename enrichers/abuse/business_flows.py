"""Sensitive business flows (API6): bursts on signup, password reset, checkout,
OTP and coupon routes from automated clients (tool, headless or scanner user
agents, machine-regular cadence) or far above what any person does."""

from __future__ import annotations

import pandas as pd

from enrichers.abuse import rules
from enrichers.abuse.context import EndpointRef
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.floods import cadence_cv
from enrichers.abuse.identity import SERVICE_PREFIX
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, iter_rows

AUTOMATED = frozenset({"tool", "headless", "scanner", "none"})


def on_window(w: WindowFrame, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef]) -> None:
    flows = [k for k in w.ep.index if (r := eps.get(str(k))) is not None and r.info.flow]
    if not flows:
        return
    cl = w.cl
    cand = cl[(cl["n"] >= s.flow_burst_min) & cl.index.get_level_values(0).isin(flows)]
    if cand.empty:
        return
    ts_col = w.df["ts"].to_numpy()
    for (key, client), row in iter_rows(cand):
        ref = eps.get(str(key))
        if ref is None or not ref.info.flow:
            continue
        n = int(row["n"])
        uac = str(row["uac"])
        pos = w.cl_pos[(key, client)]
        cv = cadence_cv(ts_col[pos])
        automated = uac in AUTOMATED or (cv is not None and cv <= 2 * s.metronome_max_cv)
        # Far above what any person does, unless the client is a calling service (a gateway
        # forwards everyone's requests to the flow).
        if not automated and (n < 3 * s.flow_burst_min or str(client).startswith(SERVICE_PREFIX)):
            continue
        sink.hit(
            rules.FLOW_BURST, ref.subject(str(client), detail=ref.info.flow), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=n, confidence=0.85 if automated else 0.7,
            explanation=f"{client} hit the {ref.info.flow} flow {n} times in {s.window_seconds:g}s"
            + (f" as a {uac} client" if uac in AUTOMATED else ""),
            evidence={"flow": ref.info.flow, "observed_per_window": n, "threshold": s.flow_burst_min,
                      "user_agent_class": uac, "interarrival_cv": None if cv is None else round(cv, 4)},
            trace_ids=w.traces(pos),
        )


def on_horizon(h: pd.DataFrame, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef]) -> None:
    """Slow flow abuse: an automated client hitting one flow ``horizon_flow_min`` times
    over the per-client horizon, however it spreads them over windows."""
    h = h[h["uac"].isin(AUTOMATED)]
    if h.empty:
        return
    flows = [k for k in h["ep"].unique() if (r := eps.get(str(k))) is not None and r.info.flow]
    if not flows:
        return
    h = h[h["ep"].isin(flows)]
    agg = h.groupby(["ep", "client"], sort=False).agg(
        n=("ts", "size"), tmin=("ts", "min"), tmax=("ts", "max"), uac=("uac", "first"))
    minutes = s.horizon_seconds / 60
    for (key, client), row in iter_rows(agg[agg["n"] >= s.horizon_flow_min]):
        ref = eps.get(str(key))
        if ref is None:
            continue
        n = int(row["n"])
        sink.hit(
            rules.FLOW_BURST, ref.subject(str(client), detail=ref.info.flow), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=n, confidence=0.75,
            explanation=f"{client} hit the {ref.info.flow} flow {n} times within {minutes:g} min "
            f"as a {row['uac']} client",
            evidence={"flow": ref.info.flow, "observed_in_horizon": n, "threshold": s.horizon_flow_min,
                      "horizon_seconds": s.horizon_seconds, "user_agent_class": str(row["uac"])},
        )
