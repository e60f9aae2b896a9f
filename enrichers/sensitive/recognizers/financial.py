"""Financial data: payment cards (Luhn and issuer ranges), CVV and expiry in key context,
IBAN (mod-97), SWIFT/BIC, US ABA routing numbers, bank accounts in key context and
crypto wallet addresses. Checksums come from python-stdnum (Ethereum's EIP-55 from
pycryptodome's Keccak-256)."""

from __future__ import annotations

import re

from Crypto.Hash import keccak
from stdnum import bic, bitcoin, iban, luhn
from stdnum.us import rtn

from enrichers.sensitive.recognizer import (
    FINANCIAL,
    GDPR,
    PCI,
    NumberRecognizer,
    Pattern,
    Recognizer,
    digits,
    in_dash_chain,
    mask_keep,
)

#: Issuer identification ranges and card lengths: (prefix low, prefix high, lengths).
#: Data, not an algorithm: Visa, Mastercard (51-55, 2221-2720), Amex, Discover,
#: Diners, JCB, UnionPay, Maestro.
_ISSUERS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),
    (51, 55, frozenset({16})),
    (2221, 2720, frozenset({16})),
    (34, 34, frozenset({15})),
    (37, 37, frozenset({15})),
    (6011, 6011, frozenset({16, 19})),
    (644, 649, frozenset({16, 19})),
    (65, 65, frozenset({16, 19})),
    (300, 305, frozenset({14, 16, 19})),
    (36, 36, frozenset({14, 16, 19})),
    (38, 39, frozenset({16, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),
    (62, 62, frozenset({16, 17, 18, 19})),
    (5018, 5018, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    (5020, 5020, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    (5038, 5038, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    (6304, 6304, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    (6759, 6759, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
    (6761, 6763, frozenset({12, 13, 14, 15, 16, 17, 18, 19})),
)


#: _ISSUERS with the width of each prefix, worked out once.
_ISSUER_PREFIXES = tuple((lo, hi, len(str(lo)), lengths) for lo, hi, lengths in _ISSUERS)


def card_issuer_ok(number: str) -> bool:
    n = len(number)
    for lo, hi, w, lengths in _ISSUER_PREFIXES:
        if n in lengths and lo <= int(number[:w]) <= hi:
            return True
    return False


class CreditCardRecognizer(NumberRecognizer):
    """Payment card numbers: issuer range and length, then the Luhn checksum."""

    ENTITY = "CREDIT_CARD"
    CATEGORY = FINANCIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "payment card number (PAN)"
    KEEP = (4, 4)
    PATTERNS = (
        Pattern("grouped", r"\b[2-6]\d{3}[ -]\d{4,6}[ -]\d{4,5}(?:[ -]\d{1,4}){0,2}\b", 0.3),
        Pattern("bare", r"\b[2-6]\d{11,18}\b", 0.2),
    )
    CONTEXT = ("card", "credit", "pan", "visa", "mastercard", "amex", "cc", "payment")
    REJECT_AROUND = True

    def rejected_by_surroundings(self, text: str, start: int, end: int) -> bool:
        return in_dash_chain(text, start, end)

    def validate(self, text: str) -> bool | None:
        d = digits(text)
        if len(set(d)) < 2:
            return False
        return card_issuer_ok(d) and bool(luhn.is_valid(d))


class CardCvvRecognizer(Recognizer):
    """Card verification codes, only as the value of a CVV field."""

    ENTITY = "CARD_CVV"
    CATEGORY = FINANCIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "card verification code (key context)"
    KEYS = r"\bcvv2?\b|\bcvc2?\b|cvv|cvc|\bcsc\b|security_?code|card_?code|cid\b"
    NOT_KEYS = r"trace|span|request|session|client|cidr"
    VALUE = r"\d{3,4}"
    KEEP = (0, 0)


class CardExpiryRecognizer(Recognizer):
    """Card expiry dates (MM/YY), only as the value of an expiry field."""

    ENTITY = "CARD_EXPIRY"
    CATEGORY = FINANCIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "card expiry date (key context)"
    KEYS = r"\bexp\b|exp_?(?:date|month|year|iry)|expir|valid_?thru|card_?exp|\bexp\w*mm"
    VALUE = r"(?:0[1-9]|1[0-2]) ?[/-] ?(?:\d{2}|20\d{2})|(?:0[1-9]|1[0-2])(?:\d{2})"
    KEEP = (0, 0)

    def mask(self, text: str) -> str:
        return re.sub(r"\d", "*", text)


class IbanRecognizer(Recognizer):
    """International bank account numbers (country format and mod-97, via stdnum.iban)."""

    ENTITY = "IBAN_CODE"
    CATEGORY = FINANCIAL
    COMPLIANCE = (GDPR, PCI)
    DESCRIPTION = "IBAN"
    PATTERNS = (
        Pattern("compact", r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b", 0.3),
        Pattern("grouped", r"\b[A-Z]{2}\d{2}(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?\b", 0.3),
    )
    CONTEXT = ("iban", "bank", "account", "transfer")
    KEYS = r"iban"
    VALUE = r"[A-Za-z]{2}\d{2}[A-Za-z0-9 ]{11,36}"

    def validate(self, text: str) -> bool | None:
        # The mod-97 check; the per-country format database of stdnum is far too slow
        # for the hot path and adds little once mod-97 passed.
        if iban.is_valid(text, check_country=False):
            return True
        # A trailing upper-case word may have been swallowed by the grouped form.
        head, _, _tail = text.rpartition(" ")
        return bool(head and iban.is_valid(head, check_country=False)) or False

    def normalize(self, text: str) -> str:
        return text.replace(" ", "").upper()

    def mask(self, text: str) -> str:
        t = self.normalize(text)
        return t[:2] + "*" * (len(t) - 6) + t[-4:]


class SwiftCodeRecognizer(Recognizer):
    """SWIFT/BIC codes, only as the value of a SWIFT/BIC field (structure via stdnum.bic)."""

    ENTITY = "SWIFT_CODE"
    CATEGORY = FINANCIAL
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "SWIFT/BIC code (key context)"
    KEYS = r"swift|\bbic\b|bic_?code|_bic\b"
    VALUE = r"[A-Za-z]{6}[A-Za-z0-9]{2}(?:[A-Za-z0-9]{3})?"
    KEEP = (4, 0)

    def validate(self, text: str) -> bool | None:
        return bool(bic.is_valid(text.upper()))


class AbaRoutingRecognizer(NumberRecognizer):
    """US ABA routing transit numbers (checksum via stdnum.us.rtn); needs context."""

    ENTITY = "ABA_ROUTING_NUMBER"
    CATEGORY = FINANCIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "US ABA routing number"
    KEEP = (0, 3)
    PATTERNS = (
        Pattern("bare", r"\b[0123678]\d{8}\b", 0.05, validated=0.4),
        Pattern("dashed", r"\b[0123678]\d{3}-\d{4}-\d\b", 0.1, validated=0.45),
    )
    CONTEXT = ("routing", "aba", "rtn", "transit", "bank")
    KEYS = r"routing|\baba\b|\brtn\b|aba_?(?:no|number)"
    VALUE = r"\d{4}-?\d{4}-?\d"

    def validate(self, text: str) -> bool | None:
        return bool(rtn.is_valid(digits(text)))


class UsBankNumberRecognizer(NumberRecognizer):
    """Bank account numbers, only as the value of an account-number field."""

    ENTITY = "US_BANK_NUMBER"
    CATEGORY = FINANCIAL
    COMPLIANCE = (PCI, GDPR)
    DESCRIPTION = "bank account number (key context)"
    KEEP = (0, 4)
    KEYS = r"(?:bank|checking|savings)_?(?:account|acct)|account_?(?:no|num|number)|acct_?(?:no|num|number)?\b|\bacct\b"
    NOT_KEYS = r"iban|routing|user|service|email|name|id$|_id\b|type|status|holder"
    VALUE = r"\d{6,17}"


class CryptoRecognizer(Recognizer):
    """Crypto wallet addresses: Bitcoin (base58check/bech32 via stdnum.bitcoin) and Ethereum (EIP-55)."""

    ENTITY = "CRYPTO"
    CATEGORY = FINANCIAL
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "crypto wallet address"
    PATTERNS = (
        Pattern("btc", r"\b(?:[13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[ac-hj-np-z02-9]{11,71})\b", 0.3),
        # validated: a mixed-case address whose EIP-55 checksum holds.
        Pattern("eth", r"\b0x[0-9a-fA-F]{40}\b", 0.6, validated=0.95),
    )
    CONTEXT = ("wallet", "bitcoin", "btc", "eth", "ethereum", "crypto", "address")

    def validate(self, text: str) -> bool | None:
        if text.startswith("0x"):
            return eip55_checksum_ok(text[2:])
        return bool(bitcoin.is_valid(text))

    def mask(self, text: str) -> str:
        return mask_keep(text, 4, 4)


def eip55_checksum_ok(hexaddr: str) -> bool | None:
    """EIP-55 check of a 40-hex-digit Ethereum address (without ``0x``).

    An all-lower or all-upper address carries no checksum (``None``); in a mixed-case
    one each letter is upper-case exactly when the matching nibble of the Keccak-256
    of the lower-case address is 8 or more.
    """
    if hexaddr.islower() or hexaddr.isupper() or not any(c.isalpha() for c in hexaddr):
        return None
    digest = keccak.new(digest_bits=256, data=hexaddr.lower().encode("ascii")).hexdigest()
    return all(
        c.isdigit() or c.isupper() == (int(h, 16) >= 8) for c, h in zip(hexaddr, digest, strict=False)
    )
