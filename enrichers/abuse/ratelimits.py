"""Rate-limit recommendations from the learned baselines, as Envoy, NGINX and AWS
API Gateway configuration, each number with the evidence behind it.

Per client: a high percentile (p99) of the per-client request count per window,
turned into requests per second, times a headroom factor; the burst is the p99
of the per-client busiest second, times the same headroom. Per endpoint: the
p99 of the endpoint's busiest second per window, times the headroom.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import yaml

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


def _name(r: Recommendation) -> str:
    """A readable, unique name per recommendation (NGINX zones, Envoy stat prefixes): the
    slug is cut to stay short, so a hash of the full service, method and route keeps
    names that share a long prefix (or differ only in punctuation) apart."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{r.service}_{r.method}_{r.route}").strip("_").lower()[:40]
    digest = hashlib.sha1(f"{r.service}\x1f{r.method}\x1f{r.route}".encode()).hexdigest()[:8]
    return f"{slug or 'endpoint'}_{digest}"


def _regex(route: str) -> str:
    parts = _PARAM.split(route)
    return "^" + "[^/]+".join(re.escape(p) for p in parts) + "$"


def _route_order(route: str) -> tuple[int, int, str]:
    """Literal routes before parameterised ones, then the most specific first, so that
    first-match proxies (Envoy routes, NGINX regex locations) pick the right one:
    ``/orders/export`` before ``/orders/{id}``."""
    return (len(_PARAM.findall(route)), -len(_PARAM.sub("", route)), route)


def _endpoint_burst(r: Recommendation) -> int:
    return max(r.per_client_burst, r.endpoint_rps)


def _evidence_line(r: Recommendation) -> str:
    e = r.evidence
    return (f"{r.service} {r.method} {r.route}: {e['requests']} requests over {e['windows']} windows of "
            f"{e['window_seconds']:g}s; per client p99 {e['per_client_per_window_p99']}/window, busiest second "
            f"p99 {e['per_client_peak_second_p99']}; endpoint busiest second p99 {e['endpoint_peak_second_p99']}; "
            f"headroom x{e['headroom']:g}; 429 ever seen: {str(e['ever_429']).lower()}")


def _limits_line(r: Recommendation) -> str:
    return (f"per client {r.per_client_rps} req/s (burst {r.per_client_burst}); "
            f"endpoint {r.endpoint_rps} req/s (burst {_endpoint_burst(r)})")


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


# ------------------------------------------------------------------ Envoy
_ENVOY_FILTER = "envoy.filters.http.local_ratelimit"
_ENVOY_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def _bucket(tokens: int, per_fill: int) -> dict[str, Any]:
    return {"max_tokens": tokens, "tokens_per_fill": per_fill, "fill_interval": "1s"}


