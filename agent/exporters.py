"""OTLP export: findings as log records, the service graph as metrics.

apiward runs next to an OpenTelemetry Collector; what it finds must land in the
backends people already run. Two exporters, both off the analysis thread:

* :class:`FindingsLogExporter` turns findings into OTLP log records through the
  OpenTelemetry SDK logs API (``LoggerProvider`` / ``Logger.emit``) and the
  standard OTLP log exporters (gRPC or HTTP/protobuf). A finding is exported
  when it opens and when its count or severity changes, coalesced per export
  interval: a background thread asks ``state.findings.changed_since(seq)``
  every interval, so a finding hit by ten thousand requests in one interval is
  one log record, not ten thousand.
* :class:`ServiceGraphMetricsExporter` sends the call graph with the names and
  labels of the Collector's ``servicegraph`` connector
  (``traces_service_graph_request_total``, ``..._failed_total``,
  ``..._server_seconds``, ``..._client_seconds`` with ``client``, ``server``,
  ``connection_type``), so existing Grafana/Tempo service-graph views work
  unchanged, plus apiward's own metrics (findings by rule and severity, calls
  per edge by zero-trust verdict, sensitive-data flows by type and destination
  kind).

Design of the metrics side: State already *holds* the cumulative totals (the
call-graph part counts calls and errors per edge and survives restarts), so the
exporter builds the SDK's metric point objects (``MetricsData`` with cumulative
``Sum``/``Gauge``/``Histogram`` points) from a snapshot of State each interval
and hands them to the standard ``OTLPMetricExporter``. An observable-callback
``MeterProvider`` was the alternative; it was not taken because the metrics API
has no observable histogram (the two ``*_seconds`` histograms would need
synchronous instruments fed per call, which double-count after a restart
restores State), and because a callback design hides the snapshot time behind
the SDK's reader. Building the points keeps one consistent snapshot per export
and still reuses the SDK's encoders and transports (env variables, TLS,
headers, compression, gRPC retry on transient errors).

Latency histograms need per-call durations, which the call-graph report only
gives as quantiles. The exporter therefore keeps its own bucket counts per
edge, fed from ``state.batch.calls`` after every batch (one list lookup and an
increment per call) and stored as a State part so they survive restarts like
the call counts do.

Contract (as for every exporter in apiward): never block analysis, never raise
into the pipeline. Records wait in a bounded queue; a full queue drops and
counts; a failed export is retried with exponential backoff, then dropped and
counted. The counters appear under ``export`` in ``/api/v1/stats`` and as
``apiward_export_*`` in ``/metrics``.

Settings: export is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the signal
specific ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` / ``..._METRICS_ENDPOINT``) is set
or ``--export-endpoint`` / ``export_endpoint`` is given (which wins, for both
signals). The protocol is ``OTEL_EXPORTER_OTLP_{LOGS,METRICS}_PROTOCOL``, then
``OTEL_EXPORTER_OTLP_PROTOCOL``, then ``export_protocol`` (default ``grpc``).
Headers, certificates, compression and timeouts follow the standard
``OTEL_EXPORTER_OTLP_*`` variables, read by the SDK exporters themselves. The
``export:`` section of the config file tunes the rest (see
:class:`ExportSettings`).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.config import Config, ConfigError
from agent.model import Finding, Severity, ns_to_iso

if TYPE_CHECKING:
    from agent.state import State

log = logging.getLogger("apiward.export")

# Environment variable names (the standard OpenTelemetry ones).
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_LOGS_ENDPOINT = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
ENV_METRICS_ENDPOINT = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_LOGS_PROTOCOL = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"
ENV_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
ENV_SERVICE_NAME = "OTEL_SERVICE_NAME"

EVENT_NAME = "apiward.finding"
SCOPE_NAME = "apiward"
SCOPE_VERSION = "0.1.0"

#: Bucket bounds (seconds) of the servicegraph connector's latency histograms.
SERVICE_GRAPH_BUCKETS: tuple[float, ...] = (
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
)

#: apiward severity -> OTel log severity number (INFO, WARN, WARN3, ERROR, FATAL).
SEVERITY_NUMBERS: dict[Severity, int] = {
    Severity.INFO: 9,
    Severity.LOW: 13,
    Severity.MEDIUM: 15,
    Severity.HIGH: 17,
    Severity.CRITICAL: 21,
}

_SIGNAL_ENV = {
    "logs": (ENV_LOGS_ENDPOINT, ENV_LOGS_PROTOCOL, "v1/logs"),
    "metrics": (ENV_METRICS_ENDPOINT, ENV_METRICS_PROTOCOL, "v1/metrics"),
}


# ------------------------------------------------------------------ settings


@dataclass(frozen=True, slots=True)
class ExportTarget:
    """Where one signal goes. ``endpoint`` ``None``: the SDK reads ``OTEL_*`` itself."""

    signal: str
    endpoint: str | None
    protocol: str


def resolve_target(signal: str, config: Config, environ: Mapping[str, str]) -> ExportTarget | None:
    """The target of ``signal`` ("logs" or "metrics"), or ``None`` when export is off."""
    env_endpoint, env_protocol, path = _SIGNAL_ENV[signal]
    protocol = environ.get(env_protocol) or environ.get(ENV_PROTOCOL) or config.export_protocol
    protocol = "http/protobuf" if protocol == "http" else protocol
    if protocol not in ("grpc", "http/protobuf"):
        raise ConfigError(
            f"environment ({env_protocol} / {ENV_PROTOCOL}): protocol {protocol!r} is not "
            "supported; use grpc or http/protobuf."
        )
    if config.export_endpoint:
        endpoint = config.export_endpoint.strip()
        if "://" not in endpoint:
            endpoint = "http://" + endpoint
        if protocol == "http/protobuf" and not endpoint.rstrip("/").endswith(path):
            endpoint = endpoint.rstrip("/") + "/" + path
        return ExportTarget(signal, endpoint, protocol)
    if environ.get(env_endpoint) or environ.get(ENV_ENDPOINT):
        return ExportTarget(signal, None, protocol)
    return None


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """The ``export:`` section of the config file.

    ``interval`` seconds between coalesced exports (default 5); ``queue_size``
    log records waiting to be sent (default 2048); ``max_batch`` records per
    export request (512); ``max_retries`` after a failed export (5);
    ``backoff_initial``/``backoff_max`` seconds between retries (1, 30);
    ``timeout`` seconds per export request (10); ``logs``/``metrics`` false to
    turn one signal off.
    """

    interval: float = 5.0
    queue_size: int = 2048
    max_batch: int = 512
    max_retries: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    timeout: float = 10.0
    logs: bool = True
    metrics: bool = True

    @classmethod
    def from_config(cls, config: Config) -> ExportSettings:
        sec = dict(config.section("export"))
        where = f"{config.source_file or 'config'}: section 'export'"
        out: dict[str, Any] = {}
        for name in ("interval", "backoff_initial", "backoff_max", "timeout"):
            if name in sec:
                out[name] = _num(where, name, sec.pop(name), float, "a positive number of seconds")
        for name in ("queue_size", "max_batch"):
            if name in sec:
                out[name] = _num(where, name, sec.pop(name), int, "a positive whole number")
        if "max_retries" in sec:
            v = sec.pop("max_retries")
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{where}: field 'max_retries' is {v!r}; it must be 0 or more.")
            out["max_retries"] = v
        for name in ("logs", "metrics"):
            if name in sec:
                v = sec.pop(name)
                if not isinstance(v, bool):
                    raise ConfigError(f"{where}: field '{name}' is {v!r}; it must be true or false.")
                out[name] = v
        if sec:
            allowed = ", ".join(f.name for f in cls.__dataclass_fields__.values())  # type: ignore[attr-defined]
            raise ConfigError(f"{where}: unknown field '{next(iter(sec))}'; allowed: {allowed}.")
        return cls(**out)


def _num(where: str, name: str, v: Any, kind: type, allowed: str) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ConfigError(f"{where}: field '{name}' is {v!r}; it must be {allowed}.")
    if kind is int and int(v) != v:
        raise ConfigError(f"{where}: field '{name}' is {v!r}; it must be {allowed}.")
    return kind(v)


class ExportCounters:
    """Counters of both exporters, shown as ``export`` in stats and ``/metrics``."""

    _NAMES = (
        "logs_enqueued",
        "logs_exported",
        "logs_dropped_queue_full",
        "logs_dropped_failed",
        "logs_retries",
        "logs_export_requests",
        "metrics_exports",
        "metrics_failed",
        "metrics_retries",
        "metrics_points",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._v: dict[str, int] = dict.fromkeys(self._NAMES, 0)
        self.queue_depth: Callable[[], int] = lambda: 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._v[name] = self._v.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._v.get(name, 0)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            d: dict[str, float] = dict(self._v)
        d["logs_queue_depth"] = self.queue_depth()
        return d


# ------------------------------------------------------------------ retries


def export_with_retry(
    fn: Callable[[], bool],
    settings: ExportSettings,
    stop: threading.Event,
    on_retry: Callable[[], None],
) -> bool:
    """Call ``fn`` until it succeeds, retrying with exponential backoff.

    Gives up after ``max_retries`` retries, or at once once ``stop`` is set and
    one attempt was made (shutdown must not wait minutes for a dead backend).
    """
    delay = settings.backoff_initial
    for attempt in range(settings.max_retries + 1):
        try:
            if fn():
                return True
        except Exception as exc:  # noqa: BLE001 - an exporter bug must not stop the loop
            log.warning("OTLP export raised %s: %s", type(exc).__name__, exc)
        if attempt == settings.max_retries or stop.is_set():
            return False
        on_retry()
        if stop.wait(delay):
            return False
        delay = min(delay * 2, settings.backoff_max)
    return False


def _resource(config: Config, environ: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    base = Resource.create(
        {
            "service.name": environ.get(ENV_SERVICE_NAME) or "apiward",
            "service.version": SCOPE_VERSION,
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
        }
    )
    return base.merge(OTELResourceDetector().detect())


def make_log_exporter(target: ExportTarget, timeout: float) -> Any:
    """The SDK OTLP log exporter for ``target`` (gRPC or HTTP/protobuf)."""
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=target.endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogExporter,
    )

    return HttpLogExporter(endpoint=target.endpoint, timeout=timeout)


def make_metric_exporter(target: ExportTarget, timeout: float) -> Any:
    """The SDK OTLP metric exporter for ``target`` (gRPC or HTTP/protobuf)."""
    if target.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=target.endpoint, timeout=timeout)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(endpoint=target.endpoint, timeout=timeout)


# ------------------------------------------------------------------ findings


def finding_attributes(f: Finding, *, acknowledged: bool = False, incident: str = "") -> dict[str, Any]:
    """The attributes of the log record of one finding (see docs/findings.md);
    ``incident``: the id of its incident (the finding's own id when not given)."""
    s = f.subject
    a: dict[str, Any] = {
        "apiward.finding.id": f.id,
        "apiward.finding.incident": incident or f.id,
        "apiward.rule.id": f.rule,
        "apiward.severity": f.severity.label,
        "apiward.count": int(f.count),
        "apiward.confidence": float(round(f.confidence, 3)),
        "apiward.first_seen": ns_to_iso(f.first_seen_ns),
        "apiward.last_seen": ns_to_iso(f.last_seen_ns),
    }
    if f.owasp:
        a["apiward.owasp.category"] = f.owasp
    if f.compliance:
        a["apiward.compliance"] = [str(c) for c in f.compliance]
    if f.category:
        a["apiward.category"] = f.category
    if acknowledged:
        a["apiward.acknowledged"] = True
    service = s.service or s.server
    if service:
        a["service.name"] = service
    if s.route:
        a["http.route"] = s.route
    if s.method:
        a["http.request.method"] = s.method
    if s.host:
        a["server.address"] = s.host
    if s.client:
        a["apiward.edge.client"] = s.client
    if s.server:
        a["apiward.edge.server"] = s.server
    if s.detail:
        a["apiward.subject.detail"] = s.detail
    if f.trace_ids:
        a["apiward.trace_ids"] = list(f.trace_ids)
    if f.remediation:
        a["apiward.remediation"] = f.remediation
    return a


class _Sender:
    """A bounded queue of items and the thread that exports them in batches."""

    def __init__(
        self,
        name: str,
        export: Callable[[Sequence[Any]], bool],
        settings: ExportSettings,
        counters: ExportCounters,
    ) -> None:
        self.name = name
        self._export = export
        self.settings = settings
        self.counters = counters
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=settings.queue_size)
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, item: Any) -> bool:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.counters.add("logs_dropped_queue_full")
            return False
        self.counters.add("logs_enqueued")
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _take_batch(self, timeout: float) -> list[Any]:
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.settings.max_batch:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _send(self, batch: list[Any]) -> None:
        def once() -> bool:
            self.counters.add("logs_export_requests")
            return self._export(batch)

        ok = export_with_retry(
            once, self.settings, self.stop_event, lambda: self.counters.add("logs_retries")
        )
        self.counters.add("logs_exported" if ok else "logs_dropped_failed", len(batch))

    def _run(self) -> None:
        while not self.stop_event.is_set():
            batch = self._take_batch(0.2)
            if batch:
                self._send(batch)

    def drain(self, deadline: float) -> None:
        """After stop: send what is queued until ``deadline`` (monotonic), drop the rest."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        while time.monotonic() < deadline:
            batch = self._take_batch(0)
            if not batch:
                return
            self._send(batch)
        left = self.queue.qsize()
        if left:
            self.counters.add("logs_dropped_failed", left)


class FindingsLogExporter:
    """Findings as OTLP log records, coalesced per interval (see the module docstring).

    ``exporter`` is any SDK ``LogRecordExporter`` (the OTLP ones in production,
    an in-memory one in unit tests). :meth:`collect` runs one coalescing pass
    and is what the background thread calls every ``settings.interval``.
    Muted findings are not exported; restored findings are exported again only
    when they change (``export_existing=True`` exports them once at start).
    """

    def __init__(
        self,
        state: State,
        exporter: Any,
        *,
        settings: ExportSettings | None = None,
        counters: ExportCounters | None = None,
        resource: Any = None,
        export_existing: bool = False,
    ) -> None:
        from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor

        self.state = state
        self.exporter = exporter
        self.settings = settings or ExportSettings()
        self.counters = counters or ExportCounters()
        self.export_existing = export_existing
        self._sender = _Sender("apiward-export-logs", self._export_batch, self.settings, self.counters)
        self.counters.queue_depth = self._sender.queue.qsize
        self._seq = 0
        #: finding id -> (count, severity, incident) last sent
        self._sent: dict[str, tuple[int, int, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._collect_lock = threading.Lock()
        sender = self._sender

        class _QueueProcessor(LogRecordProcessor):
            """Hands emitted records to the bounded queue; never blocks."""

            def on_emit(self, log_record: Any) -> None:
                from opentelemetry.sdk._logs import ReadableLogRecord

                sender.submit(
                    ReadableLogRecord(
                        log_record=log_record.log_record,
                        resource=log_record.resource,
                        instrumentation_scope=log_record.instrumentation_scope,
                        limits=log_record.limits,
                    )
                )

            def shutdown(self) -> None:
                return None

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return True

        self._provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_log_record_processor(_QueueProcessor())
        self._logger = self._provider.get_logger(SCOPE_NAME, SCOPE_VERSION)

    def _export_batch(self, batch: Sequence[Any]) -> bool:
        from opentelemetry.sdk._logs.export import LogRecordExportResult

        res = self.exporter.export(batch)
        return bool(res == LogRecordExportResult.SUCCESS or getattr(res, "name", "") == "SUCCESS")

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self.export_existing:
            with self.state.lock:
                self._seq = self.state.findings.seq
                for r in self.state.findings.records():
                    self._sent[r.id] = (r.finding.count, int(r.finding.severity), r.incident)
        self._sender.start()
        self._thread = threading.Thread(target=self._run, name="apiward-export-findings", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval):
            try:
                self.collect()
            except Exception:  # noqa: BLE001 - export must never stop
                log.exception("collecting findings for export failed")

    def stop(self, timeout: float | None = None) -> None:
        """Export what changed since the last pass, send the queue, shut down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self.collect()
        except Exception:  # noqa: BLE001
            log.exception("final findings export failed")
        wait = self.settings.timeout if timeout is None else timeout
        self._sender.drain(time.monotonic() + wait)
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001
            log.debug("log exporter shutdown failed", exc_info=True)

    # ------------------------------------------------------------ the pass
    def collect(self) -> int:
        """Emit a log record for every finding that opened or changed; returns how many."""
        with self._collect_lock:
            with self.state.lock:
                changed = self.state.findings.changed_since(self._seq)
                self._seq = self.state.findings.seq
                todo = [(r.finding, r.acknowledged, r.incident) for r in changed if not r.muted]
            n = 0
            for f, ack, incident in todo:
                key = (f.count, int(f.severity), incident)
                prev = self._sent.get(f.id)
                if prev == key:
                    continue  # an ack/mute flag or evidence changed: not worth a record
                # (a finding moved to another incident is: the backend groups by it)
                self._sent[f.id] = key
                self._emit(f, ack, incident, opened=prev is None)
                n += 1
            return n

    def _emit(self, f: Finding, acknowledged: bool, incident: str, *, opened: bool) -> None:
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            TraceFlags,
            set_span_in_context,
        )

        attrs = finding_attributes(f, acknowledged=acknowledged, incident=incident)
        attrs["apiward.finding.state"] = "opened" if opened else "changed"
        ctx = None
        if f.trace_ids:
            try:
                tid = int(f.trace_ids[-1], 16)
                sid = int(f.span_ids[-1], 16) if f.span_ids else 0
            except ValueError:
                tid = sid = 0
            if tid:
                sc = SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
                ctx = set_span_in_context(NonRecordingSpan(sc))
        if ctx is None:
            from opentelemetry.context import Context

            ctx = Context()  # no trace: do not inherit whatever span this thread has
        self._logger.emit(
            LogRecord(
                timestamp=f.last_seen_ns or time.time_ns(),
                context=ctx,
                severity_number=SeverityNumber(SEVERITY_NUMBERS[f.severity]),
                severity_text=f.severity.label.upper(),
                body=f.title,
                attributes=attrs,
                event_name=EVENT_NAME,
            )
        )


