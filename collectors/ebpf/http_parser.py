"""HTTP/1.x from captured byte streams, on ``httptools`` (llhttp).

Pure and testable without root: the eBPF collector feeds the bytes each
traced read/write moved, in order, per connection and direction, with the
kernel timestamp and the number of bytes the capture could not copy.

* :class:`MessageStream` turns one direction into messages: keep-alive and
  pipelining, chunked and content-length bodies (the excerpt keeps the first
  ``body_limit`` decoded bytes and counts the rest), ``HEAD`` responses,
  ``Upgrade`` (parsing stops), captures cut short (a known body length is
  skipped over; otherwise the message is reported partial and the stream waits
  for the next message start), and non-HTTP traffic (given up after a few
  tries).
* :class:`ExchangeAssembler` pairs requests with responses on one connection
  (1xx interim responses such as ``100 Continue`` are recorded on the exchange,
  not paired) and reports :class:`HttpExchange` objects.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools
from httptools import HttpParserError, HttpParserUpgrade

_METHODS = (
    b"GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|TRACE|CONNECT|PROPFIND|PROPPATCH|MKCOL|"
    b"COPY|MOVE|LOCK|UNLOCK|SEARCH|REPORT|PURGE|LINK|UNLINK|MKCALENDAR|QUERY"
)
_REQUEST_START = re.compile(rb"(?:" + _METHODS + rb") [^\s]")
_RESPONSE_START = re.compile(rb"HTTP/1\.[01] \d")
_PROBE_BYTES = 16
_MAX_FAILED_PROBES = 3
_MAX_PENDING = 64
_MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """One request or response as seen on the wire.

    ``body`` is an excerpt (the first bytes of the decoded body); ``body_size``
    the number of body bytes that went by; ``body_truncated`` says the excerpt
    is shorter than the body (limit reached or bytes not captured).
    ``complete`` is ``False`` when the capture ended or broke mid-message.
    """

    is_request: bool
    method: str = ""
    target: str = ""
    status: int = 0
    reason: str = ""
    version: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    body_size: int = 0
    body_truncated: bool = False
    complete: bool = True
    upgrade: bool = False
    start_ns: int = 0
    end_ns: int = 0

    def header(self, name: str) -> str | None:
        """First value of a header (name case-insensitive), or ``None``."""
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


@dataclass(frozen=True, slots=True)
class HttpExchange:
    """A request and its response (``None`` when none was seen)."""

    request: HttpMessage
    response: HttpMessage | None
    interim: tuple[int, ...] = ()  # 1xx status codes seen before the final response


@dataclass(slots=True)
class _Builder:
    is_request: bool
    start_ns: int
    index: int = 0
    target: bytearray = field(default_factory=bytearray)
    reason: bytearray = field(default_factory=bytearray)
    headers: list[tuple[str, str]] = field(default_factory=list)
    header_bytes: int = 0
    headers_done: bool = False
    method: str = ""
    status: int = 0
    version: str = ""
    body: bytearray = field(default_factory=bytearray)
    body_size: int = 0
    body_truncated: bool = False
    content_length: int | None = None
    upgrade: bool = False
    end_ns: int = 0

    def freeze(self, complete: bool) -> HttpMessage:
        return HttpMessage(
            is_request=self.is_request,
            method=self.method,
            target=self.target.decode("latin-1"),
            status=self.status,
            reason=self.reason.decode("latin-1"),
            version=self.version,
            headers=tuple(self.headers),
            body=bytes(self.body),
            body_size=self.body_size,
            body_truncated=self.body_truncated or not complete,
            complete=complete,
            upgrade=self.upgrade,
            start_ns=self.start_ns,
            end_ns=self.end_ns or self.start_ns,
        )


class MessageStream:
    """Messages of one direction of one connection.

    ``on_headers`` is called when a message's headers are complete (requests are
    queued for pairing then), ``on_message`` when it is complete or given up.
    ``no_body_next`` tells a response stream that the next response answers a
    ``HEAD`` request and so has no body whatever its headers say.
    """

    __slots__ = (
        "is_request",
        "body_limit",
        "_on_headers",
        "_on_message",
        "_no_body_next",
        "_parser",
        "_cur",
        "_ts",
        "_state",
        "_probe",
        "_probe_parts",
        "_failed_probes",
        "_messages",
        "_filler",
        "_head_buf",
        "_begun",
        "current_index",
    )

    def __init__(
        self,
        is_request: bool,
        on_message: Callable[[HttpMessage], None],
        on_headers: Callable[[HttpMessage], None] | None = None,
        *,
        body_limit: int = 4096,
        no_body_next: Callable[[], bool] | None = None,
    ) -> None:
        self.is_request = is_request
        self.body_limit = body_limit
        self._on_message = on_message
        self._on_headers = on_headers
        self._no_body_next = no_body_next
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None
        self._cur: _Builder | None = None
        self._ts = 0
        self._state = "probe"  # probe | sync | resync | dead
        self._probe = bytearray()
        self._probe_parts: list[tuple[bytes, int]] = []
        self._failed_probes = 0
        self._messages = 0
        self._filler = False
        self._head_buf: bytearray | None = None
        self._begun = 0
        #: Index (1-based, in stream order) of the message a callback is about.
        self.current_index = 0

    # ------------------------------------------------------------- state

    @property
    def dead(self) -> bool:
        return self._state == "dead"

    @property
    def messages(self) -> int:
        return self._messages

    def _new_parser(self) -> None:
        if self.is_request:
            self._parser = httptools.HttpRequestParser(self)
        else:
            self._parser = httptools.HttpResponseParser(self)
        self._cur = None
        self._head_buf = None

    def stop(self) -> None:
        """Parse nothing more on this stream (after a protocol switch)."""
        self._state = "dead"
        self._parser = None
        self._cur = None

    # ------------------------------------------------------ feeding bytes

    def feed(self, data: bytes, ts_ns: int, missing: int = 0) -> None:
        """Bytes of one captured call, then ``missing`` bytes that were not captured."""
        state = self._state
        if state == "dead":
            return
        self._ts = ts_ns
        if state == "resync":
            self._probe.clear()
            self._probe_parts = []
            self._state = state = "probe"
        if state == "probe":
            self._probe += data
            self._probe_parts.append((data, ts_ns))
            decided = len(self._probe) >= _PROBE_BYTES or b"\n" in self._probe
            if not decided:
                if missing:
                    self._probe_failed()
                return
            pattern = _REQUEST_START if self.is_request else _RESPONSE_START
            if not pattern.match(self._probe):
                self._probe_failed()
                return
            parts = self._probe_parts
            self._probe_parts = []
            self._probe.clear()
            self._state = "sync"
            self._new_parser()
            for piece, ts in parts[:-1]:
                self._ts = ts
                self._feed_sync(piece)
            self._ts = ts_ns
        self._feed_sync(data)
        if missing and self._state == "sync":
            self._skip(missing)

    def _probe_failed(self) -> None:
        self._probe.clear()
        self._probe_parts = []
        self._failed_probes += 1
        if self._messages == 0 and self._failed_probes >= _MAX_FAILED_PROBES:
            self._state = "dead"
        else:
            self._state = "resync"

    def _feed_sync(self, data: bytes) -> None:
        while data and self._state == "sync":
            if self._head_buf is not None or (
                self._cur is None and self._no_body_next is not None and self._no_body_next()
            ):
                data = self._feed_headers_only(data)
                continue
            parser = self._parser
            assert parser is not None
            try:
                parser.feed_data(data)
            except HttpParserUpgrade:
                cur = self._cur
                if cur is not None:
                    cur.upgrade = True
                    if cur.headers_done and cur.end_ns == 0:
                        self._complete(True)
                self._after_upgrade()
                return
            except HttpParserError:
                self._give_up_message()
                return
            data = b""

    def _feed_headers_only(self, data: bytes) -> bytes:
        """A response to HEAD: its headers end the message, whatever they announce."""
        buf = self._head_buf if self._head_buf is not None else bytearray()
        start = max(0, len(buf) - 3)
        buf += data
        end = buf.find(b"\r\n\r\n", start)
        if end < 0:
            if len(buf) > _MAX_HEADER_BYTES:
                self._give_up_message()
                return b""
            self._head_buf = buf
            if self._cur is None:
                self._begun += 1
                self._cur = _Builder(is_request=False, start_ns=self._ts, index=self._begun)
            return b""
        head, rest = bytes(buf[: end + 4]), bytes(buf[end + 4 :])
        self._head_buf = None
        kept = self._cur
        self._new_parser()
        self._cur = kept
        assert self._parser is not None
        try:
            self._parser.feed_data(head)
        except HttpParserError:
            self._give_up_message()
            return b""
        cur = self._cur
        if cur is not None and cur.end_ns == 0:
            cur.end_ns = self._ts
            self._complete(True)
        self._new_parser()
        return rest

    def _skip(self, missing: int) -> None:
        """Bytes went by uncaptured: skip them inside a body of known length, else resync."""
        cur = self._cur
        if cur is not None and cur.headers_done and cur.content_length is not None:
            remaining = cur.content_length - cur.body_size
            if 0 < missing <= remaining:
                cur.body_truncated = True
                self._filler = True
                try:
                    self._feed_sync(bytes(missing))
                finally:
                    self._filler = False
                return
        self._give_up_message()

    def gap(self) -> None:
        """Events of this connection were lost: report what is open as partial, resync."""
        if self._state == "dead":
            return
        self._give_up_message()

    def close(self, ts_ns: int) -> None:
        """The connection closed: a body delimited by the close ends here."""
        if self._state != "sync" or self._cur is None or self._parser is None:
            return
        self._ts = ts_ns
        try:
            self._parser.feed_data(b"")
        except HttpParserError:
            pass
        if self._cur is not None and self._cur.headers_done:
            self._cur.end_ns = ts_ns
            self._complete(False)

    def _give_up_message(self) -> None:
        cur = self._cur
        if cur is not None and cur.headers_done:
            cur.end_ns = self._ts
            self._complete(False)
        self._cur = None
        self._parser = None
        self._state = "resync"

    def _after_upgrade(self) -> None:
        if self.is_request:
            # The server may decline the upgrade; look for the next request.
            self._parser = None
            self._cur = None
            self._state = "resync"
        else:
            self.stop()

    def _complete(self, complete: bool) -> None:
        cur = self._cur
        assert cur is not None
        self._cur = None
        self._messages += 1
        self.current_index = cur.index
        self._on_message(cur.freeze(complete))

    # --------------------------------------------------- httptools protocol

    def on_message_begin(self) -> None:
        if self._cur is not None and self._cur.end_ns == 0 and not self._cur.headers_done:
            self._cur.start_ns = min(self._cur.start_ns, self._ts)
            return  # began in _feed_headers_only
        self._begun += 1
        self._cur = _Builder(is_request=self.is_request, start_ns=self._ts, index=self._begun)

    def on_url(self, url: bytes) -> None:
        if self._cur is not None:
            self._cur.target += url

    def on_status(self, status: bytes) -> None:
        if self._cur is not None:
            self._cur.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        cur = self._cur
        if cur is None or cur.headers_done:
            return  # trailers of a chunked body
        cur.header_bytes += len(name) + len(value)
        if cur.header_bytes > _MAX_HEADER_BYTES:
            return
        n = name.decode("latin-1")
        cur.headers.append((n, value.decode("latin-1")))
        if n.lower() == "content-length":
            try:
                cur.content_length = int(value)
            except ValueError:
                cur.content_length = None

    def on_headers_complete(self) -> None:
        cur = self._cur
        parser = self._parser
        if cur is None or parser is None:
            return
        cur.headers_done = True
        cur.version = parser.get_http_version()
        if isinstance(parser, httptools.HttpRequestParser):
            cur.method = parser.get_method().decode("ascii", "replace")
        else:
            cur.status = parser.get_status_code()
        cur.upgrade = bool(parser.should_upgrade())
        self.current_index = cur.index
        if self._on_headers is not None:
            self._on_headers(cur.freeze(True))

    def on_body(self, body: bytes) -> None:
        cur = self._cur
        if cur is None:
            return
        cur.body_size += len(body)
        if self._filler:
            return
        room = self.body_limit - len(cur.body)
        if room > 0:
            cur.body += body[:room]
            if len(body) > room:
                cur.body_truncated = True
        else:
            cur.body_truncated = True

    def on_message_complete(self) -> None:
        cur = self._cur
        if cur is None:
            return
        cur.end_ns = self._ts
        self._complete(True)


class ExchangeAssembler:
    """Request/response pairing on one connection.

    ``server`` says which side the bytes were captured on: on a server
    (accepted) connection requests are read and responses written; on a
    client (connected) connection the other way round.
    """

    __slots__ = (
        "server", "_on_exchange", "_on_request", "_pending", "_interim", "requests", "responses"
    )

    def __init__(
        self,
        server: bool,
        on_exchange: Callable[[HttpExchange], None],
        *,
        body_limit: int = 4096,
        on_request: Callable[[HttpMessage], None] | None = None,
    ) -> None:
        self.server = server
        self._on_exchange = on_exchange
        #: Called with a request's head as soon as its headers are parsed.
        self._on_request = on_request
        self._pending: deque[tuple[int, HttpMessage]] = deque()
        self._interim: list[int] = []
        self.requests = MessageStream(
            True, self._request_done, self._request_headers, body_limit=body_limit
        )
        self.responses = MessageStream(
            False, self._response_done, body_limit=body_limit, no_body_next=self._head_next
        )

    @property
    def dead(self) -> bool:
        return self.requests.dead and self.responses.dead

    def feed(self, inbound: bool, data: bytes, ts_ns: int, missing: int = 0) -> None:
        """Bytes read (``inbound``) or written by the traced process on this connection."""
        is_request = inbound if self.server else not inbound
        stream = self.requests if is_request else self.responses
        stream.feed(data, ts_ns, missing)

    def gap(self) -> None:
        """Events were lost on this connection: pairing restarts from the next messages."""
        self.requests.gap()
        self.responses.gap()
        self._pending.clear()
        self._interim.clear()

    def close(self, ts_ns: int) -> None:
        """The connection closed: finish bodies delimited by the close, flush requests."""
        self.requests.close(ts_ns)
        self.responses.close(ts_ns)
        while self._pending:
            _, req = self._pending.popleft()
            self._on_exchange(HttpExchange(req, None, tuple(self._interim)))
            self._interim = []

    def _head_next(self) -> bool:
        return bool(self._pending) and self._pending[0][1].method == "HEAD"

    def _request_headers(self, msg: HttpMessage) -> None:
        if len(self._pending) >= _MAX_PENDING:
            self._pending.popleft()
        self._pending.append((self.requests.current_index, msg))
        if self._on_request is not None:
            self._on_request(msg)

    def _request_done(self, msg: HttpMessage) -> None:
        # Replace the snapshot queued at headers-complete with the full message.
        index = self.requests.current_index
        for i, (idx, _) in enumerate(self._pending):
            if idx == index:
                self._pending[i] = (idx, msg)
                return

    def _response_done(self, msg: HttpMessage) -> None:
        if 100 <= msg.status < 200 and msg.status != 101 and msg.complete:
            self._interim.append(msg.status)
            return
        if not self._pending:
            self._interim.clear()
            return
        _, req = self._pending.popleft()
        interim = tuple(self._interim)
        self._interim = []
        self._on_exchange(HttpExchange(req, msg, interim))
        if msg.status == 101 or (req.method == "CONNECT" and 200 <= msg.status < 300):
            self.requests.stop()
            self.responses.stop()
