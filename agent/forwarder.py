"""Redacting span forwarder: every received span goes on to the next OTLP hop with its
detected sensitive values replaced in place, so apiward can sit inline as a sidecar.

Endpoint rule (``--forward URL``):

- ``grpc://host:port`` (plaintext) or ``grpcs://host:port`` (TLS), or any URL or
  ``host:port`` whose port is 4317: OTLP/gRPC ``TraceService/Export``;
- otherwise OTLP/HTTP protobuf, POSTed to the URL; a URL without a path gets the
  standard ``/v1/traces``.

Per type, ``sensitive.forward_actions`` in the config chooses what replaces a value:
``mask`` (default: the masked form), ``hash`` (``[TYPE:hmac]``) or ``drop`` (the
attribute is removed); ``default`` sets the action for unlisted types.

Spans are forwarded only as the sensitive-data stage saw them: a batch that stage did
not complete (it raised, or it is not running) is forwarded with every value blanked
(:func:`~enrichers.sensitive.redaction.blank_span`), counted as
``forward_spans_unscanned``, never raw.

Delivery is at-least-once: :meth:`SpanForwarder.submit` never blocks, it copies the
batch and its detections into a bounded queue (counted drops when full); one thread
sends, retrying with exponential backoff while the next hop is down, and the
receivers keep answering the applications meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agent.model import Resource, Span
from enrichers.sensitive.redaction import ACTIONS, blank_span, redact_span

if TYPE_CHECKING:
    from agent.config import Config
    from agent.pipeline import Stats
    from agent.state import State

log = logging.getLogger("apiward.forwarder")

MAX_REQUEST_SPANS = 1024
BACKOFF_START = 0.2
BACKOFF_MAX = 15.0


class PermanentError(Exception):
    """The next hop refused the data for good (bad request); retrying cannot help."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how spans are forwarded."""

    protocol: str  # "grpc" or "http"
    address: str  # host:port for gRPC, the full URL for HTTP
    secure: bool = False