# ------------------------------------------------------------------ metrics


class ServiceGraphHistograms:
    """Per-edge latency bucket counts and sensitive-flow counts; a State part.

    Fed from ``state.batch.calls`` after each batch. ``snapshot``/``restore``
    keep it across restarts, with the time the series started.
    """

    PART = "export.servicegraph"

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        # (client, server, connection_type) -> {"server": [...], "client": [...], sums, counts}
        self.edges: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.flows: dict[tuple[str, str], int] = {}

    @staticmethod
    def _empty() -> dict[str, Any]:
        n = len(SERVICE_GRAPH_BUCKETS) + 1
        return {
            "server": [0] * n, "client": [0] * n,
            "server_sum": 0.0, "client_sum": 0.0,
            "server_min": None, "server_max": None, "client_min": None, "client_max": None,
        }

    def observe(self, key: tuple[str, str, str], side: str, seconds: float) -> None:
        h = self.edges.get(key)
        if h is None:
            h = self.edges[key] = self._empty()
        i = 0
        for i, b in enumerate(SERVICE_GRAPH_BUCKETS):  # noqa: B007
            if seconds <= b:
                break
        else:
            i = len(SERVICE_GRAPH_BUCKETS)
        h[side][i] += 1
        h[side + "_sum"] += seconds
        lo, hi = h[side + "_min"], h[side + "_max"]
        h[side + "_min"] = seconds if lo is None else min(lo, seconds)
        h[side + "_max"] = seconds if hi is None else max(hi, seconds)

    def snapshot(self) -> Any:
        return {
            "start_ns": self.start_ns,
            "edges": [[list(k), v] for k, v in self.edges.items()],
            "flows": [[list(k), v] for k, v in self.flows.items()],
        }

    def restore(self, data: Any) -> None:
        self.start_ns = int(data.get("start_ns") or self.start_ns)
        n = len(SERVICE_GRAPH_BUCKETS) + 1
        for k, v in data.get("edges") or []:
            if len(k) == 3 and len(v.get("server", ())) == n and len(v.get("client", ())) == n:
                self.edges[(str(k[0]), str(k[1]), str(k[2]))] = v
        for k, v in data.get("flows") or []:
            if len(k) == 2:
                self.flows[(str(k[0]), str(k[1]))] = int(v)


