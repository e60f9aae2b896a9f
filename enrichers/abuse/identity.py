"""Who sent a request: an end user, an API key, a token, a service, an address.

Credentials are never kept: API keys, bearer tokens and session cookies become
a keyed hash (HMAC-SHA256 with the install secret), so the same credential maps
to the same client label across restarts without being recoverable from it.
A JWT's ``sub`` claim is read (not verified: this is attribution, not
authentication) so a principal is the same client across token refreshes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from functools import lru_cache

import orjson

from agent.model import API_KEY_HEADERS, HttpView, Span
from enrichers.abuse.rows import Codebook

_BROWSER_MARKS = ("mozilla/", "safari/", "chrome/", "firefox/", "edg/")
_HEADLESS_MARKS = (
    "headlesschrome", "phantomjs", "selenium", "puppeteer", "playwright", "slimerjs", "webdriver",
)
_TOOL_MARKS = (
    "curl/", "wget/", "python-requests", "python-urllib", "aiohttp", "go-http-client", "okhttp",
    "java/", "apache-httpclient", "libwww-perl", "scrapy", "httpie", "postmanruntime", "node-fetch",
    "axios/", "insomnia", "sqlmap", "nikto", "nuclei", "masscan", "zgrab", "gobuster", "ffuf",
)
_SCANNER_MARKS = ("sqlmap", "nikto", "nuclei", "masscan", "zgrab", "gobuster", "ffuf", "dirbuster", "wfuzz")
_PROBE_MARKS = ("kube-probe", "elb-healthchecker", "googlehc", "health", "uptime", "pingdom")


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """The client label and what the request carried.

    Cached per distinct identity (one object per client address, user agent,
    credential and caller), so it compares and hashes by identity: cheap as a
    dict key and as a column value grouped once per window.
    """

    client: str
    principal: str
    has_credentials: bool | None
    token_hash: str
    #: :func:`ua_class` of the user agent, except that a ``tool`` agent of an internal caller
    #: (a service, or a private address) is ``service``: service-to-service clients, not
    #: automation pointed at the API from outside.
    uac: str = "none"
    #: ``has_credentials`` as a row value: 1, 0, or -1 when no headers were captured.
    auth: int = -1
    #: The client address is a public one.
    public: bool = False
    #: The caller is a known service or the client address is a private one.
    internal: bool = False
    #: Its code in the :class:`Identifier`'s :class:`~enrichers.abuse.rows.Codebook` (rows
    #: keep the code; 0 is :data:`NOBODY`).
    code: int = 0


#: The "client" of an outbound call's row (edges have no client).
NOBODY = Principal(client="", principal="", has_credentials=None, token_hash="", uac="", auth=-1)


def keyed_hash(secret: bytes, value: str, n: int = 12) -> str:
    return hmac.new(secret, value.encode("utf-8", "replace"), hashlib.sha256).hexdigest()[:n]


@lru_cache(maxsize=4096)
def ua_class(ua: str) -> str:
    """``browser``, ``headless``, ``scanner``, ``tool``, ``probe``, ``other`` or ``none``
    (a :class:`Principal` refines ``tool`` to ``service`` for internal callers)."""
    if not ua:
        return "none"
    u = ua.lower()
    if any(m in u for m in _HEADLESS_MARKS):
        return "headless"
    if any(m in u for m in _SCANNER_MARKS):
        return "scanner"
    if any(m in u for m in _PROBE_MARKS):
        return "probe"
    if any(m in u for m in _TOOL_MARKS):
        return "tool"
    if any(m in u for m in _BROWSER_MARKS):
        return "browser"
    return "other"


_PRIVATE_PREFIXES = ("10.", "192.168.", "127.", "169.254.", "::1", "fc", "fd", "fe80") + tuple(
    f"172.{i}." for i in range(16, 32)
)


_INTERNAL_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
              "::1/128", "fc00::/7", "fe80::/10")
)


#: :data:`_INTERNAL_NETS` as (network, netmask) integers by IP version: ``ip in net``
#: (same version, masked address equals the network) without ~0.3 us of method calls each.
_INTERNAL_RANGES = {
    v: tuple((int(n.network_address), int(n.netmask)) for n in _INTERNAL_NETS if n.version == v) for v in (4, 6)
}


@lru_cache(maxsize=65536)
def address_facts(addr: str) -> tuple[bool, bool]:
    """:func:`is_internal_ip` and :func:`is_public_ip` of ``addr``, parsing it once."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False, False
    x = int(ip)
    internal = any(x & mask == net for net, mask in _INTERNAL_RANGES[ip.version])
    return internal, not addr.startswith(_PRIVATE_PREFIXES) and ip.is_global


