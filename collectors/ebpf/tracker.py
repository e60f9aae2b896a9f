"""Per-connection reassembly: kernel events in, (connection, exchange) pairs out.

One :class:`ExchangeAssembler` per connection and byte source (syscalls, TLS
plaintext): on a TLS connection the syscall stream carries ciphertext, is
recognised as non-HTTP and dropped after a few events, while the uprobe stream
carries the plaintext. A jump in the kernel's per-connection sequence number
means events were lost: pairing on that connection restarts.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from .events import Direction, EventKind, RawEvent, Role, Source
from .http_parser import ExchangeAssembler, HttpExchange, HttpMessage
from .spans import ConnectionInfo

_OPEN = int(EventKind.OPEN)
_CLOSE = int(EventKind.CLOSE)
_TLS = int(Source.TLS)
_INGRESS = int(Direction.INGRESS)
_CLIENT = int(Role.CLIENT)

OnExchange = Callable[[ConnectionInfo, HttpExchange, str], None]
OnRequest = Callable[[ConnectionInfo, HttpMessage], None]


@dataclass(slots=True)
class _Conn:
    pid: int
    fd: int
    conn_id: int
    server: bool
    comm: str
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    tls: bool = False
    next_seq: int = 0
    assemblers: dict[int, ExchangeAssembler] = field(default_factory=dict)

    def info(self, tls: bool) -> ConnectionInfo:
        return ConnectionInfo(
            pid=self.pid,
            fd=self.fd,
            server=self.server,
            local_addr=self.local_addr,
            local_port=self.local_port,
            remote_addr=self.remote_addr,
            remote_port=self.remote_port,
            tls=tls,
        )


class ConnectionTracker:
    """Feeds kernel events to per-connection HTTP assemblers.

    ``on_exchange(connection, exchange, comm)`` is called for every finished
    exchange. ``resolve(pid, fd)`` may fill in socket ends the kernel did not
    see. ``on_request(connection, request_head)``, when given, is called as
    soon as a request's headers are parsed (before its exchange completes).
    At most ``max_connections`` are tracked; the oldest is dropped first.
    """

    def __init__(
        self,
        on_exchange: OnExchange,
        *,
        body_limit: int = 4096,
        max_connections: int = 16384,
        resolve: Callable[[int, int], tuple[str, int, str, int] | None] | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        self._on_exchange = on_exchange
        self.on_request = on_request
        self._body_limit = body_limit
        self._max = max_connections
        self._resolve = resolve
        self._conns: OrderedDict[tuple[int, int], _Conn] = OrderedDict()
        self.connections_total = 0
        self.sequence_gaps = 0
        self.truncated_events = 0

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    def handle(self, ev: RawEvent) -> None:
        key = (ev.pid, ev.fd)
        if ev.kind == _OPEN:
            self._close(key, ev.ts_ns)
            self._open(ev)
            return
        if ev.kind == _CLOSE:
            self._close(key, ev.ts_ns)
            return
        conn = self._conns.get(key)
        if conn is None or conn.conn_id != ev.conn_id:
            # The open event was lost (or belongs to an older use of the fd).
            self._close(key, ev.ts_ns)
            conn = self._open(ev)
            conn.next_seq = ev.seq
        if ev.seq != conn.next_seq:
            self.sequence_gaps += 1
            for each in conn.assemblers.values():
                each.gap()
        conn.next_seq = ev.seq + 1
        if ev.source == _TLS:
            conn.tls = True
        asm = conn.assemblers.get(ev.source)
        if asm is None:
            asm = self._assembler(conn, ev.source == _TLS)
            conn.assemblers[ev.source] = asm
        if asm.dead:
            return
        missing = ev.length - len(ev.data)
        if missing:
            self.truncated_events += 1
        asm.feed(ev.direction == _INGRESS, ev.data, ev.ts_ns, missing)

    def close_all(self, ts_ns: int) -> None:
        for key in list(self._conns):
            self._close(key, ts_ns)

    def _open(self, ev: RawEvent) -> _Conn:
        conn = _Conn(
            pid=ev.pid,
            fd=ev.fd,
            conn_id=ev.conn_id,
            server=ev.role != _CLIENT,
            comm=ev.comm,
            local_addr=ev.local_addr,
            local_port=ev.local_port,
            remote_addr=ev.remote_addr,
            remote_port=ev.remote_port,
        )
        if (not conn.local_port or not conn.remote_addr) and self._resolve is not None:
            ends = self._resolve(ev.pid, ev.fd)
            if ends is not None:
                conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port = ends
        self._conns[(ev.pid, ev.fd)] = conn
        self.connections_total += 1
        while len(self._conns) > self._max:
            old_key = next(iter(self._conns))
            self._close(old_key, ev.ts_ns)
        return conn

    def _assembler(self, conn: _Conn, tls: bool) -> ExchangeAssembler:
        def emit(exchange: HttpExchange) -> None:
            self._on_exchange(conn.info(tls), exchange, conn.comm)

        on_request = self.on_request
        if on_request is None:
            return ExchangeAssembler(conn.server, emit, body_limit=self._body_limit)
        hook = on_request

        def started(request: HttpMessage) -> None:
            hook(conn.info(tls), request)

        return ExchangeAssembler(
            conn.server, emit, body_limit=self._body_limit, on_request=started
        )

    def _close(self, key: tuple[int, int], ts_ns: int) -> None:
        conn = self._conns.pop(key, None)
        if conn is None:
            return
        for asm in conn.assemblers.values():
            if not asm.dead:
                asm.close(ts_ns)
