"""Personal data: email, phone, passport, driving licence, date of birth, street address."""

from __future__ import annotations

import datetime as _dt
import re

import phonenumbers

from enrichers.sensitive.recognizer import CCPA, GDPR, Pattern, Recognizer, digits


class EmailRecognizer(Recognizer):
    """Email addresses, also URL-encoded (``%40``) inside query strings."""

    ENTITY = "EMAIL_ADDRESS"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "email address"
    PATTERNS = (
        # Compiled with re.UNICODE (not ASCII like the other patterns): local parts and
        # domain labels may hold any letter (``jürgen.müller@bücher.de``, RFC 6531/IDN).
        # ``[^\W_]`` is a letter or digit, ``\w`` adds "_". On ASCII text it is the same
        # regex as ``[A-Za-z0-9]``. The prefilter takes any non-ASCII character
        # (``[^\x00-\x7f]``: a UTF-8 byte for hyperscan, a code point for re2) where a
        # letter may be.
        Pattern(
            "email",
            r"\b[^\W_][\w.%+-]{0,63}(?:@|%40)"
            r"(?:[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?\.)+[^\W\d_]{2,24}\b",
            0.5,
            validated=0.95,
            prefilter=r"(?:[A-Za-z0-9]|[^\x00-\x7f])(?:@|%40)(?:[A-Za-z0-9-]|[^\x00-\x7f])+\."
            r"(?:[A-Za-z0-9]|[^\x00-\x7f])",
            flags=re.UNICODE,
        ),
    )
    CONTEXT = ("email", "mail", "e-mail", "contact", "user")

    _FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "js", "css", "webp", "ico"})

    def validate(self, text: str) -> bool | None:
        local, _, domain = text.replace("%40", "@").rpartition("@")
        tld = domain.rsplit(".", 1)[-1].lower()
        if tld in self._FILE_TLDS or not local or local.startswith("%"):
            return False
        return True

    def normalize(self, text: str) -> str:
        return text.replace("%40", "@").strip().lower()

    def mask(self, text: str) -> str:
        t = text.replace("%40", "@")
        local, _, domain = t.rpartition("@")
        return f"{local[:1]}***@{domain}"


