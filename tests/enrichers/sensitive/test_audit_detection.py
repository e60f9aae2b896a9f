"""Detection gaps an audit found: JSON fields, non-ASCII e-mail addresses, national phone
numbers, EIP-55 checksums. Each fix with a positive case and a near miss, on every
prefilter engine the scanner supports (hyperscan, re2, plain re)."""

from __future__ import annotations

import pytest

from enrichers.sensitive.recognizers.financial import eip55_checksum_ok
from enrichers.sensitive.scanner import SensitiveDataScanner, redact_text

ENGINES = ("hyperscan", "re2", "re")


@pytest.fixture(scope="module", params=ENGINES)
def scanner(request: pytest.FixtureRequest) -> SensitiveDataScanner:
    try:
        return SensitiveDataScanner(b"k" * 32, engine=request.param)
    except ImportError:
        pytest.skip(f"{request.param} not installed")


def found(scanner: SensitiveDataScanner, text: str, key: str = "") -> list[tuple[str, str]]:
    return [(m.type, text[m.start : m.end]) for m in scanner.scan(text, key=key)]


# --------------------------------------------------------------- JSON bodies
def test_json_number_value_is_read_up_to_the_comma(scanner: SensitiveDataScanner) -> None:
    assert found(scanner, '{"cvv": 123, "x": 1}') == [("CARD_CVV", "123")]
    assert found(scanner, "cvv=123, retry=2") == [("CARD_CVV", "123")]


def test_json_number_near_miss(scanner: SensitiveDataScanner) -> None:
    # Five digits are no CVV, with or without the comma.
    assert found(scanner, '{"cvv": 12345, "x": 1}') == []
    assert found(scanner, '{"count": 123, "x": 1}') == []


def test_json_password_with_spaces(scanner: SensitiveDataScanner) -> None:
    text = '{"user": "bob", "password": "p@ss w0rd with spaces"}'
    assert found(scanner, text) == [("PASSWORD", "p@ss w0rd with spaces")]
    assert "w0rd" not in redact_text(text, scanner.scan(text))


def test_password_with_spaces_near_miss(scanner: SensitiveDataScanner) -> None:
    # Unquoted, only the first word is the value (the rest is the log line).
    assert found(scanner, "login failed password=hunter2 retrying later") == [("PASSWORD", "hunter2")]
    # A placeholder is no password, quoted or not.
    assert found(scanner, '{"password": "********"}') == []


def test_json_authorization_scheme_and_token(scanner: SensitiveDataScanner) -> None:
    text = '{"Authorization": "Token abcdef0123456789ABCDEF"}'
    assert found(scanner, text) == [("GENERIC_SECRET", "abcdef0123456789ABCDEF")]
    # The same as a captured header attribute.
    header = "Token abcdef0123456789ABCDEF"
    assert found(scanner, header, key="http.request.header.authorization") == [
        ("GENERIC_SECRET", "abcdef0123456789ABCDEF")
    ]


def test_authorization_scheme_near_miss(scanner: SensitiveDataScanner) -> None:
    # Too short and low-entropy after the scheme: not a secret.
    assert found(scanner, '{"Authorization": "Token abcdefghijklmnop"}') == []
    assert found(scanner, '{"author": "Token abcdef0123456789ABCDEF"}') == []


def test_json_nested_leaves_take_their_key_path(scanner: SensitiveDataScanner) -> None:
    text = '{"ssn": ["536-90-4399", "371-42-1234"], "user": {"password": {"new": "a b c d"}}}'
    got = found(scanner, text)
    assert ("PASSWORD", "a b c d") in got
    assert [v for t, v in got if t == "US_SSN"] == ["536-90-4399", "371-42-1234"]
    # The object after "password" is not itself taken as the value.
    assert ("PASSWORD", "{") not in got


def test_json_walk_near_miss(scanner: SensitiveDataScanner) -> None:
    # Nested, but under keys that are not sensitive; and a truncated body (no parse).
    assert found(scanner, '{"meta": {"description": "pin the tab", "count": 1234}}') == []
    assert found(scanner, '{"user": {"password": "p@ss w0rd') == []


# --------------------------------------------------------------- e-mail
def test_non_ascii_email_is_found_whole(scanner: SensitiveDataScanner) -> None:
    assert found(scanner, "contact josé@example.com today") == [("EMAIL_ADDRESS", "josé@example.com")]
    text = "notify jürgen.müller@example.de now"
    ms = scanner.scan(text)
    assert [(m.type, text[m.start : m.end]) for m in ms] == [("EMAIL_ADDRESS", "jürgen.müller@example.de")]
    assert redact_text(text, ms) == "notify j***@example.de now"
    assert found(scanner, "mail to anna@bücher.de") == [("EMAIL_ADDRESS", "anna@bücher.de")]


def test_non_ascii_email_near_miss(scanner: SensitiveDataScanner) -> None:
    # No top-level domain, or a file name: not an address.
    assert found(scanner, "user josé@localhost logged in") == []
    assert found(scanner, "icon müller@2x.png") == []


# --------------------------------------------------------------- phone numbers
def test_national_phone_with_long_subscriber_group(scanner: SensitiveDataScanner) -> None:
    assert found(scanner, "phone 030 12345678") == [("PHONE_NUMBER", "030 12345678")]


def test_national_phone_near_miss(scanner: SensitiveDataScanner) -> None:
    # Without a context word only US numbers count; no region has a 000 prefix; and a
    # long group does not make a too-long number valid.
    assert found(scanner, "order 030 12345678 shipped") == []
    assert found(scanner, "phone 000 12345678") == []
    assert found(scanner, "phone 030 123456789012") == []


# --------------------------------------------------------------- EIP-55
def test_eip55_checksum() -> None:
    assert eip55_checksum_ok("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed") is True
    assert eip55_checksum_ok("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD") is False
    assert eip55_checksum_ok("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed") is None  # no checksum
    assert eip55_checksum_ok("52908400098527886E0F7030069857D2E4169EE7") is None  # all upper


def test_ethereum_addresses(scanner: SensitiveDataScanner) -> None:
    good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert [(m.type, m.score) for m in scanner.scan(f"paid to {good}")] == [("CRYPTO", 0.95)]
    lower = good.lower()
    assert [(m.type, m.score) for m in scanner.scan(f"paid to {lower}")] == [("CRYPTO", 0.6)]


def test_ethereum_bad_checksum_rejected(scanner: SensitiveDataScanner) -> None:
    bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # last letter's case flipped
    assert found(scanner, f"wallet {bad}") == []
