"""The recognizer contract, in the style of Presidio's ``PatternRecognizer``.

A recognizer finds one entity type. It declares, as class constants:

- ``PATTERNS``: regular expressions with a base score, matched anywhere in a text;
- ``CONTEXT``: words that raise the score when they appear in the field name or
  just before the match (``card``, ``ssn``, ...);
- ``KEYS``: a regular expression on field names; the whole value of such a field
  (an attribute, a JSON field, a query parameter, ``key=value`` in text) is
  checked against ``VALUE`` — how "passwords in key context" are found;
- ``validate(text)``: confirms (``True``), rejects (``False``) or leaves the
  base score (``None``), using a library checksum where one exists.

The scanner (:mod:`enrichers.sensitive.scanner`) compiles all patterns into one
prefilter and calls the precise pattern and the validator only on hits.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

#: Detections below this score are not reported.
THRESHOLD = 0.5
#: Added to the score when a context word is found near the match or in its key.
CONTEXT_BOOST = 0.35
#: How far before a match the scanner looks for context words (characters).
CONTEXT_WINDOW = 48
#: Validation results a recognizer remembers (see :meth:`Recognizer.validate_cached`).
VALIDATION_MEMO = 4096
_UNSET = object()

PERSONAL = "personal"
FINANCIAL = "financial"
HEALTH = "health"
CREDENTIAL = "credential"
NETWORK = "network"

GDPR = "GDPR"
PCI = "PCI DSS"
HIPAA = "HIPAA"
CCPA = "CCPA"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One regular expression of a recognizer.

    ``score`` is the score of an unvalidated match, ``validated`` the score once
    :meth:`Recognizer.validate` confirmed it. ``group`` selects the part of the
    match that is the sensitive value (``Bearer (token)``). ``prefilter`` replaces
    the regex in the multi-pattern prefilter when the regex is too heavy for it.
    A pattern whose ``score`` plus context boost is the only way over the
    threshold only runs when a context word is present (``needs_context``).
    """

    name: str
    regex: str
    score: float
    validated: float = 1.0
    group: int = 0
    prefilter: str | None = None
    flags: int = 0

    @property
    def needs_context(self) -> bool:
        return max(self.score, self.validated) < THRESHOLD