class PhoneRecognizer(Recognizer):
    """Phone numbers in international (``+44 20 7946 0958``) and national formats.

    Validated with ``phonenumbers``: international numbers by their own country
    code, national ones as US numbers, or in the other common regions when a
    context word (``phone``, ``tel``, ``mobile``) is present.
    """

    ENTITY = "PHONE_NUMBER"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "phone number"
    PATTERNS = (
        Pattern(
            "intl",
            r"(?:\+|\b00)[1-9]\d{0,2}[\s.-]?(?:\(0?\d{1,4}\)[\s.-]?)?\d{1,5}(?:[\s.-]?\d{1,5}){1,5}\b",
            0.4,
            validated=0.85,
            prefilter=r"(?:\+|\b00)[1-9]\d{0,2}[\s.-]?(?:\(0?\d{1,4}\)[\s.-]?)?\d[\s.-]?\d",
        ),
        Pattern(
            "us",
            r"(?:\(\d{3}\)\s?|\b\d{3}[-.\s])\d{3}[-.\s]\d{4}(?:\s?(?:x|ext\.?)\s?\d{1,5})?\b",
            0.3,
            validated=0.75,
        ),
        Pattern(
            "national",
            # Subscriber groups of up to 8 digits (``030 12345678``); phonenumbers decides.
            r"(?:\(\d{2,5}\)\s?|\b\d{2,5}[\s.-])\d{2,8}(?:[\s.-]\d{2,8}){0,3}\b",
            0.05,
            validated=0.4,
            # The first group of digits ends at a boundary in every match: one end per start.
            prefilter=r"(?:\(\d{2,5}\)\s?|\b\d{2,5}[\s.-])\d{2,8}\b",
        ),
        Pattern("bare", r"\b\d{10,11}\b", 0.05, validated=0.3),
    )
    CONTEXT = ("phone", "tel", "telephone", "mobile", "cell", "fax", "msisdn", "call", "sms")
    KEEP = (0, 2)
    REGIONS = ("US", "GB", "DE", "FR", "IN", "BR", "ES", "IT", "CA", "AU", "NL", "JP")

    #: Set per call by the scanner: whether a context word is present.
    def validate(self, text: str) -> bool | None:
        return self.validate_in(text, context=False)

    def validate_in(self, text: str, *, context: bool) -> bool | None:
        t = text.strip()
        n = sum(c.isdigit() for c in t)
        if n < 7 or n > 15:
            return False
        if t.startswith("00"):
            t = "+" + t[2:]
        regions: tuple[str | None, ...]
        if t.startswith("+"):
            regions = (None,)
        elif context:
            regions = self.REGIONS
        else:
            regions = ("US",)
        for region in regions:
            try:
                num = phonenumbers.parse(t, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(num):
                return True
        return False

    def normalize(self, text: str) -> str:
        return digits(text)

    def mask(self, text: str) -> str:
        d = digits(text)
        return ("+" if text.strip().startswith("+") else "") + "*" * max(0, len(d) - 2) + d[-2:]


class PassportRecognizer(Recognizer):
    """Passport numbers, only as the value of a passport field."""

    ENTITY = "PASSPORT"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "passport number (key context)"
    KEYS = r"passport"
    VALUE = r"(?=[A-Z0-9]*\d)[A-Z0-9]{6,10}"
    KEEP = (0, 2)


class DriverLicenseRecognizer(Recognizer):
    """Driving-licence numbers, only as the value of a licence field."""

    ENTITY = "DRIVER_LICENSE"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "driving licence number (key context)"
    KEYS = r"driv\w*[_.\s-]?licen[cs]e|driving|\bdl[_-]?(?:no|num|number|id)\b|dlnumber"
    VALUE = r"(?=[A-Z0-9 -]*\d)[A-Z0-9][A-Z0-9 -]{4,18}[A-Z0-9]"
    KEEP = (0, 2)


class DateOfBirthRecognizer(Recognizer):
    """Dates of birth, only as the value of a birth-date field; the date must parse."""

    ENTITY = "DATE_OF_BIRTH"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "date of birth (key context)"
    KEYS = r"\bdob\b|birth|bday|geburtsdatum|fecha.?nac"
    VALUE = (
        r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:T00:00:00(?:\.0+)?Z?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
        r"|\d{1,2}\s+[A-Za-z]{3,9}\.?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2},?\s+\d{4}"
    )
    KEEP = (0, 0)
    PURE = False  # (today's year bounds it)

    def validate(self, text: str) -> bool | None:
        years = [int(x) for x in re.findall(r"\d{4}", text)]
        if years:
            return 1900 <= years[0] <= _dt.date.today().year
        return True

    def mask(self, text: str) -> str:
        return re.sub(r"\d", "*", text)


class StreetAddressRecognizer(Recognizer):
    """Street addresses, only as the value of an address field (not network addresses)."""

    ENTITY = "STREET_ADDRESS"
    COMPLIANCE = (GDPR, CCPA)
    DESCRIPTION = "street address (key context)"
    KEYS = r"address|street|\baddr\b|adresse|direccion|(?:shipping|billing|home|mailing)_?addr"
    NOT_KEYS = (
        r"server|client|peer|host|\bip\b|ip_|_ip|mac|email|mail|\bnet|sock|url|remote|local"
        r"|wallet|crypto|btc|eth"
    )
    VALUE = r"(?=.*\d)(?=.*[A-Za-z]{3}).{6,200}"
    KEEP = (0, 0)

    def validate(self, text: str) -> bool | None:
        if "://" in text or "@" in text or "?" in text or "=" in text or re.fullmatch(r"[0-9a-fA-F:.]+", text):
            return False
        return any(sep in text.strip() for sep in (" ", "+", "%20")) or None

    def mask(self, text: str) -> str:
        words = text.split()
        return " ".join(w[:1] + "*" * (len(w) - 1) for w in words)
