"""The studio's HTTP server: tornado's, with the bounds a server on a shared machine needs and tornado leaves out.

tornado waits an hour for a request's headers and forever for its body, buffers 100 MB of a request's body before
any handler (or the token check) sees it, accepts connections until the process runs out of descriptors, and then
its accept loop raises EMFILE on every turn of the event loop, each with a traceback (4,200 half-open connections
under a limit of 4,096 descriptors shut the token holder out and wrote 248 MB of tracebacks in 75 s; 34
connections each sending 99 MB of a body took Voila to 3.4 GB). Here: a deadline for a request's headers (from the
connection's opening, or the end of its previous answer) and one for its body; a body of at most 64 KiB (the
studio's largest request over HTTP is its login form: files go over the kernel's websocket); at most `capacity()`
connections, and at that cap the one that has waited longest without sending its request (else the one longest
busy writing to a reader that takes nothing) is closed for the newcomer (one not read from yet only for want of
others), so an attacker only ever holds the oldest places; connections accepted by `_accept.Acceptor` (a batch a
turn, and when descriptors run out a pause and one line a minute). Buffered request data is thus bounded by
`capacity()` x (64 KiB of headers + 64 KiB of body). The studio's side of what `local/_connections` does for the
local servers.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPConnection, HTTPMessageDelegate
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

if TYPE_CHECKING:
    from tornado.platform.asyncio import BaseAsyncIOLoop

from ._accept import Acceptor, Room, longest_waiting, room

PROCESS_RESERVE = 192  # descriptors kept for kernels (their ZeroMQ sockets), files, and the process itself
HEADER_BYTES = 64 * 1024  # tornado's own bound on a request's headers
BODY_BYTES = 64 * 1024  # the login form is well under 1 KiB; the kernel's websocket messages are bounded apart
WEBSOCKET_MESSAGE_BYTES = 10 * 1024 * 1024  # tornado's default websocket_max_message_size, which the studio keeps
logger = logging.getLogger("spark_nb.studio")


@dataclasses.dataclass(frozen=True)
class StudioLimits:
    """How long a connection may take over its request's headers and body, how large a body may be, and how many
    connections may be open at once."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1000  # lowered further to stay under the file-descriptor limit (see capacity())
    max_body_bytes: int = BODY_BYTES


