"""Checks on the tokens apiward observes in captured request headers.

What is checked: a JWT with ``alg: none``; an expired JWT that still got a 2xx (on a
route other than a login or token route); a JWT whose audience is not one the policy
accepts for the receiving service (``settings.audiences``); an HMAC-signed JWT
whose signature verifies with a common weak secret from the bundled list
(``weak_secrets.txt``, tested here, in this process); the same credential used
by different clients.

Tokens are never stored, logged or exported: everything kept is a keyed hash
(HMAC-SHA256 with the install's secret, see ``State.secret``) or a decoded,
non-secret claim such as ``alg`` or ``aud``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from agent.model import API_KEY_HEADERS, Span
from enrichers.abuse.routes import is_login_route  # a pure helper: which routes take credentials in

EXPIRY_LEEWAY_S = 30
MAX_CLIENTS_PER_TOKEN = 8
_HMAC = {
    "HS256": HMACAlgorithm(HMACAlgorithm.SHA256),
    "HS384": HMACAlgorithm(HMACAlgorithm.SHA384),
    "HS512": HMACAlgorithm(HMACAlgorithm.SHA512),
}


def load_weak_secrets(path: str | Path | None = None) -> tuple[bytes, ...]:
    """The bundled list of common weak HMAC secrets (or ``path`` when given)."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("enrichers.zerotrust").joinpath("weak_secrets.txt").read_text("utf-8")
    out = []
    for line in text.splitlines():
        s = line.rstrip("\r\n")
        if s and not s.startswith("#"):
            out.append(s.encode())
    return tuple(dict.fromkeys(out))


