"""US national identifiers: SSN and ITIN (validated with python-stdnum)."""

from __future__ import annotations

from stdnum.us import itin, ssn

from enrichers.sensitive.recognizer import (
    CCPA,
    GDPR,
    NumberRecognizer,
    Pattern,
    Recognizer,
    digits,
)


class UsSsnRecognizer(Recognizer):
    """US Social Security numbers; invalid areas (000, 666, 9xx), groups and serials rejected."""

    ENTITY = "US_SSN"
    COMPLIANCE = (CCPA, GDPR)
    DESCRIPTION = "US social security number"
    PATTERNS = (
        Pattern("dashed", r"\b\d{3}-\d{2}-\d{4}\b", 0.5, validated=0.85),
        Pattern("spaced", r"\b\d{3} \d{2} \d{4}\b", 0.3, validated=0.6),
        Pattern("bare", r"\b\d{9}\b", 0.05, validated=0.4),
    )
    CONTEXT = ("ssn", "social", "security", "ss#", "ssid", "taxpayer")
    KEYS = r"\bssn\b|ssn$|_ssn|social_?security"
    VALUE = r"\d{3}[- ]?\d{2}[- ]?\d{4}"

    def validate(self, text: str) -> bool | None:
        return bool(ssn.is_valid(digits(text)))

    def normalize(self, text: str) -> str:
        return digits(text)

    def mask(self, text: str) -> str:
        return "***-**-" + digits(text)[-4:]


class UsItinRecognizer(NumberRecognizer):
    """US Individual Taxpayer Identification Numbers (9xx-[5-9]x-xxxx)."""

    ENTITY = "US_ITIN"
    COMPLIANCE = (CCPA, GDPR)
    DESCRIPTION = "US individual taxpayer identification number"
    KEEP = (0, 4)
    PATTERNS = (
        Pattern("dashed", r"\b9\d{2}[- ](?:5\d|6[0-5]|7\d|8[0-8]|9[0-2]|9[4-9])[- ]\d{4}\b", 0.5, 0.85),
        Pattern("bare", r"\b9\d{2}(?:5\d|6[0-5]|7\d|8[0-8]|9[0-2]|9[4-9])\d{4}\b", 0.05, 0.4),
    )
    CONTEXT = ("itin", "taxpayer", "tax")
    KEYS = r"\bitin\b|itin$|_itin"
    VALUE = r"9\d{2}[- ]?\d{2}[- ]?\d{4}"

    def validate(self, text: str) -> bool | None:
        return bool(itin.is_valid(digits(text)))
