"""The eBPF HTTP collector: loads the BCC program, polls its events, emits spans.

Only this package imports ``bcc`` (Debian's ``python3-bpfcc``), and only when
the collector starts. :func:`check_environment` says in one sentence what is
missing on a machine that cannot trace, so ``apiward run --ebpf`` can stop with
it before anything else starts.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from agent.model import SOURCE_EBPF, Span, SpanSink

from .events import decode
from .http_parser import HttpMessage
from .join import JoiningSink
from .procinfo import ProcessResolver, resolve_socket
from .program import ProgramOptions, render_program
from .spans import ConnectionInfo, exchange_to_span, parse_traceparent
from .tracker import ConnectionTracker

log = logging.getLogger(__name__)

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
LIBSSL_GLOBS = (
    "/lib/x86_64-linux-gnu/libssl.so*",
    "/usr/lib/x86_64-linux-gnu/libssl.so*",
    "/lib/aarch64-linux-gnu/libssl.so*",
    "/usr/lib/aarch64-linux-gnu/libssl.so*",
    "/usr/lib64/libssl.so*",
    "/lib64/libssl.so*",
    "/usr/lib/libssl.so*",
    "/usr/local/lib/libssl.so*",
)
_LIBSSL_RE = re.compile(r"\s(/\S*libssl\.so[.\d]*)$")
# (symbol, entry probe, return probe)
_SSL_PROBES = (
    ("SSL_read", "probe_ssl_rw_enter", "probe_ssl_read_exit"),
    ("SSL_write", "probe_ssl_rw_enter", "probe_ssl_write_exit"),
    ("SSL_read_ex", "probe_ssl_rw_ex_enter", "probe_ssl_read_exit"),
    ("SSL_write_ex", "probe_ssl_rw_ex_enter", "probe_ssl_write_exit"),
)

_CAP_SYS_ADMIN = 21
_CAP_PERFMON = 38
_CAP_BPF = 39


class EbpfUnavailable(RuntimeError):
    """The machine cannot run the tracer; the message says what is missing and how to fix it."""


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def check_environment() -> str | None:
    """``None`` when eBPF tracing can run here, else one sentence saying what is missing."""
    if not os.uname().sysname == "Linux":
        return "eBPF tracing needs Linux; run apiward without --ebpf on this system."
    caps = _effective_caps()
    has_bpf = bool(caps & (1 << _CAP_BPF)) and bool(caps & (1 << _CAP_PERFMON))
    if os.geteuid() != 0 and not has_bpf and not caps & (1 << _CAP_SYS_ADMIN):
        return (
            "eBPF tracing needs root or the CAP_BPF and CAP_PERFMON capabilities: "
            "run apiward as root (for example with sudo) or without --ebpf."
        )
    kver = os.uname().release
    if not (
        Path(f"/lib/modules/{kver}/build/include").exists()
        or Path("/sys/kernel/kheaders.tar.xz").exists()
    ):
        return (
            f"eBPF tracing needs the kernel headers for {kver}: install them "
            f"(apt-get install linux-headers-amd64) and link /lib/modules/{kver}/build to "
            "/usr/src/linux-headers-<version>-amd64 (and source to the matching -common); "
            "scripts/setup_ebpf.sh does both."
        )
    if not any(Path(d, "events", "syscalls").is_dir() for d in TRACEFS_DIRS):
        return (
            "eBPF tracing needs tracefs with syscall tracepoints: mount it with "
            "'mount -t tracefs tracefs /sys/kernel/tracing' (scripts/setup_ebpf.sh does it)."
        )
    try:
        import bcc  # noqa: F401
    except Exception:  # ImportError, or OSError when libbcc is missing
        return (
            "eBPF tracing needs the BCC Python module: install Debian's python3-bpfcc "
            "(apt-get install python3-bpfcc) and run scripts/setup_ebpf.sh to make it "
            "importable from the virtualenv (PyPI's 'bcc' package is unrelated)."
        )
    return None


def find_libssl(pids: list[int] | None = None) -> list[str]:
    """Paths of the OpenSSL libraries to probe: the system ones and those processes map.

    Libraries inside containers are reached through ``/proc/<pid>/root``. One
    path per file (device, inode), as uprobes attach to the file.
    """
    paths: list[str] = []
    for pattern in LIBSSL_GLOBS:
        paths.extend(sorted(glob.glob(pattern)))
    if pids is None:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if "libssl" not in line:
                        continue
                    m = _LIBSSL_RE.search(line.rstrip("\n"))
                    if m:
                        paths.append(f"/proc/{pid}/root{m.group(1)}")
        except OSError:
            continue
    seen: set[tuple[int, int]] = set()
    out: list[str] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen or os.path.islink(p) and not os.path.exists(os.path.realpath(p)):
            continue
        seen.add(key)
        out.append(p)
    return out


class EbpfCollector:
    """Traces HTTP/1.x (plaintext and OpenSSL) with eBPF and offers spans to ``sink``.

    ``config`` is an :class:`agent.config.Config` (its ``ebpf_pids``,
    ``ebpf_ports``, ``ebpf_comms`` and ``ebpf_capture_bytes`` are used). The
    poll thread never blocks on the sink and never dies on an error: it counts
    it, logs the first one and goes on.
    """

    flush_interval = 0.2
    #: The kernel writes records without waking us (BPF_RB_NO_WAKEUP); the
    #: buffer is drained this often instead, so a busy server costs one poll
    #: round per interval, not one per request, and an idle one costs nothing.
    drain_interval = 0.02
    max_batch = 512
    libssl_rescan_interval = 30.0

    def __init__(self, config: Any, sink: SpanSink, *, tls: bool = True) -> None:
        self._config = config
        self._sink = sink
        self.options = ProgramOptions(
            capture_bytes=int(getattr(config, "ebpf_capture_bytes", 4096) or 4096),
            pids=tuple(getattr(config, "ebpf_pids", []) or ()),
            ports=tuple(getattr(config, "ebpf_ports", []) or ()),
            comms=tuple(getattr(config, "ebpf_comms", []) or ()),
            self_pid=os.getpid(),
            tls=tls,
        )
        self._bpf: Any = None
        self._suspended: list[Any] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._records: list[bytes] = []
        self._batch: list[Span] = []
        self._last_flush = time.monotonic()
        self._resolver = ProcessResolver()
        # In front of the pipeline in eBPF mode: tell it which requests are on their way.
        self._join = sink if isinstance(sink, JoiningSink) else None
        self._tracker = ConnectionTracker(
            self._on_exchange,
            body_limit=self.options.capture_bytes,
            resolve=resolve_socket,
            on_request=self._on_request if self._join is not None else None,
        )
        self._clock_offset = time.time_ns() - time.monotonic_ns()
        self._probed: set[tuple[int, int]] = set()
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        self._counts = {
            "events": 0.0,
            "bytes": 0.0,
            "lost_events": 0.0,
            "spans": 0.0,
            "spans_dropped": 0.0,
            "errors": 0.0,
            "tls_libraries": 0.0,
        }

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Compile and attach the program, then poll on a thread. Raises :class:`EbpfUnavailable`."""
        problem = check_environment()
        if problem:
            raise EbpfUnavailable(problem)
        try:
            self.options.validate()
        except ValueError as exc:
            raise EbpfUnavailable(f"eBPF settings: {exc}.") from None
        from bcc import BPF  # lazily: only eBPF mode needs bcc

        try:
            self._bpf = BPF(text=render_program(self.options).encode())
        except Exception as exc:
            raise EbpfUnavailable(
                f"the eBPF program did not load on kernel {os.uname().release} ({exc}); "
                "check that the kernel headers match (scripts/setup_ebpf.sh)."
            ) from None
        if self.options.tls:
            self._attach_libssl()
        self._bpf[b"events"].open_ring_buffer(self._on_record)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="apiward-ebpf", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling, finish open exchanges, hand over the last spans, detach."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._bpf is not None:
            try:
                self._poll_once(0)
                self._tracker.close_all(time.monotonic_ns())
                self._flush(force=True)
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                self._error("stop", exc)
            try:
                self._bpf.cleanup()
            except Exception:
                pass
            self._bpf = None

    def stats(self) -> dict[str, float]:
        """Counters for /api/v1/stats and /metrics."""
        with self._lock:
            out = dict(self._counts)
        t = self._tracker
        out["connections"] = float(t.open_connections)
        out["connections_total"] = float(t.connections_total)
        out["sequence_gaps"] = float(t.sequence_gaps)
        out["truncated_events"] = float(t.truncated_events)
        if self._join is not None:
            out.update(self._join.stats())
        return out

    def suspend(self) -> None:
        """Detach the syscall and socket tracepoints (the program stays loaded).

        Traced processes then run as if no tracer were there; :meth:`resume`
        attaches again without recompiling. Connections opened meanwhile are
        not traced. ``bench/ebpf_overhead.py`` alternates the two.
        """
        bpf = self._bpf
        if bpf is None or self._suspended:
            return
        self._suspended = list(bpf.tracepoint_fds)
        for tp in self._suspended:
            bpf.detach_tracepoint(tp)

    def resume(self) -> None:
        """Attach the tracepoints :meth:`suspend` detached."""
        bpf = self._bpf
        if bpf is None or not self._suspended:
            return
        for tp in self._suspended:
            name = tp.encode() if isinstance(tp, str) else tp
            fn = b"tracepoint__" + name.replace(b":", b"__")
            bpf.attach_tracepoint(tp=name, fn_name=fn)
        self._suspended = []

    # ------------------------------------------------------------- internals

    def _attach_libssl(self) -> None:
        pids = list(self.options.pids) or None
        for path in find_libssl(pids):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in self._probed:
                continue
            self._probed.add(key)
            attached = 0
            for sym, enter, ret in _SSL_PROBES:
                try:
                    self._bpf.attach_uprobe(name=path.encode(), sym=sym.encode(), fn_name=enter.encode())
                    self._bpf.attach_uretprobe(name=path.encode(), sym=sym.encode(), fn_name=ret.encode())
                    attached += 1
                except Exception:
                    continue  # e.g. no SSL_read_ex before OpenSSL 1.1.1
            try:
                self._bpf.attach_uprobe(
                    name=path.encode(), sym=b"SSL_set_fd", fn_name=b"probe_ssl_set_fd"
                )
            except Exception:
                pass
            if attached:
                with self._lock:
                    self._counts["tls_libraries"] += 1

    def _on_record(self, ctx: Any, data: Any, size: int) -> None:
        self._records.append(ctypes.string_at(data, size))

    def _run(self) -> None:
        last_tick = time.monotonic()
        last_rescan = last_tick
        wait = self._stop.wait
        while not wait(self.drain_interval):
            try:
                self._poll_once(0)
                now = time.monotonic()
                if now - last_tick >= 1.0:
                    last_tick = now
                    self._clock_offset = time.time_ns() - time.monotonic_ns()
                    self._read_lost()
                if self.options.tls and now - last_rescan >= self.libssl_rescan_interval:
                    last_rescan = now
                    self._attach_libssl()
                self._flush()
            except Exception as exc:
                self._error("poll", exc)
                time.sleep(0.05)

    def _poll_once(self, timeout_ms: int) -> None:
        """Drain the ring buffer (waiting up to ``timeout_ms`` for a first record)."""
        if timeout_ms:
            self._bpf.ring_buffer_poll(timeout_ms)
        self._bpf.ring_buffer_consume()
        records, self._records = self._records, []
        if records:
            self._on_records(records)

    def _on_records(self, records: list[bytes]) -> None:
        nbytes = 0
        handle = self._tracker.handle
        for rec in records:
            try:
                ev = decode(rec)
                nbytes += len(ev.data)
                handle(ev)
            except Exception as exc:
                self._error("event", exc)
        with self._lock:
            self._counts["events"] += len(records)
            self._counts["bytes"] += nbytes

    def _read_lost(self) -> None:
        total = 0
        for per_cpu in self._bpf[b"lost"].values():
            total += sum(int(per_cpu[i]) for i in range(len(per_cpu)))
        with self._lock:
            self._counts["lost_events"] = float(total)

    def _on_request(self, conn: ConnectionInfo, request: HttpMessage) -> None:
        join = self._join
        if join is None:
            return
        parsed = parse_traceparent(request.header("traceparent"))
        if parsed is not None:
            join.expect(parsed[0], parsed[1], conn.server)

    def _on_exchange(self, conn: ConnectionInfo, exchange: Any, comm: str) -> None:
        resource = self._resolver.resource(conn.pid, comm)
        self._batch.append(exchange_to_span(exchange, conn, resource, self._clock_offset))
        if len(self._batch) >= self.max_batch:
            self._flush(force=True)

    def _flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._batch or (not force and now - self._last_flush < self.flush_interval):
            return
        batch, self._batch = self._batch, []
        self._last_flush = now
        accepted = False
        try:
            accepted = self._sink.offer(batch, SOURCE_EBPF)
        except Exception as exc:  # a sink must not raise; count it if it does
            self._error("sink", exc)
        with self._lock:
            if accepted:
                self._counts["spans"] += len(batch)
            else:
                self._counts["spans_dropped"] += len(batch)
        if not accepted:
            try:
                self._sink.count_rejected(SOURCE_EBPF, "queue_full", len(batch))
            except Exception:
                pass

    def _error(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self._counts["errors"] += 1
        if where not in self._logged:
            self._logged.add(where)
            log.warning("eBPF collector: %s error (further ones only counted): %r", where, exc)
