"""Events from the kernel program, decoded by one ctypes mirror of the C struct.

``EventHeader`` mirrors ``struct event_t`` of ``http_trace.c`` up to (not
including) its ``data`` array; the captured bytes follow the header in the
ring-buffer record. :func:`decode` turns one record into a :class:`RawEvent`.
"""

from __future__ import annotations

import ctypes
import ipaddress
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache


class EventKind(IntEnum):
    DATA = 1
    OPEN = 2
    CLOSE = 3


class Direction(IntEnum):
    INGRESS = 0  # read by the traced process
    EGRESS = 1  # written by the traced process


class Source(IntEnum):
    SYSCALL = 0
    TLS = 1


class Role(IntEnum):
    UNKNOWN = 0
    SERVER = 1  # the connection was accepted
    CLIENT = 2  # the connection was connected


AF_INET = 2
AF_INET6 = 10


class EventHeader(ctypes.Structure):
    """Mirror of ``struct event_t`` without its trailing ``data`` array."""

    _fields_ = [
        ("ts", ctypes.c_uint64),
        ("conn_id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("fd", ctypes.c_int32),
        ("len", ctypes.c_uint32),
        ("cap", ctypes.c_uint32),
        ("kind", ctypes.c_uint8),
        ("dir", ctypes.c_uint8),
        ("source", ctypes.c_uint8),
        ("role", ctypes.c_uint8),
        ("family", ctypes.c_uint16),
        ("lport", ctypes.c_uint16),
        ("rport", ctypes.c_uint16),
        ("pad", ctypes.c_uint16),
        ("laddr", ctypes.c_uint8 * 16),
        ("raddr", ctypes.c_uint8 * 16),
        ("comm", ctypes.c_char * 16),
        ("seq", ctypes.c_uint32),
        ("pad2", ctypes.c_uint32),
    ]


HEADER_SIZE = ctypes.sizeof(EventHeader)


@lru_cache(maxsize=4096)
def format_addr(family: int, raw: bytes) -> str:
    """Text form of an address from the kernel ('' when unknown)."""
    if family == AF_INET:
        if raw[:4] == b"\0\0\0\0":
            return ""
        return str(ipaddress.IPv4Address(raw[:4]))
    if family == AF_INET6:
        if raw == bytes(16):
            return ""
        addr = ipaddress.IPv6Address(raw[:16])
        mapped = addr.ipv4_mapped
        return str(mapped) if mapped is not None else str(addr)
    return ""


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One kernel event: a connection opened or closed, or bytes moved on it.

    ``length`` is the true number of bytes the call moved; ``data`` holds the
    first ``len(data)`` of them (fewer when the capture limit cut them).
    """

    kind: EventKind
    ts_ns: int  # CLOCK_MONOTONIC
    pid: int
    tid: int
    fd: int
    conn_id: int
    seq: int
    role: Role
    direction: Direction
    source: Source
    length: int
    data: bytes
    comm: str
    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int

    @property
    def truncated(self) -> bool:
        return len(self.data) < self.length


def decode(record: bytes) -> RawEvent:
    """Decode one ring-buffer record (header followed by the captured bytes)."""
    h = EventHeader.from_buffer_copy(record[:HEADER_SIZE])
    data = record[HEADER_SIZE : HEADER_SIZE + h.cap]
    return RawEvent(
        kind=EventKind(h.kind),
        ts_ns=h.ts,
        pid=h.pid,
        tid=h.tid,
        fd=h.fd,
        conn_id=h.conn_id,
        seq=h.seq,
        role=Role(h.role) if h.role in (0, 1, 2) else Role.UNKNOWN,
        direction=Direction(h.dir & 1),
        source=Source(h.source & 1),
        length=h.len,
        data=bytes(data),
        comm=h.comm.decode("utf-8", "replace"),
        local_addr=format_addr(h.family, bytes(h.laddr)),
        local_port=h.lport,
        remote_addr=format_addr(h.family, bytes(h.raddr)),
        remote_port=h.rport,
    )
