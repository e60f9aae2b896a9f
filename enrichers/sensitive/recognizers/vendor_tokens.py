"""SaaS tokens with a recognisable prefix: GitHub, GitLab, Slack, Stripe, Twilio,
SendGrid and npm. GitHub and npm tokens carry a CRC-32 checksum that confirms them."""

from __future__ import annotations

import zlib

from enrichers.sensitive.recognizer import CREDENTIAL, Pattern, Recognizer, mask_secret

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62(n: int, width: int = 6) -> str:
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = _B62[r] + out
    return out.rjust(width, "0")


def crc32_token_ok(body: str) -> bool:
    """GitHub-style token checksum: last 6 characters are base62(crc32(the 30 before))."""
    return base62(zlib.crc32(body[:-6].encode())) == body[-6:]


class _PrefixedToken(Recognizer):
    CATEGORY = CREDENTIAL
    PREFIX_LEN = 4

    def mask(self, text: str) -> str:
        return mask_secret(text, self.PREFIX_LEN)


class GithubTokenRecognizer(_PrefixedToken):
    """GitHub personal, OAuth, app and refresh tokens (``ghp_``, ``gho_``, ``github_pat_``...)."""

    ENTITY = "GITHUB_TOKEN"
    DESCRIPTION = "GitHub token"
    PATTERNS = (
        Pattern("classic", r"\bgh[pousr]_[A-Za-z0-9]{36}\b", 0.9),
        Pattern("fine_grained", r"\bgithub_pat_[A-Za-z0-9_]{82}\b", 0.95),
    )

    def validate(self, text: str) -> bool | None:
        if text.startswith("gh") and crc32_token_ok(text[4:]):
            return True
        return None


class GitlabTokenRecognizer(_PrefixedToken):
    """GitLab personal / project / deploy tokens (``glpat-``, ``gldt-``...)."""

    ENTITY = "GITLAB_TOKEN"
    DESCRIPTION = "GitLab token"
    PATTERNS = (Pattern("pat", r"\bgl(?:pat|dt|ptt|rt|cbt|oas)-[A-Za-z0-9_-]{20,}", 0.95),)
    PREFIX_LEN = 6


class SlackTokenRecognizer(_PrefixedToken):
    """Slack bot/user/app tokens and incoming-webhook URLs."""

    ENTITY = "SLACK_TOKEN"
    DESCRIPTION = "Slack token or webhook"
    PATTERNS = (
        Pattern("token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", 0.95, prefilter=r"\bxox[abposr]-[A-Za-z0-9-]{10}"),
        Pattern("webhook", r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+", 0.95),
    )
    PREFIX_LEN = 5


class StripeApiKeyRecognizer(_PrefixedToken):
    """Stripe secret and restricted keys (``sk_live_``, ``rk_test_``...)."""

    ENTITY = "STRIPE_API_KEY"
    DESCRIPTION = "Stripe secret key"
    PATTERNS = (Pattern("key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0.95),)
    PREFIX_LEN = 8


class TwilioApiKeyRecognizer(_PrefixedToken):
    """Twilio API key SIDs (``SK`` + 32 hex characters)."""

    ENTITY = "TWILIO_API_KEY"
    DESCRIPTION = "Twilio API key"
    PATTERNS = (Pattern("sk", r"\bSK[0-9a-fA-F]{32}\b", 0.8),)
    CONTEXT = ("twilio",)
    PREFIX_LEN = 2


class SendgridApiKeyRecognizer(_PrefixedToken):
    """SendGrid API keys (``SG.<22>.<43>``)."""

    ENTITY = "SENDGRID_API_KEY"
    DESCRIPTION = "SendGrid API key"
    PATTERNS = (Pattern("key", r"\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])", 0.95,
                        prefilter=r"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}"),)
    PREFIX_LEN = 3


class NpmTokenRecognizer(_PrefixedToken):
    """npm access tokens (``npm_`` + 36 characters, CRC-32 checksummed like GitHub's)."""

    ENTITY = "NPM_TOKEN"
    DESCRIPTION = "npm access token"
    PATTERNS = (Pattern("token", r"\bnpm_[A-Za-z0-9]{36}\b", 0.9),)

    def validate(self, text: str) -> bool | None:
        return True if crc32_token_ok(text[4:]) else None
