"""Sliding windows, the per-client horizon, clipped rate baselines, per-client
baselines, bounded endpoint state, escalation on any route and persisted
mass-assignment learning: each with a positive case and a near miss."""

from __future__ import annotations

from typing import Any

import orjson

from enrichers.abuse.baselines import AbuseState
from tests.enrichers.abuse.spans import SEC, T0, Runner, benign, server

WARM = 75.0


def _run(attack: list, *, warm: float = WARM, **settings: Any) -> Runner:
    r = Runner(**settings)
    r.feed(benign(warm + 40) + attack)
    return r


def _abuse(r: Runner) -> AbuseState:
    return r.enricher.state(r.state)


def _restarted(r: Runner, **settings: Any) -> Runner:
    """A new agent whose abuse state was restored from ``r``'s snapshot (as JSON)."""
    data = orjson.loads(orjson.dumps(_abuse(r).snapshot(), option=orjson.OPT_NON_STR_KEYS))
    fresh = Runner(**settings)
    _abuse(fresh).restore(data)
    return fresh


# ------------------------------------------------------------------ 1. sliding windows
def _signups(start: float, n: int) -> list:
    return [server(start + i * 0.5, "/signup", route="/signup", method="POST", ip="192.0.2.12",
                   ua="python-requests/2.31") for i in range(n)]


def test_flow_burst_straddling_a_window_boundary_is_found():
    # 18 signups in 9 s from 75.5 s: 9 fall in [70, 80) and 9 in [80, 90).
    f = _run(_signups(75.5, 18)).findings("abuse.business_flow_burst")
    assert f and f[0].subject.client == "ip:192.0.2.12"
    assert f[0].count == 18  # the overlapping halves of sliding windows are counted once
    assert not _run(_signups(75.5, 9)).findings("abuse.business_flow_burst")  # under the minimum anywhere


def test_rate_spike_straddling_a_window_boundary_is_found():
    burst = [server(75.0 + i * (9.9 / 180), "/products", route="/products", ip="192.0.2.66") for i in range(180)]
    f = _run(burst).findings("abuse.client_rate_spike")
    assert f and f[0].count == 180
    calm = [server(75.0 + i * (9.9 / 90), "/products", route="/products", ip="192.0.2.66") for i in range(90)]
    assert not _run(calm).findings("abuse.client_rate_spike")


def test_slow_sequential_walk_is_found_over_the_client_horizon():
    def walk(ids: int, step: int = 1) -> list:
        return [server(WARM + i * 2, f"/orders/{5000 + i * step}", route="/orders/{id}", user="u3",
                       headers={"authorization": "Bearer tok-3"}) for i in range(ids)]

    r = Runner()
    r.feed(benign(WARM + 420) + walk(200))  # 0.5 ids/s: 5 per window, far under any window threshold
    f = r.findings("abuse.bola_enumeration")
    assert f and f[0].subject.client == "user:u3" and f[0].evidence["horizon_seconds"] == 300
    # Near miss: the same pace over fewer ids than the horizon threshold.
    r = Runner()
    r.feed(benign(WARM + 420) + walk(40))
    assert not r.findings("abuse.bola_enumeration")
    # Near miss: many ids, but neither a walk nor refused (random own reads).
    r = Runner()
    r.feed(benign(WARM + 420) + walk(150, step=37))
    assert not r.findings("abuse.bola_enumeration")


def test_slow_flow_abuse_by_a_tool_is_found_over_the_client_horizon():
    def checkouts(n: int, ua: str = "curl/8") -> list:
        return [server(WARM + i * 1.2, "/checkout", route="/checkout", method="POST", ip="192.0.2.79", ua=ua)
                for i in range(n)]

    f = _run(checkouts(40)).findings("abuse.business_flow_burst")  # ~8 per window
    assert f and f[0].evidence.get("horizon_seconds") == 300
    assert not _run(checkouts(25)).findings("abuse.business_flow_burst")
    assert not _run(checkouts(40, ua="Mozilla/5.0 Chrome/120")).findings("abuse.business_flow_burst")


# ------------------------------------------------------------------ 2. clipped rate baselines
def test_a_flood_does_not_teach_the_rate_limit_baselines():
    flood = [server(WARM + i / 250, "/products", route="/products", ip="192.0.2.66") for i in range(250 * 30)]
    r = _run(flood)
    assert r.findings("abuse.client_rate_spike")
    b = _abuse(r).endpoints["api GET /products"]
    assert b.endpoint_peak.quantile(0.99) < 30  # benign busiest second, not 250/s
    assert b.client_peak.quantile(0.99) < 10
    # Near miss: benign traffic alone is learned.
    calm = Runner()
    calm.feed(benign(WARM + 40))
    calm.flush()
    c = _abuse(calm).endpoints["api GET /products"]
    assert c.endpoint_peak.count > 0 and 0 < c.endpoint_peak.quantile(0.99) < 30


# ------------------------------------------------------------------ 3. per-client baselines
def _heavy(seconds: float) -> list:
    """Three legitimate heavy clients (25 requests per 10 s each) keep the endpoint's
    per-client p99 high, so only a client's own history shows u5's spike."""
    out = []
    for k in range(3):
        out += [server(k * 0.13 + i * 0.4, "/products", route="/products", ip=f"198.51.100.{200 + k}")
                for i in range(int(seconds / 0.4))]
    return out


def _u5(start: float, n: int, *, span: float = 9.0, status: int = 200) -> list:
    return [server(start + i * span / n, "/products", route="/products", user="u5", ip="198.51.100.5",
                   headers={"authorization": "Bearer tok-5"}, status=status) for i in range(n)]


def _own_spike(f: Any) -> bool:
    return f.subject.client == "user:u5" and f.evidence.get("baseline") == "client"


