"""Network and device identifiers: public and private IP addresses, MAC addresses, IMEI."""

from __future__ import annotations

import functools
import ipaddress
import re
import socket

from stdnum import imei, mac

from enrichers.sensitive.recognizer import (
    GDPR,
    NETWORK,
    NumberRecognizer,
    Pattern,
    Recognizer,
    digits,
)

_V4 = r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b"
_V6 = r"(?:\b[0-9A-Fa-f]{1,4}|::?)(?::{1,2}[0-9A-Fa-f]{1,4}){2,7}(?:::)?"
#: A superset of _V6 that ends at a fixed point (an open tail is reported at every end).
_V6_PREFILTER = r"(?:\b[0-9A-Fa-f]{1,4}|::?):{1,2}[0-9A-Fa-f]{1,4}:{1,2}[0-9A-Fa-f]"


_PRODUCT_TOKEN = re.compile(r"(?:^|(?<=[\s(;,]))[A-Za-z][A-Za-z0-9_.-]*/\Z")


@functools.lru_cache(maxsize=4096)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


_Rule = tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]


def _v4_rules() -> tuple[_Rule, ...] | None:
    """``ipaddress``'s ``is_global`` for IPv4 as integers, one small rule per first octet:
    (network, netmask) pairs of the not-global networks that overlap it (the private ones
    and the shared address space), and of the exceptions to them (newer Pythons).

    Built from the library's own tables, so the rule stays the library's; ``None`` (and
    every address goes through ``ipaddress``) when they are not where this expects, or
    when the integer form disagrees with the library at any edge of those networks.
    """
    consts = getattr(ipaddress, "_IPv4Constants", None)
    private = list(getattr(consts, "_private_networks", None) or ())
    if not private:
        return None
    private.append(getattr(consts, "_public_network", ipaddress.IPv4Network("100.64.0.0/10")))
    exceptions = list(getattr(consts, "_private_networks_exceptions", ()))

    def overlapping(nets: list[ipaddress.IPv4Network], octet: int) -> tuple[tuple[int, int], ...]:
        lo, hi = octet << 24, (octet << 24) | 0xFFFFFF
        return tuple((int(n.network_address), int(n.netmask)) for n in nets
                     if int(n.network_address) <= hi and int(n.broadcast_address) >= lo)

    rules = tuple((overlapping(private, o), overlapping(exceptions, o)) for o in range(256))
    for net in (*private, *exceptions):
        for x in (int(net.network_address) - 1, int(net.network_address), int(net.broadcast_address),
                  int(net.broadcast_address) + 1):
            if 0 <= x < 1 << 32 and _v4_global(x, rules) != ipaddress.IPv4Address(x).is_global:
                return None
    return rules


def _v4_global(x: int, rules: tuple[_Rule, ...]) -> bool:
    not_global, exceptions = rules[x >> 24]
    for net, mask in not_global:
        if x & mask == net:
            return any(x & m == n for n, m in exceptions)
    return True


_V4_RULES = _v4_rules()


@functools.lru_cache(maxsize=4096)
def _scope(text: str) -> tuple[bool, bool] | None:
    """(is_global, is_unspecified) of an address, ``None`` for no address: worked out once
    for the public and the private recognizer, which check the same matches.

    IPv4 addresses are answered from integers (~1 us; the library's objects and its
    network walk take ~8 us per address, most of the realistic corpus's validation time).
    """
    if _V4_RULES is not None and "." in text:
        try:  # strict: four decimal octets, no leading zeros (as ipaddress)
            x = int.from_bytes(socket.inet_pton(socket.AF_INET, text))
        except (OSError, ValueError):  # (UnicodeError is a ValueError)
            pass
        else:
            return _v4_global(x, _V4_RULES), x == 0
    ip = _ip(text)
    return None if ip is None else (ip.is_global, ip.is_unspecified)


