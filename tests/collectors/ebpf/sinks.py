"""A sink that records what the joining sink passes on (the pipeline's place in these tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from agent.model import Span


class RecordingSink:
    """Accepts every batch and keeps (source, span) pairs, thread-safe."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self._lock = threading.Lock()

    def offer(self, batch: list[Span], source: str) -> bool:
        with self._lock:
            self.spans.extend((source, s) for s in batch)
        return True

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        pass

    def ids(self) -> list[str]:
        with self._lock:
            return [s.span_id for _, s in self.spans]

    def matching(self, pred: Callable[[Span], bool]) -> list[tuple[str, Span]]:
        with self._lock:
            return [(src, s) for src, s in self.spans if pred(s)]