def _percent(key: str) -> dict[str, Any]:
    return {"runtime_key": key, "default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def _envoy_route(r: Recommendation) -> dict[str, Any]:
    """One route per method: the route's own token bucket is the endpoint limit, and a
    wildcard ``remote_address`` descriptor gives every client address its own bucket
    (the route's ``rate_limits`` action produces that descriptor per request)."""
    return {
        "match": {
            "safe_regex": {"regex": _regex(r.route)},
            "headers": [{"name": ":method", "string_match": {"exact": r.method}}],
        },
        "route": {"cluster": r.service, "rate_limits": [{"actions": [{"remote_address": {}}]}]},
        "typed_per_filter_config": {_ENVOY_FILTER: {
            "@type": _ENVOY_TYPE,
            "stat_prefix": _name(r),
            "token_bucket": _bucket(_endpoint_burst(r), r.endpoint_rps),
            "filter_enabled": _percent("local_rate_limit_enabled"),
            "filter_enforced": _percent("local_rate_limit_enforced"),
            "descriptors": [{
                "entries": [{"key": "remote_address", "value": ""}],
                "token_bucket": _bucket(r.per_client_burst, r.per_client_rps),
            }],
            "max_dynamic_descriptors": 10000,
            "always_consume_default_token_bucket": True,
        }},
    }


def _envoy(recs: list[Recommendation]) -> str:
    http_filter = {"name": _ENVOY_FILTER, "typed_config": {"@type": _ENVOY_TYPE, "stat_prefix": "apiward_local_rate_limit"}}
    lines = [
        "# Envoy local rate limit (envoy.filters.http.local_ratelimit), recommended by apiward ratelimits.",
        "# http_filters: add this entry to your HttpConnectionManager, before envoy.filters.http.router.",
        "# It limits nothing by itself; the per-route configuration below does.",
        yaml.safe_dump({"http_filters": [http_filter]}, sort_keys=False).rstrip(),
        "# routes: add these to your virtual host, before any catch-all route. Each route limits the",
        "# endpoint as a whole (token_bucket) and each client address (the remote_address descriptor;",
        "# set use_remote_address: true on the connection manager so that address is the real client).",
        "# A wildcard descriptor value ('') needs an Envoy with dynamic descriptors (max_dynamic_descriptors).",
        "routes:",
    ]
    for r in sorted(recs, key=lambda x: (_route_order(x.route), x.service, x.method)):
        lines += [f"# {_evidence_line(r)}", f"# {_limits_line(r)}"]
        lines.append(yaml.safe_dump([_envoy_route(r)], sort_keys=False, width=1000).rstrip())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ NGINX
def _nginx_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _method_var(method: str, kind: str) -> str:
    return f"$apiward_{kind}_" + (re.sub(r"[^a-z0-9]+", "_", method.lower()) or "any")


def _nginx(recs: list[Recommendation]) -> str:
    methods = sorted({r.method for r in recs})
    lines = [
        "# NGINX limit_req, recommended by apiward ratelimits.",
        "# http {} block: the maps and zones. A zone counts only requests whose key is not empty, so",
        "# each map gives its method's requests a key (the client address, or one constant for the",
        "# endpoint as a whole) and every other method an empty key: that is how one location limits",
        "# each of its methods differently.",
    ]
    for m in methods:
        lines += [
            f"map $request_method {_method_var(m, 'client')} {{",
            f"    {_nginx_string(m)} $binary_remote_addr;",
            '    default "";',
            "}",
            f"map $request_method {_method_var(m, 'endpoint')} {{",
            f"    {_nginx_string(m)} endpoint;",
            '    default "";',
            "}",
        ]
    for r in recs:
        lines += [
            f"# {_evidence_line(r)}",
            f"limit_req_zone {_method_var(r.method, 'client')} zone={_name(r)}_client:10m rate={r.per_client_rps}r/s;",
            f"limit_req_zone {_method_var(r.method, 'endpoint')} zone={_name(r)}_endpoint:1m rate={r.endpoint_rps}r/s;",
        ]
    by_service: dict[str, dict[str, list[Recommendation]]] = {}
    for r in recs:
        by_service.setdefault(r.service, {}).setdefault(r.route, []).append(r)
    for service, routes in sorted(by_service.items()):
        lines += ["", f"# server {{}} block of {service}: one location per route (literal routes are exact",
                  "# matches; regex locations are listed most specific first, as NGINX takes the first match)."]
        for route in sorted(routes, key=_route_order):
            rs = sorted(routes[route], key=lambda x: x.method)
            match = f"= {_nginx_string(route)}" if not _PARAM.search(route) else f"~ {_nginx_string(_regex(route))}"
            lines.append(f"location {match} {{")
            for r in rs:
                lines += [
                    f"    # {r.method}: {_limits_line(r)}",
                    f"    limit_req zone={_name(r)}_client burst={r.per_client_burst} nodelay;",
                    f"    limit_req zone={_name(r)}_endpoint burst={_endpoint_burst(r)} nodelay;",
                ]
            lines += ["    limit_req_status 429;", f"    proxy_pass http://{service};", "}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ AWS API Gateway
def _aws_key(r: Recommendation) -> str:
    """A usage plan's method throttle key, ``/{resource}/{method}`` (``/orders/{id}/GET``)."""
    path = _PARAM.sub(lambda m: "{" + m.group(0).strip("{}:<>").split(":")[-1] + "}", r.route)
    return f"{path}/{r.method}"


def _aws(recs: list[Recommendation]) -> str:
    """A CreateUsagePlan input (``aws apigateway create-usage-plan --cli-input-json``):
    valid keys only, so the evidence lives in ``aws_evidence`` (``--evidence``)."""
    stages = []
    for service in sorted({r.service for r in recs}):
        throttle = {_aws_key(r): {"rateLimit": r.per_client_rps, "burstLimit": r.per_client_burst}
                    for r in recs if r.service == service}
        stages.append({"apiId": f"REPLACE_WITH_API_ID_OF_{service}", "stage": "REPLACE_WITH_STAGE", "throttle": throttle})
    headroom = recs[0].evidence["headroom"] if recs else 1
    plan = {
        "name": "apiward-recommended",
        "description": (f"Per API key limits for {len(recs)} methods: p99 of observed per-client rates x{headroom:g} "
                        "headroom (apiward ratelimits; evidence: --format aws --evidence)."),
        "apiStages": stages,
        "throttle": {
            "rateLimit": max((r.per_client_rps for r in recs), default=1),
            "burstLimit": max((r.per_client_burst for r in recs), default=1),
        },
    }
    return orjson.dumps(plan, option=orjson.OPT_INDENT_2).decode() + "\n"


def aws_evidence(recs: list[Recommendation]) -> str:
    """The evidence behind the usage plan's numbers, keyed like its throttle map, with the
    endpoint-wide limit (a usage plan only limits per API key; set that one as the stage's
    method throttling)."""
    doc = {
        r.service + " " + _aws_key(r): {
            "service": r.service, "method": r.method, "route": r.route,
            "per_client_rps": r.per_client_rps, "per_client_burst": r.per_client_burst,
            "endpoint_rps": r.endpoint_rps, "endpoint_burst": _endpoint_burst(r), "evidence": r.evidence,
        }
        for r in recs
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
