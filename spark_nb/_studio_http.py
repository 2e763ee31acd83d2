"""The studio's HTTP server: tornado's, with the bounds a server on a shared machine needs and tornado leaves out.

tornado waits an hour for a request's headers and forever for its body, accepts connections until the process runs
out of descriptors, and then its accept loop raises EMFILE on every turn of the event loop, each with a traceback
(4,200 half-open connections under a limit of 4,096 descriptors shut the token holder out and wrote 248 MB of
tracebacks in 75 s). Here: a deadline for a request's headers (from the connection's opening, or the end of its
previous answer) and one for its body; at most `capacity()` connections, and at that cap the one that has waited
longest without sending its request (else the one longest busy writing to a reader that takes nothing) is closed
for the newcomer, so an attacker only ever holds the oldest places; and if descriptors run out all the same
(another part of the process holds them), accepting pauses a moment and one line says so, at most once a minute.
The studio's side of what `local/_connections` does for the local servers.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPConnection, HTTPMessageDelegate
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

FD_RESERVE = 256  # descriptors kept for kernels (their ZeroMQ sockets), files, and the process itself
MIN_CONNECTIONS = 16
ACCEPT_BATCH = 128  # connections accepted in one turn of the event loop at most
PAUSE_S = 0.5  # accepting pauses this long when descriptors run out
SAY_EVERY_S = 60.0
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
logger = logging.getLogger("spark_nb.studio")


@dataclasses.dataclass(frozen=True)
class StudioLimits:
    """How long a connection may take over its request's headers and body, and how many may be open at once."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1000  # lowered further to stay under the file-descriptor limit (see capacity())


class GuardedHTTPServer(HTTPServer):
    """tornado's HTTPServer with header and body deadlines, a bound on connections that evicts the longest-waiting
    one, and an accept loop that survives running out of descriptors quietly."""

    # tornado's options are passed by name here (limits= among them), not in its positional order
    def initialize(self, request_callback: Any, limits: StudioLimits = StudioLimits(),  # type: ignore[override]
                   **kwargs: Any) -> None:
        """As HTTPServer, with limits."""
        super().initialize(request_callback, idle_connection_timeout=limits.header_timeout,
                           body_timeout=limits.body_timeout, **kwargs)
        self.limits = limits
        self.waiting: dict[IOStream, float | None] = {}  # open streams: since when each owes a request (None: not)
        self.busy_since: dict[IOStream, float] = {}
        self.closed_for = {"evicted": 0, "refused": 0, "out_of_descriptors": 0}
        self._said_at = -math.inf

    def capacity(self) -> int:
        """How many connections may be open: max_connections, and half of the descriptors left under the soft
        RLIMIT_NOFILE after a reserve."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.limits.max_connections
        return max(MIN_CONNECTIONS, min(self.limits.max_connections, (soft - FD_RESERVE) // 2))

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
        return _Watched(delegate, lambda: self._answering(stream))

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
        """The connection waited on longest for its request, else the one longest writing to a reader that takes
        nothing; never spare (the newcomer)."""
        waiting = [(since, s) for s, since in self.waiting.items() if since is not None and s is not spare]
        if waiting:
            return min(waiting, key=lambda item: item[0])[1]
        stalled = [(since, s) for s, since in self.busy_since.items() if s is not spare and s.writing()]
        return min(stalled, key=lambda item: item[0])[1] if stalled else None

    def _close(self, stream: IOStream, reason: str) -> None:
        self.closed_for[reason] += 1
        self.waiting.pop(stream, None)
        self.busy_since.pop(stream, None)
        stream.close()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on sockets with this server's own accept loop (see _accept_on)."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = self._accept_on(sock)

    def _accept_on(self, sock: socket.socket) -> Callable[[], None]:
        """tornado's accept loop, but out of descriptors it closes the longest-waiting connection, pauses
        accepting for PAUSE_S and says so at most once a minute (tornado's raised, and was logged, on every turn)."""
        loop = IOLoop.current()
        state = {"removed": False, "listening": True}

        def resume() -> None:
            if not state["removed"] and not state["listening"]:
                loop.add_handler(sock, accept, IOLoop.READ)
                state["listening"] = True

        def accept(fd: Any, events: int) -> None:
            for _ in range(ACCEPT_BATCH):
                try:
                    connection, address = sock.accept()
                except BlockingIOError:
                    return
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    if exc.errno not in _OUT_OF_DESCRIPTORS:
                        raise
                    self._out_of_descriptors()
                    loop.remove_handler(sock)
                    state["listening"] = False
                    loop.call_later(PAUSE_S, resume)
                    return
                self._handle_connection(connection, address)

        def remove() -> None:
            if state["listening"]:
                loop.remove_handler(sock)
            state["removed"], state["listening"] = True, False

        loop.add_handler(sock, accept, IOLoop.READ)
        return remove

    def _out_of_descriptors(self) -> None:
        self.closed_for["out_of_descriptors"] += 1
        victim = self._longest_waiting()
        if victim is not None:
            self._close(victim, "evicted")
        if time.monotonic() - self._said_at > SAY_EVERY_S:
            self._said_at = time.monotonic()
            logger.error("out of file descriptors: new connections wait, the longest-waiting ones are closed "
                         "(raise `ulimit -n`, or stop what holds them)")


class _Watched(HTTPMessageDelegate):
    """A request's delegate that tells its server when the request has come whole (the answer is being made)."""

    def __init__(self, delegate: HTTPMessageDelegate, answering: Callable[[], None]) -> None:
        self.delegate = delegate
        self.answering = answering

    def headers_received(self, start_line: Any, headers: Any) -> Any:
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        return self.delegate.data_received(chunk)

    def finish(self) -> None:
        self.answering()
        self.delegate.finish()

    def on_connection_close(self) -> None:
        self.delegate.on_connection_close()