class IpAddressRecognizer(Recognizer):
    """Public IPv4/IPv6 addresses (personal data under GDPR)."""

    ENTITY = "IP_ADDRESS"
    CATEGORY = NETWORK
    COMPLIANCE: tuple[str, ...] = (GDPR,)
    DESCRIPTION = "public IP address"
    PATTERNS = (
        Pattern("v4", _V4, 0.5, validated=0.85),
        Pattern("v6", _V6, 0.3, validated=0.85, prefilter=_V6_PREFILTER),
    )
    CONTEXT = ("ip", "address", "client", "remote", "forwarded", "addr")

    REJECT_AROUND = True

    def rejected_by_surroundings(self, text: str, start: int, end: int) -> bool:
        # Four-part version numbers: v1.2.3.4, 1.2.3.4-beta, version 1.2.3.4
        after = text[end : end + 2]
        if len(after) == 2 and after[0] in "-_+" and after[1].isalpha():
            return True
        before = text[max(0, start - 9) : start].lower()
        if before.endswith(("v", "version ", "version=", "ver ", "build ")):
            return True
        # Product/version tokens of user agents: Chrome/120.0.0.0, AppleWebKit/537.36.
        return _PRODUCT_TOKEN.search(text, max(0, start - 40), start) is not None

    def validate(self, text: str) -> bool | None:
        scope = _scope(text)
        return scope is not None and scope[0]

    def mask(self, text: str) -> str:
        if ":" in text or _scope(text) is None:  # IPv6 (or no address): no IPv4 parse
            parts = text.split(":")
            return ":".join(parts[:2]) + ":…"
        a, b, _c, _d = text.split(".")
        return f"{a}.{b}.*.*"


class PrivateIpAddressRecognizer(IpAddressRecognizer):
    """Private, loopback and link-local addresses, tagged apart from public ones."""

    ENTITY = "PRIVATE_IP_ADDRESS"
    COMPLIANCE: tuple[str, ...] = ()
    DESCRIPTION = "private IP address"
    PATTERNS = (
        Pattern("v4", _V4, 0.5, validated=0.6),
        Pattern("v6", _V6, 0.3, validated=0.6, prefilter=_V6_PREFILTER),
    )

    def validate(self, text: str) -> bool | None:
        scope = _scope(text)
        return scope is not None and not scope[0] and not scope[1]


class MacAddressRecognizer(Recognizer):
    """MAC addresses (colon, dash or Cisco dotted form; via stdnum.mac)."""

    ENTITY = "MAC_ADDRESS"
    CATEGORY = NETWORK
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "MAC address"
    PATTERNS = (
        Pattern("colon", r"\b[0-9A-Fa-f]{2}(?:([:-])[0-9A-Fa-f]{2}){5}\b", 0.5, validated=0.85),
        Pattern("cisco", r"\b[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\b", 0.3, validated=0.7),
    )
    CONTEXT = ("mac", "hwaddr", "ether", "device")

    def validate(self, text: str) -> bool | None:
        if ":" in text and "-" in text:
            return False
        t = text.replace(".", "")
        t = ":".join(t[i : i + 2] for i in range(0, 12, 2)) if len(t) == 12 else text
        return bool(mac.is_valid(t, validate_manufacturer=False)) and len(set(t.replace(":", "").replace("-", "").lower())) > 2

    def mask(self, text: str) -> str:
        return text[:8] + "".join("*" if c.isalnum() else c for c in text[8:])


class ImeiRecognizer(NumberRecognizer):
    """Mobile device IMEI numbers (15 digits, Luhn; via stdnum.imei)."""

    ENTITY = "IMEI"
    CATEGORY = NETWORK
    COMPLIANCE = (GDPR,)
    DESCRIPTION = "IMEI device identifier"
    KEEP = (0, 4)
    PATTERNS = (
        Pattern("grouped", r"\b\d{2}[- ]\d{6}[- ]\d{6}[- ]\d\b", 0.4, validated=0.85),
        Pattern("bare", r"\b\d{15}\b", 0.1, validated=0.45),
    )
    CONTEXT = ("imei", "device", "handset", "phone", "mobile")
    KEYS = r"imei"
    VALUE = r"\d{2}[- ]?\d{6}[- ]?\d{6}[- ]?\d"

    def validate(self, text: str) -> bool | None:
        d = digits(text)
        return len(d) == 15 and bool(imei.is_valid(d))
