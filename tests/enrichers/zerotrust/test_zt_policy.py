"""Policy loading: valid files compile; invalid ones name file, line and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError
from enrichers.zerotrust.policy import (
    PolicyError,
    host_matches,
    load_policy,
    parse_policy_text,
    route_pattern,
)

ROOT = Path(__file__).resolve().parents[3]


def test_example_policy_loads() -> None:
    p = load_policy(ROOT / "examples" / "policy" / "apiward-policy.yaml")
    assert p.default_action == "alert"
    assert {r.id for r in p.rules} >= {"web-to-orders", "payments-to-stripe", "ingress[0]"}
    assert p.identities["office"].cidrs
    assert p.enduser_header == "x-user-id"
    assert p.audiences["orders"] == ("api://orders",)
    web = next(r for r in p.rules if r.id == "web-to-orders")
    assert web.require.auth == ("jwt",) and web.require.tls and web.require.enduser
    assert web.line == 28


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("version: 2\n", 1, ["version", "allowed: 1"]),
        ("version: 1\ndefault_action: deny\n", 2, ["default_action", "allowed: alert, allow"]),
        ("version: 1\nrules:\n  - from: a\n    to: b\n    colour: red\n", 5,
         ["rules[0]", "'colour' was unexpected", "allowed keys:", "endpoints", "methods"]),
        ("version: 1\nrules:\n  - from: a\n    to: b\n  - from: c\n", 5, ["rules[1]", "'to' is a required property"]),
        ("version: 1\nrules:\n  - from: a\n    to: b\n    require:\n      auth: [oauth]\n", 6,
         ["rules[0].require.auth", "bearer, jwt, basic, apikey, mtls"]),
        ("version: 1\nidentities:\n  office: {cidr: [10.0.0.300/8]}\n", 3, ["identities.office.cidr[0]", "not a CIDR"]),
        ("version: 1\nidentities:\n  x: {service: a, host: b}\n", 3, ["exactly one of"]),
        ("version: 1\nrules:\n  - {id: r, from: a, to: b}\n  - {id: r, from: a, to: c}\n", 4,
         ["already used on line 3"]),
        ("version: 1\nrules: [\n", 3, ["not valid YAML"]),
        ("- just a list\n", 1, ["must be a YAML mapping"]),
        ("version: 1\nfrobnicate: true\n", 2, ["'frobnicate' was unexpected", "allowed keys:", "egress"]),
    ],
)
def test_invalid_policies_name_file_line_and_allowed(text: str, line: int, words: list[str]) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy_text(text, "p.yaml")
    msg = str(exc.value)
    assert msg.startswith(f"p.yaml:{line}:"), msg
    for w in words:
        assert w in msg, msg
    assert isinstance(exc.value, ConfigError)


def test_missing_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("pattern", "route", "ok"),
    [
        ("/orders/{id}", "/orders/{id}", True),
        ("/orders/{id}", "/orders/42", True),
        ("/orders/{id}", "/orders/42/items", False),
        ("/orders/*", "/orders/42", True),
        ("/admin/**", "/admin/a/b", True),
        ("/admin/**", "/public", False),
        ("/a.b", "/aXb", False),
    ],
)
def test_route_patterns(pattern: str, route: str, ok: bool) -> None:
    assert (route_pattern(pattern).fullmatch(route) is not None) is ok


@pytest.mark.parametrize(
    ("pattern", "host", "ok"),
    [
        ("api.stripe.com", "API.Stripe.com", True),
        ("*.stripe.com", "files.stripe.com", True),
        ("*.stripe.com", "stripe.com", False),
        ("127.0.0.0/24", "127.0.0.2", True),
        ("10.0.0.0/8", "127.0.0.2", False),
        ("10.0.0.0/8", "example.com", False),
    ],
)
def test_host_patterns(pattern: str, host: str, ok: bool) -> None:
    assert host_matches(pattern, host) is ok
