"""Shared fixtures: an in-memory test sink and receivers on loopback ephemeral ports."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agent.model import Span, SpanSink
from collectors.otlp_grpc import OtlpGrpcReceiver
from collectors.otlp_http import OtlpHttpReceiver


class InMemoryTestSink(SpanSink):
    """Test sink: stores accepted batches and rejection counts; ``full`` refuses offers."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[Span], str]] = []
        self.rejected: dict[str, int] = {}
        self.requests: dict[tuple[str, str], int] = {}
        self.full = False
        self._lock = threading.Lock()

    def offer(self, batch: list[Span], source: str) -> bool:
        if self.full:
            return False
        with self._lock:
            self.batches.append((batch, source))
        return True

    def count_rejected(self, source: str, reason: str, n: int) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + n

    def count_request(self, receiver: str, outcome: str) -> None:
        with self._lock:
            k = (receiver, outcome)
            self.requests[k] = self.requests.get(k, 0) + 1

    @property
    def spans(self) -> list[Span]:
        return [s for b, _ in self.batches for s in b]


@pytest.fixture
def sink() -> InMemoryTestSink:
    return InMemoryTestSink()


@pytest.fixture
def grpc_receiver(sink: InMemoryTestSink) -> Iterator[OtlpGrpcReceiver]:
    r = OtlpGrpcReceiver(sink, "127.0.0.1", 0, max_message_bytes=1024 * 1024)
    r.start()
    yield r
    r.stop(0)


@pytest.fixture
def http_receiver(sink: InMemoryTestSink) -> Iterator[OtlpHttpReceiver]:
    r = OtlpHttpReceiver(sink, "127.0.0.1", 0, max_message_bytes=1024 * 1024)
    r.start()
    yield r
    r.stop()
