"""Who a traced pid is: process, container, pod and service name, from /proc.

* container id and Kubernetes pod uid from ``/proc/<pid>/cgroup`` (docker,
  containerd, CRI-O and podman layouts, cgroup v1 and v2, cgroupfs and systemd
  drivers);
* service name from the process's ``OTEL_SERVICE_NAME`` (or ``service.name`` in
  ``OTEL_RESOURCE_ATTRIBUTES``), else the pod's workload name, else the process
  name;
* socket ends from ``/proc/<pid>/net/tcp[6]`` when the kernel program could not
  see them.

A :class:`ProcessResolver` caches one :class:`agent.model.Resource` per process.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.model import Resource

_CONTAINER_RE = re.compile(
    r"(?:docker-|cri-containerd-|crio-|libpod-|containerd-)?([0-9a-f]{64})(?:\.scope)?$"
)
_POD_RE = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
# <deployment>-<replicaset hash>-<5 chars> or <statefulset>-<ordinal>
_POD_NAME_RE = re.compile(r"^(?P<name>.+?)(?:-[a-z0-9]{6,10}-[a-z0-9]{5}|-[0-9]+)$")


def parse_cgroup(text: str) -> tuple[str, str]:
    """``(container_id, pod_uid)`` from the text of ``/proc/<pid>/cgroup`` ('' if none)."""
    container = ""
    pod = ""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for part in reversed(path.split("/")):
            if not container:
                m = _CONTAINER_RE.search(part)
                if m and not part.startswith("pod"):
                    container = m.group(1)
            if not pod:
                pm = _POD_RE.search(part)
                if pm:
                    pod = pm.group(1).replace("_", "-")
        if container and pod:
            break
    return container, pod


def parse_environ(raw: bytes) -> dict[str, str]:
    """The NUL-separated ``/proc/<pid>/environ`` as a dict."""
    out: dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return out


def parse_resource_attributes(text: str) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, percent-encoded values)."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out[key.strip()] = unquote(value.strip())
    return out


def workload_name(pod_name: str) -> str:
    """``checkout-7d9f8b6c4-x2x9z`` -> ``checkout``; other names unchanged."""
    m = _POD_NAME_RE.match(pod_name)
    return m.group("name") if m else pod_name


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    comm: str
    exe: str
    container_id: str
    pod_uid: str
    service_name: str
    resource_attributes: dict[str, str]


def read_process(pid: int, comm_hint: str = "", proc: Path = Path("/proc")) -> ProcessInfo:
    """What /proc says about ``pid``; fields it cannot read stay empty."""
    base = proc / str(pid)
    comm = _read_text(base / "comm").strip() or comm_hint
    try:
        exe = os.readlink(base / "exe")
    except OSError:
        exe = ""
    container, pod = parse_cgroup(_read_text(base / "cgroup"))
    try:
        env = parse_environ((base / "environ").read_bytes())
    except OSError:
        env = {}
    res_attrs = parse_resource_attributes(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    service = env.get("OTEL_SERVICE_NAME") or res_attrs.get("service.name") or ""
    if not service and pod and env.get("HOSTNAME"):
        service = workload_name(env["HOSTNAME"])
    if not service:
        service = comm or (os.path.basename(exe) if exe else f"pid-{pid}")
    return ProcessInfo(
        pid=pid,
        comm=comm,
        exe=exe,
        container_id=container,
        pod_uid=pod,
        service_name=service,
        resource_attributes=res_attrs,
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def process_resource(info: ProcessInfo) -> Resource:
    """The Resource of a traced process (OpenTelemetry resource semantic conventions)."""
    attrs: dict[str, Any] = dict(info.resource_attributes)
    attrs["service.name"] = info.service_name
    attrs["process.pid"] = info.pid
    if info.comm:
        attrs["process.executable.name"] = info.comm
    if info.exe:
        attrs["process.executable.path"] = info.exe
    if info.container_id:
        attrs["container.id"] = info.container_id
    if info.pod_uid:
        attrs["k8s.pod.uid"] = info.pod_uid
    attrs["host.name"] = socket.gethostname()
    attrs["telemetry.source"] = "apiward-ebpf"
    return Resource.from_attributes(attrs)


class ProcessResolver:
    """Cached :class:`Resource` per pid (re-read after ``ttl`` seconds: pids are reused)."""

    def __init__(self, proc: Path = Path("/proc"), ttl: float = 30.0, size: int = 4096) -> None:
        self._proc = proc
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[int, tuple[float, ProcessInfo, Resource]] = OrderedDict()

    def resource(self, pid: int, comm_hint: str = "") -> Resource:
        return self._entry(pid, comm_hint)[2]

    def info(self, pid: int, comm_hint: str = "") -> ProcessInfo:
        return self._entry(pid, comm_hint)[1]

    def _entry(self, pid: int, comm_hint: str) -> tuple[float, ProcessInfo, Resource]:
        now = time.monotonic()
        hit = self._cache.get(pid)
        if hit is not None and now - hit[0] < self._ttl:
            return hit  # (the kernel's comm is the thread's name: not a pid-reuse signal)
        info = read_process(pid, comm_hint, self._proc)
        entry = (now, info, process_resource(info))
        self._cache[pid] = entry
        self._cache.move_to_end(pid)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entry


# ------------------------------------------------------------- socket lookup


def _hex_addr(text: str) -> tuple[str, int]:
    addr, _, port = text.partition(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = struct.unpack("<4I", raw)
        ip6 = struct.pack(">4I", *words)
        ip = socket.inet_ntop(socket.AF_INET6, ip6)
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
    return ip, int(port, 16)


def parse_proc_net_tcp(text: str) -> dict[int, tuple[str, int, str, int]]:
    """inode -> (local addr, local port, remote addr, remote port) from /proc/net/tcp[6]."""
    out: dict[int, tuple[str, int, str, int]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10:
            continue
        try:
            laddr, lport = _hex_addr(cols[1])
            raddr, rport = _hex_addr(cols[2])
            out[int(cols[9])] = (laddr, lport, raddr, rport)
        except (ValueError, OSError):
            continue
    return out


def resolve_socket(pid: int, fd: int, proc: Path = Path("/proc")) -> tuple[str, int, str, int] | None:
    """Both ends of the TCP socket ``fd`` of ``pid``, or ``None`` (closed, not TCP)."""
    try:
        link = os.readlink(proc / str(pid) / "fd" / str(fd))
    except OSError:
        return None
    if not link.startswith("socket:["):
        return None
    inode = int(link[8:-1])
    for name in ("tcp", "tcp6"):
        table = parse_proc_net_tcp(_read_text(proc / str(pid) / "net" / name))
        if inode in table:
            return table[inode]
    return None
