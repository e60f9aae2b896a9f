"""Settings: one YAML file, then ``APIWARD_*`` environment variables, then flags.

Every field has a default, so ``Config()`` is a working configuration. A bad
file or value raises :class:`ConfigError` with one sentence that names the
file, the field and what is allowed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

#: Environment variable names (documented constants, as in the OTel SDK).
ENV_CONFIG = "APIWARD_CONFIG"
ENV_PREFIX = "APIWARD_"

DEFAULT_INTERNAL_DOMAINS = [
    "localhost",
    ".local",
    ".internal",
    ".svc",
    ".svc.cluster.local",
    ".cluster.local",
]
DEFAULT_INTERNAL_CIDRS = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
]

log = logging.getLogger("apiward.config")

SECTIONS = ("sensitive", "inventory", "graph", "zerotrust", "abuse", "export", "tui", "traces")


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "apiward"


class ConfigError(Exception):
    """A configuration problem, phrased for the user (file, field, what to do)."""


@dataclass
class Config:
    bind: str = "0.0.0.0"
    grpc_port: int = 4317
    http_port: int = 4318
    api_bind: str = "127.0.0.1"
    api_port: int = 4320
    api_token: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    persist: bool = True
    max_message_bytes: int = 16 * 1024 * 1024
    queue_spans: int = 50_000
    #: the OTLP receivers in a process of their own (collectors/edge.py): auto (when
    #: two CPUs or more are available, a container's CPU limit counted), on, off
    edge_process: str = "auto"
    flush_interval: float = 5.0
    specs: dict[str, str] = field(default_factory=dict)
    policy: str | None = None
    forward: str | None = None
    export_endpoint: str | None = None
    export_protocol: str = "grpc"
    internal_domains: list[str] = field(default_factory=lambda: list(DEFAULT_INTERNAL_DOMAINS))
    internal_cidrs: list[str] = field(default_factory=lambda: list(DEFAULT_INTERNAL_CIDRS))
    #: configured internal_domains/internal_cidrs add to the defaults (False: replace them)
    internal_defaults: bool = True
    ebpf: bool = False
    ebpf_pids: list[int] = field(default_factory=list)
    ebpf_ports: list[int] = field(default_factory=list)
    ebpf_comms: list[str] = field(default_factory=list)
    ebpf_capture_bytes: int = 4096
    enrichers: list[str] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    source_file: str | None = None

    def section(self, name: str) -> dict[str, Any]:
        """Free-form settings of one feature (``sensitive:``, ``abuse:``, ...)."""
        return self.sections.get(name, {})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "api_token" and v:
                v = "***"
            out[f.name] = str(v) if isinstance(v, Path) else v
        return out


# field name -> (kind, description of what is allowed)
_SCALARS: dict[str, tuple[str, str]] = {
    "bind": ("str", "an IP address to listen on, such as 0.0.0.0 or 127.0.0.1"),
    "grpc_port": ("port", "a port number from 0 to 65535 (0 picks a free port)"),
    "http_port": ("port", "a port number from 0 to 65535 (0 picks a free port)"),
    "api_bind": ("str", "an IP address for the query API, such as 127.0.0.1"),
    "api_port": ("port", "a port number from 0 to 65535 (0 picks a free port)"),
    "api_token": ("optstr", "a string; clients then send 'Authorization: Bearer <token>'"),
    "state_dir": ("path", "a directory path"),
    "persist": ("bool", "true or false"),
    "max_message_bytes": ("posint", "a positive number of bytes, such as 16777216"),
    "queue_spans": ("posint", "a positive number of spans, such as 50000"),
    "edge_process": ("edge", "one of auto, on, off"),
    "flush_interval": ("posfloat", "a positive number of seconds, such as 5"),
    "policy": ("optstr", "the path of a policy YAML file"),
    "forward": ("optstr", "an OTLP endpoint URL such as http://collector:4318/v1/traces"),
    "export_endpoint": ("optstr", "an OTLP endpoint URL such as http://collector:4317"),
    "export_protocol": ("proto", "one of grpc, http/protobuf"),
    "ebpf": ("bool", "true or false"),
    "internal_defaults": ("bool", "true or false"),
    "ebpf_capture_bytes": ("posint", "a positive number of bytes, such as 4096"),
}
_LISTS: dict[str, tuple[str, str]] = {
    "internal_domains": ("str", "a list of domain suffixes such as [.svc.cluster.local]"),
    "internal_cidrs": ("cidr", "a list of CIDR ranges such as [10.0.0.0/8]"),
    "ebpf_pids": ("int", "a list of process ids"),
    "ebpf_ports": ("port", "a list of port numbers"),
    "ebpf_comms": ("str", "a list of process names"),
    "enrichers": (
        "enricher",
        "a list of analyses to run (default all): service_counts, sensitive, inventory, "
        "callgraph, zerotrust, abuse, traces",
    ),
}


def _convert(where: str, name: str, kind: str, allowed: str, value: Any) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"{where}: field '{name}' is {value!r}; it must be {allowed}.")

    if kind in ("str",):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad()
        return str(value)
    if kind == "optstr":
        if value is None:
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise bad()
        return str(value)
    if kind == "path":
        if not isinstance(value, str) or not value:
            raise bad()
        return Path(os.path.expanduser(value))
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise bad()
    if kind in ("port", "posint", "int"):
        if isinstance(value, bool):
            raise bad()
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise bad() from None
        if kind == "port" and not 0 <= n <= 65535:
            raise bad()
        if kind == "posint" and n <= 0:
            raise bad()
        return n
    if kind == "posfloat":
        if isinstance(value, bool):
            raise bad()
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if x <= 0:
            raise bad()
        return x
    if kind == "edge":
        if value is True or value is False:  # YAML 1.1 reads a bare on/off as a boolean
            return "on" if value else "off"
        if value not in ("auto", "on", "off"):
            raise bad()
        return str(value)
    if kind == "proto":
        if value not in ("grpc", "http/protobuf", "http"):
            raise bad()
        return "http/protobuf" if value == "http" else value
    if kind == "enricher":
        from agent.wiring import ENRICHER_NAMES

        if value not in ENRICHER_NAMES:
            raise bad()
        return str(value)
    if kind == "cidr":
        import ipaddress

        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            raise bad() from None
        return str(value)
    raise AssertionError(kind)


def internal_hosts(config: Any) -> tuple[list[str], list[str]]:
    """The internal domains and CIDRs every analysis uses (call graph, sensitive data,
    abuse): the configured ones plus the built-in defaults, unless ``internal_defaults``
    is false (also read as ``graph.internal_defaults``). A default range that holds a
    configured one gives way to it: ``internal_cidrs: [127.0.0.1/32]`` leaves the rest
    of ``127.0.0.0/8`` outside.
    """
    import ipaddress

    domains = [str(d).lower().strip() for d in (getattr(config, "internal_domains", None) or ()) if d]
    cidrs = [str(c).strip() for c in (getattr(config, "internal_cidrs", None) or ()) if c]
    defaults = getattr(config, "internal_defaults", True)
    section = getattr(config, "section", None)
    if defaults is True and callable(section):
        defaults = section("graph").get("internal_defaults", True)
    if not defaults:
        return domains, cidrs
    domains += [d for d in DEFAULT_INTERNAL_DOMAINS if d not in domains]
    nets = []
    for c in cidrs:
        try:
            nets.append(ipaddress.ip_network(c, strict=False))
        except ValueError:
            continue
    for c in DEFAULT_INTERNAL_CIDRS:
        d = ipaddress.ip_network(c)
        if c not in cidrs and not any(n.version == d.version and n != d and n.subnet_of(d) for n in nets):  # type: ignore[arg-type]
            cidrs.append(c)
    return domains, cidrs


def apply_mapping(cfg: Config, data: Mapping[str, Any], where: str) -> None:
    """Apply settings from a mapping (the YAML file), validating every field."""
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name in _SCALARS:
            kind, allowed = _SCALARS[name]
            setattr(cfg, name, _convert(where, name, kind, allowed, value))
        elif name in _LISTS:
            kind, allowed = _LISTS[name]
            if isinstance(value, (str, int)):
                value = [value]
            if not isinstance(value, list):
                raise ConfigError(f"{where}: field '{name}' is {value!r}; it must be {allowed}.")
            setattr(cfg, name, [_convert(where, name, kind, allowed, v) for v in value])
        elif name == "specs":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ConfigError(
                    f"{where}: field 'specs' must map service names to OpenAPI file paths, "
                    "such as {users: specs/users.yaml}."
                )
            base = Path(where).parent if where and Path(where).exists() else Path(".")
            cfg.specs.update({k: str(_resolve(base, v)) for k, v in value.items()})
        elif name in SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: section '{name}' must be a mapping of settings.")
            if name == "sensitive":
                check_sensitive(value, where)
            elif name == "traces":
                check_traces(value, where)
            cfg.sections[name] = dict(value)
        else:
            allowed = ", ".join(sorted([*_SCALARS, *_LISTS, "specs", *SECTIONS]))
            raise ConfigError(f"{where}: unknown field '{key}'; allowed fields are: {allowed}.")


#: Keys of the ``traces`` section and what each must be (documented in docs/configuration.md).
TRACES_KEYS = {"max_traces": "a number of traces, such as 2000 (0 keeps none)",
               "admit_per_second": "a positive number of new traces a second, such as 500"}


def check_traces(section: Mapping[str, Any], where: str) -> None:
    """Validate the ``traces`` section (the recent-traces store behind the Traces view)."""
    for key, value in section.items():
        if key not in TRACES_KEYS:
            raise ConfigError(f"{where}: unknown field 'traces.{key}'; allowed fields are: "
                              f"{', '.join(TRACES_KEYS)}.")
        n = _convert(where, f"traces.{key}", "int", TRACES_KEYS[key], value)
        if n < 0 or (key == "admit_per_second" and n == 0):
            raise ConfigError(f"{where}: field 'traces.{key}' is {value!r}; it must be {TRACES_KEYS[key]}.")


#: Keys of the ``sensitive`` section (documented in docs/configuration.md).
SENSITIVE_KEYS = ("enabled", "threshold", "scan_resource", "ignore_types", "forward_actions",
                  "forward_queue_spans")
FORWARD_ACTIONS = ("mask", "hash", "drop")


def _sensitive_types() -> frozenset[str]:
    from enrichers.sensitive.recognizers import ALL

    return frozenset(r.ENTITY for r in ALL)


def _bad_type(where: str, field: str, name: Any, types: frozenset[str]) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(str(name).upper(), sorted(types), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return ConfigError(
        f"{where}: {field} names {name!r}, which is not a sensitive data type; {hint}"
        "'apiward detect --list-types' lists them all."
    )


def check_sensitive(section: Mapping[str, Any], where: str) -> None:
    """Validate the ``sensitive`` section, so a bad value stops the start with one sentence."""
    for key in section:
        if key not in SENSITIVE_KEYS:
            raise ConfigError(f"{where}: unknown field 'sensitive.{key}'; allowed fields are: "
                              f"{', '.join(SENSITIVE_KEYS)}.")
    for key in ("enabled", "scan_resource"):
        if key in section:
            _convert(where, f"sensitive.{key}", "bool", "true or false", section[key])
    if "threshold" in section:
        t = section["threshold"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ConfigError(f"{where}: field 'sensitive.threshold' is {t!r}; it must be a score "
                              "from 0 to 1, such as 0.5 (the default; higher reports fewer values).")
    if "forward_queue_spans" in section:
        _convert(where, "sensitive.forward_queue_spans", "posint",
                 "a positive number of spans, such as 25000", section["forward_queue_spans"])
    types: frozenset[str] | None = None
    ignore = section.get("ignore_types")
    if ignore is not None:
        if not isinstance(ignore, list):
            raise ConfigError(f"{where}: field 'sensitive.ignore_types' is {ignore!r}; it must be a "
                              "list of type names, such as [IP_ADDRESS, PHONE_NUMBER].")
        types = _sensitive_types()
        for t in ignore:
            if str(t).upper() not in types:
                raise _bad_type(where, "field 'sensitive.ignore_types'", t, types)
    acts = section.get("forward_actions")
    if acts is not None:
        if not isinstance(acts, Mapping):
            raise ConfigError(f"{where}: field 'sensitive.forward_actions' must map type names "
                              "to an action, such as {CREDIT_CARD: hash, default: mask}.")
        types = types or _sensitive_types()
        for t, a in acts.items():
            if str(a).lower() not in FORWARD_ACTIONS:
                raise ConfigError(f"{where}: field 'sensitive.forward_actions.{t}' is {a!r}; "
                                  f"it must be one of {', '.join(FORWARD_ACTIONS)}.")
            if t != "default" and str(t).upper() not in types:
                raise _bad_type(where, "field 'sensitive.forward_actions'", t, types)


def _forward_needs_redaction(cfg: Config) -> None:
    """Forwarded spans are redacted with the sensitive-data stage's detections: with
    ``forward`` set that stage runs whatever ``enrichers`` says."""
    if not cfg.forward:
        return
    if cfg.enrichers and "sensitive" not in cfg.enrichers:
        cfg.enrichers.append("sensitive")
        log.warning("forward is set: added the sensitive-data analysis to the enabled ones "
                    "(%s), as forwarded spans are redacted with it", ", ".join(cfg.enrichers))
    section = cfg.sections.get("sensitive")
    if section is not None and not _convert("", "sensitive.enabled", "bool", "", section.get("enabled", True)):
        section["enabled"] = True
        log.warning("forward is set: sensitive.enabled: false is overridden, as forwarded spans "
                    "are redacted with the sensitive-data analysis")


def _resolve(base: Path, p: str) -> Path:
    path = Path(os.path.expanduser(p))
    return path if path.is_absolute() else base / path


def load_file(cfg: Config, path: str | Path) -> None:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found; check the path given with --config.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the config file ({exc}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}:{line}: not valid YAML ({problem}); fix the syntax there.") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{p}: the top level must be a mapping of settings such as 'grpc_port: 4317'.")
    if isinstance(data.get("version"), int):
        data = {k: v for k, v in data.items() if k != "version"}
    apply_mapping(cfg, data, str(p))
    if cfg.policy and not os.path.isabs(cfg.policy):
        cfg.policy = str(_resolve(p.parent, cfg.policy))
    cfg.source_file = str(p)


def apply_env(cfg: Config, environ: Mapping[str, str]) -> None:
    data: dict[str, Any] = {}
    for k, v in environ.items():
        if not k.startswith(ENV_PREFIX) or k == ENV_CONFIG:
            continue
        name = k[len(ENV_PREFIX) :].lower()
        if name in _SCALARS:
            data[name] = v
        elif name in _LISTS:
            data[name] = [x.strip() for x in v.split(",") if x.strip()]
    apply_mapping(cfg, data, "environment (APIWARD_*)")


def parse_spec_args(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        service, sep, path = item.partition("=")
        if not sep or not service or not path:
            raise ConfigError(f"--spec {item!r}: write it as SERVICE=PATH, such as users=specs/users.yaml.")
        out[service] = path
    return out


def load(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective config: defaults, file, environment, then flag overrides."""
    env = os.environ if environ is None else environ
    cfg = Config()
    file = path or env.get(ENV_CONFIG)
    if file:
        load_file(cfg, file)
    elif Path("apiward.yaml").is_file():
        load_file(cfg, "apiward.yaml")
    apply_env(cfg, env)
    if overrides:
        specs = overrides.get("specs")
        rest = {k: v for k, v in overrides.items() if v is not None and k != "specs"}
        apply_mapping(cfg, rest, "command line")
        if specs:
            cfg.specs.update(specs)
    _forward_needs_redaction(cfg)
    return cfg
