"""Events from the kernel program, decoded by one ctypes mirror of the C struct.

``EventHeader`` mirrors ``struct event_t`` of ``http_trace.c`` up to (not
including) its ``data`` array; the captured bytes follow the header in the
ring-buffer record. :func:`decode` turns one record into a :class:`RawEvent`.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
from enum import IntEnum
from functools import lru_cache
from typing import NamedTuple


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


class RawEvent(NamedTuple):
    """One kernel event: a connection opened or closed, or bytes moved on it.

    ``length`` is the true number of bytes the call moved; ``data`` holds the
    first ``len(data)`` of them (fewer when the capture limit cut them). A
    tuple, built positionally: the tracer makes one per read/write.
    ``kind``/``role``/``direction``/``source`` hold the plain integer values of
    :class:`EventKind`, :class:`Role`, :class:`Direction` and :class:`Source`.
    """

    kind: int
    ts_ns: int  # CLOCK_MONOTONIC
    pid: int
    tid: int
    fd: int
    conn_id: int
    seq: int
    role: int
    direction: int
    source: int
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


# ts, conn_id, pid, tid, fd, len, cap, kind, dir, source, role, family, lport, rport, pad,
# laddr, raddr, comm, seq, pad2: the same layout as EventHeader, read in one call.
_HEADER = struct.Struct("<QQIIiIIBBBBHHHH16s16s16sII")
assert _HEADER.size == HEADER_SIZE
_unpack = _HEADER.unpack_from


@lru_cache(maxsize=1024)
def _comm(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def decode(record: bytes) -> RawEvent:
    """Decode one ring-buffer record (header followed by the captured bytes)."""
    (ts, conn_id, pid, tid, fd, length, cap, kind, direction, source, role, family,
     lport, rport, _pad, laddr, raddr, comm, seq, _pad2) = _unpack(record)
    return RawEvent(
        kind,
        ts,
        pid,
        tid,
        fd,
        conn_id,
        seq,
        role if role <= 2 else 0,
        direction & 1,
        source & 1,
        length,
        record[HEADER_SIZE : HEADER_SIZE + cap],
        _comm(comm),
        format_addr(family, laddr),
        lport,
        format_addr(family, raddr),
        rport,
    )
