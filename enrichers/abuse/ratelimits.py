"""Rate-limit recommendations from the learned baselines, as Envoy, NGINX and AWS
API Gateway configuration, each number with the evidence behind it.

Per client: a high percentile (p99) of the per-client request count per window,
turned into requests per second, times a headroom factor; the burst is the p99
of the per-client busiest second, times the same headroom. Per endpoint: the
p99 of the endpoint's busiest second per window, times the headroom.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from enrichers.abuse.baselines import AbuseState

FORMATS = ("envoy", "nginx", "aws", "json")
_PARAM = re.compile(r"\{[^}]*\}|:[A-Za-z_]\w*|<[^>]*>")


@dataclass(frozen=True, slots=True)
class Recommendation:
    service: str
    method: str
    route: str
    per_client_rps: int
    per_client_burst: int
    endpoint_rps: int
    evidence: dict[str, Any]


def recommend(st: AbuseState, *, headroom: float = 2.0, min_windows: int = 6) -> list[Recommendation]:
    """One recommendation per endpoint with enough closed windows (edges excluded)."""
    ws = st.settings.window_seconds
    out = []
    for key, b in sorted(st.endpoints.items()):
        if key.startswith("edge:") or b.windows < min_windows or b.client_rate.count == 0:
            continue
        p50 = b.client_rate.quantile(0.5)
        p99 = b.client_rate.quantile(0.99)
        peak99 = b.client_peak.quantile(0.99)
        ep_peak99 = b.endpoint_peak.quantile(0.99)
        rps = max(1, math.ceil(p99 / ws * headroom))
        burst = max(rps, math.ceil(peak99 * headroom))
        out.append(Recommendation(
            service=b.service, method=b.method, route=b.route, per_client_rps=rps, per_client_burst=burst,
            endpoint_rps=max(rps, math.ceil(ep_peak99 * headroom)),
            evidence={
                "windows": b.windows, "window_seconds": ws, "requests": b.total,
                "clients_observed": int(b.client_rate.count),
                "per_client_per_window_p50": round(p50, 1), "per_client_per_window_p99": round(p99, 1),
                "per_client_peak_second_p99": round(peak99, 1), "endpoint_peak_second_p99": round(ep_peak99, 1),
                "headroom": headroom, "ever_429": b.saw_429,
            },
        ))
    return out


def _slug(r: Recommendation) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", f"{r.service}_{r.method}_{r.route}").strip("_").lower()
    return s[:60] or "endpoint"


def _regex(route: str) -> str:
    parts = _PARAM.split(route)
    return "^" + "[^/]+".join(re.escape(p) for p in parts) + "$"


def _evidence_line(r: Recommendation) -> str:
    e = r.evidence
    return (f"{r.service} {r.method} {r.route}: {e['requests']} requests over {e['windows']} windows of "
            f"{e['window_seconds']:g}s; per client p99 {e['per_client_per_window_p99']}/window, busiest second "
            f"p99 {e['per_client_peak_second_p99']}; endpoint busiest second p99 {e['endpoint_peak_second_p99']}; "
            f"headroom x{e['headroom']:g}; 429 ever seen: {str(e['ever_429']).lower()}")


def render(recs: list[Recommendation], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps([asdict(r) for r in recs], option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "envoy":
        return _envoy(recs)
    if fmt == "nginx":
        return _nginx(recs)
    if fmt == "aws":
        return _aws(recs)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _envoy(recs: list[Recommendation]) -> str:
    lines = [
        "# Envoy local rate limit (envoy.filters.http.local_ratelimit), per route.",
        "# Add the filter to http_filters (empty config) and these routes to your virtual host.",
        "routes:",
    ]
    for r in recs:
        lines += [
            f"# {_evidence_line(r)}",
            f"# per-client suggestion: {r.per_client_rps} req/s, burst {r.per_client_burst}",
            "- match:",
            f"    safe_regex: {{regex: '{_regex(r.route)}'}}",
            f"    headers: [{{name: ':method', string_match: {{exact: '{r.method}'}}}}]",
            "  route: {cluster: " + r.service + "}",
            "  typed_per_filter_config:",
            "    envoy.filters.http.local_ratelimit:",
            "      '@type': type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            f"      stat_prefix: {_slug(r)}",
            "      token_bucket:",
            f"        max_tokens: {max(r.per_client_burst, r.endpoint_rps)}",
            f"        tokens_per_fill: {r.endpoint_rps}",
            "        fill_interval: 1s",
            "      filter_enabled: {runtime_key: local_rate_limit_enabled, default_value: {numerator: 100, denominator: HUNDRED}}",
            "      filter_enforced: {runtime_key: local_rate_limit_enforced, default_value: {numerator: 100, denominator: HUNDRED}}",
        ]
    return "\n".join(lines) + "\n"


def _nginx(recs: list[Recommendation]) -> str:
    lines = ["# NGINX limit_req, per client address. Zones go in the http {} block."]
    for r in recs:
        lines.append(f"limit_req_zone $binary_remote_addr zone={_slug(r)}:10m rate={r.per_client_rps}r/s;")
    lines.append("")
    lines.append("# Locations go in the server {} block (one per route; the method is in the comment).")
    for r in recs:
        lines += [
            f"# {_evidence_line(r)}",
            f"location ~ {_regex(r.route)} {{  # {r.method}",
            f"    limit_req zone={_slug(r)} burst={r.per_client_burst} nodelay;",
            "    limit_req_status 429;",
            f"    proxy_pass http://{r.service};",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _aws(recs: list[Recommendation]) -> str:
    throttle = {}
    for r in recs:
        path = _PARAM.sub(lambda m: "{" + m.group(0).strip("{}:<>").split(":")[-1] + "}", r.route)
        throttle[f"{path}/{r.method}"] = {"rateLimit": r.per_client_rps, "burstLimit": r.per_client_burst}
    plan = {
        "name": "apiward-recommended",
        "description": "Per API key limits from observed traffic (apiward ratelimits).",
        "throttle": {
            "rateLimit": max((r.per_client_rps for r in recs), default=1),
            "burstLimit": max((r.per_client_burst for r in recs), default=1),
        },
        "apiStages": [{"apiId": "REPLACE_WITH_API_ID", "stage": "REPLACE_WITH_STAGE", "throttle": throttle}],
        "x-apiward-evidence": {f"{r.method} {r.route}": r.evidence for r in recs},
    }
    return orjson.dumps(plan, option=orjson.OPT_INDENT_2).decode() + "\n"