#: What OpenTelemetry writes instead of a header value listed in
#: OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS: proof that a credential
#: was sent, not a credential to check or compare (every sanitised one looks the same).
SANITIZED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential seen on a request: its kind and its keyed fingerprint.

    ``token`` holds the raw value only for the duration of the check; it is not
    part of equality or repr and nothing keeps a Credential beyond a batch.
    """

    kind: str  # "jwt" | "bearer" | "basic" | "apikey" | "token"
    fingerprint: str
    token: str = field(repr=False, compare=False, default="")


@dataclass(frozen=True, slots=True)
class JwtInfo:
    """The non-secret facts of one JWT, cached by fingerprint."""

    alg: str
    exp: float | None
    aud: tuple[str, ...]
    weak_secret: bool


@dataclass(frozen=True, slots=True)
class TokenIssue:
    kind: str
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    confidence: float = 1.0


class TokenChecker:
    """Extracts credentials from spans and checks them. Holds only hashes."""

    def __init__(
        self,
        key: bytes,
        weak_secrets: Sequence[bytes] | None = None,
        cache_size: int = 10_000,
    ) -> None:
        self._key = key
        self.weak_secrets = tuple(weak_secrets) if weak_secrets is not None else load_weak_secrets()
        self._cache: OrderedDict[str, JwtInfo | None] = OrderedDict()
        self._cache_size = cache_size

    # ------------------------------------------------------------ extraction
    def fingerprint(self, token: str) -> str:
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def credentials(self, span: Span) -> list[Credential]:
        http = span.http
        if http is None or not http.request_headers:
            return []
        h = http.request_headers
        out: list[Credential] = []
        authz = h.get("authorization") or ""
        if authz and authz.strip() != SANITIZED:
            word, _, rest = authz.strip().partition(" ")
            rest = rest.strip()
            if rest:
                w = word.lower()
                kind = "jwt" if w == "bearer" and rest.count(".") == 2 else w
                out.append(Credential(kind, self.fingerprint(rest), rest))
            else:
                out.append(Credential("token", self.fingerprint(word), word))
        for name in API_KEY_HEADERS:
            v = h.get(name)
            if v:
                if v.strip() != SANITIZED:
                    out.append(Credential("apikey", self.fingerprint(v), v))
                break
        return out

    # ------------------------------------------------------------ JWT facts
    def jwt_info(self, cred: Credential) -> JwtInfo | None:
        if cred.kind != "jwt":
            return None
        cache = self._cache
        if cred.fingerprint in cache:
            cache.move_to_end(cred.fingerprint)
            return cache[cred.fingerprint]
        info = self._decode(cred.token)
        cache[cred.fingerprint] = info
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return info

    def _decode(self, token: str) -> JwtInfo | None:
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        alg = str(header.get("alg") or "")
        exp = claims.get("exp")
        aud = claims.get("aud")
        auds: tuple[str, ...]
        if isinstance(aud, str):
            auds = (aud,)
        elif isinstance(aud, list):
            auds = tuple(str(a) for a in aud)
        else:
            auds = ()
        return JwtInfo(
            alg=alg,
            exp=float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None,
            aud=auds,
            weak_secret=self._weak(token, alg),
        )

    def _weak(self, token: str, alg: str) -> bool:
        algo = _HMAC.get(alg.upper())
        if algo is None:
            return False
        signing_input, _, sig_b64 = token.rpartition(".")
        try:
            sig = base64.urlsafe_b64decode(sig_b64 + "=" * (-len(sig_b64) % 4))
        except (binascii.Error, ValueError):
            return False
        msg = signing_input.encode()
        for secret in self.weak_secrets:
            if algo.verify(msg, algo.prepare_key(secret), sig):
                return True
        return False

    # ------------------------------------------------------------ the checks
    def check_jwt(
        self,
        info: JwtInfo,
        *,
        receiver: str,
        status_code: int,
        time_ns: int,
        audiences: Sequence[str] | None,
        route: str = "",
    ) -> list[TokenIssue]:
        issues: list[TokenIssue] = []
        if info.alg.lower() == "none":
            issues.append(TokenIssue("jwt_alg_none", "a JWT with alg 'none' (unsigned) was sent", {"alg": info.alg}))
        if info.weak_secret:
            issues.append(
                TokenIssue(
                    "jwt_weak_secret",
                    f"an {info.alg} JWT verifies with a common weak secret from the bundled list",
                    {"alg": info.alg},
                )
            )
        # A login or token route answers 2xx whatever stale token the client still sends:
        # only a route that should have checked the token "accepted" it.
        if info.exp is not None and 200 <= status_code < 300 and not is_login_route(route):
            now_s = time_ns / 1e9
            if info.exp + EXPIRY_LEEWAY_S < now_s:
                ev: dict[str, Any] = {"expired_for_s": int(now_s - info.exp), "status_code": status_code}
                if route:
                    ev["route"] = route
                issues.append(
                    TokenIssue("jwt_expired_accepted", f"an expired JWT got HTTP {status_code}", ev)
                )
        # Audiences are checked against the policy's settings.audiences only: an issuer's
        # audience names an API (acme-web, https://api.example.com), rarely the service,
        # so guessing from the service name reported almost every real token.
        if info.aud and audiences:
            ok = any(a in audiences for a in info.aud)
            conf = 1.0
            if not ok:
                issues.append(
                    TokenIssue(
                        "jwt_audience_mismatch",
                        f"the JWT audience does not name {receiver}",
                        {"aud": list(info.aud), "expected": list(audiences or []) or [receiver]},
                        conf,
                    )
                )
        return issues

    @staticmethod
    def check_reuse(
        seen: MutableMapping[str, list[str]],
        cred: Credential,
        client: str,
        max_tokens: int,
        trace_id: str = "",
        chains: OrderedDict[tuple[str, str], str] | None = None,
    ) -> TokenIssue | None:
        """Record that ``client`` used ``cred``; an issue when another client used it before.

        Passing a token on is not reuse: a gateway that forwards the caller's
        token to the service it calls uses it in the same trace as the caller.
        With ``trace_id`` and ``chains`` (a bounded map of (token, trace) to the
        first client), a second client in the same trace joins the token's
        clients silently; only a new client in another trace is an issue.
        """
        if not client:
            return None
        if trace_id and chains is not None:
            key = (cred.fingerprint, trace_id)
            first = chains.get(key)
            if first is None:
                chains[key] = client
                if len(chains) > 20_000:
                    chains.popitem(last=False)
            elif first != client:
                clients = seen.get(cred.fingerprint)
                if clients is None:
                    seen[cred.fingerprint] = [first, client]
                elif client not in clients and len(clients) < MAX_CLIENTS_PER_TOKEN:
                    clients.append(client)
                return None
        clients = seen.get(cred.fingerprint)
        if clients is None:
            seen[cred.fingerprint] = [client]
            if isinstance(seen, OrderedDict) and len(seen) > max_tokens:
                seen.popitem(last=False)
            return None
        if isinstance(seen, OrderedDict):
            seen.move_to_end(cred.fingerprint)
        if client in clients:
            return None
        if len(clients) < MAX_CLIENTS_PER_TOKEN:
            clients.append(client)
        return TokenIssue(
            "token_reuse",
            f"the same {cred.kind} credential was used by {len(clients)} different clients",
            {"token_hash": cred.fingerprint[:16], "clients": list(clients), "credential": cred.kind},
        )

