"""``apiward run`` as a user runs it: the listening line, SIGTERM drains and exits 0, bad config exits 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

APIWARD = [sys.executable, "-m", "agent.cli"]


def start_agent(tmp_path, *extra):
    p = subprocess.Popen(
        [*APIWARD, "run", "--grpc-port", "0", "--http-port", "0", "--api-port", "0", "--bind", "127.0.0.1",
         "--state-dir", str(tmp_path), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    line = p.stdout.readline()
    assert line.startswith("listening "), (line, p.stderr.read() if p.poll() is not None else "")
    ports = dict(kv.split("=", 1) for kv in line.split()[1:])
    return p, {k: int(v.rsplit(":", 1)[1]) for k, v in ports.items()}


def test_run_receive_and_sigterm(tmp_path):
    p, ports = start_agent(tmp_path)
    try:
        tp = TracerProvider(resource=Resource.create({"service.name": "cli-test"}))
        tp.add_span_processor(SimpleSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{ports['otlp-grpc']}", insecure=True)))
        tracer = tp.get_tracer("t")
        for i in range(5):
            with tracer.start_as_current_span(f"op{i}", attributes={"http.request.method": "GET", "url.path": "/x"}):
                pass
        tp.shutdown()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['api']}/api/v1/stats", timeout=10) as r:
            st = json.loads(r.read())
        assert st["spans_accepted"] == 5 and st["services"] == ["cli-test"]
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert "5 spans analysed" in out


def test_bad_config_exits_2_with_one_clear_line(tmp_path):
    cfg = tmp_path / "apiward.yaml"
    cfg.write_text("grpc_port: lots\n")
    r = subprocess.run([*APIWARD, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert r.returncode == 2
    assert str(cfg) in r.stderr and "grpc_port" in r.stderr and "Traceback" not in r.stderr


def test_port_in_use_is_a_clear_error(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        r = subprocess.run([*APIWARD, "run", "--bind", "127.0.0.1", "--grpc-port", "0", "--http-port", str(port),
                            "--api-port", "0", "--state-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": os.getcwd()})
    finally:
        s.close()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_sighup_reloads_policy_and_keeps_the_old_one_when_the_new_is_bad(tmp_path):
    policy = tmp_path / "apiward-policy.yaml"
    policy.write_text("version: 1\ndefault_action: alert\nidentities:\n  web: {service: web}\n"
                      "rules:\n  - {id: web-self, from: web, to: web}\n")
    p, ports = start_agent(tmp_path, "--policy", str(policy))
    api = f"http://127.0.0.1:{ports['api']}"
    try:
        policy.write_text("version: 99\nrules: nonsense\n")
        p.send_signal(signal.SIGHUP)
        found = []
        for _ in range(100):
            with urllib.request.urlopen(f"{api}/api/v1/findings?rule=zerotrust.policy_invalid", timeout=10) as r:
                found = json.loads(r.read())
            if found:
                break
            import time

            time.sleep(0.1)
        assert found, "a bad policy on SIGHUP must open a policy_invalid finding"
        assert str(policy) in found[0]["explanation"] or str(policy) in json.dumps(found[0]["evidence"])
        assert p.poll() is None, "SIGHUP must not stop the agent"
        with urllib.request.urlopen(f"{api}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
