"""deploy/: the files parse, and every apiward flag, env variable and config in them is valid today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import config as cfgmod
from agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    tmpl = (spec.get("template") or {}).get("spec")
    return [tmpl] if tmpl else []


def apiward_containers() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in K8S:
        for d in docs(path):
            for ps in pod_specs(d):
                for c in ps.get("containers", []):
                    if "apiward" in c.get("image", ""):
                        out.append((path, c))
    return out


def check_args(argv: list[str], where: str) -> Any:
    parser = build_parser()
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: apiward {' '.join(argv)} is not valid for the current CLI")


def test_kubernetes_files_parse_and_have_apiward() -> None:
    assert {p.name for p in K8S} >= {"sidecar.yaml", "daemonset-ebpf.yaml", "apiward-replicas.yaml"}
    assert len(apiward_containers()) == 3


@pytest.mark.parametrize("path_container", apiward_containers(), ids=lambda pc: pc[0].name)
def test_container_args_env_and_config_are_valid(path_container: tuple[Path, dict[str, Any]],
                                                  tmp_path: Path) -> None:
    path, c = path_container
    argv = [*c.get("command", [])[1:], *[str(a) for a in c.get("args", [])]]
    args = check_args(argv, str(path))
    assert args.command == "run"
    env = {e["name"]: str(e["value"]) for e in c.get("env", []) if "value" in e}
    apiward_env = {k: v for k, v in env.items() if k.startswith("APIWARD_")}
    for k in apiward_env:
        name = k[len("APIWARD_"):].lower()
        assert name in cfgmod._SCALARS or name in cfgmod._LISTS, f"{path}: {k} is no apiward setting"
    cfg = cfgmod.Config()
    cfgmod.apply_env(cfg, apiward_env)
    # The config file the container mounts, when it comes from a ConfigMap in the same file.
    if args.config:
        maps = {d["metadata"]["name"]: d["data"] for d in docs(path) if d.get("kind") == "ConfigMap"}
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        found = False
        for data in maps.values():
            for fname, text in data.items():
                if any(args.config == f"{mp}/{fname}" for mp in mounts.values()):
                    f = tmp_path / fname
                    f.write_text(text)
                    cfgmod.load_file(cfgmod.Config(), f)
                    found = True
        assert found, f"{path}: --config {args.config} is not a mounted ConfigMap file"
    if "--ebpf" in argv:
        d = next(d for d in docs(path) if pod_specs(d))
        ps = pod_specs(d)[0]
        assert ps.get("hostPID") is True
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/lib/modules", "/usr/src", "/sys/kernel/debug"} <= mounts
        caps = set(c["securityContext"]["capabilities"]["add"])
        assert {"BPF", "PERFMON", "SYS_ADMIN"} <= caps
    else:
        sc = c.get("securityContext") or {}
        pod_sc = next(pod_specs(d)[0] for d in docs(path) if pod_specs(d)).get("securityContext") or {}
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, f"{path}: OTLP-only must not run as root"


def test_dockerfile_is_multistage_non_root_and_its_commands_parse() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    froms = [ln for ln in lines if ln.upper().startswith("FROM ")]
    assert len(froms) >= 3
    stages: dict[str, list[str]] = {}
    current = ""
    for ln in lines:
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", ln, re.I)
        if m:
            current = m.group(2) or f"final:{m.group(1)}"
            stages[current] = [ln]
        else:
            stages[current].append(ln)
    assert {"build", "otlp", "ebpf"} <= set(stages)
    users = [ln.split()[1] for ln in stages["otlp"] if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert froms[-1].split()[1] == "otlp"  # the default image is the non-root one
    for stage in ("otlp", "ebpf"):
        for ln in stages[stage]:
            if ln.startswith("CMD "):
                import json

                check_args(json.loads(ln[4:]), f"Dockerfile stage {stage}")
    env_line = " ".join(ln for ln in stages["otlp"] if ln.startswith("ENV ") or ln.startswith("APIWARD"))
    for k in re.findall(r"APIWARD_([A-Z_]+)=", text):
        assert k.lower() in cfgmod._SCALARS or k.lower() in cfgmod._LISTS
    assert "ENTRYPOINT" in text and "apiward" in env_line.lower() or "APIWARD_STATE_DIR" in text
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repo"


def test_collector_gateway_routes_traces_by_trace_id_and_forwards_the_rest() -> None:
    cfg = yaml.safe_load((DEPLOY / "collector" / "gateway.yaml").read_text())
    lb = {k: v for k, v in cfg["exporters"].items() if k.split("/")[0] == "loadbalancing"}
    assert len(lb) == 1
    (lb_name, lb_cfg), = lb.items()
    assert lb_cfg["routing_key"] == "traceID"
    assert "otlp" in lb_cfg["protocol"]
    assert lb_cfg["resolver"]["dns"]["port"] == 4317
    pipes = cfg["service"]["pipelines"]
    to_apiward = [p for p in pipes.values() if lb_name in p["exporters"]]
    assert to_apiward and all(k.split("/")[0] == "traces" for k, p in pipes.items() if lb_name in p["exporters"])
    # The rest of the pipeline goes on unchanged: traces to the backend too, logs and metrics through.
    signals = {k.split("/")[0] for k, p in pipes.items() if lb_name not in p["exporters"]}
    assert {"traces", "logs", "metrics"} <= signals
    for p in pipes.values():
        for name in [*p["receivers"], *p.get("processors", []), *p["exporters"]]:
            section = "receivers" if name in p["receivers"] else (
                "processors" if name in p.get("processors", []) else "exporters")
            assert name in cfg[section], f"{name} used in a pipeline but not defined"


def test_docs_quote_only_valid_commands() -> None:
    """Every ``apiward ...`` command line in docs/deployment.md parses with the current CLI."""
    text = (ROOT / "docs" / "deployment.md").read_text()
    cmds = re.findall(r"^    (?:\$ )?apiward ([^\n`]+)$", text, re.M)
    assert cmds
    for c in cmds:
        args = re.split(r" (?:#|>|\|) ", c)[0]  # the command's own arguments (no comment, redirect, pipe)
        check_args(shlex.split(args), "docs/deployment.md")