def parse_target(url: str) -> Target:
    """Apply the endpoint rule of the module docstring; raises ValueError on nonsense."""
    u = url.strip()
    if not u:
        raise ValueError("forward: empty URL; give an OTLP endpoint such as grpc://collector:4317")
    if "://" not in u:
        host, _, port = u.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"forward: {url!r} is not a URL or host:port; use grpc://host:4317 or http://host:4318")
        if port == "4317":
            return Target("grpc", u)
        return Target("http", f"http://{u}/v1/traces")
    parts = urlsplit(u)
    scheme = parts.scheme.lower()
    if not parts.hostname:
        raise ValueError(f"forward: {url!r} has no host")
    hostport = parts.netloc.rpartition("@")[2]
    if scheme in ("grpc", "grpcs"):
        return Target("grpc", hostport, secure=scheme == "grpcs")
    if scheme not in ("http", "https"):
        raise ValueError(f"forward: unsupported scheme {scheme!r} in {url!r}; use grpc://, grpcs://, http:// or https://")
    if parts.port == 4317:
        return Target("grpc", hostport, secure=scheme == "https")
    path = parts.path if parts.path not in ("", "/") else "/v1/traces"
    return Target("http", f"{scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else ""))


# ------------------------------------------------------------------ protobuf


def _any_value(v: Any) -> Any:
    from opentelemetry.proto.common.v1 import common_pb2

    av = common_pb2.AnyValue()
    if isinstance(v, str):
        av.string_value = v
    elif isinstance(v, bool):
        av.bool_value = v
    elif isinstance(v, int):
        av.int_value = v
    elif isinstance(v, float):
        av.double_value = v
    elif isinstance(v, (bytes, bytearray)):
        av.bytes_value = bytes(v)
    elif isinstance(v, (list, tuple)):
        av.array_value.values.extend(_any_value(x) for x in v if x is not None)
    elif isinstance(v, Mapping):
        av.kvlist_value.values.extend(_key_values(v))
    else:
        av.string_value = str(v)
    return av


def _key_values(attrs: Mapping[str, Any]) -> list[Any]:
    from opentelemetry.proto.common.v1 import common_pb2

    return [common_pb2.KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items() if v is not None]


def _hex(s: str) -> bytes:
    try:
        return bytes.fromhex(s) if s else b""
    except ValueError:
        return b""


def build_request(spans: Sequence[Span]) -> Any:
    """An OTLP ``ExportTraceServiceRequest`` holding ``spans`` (grouped by resource and scope)."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    from opentelemetry.proto.resource.v1 import resource_pb2
    from opentelemetry.proto.trace.v1 import trace_pb2

    req = trace_service_pb2.ExportTraceServiceRequest()
    by_res: dict[int, tuple[Any, dict[str, Any]]] = {}
    for sp in spans:
        res_key = id(sp.resource)
        entry = by_res.get(res_key)
        if entry is None:
            rs = req.resource_spans.add()
            rs.resource.CopyFrom(resource_pb2.Resource(attributes=_key_values(sp.resource.attributes)))
            entry = by_res[res_key] = (rs, {})
        rs, scopes = entry
        ss = scopes.get(sp.scope_name)
        if ss is None:
            ss = rs.scope_spans.add()
            ss.scope.name = sp.scope_name
            scopes[sp.scope_name] = ss
        out = ss.spans.add()
        out.trace_id = _hex(sp.trace_id)
        out.span_id = _hex(sp.span_id)
        out.parent_span_id = _hex(sp.parent_span_id)
        out.name = sp.name
        out.kind = int(sp.kind)
        out.start_time_unix_nano = sp.start_ns
        out.end_time_unix_nano = sp.end_ns
        out.attributes.extend(_key_values(sp.attributes))
        for ev in sp.events:
            out.events.append(
                trace_pb2.Span.Event(time_unix_nano=ev.time_ns, name=ev.name, attributes=_key_values(ev.attributes))
            )
        for ln in sp.links:
            out.links.append(
                trace_pb2.Span.Link(trace_id=_hex(ln.trace_id), span_id=_hex(ln.span_id),
                                    attributes=_key_values(ln.attributes))
            )
        out.status.code = int(sp.status_code)
        out.status.message = sp.status_message
    return req


# ------------------------------------------------------------------ senders


class _GrpcSender:
    def __init__(self, target: Target, timeout: float) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        self._grpc = grpc
        if target.secure:
            self.channel = grpc.secure_channel(target.address, grpc.ssl_channel_credentials())
        else:
            self.channel = grpc.insecure_channel(target.address)
        self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)
        self.timeout = timeout

    def send(self, req: Any) -> None:
        grpc = self._grpc
        try:
            self.stub.Export(req, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED,
                        grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise PermanentError(str(code)) from exc
            raise

    def close(self) -> None:
        self.channel.close()


class _HttpSender:
    def __init__(self, target: Target, timeout: float) -> None:
        self.url = target.address
        self.timeout = timeout

    def send(self, req: Any) -> None:
        body = req.SerializeToString()
        r = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/x-protobuf"}
        )
        try:
            with urllib.request.urlopen(r, timeout=self.timeout) as resp:  # noqa: S310 - configured URL
                resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 502, 503, 504) or exc.code >= 500:
                raise
            raise PermanentError(f"HTTP {exc.code}") from exc

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ forwarder


class SpanForwarder:
    """Forwards redacted spans to ``config.forward``. See the module docstring."""

    def __init__(self, config: Config, state: State, stats: Stats | None = None, *,
                 max_queue_spans: int | None = None, timeout: float = 5.0) -> None:
        if not config.forward:
            raise ValueError("forward: no endpoint configured")
        self.target = parse_target(config.forward)
        section = config.section("sensitive") or {}
        # The config loader validates these with a readable message; this is the backstop
        # for a Config built in code.
        acts = dict(section.get("forward_actions") or {})
        default = str(acts.pop("default", "mask")).lower()
        for t, a in [("default", default), *acts.items()]:
            if str(a).lower() not in ACTIONS:
                raise ValueError(f"sensitive.forward_actions.{t}: {a!r} is not one of {', '.join(ACTIONS)}")
        self.default_action = default
        self.actions = {str(t).upper(): str(a).lower() for t, a in acts.items()}
        #: With the sensitive stage switched off nothing is ever scanned: every span is blanked.
        self.scan_enabled = bool(section.get("enabled", True))
        if not self.scan_enabled:
            log.warning("sensitive.enabled is false: every forwarded span is blanked, not redacted")
        self.state = state
        self.stats = stats
        self.timeout = timeout
        fwd_q = section.get("forward_queue_spans")
        self.max_queue = int(max_queue_spans or fwd_q or max(10_000, config.queue_spans // 2))
        # (span, its detections), or (span, None) when its batch was not scanned.
        self._queue: deque[tuple[Span, tuple[Any, ...] | None]] = deque()
        self._inflight = 0  # spans of the request being sent or retried
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._sender: Any = None
        self.sent = 0
        self.dropped = 0
        self.failed_attempts = 0
        self.permanent_failures = 0
        self.redacted = 0
        self.unscanned = 0
        if stats is not None:
            stats.extra["forwarder"] = self.metrics

    # ---------------------------------------------------------- public
    def metrics(self) -> dict[str, float]:
        with self._cond:
            queued = len(self._queue) + self._inflight
        return {
            "forward_spans_sent": self.sent,
            "forward_spans_dropped": self.dropped,
            "forward_spans_queued": queued,
            "forward_failed_attempts": self.failed_attempts,
            "forward_permanent_failures": self.permanent_failures,
            "forward_spans_redacted": self.redacted,
            "forward_spans_unscanned": self.unscanned,
        }

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="apiward-forwarder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Try to deliver what is queued for up to ``timeout`` seconds, then stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._deadline = deadline
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.1, timeout + 1.0))
            self._thread = None
        if self._queue:
            n = len(self._queue)
            self.dropped += n
            self._queue.clear()
            log.warning("forwarder stopped with %d spans undelivered", n)
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    def submit(self, batch: list[Span]) -> None:
        """Queue a processed batch with its detections. Never blocks; drops (counted) when full."""
        if not batch:
            return
        items: list[tuple[Span, tuple[Any, ...] | None]]
        if self._scanned():
            found = self.state.batch.sensitive
            items = [(sp, tuple(found.get(sp.span_id) or ())) for sp in batch]
        else:
            if self.unscanned == 0:
                log.warning("the sensitive-data scan did not complete on a batch: its %d spans are "
                            "forwarded with every value blanked (further ones counted as "
                            "forward_spans_unscanned)", len(batch))
            self.unscanned += len(batch)
            items = [(sp, None) for sp in batch]
        with self._cond:
            room = self.max_queue - len(self._queue)
            if room < len(items):
                self.dropped += len(items) - max(room, 0)
                items = items[: max(room, 0)]
            self._queue.extend(items)
            self._cond.notify()

    def _scanned(self) -> bool:
        """Did the sensitive-data stage complete the batch being submitted?"""
        return (self.scan_enabled and self.stats is not None
                and "sensitive" in self.stats.batch_completed)

    # ---------------------------------------------------------- sending
    def _redact(self, span: Span, dets: tuple[Any, ...] | None, blanked: dict[int, Resource]) -> Span:
        if dets is None:
            return blank_span(span, blanked)
        if not dets:
            return span
        self.redacted += 1
        acts = {d.type: self.actions.get(d.type, self.default_action) for d in dets}
        return redact_span(span, dets, acts)

    def _take(self) -> list[tuple[Span, tuple[Any, ...] | None]] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait(0.5)
            if not self._queue:
                return None
            n = min(len(self._queue), MAX_REQUEST_SPANS)
            self._inflight = n  # still waiting, until sent or dropped
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        backoff = BACKOFF_START
        pending: Any = None
        pending_n = 0
        while True:
            if pending is None:
                items = self._take()
                if items is None:
                    return
                try:
                    blanked: dict[int, Resource] = {}
                    pending = build_request([self._redact(s, d, blanked) for s, d in items])
                except Exception:  # noqa: BLE001 - one bad span must not stop forwarding
                    log.exception("could not build a forward request; %d spans dropped", len(items))
                    self.dropped += len(items)
                    self._inflight = 0
                    continue
                pending_n = len(items)
            try:
                if self._sender is None:
                    self._sender = (_GrpcSender if self.target.protocol == "grpc" else _HttpSender)(
                        self.target, self.timeout
                    )
                self._sender.send(pending)
            except PermanentError as exc:
                self.permanent_failures += 1
                self.dropped += pending_n
                self._inflight = 0
                log.warning("next hop %s refused %d spans (%s); dropped", self.target.address, pending_n, exc)
                pending = None
                continue
            except Exception as exc:  # noqa: BLE001 - retryable: next hop down or slow
                self.failed_attempts += 1
                if self.failed_attempts == 1 or self.failed_attempts % 50 == 0:
                    log.warning("forwarding to %s failed (%s); retrying with backoff",
                                self.target.address, type(exc).__name__)
                with self._cond:
                    if self._stopping and time.monotonic() >= getattr(self, "_deadline", 0):
                        self.dropped += pending_n
                        self._inflight = 0
                        return
                    self._cond.wait(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            self.sent += pending_n
            self._inflight = 0
            pending = None
            backoff = BACKOFF_START
            if self._stopping and not self._queue:
                return
