"""The OTLP receivers in a process of their own: the edge process.

Under the GIL, one process runs its Python on one core at a time. Reading OTLP
(gRPC or HTTP framing, decoding every span, building the normalised views) is
about a third of what the agent spends per span, and it needs no analysis state.
With ``edge_process`` on (``auto``: when two CPUs or more are available, a
container's CPU limit counted),
``apiward run`` starts the receivers in a child process, which decodes and
converts there and hands each batch of finished spans to the agent over a pipe,
encoded with :mod:`marshal` (flat tuples: ~3 us per span to read back, where
decoding OTLP costs ~8). The agent's analysis thread then has its core to
itself, and the receivers the other one. The price is CPU: the two processes
together spend ~30% more per span than one (encoding, reading back), for ~40%
more spans per second (``bench/ingest.py``, with and without
``--agent-args "--edge-process off"``).

What clients see does not change: the same receivers answer, with the same
status codes and messages; the queue they check before decoding is the agent's,
plus what is still in the pipe. The child reports its counts (requests by
outcome, rejected spans) over the same pipe, so ``/api/v1/stats`` and
``/metrics`` read as with in-process receivers, a moment later.

If the child dies, the agent logs it and starts another on the same ports. If
the agent dies, the child notices within a second and exits.
"""

from __future__ import annotations

import logging
import marshal
import multiprocessing
import os
import pickle
import signal
import threading
import time
from dataclasses import fields
from operator import attrgetter
from typing import Any

from agent.model import (
    SOURCE_OTLP,
    DbView,
    FaasView,
    HttpView,
    MessagingView,
    Resource,
    RpcView,
    Span,
    SpanEvent,
    SpanKind,
    SpanLink,
    SpanSink,
    StatusCode,
)
from collectors.otlp_convert import count_request

log = logging.getLogger("apiward.edge")

# ------------------------------------------------------------------ the wire format
#
# One message per pipe write, its first byte saying what it is:
#   B  a batch: its span count (4 bytes, little-endian), then
#      marshal((source, resources, rows)), each row a span's fields in
#      Span's field order, with the resource as an index into ``resources``, the
#      kind and status as ints, events/links and views as tuples of their fields
#   P  a batch marshal cannot write (a value of another type): the count, then
#      pickle((source, spans))
#   C  a count: marshal(("request", receiver, outcome)) or ("rejected", source, reason, n)
#   R  ready: marshal((grpc_port, http_port))
#   E  could not start: the message, UTF-8

_BATCH = b"B"[0]
_PICKLED = b"P"[0]
_COUNT = b"C"[0]
_READY = b"R"[0]  # anything else at start is E, an error message

#: The layout every row follows; checked against the model at import, so a field
#: added to Span fails here (and in the tests), not as a silently shifted row.
_SPAN_LAYOUT = (
    "trace_id", "span_id", "parent_span_id", "resource", "name", "kind", "start_ns", "end_ns",
    "status_code", "status_message", "attributes", "events", "links", "source", "scope_name",
    "http", "rpc", "messaging", "db", "faas", "enduser_id",
)  # fmt: skip
if tuple(f.name for f in fields(Span)) != _SPAN_LAYOUT:  # pragma: no cover - a model change
    raise ImportError("collectors.edge: Span's fields changed; update _SPAN_LAYOUT and the codec")


def _flat(cls: type) -> Any:
    """All fields of a record as one tuple (the record rebuilds from it positionally)."""
    return attrgetter(*(f.name for f in fields(cls)))


_RESOURCE = _flat(Resource)
_HTTP = _flat(HttpView)
_RPC = _flat(RpcView)
_MESSAGING = _flat(MessagingView)
_DB = _flat(DbView)
_FAAS = _flat(FaasView)
_EVENT = _flat(SpanEvent)
_LINK = _flat(SpanLink)
_KINDS = {int(k): k for k in SpanKind}
_STATUSES = {int(s): s for s in StatusCode}


