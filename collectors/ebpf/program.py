"""The BPF C program of the HTTP tracer, rendered from text by a pure function.

The C source lives beside this module (``http_trace.c``, ``tls_probes.c``) with
``{{PLACEHOLDERS}}``; :func:`render_program` fills in the capture size and the
numeric filters (pids, ports) and process-name filters, which then run in the
kernel. Rendering needs neither root nor BCC, so it is unit-tested anywhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

MAX_CAPTURE_BYTES = 32768
COMM_LEN = 15  # TASK_COMM_LEN - 1

_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


@dataclass(frozen=True, slots=True)
class ProgramOptions:
    """What the rendered program traces and how much it copies.

    ``pids``/``ports``/``comms`` empty means "no filter". ``self_pid`` is never
    traced (the agent's own traffic would feed back into itself).
    """

    capture_bytes: int = 4096
    pids: tuple[int, ...] = ()
    ports: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    self_pid: int = 0
    tls: bool = True
    max_iov: int = 4
    ringbuf_pages: int = 4096  # 16 MiB: absorbs bursts while user space catches up
    max_conns: int = 65536

    def validate(self) -> None:
        """Raise ``ValueError`` with one clear sentence for values the kernel would reject."""
        if not 0 < self.capture_bytes <= MAX_CAPTURE_BYTES:
            raise ValueError(
                f"ebpf_capture_bytes must be between 1 and {MAX_CAPTURE_BYTES}, "
                f"got {self.capture_bytes}"
            )
        pages = self.ringbuf_pages
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"ring buffer pages must be a power of two, got {pages}")
        for p in self.pids:
            if not 0 < p < 2**32:
                raise ValueError(f"ebpf pid filter {p} is not a valid process id")
        for p in self.ports:
            if not 0 < p < 65536:
                raise ValueError(f"ebpf port filter {p} is not a valid TCP port (1-65535)")
        for c in self.comms:
            if not c or not c.isprintable():
                raise ValueError(f"ebpf process-name filter {c!r} must be a printable name")
        if not 1 <= self.max_iov <= 16:
            raise ValueError(f"max_iov must be between 1 and 16, got {self.max_iov}")


@cache
def _source(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _pid_filter(pids: tuple[int, ...]) -> str:
    if not pids:
        return "    return 1;"
    cond = " || ".join(f"pid == {int(p)}" for p in sorted(set(pids)))
    return f"    return {cond};"


def _port_filter(ports: tuple[int, ...]) -> str:
    if not ports:
        return "    return 1;"
    cond = " || ".join(
        f"lport == {int(p)} || rport == {int(p)}" for p in sorted(set(ports))
    )
    return f"    return {cond};"


def _c_char(ch: str) -> str:
    code = ord(ch)
    return str(code) if code < 128 else "0"


def _comm_filter(comms: tuple[str, ...]) -> str:
    """Compare the current task name with each allowed name, byte by byte.

    The kernel keeps 15 characters of a process name; longer names are
    matched on their first 15 characters, as ``/proc/<pid>/comm`` shows them.
    """
    if not comms:
        return "    return 1;"
    lines = ["    char comm[16] = {};", "    bpf_get_current_comm(&comm, sizeof(comm));"]
    for name in sorted(set(comms)):
        raw = name.encode("utf-8")[:COMM_LEN]
        checks = [f"comm[{i}] == {b}" for i, b in enumerate(raw)]
        if len(raw) < COMM_LEN:
            checks.append(f"comm[{len(raw)}] == 0")
        lines.append(f"    if ({' && '.join(checks)})")
        lines.append("        return 1;")
    lines.append("    return 0;")
    return "\n".join(lines)


def render_program(options: ProgramOptions) -> str:
    """The BPF C text for ``options``; raises ``ValueError`` on invalid options."""
    options.validate()
    values = {
        "CAPTURE_BYTES": str(int(options.capture_bytes)),
        "MAX_IOV": str(int(options.max_iov)),
        "SELF_PID": str(int(options.self_pid or os.getpid())),
        "RINGBUF_PAGES": str(int(options.ringbuf_pages)),
        "MAX_CONNS": str(int(options.max_conns)),
        "PID_FILTER": _pid_filter(options.pids),
        "PORT_FILTER": _port_filter(options.ports),
        "COMM_FILTER": _comm_filter(options.comms),
        "TLS_PROBES": _source("tls_probes.c") if options.tls else "",
    }

    def fill(m: re.Match[str]) -> str:
        return values[m.group(1)]

    text = _PLACEHOLDER.sub(fill, _source("http_trace.c"))
    return text