class GuardedHTTPServer(HTTPServer):
    """tornado's HTTPServer with header and body deadlines, a bound on a request's body, a bound on connections that
    evicts the longest-waiting one, and an accept loop that survives running out of descriptors quietly."""

    # tornado's options are passed by name here (limits= among them), not in its positional order
    def initialize(self, request_callback: Any, limits: StudioLimits = StudioLimits(),  # type: ignore[override]
                   **kwargs: Any) -> None:
        """As HTTPServer, with limits: a body over limits.max_body_bytes is refused (400) before it is read; the
        stream's buffer holds a websocket message (the kernel's channels: the token holder's only)."""
        super().initialize(request_callback, idle_connection_timeout=limits.header_timeout,
                           body_timeout=limits.body_timeout, max_header_size=HEADER_BYTES,
                           max_body_size=limits.max_body_bytes,
                           max_buffer_size=WEBSOCKET_MESSAGE_BYTES + HEADER_BYTES, **kwargs)
        self.limits = limits
        self.waiting: dict[IOStream, float | None] = {}  # open streams: since when each owes a request (None: not)
        self.busy_since: dict[IOStream, float] = {}
        self.closed_for = {"evicted": 0, "refused": 0, "out_of_descriptors": 0}

    def room(self) -> Room:
        """How many connections may be open and how many are accepted a turn (`_accept.room`)."""
        return room(self.limits.max_connections, PROCESS_RESERVE)

    def capacity(self) -> int:
        """How many connections may be open: max_connections, fewer under a low soft RLIMIT_NOFILE."""
        return self.room().connections

    def handle_stream(self, stream: IOStream, address: tuple[Any, ...]) -> None:
        """A new connection: it owes its first request's headers from now; over capacity, someone makes room."""
        self.waiting[stream] = time.monotonic()
        super().handle_stream(stream, address)
        self._admit(stream)

    def start_request(self, server_conn: object, request_conn: HTTPConnection) -> HTTPMessageDelegate:
        """A connection's next request: it owes the headers again until its body has come."""
        stream = getattr(server_conn, "stream", None)
        delegate = super().start_request(server_conn, request_conn)
        if stream is None:
            return delegate
        self.waiting[stream] = time.monotonic()
        self.busy_since.pop(stream, None)
        return _Watched(delegate, lambda: self._answering(stream), lambda: setattr(stream, "unparsed", False))

    def _answering(self, stream: IOStream) -> None:
        if stream in self.waiting:
            self.waiting[stream] = None
            self.busy_since[stream] = time.monotonic()

    def _admit(self, newcomer: IOStream) -> None:
        for gone in [s for s in self.waiting if s.closed()]:
            self.waiting.pop(gone, None)
            self.busy_since.pop(gone, None)
        if len(self.waiting) <= self.capacity():
            return
        victim = self._longest_waiting(newcomer)
        if victim is None:
            self._close(newcomer, "refused")
        else:
            self._close(victim, "evicted")

    def _longest_waiting(self, spare: IOStream | None = None) -> IOStream | None:
        """The connection quiet longest while it owes its request (`_accept.longest_waiting`: one not read from yet
        only when every one is fresh; never one whose whole headers came and wait to be parsed), else the one
        longest writing to a reader that takes nothing; never spare."""
        victim = longest_waiting((max(since, getattr(s, "heard_at", 0.0)),
                                  "requesting" if getattr(s, "heard", True) else "unread", s)
                                 for s, since in self.waiting.items()
                                 if since is not None and s is not spare and not getattr(s, "unparsed", False))
        if victim is not None:
            return victim
        stalled = [(since, s) for s, since in self.busy_since.items() if s is not spare and s.writing()]
        return min(stalled, key=lambda item: item[0])[1] if stalled else None

    def _close(self, stream: IOStream, reason: str) -> None:
        self.closed_for[reason] += 1
        self.waiting.pop(stream, None)
        self.busy_since.pop(stream, None)
        stream.close()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on sockets through `_accept.Acceptor` (tornado's accept loop raised, and was logged, on every turn
        once descriptors ran out)."""
        # tornado 6's IOLoop is always an asyncio one (BaseAsyncIOLoop), which IOLoop.current()'s type does not say
        loop = cast("BaseAsyncIOLoop", IOLoop.current()).asyncio_loop
        for sock in sockets:
            acceptor = Acceptor(loop, sock, self._connection, batch=lambda: self.room().batch,
                                on_full=self._out_of_descriptors, logger=logger)
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = acceptor.stop

    def _connection(self, connection: socket.socket, address: Any) -> None:
        """An accepted connection as tornado's `_handle_connection` makes it (no TLS here), its stream telling
        whether anything was read from it."""
        try:
            stream = _HeardStream(connection, max_buffer_size=self.max_buffer_size,
                                  read_chunk_size=self.read_chunk_size)
        except OSError:
            connection.close()
            return
        self.handle_stream(stream, address)

    def _out_of_descriptors(self) -> None:
        self.closed_for["out_of_descriptors"] += 1
        victim = self._longest_waiting()
        if victim is not None:
            self._close(victim, "evicted")


class _HeardStream(IOStream):
    """An IOStream that knows whether anything was read from its socket yet, and whether the end of a request's
    headers came and tornado has not parsed them yet (a request that is whole, not a slow one)."""

    heard = False
    heard_at = 0.0  # when data last came
    unparsed = False
    _tail = b""

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        """As IOStream's, noting what came."""
        count = super().read_from_fd(buf)
        if count:
            self.heard, self.heard_at = True, time.monotonic()
            data = self._tail + bytes(buf[:count])
            if b"\r\n\r\n" in data or b"\n\n" in data:
                self.unparsed = True
            self._tail = data[-3:]
        return count


class _Watched(HTTPMessageDelegate):
    """A request's delegate that tells its server when the request's headers were parsed and when the request has
    come whole (the answer is being made)."""

    def __init__(self, delegate: HTTPMessageDelegate, answering: Callable[[], None],
                 parsed: Callable[[], None]) -> None:
        self.delegate = delegate
        self.answering = answering
        self.parsed = parsed

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        self.parsed()
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.answering()
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()
