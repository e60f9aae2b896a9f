"""Credentials: JWT, HTTP Basic, bearer tokens, passwords in key context, PEM private
keys, connection strings and URLs with passwords, generic high-entropy secrets."""

from __future__ import annotations

import base64
import binascii
import re

import jwt

from enrichers.sensitive.recognizer import (
    CREDENTIAL,
    PCI,
    Pattern,
    Recognizer,
    mask_secret,
    shannon_entropy,
)


class JwtRecognizer(Recognizer):
    """JSON Web Tokens: header and claims decoded (never verified) with PyJWT."""

    ENTITY = "JWT"
    CATEGORY = CREDENTIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "JSON web token"
    PATTERNS = (
        Pattern("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", 0.6,
                prefilter=r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8}"),
    )
    CONTEXT = ("token", "jwt", "bearer", "authorization")

    def __init__(self) -> None:
        super().__init__()
        # validate() and mask() decode the same token, possibly with other tokens of a
        # batch in between: remember the last few.
        self._seen: dict[str, tuple[dict, dict] | None] = {}

    def _parts(self, text: str) -> tuple[dict, dict] | None:
        seen = self._seen
        if text in seen:
            return seen[text]
        parts: tuple[dict, dict] | None
        try:
            # One parse of header and claims (jwt.decode would parse the header again).
            got = jwt.api_jwt.decode_complete(text, options={"verify_signature": False})
            parts = (got["header"], got["payload"])
        except jwt.PyJWTError:
            parts = None
        if len(seen) >= 1024:
            seen.clear()
        seen[text] = parts
        return parts

    def validate(self, text: str) -> bool | None:
        return self._parts(text) is not None

    def mask(self, text: str) -> str:
        parts = self._parts(text)
        if parts is None:
            return mask_secret(text, 3)
        header, claims = parts
        desc = [f"alg={header.get('alg', '?')}"]
        for claim in ("sub", "iss", "aud"):
            if claim in claims:
                desc.append(f"{claim}=…")
        return f"eyJ…[JWT {' '.join(desc)}]"


class HttpBasicAuthRecognizer(Recognizer):
    """HTTP Basic credentials (``Basic base64(user:password)``)."""

    ENTITY = "HTTP_BASIC_AUTH"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "HTTP Basic credentials"
    PATTERNS = (
        Pattern("basic", r"\b[Bb]asic\s+([A-Za-z0-9+/]{8,}={0,2})", 0.4, group=1,
                prefilter=r"\b[Bb]asic\s+[A-Za-z0-9+/]{8}"),
    )
    CONTEXT = ("authorization", "auth")

    def validate(self, text: str) -> bool | None:
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            s = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        return ":" in s and s.isprintable()

    def mask(self, text: str) -> str:
        return "[basic user:***]"


class BearerTokenRecognizer(Recognizer):
    """Bearer tokens in ``Authorization`` headers and logs."""

    ENTITY = "BEARER_TOKEN"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "bearer token"
    PATTERNS = (
        Pattern("bearer", r"\b[Bb]earer\s+([A-Za-z0-9._~+/-]{16,}=*)", 0.9, group=1,
                prefilter=r"\b[Bb]earer\s+[A-Za-z0-9._~+/-]{16}"),
    )

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)


class PasswordRecognizer(Recognizer):
    """Passwords and PINs as the value of a password field, query parameter or form field."""

    ENTITY = "PASSWORD"
    CATEGORY = CREDENTIAL
    COMPLIANCE = (PCI,)
    DESCRIPTION = "password (key context)"
    KEYS = r"passw|passwd|\bpwd\b|pwd$|_pwd|passphrase|\bpass\b|_pass$|\bpin\b|_pin$|pincode"
    NOT_KEYS = r"passport|bypass|compass|passenger|passive|pass_?through|pinned|pinterest|spinner"
    VALUE = r"[^\s]{1,200}"
    #: A quoted or JSON string may be a pass phrase: inner spaces, no line breaks.
    QUOTED_VALUE = r"[^\s](?:[^\r\n]{0,198}[^\s])?"
    KEY_SCORE = 0.9
    _PLACEHOLDERS = frozenset(
        {"***", "****", "*****", "******", "********", "null", "none", "true", "false",
         "redacted", "[redacted]", "<redacted>", "xxx", "xxxx", "undefined", "?", "changeme_in_env"}
    )

    def validate(self, text: str) -> bool | None:
        t = text.strip().strip("\"'").lower()
        if not t or t in self._PLACEHOLDERS or set(t) <= {"*", "x", "."}:
            return False
        if t.startswith(("${", "{{", "%(", "<")):
            return False
        return None

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)


