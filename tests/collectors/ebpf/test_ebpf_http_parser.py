"""The HTTP/1.x stream parser and request/response pairing, without root."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.ebpf.http_parser import ExchangeAssembler, HttpExchange, MessageStream

from .corpus import (
    CHUNKED_EXT,
    EXPECT_CONTINUE,
    GET_KEEPALIVE,
    HEAD,
    HTTP10_CLOSE,
    PIPELINED,
    POST_CL,
    STREAMS,
    UPGRADE,
)


def run(
    client: bytes,
    server: bytes,
    client_cuts: list[int] | None = None,
    server_cuts: list[int] | None = None,
    *,
    body_limit: int = 4096,
) -> list[HttpExchange]:
    """Feed a server-side connection: requests read in pieces, then responses written."""
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=True, on_exchange=out.append, body_limit=body_limit)
    for piece in _pieces(client, client_cuts):
        asm.feed(True, piece, 0)
    for piece in _pieces(server, server_cuts):
        asm.feed(False, piece, 0)
    asm.close(0)
    return out


def _pieces(data: bytes, cuts: list[int] | None) -> list[bytes]:
    points = sorted({c for c in (cuts or []) if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def test_get_keepalive() -> None:
    (ex,) = run(*GET_KEEPALIVE)
    req, resp = ex.request, ex.response
    assert resp is not None
    assert (req.method, req.target, req.version) == ("GET", "/items?id=7&x=1", "1.1")
    assert req.header("host") == "api.local:8080"
    assert req.header("TRACEPARENT", ) is not None
    assert (resp.status, resp.reason, resp.body, resp.body_size) == (200, "OK", b'{"id": 7, "a"', 13)
    assert req.complete and resp.complete and not resp.body_truncated


def test_post_content_length_body_excerpt() -> None:
    (ex,) = run(*POST_CL)
    assert ex.request.body == b'{"name":"ann","ssn":"x-1"}\n'
    assert ex.request.body_size == 27
    assert ex.response is not None and ex.response.status == 201


def test_body_limit_truncates_excerpt_and_counts_all() -> None:
    (ex,) = run(*POST_CL, body_limit=5)
    assert ex.request.body == b'{"nam'
    assert ex.request.body_size == 27
    assert ex.request.body_truncated


def test_chunked_with_extensions_and_trailers() -> None:
    (ex,) = run(*CHUNKED_EXT)
    assert ex.request.body == b"hello world"
    assert ex.request.body_size == 11
    assert ("X-Trailer", "t") not in ex.request.headers
    assert ex.response is not None and ex.response.body == b"abcdefg"


def test_pipelined_requests_pair_in_order() -> None:
    got = [(e.request.method, e.request.target, e.response.status if e.response else 0) for e in run(*PIPELINED)]
    assert got == [("GET", "/a", 200), ("GET", "/b", 404), ("POST", "/c", 500)]


def test_expect_continue_records_interim_response() -> None:
    (ex,) = run(*EXPECT_CONTINUE)
    assert ex.interim == (100,)
    assert ex.response is not None and ex.response.status == 204
    assert ex.request.body == b"data"


def test_head_response_has_no_body() -> None:
    exs = run(*HEAD)
    assert [(e.request.method, e.response.status if e.response else 0) for e in exs] == [
        ("HEAD", 200),
        ("GET", 200),
    ]
    assert exs[0].response is not None and exs[0].response.body_size == 0
    assert exs[1].response is not None and exs[1].response.body == b"hi"


def test_upgrade_stops_parsing() -> None:
    exs = run(*UPGRADE)
    assert len(exs) == 1
    assert exs[0].response is not None and exs[0].response.status == 101
    assert exs[0].request.upgrade


def test_body_delimited_by_close() -> None:
    (ex,) = run(*HTTP10_CLOSE)
    assert ex.response is not None
    assert ex.response.body == b"until the end"
    assert not ex.response.complete  # the close ended it; nothing said how long it was


def test_request_without_response_is_reported_at_close() -> None:
    (ex,) = run(GET_KEEPALIVE[0], b"")
    assert ex.response is None and ex.request.target == "/items?id=7&x=1"


def test_timestamps_come_from_the_events() -> None:
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=False, on_exchange=out.append)
    client, server = POST_CL
    asm.feed(False, client[:20], 100)  # client side: requests are written
    asm.feed(False, client[20:], 110)
    asm.feed(True, server[:10], 150)
    asm.feed(True, server[10:], 170)
    (ex,) = out
    assert (ex.request.start_ns, ex.request.end_ns) == (100, 110)
    assert ex.response is not None and (ex.response.start_ns, ex.response.end_ns) == (150, 170)


# --------------------------------------------------------------- broken captures


def test_truncated_capture_inside_known_body_keeps_the_stream() -> None:
    client, server = POST_CL
    head_end = client.index(b"\r\n\r\n") + 4
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=True, on_exchange=out.append)
    # The read moved the whole request but only head + 4 body bytes were captured.
    asm.feed(True, client[: head_end + 4], 1, missing=len(client) - head_end - 4)
    asm.feed(False, server, 2)
    asm.feed(True, GET_KEEPALIVE[0], 3)
    asm.feed(False, GET_KEEPALIVE[1], 4)
    assert [e.request.target for e in out] == ["/users", "/items?id=7&x=1"]
    first = out[0].request
    assert first.body == client[head_end : head_end + 4]
    assert first.body_size == 27 and first.body_truncated and first.complete


def test_truncated_capture_in_chunked_body_resyncs_on_next_message() -> None:
    client, server = CHUNKED_EXT
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=True, on_exchange=out.append)
    asm.feed(True, client[:70], 1, missing=len(client) - 70)
    asm.feed(False, server, 2)
    asm.feed(True, GET_KEEPALIVE[0], 3)
    asm.feed(False, GET_KEEPALIVE[1], 4)
    assert [e.request.target for e in out] == ["/upload", "/items?id=7&x=1"]
    assert not out[0].request.complete
    assert out[1].response is not None and out[1].response.status == 200


def test_lost_events_restart_pairing() -> None:
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=True, on_exchange=out.append)
    asm.feed(True, PIPELINED[0][:10], 1)
    asm.gap()
    asm.feed(False, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA", 2)  # answers an unseen request
    asm.feed(True, POST_CL[0], 3)
    asm.feed(False, POST_CL[1], 4)
    assert [(e.request.target, e.response.status if e.response else 0) for e in out] == [
        ("/users", 201)
    ]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /x HTTP/9.9\r\nHost: h\r\n\r\n", id="bad-version"),
        pytest.param(b"BREW /pot HTTP/1.1\r\nHost: h\r\n\r\n", id="unknown-method"),
        pytest.param(b"GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", id="space-in-target"),
        pytest.param(b"GET /x HTTP/1.1\r\nBad Header\r\n\r\n", id="header-without-colon"),
        pytest.param(b"get /x HTTP/1.1\r\n\r\n", id="lowercase-method"),
    ],
)
def test_malformed_request_lines_yield_nothing_and_recover(request_bytes: bytes) -> None:
    out: list[HttpExchange] = []
    asm = ExchangeAssembler(server=True, on_exchange=out.append)
    asm.feed(True, request_bytes, 1)
    asm.feed(True, GET_KEEPALIVE[0], 2)
    asm.feed(False, GET_KEEPALIVE[1], 3)
    assert [e.request.target for e in out] == ["/items?id=7&x=1"]


def test_non_http_is_dropped_quickly() -> None:
    seen: list[object] = []
    stream = MessageStream(True, seen.append)
    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40)
    for _ in range(3):
        stream.feed(tls_hello, 0)
    assert stream.dead and not seen
    stream.feed(GET_KEEPALIVE[0], 0)  # dead streams stay dead
    assert not seen


# ------------------------------------------------------------------- splitting


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_split_at_every_byte_boundary(name: str) -> None:
    client, server = STREAMS[name]
    whole = run(client, server)
    assert whole
    for i in range(1, len(client)):
        assert run(client, server, client_cuts=[i]) == whole, (name, "client", i)
    for i in range(1, len(server)):
        assert run(client, server, server_cuts=[i]) == whole, (name, "server", i)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(STREAMS)),
    client_cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12),
    server_cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=12),
)
def test_splitting_anywhere_yields_the_same_exchanges(
    name: str, client_cuts: list[int], server_cuts: list[int]
) -> None:
    client, server = STREAMS[name]
    assert run(client, server, client_cuts, server_cuts) == run(client, server)