class Recognizer:
    """Base class of every recognizer; subclasses only set constants and override hooks."""

    ENTITY: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = PERSONAL
    COMPLIANCE: tuple[str, ...] = ()
    DESCRIPTION: ClassVar[str] = ""
    PATTERNS: ClassVar[tuple[Pattern, ...]] = ()
    CONTEXT: ClassVar[tuple[str, ...]] = ()
    #: Regex searched in the lowercased field name; its value is then checked with VALUE.
    KEYS: ClassVar[str | None] = None
    #: Field names that look like KEYS but are not (``server.address``).
    NOT_KEYS: ClassVar[str | None] = None
    #: Regex the whole (stripped) value of a keyed field must match.
    VALUE: ClassVar[str] = r".+"
    #: Regex for a value whose ends are certain (a quoted string, a JSON string), when it
    #: may hold what an unquoted value may not (a pass phrase with spaces); ``None``: VALUE.
    QUOTED_VALUE: ClassVar[str | None] = None
    #: Whether a ``Scheme credential`` value (``Token abc...``, an Authorization header) is
    #: checked by its credential part when the whole value is not one.
    SCHEMES: ClassVar[bool] = False
    #: Score of a keyed-field match (before validation).
    KEY_SCORE: ClassVar[float] = 0.85
    #: Characters kept visible at the start and end by the default mask.
    KEEP: ClassVar[tuple[int, int]] = (0, 4)

    #: Whether :meth:`rejected_by_surroundings` must be called (kept off the hot path otherwise).
    REJECT_AROUND: ClassVar[bool] = False
    #: Whether :meth:`validate` depends on its argument only, so that its results may be
    #: remembered (:meth:`validate_cached`).
    PURE: ClassVar[bool] = True

    def __init__(self) -> None:
        # Values repeat (a value is often both a pattern match and the value of its keyed
        # field; hard negatives and ids recur across spans), validators (stdnum,
        # phonenumbers, PyJWT) cost tens of microseconds: remember their answers.
        self._memo: dict[object, bool | None] = {}
        # validate_in() ignores ``context`` unless a recognizer overrides it (phone numbers).
        self._context_free = type(self).validate_in is Recognizer.validate_in
        # The VALUE regexes, looked up once per instance instead of once per check.
        self._value_rx = (self.compiled_value(False), self.compiled_value(True))

    def rejected_by_surroundings(self, text: str, start: int, end: int) -> bool:
        """Reject a match by what surrounds it (``1.2.3.4-beta`` is a version, not an IP).

        A function of its arguments only: recognizers that share a pattern and this
        method (public and private IP addresses) are asked once per match.
        """
        return False

    def validate(self, text: str) -> bool | None:
        """Confirm or reject a candidate; ``None`` keeps the pattern's base score."""
        return None

    def validate_in(self, text: str, *, context: bool) -> bool | None:
        """:meth:`validate`, told whether a context word was found (most ignore it)."""
        return self.validate(text)

    def validate_cached(self, text: str, context: bool = False) -> bool | None:
        """:meth:`validate_in`, remembered in a bounded dict when the recognizer is :attr:`PURE`."""
        if not self.PURE:
            return self.validate_in(text, context=context)
        key = text if self._context_free else (text, context)
        memo = self._memo
        got = memo.get(key, _UNSET)
        if got is _UNSET:
            got = self.validate_in(text, context=context)
            if len(memo) >= VALIDATION_MEMO:
                memo.clear()
            memo[key] = got
        return got  # type: ignore[return-value]

    def normalize(self, text: str) -> str:
        """Canonical form hashed for correlation (separators removed, case folded)."""
        return text.strip()

    def mask(self, text: str) -> str:
        """Masked form safe to store and show: never the whole value."""
        return mask_keep(text, *self.KEEP)

    # ----------------------------------------------------------------- helpers
    @classmethod
    def compiled_value(cls, quoted: bool = False) -> re.Pattern[str]:
        src = cls.QUOTED_VALUE if quoted and cls.QUOTED_VALUE else cls.VALUE
        name = "_quoted_rx" if src is not cls.VALUE else "_value_rx"
        rx: re.Pattern[str] | None = cls.__dict__.get(name)
        if rx is None:
            rx = re.compile(src, re.ASCII | re.DOTALL)
            setattr(cls, name, rx)
        return rx

    def check_value(self, value: str, quoted: bool = False) -> float:
        """Score of ``value`` as the whole value of a keyed field (0 when rejected).

        ``quoted``: the value's ends are certain (see :attr:`QUOTED_VALUE`).
        """
        v = value.strip()
        if not v or len(v) > 4096 or not self._value_rx[quoted].fullmatch(v):
            return 0.0
        ok = self.validate_cached(v)
        if ok is False:
            return 0.0
        return 1.0 if ok else self.KEY_SCORE


def in_dash_chain(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is one part of a longer dash-joined token (a UUID, a build id)."""
    return (start >= 2 and text[start - 1] == "-" and text[start - 2].isalnum()) or (
        end + 1 < len(text) and text[end] == "-" and text[end + 1].isalnum()
    )


_NON_DIGIT = re.compile(r"[^0-9]")


def digits(text: str) -> str:
    """The ASCII digits of ``text`` (every pattern is ASCII-only)."""
    return _NON_DIGIT.sub("", text)


def mask_keep(text: str, head: int, tail: int) -> str:
    """``text`` with all but ``head`` leading and ``tail`` trailing characters starred.

    Short values keep proportionally less, so at most a third of a value shows.
    """
    n = len(text)
    if n <= 4:
        return "*" * n
    limit = n // 3
    if head + tail > limit:
        head = min(head, limit // 2)
        tail = min(tail, limit - head)
    return text[:head] + "*" * (n - head - tail) + text[n - tail :] if tail else text[:head] + "*" * (n - head)


def mask_digits(text: str, head: int = 4, tail: int = 4) -> str:
    """Mask a number: separators dropped, ``head``/``tail`` digits kept (``4111********1111``).

    Numbers of 12 digits or more keep ``head`` and ``tail`` as asked (PCI DSS allows
    first six and last four of a card); shorter ones at most a third.
    """
    d = digits(text)
    if len(d) >= 12:
        return d[:head] + "*" * (len(d) - head - tail) + d[len(d) - tail :]
    return mask_keep(d, head, tail)


def mask_secret(text: str, prefix: int = 0) -> str:
    """Mask a secret: keep only a known, non-secret prefix and say how long it was."""
    keep = text[:prefix]
    return f"{keep}…[{len(text)} chars]"


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(k / n * math.log2(k / n) for k in Counter(text).values())


class NumberRecognizer(Recognizer):
    """A recognizer of numeric identifiers: hashed as bare digits, masked digit-wise.

    ``KEEP`` says how many leading and trailing digits the mask shows.
    """

    def normalize(self, text: str) -> str:
        return digits(text)

    def mask(self, text: str) -> str:
        return mask_digits(text, *self.KEEP)
