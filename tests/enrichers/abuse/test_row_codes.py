"""Rows keep endpoint and principal codes until compaction: the code books that
resolve them may be reset (bounded caches) while a window is open, and the
window must come out the same."""

from __future__ import annotations

from typing import Any

from enrichers.abuse.enricher import _compact_open
from enrichers.abuse.identity import NOBODY, Principal
from enrichers.abuse.rows import Codebook, Rows
from tests.enrichers.abuse.spans import SEC, T0, Runner, benign, server


def _who(client: str, uac: str = "browser", auth: int = 1) -> Principal:
    return Principal(client=client, principal="", has_credentials=bool(auth), token_hash="", uac=uac, auth=auth)


def test_rows_resolve_codes_across_a_code_book_reset() -> None:
    eps, whos = Codebook(), Codebook(NOBODY)
    rows = Rows(eps, whos)
    a_ts, a_end, a_ep, a_who, a_st, a_sz, a_oid, a_tr = rows.appenders()

    def add(t: int, ep: int, who: int, size: int = -1, trace: str = "") -> None:
        for append, v in zip((a_ts, a_end, a_ep, a_who, a_st, a_sz, a_oid, a_tr),
                             (t, t + 2_000_000, ep, who, 200, size, "", trace), strict=True):
            append(v)

    get, put = eps.add("api GET /a"), eps.add("api GET /b")
    alice, bob = whos.add(_who("user:alice")), whos.add(_who("ip:203.0.113.9", uac="tool", auth=0))
    add(1, get, alice, 10, "t1")
    add(2, put, bob, trace="t2")
    add(3, get, NOBODY.code, 5)
    rows.compact()  # what the owner does before it resets a book
    eps.reset()
    whos.reset()
    assert len(whos) == 1 and whos.values[0] is NOBODY
    # New codes, one of them naming an endpoint seen before the reset.
    again, carol = eps.add("api GET /b"), whos.add(_who("user:carol"))
    add(4, again, carol, 7, "t4")
    add(5, again, alice := whos.add(_who("user:alice")))  # a new Principal for a known client
    df = rows.frame()
    assert df["ep"].tolist() == ["api GET /a", "api GET /b", "api GET /a", "api GET /b", "api GET /b"]
    assert df["client"].tolist() == ["user:alice", "ip:203.0.113.9", "", "user:carol", "user:alice"]
    assert df["uac"].tolist() == ["browser", "tool", "", "browser", "browser"]
    assert df["auth"].tolist() == [1, 0, -1, 1, 1]
    assert df["size"].tolist() == [10, -1, 5, 7, -1]
    assert df["dur"].tolist() == [2.0] * 5
    assert df["trace"].tolist() == ["t1", "t2", "", "t4", ""]
    codes = rows.codes
    assert codes is not None
    assert list(codes.ep_uni) == ["api GET /a", "api GET /b"] and codes.ep.tolist() == [0, 1, 0, 1, 1]
    assert list(codes.client_uni) == ["user:alice", "ip:203.0.113.9", "", "user:carol"]
    assert codes.client.tolist() == [0, 1, 2, 3, 0]


def _signups(start: float, n: int) -> list[Any]:
    return [server(start + i * 0.5, "/signup", route="/signup", method="POST", ip="192.0.2.12",
                   ua="python-requests/2.31") for i in range(n)]


def test_forgetting_cached_endpoints_and_principals_in_an_open_window_changes_no_finding() -> None:
    def findings(forget: bool) -> list[tuple[Any, ...]]:
        spans = sorted(benign(115) + _signups(90, 60), key=lambda s: s.start_ns)
        cut = next(i for i, s in enumerate(spans) if s.start_ns >= T0 + 100 * SEC)
        r = Runner()
        r.feed(spans[:cut])
        if forget:
            st = r.enricher.state(r.state)
            assert any(rows.pending for rows in st.rows.values())
            r.enricher._forget_endpoints(st)  # as when the endpoint cache is full
            assert not any(rows.pending for rows in st.rows.values())
            assert r.enricher._identifier is not None
            _compact_open(st)
            r.enricher._identifier.forget()  # as when the principal code book is full
        r.feed(spans[cut:])
        return sorted((f.rule, repr(f.subject), f.count, f.first_seen_ns, f.last_seen_ns) for f in r.findings())

    plain = findings(False)
    assert any(rule.startswith("abuse.") for rule, *_ in plain)
    assert findings(True) == plain