def is_internal_ip(addr: str) -> bool:
    """A private, loopback or link-local address (inside the organisation's network).
    Documentation and other special ranges are neither internal nor public."""
    return address_facts(addr)[0]


def is_public_ip(addr: str) -> bool:
    return address_facts(addr)[1]


def _jwt_sub(token: str) -> str:
    parts = token.split(".")
    if len(parts) != 3:
        return ""
    body = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(body))
    except (ValueError, orjson.JSONDecodeError):
        return ""
    if not isinstance(claims, dict):
        return ""
    sub = claims.get("sub") or claims.get("username") or claims.get("preferred_username")
    return str(sub) if sub else ""


_API_KEY_HEADERS = tuple(API_KEY_HEADERS)
#: Distinct identities kept in the cache before it starts over (bounded memory).
MAX_CACHED = 50_000
MAX_SERVICE_KEYS = 1_000
MAX_SERVICE_ADDRS = 10_000
#: Client label prefix of a service caller (known from the call graph's pairing).
SERVICE_PREFIX = "svc:"


class Identifier:
    """Turns a span into a :class:`Principal`.

    The work (keyed hashes, JWT decoding, user-agent class) is done once per
    distinct identity: :meth:`identify` looks the span's identity facts up in a
    bounded cache first, so a busy client costs a few dict lookups per span.
    """

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._subs: dict[str, str] = {}
        self._cache: dict[tuple[object, ...], Principal] = {}
        #: Credentials (keyed hashes) seen sent by a known service caller -> that service.
        #: A server span's caller is known only when its client span was paired in the same
        #: batch; a gateway's internal API key identifies it in the other spans too, so it
        #: is not mistaken for one client sending everybody's requests.
        self._service_keys: dict[str, str] = {}
        #: Private client address and user agent of requests a known service sent -> that
        #: service ("" once two services were seen from it: a shared address, NAT, a mesh
        #: proxy). Names the caller of the credential-free requests from there whose client
        #: span came in another batch (exporters batch per process, so most of them do).
        self._service_addrs: dict[tuple[str, str], str] = {}
        #: Every Principal made (code -> Principal), for the rows: see :meth:`forget`.
        self.book = Codebook(NOBODY)

    def __len__(self) -> int:
        return len(self._cache)

    def forget(self) -> None:
        """Empty the cache and the code book (the caller compacts every pending row first).
        The book keeps each Principal made until then, also those the cache let go."""
        self._cache.clear()
        self.book.reset()

    def identify(self, span: Span, http: HttpView, caller: str = "") -> Principal:
        """The (cached) :class:`Principal` of a server span."""
        h = http.request_headers
        if h:
            cred = h.get("authorization")
            if cred:
                key: tuple[object, ...] = (1, cred, span.enduser_id, caller, http.client_address, http.user_agent)
            else:
                name = "cookie"
                for k in _API_KEY_HEADERS:
                    cred = h.get(k)
                    if cred:
                        name = k
                        break
                else:
                    cred = h.get("cookie") or ""
                key = (name, cred, span.enduser_id, caller, http.client_address, http.user_agent)
        else:
            key = (0, span.enduser_id, caller, http.client_address, http.user_agent)
        who = self._cache.get(key)
        if who is None:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            who = self._cache[key] = self._identify(span, http, caller)
        return who

    def _learn_address(self, addr: str, ua: str, caller: str) -> None:
        """Remember that ``caller`` sends from ``addr`` with user agent ``ua`` (a second
        service there makes the address ambiguous for good)."""
        key = (addr, ua)
        known = self._service_addrs.get(key)
        if known == caller or known == "":
            return
        if known is None and len(self._service_addrs) >= MAX_SERVICE_ADDRS:
            self._service_addrs.clear()
        self._service_addrs[key] = caller if known is None else ""
        # Principals cached for credential-free requests from there name the address (or,
        # ambiguous now, the service): forget those (the keys :meth:`identify` makes for
        # them), not the whole cache, which pods coming and going would empty again and again.
        for stale in ((0, "", "", addr, ua), ("cookie", "", "", "", addr, ua)):
            self._cache.pop(stale, None)

    def _user(self, uid: str) -> str:
        # E-mail addresses as user ids are personal data: keep a keyed hash only.
        return "user:#" + keyed_hash(self.secret, uid) if "@" in uid else "user:" + uid

    def _identify(self, span: Span, http: HttpView, caller: str = "") -> Principal:
        h = http.request_headers
        token_hash = ""
        principal = ""
        has: bool | None = None
        if h:
            has = False
            authz = h.get("authorization")
            if authz:
                has = True
                word, _, rest = authz.strip().partition(" ")
                cred = rest or word
                token_hash = keyed_hash(self.secret, cred)
                if word.lower() == "bearer" and cred.startswith("eyJ"):
                    sub = self._subs.get(token_hash)
                    if sub is None:
                        sub = _jwt_sub(cred)
                        if len(self._subs) > 20_000:
                            self._subs.clear()
                        self._subs[token_hash] = sub
                    principal = sub
            else:
                for k in API_KEY_HEADERS:
                    v = h.get(k)
                    if v:
                        has = True
                        token_hash = keyed_hash(self.secret, v)
                        break
                if not token_hash:
                    cookie = h.get("cookie")
                    if cookie and ("session" in cookie.lower() or "token" in cookie.lower()):
                        has = True
                        token_hash = keyed_hash(self.secret, cookie)
        if span.enduser_id:
            has = True
            principal = span.enduser_id
        if caller and token_hash and not principal and self._service_keys.get(token_hash) != caller:
            if len(self._service_keys) >= MAX_SERVICE_KEYS:
                self._service_keys.clear()
            self._service_keys[token_hash] = caller
            self._cache.clear()  # principals cached before now may name this key as a client
        addr = http.client_address
        addr_internal, public = address_facts(addr)
        if caller and addr_internal:
            self._learn_address(addr, http.user_agent, caller)
        if principal:
            client = self._user(principal)
        elif caller:
            client = SERVICE_PREFIX + caller
        elif token_hash and token_hash in self._service_keys:
            caller = self._service_keys[token_hash]
            client = SERVICE_PREFIX + caller
        elif token_hash:
            client = "key:" + token_hash
        elif addr_internal and self._service_addrs.get((addr, http.user_agent)):
            caller = self._service_addrs[addr, http.user_agent]
            client = SERVICE_PREFIX + caller
        elif addr:
            client = "ip:" + addr
        elif http.user_agent:
            client = "ua:" + keyed_hash(self.secret, http.user_agent, 8)
        else:
            client = "anonymous"
        internal = bool(caller) or addr_internal
        uac = ua_class(http.user_agent)
        if uac == "tool" and internal:
            uac = "service"
        book = self.book
        who = Principal(
            client=client, principal=principal, has_credentials=has, token_hash=token_hash,
            uac=uac, auth=-1 if has is None else int(has),
            public=public, internal=internal, code=book.next_code,
        )
        book.add(who)
        return who