def encode_batch(spans: list[Span], source: str) -> bytes:
    """One batch of spans as a pipe message (see the wire format above)."""
    index: dict[int, int] = {}
    resources: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    try:
        for s in spans:
            r = s.resource
            ri = index.get(id(r))
            if ri is None:
                ri = index[id(r)] = len(resources)
                resources.append(_RESOURCE(r))
            h, rpc, m, db, fa = s.http, s.rpc, s.messaging, s.db, s.faas
            attrs = s.attributes
            add((
                s.trace_id, s.span_id, s.parent_span_id, ri, s.name, int(s.kind), s.start_ns,
                s.end_ns, int(s.status_code), s.status_message,
                attrs if type(attrs) is dict else dict(attrs),
                tuple(map(_EVENT, s.events)) if s.events else None,
                tuple(map(_LINK, s.links)) if s.links else None,
                s.source, s.scope_name,
                None if h is None else _HTTP(h),
                None if rpc is None else _RPC(rpc),
                None if m is None else _MESSAGING(m),
                None if db is None else _DB(db),
                None if fa is None else _FAAS(fa),
                s.enduser_id,
            ))  # fmt: skip
        return b"B" + len(spans).to_bytes(4, "little") + marshal.dumps((source, resources, rows), 4)
    except ValueError:  # a value marshal cannot write (a subclass of a built-in type, ...)
        return b"P" + len(spans).to_bytes(4, "little") + pickle.dumps((source, spans), pickle.HIGHEST_PROTOCOL)


def batch_size(data: bytes) -> int:
    """The span count of a batch message, readable even when the rest is not."""
    return int.from_bytes(data[1:5], "little")


def decode_batch(data: bytes | memoryview) -> tuple[str, list[Span]]:
    """``(source, spans)`` of a message :func:`encode_batch` wrote."""
    if data[0] == _PICKLED:
        source, spans = pickle.loads(memoryview(data)[5:])  # noqa: S301 - our own child's message
        return source, spans
    source, resources, rows = marshal.loads(memoryview(data)[5:])
    res = [Resource(*r) for r in resources]
    kinds = _KINDS
    statuses = _STATUSES
    ev = SpanEvent
    lk = SpanLink
    return source, [
        Span(
            t[0], t[1], t[2], res[t[3]], t[4], kinds[t[5]], t[6], t[7], statuses[t[8]], t[9],
            t[10],
            () if t[11] is None else tuple([ev(*e) for e in t[11]]),
            () if t[12] is None else tuple([lk(*x) for x in t[12]]),
            t[13], t[14],
            None if t[15] is None else HttpView(*t[15]),
            None if t[16] is None else RpcView(*t[16]),
            None if t[17] is None else MessagingView(*t[17]),
            None if t[18] is None else DbView(*t[18]),
            None if t[19] is None else FaasView(*t[19]),
            t[20],
        )  # fmt: skip
        for t in rows
    ]


# ------------------------------------------------------------------ the child


class EdgeSink(SpanSink):
    """The receivers' sink in the edge process: batches and counts go down the pipe.

    ``queue_depth`` is the agent's queue (``shared[0]``, refreshed by the agent
    every few tens of milliseconds) plus the spans sent and not yet read back
    (``shared[1]`` counts those), so the receivers refuse before decoding when the
    agent is full, exactly as in process.
    """

    def __init__(self, conn: Any, shared: Any, queue_spans: int) -> None:
        self._conn = conn
        self._shared = shared
        self.queue_spans = queue_spans
        self._lock = threading.Lock()
        self._sent = 0
        self.closed = False

    @property
    def queue_depth(self) -> int:
        return int(self._shared[0] + self._sent - self._shared[1])

    def _send(self, data: bytes, n: int) -> bool:
        with self._lock:
            if self.closed:
                return False
            try:
                self._conn.send_bytes(data)
            except (OSError, ValueError):  # the agent is gone (or stopping): nothing to take it
                self.closed = True
                return False
            self._sent += n
        return True

    def offer(self, batch: list[Span], source: str) -> bool:
        if not batch:
            return True
        return self._send(encode_batch(batch, source), len(batch))

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        self._send(b"C" + marshal.dumps(("rejected", source, reason, n)), 0)

    def count_request(self, receiver: str, outcome: str) -> None:
        self._send(b"C" + marshal.dumps(("request", receiver, outcome)), 0)


