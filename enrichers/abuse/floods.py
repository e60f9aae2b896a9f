"""Floods and bots: rate spikes per endpoint and per client (and whether anything
ever answered 429), headless and attack-tool clients, machine-regular cadence,
and scraping (many distinct resources in one window)."""

from __future__ import annotations

import numpy as np

from agent.model import Severity, Subject
from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.identity import SERVICE_PREFIX
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, client_limit, flooded, iter_rows

AUTOMATED = frozenset({"headless", "scanner"})
#: Client label of a calling service (see :mod:`enrichers.abuse.identity`).
#: Requests in one window from one tool-agent client (curl, python-requests, ...) on one
#: endpoint that make it a sustained automated client rather than a handful of manual calls.
TOOL_MIN_REQUESTS = 20


def on_window(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
    skip_clients: set[str],
) -> None:
    ws = s.window_seconds
    # Only endpoints past the absolute minimum can flood (a vectorised filter first).
    for key, row in iter_rows(w.ep[w.ep["n"] >= s.endpoint_spike_min]):
        b = st.endpoints.get(str(key))
        ref = eps.get(str(key))
        if b is None or ref is None or not b.warm(w.start_ns, s):
            continue
        n = int(row["n"])
        base = b.count
        if flooded(b, n, s):
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
    for (key, client), row in iter_rows(cand):
        b = st.endpoints.get(str(key))
        ref = eps.get(str(key))
        # A service caller (a gateway, a BFF) sends the requests of many users: compared
        # with the endpoint's single clients it always looks like a spike. It is judged
        # against its own history instead (client_history), and floods by the endpoint check.
        if (b is None or ref is None or client in skip_clients or str(client).startswith(SERVICE_PREFIX)
                or not b.warm(w.start_ns, s)):
            continue
        lim = limits.get(key)
        if lim is None:
            lim = limits[key] = client_limit(b, s)
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
    for client, row in iter_rows(cc[cc["uac"].isin(AUTOMATED) & (cc["n"] >= s.headless_min_requests)]):
        sink.hit(
            rules.HEADLESS, Subject(client=str(client), detail=str(row["uac"])), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=int(row["n"]), confidence=0.9,
            explanation=f"{client} identifies as a {row['uac']} client ({int(row['n'])} requests in {ws:g}s)",
            evidence={"user_agent_class": str(row["uac"]), "observed_per_window": int(row["n"])},
            trace_ids=w.traces(w.cc_pos[client]),
        )
    check_tools(w, sink, s, eps, skip_clients)
    regular = cc[(cc["n"] >= s.metronome_min_requests) & (cc["uac"] != "probe") & (cc["cv"] <= s.metronome_max_cv)]
    for client, row in iter_rows(regular):
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
    for client, row in iter_rows(cc[cc["paths"] >= s.scraping_min_distinct]):
        # A calling service (a gateway) fans out many users' reads: not one scraper.
        if client in skip_clients or row["ok"] < 0.8 * row["n"] or str(client).startswith(SERVICE_PREFIX):
            continue
        sink.hit(
            rules.SCRAPING, Subject(client=str(client), detail="scraping"), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=int(row["n"]), confidence=0.8,
            explanation=f"{client} read {int(row['paths'])} distinct resources in {ws:g}s",
            evidence={"distinct_resources": int(row["paths"]), "threshold": s.scraping_min_distinct,
                      "endpoints": int(row["eps"])},
            trace_ids=w.traces(w.cc_pos[client]),
        )


def client_history(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
    skip_clients: set[str],
) -> None:
    """A client far above its own usual request count or error share (its own baseline,
    after its warm-up), reported on the endpoint it used most in the window."""
    stats = st.client_stats
    if not stats:
        return
    cc = w.cc
    ws = s.window_seconds
    n = cc["n"]
    share = cc["bad"] / n
    cand = cc[(n >= s.client_spike_min) | ((n >= s.client_error_min_requests) & (share >= s.client_error_share_min))]
    ep_col = w.df["ep"].to_numpy()
    for client, row in iter_rows(cand):
        c = stats.get(str(client))
        if c is None or client in skip_clients or not c.warm(w.start_ns, s):
            continue
        count = int(row["n"])
        usual = c.rate.mean + 3 * c.rate.dev + 1
        err = float(row["bad"]) / count
        usual_err = c.err.mean + 3 * c.err.dev + 0.1
        rate_spike = count >= s.client_spike_min and count > s.client_own_ratio * usual
        err_spike = count >= s.client_error_min_requests and err >= s.client_error_share_min and err > usual_err
        if not rate_spike and not err_spike:
            continue
        pos = w.cc_pos[client]
        keys, counts = np.unique(ep_col[pos], return_counts=True)
        ref = eps.get(str(keys[int(np.argmax(counts))]))
        if ref is None:
            continue
        ev = {"baseline": "client", "client_windows": c.windows, "observed_per_window": count,
              "window_seconds": ws, "client_usual_per_window": round(c.rate.mean, 1),
              "client_usual_error_share": round(c.err.mean, 3), "observed_error_share": round(err, 3)}
        if rate_spike:
            sink.hit(
                rules.CLIENT_SPIKE, ref.subject(str(client)), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
                count=count, confidence=min(0.95, 0.6 + 0.02 * count / max(usual, 1.0)),
                explanation=f"{client} sent {count} requests in {ws:g}s; it usually sends {c.rate.mean:.0f}",
                evidence=ev, trace_ids=w.traces(pos),
            )
        if err_spike:
            sink.hit(
                rules.ERROR_RATE, ref.subject(str(client)), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
                count=int(row["bad"]), confidence=0.7,
                explanation=f"{err:.0%} of {client}'s {count} requests failed in {ws:g}s; usually {c.err.mean:.1%}",
                evidence=ev, trace_ids=w.traces(pos),
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


def check_tools(
    w: WindowFrame, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef], skip_clients: set[str],
) -> None:
    """Non-browser tool agents from outside the organisation calling an endpoint at a
    sustained rate: one low-severity finding per client and endpoint. Tool agents of
    services and private addresses are classed ``service`` (see ``Principal.uac``), so
    service-to-service traffic never reaches this check."""
    busy = w.cl[w.cl["n"] >= TOOL_MIN_REQUESTS]  # the cheap numeric filter first
    for (key, client), row in iter_rows(busy[busy["uac"] == "tool"]):
        ref = eps.get(str(key))
        if ref is None or client in skip_clients:
            continue
        n = int(row["n"])
        sink.hit(
            rules.AUTOMATED_CLIENT, ref.subject(str(client), detail="tool"), first_ns=int(row["tmin"]),
            last_ns=int(row["tmax"]), count=n, confidence=0.6, severity=Severity.LOW,
            explanation=f"{client} called {ref.route} {n} times in {s.window_seconds:g}s with a non-browser tool agent",
            evidence={"user_agent_class": "tool", "observed_per_window": n, "threshold": TOOL_MIN_REQUESTS},
            trace_ids=w.client_traces(str(key), str(client)),
        )
