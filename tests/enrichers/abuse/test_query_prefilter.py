"""The one-regex precondition in front of the query-string checks: every query that
one of the checks acts on must pass it; ordinary queries must not (they skip parsing)."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from agent.config import Config
from enrichers.abuse.authn import _CRED_PARAM
from enrichers.abuse.enricher import AbuseEnricher
from enrichers.abuse.ssrf import param_host
from enrichers.abuse.unsafe_consumption import _INJECTION

SUSPICIOUS = [
    "access_token=eyJabc",  # credentials in the URL
    "page=1&API_KEY=k",
    "page=1&limit=500000",  # page size
    "%24top=99999",
    "url=http://169.254.169.254/latest/meta-data/",  # SSRF
    "u=http%3A%2F%2F10.0.0.1%2Fadmin",
    "next=//evil.example.com",
    "host=metadata.google.internal",
    "q=%27%20OR%20%271%27%3D%271",  # injection, encoded and raw
    "q=' or 1=1 --",
    "id=1;drop table users ",
    "f=../../etc/passwd",
    "name={{7*7}}",
    "q=%55NION%20SELECT%201",  # letters percent-encoded to dodge filters
    "q=1 union select 2",
]
ORDINARY = ["page=2&limit=20", "q=red+hat", "q=shoes", "sort=price&order=asc", "page=3&size=50"]


@pytest.fixture(scope="module")
def prefilter():  # type: ignore[no-untyped-def]
    return AbuseEnricher(Config(persist=False))._suspicious.search


@pytest.mark.parametrize("query", SUSPICIOUS)
def test_queries_a_check_acts_on_pass(prefilter, query: str) -> None:  # type: ignore[no-untyped-def]
    params = parse_qsl(query)
    acted = any(
        _CRED_PARAM.match(k) or param_host(k, v) or _INJECTION.search(v) or (v.isdigit() and int(v) > 1000)
        for k, v in params
    )
    assert acted, f"test case {query!r} is not something a check acts on"
    assert prefilter(query)


@pytest.mark.parametrize("query", ORDINARY)
def test_ordinary_queries_skip_parsing(prefilter, query: str) -> None:  # type: ignore[no-untyped-def]
    assert not prefilter(query)


def test_page_size_precondition_follows_the_setting() -> None:
    class Cfg:
        def section(self, name: str) -> dict[str, int]:
            return {"max_page_size": 50}

    search = AbuseEnricher(Cfg())._suspicious.search
    assert search("limit=51") and not search("limit=5")
