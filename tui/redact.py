"""Last line of defence against raw sensitive values on screen.

The agent masks sensitive values before they reach State, so what the API
returns should already be safe. The TUI still passes every free-text value it
shows from findings and evidence through :func:`safe`, so a value that slipped
through (an older agent, a new rule that forgot to mask) is masked here rather
than shown. Ids (trace, span, finding) are not passed through it.
"""

from __future__ import annotations

import re
from typing import Any

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens: three base64url parts, the first starting {" -> eyJ
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), "eyJ***"),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    # e-mail addresses (keep the domain, it is rarely the secret)
    (re.compile(r"\b[A-Za-z0-9._%+-]+@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b"), r"***@\1"),
    # payment card numbers: 13-19 digits, optionally grouped by spaces or dashes
    (re.compile(r"\b(?:\d[ -]?){12,18}(\d{4})\b"), r"****\1"),
    # US social security numbers
    (re.compile(r"\b\d{3}-\d{2}-(\d{4})\b"), r"***-**-\1"),
    # IBANs
    (re.compile(r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b"), "IBAN***"),
    # long opaque secrets following a key-ish word: api_key=..., password: ...
    (
        re.compile(r"(?i)\b(api[_-]?key|secret|password|passwd|token)(\s*[=:]\s*)[^\s,;\"']{4,}"),
        r"\1\2***",
    ),
)


def safe(value: Any) -> str:
    """``value`` as display text with anything that looks like a raw secret masked."""
    text = value if isinstance(value, str) else str(value)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def safe_tree(value: Any) -> Any:
    """:func:`safe` applied to every string inside nested dicts and lists."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {safe(str(k)): safe_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_tree(v) for v in value]
    return value
