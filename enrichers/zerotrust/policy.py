"""The zero-trust policy file: schema, loader and the compiled, matchable form.

A policy (``apiward-policy.yaml``, ``version: 1``) names identities, lists the
flows that are allowed (``rules``, ``egress``, ``ingress``), the requirements a
flow must meet (authentication, TLS, end-user identity propagated) and which
sensitive data types may reach which destination. ``docs/policy.md`` documents
every field.

Loading validates with JSON Schema against a YAML tree whose nodes remember their
line, so an error names the file, the line and what is allowed there. A policy
that fails to load raises :class:`PolicyError` with one sentence; callers keep
the policy that was in force before.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from agent.config import ConfigError

POLICY_VERSION = 1
AUTH_SCHEMES = ("bearer", "jwt", "basic", "apikey", "mtls")
DEFAULT_ACTIONS = ("alert", "allow")

#: Reference words with a fixed meaning in ``from``/``to``.
ANY = "*"
EXTERNAL = "external"

_REF = {"type": "string", "minLength": 1}
_REFS = {"oneOf": [_REF, {"type": "array", "items": _REF, "minItems": 1}]}
_STRINGS = {"oneOf": [_REF, {"type": "array", "items": _REF}]}
_REQUIRE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "auth": {
            "oneOf": [
                {"type": "boolean"},
                {"enum": ["any", "none"]},
                {"type": "array", "items": {"enum": list(AUTH_SCHEMES)}, "minItems": 1},
            ]
        },
        "tls": {"type": "boolean"},
        "enduser": {"type": "boolean"},
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "apiward zero-trust policy",
    "type": "object",
    "required": ["version"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": POLICY_VERSION},
        "default_action": {"enum": list(DEFAULT_ACTIONS)},
        "learned": {"type": "object"},
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enduser_header": {"type": "string", "minLength": 1},
                "audiences": {
                    "type": "object",
                    "additionalProperties": _STRINGS,
                },
            },
        },
        "identities": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "service": _REF,
                    "namespace": {"type": "string"},
                    "group": {"type": "array", "items": _REF, "minItems": 1},
                    "cidr": _REFS,
                    "host": _REFS,
                    "k8s_service_account": _REF,
                    "spiffe": _REFS,
                },
            },
        },
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "additionalProperties": False,
                "properties": {
                    "id": _REF,
                    "from": _REFS,
                    "to": _REFS,
                    "connection": {"type": "string"},
                    "methods": {"type": "array", "items": _REF},
                    "routes": {"type": "array", "items": _REF},
                    "endpoints": {"type": "array", "items": {"type": "string", "pattern": r"^\S+\s+\S+$"}},
                    "require": _REQUIRE,
                },
            },
        },
        "requirements": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["service", "require"],
                "additionalProperties": False,
                "properties": {
                    "id": _REF,
                    "service": _REFS,
                    "methods": {"type": "array", "items": _REF},
                    "routes": {"type": "array", "items": _REF},
                    "require": _REQUIRE,
                },
            },
        },
        "egress": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["hosts"],
                "additionalProperties": False,
                "properties": {"id": _REF, "from": _REFS, "hosts": _REFS, "require": _REQUIRE},
            },
        },
        "ingress": {
            "type": "array",
            "items": {
                "oneOf": [
                    _REF,
                    {
                        "type": "object",
                        "required": ["to"],
                        "additionalProperties": False,
                        "properties": {"id": _REF, "to": _REFS, "from": _REFS, "require": _REQUIRE},
                    },
                ]
            },
        },
        "sensitive": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["to", "types"],
                "additionalProperties": False,
                "properties": {"to": _REFS, "types": {"type": "array", "items": _REF}},
            },
        },
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class PolicyError(ConfigError):
    """A policy file that cannot be used; the message names file, line and fix.

    A :class:`~agent.config.ConfigError`, so the CLI prints it as one sentence and
    exits 2 when the policy given at start-up is bad.
    """


# ------------------------------------------------------------------ YAML with lines


def load_yaml_with_lines(text: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Parse YAML into plain Python plus a map from each value's path to its 1-based line."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple[Any, ...], int] = {}
    if node is None:
        return None, lines
    constructor = yaml.SafeLoader(text)

    def walk(n: yaml.Node, path: tuple[Any, ...]) -> Any:
        lines[path] = n.start_mark.line + 1
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k, v in n.value:
                key = constructor.construct_object(k, deep=True)
                if isinstance(key, (list, dict)):
                    raise PolicyError(f"line {k.start_mark.line + 1}: a mapping key must be a scalar")
                kp = (*path, key)
                out[key] = walk(v, kp)
                lines[kp] = k.start_mark.line + 1
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, (*path, i)) for i, v in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        return walk(node, ()), lines
    finally:
        constructor.dispose()


def _line_of(lines: Mapping[tuple[Any, ...], int], path: Sequence[Any]) -> int:
    p = tuple(path)
    while p not in lines and p:
        p = p[:-1]
    return lines.get(p, 1)


def _dotted(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _allowed_here(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and "properties" in schema:
        return "allowed keys: " + ", ".join(sorted(schema["properties"]))
    if error.validator == "required":
        return "add it"
    if error.validator == "enum":
        return "allowed: " + ", ".join(map(str, schema.get("enum", [])))
    if error.validator == "const":
        return f"allowed: {schema.get('const')}"
    if error.validator == "oneOf":
        return _describe_one_of(schema.get("oneOf", []))
    return ""


def _describe_one_of(options: list[Any]) -> str:
    kinds = []
    for o in options:
        if "enum" in o:
            kinds.append(" or ".join(map(repr, o["enum"])))
        elif o.get("type") == "array":
            items = o.get("items", {})
            kinds.append("a list of " + ("one of " + ", ".join(items["enum"]) if "enum" in items else items.get("type", "values") + "s"))
        elif o.get("type") == "object":
            kinds.append("a mapping with keys " + ", ".join(sorted(o.get("properties", {}))))
        elif "type" in o:
            kinds.append("a " + str(o["type"]))
    return "allowed: " + "; ".join(kinds) if kinds else ""


def _schema_error(path: str, error: jsonschema.ValidationError, lines: Mapping[tuple[Any, ...], int]) -> PolicyError:
    where = list(error.absolute_path)
    line = _line_of(lines, where)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = [k for k in error.instance if k not in schema.get("properties", {})]
        if extra:
            line = _line_of(lines, [*where, extra[0]])
    hint = _allowed_here(error)
    msg = f"{path}:{line}: {_dotted(where)}: {error.message}"
    if hint:
        msg += f" ({hint})"
    return PolicyError(msg)


# ------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a flow must show. ``auth``: ``None`` no requirement, ``()`` any scheme,
    else the accepted schemes."""

    auth: tuple[str, ...] | None = None
    tls: bool = False
    enduser: bool = False

    def merged(self, other: Requirement) -> Requirement:
        if self.auth is None:
            auth = other.auth
        elif other.auth is None:
            auth = self.auth
        elif not self.auth or not other.auth:
            auth = self.auth or other.auth
        else:
            both = tuple(s for s in self.auth if s in other.auth)
            auth = both or self.auth
        return Requirement(auth, self.tls or other.tls, self.enduser or other.enduser)

    @property
    def empty(self) -> bool:
        return self.auth is None and not self.tls and not self.enduser


