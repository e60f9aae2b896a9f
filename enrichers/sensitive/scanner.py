"""One pass over a value finds every sensitive type in it.

:class:`SensitiveDataScanner` compiles every recognizer pattern, the context
words of every recognizer and a "sensitive-looking ``key=value``" expression
into one multi-pattern prefilter (hyperscan; else a google-re2 ``Set``; else
nothing, with one logged warning). A value is scanned once by the prefilter;
only the recognizers it hit run their precise ``re`` pattern and validator.

Field names are context: ``scan(value, key="user.ssn")`` lets a bare nine-digit
number count as an SSN, and checks the value against every recognizer whose
``KEYS`` match the name (passwords, CVVs, dates of birth...). Inside text (query
strings, JSON bodies, form posts, header dumps, log lines) the same happens for
every ``key=value`` / ``"key": "value"`` pair found.

Results are cached per distinct (key class, value): attribute values repeat a
lot. A scanner is not thread-safe; use one per thread.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

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
    r"""["']?([A-Za-z_][A-Za-z0-9_.\-]{0,63})["']?\s*[:=]\s*"""
    r"""(?:"((?:[^"\\]|\\.){1,4096})"|'([^']{1,4096})'|([^\s&;,"'}\]<>|][^&;"'}\]<>|\r\n]{0,4095}))""",
    re.ASCII,
)
_KV_PREFILTER = r"(?:" + "|".join(re.escape(s) for s in KEY_STEMS) + r")[A-Za-z0-9_.-]*[\"']?\s*[:=]"
_TOKEN_SPLIT = re.compile(r"[^a-z0-9#]+")
_FORM_PLUS = re.compile(r"(?<=[A-Za-z0-9.,-])\+(?=[A-Za-z0-9(-])")

_MAX_CACHED_LEN = 2048

#: Compiled prefilter databases, shared by every scanner of the process.
_COMPILED: dict[tuple[str, tuple[tuple[str, int], ...]], Any] = {}