def test_client_far_above_its_own_history_is_found():
    r = Runner()
    r.feed(benign(WARM + 40) + _heavy(WARM + 40) + _u5(WARM, 150))
    f = [x for x in r.findings("abuse.client_rate_spike") if x.subject.client == "user:u5"]
    assert f and _own_spike(f[0]) and f[0].evidence["client_usual_per_window"] < 10
    # Near miss: the endpoint's own limit is not reached, nor the per-client minimum.
    r = Runner()
    r.feed(benign(WARM + 40) + _heavy(WARM + 40) + _u5(WARM, 60))
    assert not [x for x in r.findings("abuse.client_rate_spike") if x.subject.client == "user:u5"]
    # The heavy clients at their usual rate are not spikes of their own history.
    assert not [x for x in r.findings() if x.evidence.get("baseline") == "client"]


def test_client_error_share_far_above_its_own_history_is_found():
    r = _run(_u5(WARM, 40, status=403))
    assert [x for x in r.findings("abuse.error_rate_anomaly") if _own_spike(x)]
    mixed = _u5(WARM, 30) + _u5(WARM + 0.1, 10, status=403)  # 25% errors: under the share
    assert not [x for x in _run(mixed).findings("abuse.error_rate_anomaly") if _own_spike(x)]


def test_client_baselines_survive_a_restart_and_are_bounded():
    r = Runner()
    r.feed(benign(WARM + 40) + _heavy(WARM + 40))
    r.flush()
    st = _abuse(r)
    assert st.client_stats["user:u5"].windows >= 6
    fresh = _restarted(r)
    back = _abuse(fresh).client_stats
    assert back.keys() == st.client_stats.keys()
    assert abs(back["user:u5"].rate.mean - st.client_stats["user:u5"].rate.mean) < 1e-9
    # The restored history judges at once: the spike right after the restart is found.
    later = [x for x in _heavy(WARM + 60) if x.start_ns >= T0 + int((WARM + 40) * SEC)]
    fresh.feed(later + _u5(WARM + 45, 150))
    assert [x for x in fresh.findings("abuse.client_rate_spike") if _own_spike(x)]
    # Bounded: only the most recently seen clients are kept.
    small = Runner(max_client_baselines=5)
    small.feed(benign(WARM))
    small.flush()
    assert len(_abuse(small).client_stats) <= 10
    _abuse(small).decay(_abuse(small).watermark_ns)
    assert len(_abuse(small).client_stats) == 5


# ------------------------------------------------------------------ 4. bounded endpoints and routes
def _word(i: int) -> str:
    """A distinct all-letter path segment (never templated into ``{id}``)."""
    out = ""
    while True:
        out += "abcdefghijklmnopqrstuvwxyz"[i % 26]
        i //= 26
        if not i:
            return "page" + out

def test_endpoints_and_routes_are_capped_and_idle_ones_dropped():
    wiki = [server(i * 0.05, f"/wiki/{_word(i)}", ip=f"198.51.100.{i % 50}") for i in range(3000)]
    r = Runner(max_endpoints=50, max_routes=50)
    r.feed(benign(150) + wiki)
    r.flush()
    st = _abuse(r)
    assert len(st.endpoints) <= 100 and len(st.routes) <= 100
    st.decay(st.watermark_ns)
    assert len(st.endpoints) <= 50 and len(st.routes) <= 50
    assert "api GET /products" in st.endpoints  # the busy endpoints are the recent ones
    # Near miss: under the cap nothing is dropped.
    r = Runner()
    r.feed(benign(150) + wiki[:100])
    r.flush()
    assert len(_abuse(r).endpoints) >= 100


def test_idle_endpoints_decay():
    r = Runner(idle_endpoint_seconds=60)
    r.feed([server(1, "/old", route="/old")] + benign(200))
    r.flush()
    st = _abuse(r)
    st.decay(st.watermark_ns)
    assert "api GET /old" not in st.endpoints and "api GET /products" in st.endpoints
    assert "api /old" not in st.routes and "api /products" in st.routes


# ------------------------------------------------------------------ 5. escalation on any route
def test_delete_on_an_unparameterised_route_by_a_reader_is_found():
    delete = [server(WARM + 5, "/products", route="/products", method="DELETE", user="u0",
                     headers={"authorization": "Bearer tok-0"})]
    f = _run(delete).findings("abuse.method_escalation")
    assert f and f[0].subject.client == "user:u0" and f[0].subject.route == "/products"
    # Near miss: a caller that never read the route is not a reader escalating.
    stranger = [server(WARM + 5, "/products", route="/products", method="DELETE", user="u999",
                       headers={"authorization": "Bearer tok-999"})]
    assert not _run(stranger).findings("abuse.method_escalation")


# ------------------------------------------------------------------ 6. persisted mass-assignment learning
def _profiles(start: float, n: int, user: int = 0) -> list:
    return [server(start + i, "/profile", route="/profile", method="POST", user=f"u{user + i % 30}",
                   body='{"name": "x", "role": "member"}') for i in range(n)]


def test_mass_assignment_learning_survives_a_restart():
    r = Runner()
    r.feed(_profiles(0, 40))  # "role" is part of this endpoint's contract once learned
    learned_hits = len(r.findings("abuse.mass_assignment"))
    fresh = _restarted(r)
    assert _abuse(fresh).bodies["api POST /profile"] == 40
    fresh.feed(_profiles(100, 5))
    assert len(fresh.findings("abuse.mass_assignment")) == 0
    # Near miss: an agent without the learned state flags the field again.
    cold = Runner()
    cold.feed(_profiles(100, 5))
    assert cold.findings("abuse.mass_assignment") and learned_hits >= 1