NO_REQUIREMENT = Requirement()


@dataclass(frozen=True, slots=True)
class Identity:
    """One named identity of the policy. Exactly one of the matching fields is set."""

    name: str
    service: str = ""
    namespace: str = ""
    group: tuple[str, ...] = ()
    cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    hosts: tuple[str, ...] = ()
    service_account: str = ""
    spiffe: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointPattern:
    method: str  # upper case or "*"
    route: re.Pattern[str]
    text: str


@dataclass(frozen=True, slots=True)
class Rule:
    """An allow rule (from ``rules``, ``egress`` or ``ingress``)."""

    id: str
    kind: str  # "rule" | "egress" | "ingress"
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    line: int
    connection: str = ""
    methods: tuple[str, ...] = ()
    routes: tuple[EndpointPattern, ...] = ()
    endpoints: tuple[EndpointPattern, ...] = ()
    require: Requirement = NO_REQUIREMENT

    @property
    def restricts_endpoints(self) -> bool:
        return bool(self.methods or self.routes or self.endpoints)

    def allows_endpoint(self, method: str, route: str) -> bool:
        m = method.upper()
        if self.endpoints:
            return any(
                (e.method in ("*", m)) and e.route.fullmatch(route) is not None for e in self.endpoints
            )
        if self.methods and m not in self.methods and "*" not in self.methods:
            return False
        if self.routes and not any(r.route.fullmatch(route) for r in self.routes):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "kind": self.kind, "line": self.line}
        d["from"] = list(self.sources)
        d["to"] = list(self.targets)
        if self.methods:
            d["methods"] = list(self.methods)
        if self.routes:
            d["routes"] = [r.text for r in self.routes]
        if self.endpoints:
            d["endpoints"] = [f"{e.method} {e.text}" for e in self.endpoints]
        req = self.require
        if req.auth is not None:
            d["require_auth"] = list(req.auth) or "any"
        if req.tls:
            d["require_tls"] = True
        if req.enduser:
            d["require_enduser"] = True
        return d


