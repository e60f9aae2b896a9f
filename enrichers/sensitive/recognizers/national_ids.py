"""Non-US national identifiers: UK NINO, Canada SIN, India Aadhaar and PAN, Brazil
CPF/CNPJ, Spain DNI (NIF) and NIE. Checksums come from python-stdnum."""

from __future__ import annotations

from stdnum.br import cnpj, cpf
from stdnum.ca import sin
from stdnum.es import dni, nie
from stdnum.in_ import aadhaar, pan

from enrichers.sensitive.recognizer import (
    GDPR,
    NumberRecognizer,
    Pattern,
    Recognizer,
    digits,
    in_dash_chain,
    mask_keep,
)


class UkNinoRecognizer(Recognizer):
    """UK National Insurance numbers (no checksum exists; invalid prefixes rejected)."""

    ENTITY = "UK_NINO"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "UK national insurance number"
    PATTERNS = (
        Pattern(
            "nino",
            r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
            0.5,
            validated=0.85,
        ),
    )
    CONTEXT = ("nino", "national", "insurance", "ni")
    KEYS = r"nino|national_?insurance|\bni_?number"
    VALUE = r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]"
    _BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})

    def validate(self, text: str) -> bool | None:
        return text[:2].upper() not in self._BAD_PREFIXES

    def normalize(self, text: str) -> str:
        return text.replace(" ", "").upper()

    def mask(self, text: str) -> str:
        t = self.normalize(text)
        return "*" * 6 + t[6:]


class CaSinRecognizer(NumberRecognizer):
    """Canadian Social Insurance numbers (Luhn, via stdnum.ca.sin)."""

    ENTITY = "CA_SIN"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "Canada social insurance number"
    KEEP = (0, 3)
    PATTERNS = (
        Pattern("grouped", r"\b[0-79]\d{2}[- ]\d{3}[- ]\d{3}\b", 0.1, validated=0.45),
        Pattern("bare", r"\b[0-79]\d{8}\b", 0.05, validated=0.4),
    )
    CONTEXT = ("sin", "social", "insurance", "canada", "nas")
    KEYS = r"\bsin\b|sin$|_sin\b|social_?insurance"
    VALUE = r"\d{3}[- ]?\d{3}[- ]?\d{3}"

    def validate(self, text: str) -> bool | None:
        return bool(sin.is_valid(digits(text)))


class InAadhaarRecognizer(NumberRecognizer):
    """India Aadhaar numbers (12 digits, Verhoeff checksum, via stdnum.in_.aadhaar)."""

    ENTITY = "IN_AADHAAR"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "India Aadhaar number"
    KEEP = (0, 4)
    PATTERNS = (
        Pattern("grouped", r"\b[2-9]\d{3}[- ]\d{4}[- ]\d{4}\b", 0.3, validated=0.75),
        Pattern("bare", r"\b[2-9]\d{11}\b", 0.05, validated=0.4),
    )
    CONTEXT = ("aadhaar", "aadhar", "uid", "uidai")
    REJECT_AROUND = True

    def rejected_by_surroundings(self, text: str, start: int, end: int) -> bool:
        return in_dash_chain(text, start, end)
    KEYS = r"aadh?aar|uidai"
    VALUE = r"\d{4}[- ]?\d{4}[- ]?\d{4}"

    def validate(self, text: str) -> bool | None:
        return bool(aadhaar.is_valid(digits(text)))


class InPanRecognizer(Recognizer):
    """India Permanent Account Numbers (structure checked by stdnum.in_.pan)."""

    ENTITY = "IN_PAN"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "India permanent account number"
    PATTERNS = (Pattern("pan", r"\b[A-Z]{3}[ABCFGHLJPTK][A-Z]\d{4}[A-Z]\b", 0.5, validated=0.85),)
    CONTEXT = ("pan", "permanent", "income", "tax")
    KEYS = r"\bpan\b|pan_?(?:no|number|card)|_pan\b"
    VALUE = r"[A-Za-z]{5}\d{4}[A-Za-z]"

    def validate(self, text: str) -> bool | None:
        return bool(pan.is_valid(text.upper()))

    def mask(self, text: str) -> str:
        return mask_keep(text, 0, 2)


class BrCpfRecognizer(NumberRecognizer):
    """Brazil CPF (individual taxpayer number, two check digits, via stdnum.br.cpf)."""

    ENTITY = "BR_CPF"
    COMPLIANCE = (GDPR, "LGPD")
    DESCRIPTION = "Brazil CPF"
    KEEP = (0, 2)
    PATTERNS = (
        Pattern("formatted", r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b", 0.5, validated=1.0),
        Pattern("bare", r"\b\d{11}\b", 0.05, validated=0.45),
    )
    CONTEXT = ("cpf", "contribuinte")
    KEYS = r"\bcpf\b|cpf$|_cpf"
    VALUE = r"\d{3}\.?\d{3}\.?\d{3}-?\d{2}"

    def validate(self, text: str) -> bool | None:
        return bool(cpf.is_valid(digits(text)))


class BrCnpjRecognizer(NumberRecognizer):
    """Brazil CNPJ (company number, two check digits, via stdnum.br.cnpj)."""

    ENTITY = "BR_CNPJ"
    COMPLIANCE = ("LGPD",)
    DESCRIPTION = "Brazil CNPJ"
    KEEP = (0, 2)
    PATTERNS = (
        Pattern("formatted", r"\b\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}\b", 0.5, validated=1.0),
        Pattern("bare", r"\b\d{14}\b", 0.05, validated=0.45),
    )
    CONTEXT = ("cnpj", "empresa")
    KEYS = r"cnpj"
    VALUE = r"\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2}"

    def validate(self, text: str) -> bool | None:
        return bool(cnpj.is_valid(digits(text)))


class EsNifRecognizer(Recognizer):
    """Spain DNI/NIF (8 digits and a check letter, via stdnum.es.dni)."""

    ENTITY = "ES_NIF"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "Spain DNI/NIF"
    PATTERNS = (Pattern("dni", r"\b\d{8}-?[A-Z]\b", 0.4, validated=0.85),)
    CONTEXT = ("dni", "nif", "documento")
    KEYS = r"\bdni\b|\bnif\b|dni$|nif$"
    VALUE = r"\d{8}-?[A-Za-z]"

    def validate(self, text: str) -> bool | None:
        return bool(dni.is_valid(text.upper()))

    def normalize(self, text: str) -> str:
        return text.replace("-", "").upper()

    def mask(self, text: str) -> str:
        return mask_keep(self.normalize(text), 0, 1)


class EsNieRecognizer(Recognizer):
    """Spain NIE (foreigner number, X/Y/Z prefix and check letter, via stdnum.es.nie)."""

    ENTITY = "ES_NIE"
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "Spain NIE"
    PATTERNS = (Pattern("nie", r"\b[XYZ]-?\d{7}-?[A-Z]\b", 0.5, validated=0.9),)
    CONTEXT = ("nie", "extranjero")
    KEYS = r"\bnie\b|nie$"
    VALUE = r"[XYZxyz]-?\d{7}-?[A-Za-z]"

    def validate(self, text: str) -> bool | None:
        return bool(nie.is_valid(text.upper()))

    def normalize(self, text: str) -> str:
        return text.replace("-", "").upper()

    def mask(self, text: str) -> str:
        return mask_keep(self.normalize(text), 1, 1)
