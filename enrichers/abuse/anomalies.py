"""Latency and error-rate anomalies per endpoint (and per call-graph edge):
slow windows hint at ReDoS or resource exhaustion, error bursts at probing."""

from __future__ import annotations

from enrichers.abuse import rules
from enrichers.abuse.baselines import AbuseState
from enrichers.abuse.context import EndpointRef
from enrichers.abuse.findings import FindingSink
from enrichers.abuse.settings import AbuseSettings
from enrichers.abuse.windows import WindowFrame, iter_rows


def on_window(
    w: WindowFrame, st: AbuseState, sink: FindingSink, s: AbuseSettings, eps: dict[str, EndpointRef],
) -> None:
    for key, row in iter_rows(w.ep):
        b = st.endpoints.get(str(key))
        ref = eps.get(str(key))
        if b is None or ref is None or not b.warm(w.start_ns, s):
            continue
        n = int(row["n"])
        p95 = float(row["p95"])
        usual = b.p95_ms.mean
        if n >= s.latency_min_requests and p95 >= s.latency_min_ms and p95 > s.latency_ratio * max(usual, 1.0):
            sink.hit(
                rules.LATENCY, ref.subject(), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]), count=n,
                confidence=0.7,
                explanation=f"p95 latency {p95:.0f} ms over {n} requests; usually {usual:.0f} ms",
                evidence={"baseline_p95_ms": round(usual, 1), "observed_p95_ms": round(p95, 1),
                          "observed_p50_ms": round(float(row["p50"]), 1), "requests": n},
                trace_ids=w.traces(w.ep_pos[key]),
            )
        rate = float(row["err"]) / max(n, 1)
        usual_err = b.err_rate.mean
        if n >= s.error_rate_min_requests and rate >= s.error_rate_min and rate > 5 * usual_err:
            sink.hit(
                rules.ERROR_RATE, ref.subject(), first_ns=int(row["tmin"]), last_ns=int(row["tmax"]),
                count=int(row["err"]), confidence=0.7,
                explanation=f"{rate:.0%} of {n} requests failed; usually {usual_err:.1%}",
                evidence={"baseline_error_rate": round(usual_err, 4), "observed_error_rate": round(rate, 4),
                          "requests": n},
                trace_ids=w.traces(w.ep_pos[key]),
            )