def child_main(conn: Any, shared: Any, settings: dict[str, Any]) -> None:
    """The edge process: start both receivers, report ready (or why not), serve until
    SIGTERM or until the agent is gone, then stop them with a grace period."""
    logging.basicConfig(
        level=settings.get("log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s[edge]: %(message)s",
    )
    # Ctrl-C and a terminal hang-up reach the whole process group: the agent decides
    # (it stops us in order, or reloads its files); only SIGTERM stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    from agent.cli import tune_gc, tune_threads
    from collectors.otlp_grpc import OtlpGrpcReceiver
    from collectors.otlp_http import OtlpHttpReceiver

    tune_gc()
    tune_threads()
    sink = EdgeSink(conn, shared, int(settings["queue_spans"]))
    receivers: list[Any] = []
    bind, mmb = settings["bind"], int(settings["max_message_bytes"])
    try:
        g = OtlpGrpcReceiver(sink, bind, int(settings["grpc_port"]), max_message_bytes=mmb)
        g.start()
        receivers.append(g)
        h = OtlpHttpReceiver(sink, bind, int(settings["http_port"]), max_message_bytes=mmb)
        h.start()
        receivers.append(h)
        conn.send_bytes(b"R" + marshal.dumps((g.port, h.port)))
    except OSError as e:
        try:
            conn.send_bytes(b"E" + str(e).encode())
        except OSError:
            pass
        for r in receivers:
            r.stop(0)
        return
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent or sink.closed:
            break  # the agent is gone: nobody to analyse what we would receive
    for r in receivers:
        try:
            r.stop(float(settings.get("grace", 5.0)))
        except Exception:  # noqa: BLE001
            log.exception("receiver stop failed")
    try:
        conn.close()
    except OSError:
        pass


# ------------------------------------------------------------------ the agent's side


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> float:
    """The CPUs this process may use: its affinity, capped by a cgroup CPU quota (a
    container's CPU limit: cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""
    try:
        n = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        n = float(os.cpu_count() or 1)
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"),
                                    ("cpu,cpuacct/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_period_us")):
        try:
            with open(os.path.join(cgroup_root, quota_file)) as f:
                parts = f.read().split()
            if period_file is not None:
                with open(os.path.join(cgroup_root, period_file)) as f:
                    parts.append(f.read().strip())
            quota, period = parts[0], parts[1]
            if quota not in ("max", "-1") and float(period) > 0:
                n = min(n, float(quota) / float(period))
        except (OSError, ValueError, IndexError):
            continue
    return n


def edge_wanted(setting: str) -> bool:
    """Whether ``edge_process`` (``auto``, ``on``, ``off``) means a separate process here:
    ``auto`` when at least two CPUs are available (a container's CPU limit counts)."""
    if setting == "auto":
        return available_cpus() >= 2
    return setting == "on"


class EdgeProcess:
    """Runs the OTLP receivers in a child process and feeds ``sink`` with their spans.

    Same lifecycle as a receiver: :meth:`start` raises ``OSError`` naming the
    address when a port cannot be bound; :attr:`grpc_port`/:attr:`http_port` are
    the bound ports after it; :meth:`stop` stops the receivers (requests in
    flight get ``grace`` seconds) and hands everything they accepted to ``sink``
    before it returns.
    """

    START_TIMEOUT = 60.0

    #: Longest a batch the receivers accepted waits for room in a full queue before it is
    #: offered anyway (and counted as dropped, should the analysis have stopped).
    FULL_WAIT = 30.0

    def __init__(self, sink: SpanSink, stats: Any, *, bind: str, grpc_port: int, http_port: int,
                 max_message_bytes: int, queue_spans: int, queue: Any = None,
                 grace: float = 5.0) -> None:
        self.sink = sink
        self.stats = stats
        #: whose ``queue_depth`` the receivers go by (the pipeline; by default the sink)
        self.queue = queue if queue is not None else sink
        self.bind = bind
        self.grpc_port = grpc_port
        self.http_port = http_port
        self.max_message_bytes = max_message_bytes
        self.queue_spans = queue_spans
        #: seconds the receivers give requests in flight when the agent stops
        self.grace = grace
        self.restarts = 0
        self._ctx = multiprocessing.get_context("spawn")
        self._shared = self._ctx.RawArray("q", 2)
        self._proc: Any = None
        self._conn: Any = None
        self._reader: threading.Thread | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._spawn()
        self._reader = threading.Thread(target=self._read, name="apiward-edge", daemon=True)
        self._reader.start()

    def _spawn(self) -> None:
        recv, send = self._ctx.Pipe(duplex=False)
        self._shared[0] = self._depth()
        self._shared[1] = 0
        settings = {
            "bind": self.bind, "grpc_port": self.grpc_port, "http_port": self.http_port,
            "max_message_bytes": self.max_message_bytes, "queue_spans": self.queue_spans,
            "log_level": logging.getLogger().getEffectiveLevel(), "grace": self.grace,
        }  # fmt: skip
        proc = self._ctx.Process(
            target=child_main, args=(send, self._shared, settings), name="apiward-edge", daemon=True
        )
        proc.start()
        send.close()
        try:
            if not recv.poll(self.START_TIMEOUT):
                raise OSError(f"the receiver process did not start within {self.START_TIMEOUT:.0f} s")
            msg = recv.recv_bytes()
        except EOFError:
            proc.join(5)
            raise OSError(f"the receiver process exited at start (exit code {proc.exitcode})") from None
        except OSError:
            proc.kill()
            raise
        if msg[0] != _READY:
            proc.join(5)
            recv.close()
            raise OSError(msg[1:].decode(errors="replace"))
        self.grpc_port, self.http_port = marshal.loads(msg[1:])
        self._proc, self._conn = proc, recv

    def _depth(self) -> int:
        return int(getattr(self.queue, "queue_depth", 0) or 0)

    def _read(self) -> None:
        shared = self._shared
        while True:
            try:
                data = self._conn.recv_bytes() if self._conn.poll(0.05) else None
            except (EOFError, OSError):  # the child closed the pipe: stopped, or died
                if self._stopping:
                    return
                self._restart()
                continue
            if data is not None:
                try:
                    self._handle(data)
                except Exception:  # noqa: BLE001 - one bad message must not stop the spans behind it
                    log.exception("could not read a message from the receiver process")
            shared[0] = self._depth()

    def _handle(self, data: bytes) -> None:
        kind = data[0]
        if kind == _BATCH or kind == _PICKLED:
            try:
                source, spans = decode_batch(data)
            except Exception:
                # Lost (the caller logs why): counted as dropped, and no longer as queued,
                # or the receivers would count it against the queue for ever.
                n = batch_size(data)
                self._shared[1] += n
                if self.stats is not None:
                    self.stats.add_dropped(SOURCE_OTLP, "unreadable", n)
                raise
            # The client was told these spans were accepted: never drop them for a full
            # queue. Waiting here fills the pipe, which holds the receivers' next answers
            # (and they refuse new requests meanwhile: the depth they see is the queue's).
            full = self.queue_spans + self.queue_spans // 4
            depth = self._depth()
            if depth >= full:
                self._shared[0] = depth
                until = time.monotonic() + self.FULL_WAIT
                while self._depth() >= full and time.monotonic() < until:
                    time.sleep(0.005)
            self.sink.offer(spans, source)
            self._shared[1] += len(spans)
        elif kind == _COUNT:
            what = marshal.loads(memoryview(data)[1:])
            if what[0] == "request":
                if self.stats is not None:
                    self.stats.add_request(what[1], what[2])
                else:
                    count_request(self.sink, what[1], what[2])
            elif what[0] == "rejected":
                self.sink.count_rejected(what[1], what[2], what[3])

    def _restart(self) -> None:
        proc = self._proc
        if proc is not None:
            proc.join(1)
        log.error("the OTLP receiver process stopped (exit code %s); starting another",
                  None if proc is None else proc.exitcode)
        while not self._stopping:
            self.restarts += 1
            try:
                self._spawn()
                return
            except OSError as e:
                log.error("cannot restart the OTLP receivers: %s; retrying in 5 s", e)
                time.sleep(5)

    def stats_report(self) -> dict[str, float]:
        """For ``/api/v1/stats`` and ``/metrics``: how often the receiver process had to be
        restarted, and the CPU seconds the current one has used (where ``/proc`` tells)."""
        out = {"restarts": float(self.restarts)}
        pid = self.pid
        if pid is not None:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields_ = f.read().rsplit(")", 1)[1].split()
                out["cpu_seconds"] = (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
        return out

    def stop(self) -> None:
        """Stop the receivers (requests in flight get :attr:`grace` seconds); every batch
        they accepted reaches ``sink`` before this returns."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()  # SIGTERM: the child stops its receivers (grace) and closes the pipe
        if self._reader is not None:
            self._reader.join(self.grace + 15)
            self._reader = None
        if proc is not None:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if self._conn is not None:
            self._conn.close()
