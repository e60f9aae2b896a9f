"""eBPF HTTP collector (BCC): HTTP/1.x spans from syscall tracepoints and OpenSSL uprobes.

Importing this package does not import ``bcc``; :meth:`EbpfCollector.start` does.
"""

from __future__ import annotations

from .collector import EbpfCollector, EbpfUnavailable, check_environment
from .join import JoiningSink
from .program import ProgramOptions, render_program

__all__ = [
    "EbpfCollector",
    "EbpfUnavailable",
    "JoiningSink",
    "ProgramOptions",
    "check_environment",
    "render_program",
]
