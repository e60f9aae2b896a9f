"""One prefilter pass over a whole batch of values finds every sensitive type in them.

:class:`SensitiveDataScanner` compiles every recognizer pattern, the context words
of the recognizers that need them and a "sensitive-looking ``key=value``"
expression into one multi-pattern prefilter (hyperscan; else a google-re2 ``Set``;
else nothing, with one logged warning). Only the recognizers the prefilter hit run
their precise ``re`` pattern and validator, on the value they hit.

With hyperscan, :meth:`SensitiveDataScanner.scan_many` scans all the novel values
of a batch in *one* call: they are joined with a NUL separator (no pattern matches
across it: every pattern is bounded by ``\b``, a lookaround or a character class
that excludes it, and a false hit across it only costs a precise re-check) and the
end offset of each hit maps it back to its value. A value with no hit — most
attribute values in real traffic — costs no Python work at all. The ``key=value``
expression reports every offset, so pairs are parsed only where a sensitive-looking
key is, instead of regex-searching the whole text for pairs.

Field names are context: ``scan(value, key="user.ssn")`` lets a bare nine-digit
number count as an SSN, and checks the value against every recognizer whose
``KEYS`` match the name (passwords, CVVs, dates of birth...). Inside text (query
strings, JSON bodies, form posts, header dumps, log lines) the same happens for
every ``key=value`` / ``"key": "value"`` pair found; a JSON document with nested
objects or arrays is also parsed (orjson) and each leaf checked with its key, or its key
path when the key alone says nothing (``{"password": {"new": ...}}``).

Results are cached per distinct (key class, value) in a bounded dict: attribute
values repeat a lot. A scanner is not thread-safe; use one per thread.
"""

from __future__ import annotations

import hmac
import logging
import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, NamedTuple

import orjson

from enrichers.sensitive.recognizer import (
    CONTEXT_BOOST,
    CONTEXT_WINDOW,
    THRESHOLD,
    Pattern,
    Recognizer,
)
from enrichers.sensitive.recognizers import ALL

log = logging.getLogger("apiward.sensitive")

#: Stems of every keyed recognizer's field names; a ``stem...=`` in text makes the
#: scanner extract the ``key=value`` pairs of that text.
KEY_STEMS = (
    "pass", "pwd", "pin", "secret", "token", "key", "auth", "credential", "signature",
    "session", "sid", "ssn", "social", "itin", "nino", "insurance", "sin", "aadh", "uidai",
    "pan", "cpf", "cnpj", "dni", "nif", "nie", "driv", "dl", "dob", "birth", "bday",
    "geburt", "fecha", "addr", "adresse", "direccion", "street", "shipping", "billing",
    "cvv", "cvc", "csc", "code", "cid", "exp", "valid", "iban", "swift", "bic", "routing",
    "aba", "rtn", "acct", "account", "checking", "savings", "npi", "provider", "dea",
    "medical", "mbi", "medicare", "mrn", "patient", "chart", "icd", "diagnos", "dx", "imei",
    "aws", "passport", "ni_", "x-api",
)  # fmt: skip

#: ``key = value`` / ``"key": "value"`` / ``key: value`` in free text.
KV_RE = re.compile(
    r"""(?<![A-Za-z0-9_.\-])["']?([A-Za-z_][A-Za-z0-9_.\-]{0,63})["']?\s*[:=]\s*"""
    r"""(?:"((?:[^"\\]|\\.){1,4096})"|'([^']{1,4096})'|([^\s&;,"'}\]<>|][^&;"'}\]<>|\r\n]{0,4095}))""",
    re.ASCII,
)
#: The value after a ``[:=]`` the prefilter reported (groups as in KV_RE, shifted by one).
_KV_VALUE_AT = re.compile(
    r"""\s*(?:"((?:[^"\\]|\\.){1,4096})"|'([^']{1,4096})'|([^\s&;,"'}\]<>|][^&;"'}\]<>|\r\n]{0,4095}))""",
    re.ASCII,
)
#: The key before a ``[:=]``, read backwards (on the reversed text before it).
_KV_KEY_BEFORE = re.compile(r"""\s*["']?([A-Za-z0-9_.\-]{1,64})""", re.ASCII)
#: A key stem, the rest of that key segment (no dot: ``shipping.svc.local:8080`` holds the
#: stem ``pin`` and a colon, but the colon ends a host name, not a key), then ``:`` or ``=``.
_KV_PREFILTER = r"(?:" + "|".join(re.escape(s) for s in KEY_STEMS) + r")[A-Za-z0-9_-]*[\"']?\s*[:=]"
_TOKEN_SPLIT = re.compile(r"[^a-z0-9#]+")
#: ``Scheme `` at the start of an Authorization-like value (``Token abc...``).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{1,24}[ \t]+(?=\S)")
#: Tokens of a JSON text that parsed: a string (with ``:`` after it: a key), a bracket,
#: a number (``true``/``false``/``null``, commas and blanks are skipped).
_JSON_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?|[{}\[\]]|(-?\d[0-9.eE+-]*)')
_FORM_PLUS = re.compile(r"(?<=[A-Za-z0-9.,-])\+(?=[A-Za-z0-9(-])")
#: Where :data:`_FORM_PLUS` would replace something (a pseudo-pattern of the hyperscan prefilter).
_FORM_PLUS_PREFILTER = r"[A-Za-z0-9.,-]\+[A-Za-z0-9(-]"

