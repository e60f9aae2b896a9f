"""Thresholds of the abuse detections, read once from the ``abuse:`` config section.

Every number has a default that keeps false positives low on ordinary traffic;
an operator tunes them in ``apiward.yaml``::

    abuse:
      window_seconds: 10
      warmup_seconds: 120
      client_spike_min: 100
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


class AbuseSettingsError(ValueError):
    """A bad value in the ``abuse:`` config section (message names field and fix)."""


@dataclass(frozen=True, slots=True)
class AbuseSettings:
    """Window sizes, warm-up and thresholds. Times are seconds of span time."""

    #: Detection windows slide: every ``window_seconds / 2`` (a hop) the last
    #: ``window_seconds`` are evaluated, so a burst is judged whole wherever it falls.
    window_seconds: float = 10.0
    lateness_seconds: float = 2.0
    warmup_seconds: float = 120.0
    warmup_windows: int = 6
    ewma_alpha: float = 0.1
    #: Rate spikes: endpoint window count must exceed all of these.
    endpoint_spike_min: int = 300
    endpoint_spike_ratio: float = 5.0
    endpoint_spike_devs: float = 10.0
    #: One client on one endpoint in one window.
    client_spike_min: int = 100
    client_spike_ratio: float = 8.0
    #: Automated clients.
    metronome_min_requests: int = 20
    metronome_max_cv: float = 0.08
    headless_min_requests: int = 5
    #: Scraping: distinct resources of one client in one window.
    scraping_min_distinct: int = 150
    #: BOLA.
    bola_min_distinct_ids: int = 25
    bola_min_denied_share: float = 0.3
    bola_sequential_share: float = 0.7
    bola_foreign_min: int = 2
    #: Credential stuffing: failed logins in one window.
    stuffing_client_min: int = 20
    stuffing_endpoint_min: int = 60
    stuffing_endpoint_ratio: float = 5.0
    #: Missing credentials on a route whose calls carry them this often.
    auth_usual_share: float = 0.98
    auth_usual_min: int = 200
    #: Resource consumption.
    large_response_bytes: int = 10_000_000
    large_response_ratio: float = 50.0
    max_page_size: int = 1000
    #: Business-flow bursts of one client in one window.
    flow_burst_min: int = 10
    #: Slow attacks: per client and endpoint over the last ``horizon_seconds`` (evaluated
    #: every ``horizon_hop_seconds``): distinct object ids of an enumeration, and flow
    #: requests of an automated client. The horizon keeps at most ``max_horizon_rows``
    #: (distinct per client, endpoint and object per hop); under heavier traffic it is shorter.
    horizon_seconds: float = 300.0
    horizon_hop_seconds: float = 30.0
    horizon_min_distinct_ids: int = 60
    horizon_flow_min: int = 30
    max_horizon_rows: int = 200_000
    #: Per-client baselines (top-K by recency): a client far above its own usual
    #: request count per window (``client_own_ratio`` x its usual plus deviations,
    #: at least ``client_spike_min``) or error share, after ``client_warmup_windows``
    #: windows in which it was active.
    max_client_baselines: int = 10_000
    client_warmup_windows: int = 6
    client_own_ratio: float = 10.0
    client_error_share_min: float = 0.5
    client_error_min_requests: int = 30
    #: Function-level authorization.
    admin_min_calls: int = 20
    escalation_writer_share: float = 0.1
    escalation_min_readers: int = 20
    #: Latency / error anomalies per endpoint window.
    latency_ratio: float = 8.0
    latency_min_ms: float = 2000.0
    latency_min_requests: int = 5
    error_rate_min: float = 0.5
    error_rate_min_requests: int = 20
    #: Bounded state.
    max_clients_per_endpoint: int = 200
    max_clients: int = 50_000
    #: Endpoint baselines and route access records kept (the most recently seen); idle
    #: ones are dropped after ``idle_endpoint_seconds``.
    max_endpoints: int = 5_000
    max_routes: int = 5_000
    idle_endpoint_seconds: float = 7 * 86400.0
    idle_client_seconds: float = 3600.0
    trace_ttl_seconds: float = 120.0
    max_traces: int = 50_000
    #: Open-window rows (~100 bytes each once compacted; 40k requests/s fill ~500k);
    #: past this the open windows are evaluated early (bounded memory).
    max_rows: int = 1_000_000
    sketch_rotate_windows: int = 360

    @classmethod
    def from_section(cls, section: dict[str, Any] | None) -> AbuseSettings:
        """Settings from the ``abuse:`` section; unknown or mistyped keys are errors."""
        base = cls()
        if not section:
            return base
        known = {f.name: type(getattr(base, f.name)) for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in section.items():
            if key not in known:
                raise AbuseSettingsError(
                    f"abuse.{key}: unknown setting; allowed: {', '.join(sorted(known))}"
                )
            want = known[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise AbuseSettingsError(f"abuse.{key}: expected a number, got {value!r}")
            if value < 0:
                raise AbuseSettingsError(f"abuse.{key}: expected a positive number, got {value}")
            changes[key] = want(value)
        return replace(base, **changes)

    @property
    def window_ns(self) -> int:
        return int(self.window_seconds * 1e9)

    @property
    def hop_ns(self) -> int:
        """Length of a sub-window: windows are evaluated every hop over two sub-windows."""
        return self.window_ns // 2
