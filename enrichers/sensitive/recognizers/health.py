"""Health data (HIPAA): US NPI, DEA numbers, Medicare MBI, medical record numbers and
ICD-10 codes in key context."""

from __future__ import annotations

from stdnum import luhn

from enrichers.sensitive.recognizer import HEALTH, HIPAA, Pattern, Recognizer, mask_keep


class UsNpiRecognizer(Recognizer):
    """US National Provider Identifiers: Luhn over the number prefixed with 80840."""

    ENTITY = "US_NPI"
    CATEGORY = HEALTH
    COMPLIANCE = (HIPAA,)
    DESCRIPTION = "US national provider identifier"
    PATTERNS = (Pattern("npi", r"\b[12]\d{9}\b", 0.1, validated=0.45),)
    CONTEXT = ("npi", "provider", "physician", "prescriber", "doctor")
    KEYS = r"\bnpi\b|npi$|_npi|provider_?id"
    VALUE = r"[12]\d{9}"

    def validate(self, text: str) -> bool | None:
        return bool(luhn.is_valid("80840" + text))

    def mask(self, text: str) -> str:
        return mask_keep(text, 0, 3)


class DeaNumberRecognizer(Recognizer):
    """US DEA registration numbers (Presidio's MEDICAL_LICENSE), with the DEA checksum.

    No maintained library implements the DEA check digit: (d1+d3+d5) + 2*(d2+d4+d6)
    has the check digit as its last digit.
    """

    ENTITY = "MEDICAL_LICENSE"
    CATEGORY = HEALTH
    COMPLIANCE = (HIPAA,)
    DESCRIPTION = "DEA registration number"
    PATTERNS = (Pattern("dea", r"\b[ABCDEFGHJKLMPRSTUXabcdefghjklmprstux][A-Za-z9]\d{7}\b", 0.4, 1.0),)
    CONTEXT = ("dea", "medical", "license", "prescriber", "registration")
    KEYS = r"\bdea\b|dea_|medical_?licen[cs]e"
    VALUE = r"[A-Za-z][A-Za-z9]\d{7}"

    def validate(self, text: str) -> bool | None:
        d = [int(c) for c in text[2:]]
        total = d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])
        return total % 10 == d[6]

    def mask(self, text: str) -> str:
        return mask_keep(text, 2, 0)


class UsMbiRecognizer(Recognizer):
    """Medicare Beneficiary Identifiers (11 characters with a fixed letter/digit layout)."""

    ENTITY = "US_MBI"
    CATEGORY = HEALTH
    COMPLIANCE = (HIPAA,)
    DESCRIPTION = "US Medicare beneficiary identifier"
    PATTERNS = (
        Pattern(
            "mbi",
            r"\b[1-9][AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d-?[AC-HJKMNP-RT-Y][AC-HJKMNP-RT-Y0-9]\d"
            r"-?[AC-HJKMNP-RT-Y]{2}\d{2}\b",
            0.5,
            validated=0.85,
        ),
    )
    CONTEXT = ("mbi", "medicare", "beneficiary")
    KEYS = r"\bmbi\b|medicare"
    VALUE = r"[1-9][A-Za-z][A-Za-z0-9]\d-?[A-Za-z][A-Za-z0-9]\d-?[A-Za-z]{2}\d{2}"

    def validate(self, text: str) -> bool | None:
        t = text.replace("-", "")
        # Letters S, L, O, I, B and Z are never used (already excluded by the pattern).
        return len(t) == 11 and not any(c in "SLOIBZ" for c in t.upper())

    def mask(self, text: str) -> str:
        return mask_keep(text, 0, 2)


class MedicalRecordNumberRecognizer(Recognizer):
    """Medical record numbers, only as the value of an MRN / patient-id field."""

    ENTITY = "MEDICAL_RECORD_NUMBER"
    CATEGORY = HEALTH
    COMPLIANCE = (HIPAA,)
    DESCRIPTION = "medical record number (key context)"
    KEYS = r"\bmrn\b|mrn$|_mrn|medical_?record|patient_?(?:id|no|number)|chart_?(?:no|number)"
    VALUE = r"(?=[A-Za-z0-9-]*\d)[A-Za-z0-9-]{4,24}"
    KEEP = (0, 2)


class Icd10Recognizer(Recognizer):
    """ICD-10 diagnosis codes, only as the value of a diagnosis field."""

    ENTITY = "ICD10_CODE"
    CATEGORY = HEALTH
    COMPLIANCE = (HIPAA,)
    DESCRIPTION = "ICD-10 diagnosis code (key context)"
    KEYS = r"icd|diagnos|\bdx\b|dx_?code"
    VALUE = r"[A-TV-Za-tv-z]\d[0-9AB](?:\.[0-9A-Za-z]{1,4})?"
    KEEP = (1, 0)