_MAX_CACHED_LEN = 2048
#: Separator of the values joined for one prefilter call (see the module docstring).
_SEP = "\x00"
_NO_CTX: frozenset[int] = frozenset()

#: Compiled prefilter databases, shared by every scanner of the process.
_COMPILED: dict[tuple[str, tuple[tuple[str, int, bool], ...]], Any] = {}

#: A prefilter answer per value: the ids hit (``None``: run everything) and, for the
#: ``key=value`` expression, the character offsets just after each ``[:=]`` it saw
#: (``None``: unknown, search the pairs with :data:`KV_RE`).
_Hits = tuple[Collection[int] | None, list[int] | None]
_Cand = tuple[float, int, int, Recognizer, str]


class Match(NamedTuple):
    """One detection in a value: character offsets, score and the redacted forms.

    Immutable (a named tuple: the cheapest record to build, one per detection).
    """

    type: str
    start: int
    end: int
    score: float
    masked: str
    hash: str
    category: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 2),
            "masked": self.masked,
        }


@dataclass(frozen=True, slots=True)
class _Entry:
    recognizer: Recognizer
    pattern: Pattern
    rx: re.Pattern[str]
    needs_context: bool


class _Plan(NamedTuple):
    """An entry of :attr:`SensitiveDataScanner.entries` as :meth:`~SensitiveDataScanner._collect` uses it."""

    finditer: Callable[[str], Iterator[re.Match[str]]]
    group: int
    needs_context: bool
    recognizer: Recognizer
    rid: int
    #: Prefilter id of the recognizer's context words (``None``: not in the prefilter).
    ctx_id: int | None
    #: Search of the recognizer's context words (``None``: it has none).
    ctx_search: Callable[[str], re.Match[str] | None] | None
    #: ``rejected_by_surroundings`` (``None``: the recognizer never rejects by them).
    reject: Callable[[str, int, int], bool] | None
    #: ``validate_cached`` (value, whether a context word is near).
    validate: Callable[[str, bool], bool | None]
    score: float
    validated: float
    #: Index of the first entry that finds the same spans (same regex, group, context
    #: words and surroundings check: public and private IP addresses), else ``None``.
    share: int | None


def _tokens(text: str) -> set[str]:
    return set(_TOKEN_SPLIT.split(text.lower()))


def _has_context(words: Sequence[str], text: str, tokens: set[str] | None = None) -> bool:
    low = text.lower()
    toks = tokens if tokens is not None else None
    for w in words:
        if len(w) >= 4:
            if w in low:
                return True
        else:
            if toks is None:
                toks = _tokens(low)
            if w in toks:
                return True
    return False


def _context_expr(words: Sequence[str]) -> str:
    """Prefilter expression of context words: substrings, or whole tokens when short.

    Mirrors :func:`_has_context` (words under four characters must be a whole token)
    so that short words like ``tel`` or ``sin`` do not fire on ``hotel`` or ``using``.
    """
    long = [re.escape(w) for w in words if len(w) >= 4]
    short = [re.escape(w) for w in words if len(w) < 4]
    alts = []
    if long:
        alts.append("(?:" + "|".join(long) + ")")
    if short:
        alts.append(r"(?:^|[^a-z0-9#])(?:" + "|".join(short) + r")(?:[^a-z0-9#]|$)")
    return "(?i)(?:" + "|".join(alts) + ")"


def _context_rx(words: Sequence[str]) -> re.Pattern[str]:
    """:func:`_has_context` as one regex, searched in lowercased text."""
    long = [re.escape(w) for w in words if len(w) >= 4]
    short = [re.escape(w) for w in words if len(w) < 4]
    alts = []
    if long:
        alts.append("(?:" + "|".join(long) + ")")
    if short:
        alts.append(r"(?<![a-z0-9#])(?:" + "|".join(short) + r")(?![a-z0-9#])")
    return re.compile("|".join(alts))


def _loose_readings(value: str) -> list[str]:
    """Shorter readings of an unquoted field value, to try when the whole is not a value of
    the type: its part before a comma (``{"cvv": 123, "x": 1}`` read loosely) or its first
    words (``password=x (retrying)``)."""
    out = []
    head = value.split(",", 1)[0].rstrip()
    if head and head != value:
        out.append(head)
    words = value.split(" ")
    for n in range(min(4, len(words) - 1), 0, -1):
        out.append(" ".join(words[:n]).rstrip(",;"))
    return out


def _best_first(c: _Cand) -> tuple[float, int]:
    return (-c[0], c[1] - c[2])


def _by_start(c: _Cand) -> int:
    return c[1]


