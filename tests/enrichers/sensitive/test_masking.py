"""Masked forms and keyed hashes: never the raw value, equal values correlate."""

from __future__ import annotations

import pytest

from enrichers.sensitive.scanner import SensitiveDataScanner, redact_text
from tests.enrichers.sensitive.test_recognizers import CASES, JWT_HS256


@pytest.fixture(scope="module")
def scanner() -> SensitiveDataScanner:
    return SensitiveDataScanner(secret=b"m" * 32)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("4111 1111 1111 1111", "4111********1111"),
        ("john.doe@example.com", "j***@example.com"),
        (JWT_HS256, "eyJ…[JWT alg=HS256 sub=…]"),
        ("ssn 536-90-4399", "***-**-4399"),
    ],
)
def test_masks(scanner: SensitiveDataScanner, text: str, masked: str) -> None:
    assert [m.masked for m in scanner.scan(text)] == [masked]


def test_no_mask_contains_the_raw_value(scanner: SensitiveDataScanner) -> None:
    for _typ, text, key, expected in CASES:
        if not expected:
            continue
        for m in scanner.scan(text, key):
            raw = text[m.start : m.end]
            assert raw not in m.masked, (m.type, raw, m.masked)
            assert raw not in m.hash


def test_keyed_hash_correlates_and_depends_on_secret(scanner: SensitiveDataScanner) -> None:
    a = scanner.scan("card 4111-1111-1111-1111")[0]
    b = scanner.scan("pay with 4111 1111 1111 1111 now")[0]
    assert a.hash == b.hash and len(a.hash) == 16
    other = SensitiveDataScanner(secret=b"x" * 32).scan("card 4111-1111-1111-1111")[0]
    assert other.hash != a.hash


def test_redact_text(scanner: SensitiveDataScanner) -> None:
    text = "email=jane@example.org&card=4111111111111111"
    ms = scanner.scan(text)
    assert redact_text(text, ms) == "email=j***@example.org&card=4111********1111"
    hashed = redact_text(text, ms, "hash")
    assert "jane@" not in hashed and "[CREDIT_CARD:" in hashed
