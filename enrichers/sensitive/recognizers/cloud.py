"""Cloud credentials: AWS access keys, GCP API and service-account keys, Azure storage
connection strings and SAS tokens."""

from __future__ import annotations

from enrichers.sensitive.recognizer import (
    CREDENTIAL,
    Pattern,
    Recognizer,
    mask_secret,
    shannon_entropy,
)


class AwsAccessKeyIdRecognizer(Recognizer):
    """AWS access key ids (``AKIA``/``ASIA``... followed by 16 base-32 characters)."""

    ENTITY = "AWS_ACCESS_KEY_ID"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "AWS access key id"
    PATTERNS = (Pattern("akid", r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|A3T[A-Z0-9])[A-Z2-7]{16}\b", 0.9),)
    CONTEXT = ("aws", "access", "key")

    def validate(self, text: str) -> bool | None:
        return None if "EXAMPLE" not in text else False

    def mask(self, text: str) -> str:
        return text[:4] + "*" * 12 + text[-4:]


class AwsSecretAccessKeyRecognizer(Recognizer):
    """AWS secret access keys (40 base-64 characters), in key context."""

    ENTITY = "AWS_SECRET_ACCESS_KEY"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "AWS secret access key (key context)"
    KEYS = r"aws_?secret|secret_?access_?key|secretaccesskey"
    VALUE = r"[A-Za-z0-9/+=]{40}"
    KEY_SCORE = 0.95

    def validate(self, text: str) -> bool | None:
        return shannon_entropy(text) >= 3.5 and "EXAMPLEKEY" not in text

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)


class GcpApiKeyRecognizer(Recognizer):
    """Google Cloud API keys (``AIza`` + 35 characters)."""

    ENTITY = "GCP_API_KEY"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "Google Cloud API key"
    PATTERNS = (Pattern("aiza", r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", 0.95, prefilter=r"AIza[0-9A-Za-z_-]{35}"),)

    def mask(self, text: str) -> str:
        return mask_secret(text, 4)


class GcpServiceAccountKeyRecognizer(Recognizer):
    """Google service-account key files (their ``private_key_id``)."""

    ENTITY = "GCP_SERVICE_ACCOUNT_KEY"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "Google service-account key"
    PATTERNS = (
        Pattern(
            "key_id",
            r"\"private_key_id\"\s*:\s*\"([a-f0-9]{40})\"",
            0.6,
            validated=0.95,
            group=1,
        ),
    )
    CONTEXT = ("service_account", "private_key", "client_email")

    def validate(self, text: str) -> bool | None:
        return None

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)


class AzureConnectionStringRecognizer(Recognizer):
    """Azure storage / Service Bus connection strings (their ``AccountKey``/``SharedAccessKey``)."""

    ENTITY = "AZURE_CONNECTION_STRING"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "Azure connection string key"
    PATTERNS = (
        Pattern(
            "key",
            r"\b(?:AccountKey|SharedAccessKey)=([A-Za-z0-9+/]{20,}={0,2})",
            0.9,
            group=1,
            prefilter=r"\b(?:AccountKey|SharedAccessKey)=[A-Za-z0-9+/]{20}",
        ),
    )

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)


class AzureSasTokenRecognizer(Recognizer):
    """Azure shared-access-signature tokens (the ``sig=`` of a URL carrying ``sv=``)."""

    ENTITY = "AZURE_SAS_TOKEN"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "Azure SAS token signature"
    PATTERNS = (
        Pattern("sv_first", r"\bsv=\d{4}-\d{2}-\d{2}&[^\s\"']*?\bsig=([A-Za-z0-9%/+]{30,}(?:%3D|=)*)", 0.9, group=1,
                prefilter=r"\bsv=\d{4}-\d{2}-\d{2}&[^\s\"']*?\bsig=[A-Za-z0-9%/+]{30}"),
        Pattern("sig_first", r"\bsig=([A-Za-z0-9%/+]{30,}(?:%3D|=)*)&[^\s\"']*?\bsv=\d{4}-\d{2}-\d{2}", 0.9, group=1),
    )

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)
