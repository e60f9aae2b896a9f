"""End to end: real instrumented services on loopback -> recordings -> the full pipeline.

Four Flask services, each its own process with the real OpenTelemetry SDK
(``service_app.py``): ``web`` (HTTP), ``orders`` (HTTPS with a self-signed
certificate made here, plus a plain-HTTP port), ``payments`` (no request headers
captured) and ``admin`` (a peer no rule allows). An uninstrumented "external"
host listens on 127.0.0.2. The test drives calls with and without tokens, then
runs the recordings through ``agent.runtime.Agent`` (the whole enricher chain,
call graph included) and the ``apiward policy`` commands.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from agent.cli import main as cli_main
from agent.config import Config
from agent.runtime import Agent

HERE = Path(__file__).resolve().parent
APP = HERE / "service_app.py"
KEY = "an-unguessable-signing-key-for-the-e2e-test-0123456789abcdef"
NOW = 1_900_000_000  # tokens valid until far in the future


def token(aud: str = "api://orders", *, exp: int = NOW, key: str = KEY, alg: str = "HS256") -> str:
    return jwt.encode({"sub": "user-1", "aud": aud, "exp": exp}, None if alg == "none" else key, algorithm=alg)


GOOD = token()

POLICY = """\
version: 1
settings:
  enduser_header: x-user-id
  audiences:
    orders: [api://orders]
identities:
  partner: {host: [partner.example.com, 127.0.0.3]}
rules:
  - id: web-orders
    from: web
    to: orders
    endpoints: ["GET /orders/*", "POST /orders"]
    require: {auth: [jwt], tls: true}
  - id: web-payments
    from: web
    to: payments
    require: {auth: any}
requirements:
  - id: orders-writes-carry-the-user
    service: orders
    methods: [POST]
    require: {enduser: true}
egress:
  - {id: web-partner, from: web, hosts: [partner]}
ingress: [web]
"""

APIWARD_YAML = "internal_cidrs: [127.0.0.1/32]\npersist: false\n"


class _External(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a: Any) -> None:
        pass


class Topology:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.ports: dict[str, tuple[int, int]] = {}
        self.cert = root / "cert.pem"
        self.key = root / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(self.key), "-out", str(self.cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )
        self.external = http.server.ThreadingHTTPServer(("127.0.0.2", 0), _External)
        threading.Thread(target=self.external.serve_forever, daemon=True).start()

    def start(self, name: str, *, tls: bool = False, capture: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        if capture:
            env["OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST"] = "authorization,x-user-id,host"
        cmd = [sys.executable, str(APP), "--name", name, "--record", str(self.recording(name)),
               "--ca", str(self.cert)]
        if tls:
            cmd += ["--cert", str(self.cert), "--key", str(self.key), "--plain-too"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        self.procs[name] = p

    def wait_ready(self) -> None:
        for name, p in self.procs.items():
            assert p.stdout is not None
            line = p.stdout.readline().split()
            assert line and line[0] == "PORTS", f"{name} did not start"
            self.ports[name] = (int(line[1]), int(line[2]))

    def recording(self, name: str) -> Path:
        return self.root / f"{name}.otlp.pb"

    def url(self, name: str, path: str, *, plain: bool = False) -> str:
        main, extra = self.ports[name]
        if name == "orders":
            return f"http://127.0.0.1:{extra}{path}" if plain else f"https://127.0.0.1:{main}{path}"
        return f"http://127.0.0.1:{main}{path}"

    def via_web(self, target: str, *, tok: str | None = None, user: str | None = None,
                method: str = "GET") -> None:
        headers = {}
        if tok:
            headers["X-Forward-Token"] = tok
        if user:
            headers["X-User-Id"] = user
        r = requests.get(self.url("web", "/call"), params={"url": target, "method": method},
                         headers=headers, timeout=20)
        assert r.status_code == 200, r.text

    def snapshot(self, label: str) -> list[str]:
        out = []
        for name in self.procs:
            src = self.recording(name)
            if src.exists():
                dst = self.root / f"{label}-{name}.otlp.pb"
                shutil.copyfile(src, dst)
                out.append(str(dst))
        return out

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.external.shutdown()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("zt-e2e")
    topo = Topology(root)
    try:
        topo.start("web")
        topo.start("orders", tls=True)
        topo.start("payments", capture=False)
        topo.start("admin")
        topo.wait_ready()
        ext = f"http://127.0.0.2:{topo.external.server_address[1]}/"

        # Phase A: the everyday traffic a policy is learned from.
        topo.via_web(topo.url("orders", "/orders/1"), tok=GOOD)
        topo.via_web(topo.url("orders", "/orders/2"), tok=GOOD)
        topo.via_web(topo.url("orders", "/orders"), tok=GOOD, user="user-1", method="POST")
        topo.via_web(topo.url("payments", "/orders/1"), tok=GOOD)
        topo.via_web(ext)
        learned_from = topo.snapshot("a")

        # Phase B: the same plus one new edge.
        topo.via_web(topo.url("orders", "/orders/3"), tok=GOOD)
        topo.via_web(topo.url("admin", "/admin/stats"))
        with_new_edge = topo.snapshot("b")

        # Phase C: everything the hand-written policy forbids.
        topo.via_web(topo.url("orders", "/orders/4"))  # no token
        topo.via_web(topo.url("orders", "/orders/5", plain=True), tok=GOOD)  # plaintext
        topo.via_web(topo.url("orders", "/orders"), tok=GOOD, method="POST")  # no user id
        topo.via_web(topo.url("orders", "/orders/6"), tok=token(exp=1_000_000_000))  # expired
        topo.via_web(topo.url("orders", "/orders/7"), tok=token(alg="none"))
        topo.via_web(topo.url("orders", "/orders/8"), tok=token(aud="api://billing"))
        with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
            weak = token(key="secret")
        topo.via_web(topo.url("orders", "/orders/9"), tok=weak)
        # An outside client straight to orders, reusing web's token.
        r = requests.get(topo.url("orders", "/orders/1"), headers={"Authorization": f"Bearer {GOOD}"},
                         verify=str(topo.cert), timeout=20)
        assert r.status_code == 200
    finally:
        topo.stop()
    full = [str(topo.recording(n)) for n in topo.procs]
    (root / "apiward.yaml").write_text(APIWARD_YAML)
    (root / "policy.yaml").write_text(POLICY)
    yield {"root": root, "a": learned_from, "b": with_new_edge, "full": full, "weak": weak}


def replay(root: Path, paths: list[str], policy: str | None) -> Agent:
    cfg = Config(state_dir=root / "state", grpc_port=0, http_port=0, api_port=0, bind="127.0.0.1",
                 persist=False, policy=policy, internal_cidrs=["127.0.0.1/32"])
    agent = Agent(cfg, persist=False)
    agent.replay(paths)
    agent.pipeline.tick_now()  # resolve replayed client spans that never found a partner
    return agent


@pytest.fixture(scope="module")
def checked(recordings: dict[str, Any]) -> Iterator[tuple[Agent, dict[str, list[Any]]]]:
    root = recordings["root"]
    agent = replay(root, recordings["full"], str(root / "policy.yaml"))
    by_rule: dict[str, list[Any]] = {}
    for rec in agent.state.findings.records():
        by_rule.setdefault(rec.finding.rule, []).append(rec.finding)
    yield agent, by_rule
    agent.stop()


def _one(by_rule: dict[str, list[Any]], rule: str, **subject: str) -> Any:
    hits = [f for f in by_rule.get(rule, []) if all(getattr(f.subject, k) == v for k, v in subject.items())]
    assert len(hits) == 1, (rule, subject, [f.subject for f in by_rule.get(rule, [])], sorted(by_rule))
    return hits[0]


def test_each_policy_finding(checked: tuple[Agent, dict[str, list[Any]]]) -> None:
    _agent, by_rule = checked
    f = _one(by_rule, "zerotrust.unlisted_edge", client="web", server="admin")
    assert f.owasp == "API5:2023" and f.count == 1 and f.trace_ids
    f = _one(by_rule, "zerotrust.missing_auth", client="web", server="orders", method="GET")
    assert f.owasp == "API2:2023" and f.evidence["policy_rule"]["id"] == "web-orders"
    _one(by_rule, "zerotrust.plaintext", client="web", server="orders")
    f = _one(by_rule, "zerotrust.identity_not_propagated", client="web", server="orders", method="POST")
    assert f.count == 1  # the POST that carried X-User-Id is fine
    f = _one(by_rule, "zerotrust.unexpected_egress", client="web")
    assert f.subject.host == "127.0.0.2"
    f = _one(by_rule, "zerotrust.unexpected_ingress", server="orders")
    assert f.subject.client.startswith("client:") or f.subject.client == "ingress"
    assert "zerotrust.endpoint_not_allowed" not in by_rule


def test_each_token_finding(checked: tuple[Agent, dict[str, list[Any]]], recordings: dict[str, Any]) -> None:
    agent, by_rule = checked
    _one(by_rule, "zerotrust.jwt_expired_accepted", client="web", server="orders")
    _one(by_rule, "zerotrust.jwt_alg_none", client="web", server="orders")
    f = _one(by_rule, "zerotrust.jwt_audience_mismatch", client="web", server="orders")
    assert f.evidence["aud"] == ["api://billing"]
    f = _one(by_rule, "zerotrust.jwt_weak_secret", client="web", server="orders")
    assert f.severity.label == "critical"
    f = _one(by_rule, "zerotrust.token_reuse", service="orders")
    assert "web" in f.evidence["clients"] and len(f.evidence["clients"]) == 2
    # Only keyed hashes are kept: no token in findings or in the persisted part.
    dump = json.dumps([r.to_dict() for r in agent.state.findings.records()])
    dump += json.dumps(agent.state.parts["zerotrust"].snapshot())
    for tok in (GOOD, recordings["weak"]):
        assert tok not in dump and tok.split(".")[2] not in dump


def test_verdicts_and_unknown_when_headers_not_captured(checked: tuple[Agent, dict[str, list[Any]]]) -> None:
    agent, by_rule = checked
    part = agent.state.parts["zerotrust"]
    assert part.verdict("web", "payments", "http") == "unknown"  # payments captures no headers
    assert part.verdict("web", "admin", "http") == "violation"
    assert "zerotrust.missing_auth" not in {r for r in by_rule if any(f.subject.server == "payments"
                                                                       for f in by_rule[r])}
    hints = by_rule["zerotrust.evidence_unavailable"]
    assert len(hints) == 1 and hints[0].count == 1
    assert "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=authorization" in hints[0].evidence["setting"]
    from agent import report

    edges = {(e["client"], e["server"]): e for e in report.graph_view(agent.state)["edges"]}
    assert edges[("web", "payments")]["verdict"] == "unknown"
    assert edges[("web", "admin")]["verdict"] == "violation"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_learn_then_check_round_trip(recordings: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = recordings["root"]
    cfg = str(root / "apiward.yaml")
    learned = root / "learned.yaml"
    code, _out, err = _cli(capsys, "policy", "learn", *recordings["a"], "--config", cfg, "-o", str(learned))
    assert code == 0, err
    text = learned.read_text()
    assert "# ---- web" in text and "calls, first seen" in text
    assert '"127.0.0.2"' in text and "from: external" in text
    assert "auth: [jwt]" in text and "tls: true" in text  # web -> orders always used a JWT over TLS

    code, out, err = _cli(capsys, "policy", "check", "--policy", str(learned), *recordings["a"],
                          "--config", cfg, "--format", "json")
    assert code == 0, (out, err)
    assert json.loads(out) == {"violations": []}

    code, out, err = _cli(capsys, "policy", "check", "--policy", str(learned), *recordings["b"],
                          "--config", cfg, "--format", "json")
    assert code == 1, err
    violations = json.loads(out)["violations"]
    assert [(v["rule"], v["client"], v["server"]) for v in violations] == [("zerotrust.drift", "web", "admin")]
    assert violations[0]["count"] == 1 and violations[0]["finding"].startswith("New edge")

    code, out, _ = _cli(capsys, "policy", "check", "--policy", str(learned), *recordings["b"],
                        "--config", cfg, "--format", "table")
    assert code == 1 and "zerotrust.drift" in out and "RULE" in out


def test_check_bad_input_exits_2(recordings: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = recordings["root"]
    bad = root / "bad-policy.yaml"
    bad.write_text("version: 1\nrules:\n  - from: web\n")
    code, _, err = _cli(capsys, "policy", "check", "--policy", str(bad), *recordings["a"])
    assert code == 2 and f"{bad}:3:" in err and "'to' is a required property" in err
    code, _, err = _cli(capsys, "policy", "check", "--policy", str(root / "policy.yaml"), str(root / "nope.pb"))
    assert code == 2 and "no such recording" in err
    code, _, err = _cli(capsys, "policy", "learn", "-o", str(root / "x.yaml"))
    assert code == 2