class SensitiveDataScanner:
    """Finds sensitive values in text. See the module docstring.

    ``engine`` is ``"auto"`` (hyperscan, else re2, else plain ``re``), or one of
    ``"hyperscan"``, ``"re2"``, ``"re"`` to force one (the bench compares them).
    ``secret`` keys the correlation hash; without one a random key is used.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        recognizers: Iterable[type[Recognizer]] | None = None,
        engine: str = "auto",
        threshold: float = THRESHOLD,
        cache_size: int = 65_536,
    ) -> None:
        import secrets as _secrets

        self.secret = secret if secret is not None else _secrets.token_bytes(32)
        self.threshold = threshold
        self.recognizers: list[Recognizer] = [cls() for cls in (recognizers or ALL)]
        self.by_type: dict[str, Recognizer] = {}
        for r in self.recognizers:
            self.by_type.setdefault(r.ENTITY, r)
        self.entries: list[_Entry] = []
        for r in self.recognizers:
            for p in r.PATTERNS:
                # ASCII unless the pattern asks for re.UNICODE (e-mail: letters of any script).
                rx = re.compile(p.regex, p.flags if p.flags & re.UNICODE else re.ASCII | p.flags)
                self.entries.append(_Entry(r, p, rx, p.needs_context))
        self.keyed = [r for r in self.recognizers if r.KEYS]
        self._keys_rx = {
            id(r): (
                re.compile(r.KEYS or "$^", re.ASCII),
                re.compile(r.NOT_KEYS, re.ASCII) if r.NOT_KEYS else None,
            )
            for r in self.keyed
        }
        # Context words go into the prefilter only for recognizers with a pattern that
        # needs them (they gate it); the others' words only raise a score, checked
        # precisely on the few values that matched.
        self._ctx_recognizers = [r for r in self.recognizers if r.CONTEXT]
        gated = {id(e.recognizer) for e in self.entries if e.needs_context}
        self._ctx_gated = [r for r in self._ctx_recognizers if id(r) in gated]
        n = len(self.entries)
        self._ctx_base = n
        self._kv_id = n + len(self._ctx_gated)
        self._ctx_index = {id(r): n + i for i, r in enumerate(self._ctx_gated)}
        #: Prefilter ids worth a look on their own (patterns that need no context, key=value).
        self._strong_ids = frozenset(
            [i for i, e in enumerate(self.entries) if not e.needs_context] + [self._kv_id]
        )
        #: Pattern id that needs context -> id of its recognizer's context words.
        self._gate = {
            i: self._ctx_index[id(e.recognizer)]
            for i, e in enumerate(self.entries)
            if e.needs_context and id(e.recognizer) in self._ctx_index
        }
        self._ctx_rx = {id(r): _context_rx(r.CONTEXT) for r in self._ctx_recognizers}
        # A pattern that needs context only counts with a context word in the
        # CONTEXT_WINDOW characters before its match (or in the field name), so its
        # prefilter expression asks for one there: bare numbers are everywhere in
        # telemetry (dates, ids, versions) and every prefilter hit costs Python work,
        # context words right before them are rare. A superset, for ASCII text: the
        # words without their token boundaries, caseless, then any CONTEXT_WINDOW
        # characters, then the pattern's own regex (its match starts where the
        # detection does: group 0). :meth:`_collect` runs these patterns as if hit
        # when the prefilter cannot tell: a field name with context, non-ASCII text
        # (characters are not bytes there, and ``lower()`` is not ASCII-only).
        self._ctx_bound: dict[int, str] = {}
        for i, e in enumerate(self.entries):
            r = e.recognizer
            if e.needs_context and e.pattern.group == 0 and not e.pattern.flags and id(r) in self._ctx_index:
                words = "|".join(re.escape(w) for w in r.CONTEXT)
                self._ctx_bound[i] = rf"(?i)(?:{words})[\s\S]{{0,{CONTEXT_WINDOW}}}(?:{e.pattern.regex})"
        self._ctx_bound_ids = frozenset(self._ctx_bound)
        self._ctx_bound_rids = frozenset(id(self.entries[i].recognizer) for i in self._ctx_bound)
        #: Per entry, what :meth:`_collect` needs of it, looked up once here.
        same: dict[tuple[Any, ...], list[int]] = {}
        for i, e in enumerate(self.entries):
            r = e.recognizer
            reject = type(r).rejected_by_surroundings if r.REJECT_AROUND else None
            same.setdefault((e.pattern.regex, e.pattern.flags, e.pattern.group, r.CONTEXT, reject), []).append(i)
        shared = {i: v[0] for v in same.values() if len(v) > 1 for i in v}
        self._plans = [
            _Plan(
                e.rx.finditer,
                e.pattern.group,
                e.needs_context,
                e.recognizer,
                id(e.recognizer),
                self._ctx_index.get(id(e.recognizer)),
                self._ctx_rx[id(e.recognizer)].search if e.recognizer.CONTEXT else None,
                e.recognizer.rejected_by_surroundings if e.recognizer.REJECT_AROUND else None,
                e.recognizer.validate_cached,
                e.pattern.score,
                e.pattern.validated,
                shared.get(i),
            )
            for i, e in enumerate(self.entries)
        ]
        self._cache: dict[tuple[int, str], tuple[Match, ...]] = {}
        self._cache_size = cache_size
        self._key_info: dict[str, tuple[int, tuple[Recognizer, ...], frozenset[int]]] = {}
        self._key_sigs: dict[tuple[tuple[int, ...], frozenset[int]], int] = {((), _NO_CTX): 0}
        self._always: list[int] = []
        #: Prefilter id of :data:`_FORM_PLUS_PREFILTER` (hyperscan only; -1: none).
        self._plus_id = -1
        self._prefilter: Callable[[str], list[int]] | None = None
        self._batch: Callable[[list[str]], dict[int, _Hits]] | None = None
        self.engine = self._build_prefilter(engine)
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------- prefilter
    def _prefilter_sources(self) -> list[tuple[str, int, bool]]:
        """(expression, re flags, whether its offsets must be exact) per prefilter id."""
        srcs: list[tuple[str, int, bool]] = []
        for i, e in enumerate(self.entries):
            if i in self._ctx_bound:
                srcs.append((self._ctx_bound[i], e.pattern.flags, False))
            else:
                srcs.append((e.pattern.prefilter or e.pattern.regex, e.pattern.flags, False))
        for r in self._ctx_gated:
            srcs.append((_context_expr(r.CONTEXT), 0, False))
        srcs.append((f"(?i){_KV_PREFILTER}", 0, True))
        return srcs

    def _build_prefilter(self, engine: str) -> str:
        order = ("hyperscan", "re2", "re") if engine == "auto" else (engine,)
        for name in order:
            try:
                if name == "hyperscan":
                    self._build_hyperscan()
                elif name == "re2":
                    self._build_re2()
                elif name == "re":
                    self._prefilter = None
                else:
                    raise ValueError(f"unknown scanner engine {name!r}; use hyperscan, re2 or re")
            except ImportError:
                continue
            if name == "re" and engine == "auto":
                log.warning(
                    "neither hyperscan nor google-re2 is importable; sensitive-data scanning "
                    "falls back to the much slower stdlib re"
                )
            return name
        raise ImportError(f"scanner engine {engine!r} is not installed")

    def _build_hyperscan(self) -> None:
        import hyperscan

        # One more id past the key=value one: where form-encoded spaces are.
        srcs = [*self._prefilter_sources(), (_FORM_PLUS_PREFILTER, 0, False)]
        self._plus_id = len(srcs) - 1
        # Recognizers share some expressions (public and private IP addresses): each
        # distinct one is compiled once and reports for every id that uses it.
        uniq: dict[tuple[str, int, bool], list[int]] = {}
        for i, src in enumerate(srcs):
            uniq.setdefault(src, []).append(i)
        usrcs = list(uniq)
        targets = [tuple(v) for v in uniq.values()]
        cache_key = ("hyperscan", tuple(usrcs))
        cached = _COMPILED.get(cache_key)
        if cached is None:
            # No SINGLEMATCH: a batch of values is one buffer, every hit's end offset
            # is needed to find its value. Expressions hyperscan supports as they are
            # are compiled exactly (faster, fewer false hits); the others in prefilter
            # mode (a superset, re-checked in re); those it refuses run on every value.
            base = [hyperscan.HS_FLAG_CASELESS if fl & re.IGNORECASE else 0 for _s, fl, _x in usrcs]
            exprs = [src.encode() for src, _fl, _x in usrcs]
            ids = list(range(len(usrcs)))
            always: list[int] = []
            try:
                db = hyperscan.Database()
                db.compile(expressions=exprs, ids=ids, elements=len(ids), flags=base)
            except hyperscan.error:
                keep: list[int] = []
                flags: list[int] = []
                for i in ids:
                    for fl in (base[i], base[i] | hyperscan.HS_FLAG_PREFILTER):
                        if usrcs[i][2] and fl != base[i]:
                            continue  # offsets must be exact
                        try:
                            hyperscan.Database().compile(
                                expressions=[exprs[i]], ids=[i], elements=1, flags=[fl]
                            )
                        except hyperscan.error:
                            continue
                        keep.append(i)
                        flags.append(fl)
                        break
                    else:
                        always.append(i)
                db = hyperscan.Database()
                db.compile(
                    expressions=[exprs[i] for i in keep], ids=keep, elements=len(keep), flags=flags
                )
            cached = (db, always)
            _COMPILED[cache_key] = cached
        db, always_uids = cached
        self._always = sorted(i for u in always_uids for i in targets[u])
        scratch = hyperscan.Scratch(db)
        always_t = tuple(self._always)
        kv_uid = next(u for u, t in enumerate(targets) if self._kv_id in t)
        multi = {u: t for u, t in enumerate(targets) if len(t) > 1}
        first = [t[0] for t in targets]
        scan = db.scan

        def batch(texts: list[str]) -> dict[int, _Hits]:
            """Prefilter hits of the values of ``texts`` that have any, by index."""
            joined = _SEP.join(texts)
            if joined.isascii():
                data = joined.encode("ascii")
                exact = True
                lens: Iterable[int] = map(len, texts)
            else:
                encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
                data = b"\x00".join(encoded)
                exact = False
                lens = map(len, encoded)
            found: list[tuple[int, int]] = []
            add = found.append

            def on_match(id_: int, _from: int, to: int, _flags: int, _ctx: Any) -> None:
                add((id_, to))

            scan(data, match_event_handler=on_match, scratch=scratch)
            out: dict[int, _Hits] = {}
            if always_t:
                out = {v: (set(always_t), []) for v in range(len(texts))}
            if not found:
                return out
            # starts[v] is the offset of value v; +1 per separator. Hits come mostly in
            # order of offset: the value of the previous hit is tried first.
            starts = list(accumulate((n + 1 for n in lens), initial=0))
            lo = hi = -1
            ids: set[int] = set()
            ends: list[int] = []
            for id_, to in found:
                if not lo < to <= hi:
                    v = bisect_right(starts, to - 1) - 1
                    lo = starts[v]
                    hi = starts[v + 1]
                    slot = out.get(v)
                    if slot is None:
                        ids = set(always_t)
                        ends = []
                        out[v] = (ids, ends)
                    else:
                        ids, ends = slot  # type: ignore[assignment]
                if id_ in multi:
                    ids.update(multi[id_])
                else:
                    ids.add(first[id_])
                    if id_ == kv_uid:
                        ends.append(to - lo)
            if not exact:
                for v, (hv, _ends) in out.items():
                    if not texts[v].isascii():
                        out[v] = (hv, None)  # byte offsets: let the pairs be searched
            return out

        def prefilter(text: str) -> list[int]:
            hit = batch([text]).get(0)
            return sorted(hit[0]) if hit is not None and hit[0] is not None else []

        self._batch = batch
        self._prefilter = prefilter

    def _build_re2(self) -> None:
        import re2

        s = re2.Set.SearchSet(re2.Options())
        index: list[int] = []
        for i, (src, flags, _exact) in enumerate(self._prefilter_sources()):
            if flags & re.IGNORECASE and not src.startswith("(?i)"):
                src = "(?i)" + src
            try:
                s.Add(src)
            except Exception:  # noqa: BLE001 - re2 lacks lookaround; run those patterns always
                self._always.append(i)
                continue
            index.append(i)
        s.Compile()
        always = tuple(self._always)

        def prefilter(text: str) -> list[int]:
            hits = list(always)
            for j in s.Match(text) or ():
                hits.append(index[j])
            return hits

        self._prefilter = prefilter

    # ------------------------------------------------------------- keys
    def _key(self, key: str) -> tuple[int, tuple[Recognizer, ...], frozenset[int]]:
        """(signature, keyed recognizers, ids of recognizers with context) for a field name."""
        info = self._key_info.get(key)
        if info is not None:
            return info
        low = key.lower().replace("-", "_")
        dotted = low.replace("_", ".")  # so that \b separates the words of user_dob too
        keyed = []
        for r in self.keyed:
            rx, not_rx = self._keys_rx[id(r)]
            if (rx.search(low) or rx.search(dotted)) and not (
                not_rx and (not_rx.search(low) or not_rx.search(dotted))
            ):
                keyed.append(r)
        toks = _tokens(low)
        ctx = frozenset(id(r) for r in self._ctx_recognizers if _has_context(r.CONTEXT, low, toks))
        sig_key = (tuple(id(r) for r in keyed), ctx)
        sig = self._key_sigs.get(sig_key)
        if sig is None:
            sig = len(self._key_sigs)
            self._key_sigs[sig_key] = sig
        info = (sig, tuple(keyed), ctx)
        if len(self._key_info) > 50_000:
            self._key_info.clear()
        self._key_info[key] = info
        return info

    # ------------------------------------------------------------- scanning
    def clear_cache(self) -> None:
        """Forget every cached result (the bench measures scans, not lookups)."""
        self._cache.clear()

    def scan(self, text: str, key: str = "") -> tuple[Match, ...]:
        """Every detection in ``text`` (the value of field ``key``, if any), by offset."""
        if key:
            info = self._key_info.get(key) or self._key(key)
            sig = info[0]
            if not info[1] and (len(text) < 7 or (len(text) < 9 and text.isdigit())):
                return ()
        else:
            sig = 0
            if len(text) < 7 or (len(text) < 9 and text.isdigit()):
                return ()
        hit = self._cache.get((sig, text))
        if hit is not None:
            self.cache_hits += 1
            return hit
        return self.scan_many([(text, key)])[0]

    def scan_many(
        self, items: Sequence[tuple[str, str]], *, cache: bool = True
    ) -> list[tuple[Match, ...]]:
        """:meth:`scan` of every ``(text, key)`` of ``items``, with one prefilter call.

        Cached values cost a dict lookup; the novel ones are prefiltered together
        and only those the prefilter hit (or whose key is sensitive) are examined.
        ``cache=False`` skips this scanner's cache (for a caller that keeps its own).
        """
        if not cache:
            return self._scan_texts([t for t, _k in items], [k for _t, k in items])
        out: list[tuple[Match, ...]] = [()] * len(items)
        store = self._cache
        key_info = self._key_info
        texts: list[str] = []
        keys: list[str] = []
        cks: list[tuple[int, str]] = []
        pend_at: dict[tuple[int, str], int] = {}
        waiting: list[tuple[int, int]] = []
        hits = 0
        for i, (text, key) in enumerate(items):
            if key:
                info = key_info.get(key) or self._key(key)
                sig = info[0]
                if not info[1] and (len(text) < 7 or (len(text) < 9 and text.isdigit())):
                    continue
            else:
                sig = 0
                if len(text) < 7 or (len(text) < 9 and text.isdigit()):
                    continue
            ck = (sig, text)
            got = store.get(ck)
            if got is not None:
                hits += 1
                out[i] = got
                continue
            j = pend_at.get(ck)
            if j is None:
                j = pend_at[ck] = len(texts)
                texts.append(text)
                keys.append(key)
                cks.append(ck)
            waiting.append((i, j))
        self.cache_hits += hits
        if not texts:
            return out
        results = self._scan_texts(texts, keys)
        if len(store) + len(texts) > self._cache_size:
            store.clear()
        for text, ck, res in zip(texts, cks, results, strict=True):
            if len(text) <= _MAX_CACHED_LEN:
                store[ck] = res
        for i, j in waiting:
            out[i] = results[j]
        return out

    def _scan_texts(self, texts: list[str], keys: list[str]) -> list[tuple[Match, ...]]:
        """Matches of every text (``keys[j]``: the field name of ``texts[j]``, or ``""``).

        All texts go to the prefilter in one call; Python only looks at those it hit
        and at the values of sensitive fields.
        """
        n = len(texts)
        self.cache_misses += n
        hits = self._hits(texts)
        # Field names: looked up once per distinct name.
        kinfo: dict[str, tuple[int, tuple[Recognizer, ...], frozenset[int]]] = {}
        todo = list(hits)
        distinct = set(keys)
        distinct.discard("")
        if distinct:
            key_info = self._key_info
            for k in distinct:
                kinfo[k] = key_info.get(k) or self._key(k)
            # Sensitive fields, and those whose name is the only context a pattern may get.
            bound = self._ctx_bound_rids
            sens = {k for k, info in kinfo.items() if info[1] or not bound.isdisjoint(info[2])}
            if sens:
                todo.extend(j for j, k in enumerate(keys) if k in sens and j not in hits)
                todo.sort()
        no_info = (0, (), _NO_CTX)
        strong = self._strong_ids
        gate = self._gate
        collect = self._collect
        plus_id = self._plus_id
        per: list[list[_Cand] | None] = [None] * n
        extra: list[tuple[int, str]] = []
        for j in todo:
            text = texts[j]
            _sig, keyed, kctx = kinfo.get(keys[j], no_info) if kinfo else no_info
            if not keyed and (len(text) < 7 or (len(text) < 9 and text.isdigit())):
                continue  # too short to hold anything
            # Form-encoded spaces (``card=4111+1111+...``) are scanned as spaces too;
            # the decoded text has the same length, so offsets hold for both.
            if plus_id < 0:
                if "+" in text and "=" in text:
                    d = _FORM_PLUS.sub(" ", text)
                    if d != text:
                        extra.append((j, d))
            h = hits.get(j)
            if h is not None and plus_id >= 0:
                hit_ids = h[0]
                if hit_ids is not None and plus_id in hit_ids:
                    hit_ids.discard(plus_id)  # type: ignore[attr-defined]
                    if "=" in text:
                        extra.append((j, _FORM_PLUS.sub(" ", text)))
            if h is not None and not keyed and not kctx and h[0] is not None and strong.isdisjoint(h[0]):
                # Only patterns that need a context word hit, or only context words:
                # worth a look only when a hit pattern's context words hit too.
                hit_ids = h[0]
                if not any(gate.get(i) in hit_ids for i in hit_ids) and text.isascii():
                    continue  # (non-ASCII: the context-bound expressions cannot tell, see __init__)
            cands: list[_Cand] = []
            collect(text, keyed, kctx, h, cands)
            per[j] = cands
        if plus_id < 0:
            # Values the plain loop above skipped (no hit) may still hold form-encoded spaces.
            for j, text in enumerate(texts):
                if j in hits or ("+" not in text or "=" not in text):
                    continue
                info = kinfo.get(keys[j], no_info) if kinfo else no_info
                if info[1] or (len(text) < 7 or (len(text) < 9 and text.isdigit())):
                    continue  # keyed ones were handled above
                d = _FORM_PLUS.sub(" ", text)
                if d != text:
                    extra.append((j, d))
        if extra:
            dhits = self._hits([d for _j, d in extra])
            for m, (j, d) in enumerate(extra):
                h = dhits.get(m)
                _sig, keyed, kctx = kinfo.get(keys[j], no_info) if kinfo else no_info
                if h is None and not keyed and not kctx:
                    continue
                if h is not None and plus_id >= 0 and h[0] is not None:
                    h[0].discard(plus_id)  # type: ignore[attr-defined]
                got = per[j]
                if got is None:
                    got = per[j] = []
                collect(d, keyed, kctx, h, got)
        resolve = self._resolve
        return [resolve(c) if c else () for c in per]

    def _hits(self, texts: list[str]) -> dict[int, _Hits]:
        """Prefilter hits by index of ``texts``: only values with a hit are keys (every
        value, with no information, when there is no prefilter engine)."""
        batch = self._batch
        if batch is not None:
            return batch(texts)
        pre = self._prefilter
        if pre is None:
            return dict.fromkeys(range(len(texts)), (None, None))
        hits: dict[int, _Hits] = {}
        for j, t in enumerate(texts):
            ids = pre(t)
            if ids:
                hits[j] = (set(ids), None)
        return hits

    def _collect(
        self,
        text: str,
        keyed: tuple[Recognizer, ...],
        kctx: frozenset[int],
        hit: _Hits | None,
        cands: list[_Cand],
    ) -> None:
        ids: Collection[int]
        kv_ends: list[int] | None
        if hit is None:
            ids, kv_ends = (), []
        else:
            got, kv_ends = hit
            ids = range(self._kv_id + 1) if got is None else got
        all_ids = hit is not None and hit[0] is None  # plain re: no prefilter information
        if not all_ids and (kctx or not text.isascii()):
            # Context-bound prefilter expressions (see __init__) cannot tell here.
            ids = {*ids, *self._ctx_bound_ids}
        plans = self._plans
        nent = len(plans)
        threshold = self.threshold
        memo: dict[tuple[int, bool, bool], list[tuple[int, int, bool]]] = {}
        for i in sorted(ids) if not all_ids else ids:
            if i >= nent:
                continue
            finditer, group, needs_context, r, rid, ctx_id, ctx_search, reject, validate, base, validated, share = plans[i]
            in_key = rid in kctx
            if needs_context and not in_key and not all_ids and ctx_id not in ids:
                continue
            # Whether a context word near a match can count: the recognizer has some, and
            # the prefilter saw them in the text (when they are in the prefilter at all).
            ctx_near = ctx_search is not None and (all_ids or ctx_id is None or ctx_id in ids)
            # The spans not rejected by their surroundings, with whether a context word
            # is near; found once for the entries that share them.
            spans = memo.get((share, in_key, ctx_near)) if share is not None else None
            if spans is None:
                spans = []
                for m in finditer(text):
                    s, t = m.span(group)
                    if s < 0:
                        continue
                    ctx = in_key or (
                        ctx_near
                        and s > 0  # (an empty window holds no word)
                        and ctx_search(text[max(0, s - CONTEXT_WINDOW) : s].lower()) is not None  # type: ignore[misc]
                    )
                    if needs_context and not ctx and share is None:
                        continue
                    if reject is not None and reject(text, s, t):
                        continue
                    spans.append((s, t, ctx))
                if share is not None:
                    memo[share, in_key, ctx_near] = spans
            for s, t, ctx in spans:
                if needs_context and not ctx:
                    continue
                ok = validate(text[s:t], ctx)
                if ok is False:
                    continue
                score = validated if ok else base
                if ctx:
                    score = min(1.0, score + CONTEXT_BOOST)
                if score >= threshold:
                    cands.append((score, s, t, r, text))
        if keyed:
            self._check_keyed(keyed, text, 0, len(text), cands)
        if all_ids or self._kv_id in ids:
            if kv_ends is None:
                self._scan_pairs(text, cands)
            elif kv_ends:
                self._scan_pairs_at(text, kv_ends, cands)
            # A JSON document with nested objects or arrays: the pairs above hold each
            # flat field with its key, only the walk knows the key of a nested leaf.
            c = text[:1]  # (empty: a sensitive field's empty value, with no prefilter)
            if (c == "{" or c == "[" or (c.isspace() and text.lstrip()[:1] in ("{", "["))) and (
                text.find("{", 1) > 0 or text.find("[", 1) > 0
            ):
                self._scan_json(text, cands)

    def _pair(self, text: str, key: str, s: int, t: int, unquoted: bool, cands: list[_Cand]) -> None:
        """Check the value ``text[s:t]`` of field ``key`` against its keyed recognizers."""
        keyed = (self._key_info.get(key) or self._key(key))[1]
        if keyed:
            self._check_keyed(keyed, text, s, t, cands, unquoted=unquoted, exact=not unquoted)

    def _check_keyed(
        self, keyed: tuple[Recognizer, ...], text: str, s: int, t: int, cands: list[_Cand],
        *, unquoted: bool = False, exact: bool = False,
    ) -> None:
        """Check ``text[s:t]``, the value of a field, against the field's keyed recognizers.

        ``unquoted``: the value ran to the next delimiter, so only its start is sure;
        ``exact``: both ends are sure (a quoted or JSON string, a JSON number).
        """
        value = text[s:t].rstrip()
        lead = len(value) - len(value.lstrip())
        if lead:
            s += lead
            value = value[lead:]
        if not value or (unquoted and value[0] in "{["):
            return  # (``"password": {...}``: an object or array, whose leaves the JSON walk checks)
        threshold = self.threshold
        loose: list[str] | None = None  # (made when first needed: most values pass whole)
        for r in keyed:
            sc = r.check_value(value, exact)
            end = len(value)
            if sc < threshold and unquoted:
                if loose is None:
                    loose = _loose_readings(value)
                for v in loose:
                    sc = r.check_value(v, exact)
                    if sc >= threshold:
                        end = len(v)
                        break
            if sc >= threshold:
                cands.append((sc, s, s + end, r, text))
            elif r.SCHEMES:
                # ``Token abc...`` (an Authorization value): the credential after the scheme.
                m = _SCHEME.match(value)
                if m is not None:
                    cred = value[m.end() :].split(None, 1)[0].rstrip(",;")
                    sc = r.check_value(cred)
                    if sc >= threshold:
                        cands.append((sc, s + m.end(), s + m.end() + len(cred), r, text))

    def _scan_json(self, text: str, cands: list[_Cand]) -> None:
        """Check every leaf of a JSON document against the keyed recognizers of its field.

        Only a text that parses (orjson) is walked: then a tokenizer over the raw text
        gives each leaf's offsets, and the open containers give its key path. The leaf's
        own key decides; when it is not a sensitive field, its key path does
        (``{"password": {"new": "..."}}``, ``{"ssn": ["...", "..."]}``).
        """
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        key_info = self._key_info
        keys: list[str] = []  # per open container: its current key ("" in an array)
        for m in _JSON_TOKEN.finditer(text):
            c = text[m.start()]
            if c == "{" or c == "[":
                keys.append("")
                continue
            if c == "}" or c == "]":
                if keys:
                    keys.pop()
                continue
            if m.group(2) is not None:  # a key
                if keys:
                    keys[-1] = m.group(1)
                continue
            named = [k for k in keys if k]
            if not named:
                continue
            leaf = keys[-1] or named[-1]
            keyed = (key_info.get(leaf) or self._key(leaf))[1]
            if not keyed and len(named) > 1:
                path = ".".join(named)
                keyed = (key_info.get(path) or self._key(path))[1]
            if keyed:
                g = 1 if m.group(1) is not None else 3
                self._check_keyed(keyed, text, m.start(g), m.end(g), cands, exact=True)

    def _scan_pairs(self, text: str, cands: list[_Cand]) -> None:
        """Every ``key=value`` pair of ``text``, found by regex search (no offsets known)."""
        pos = 0
        search = KV_RE.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            g = 2 if m.group(2) is not None else 3 if m.group(3) is not None else 4
            s, t = m.span(g)
            # Resume inside the value: ``error: password=x`` holds a pair in the value of another.
            pos = s if s > m.start() else m.end()
            self._pair(text, m.group(1), s, t, g == 4, cands)

    def _scan_pairs_at(self, text: str, ends: list[int], cands: list[_Cand]) -> None:
        """The pairs whose ``[:=]`` ends just before each offset of ``ends`` (from the prefilter)."""
        key_info = self._key_info
        n = len(text)
        for e in sorted(set(ends)) if len(ends) > 1 else ends:
            c = e - 1
            if c <= 0 or c >= n or text[c] not in ":=":
                continue
            km = _KV_KEY_BEFORE.match(text[max(0, c - 70) : c][::-1])
            if km is None:
                continue
            # A key starts with a letter or "_" (it is ASCII: what else it holds is [0-9.-]).
            key = km.group(1)[::-1].lstrip("0123456789.-")
            keyed = (key_info.get(key) or self._key(key))[1] if key else ()
            if not keyed:
                continue  # no key, or not a sensitive one (``KeyError: ...``): no value to check
            vm = _KV_VALUE_AT.match(text, e)
            if vm is None:
                continue
            g = 1 if vm.group(1) is not None else 2 if vm.group(2) is not None else 3
            s, t = vm.span(g)
            self._check_keyed(keyed, text, s, t, cands, unquoted=g == 3, exact=g != 3)

    def _resolve(self, cands: list[_Cand]) -> tuple[Match, ...]:
        """Non-overlapping detections from candidates, best score (then longest) first."""
        kept: list[_Cand]
        if len(cands) == 1:
            kept = cands
        else:
            cands.sort(key=_best_first)
            kept = []
            for c in cands:
                if all(c[2] <= k[1] or c[1] >= k[2] for k in kept):
                    kept.append(c)
            kept.sort(key=_by_start)
        secret = self.secret
        digest = hmac.digest
        out = []
        for score, s, t, r, text in kept:
            value = text[s:t]
            entity = r.ENTITY
            msg = f"{entity}\x1f{r.normalize(value)}".encode("utf-8", "surrogatepass")
            out.append(
                Match(entity, s, t, score, r.mask(value), digest(secret, msg, "sha256")[:8].hex(), r.CATEGORY)
            )
        return tuple(out)

    def keyed_hash(self, entity: str, normalized: str) -> str:
        """HMAC-SHA256 of a normalised value under the per-install secret, truncated.

        Equal values give equal hashes on one install, so they can be correlated
        across spans without keeping the value.
        """
        msg = f"{entity}\x1f{normalized}".encode("utf-8", "surrogatepass")
        return hmac.digest(self.secret, msg, "sha256")[:8].hex()

    def types(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(type, category, description, compliance) of every recognizer, once per type."""
        seen: dict[str, tuple[str, str, str, tuple[str, ...]]] = {}
        for r in self.recognizers:
            if r.ENTITY not in seen:
                seen[r.ENTITY] = (r.ENTITY, r.CATEGORY, r.DESCRIPTION, r.COMPLIANCE)
        return list(seen.values())


def redact_text(text: str, matches: Sequence[Match], action: str = "mask") -> str:
    """``text`` with every match replaced by its masked form (or ``[TYPE:hash]``)."""
    if not matches:
        return text
    parts = []
    pos = 0
    for m in sorted(matches, key=lambda m: m.start):
        if m.start < pos:
            continue
        parts.append(text[pos : m.start])
        parts.append(m.masked if action == "mask" else f"[{m.type}:{m.hash}]")
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts)