@dataclass(frozen=True, slots=True)
class Match:
    """One detection in a value: character offsets, score and the redacted forms."""

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
                rx = re.compile(p.regex, re.ASCII | p.flags)
                self.entries.append(_Entry(r, p, rx, p.needs_context))
        self.keyed = [r for r in self.recognizers if r.KEYS]
        self._keys_rx = {
            id(r): (
                re.compile(r.KEYS or "$^", re.ASCII),
                re.compile(r.NOT_KEYS, re.ASCII) if r.NOT_KEYS else None,
            )
            for r in self.keyed
        }
        self._ctx_recognizers = [r for r in self.recognizers if r.CONTEXT]
        n = len(self.entries)
        self._ctx_base = n
        self._kv_id = n + len(self._ctx_recognizers)
        self._ctx_index = {id(r): n + i for i, r in enumerate(self._ctx_recognizers)}
        self._cache: dict[tuple[int, str], tuple[Match, ...]] = {}
        self._cache_size = cache_size
        self._key_info: dict[str, tuple[int, tuple[Recognizer, ...], frozenset[int]]] = {}
        self._key_sigs: dict[tuple[tuple[int, ...], frozenset[int]], int] = {(): 0}  # type: ignore[dict-item]
        self._always: list[int] = []
        self._prefilter: Callable[[str], list[int]] | None = None
        self.engine = self._build_prefilter(engine)
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------- prefilter
    def _prefilter_sources(self) -> list[tuple[str, int]]:
        srcs: list[tuple[str, int]] = []
        for e in self.entries:
            srcs.append((e.pattern.prefilter or e.pattern.regex, e.pattern.flags))
        for r in self._ctx_recognizers:
            words = "|".join(re.escape(w) for w in r.CONTEXT)
            srcs.append((f"(?i)(?:{words})", 0))
        srcs.append((f"(?i){_KV_PREFILTER}", 0))
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

        srcs = self._prefilter_sources()
        cache_key = ("hyperscan", tuple(srcs))
        cached = _COMPILED.get(cache_key)
        if cached is None:
            base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_PREFILTER
            flags = [
                base | (hyperscan.HS_FLAG_CASELESS if fl & re.IGNORECASE else 0) for _s, fl in srcs
            ]
            exprs = [src.encode() for src, _fl in srcs]
            ids = list(range(len(srcs)))
            always: list[int] = []
            try:
                db = hyperscan.Database()
                db.compile(expressions=exprs, ids=ids, elements=len(ids), flags=flags)
            except hyperscan.error:
                # Find the expressions hyperscan refuses; those run on every value.
                keep = []
                for i in ids:
                    try:
                        hyperscan.Database().compile(
                            expressions=[exprs[i]], ids=[i], elements=1, flags=[flags[i]]
                        )
                        keep.append(i)
                    except hyperscan.error:
                        always.append(i)
                db = hyperscan.Database()
                db.compile(
                    expressions=[exprs[i] for i in keep],
                    ids=keep,
                    elements=len(keep),
                    flags=[flags[i] for i in keep],
                )
            cached = (db, always)
            _COMPILED[cache_key] = cached
        db, always_ids = cached
        self._always = list(always_ids)
        scratch = hyperscan.Scratch(db)

        def on_match(id_: int, _from: int, _to: int, _flags: int, hits: Any) -> None:
            hits.append(id_)

        always_t = tuple(self._always)

        def prefilter(text: str) -> list[int]:
            hits: list[int] = list(always_t)
            db.scan(text.encode("utf-8", "surrogatepass"), match_event_handler=on_match,
                    context=hits, scratch=scratch)
            return hits

        self._prefilter = prefilter

    def _build_re2(self) -> None:
        import re2

        s = re2.Set.SearchSet(re2.Options())
        index: list[int] = []
        for i, (src, flags) in enumerate(self._prefilter_sources()):
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
        sig = self._key_sigs.get(sig_key)  # type: ignore[arg-type]
        if sig is None:
            sig = len(self._key_sigs) if (keyed or ctx) else 0
            self._key_sigs[sig_key] = sig  # type: ignore[index]
        info = (sig if (keyed or ctx) else 0, tuple(keyed), ctx)
        if len(self._key_info) > 50_000:
            self._key_info.clear()
        self._key_info[key] = info
        return info

    # ------------------------------------------------------------- scanning
    def scan(self, text: str, key: str = "") -> tuple[Match, ...]:
        """Every detection in ``text`` (the value of field ``key``, if any), by offset."""
        if key:
            sig, keyed, kctx = self._key(key)
        else:
            sig, keyed, kctx = 0, (), frozenset()
        n = len(text)
        if not keyed and (n < 7 or (n < 9 and text.isdigit())):
            return ()
        ck = (sig, text)
        hit = self._cache.get(ck)
        if hit is not None:
            self.cache_hits += 1
            return hit
        self.cache_misses += 1
        out = self._scan(text, keyed, kctx)
        if n <= _MAX_CACHED_LEN:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[ck] = out
        return out

    def _scan(
        self, text: str, keyed: tuple[Recognizer, ...], kctx: frozenset[int]
    ) -> tuple[Match, ...]:
        cands: list[tuple[float, int, int, Recognizer, str]] = []
        self._collect(text, keyed, kctx, cands)
        if "+" in text and "=" in text:
            # Form-encoded spaces (``card=4111+1111+...``) are scanned as spaces too; the
            # decoded text has the same length, so offsets hold for both.
            decoded = _FORM_PLUS.sub(" ", text)
            if decoded != text:
                self._collect(decoded, keyed, kctx, cands)
        if not cands:
            return ()
        return self._resolve(cands)

    def _collect(
        self,
        text: str,
        keyed: tuple[Recognizer, ...],
        kctx: frozenset[int],
        cands: list[tuple[float, int, int, Recognizer, str]],
    ) -> None:
        pre = self._prefilter
        if pre is None:
            ids: Iterable[int] = range(self._kv_id + 1)
            ctx_hits = None  # checked precisely per match
        else:
            ids = pre(text)
            if not ids and not keyed:
                return
            ctx_hits = {i for i in ids if i >= self._ctx_base}
        entries = self.entries
        nent = len(entries)
        threshold = self.threshold
        for i in ids:
            if i >= nent:
                continue
            e = entries[i]
            r = e.recognizer
            rid = id(r)
            in_key = rid in kctx
            if e.needs_context and not in_key and ctx_hits is not None:
                if self._ctx_index.get(rid) not in ctx_hits:
                    continue
            p = e.pattern
            for m in e.rx.finditer(text):
                s, t = m.span(p.group)
                if s < 0:
                    continue
                ctx = in_key or (
                    bool(r.CONTEXT)
                    and (ctx_hits is None or self._ctx_index.get(rid) in ctx_hits)
                    and _has_context(r.CONTEXT, text[max(0, s - CONTEXT_WINDOW) : s])
                )
                if e.needs_context and not ctx:
                    continue
                value = text[s:t]
                if r.REJECT_AROUND and r.rejected_by_surroundings(text, s, t):
                    continue
                ok = r.validate_in(value, context=ctx)
                if ok is False:
                    continue
                score = p.validated if ok else p.score
                if ctx:
                    score = min(1.0, score + CONTEXT_BOOST)
                if score >= threshold:
                    cands.append((score, s, t, r, text))
        if keyed:
            for r in keyed:
                sc = r.check_value(text)
                if sc >= threshold:
                    lead = len(text) - len(text.lstrip())
                    cands.append((sc, lead, lead + len(text.strip()), r, text))
        if pre is None or self._kv_id in ids:
            self._scan_pairs(text, cands)

    def _scan_pairs(self, text: str, cands: list[tuple[float, int, int, Recognizer, str]]) -> None:
        threshold = self.threshold
        pos = 0
        search = KV_RE.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            g = 2 if m.group(2) is not None else 3 if m.group(3) is not None else 4
            s, t = m.span(g)
            keyed = self._key(m.group(1))[1]
            # Resume inside the value: ``error: password=x`` holds a pair in the value of another.
            pos = s if s > m.start() else m.end()
            if not keyed:
                continue
            value = text[s:t].rstrip()
            # An unquoted value runs to the next delimiter; when the whole of it is not
            # a value of the type, its first word may be (``password=x (retrying)``).
            options = [value]
            if g == 4:
                words = value.split(" ")
                for n in range(min(4, len(words) - 1), 0, -1):
                    options.append(" ".join(words[:n]).rstrip(",;"))
            for r in keyed:
                for v in options:
                    sc = r.check_value(v)
                    if sc >= threshold:
                        cands.append((sc, s, s + len(v), r, text))
                        break

    def _resolve(self, cands: list[tuple[float, int, int, Recognizer, str]]) -> tuple[Match, ...]:
        cands.sort(key=lambda c: (-c[0], c[1] - c[2]))
        kept: list[tuple[float, int, int, Recognizer, str]] = []
        for c in cands:
            if all(c[2] <= k[1] or c[1] >= k[2] for k in kept):
                kept.append(c)
        kept.sort(key=lambda c: c[1])
        out = []
        for score, s, t, r, text in kept:
            value = text[s:t]
            out.append(
                Match(
                    type=r.ENTITY,
                    start=s,
                    end=t,
                    score=score,
                    masked=r.mask(value),
                    hash=self.keyed_hash(r.ENTITY, r.normalize(value)),
                    category=r.CATEGORY,
                )
            )
        return tuple(out)

    def keyed_hash(self, entity: str, normalized: str) -> str:
        """HMAC-SHA256 of a normalised value under the per-install secret, truncated.

        Equal values give equal hashes on one install, so they can be correlated
        across spans without keeping the value.
        """
        msg = f"{entity}\x1f{normalized}".encode()
        return hmac.new(self.secret, msg, sha256).hexdigest()[:16]

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
