"""Byte streams for the HTTP parser tests: (name, client bytes, server bytes).

Written by hand to cover what the parser must handle on real connections.
"""

from __future__ import annotations

GET_KEEPALIVE = (
    b"GET /items?id=7&x=1 HTTP/1.1\r\nHost: api.local:8080\r\nUser-Agent: t/1\r\n"
    b"Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
    b'{"id": 7, "a"',
)

POST_CL = (
    b"POST /users HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
    b'Content-Length: 27\r\n\r\n{"name":"ann","ssn":"x-1"}\n',
    b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
)

CHUNKED_EXT = (
    b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n6;x=\"q\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n4;ext\r\ndefg\r\n0\r\n\r\n",
)

PIPELINED = (
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
    b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
    b"POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA"
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB"
    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1\r\n\r\nC",
)

EXPECT_CONTINUE = (
    b"PUT /blob HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    b"data",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
)

HEAD = (
    b"HEAD /big HTTP/1.1\r\nHost: h\r\n\r\nGET /small HTTP/1.1\r\nHost: h\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
)

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    b"\x81\x85GET / HTTP/1.1 not http",
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    b"\x81\x05hello",
)

HTTP10_CLOSE = (
    b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
)

# name -> (client bytes, server bytes)
STREAMS = {
    "get_keepalive": GET_KEEPALIVE,
    "post_content_length": POST_CL,
    "chunked_extensions": CHUNKED_EXT,
    "pipelined": PIPELINED,
    "expect_continue": EXPECT_CONTINUE,
    "head": HEAD,
    "upgrade": UPGRADE,
    "http10_close": HTTP10_CLOSE,
}
