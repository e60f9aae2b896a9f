"""Flags shared by several subcommands and the config they produce."""

from __future__ import annotations

import argparse
from typing import Any

from agent import config as cfgmod
from agent.config import Config


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="apiward.yaml config file (default: ./apiward.yaml if present)")
    p.add_argument("--state-dir", metavar="DIR", help="where State is persisted (default ~/.local/state/apiward)")
    p.add_argument("--spec", action="append", metavar="SERVICE=PATH", help="OpenAPI spec of a service (repeatable)")
    p.add_argument("--policy", metavar="FILE", help="zero-trust policy file (apiward-policy.yaml)")


def add_agent_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--bind", metavar="ADDR", help="address the OTLP receivers listen on (default 0.0.0.0)")
    p.add_argument("--grpc-port", type=int, metavar="N", help="OTLP/gRPC port (default 4317; 0 picks a free one)")
    p.add_argument("--http-port", type=int, metavar="N", help="OTLP/HTTP port (default 4318; 0 picks a free one)")
    p.add_argument("--api-bind", metavar="ADDR", help="address of the query API (default 127.0.0.1)")
    p.add_argument("--api-port", type=int, metavar="N", help="query API port (default 4320; 0 picks a free one)")
    p.add_argument("--api-token", metavar="TOKEN", help="bearer token required by the query API")
    p.add_argument("--queue-spans", type=int, metavar="N", help="analysis queue capacity in spans")
    p.add_argument("--edge-process", choices=("auto", "on", "off"),
                   help="run the OTLP receivers in a process of their own (default auto: with 2+ CPUs)")
    p.add_argument("--flush-interval", type=float, metavar="SECONDS", help="how often State is persisted")
    p.add_argument("--forward", metavar="URL", help="forward every span, redacted, to this OTLP endpoint")
    p.add_argument("--export-endpoint", metavar="URL", help="export findings (logs) and graph (metrics) over OTLP")
    p.add_argument("--enrichers", metavar="NAMES",
                   help="comma-separated analyses to run (default all): service_counts, sensitive, "
                   "inventory, callgraph, zerotrust, abuse, traces")
    p.add_argument("--ebpf", action="store_true", default=None, help="also trace HTTP with eBPF (root)")
    p.add_argument("--ebpf-pid", type=int, action="append", metavar="PID", help="eBPF: only this process (repeatable)")
    p.add_argument("--ebpf-port", type=int, action="append", metavar="PORT", help="eBPF: only this port (repeatable)")
    p.add_argument("--ebpf-comm", action="append", metavar="NAME", help="eBPF: only this process name (repeatable)")


_FLAG_FIELDS = (
    "state_dir", "policy", "bind", "grpc_port", "http_port", "api_bind", "api_port", "api_token",
    "queue_spans", "edge_process", "flush_interval", "forward", "export_endpoint", "ebpf",
)


def config_from_args(args: argparse.Namespace, **extra: Any) -> Config:
    overrides: dict[str, Any] = {}
    for name in _FLAG_FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            overrides[name] = v
    for flag, name in (("ebpf_pid", "ebpf_pids"), ("ebpf_port", "ebpf_ports"), ("ebpf_comm", "ebpf_comms")):
        v = getattr(args, flag, None)
        if v:
            overrides[name] = v
    if getattr(args, "enrichers", None):
        overrides["enrichers"] = [x.strip() for x in args.enrichers.split(",") if x.strip()]
    overrides["specs"] = cfgmod.parse_spec_args(getattr(args, "spec", None))
    overrides.update({k: v for k, v in extra.items() if v is not None})
    return cfgmod.load(getattr(args, "config", None), overrides=overrides)
