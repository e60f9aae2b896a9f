"""Passing a caller's token on (same trace) is not reuse; a new client in another trace is."""

from __future__ import annotations

from collections import OrderedDict

from enrichers.zerotrust.tokens import Credential, TokenChecker


def cred() -> Credential:
    return Credential(kind="jwt", fingerprint="f" * 32)


def test_gateway_forwarding_the_callers_token_is_not_reuse():
    seen: dict[str, list[str]] = {}
    chains: OrderedDict[tuple[str, str], str] = OrderedDict()
    check = TokenChecker.check_reuse
    for i in range(5):  # five requests, each: client -> gateway -> users, one trace each
        trace = f"{i:032x}"
        assert check(seen, cred(), "client:203.0.113.0/24", 100, trace, chains) is None
        assert check(seen, cred(), "gateway", 100, trace, chains) is None
    assert sorted(seen["f" * 32]) == ["client:203.0.113.0/24", "gateway"]


def test_same_token_from_another_client_in_another_trace_is_reuse():
    seen: dict[str, list[str]] = {}
    chains: OrderedDict[tuple[str, str], str] = OrderedDict()
    check = TokenChecker.check_reuse
    assert check(seen, cred(), "client:203.0.113.0/24", 100, "a" * 32, chains) is None
    issue = check(seen, cred(), "client:198.51.100.0/24", 100, "b" * 32, chains)
    assert issue is not None and issue.kind == "token_reuse"
    assert issue.evidence["clients"] == ["client:203.0.113.0/24", "client:198.51.100.0/24"]


def test_order_within_a_trace_does_not_matter():
    seen: dict[str, list[str]] = {}
    chains: OrderedDict[tuple[str, str], str] = OrderedDict()
    check = TokenChecker.check_reuse
    # The downstream use may be analysed before the upstream one.
    assert check(seen, cred(), "gateway", 100, "c" * 32, chains) is None
    assert check(seen, cred(), "client:203.0.113.0/24", 100, "c" * 32, chains) is None
    assert check(seen, cred(), "client:203.0.113.0/24", 100, "d" * 32, chains) is None
