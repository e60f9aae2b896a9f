"""Floods and bots: rate spikes per endpoint and per client (and whether anything
ever answered 429), headless and attack-tool clients, machine-regular cadence,
and scraping (many distinct resources in one window)."""

from __future__ import annotations

import numpy as np

from agent.model import Subject
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame

AUTOMATED = frozenset({"headless", "scanner"})


def on_window(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
    skip_clients: set[str],
) -> None:
    ws = s.window_seconds
    for key, row in w.ep.iterrows():
        b = st.endpoints.get(str(key))
        ref = eps.get(str(key))
        if b is None or ref is None or not b.warm(w.start_ns, s):
            continue
        n = int(row["n"])
        base = b.count
        if (
            n >= s.endpoint_spike_min
            and n > s.endpoint_spike_ratio * base.mean
            and n > base.mean + s.endpoint_spike_devs * max(base.dev, 1.0)
        ):
            sink.hit(
                rules.ENDPOINT_FLOOD, ref.subject(), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
                count=n, confidence=min(0.99, 0.6 + 0.05 * n / max(base.mean, 1.0)),
                explanation=(
                    f"{n} calls to {ref.edge_server} in {ws:g}s; usually {base.mean:.0f}" if ref.edge_server else
                    f"{n} requests in {ws:g}s from {int(row['clients'])} clients; usually {base.mean:.0f}"
                ),
                evidence={"baseline_per_window": round(base.mean, 1), "baseline_deviation": round(base.dev, 1),
                          "observed_per_window": n, "distinct_clients": int(row["clients"]), "window_seconds": ws},
                trace_ids=w.traces(w.ep_pos[key]),
            )
    cand = w.cl[w.cl["n"] >= s.client_spike_min]
    limits: dict[str, float] = {}
    for (key, client), row in cand.iterrows():
        b = st.endpoints.get(str(key))
        ref = eps.get(str(key))
        if b is None or ref is None or client in skip_clients or not b.warm(w.start_ns, s):
            continue
        lim = limits.get(key)
        if lim is None:
            p99 = b.client_rate.quantile(0.99) if b.client_rate.count >= 50 else 0.0
            lim = limits[key] = max(float(s.client_spike_min), s.client_spike_ratio * (p99 + 1.0))
        n = int(row["n"])
        if n <= lim:
            continue
        p99 = lim / s.client_spike_ratio - 1.0
        ev = {"baseline_p99_per_client_per_window": round(p99, 1), "observed_per_window": n,
              "window_seconds": ws, "responses_429": int(row["r429"])}
        traces = w.client_traces(key, client)
        sink.hit(
            rules.CLIENT_SPIKE, ref.subject(client), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
            count=n, confidence=min(0.99, 0.6 + 0.02 * n / max(p99, 1.0)),
            explanation=f"{client} sent {n} requests in {ws:g}s; clients usually stay under {p99:.0f}",
            evidence=ev, trace_ids=traces,
        )
        if not b.saw_429 and not row["r429"]:
            sink.hit(
                rules.NO_RATE_LIMIT, ref.subject(client), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
                count=n, confidence=0.8,
                explanation=f"{client} sent {n} requests in {ws:g}s and the endpoint never answered 429",
                evidence={**ev, "ever_429": False}, trace_ids=traces,
            )
    cc = w.cc
    for client, row in cc[cc["uac"].isin(AUTOMATED) & (cc["n"] >= s.headless_min_requests)].iterrows():
        sink.hit(
            rules.HEADLESS, Subject(client=str(client), detail=str(row["uac"])), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=int(row["n"]), confidence=0.9,
            explanation=f"{client} identifies as a {row['uac']} client ({int(row['n'])} requests in {ws:g}s)",
            evidence={"user_agent_class": str(row["uac"]), "observed_per_window": int(row["n"])},
            trace_ids=w.traces(w.cc_pos[client]),
        )
    regular = cc[(cc["n"] >= s.metronome_min_requests) & (cc["uac"] != "probe") & (cc["cv"] <= s.metronome_max_cv)]
    for client, row in regular.iterrows():
        if client in skip_clients:
            continue
        cv = float(row["cv"])
        sink.hit(
            rules.METRONOME, Subject(client=str(client), detail="cadence"), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=int(row["n"]), confidence=0.85,
            explanation=f"{client} sent {int(row['n'])} requests at machine-regular intervals (cv {cv:.3f})",
            evidence={"interarrival_cv": round(cv, 4), "baseline_max_cv": s.metronome_max_cv,
                      "observed_per_window": int(row["n"])},
            trace_ids=w.traces(w.cc_pos[client]),
        )
    for client, row in cc[cc["paths"] >= s.scraping_min_distinct].iterrows():
        if client in skip_clients or row["ok"] < 0.8 * row["n"]:
            continue
        sink.hit(
            rules.SCRAPING, Subject(client=str(client), detail="scraping"), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=int(row["n"]), confidence=0.8,
            explanation=f"{client} read {int(row['paths'])} distinct resources in {ws:g}s",
            evidence={"distinct_resources": int(row["paths"]), "threshold": s.scraping_min_distinct,
                      "endpoints": int(row["eps"])},
            trace_ids=w.traces(w.cc_pos[client]),
        )


def cadence_cv(ts: np.ndarray) -> float | None:
    """Coefficient of variation of the inter-arrival times (0 = perfectly regular)."""
    if len(ts) < 3:
        return None
    d = np.diff(np.sort(ts)).astype(float)
    m = d.mean()
    if m <= 0:
        return None
    return float(d.std() / m)
