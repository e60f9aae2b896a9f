"""Real ``apiward run`` processes for the crash-safety and scale-out tests.

Starts the agent as a user would (``python -m agent.cli run`` on ephemeral
ports, 127.0.0.1), reads its listening line, talks to it over OTLP/gRPC with
pre-serialised requests and reads its query API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "recordings" / "shop.jsonl"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class AgentProc:
    proc: subprocess.Popen[str]
    ports: dict[str, int]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['api']}{path}", timeout=30) as r:
            return json.loads(r.read())

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.ports['otlp-grpc']}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._close()

    def _close(self) -> None:
        for s in (self.proc.stdout, self.proc.stderr):
            if s is not None:
                s.close()


def start_agent(state_dir: Path, *extra: str) -> AgentProc:
    state_dir.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--grpc-port", "0", "--http-port", "0",
         "--api-port", "0", "--bind", "127.0.0.1", "--state-dir", str(state_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=state_dir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.startswith("listening "), f"agent did not start: {line!r}"
    ports = dict(kv.split("=", 1) for kv in line.split()[1:])
    return AgentProc(p, {k: int(v.rsplit(":", 1)[1]) for k, v in ports.items()})


_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _ids_to_base64(obj: Any) -> Any:
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping wants base64."""
    import base64

    if isinstance(obj, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in _ID_KEYS and isinstance(v, str)
                    else _ids_to_base64(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_ids_to_base64(x) for x in obj]
    return obj


def load_requests(path: Path = SHOP) -> list[ExportTraceServiceRequest]:
    """The recording's OTLP/JSON lines as protobuf requests."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json_format.ParseDict(_ids_to_base64(json.loads(line)), ExportTraceServiceRequest()))
    return out


def send(channel: grpc.Channel, payloads: list[bytes]) -> None:
    call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    for data in payloads:
        for _ in range(100):
            try:
                call(data, timeout=30)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
                    raise
                import time

                time.sleep(0.05)


def wait_processed(agent: AgentProc, n_spans: int, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = agent.get("/api/v1/stats")
        if st["spans_processed"] >= n_spans and st["queue_depth"] == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"agent processed {st['spans_processed']} of {n_spans} spans")