class PrivateKeyRecognizer(Recognizer):
    """PEM private keys (RSA, EC, DSA, OpenSSH, PKCS#8, PGP)."""

    ENTITY = "PRIVATE_KEY"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "private key (PEM)"
    PATTERNS = (
        Pattern(
            "pem",
            r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----"
            r"(?:[\s\S]{0,12000}?-----END [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----)?",
            0.95,
            prefilter=r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY",
        ),
    )

    def mask(self, text: str) -> str:
        m = re.match(r"-----BEGIN ([A-Z ]*)-----", text)
        kind = m.group(1) if m else "PRIVATE KEY"
        return f"-----BEGIN {kind}-----…[{len(text)} chars]"


class DbConnectionStringRecognizer(Recognizer):
    """Database connection strings that carry a password (``postgres://u:PASSWORD@h``)."""

    ENTITY = "DB_CONNECTION_STRING"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "database connection string with password"
    PATTERNS = (
        Pattern(
            "url",
            r"\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver"
            r"|oracle|cockroachdb|clickhouse|jdbc:[a-z]+)://[^\s:/@\"']+:([^\s@/\"']+)@",
            0.9,
            group=1,
        ),
    )
    CONTEXT = ("database", "dsn", "db", "connection")

    def validate(self, text: str) -> bool | None:
        return text not in ("***", "****", "REDACTED", "xxx")  # True: beats the e-mail look-alike

    def mask(self, text: str) -> str:
        return "****"


class UrlCredentialsRecognizer(Recognizer):
    """Passwords in the user-info part of HTTP(S) and FTP URLs (``https://u:PASSWORD@h``)."""

    ENTITY = "URL_CREDENTIALS"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "password in a URL"
    PATTERNS = (
        Pattern("url", r"\b(?:https?|ftps?|sftp|ssh|git)://[^\s:/@\"']+:([^\s@/\"']+)@", 0.9, group=1),
    )

    def validate(self, text: str) -> bool | None:
        return text not in ("***", "****", "REDACTED", "xxx")  # True: beats the e-mail look-alike

    def mask(self, text: str) -> str:
        return "****"


_DIGIT = re.compile(r"[0-9]")


class GenericSecretRecognizer(Recognizer):
    """High-entropy values of secret-looking fields (``api_key``, ``client_secret``, ...)."""

    ENTITY = "GENERIC_SECRET"
    CATEGORY = CREDENTIAL
    DESCRIPTION = "high-entropy secret (key context)"
    KEYS = (
        r"secret|token|api_?key|apikey|access_?key|private_?key|credential|auth|"
        r"signature|session_?(?:id|key|token)|\bsession\b|sessionid|\bsid\b|x-api|\bkey\b|_key$|-key$"
    )
    NOT_KEYS = r"token_?type|expires|_count|length|public|key_?id$|tokens_|\bauthor\b|keyword|monkey|turkey|hockey"
    VALUE = r"[A-Za-z0-9_+/=.:~-]{16,512}"
    SCHEMES = True  # ``"Authorization": "Token abc..."``: the token is the secret
    KEY_SCORE = 0.8

    def validate(self, text: str) -> bool | None:
        # Cheap rejections first (same answers, fewer per-character Python loops): fewer
        # than eight distinct characters cannot reach 3 bits of entropy (at most log2(7));
        # in ASCII text (any VALUE) a case differs from the text exactly when the text
        # has letters of the other case.
        if len(set(text)) < 8:
            return False
        if text.isascii():
            classes = (text != text.upper()) + (text != text.lower()) + (_DIGIT.search(text) is not None)
        else:
            classes = sum(
                (any(c.islower() for c in text), any(c.isupper() for c in text), any(c.isdigit() for c in text))
            )
        if classes < 2:
            return False
        return None if shannon_entropy(text) >= 3.0 else False

    def mask(self, text: str) -> str:
        return mask_secret(text, 0)
