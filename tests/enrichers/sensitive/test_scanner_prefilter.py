"""The prefilter only decides what the precise patterns look at, never what they find.

Each case is scanned with the default engine (hyperscan where installed), with the
plain ``re`` engine, which has no prefilter and runs every pattern on every value, and
with re2: all must find exactly the same. The cases aim at the prefilter's shortcuts: patterns
that need a context word have it in their prefilter expression (a field name, non-ASCII
text, form-encoded spaces and values joined in one batch must still work), public and
private IP addresses share their spans, ``key=value`` pairs with a harmless key.
"""

from __future__ import annotations

import pytest

from enrichers.sensitive.recognizers.personal import PhoneRecognizer
from enrichers.sensitive.scanner import SensitiveDataScanner

CASES: list[tuple[str, str, set[str]]] = [
    # text, key, types found
    ("020 7946 0958", "contact.phone", {"PHONE_NUMBER"}),
    ("020 7946 0958", "", set()),
    ("call me at 020 7946 0958", "", {"PHONE_NUMBER"}),
    ("020 7946 0958 is my phone", "", set()),
    # The context word 37 characters (but 67 bytes) before the number.
    ("phone " + "é" * 30 + " 020 7946 0958", "", {"PHONE_NUMBER"}),
    ("phone " + "e" * 30 + " 020 7946 0958", "", {"PHONE_NUMBER"}),
    ("phone " + "e" * 60 + " 020 7946 0958", "", set()),
    ("a=020+7946+0958", "contact.phone", {"PHONE_NUMBER"}),
    ("tel=020+7946+0958&x=1", "", {"PHONE_NUMBER"}),
    ("ssn 123456789", "", {"US_SSN"}),
    ("123456789", "user.ssn", {"US_SSN"}),
    ("NPI: 1234567893 ü", "", {"US_NPI"}),
    ("imei 490154203237518", "", {"IMEI"}),
    ("490154203237518", "device.id", {"IMEI"}),
    ("routing 021000021", "", {"ABA_ROUTING_NUMBER"}),
    ("021000021", "bank.routing", {"ABA_ROUTING_NUMBER"}),
    ("10.104.29.129", "", {"PRIVATE_IP_ADDRESS"}),
    ("client 8.8.4.4 and peer 192.168.1.20", "", {"IP_ADDRESS", "PRIVATE_IP_ADDRESS"}),
    ("Mozilla/5.0 (Windows NT 10.0) Chrome/109.0.0.0 Safari/537.36", "", set()),
    ("4.1.7.1-beta", "", set()),
    ("KeyError: 'variant'", "", set()),
    ("retry: password=Tr0ub4dor&3x (attempt 2)", "", {"PASSWORD"}),
    ("", "user.password", set()),  # (no prefilter: the JSON check once read text[0])
]


@pytest.fixture(scope="module")
def scanner() -> SensitiveDataScanner:
    return SensitiveDataScanner(secret=b"s" * 32)


@pytest.fixture(scope="module", params=["re", "re2"])
def plain(request: pytest.FixtureRequest) -> SensitiveDataScanner:
    """The plain ``re`` engine (no prefilter), and re2 (the same prefilter, another engine)."""
    return SensitiveDataScanner(secret=b"s" * 32, engine=request.param)


@pytest.mark.parametrize(("text", "key", "types"), CASES)
def test_found_as_without_prefilter(
    scanner: SensitiveDataScanner, plain: SensitiveDataScanner, text: str, key: str, types: set[str]
) -> None:
    got = scanner.scan_many([(text, key)], cache=False)[0]
    assert {m.type for m in got} == types
    assert got == plain.scan_many([(text, key)], cache=False)[0]


def test_one_batch_as_values_one_by_one(scanner: SensitiveDataScanner, plain: SensitiveDataScanner) -> None:
    # Joined in one prefilter call, a value's context word sits just before the next value.
    items = [(t, k) for t, k, _ in CASES] + [("my phone", ""), ("020 7946 0958", ""), ("x phone", "")]
    got = scanner.scan_many(items, cache=False)
    assert got == [scanner.scan_many([it], cache=False)[0] for it in items]
    assert got == plain.scan_many(items, cache=False)
    assert got[-2] == ()


def test_remembered_validation_keeps_context_apart() -> None:
    # A national number is valid in a non-US region only with a context word nearby:
    # the remembered answers for the same value with and without one stay apart.
    phone = PhoneRecognizer()
    for _ in range(2):
        assert phone.validate_cached("020 7946 0958", True) is True
        assert phone.validate_cached("020 7946 0958", False) is False
