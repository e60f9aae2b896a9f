"""What a route template says about itself, computed once per endpoint and cached.

Which segments are parameters (and so carry object ids), whether it is a login,
a sensitive business flow, an admin or debug route, and which API version it
belongs to. Also the fallback route templating used while no inventory
enricher has published an :class:`~agent.model.Endpoint` for a span.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM_SEG = re.compile(r"^(\{[^}]*\}|:[A-Za-z_]\w*|<[^>]*>|\*)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEXID = re.compile(r"^[0-9a-fA-F]{12,}$")
_MIXED_ID = re.compile(r"^(?=.*\d)[A-Za-z0-9_.~-]{6,}$")
_LOGIN = re.compile(
    r"/(login|log-in|signin|sign-in|sign_in|authenticate|session|sessions|token|oauth2?/token)(/|$)", re.I
)


def is_login_route(route: str) -> bool:
    """Does the route take credentials in (login, sign-in, session, token)?"""
    return _LOGIN.search(route) is not None


_FLOWS = (
    ("signup", re.compile(r"/(signup|sign-up|sign_up|register|registration|accounts?/new)(/|$)", re.I)),
    ("password_reset", re.compile(r"(password[-_/]?(reset|forgot|recover)|forgot[-_/]?password|reset[-_/]?password)", re.I)),
    ("checkout", re.compile(r"/(checkout|purchase|orders?/submit|buy|payments?)(/|$)", re.I)),
    ("otp", re.compile(r"/(otp|verify|verification|2fa|mfa)(/|$)", re.I)),
    ("coupon", re.compile(r"/(coupons?|redeem|vouchers?|promo|gift-?cards?)(/|$)", re.I)),
)
_DEBUG = re.compile(
    r"(^|/)(actuator(/|$)|debug/pprof|_debug(/|$)|__debug__|console(/|$)|heapdump|threaddump|jolokia"
    r"|server-status|phpinfo|\.env$|env(/|$)|debug/vars|_profiler|trace\.axd|elmah\.axd)",
    re.I,
)
_ADMIN_SEG = frozenset({"admin", "internal", "debug", "management", "manage", "superuser", "staff", "ops"})
_VERSION = re.compile(r"/v(\d{1,3})(?=/|$)", re.I)
_USER_PARAM = re.compile(r"^(user(_?id|name)?|uid|account(_?id)?|owner(_?id)?|customer(_?id)?|member(_?id)?|login)$", re.I)
_USER_COLLECTION = frozenset({"users", "user", "accounts", "account", "customers", "members", "profiles"})
#: Collections whose objects usually belong to one principal (enumerating them is BOLA, not scraping).
_PRIVATE = _USER_COLLECTION | frozenset({
    "orders", "order", "invoices", "invoice", "payments", "payment", "documents", "files", "messages",
    "carts", "cart", "tickets", "addresses", "cards", "transactions", "statements", "reservations",
    "bookings", "subscriptions", "wallets", "devices", "sessions", "uploads", "receipts", "shipments",
})


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """Facts of one route template (cached; never per span)."""

    route: str
    params: tuple[tuple[int, str], ...]
    user_param: int
    login: bool
    flow: str
    admin: bool
    debug: bool
    private: bool
    version: int
    unversioned: str

    @property
    def parameterised(self) -> bool:
        return bool(self.params)


def route_info(route: str) -> RouteInfo:
    """Classify a route template such as ``/api/v2/users/{id}/orders``."""
    segs = route.split("/")
    params: list[tuple[int, str]] = []
    user_param = -1
    for i, s in enumerate(segs):
        if _PARAM_SEG.match(s):
            name = s.strip("{}<>:*")
            name = name.rsplit(":", 1)[-1] if "<" in s else name.split(":", 1)[0]
            params.append((i, name))
            prev = segs[i - 1].lower() if i > 0 else ""
            if user_param < 0 and (_USER_PARAM.match(name) or (prev in _USER_COLLECTION and name in ("id", "name", ""))):
                user_param = i
    lower = [s.lower() for s in segs]
    admin = any(s in _ADMIN_SEG or (s.startswith("_") and len(s) > 1) for s in lower)
    flow = ""
    for name, rx in _FLOWS:
        if rx.search(route):
            flow = name
            break
    m = _VERSION.search(route)
    version = int(m.group(1)) if m else 0
    unversioned = _VERSION.sub("/v*", route, count=1) if m else route
    if params:
        useg = unversioned.split("/")
        unversioned = "/".join("{}" if _PARAM_SEG.match(x) else x for x in useg)
    return RouteInfo(
        route=route,
        params=tuple(params),
        user_param=user_param,
        login=is_login_route(route),
        flow=flow,
        admin=admin,
        debug=bool(_DEBUG.search(route)),
        private=any(lower[i - 1] in _PRIVATE for i, _ in params if i > 0),
        version=version,
        unversioned=unversioned,
    )


def template_path(path: str) -> str:
    """FALLBACK templating of a raw path (``/users/42`` -> ``/users/{id}``).

    Used only when neither the inventory enricher nor ``http.route`` gives a
    template; the inventory's templates are better and win when present.
    """
    if not path:
        return "/"
    segs = path.split("/")
    out = []
    for s in segs:
        if s.isdigit() or _UUID.match(s) or _HEXID.match(s) or (_MIXED_ID.match(s) and not s.isalpha() and _looks_id(s)):
            out.append("{id}")
        else:
            out.append(s)
    return "/".join(out)


def _looks_id(s: str) -> bool:
    digits = sum(c.isdigit() for c in s)
    return digits >= 2 and not _VERSION.fullmatch("/" + s)


def object_id(info: RouteInfo, path: str) -> str:
    """The value of the last parameter of ``info`` in the raw ``path`` ("" if none)."""
    if not info.params or not path:
        return ""
    idx = info.params[-1][0]
    segs = path.split("/", idx + 1)  # segment idx is whole; the rest is not split
    if idx < len(segs):
        return segs[idx]
    return ""


def path_user(info: RouteInfo, path: str) -> str:
    """The user identifier a path names (``/users/{username}/...``), or ""."""
    if info.user_param < 0 or not path:
        return ""
    segs = path.split("/")
    return segs[info.user_param] if info.user_param < len(segs) else ""


def is_debug_path(path: str) -> bool:
    return bool(_DEBUG.search(path))