@dataclass(frozen=True, slots=True)
class EndpointRequirement:
    id: str
    services: tuple[str, ...]
    methods: tuple[str, ...]
    routes: tuple[EndpointPattern, ...]
    require: Requirement
    line: int

    def applies(self, method: str, route: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return not self.routes or any(r.route.fullmatch(route) for r in self.routes)


@dataclass(frozen=True, slots=True)
class SensitiveRule:
    targets: tuple[str, ...]
    types: frozenset[str]
    line: int


@dataclass(frozen=True, slots=True)
class Policy:
    """A loaded, validated policy, ready for matching."""

    path: str
    default_action: str
    identities: Mapping[str, Identity]
    rules: tuple[Rule, ...]
    requirements: tuple[EndpointRequirement, ...]
    sensitive: tuple[SensitiveRule, ...]
    has_sensitive: bool
    enduser_header: str = ""
    audiences: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    learned: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_learned(self) -> bool:
        return bool(self.learned)


def route_pattern(text: str) -> re.Pattern[str]:
    """Compile a route template/glob: ``{name}`` and ``*`` match one segment, ``**`` any rest."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if text.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "{":
            j = text.find("}", i)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                out.append(r"(?:\{[^/]*\}|[^/]+)")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


def _as_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    return [str(x) for x in v]


def _requirement(d: Mapping[str, Any] | None) -> Requirement:
    if not d:
        return NO_REQUIREMENT
    a = d.get("auth")
    auth: tuple[str, ...] | None
    if a is None or a is False or a == "none":
        auth = None
    elif a is True or a == "any":
        auth = ()
    else:
        auth = tuple(sorted({str(s) for s in a}))
    return Requirement(auth=auth, tls=bool(d.get("tls")), enduser=bool(d.get("enduser")))


def _endpoint_patterns(items: Iterable[str]) -> tuple[EndpointPattern, ...]:
    out = []
    for text in items:
        method, _, route = text.strip().partition(" ")
        route = route.strip()
        out.append(EndpointPattern(method.upper(), route_pattern(route), route))
    return tuple(out)


def _route_patterns(items: Iterable[str]) -> tuple[EndpointPattern, ...]:
    return tuple(EndpointPattern("*", route_pattern(r), r) for r in items)


def parse_policy(data: Any, path: str, lines: Mapping[tuple[Any, ...], int]) -> Policy:
    """Validate ``data`` (parsed YAML) and compile it; raise :class:`PolicyError`."""
    if not isinstance(data, dict):
        raise PolicyError(
            f"{path}:1: the policy must be a YAML mapping starting with 'version: {POLICY_VERSION}'"
        )
    errors = sorted(_VALIDATOR.iter_errors(data), key=lambda e: (_line_of(lines, list(e.absolute_path)), e.path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise _schema_error(path, best, lines)

    def fail(where: tuple[Any, ...], what: str) -> PolicyError:
        return PolicyError(f"{path}:{_line_of(lines, where)}: {_dotted(where)}: {what}")

    identities: dict[str, Identity] = {}
    for name, d in (data.get("identities") or {}).items():
        where = ("identities", name)
        kinds = [k for k in ("service", "group", "cidr", "host", "k8s_service_account", "spiffe") if k in d]
        if len(kinds) != 1:
            raise fail(where, "an identity needs exactly one of service, group, cidr, host, "
                       f"k8s_service_account, spiffe (found {', '.join(kinds) or 'none'})")
        if name in (ANY, EXTERNAL, "ingress"):
            raise fail(where, f"'{name}' is a reserved word; pick another identity name")
        cidrs = []
        for i, c in enumerate(_as_list(d.get("cidr"))):
            try:
                cidrs.append(ipaddress.ip_network(c, strict=False))
            except ValueError:
                raise fail((*where, "cidr", i), f"{c!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
        hosts = []
        for i, h in enumerate(_as_list(d.get("host"))):
            if "/" in h:
                try:
                    ipaddress.ip_network(h, strict=False)
                except ValueError:
                    raise fail((*where, "host", i), f"{h!r} is neither a host name nor a CIDR") from None
            hosts.append(h.lower())
        identities[name] = Identity(
            name=name,
            service=str(d.get("service") or ""),
            namespace=str(d.get("namespace") or ""),
            group=tuple(_as_list(d.get("group"))),
            cidrs=tuple(cidrs),
            hosts=tuple(hosts),
            service_account=str(d.get("k8s_service_account") or ""),
            spiffe=tuple(_as_list(d.get("spiffe"))),
        )
    for name, ident in identities.items():
        for member in ident.group:
            if member == name:
                raise fail(("identities", name, "group"), "a group cannot contain itself")

    rules: list[Rule] = []
    seen_ids: dict[str, int] = {}

    def rule_id(given: Any, default: str, where: tuple[Any, ...]) -> str:
        rid = str(given or default)
        if rid in seen_ids:
            raise fail(where, f"rule id {rid!r} is already used on line {seen_ids[rid]}; ids must be unique")
        seen_ids[rid] = _line_of(lines, where)
        return rid

    for i, r in enumerate(data.get("rules") or []):
        where = ("rules", i)
        rules.append(
            Rule(
                id=rule_id(r.get("id"), f"rules[{i}]", where),
                kind="rule",
                sources=tuple(_as_list(r["from"])),
                targets=tuple(_as_list(r["to"])),
                line=_line_of(lines, where),
                connection=str(r.get("connection") or ""),
                methods=tuple(m.upper() for m in r.get("methods") or ()),
                routes=_route_patterns(r.get("routes") or ()),
                endpoints=_endpoint_patterns(r.get("endpoints") or ()),
                require=_requirement(r.get("require")),
            )
        )
    for i, e in enumerate(data.get("egress") or []):
        where = ("egress", i)
        hosts = _as_list(e["hosts"])
        for j, h in enumerate(hosts):
            if "/" in h and h not in identities:
                try:
                    ipaddress.ip_network(h, strict=False)
                except ValueError:
                    raise fail((*where, "hosts", j), f"{h!r} is neither a host name nor a CIDR") from None
        rules.append(
            Rule(
                id=rule_id(e.get("id"), f"egress[{i}]", where),
                kind="egress",
                sources=tuple(_as_list(e.get("from")) or [ANY]),
                targets=tuple(h if h in identities else h.lower() for h in hosts),
                line=_line_of(lines, where),
                require=_requirement(e.get("require")),
            )
        )
    for i, g in enumerate(data.get("ingress") or []):
        where = ("ingress", i)
        if isinstance(g, str):
            g = {"to": g}
        rules.append(
            Rule(
                id=rule_id(g.get("id"), f"ingress[{i}]", where),
                kind="ingress",
                sources=tuple(_as_list(g.get("from")) or [EXTERNAL]),
                targets=tuple(_as_list(g["to"])),
                line=_line_of(lines, where),
                require=_requirement(g.get("require")),
            )
        )
    reqs = []
    for i, q in enumerate(data.get("requirements") or []):
        where = ("requirements", i)
        reqs.append(
            EndpointRequirement(
                id=rule_id(q.get("id"), f"requirements[{i}]", where),
                services=tuple(_as_list(q["service"])),
                methods=tuple(m.upper() for m in q.get("methods") or ()),
                routes=_route_patterns(q.get("routes") or ()),
                require=_requirement(q.get("require")),
                line=_line_of(lines, where),
            )
        )
    sensitive = tuple(
        SensitiveRule(
            targets=tuple(_as_list(s["to"])),
            types=frozenset(t.lower() for t in s["types"]),
            line=_line_of(lines, ("sensitive", i)),
        )
        for i, s in enumerate(data.get("sensitive") or [])
    )
    settings = data.get("settings") or {}
    audiences = {str(k): tuple(_as_list(v)) for k, v in (settings.get("audiences") or {}).items()}
    return Policy(
        path=path,
        default_action=str(data.get("default_action") or "alert"),
        identities=identities,
        rules=tuple(rules),
        requirements=tuple(reqs),
        sensitive=sensitive,
        has_sensitive="sensitive" in data,
        enduser_header=str(settings.get("enduser_header") or "").lower(),
        audiences=audiences,
        learned=dict(data.get("learned") or {}),
    )


def parse_policy_text(text: str, path: str = "<policy>") -> Policy:
    try:
        data, lines = load_yaml_with_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError(f"{path}:{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from None
    except PolicyError as exc:
        raise PolicyError(f"{path}:{str(exc).removeprefix('line ')}") from None
    return parse_policy(data, path, lines)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; raise :class:`PolicyError` with file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: policy file not found; check the path given to --policy") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{p}: cannot read the policy file ({exc})") from None
    return parse_policy_text(text, str(p))


def host_matches(pattern: str, host: str) -> bool:
    """FQDN (exact, case-insensitive), wildcard (``*.example.com``) or CIDR match."""
    if not host:
        return False
    h = host.lower().rstrip(".")
    if "/" in pattern:
        try:
            return ipaddress.ip_address(h) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(h, pattern)
    return h == pattern.rstrip(".")