def _get(obj: Any, *names: str) -> Any:
    for n in names:
        v = obj.get(n) if isinstance(obj, Mapping) else getattr(obj, n, None)
        if v is not None and v != "":
            return v
    return None


#: apiward connection types -> the servicegraph connector's ``connection_type`` values.
_CONNECTION_TYPES = {
    "database": "database", "db": "database",
    "messaging": "messaging_system", "queue": "messaging_system", "messaging_system": "messaging_system",
    "virtual_node": "virtual_node", "external": "virtual_node",
}


def servicegraph_connection_type(apiward_type: str) -> str:
    """``http``/``grpc`` edges have an empty type in the connector; the rest map by kind."""
    return _CONNECTION_TYPES.get(apiward_type or "", "")


class ServiceGraphMetricsExporter:
    """The service graph and apiward's own metrics as OTLP metrics, every interval.

    ``exporter`` is any SDK ``MetricExporter``. :meth:`collect` builds one
    cumulative snapshot (``MetricsData``) from State; :meth:`observe_batch` is
    the per-batch hook (registered on ``pipeline.on_batch``) that feeds the
    latency histograms and sensitive-flow counts.
    """

    def __init__(
        self,
        state: State,
        exporter: Any,
        *,
        settings: ExportSettings | None = None,
        counters: ExportCounters | None = None,
        resource: Any = None,
    ) -> None:
        from opentelemetry.sdk.resources import Resource

        self.state = state
        self.exporter = exporter
        self.settings = settings or ExportSettings()
        self.counters = counters or ExportCounters()
        self.resource = resource if resource is not None else Resource.create({"service.name": "apiward"})
        with state.lock:
            self.hist: ServiceGraphHistograms = state.part(ServiceGraphHistograms.PART, ServiceGraphHistograms)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ feeding
    def observe_batch(self, batch: Any = None) -> None:
        """Per-batch hook: latency and sensitive flows of ``state.batch.calls``. O(calls)."""
        state = self.state
        with state.lock:
            calls = list(state.batch.calls)
            sensitive = state.batch.sensitive
            for c in calls:
                try:
                    self._observe_call(c, sensitive)
                except Exception:  # noqa: BLE001 - a foreign call shape must not stop analysis
                    log.debug("call not understood by the metrics exporter", exc_info=True)

    def _observe_call(self, c: Any, sensitive: Mapping[str, list[Any]]) -> None:
        key = (str(c.client), str(c.server), str(c.connection_type or ""))
        cs, ss, span = c.client_span, c.server_span, c.span
        client_d = (cs or ss or span).duration_ns / 1e9
        server_d = (ss or cs or span).duration_ns / 1e9
        self.hist.observe(key, "client", client_d)
        self.hist.observe(key, "server", server_d)
        if not sensitive:
            return
        seen: set[str] = set()
        for sp in (cs, ss, span):
            if sp is None or sp.span_id in seen:
                continue
            seen.add(sp.span_id)
            for d in sensitive.get(sp.span_id, ()):
                dtype = _get(d, "type", "data_type", "entity_type", "kind") or "unknown"
                direction = str(_get(d, "direction", "where") or "request")
                dest = c.client_kind if "response" in direction else c.server_kind
                fk = (str(dtype), str(getattr(dest, "value", dest)))
                self.hist.flows[fk] = self.hist.flows.get(fk, 0) + 1

    # ------------------------------------------------------------ snapshot
    def collect(self) -> Any:
        """One cumulative snapshot of every metric, as SDK ``MetricsData``."""
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Gauge,
            Histogram,
            HistogramDataPoint,
            Metric,
            MetricsData,
            NumberDataPoint,
            ResourceMetrics,
            ScopeMetrics,
            Sum,
        )
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        cum = AggregationTemporality.CUMULATIVE
        now = time.time_ns()
        state = self.state
        with state.lock:
            start = self.hist.start_ns
            edges = self._edges()
            hist: dict[tuple[str, str, str], dict[str, Any]] = {
                k: {kk: (list(vv) if isinstance(vv, list) else vv) for kk, vv in v.items()}
                for k, v in self.hist.edges.items()
            }
            flows = dict(self.hist.flows)
            by_rule: dict[tuple[str, str], list[int]] = {}
            for r in state.findings.records():
                f = r.finding
                acc = by_rule.setdefault((f.rule, f.severity.label), [0, 0])
                acc[0] += 1
                acc[1] += f.count

        def num(attrs: dict[str, Any], v: float) -> Any:
            return NumberDataPoint(attributes=attrs, start_time_unix_nano=start, time_unix_nano=now, value=v)

        def total(name: str, desc: str, points: list[Any], unit: str = "1") -> Any:
            return Metric(name=name, description=desc, unit=unit,
                          data=Sum(data_points=points, aggregation_temporality=cum, is_monotonic=True))

        req: list[Any] = []
        failed: list[Any] = []
        by_verdict: list[Any] = []
        lat_server: list[Any] = []
        lat_client: list[Any] = []
        for e in edges:
            client, server, ctype = e["client"], e["server"], e["connection_type"]
            sg_type = servicegraph_connection_type(ctype)
            if not sg_type and e["virtual"]:
                sg_type = "virtual_node"
            labels = {"client": client, "server": server, "connection_type": sg_type}
            req.append(num(labels, int(e["calls"])))
            failed.append(num(labels, int(e["errors"])))
            by_verdict.append(num({"client": client, "server": server, "connection_type": ctype,
                                   "verdict": e["verdict"]}, int(e["calls"])))
            h = hist.get((client, server, ctype))
            if h is None:
                continue
            for side, out in (("server", lat_server), ("client", lat_client)):
                counts = h[side]
                out.append(HistogramDataPoint(
                    attributes=labels, start_time_unix_nano=start, time_unix_nano=now,
                    count=int(sum(counts)), sum=float(h[side + "_sum"]), bucket_counts=list(counts),
                    explicit_bounds=list(SERVICE_GRAPH_BUCKETS),
                    min=float(h[side + "_min"] or 0.0), max=float(h[side + "_max"] or 0.0),
                ))
        metrics = [
            total("traces_service_graph_request_total",
                  "Requests between two nodes, as the servicegraph connector counts them.", req),
            total("traces_service_graph_request_failed_total",
                  "Failed requests between two nodes.", failed),
        ]
        for name, points, desc in (
            ("traces_service_graph_request_server_seconds", lat_server,
             "Time for a request between two nodes as seen from the server."),
            ("traces_service_graph_request_client_seconds", lat_client,
             "Time for a request between two nodes as seen from the client."),
        ):
            metrics.append(Metric(name=name, description=desc, unit="s",
                                  data=Histogram(data_points=points, aggregation_temporality=cum)))
        metrics += [
            Metric(name="apiward_findings", description="Open findings, by rule and severity.", unit="1",
                   data=Gauge(data_points=[num({"rule": r, "severity": s}, v[0])
                                           for (r, s), v in sorted(by_rule.items())])),
            total("apiward_finding_observations_total",
                  "Observations merged into findings, by rule and severity.",
                  [num({"rule": r, "severity": s}, v[1]) for (r, s), v in sorted(by_rule.items())]),
            total("apiward_edge_calls_total", "Calls per call-graph edge, by zero-trust verdict.", by_verdict),
            total("apiward_sensitive_flows_total",
                  "Sensitive-data detections on calls, by data type and destination kind.",
                  [num({"data_type": t, "destination_kind": k}, v) for (t, k), v in sorted(flows.items())]),
        ]
        metrics = [m for m in metrics if m.data.data_points]
        self.counters.add("metrics_points", sum(len(m.data.data_points) for m in metrics))
        scope = InstrumentationScope(SCOPE_NAME, SCOPE_VERSION)
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=self.resource,
            scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics, schema_url="")],
            schema_url="",
        )])

    def _edges(self) -> list[dict[str, Any]]:
        """Edges of the call-graph part with their verdicts (call with state.lock held)."""
        part = self.state.parts.get("callgraph")
        report = getattr(part, "report", None)
        if report is None:
            return []
        try:
            rep = report()
            raw = rep.get("edges") or []
            virtual = {str(_get(n, "id")) for n in rep.get("nodes") or () if _get(n, "virtual")}
        except Exception:  # noqa: BLE001 - a half-built part must not stop export
            log.debug("call-graph report failed", exc_info=True)
            return []
        zt = self.state.parts.get("zerotrust")
        verdict_fn = getattr(zt, "verdict", None)
        out = []
        for e in raw:
            client, server = _get(e, "client"), _get(e, "server")
            if not client or not server:
                continue
            ctype = str(_get(e, "connection_type") or "")
            verdict = _get(e, "verdict")
            if verdict is None and verdict_fn is not None:
                try:
                    verdict = verdict_fn(client, server, ctype)
                except Exception:  # noqa: BLE001
                    verdict = None
            out.append({
                "client": str(client), "server": str(server), "connection_type": ctype,
                "calls": int(_get(e, "calls") or 0), "errors": int(_get(e, "errors") or 0),
                "verdict": str(getattr(verdict, "value", verdict) or "unknown"),
                "virtual": client in virtual or server in virtual,
            })
        return out

    # ------------------------------------------------------------ lifecycle
    def export_once(self) -> bool:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        data = self.collect()
        if not data.resource_metrics[0].scope_metrics[0].metrics:
            return True

        def once() -> bool:
            res = self.exporter.export(data, timeout_millis=self.settings.timeout * 1000)
            return bool(res == MetricExportResult.SUCCESS)

        ok = export_with_retry(once, self.settings, self._stop, lambda: self.counters.add("metrics_retries"))
        self.counters.add("metrics_exports" if ok else "metrics_failed")
        return ok

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apiward-export-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval):
            try:
                self.export_once()
            except Exception:  # noqa: BLE001
                log.exception("metrics export failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.settings.timeout + 5)
            self._thread = None
        try:
            self.export_once()  # the final values; one attempt, as stop is set
        except Exception:  # noqa: BLE001
            log.exception("final metrics export failed")
        try:
            self.exporter.shutdown()
        except Exception:  # noqa: BLE001
            log.debug("metric exporter shutdown failed", exc_info=True)


# ------------------------------------------------------------------ wiring


def build_exporters(config: Config, agent: Any, environ: Mapping[str, str] | None = None) -> list[Any]:
    """The exporters the config and environment ask for (none when export is off).

    Registers the shared counters as ``agent.stats.extra["export"]`` and the
    metrics exporter's per-batch hook on ``agent.pipeline.on_batch``.
    """
    env = os.environ if environ is None else environ
    settings = ExportSettings.from_config(config)
    logs = resolve_target("logs", config, env) if settings.logs else None
    metrics = resolve_target("metrics", config, env) if settings.metrics else None
    if logs is None and metrics is None:
        return []
    counters = ExportCounters()
    agent.stats.extra["export"] = counters.as_dict
    resource = _resource(config, env)
    out: list[Any] = []
    if logs is not None:
        out.append(FindingsLogExporter(
            agent.state, make_log_exporter(logs, settings.timeout),
            settings=settings, counters=counters, resource=resource,
        ))
    if metrics is not None:
        m = ServiceGraphMetricsExporter(
            agent.state, make_metric_exporter(metrics, settings.timeout),
            settings=settings, counters=counters, resource=resource,
        )
        agent.pipeline.on_batch.append(m.observe_batch)
        out.append(m)
    log.info(
        "exporting %s over OTLP",
        ", ".join(f"{t.signal} to {t.endpoint or 'the OTEL_EXPORTER_OTLP_* endpoint'} ({t.protocol})"
                  for t in (logs, metrics) if t is not None),
    )
    return out
