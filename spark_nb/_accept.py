"""The one accept loop of the servers spark_nb runs (the local servers and the studio), and the room it leaves them.

asyncio's and tornado's own accept loops take a whole backlog (128 sockets) in one turn of the event loop, before
any of them is counted, and when the process runs out of descriptors they raise: a traceback on the server's
terminal (for the embedded server, in whichever notebook cell runs) on every turn, and asyncio stops accepting
for a second each time (under `ulimit -n 256` a slowloris made both print hundreds of tracebacks and fail the
owner's requests). Here a turn accepts at most a batch that scales with the descriptor limit, and running out of
descriptors makes room (the caller closes its longest-waiting connection), pauses accepting a moment and says so
in one line, at most once a minute. The servers' connection guards (`local/_connections`, `_studio_http`) keep
their connections within `room()` and evict by `longest_waiting()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import math
import resource
import socket
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

OUT_OF_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
MAX_BATCH = 128  # connections accepted in one turn of the event loop at most
MIN_BATCH = 4
MIN_CONNECTIONS = 16
GRACE_S = 1.0  # a connection this young has not had its turn to be read: it is closed only for want of any other
PAUSE_S = 0.5  # accepting pauses this long when descriptors run out
SAY_EVERY_S = 60.0
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Room:
    """How many connections a server may hold open, and how many it accepts in one turn of its event loop."""

    connections: int
    batch: int


def room(max_connections: int, process_reserve: int) -> Room:
    """The room under the soft RLIMIT_NOFILE. After a reserve for the process itself (process_reserve) and for two
    batches (one accepted before it is counted, one evicted and not yet closed), half of what is left (a connection
    may hold a file open too), at most max_connections; a batch of a sixteenth of the limit, at most a quarter of
    the connections (4 to 128), so that a client's fresh connection outlives a few turns of newcomers."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    batch = MAX_BATCH if soft == resource.RLIM_INFINITY else max(MIN_BATCH, min(MAX_BATCH, soft // 16))
    connections = max_connections
    if soft != resource.RLIM_INFINITY:
        connections = max(MIN_CONNECTIONS, min(max_connections, (soft - process_reserve - 2 * batch) // 2))
    return Room(connections, max(MIN_BATCH, min(batch, connections // 4)))


def longest_waiting(waiting: Iterable[tuple[float, str, T]], now: float | None = None) -> T | None:
    """Of (quiet since, state, connection) the one to close for a newcomer; None when none waits. Quiet since: when
    it began to owe something or last sent part of it (a client in the middle of an upload is not quiet). The state
    is "unread" (nothing read from it yet), "idle" (a keep-alive connection between requests) or "requesting"
    (part of a request came). First the one quiet longest in the middle of a request (an unread one quiet for
    GRACE_S counts), then the longest idle (its client may be sending its next request as it closes), and only
    when every one is fresh and unread (a burst) the oldest of those.

    A connection accepted a moment ago is waiting only because no turn of the event loop has read it yet: closing
    the oldest regardless let a churning peer close a client's fresh connection before its request was seen."""
    now = time.monotonic() if now is None else now

    def rank(item: tuple[float, str, T]) -> tuple[int, float]:
        since, state = item[0], item[1]
        if state == "unread" and now - since < GRACE_S:
            return 2, since
        return (1 if state == "idle" else 0), since

    chosen = min(waiting, key=rank, default=None)
    return chosen[2] if chosen is not None else None


class Acceptor:
    """Accepts connections on a listening socket in an asyncio event loop, handing each to on_connection: at most
    batch() a turn; out of descriptors, on_full() (close a connection), a pause and one line a minute."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listening: socket.socket,
                 on_connection: Callable[[socket.socket, object], None], *, batch: Callable[[], int],
                 on_full: Callable[[], None], logger: logging.Logger) -> None:
        self.loop, self.listening, self.on_connection = loop, listening, on_connection
        self.batch, self.on_full, self.logger = batch, on_full, logger
        self.paused = 0
        self._said_at = -math.inf
        self._resume: asyncio.TimerHandle | None = None
        self._stopped = False
        listening.setblocking(False)
        loop.add_reader(listening.fileno(), self._accept)

    def stop(self) -> None:
        """Accept no more (on the loop's thread)."""
        if not self._stopped:
            self._stopped = True
            if self._resume is not None:
                self._resume.cancel()
            else:
                self.loop.remove_reader(self.listening.fileno())

    def _accept(self) -> None:
        for _ in range(max(1, self.batch())):
            try:
                connection, address = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # the peer gave up while queued
                continue
            except OSError as exc:
                self._pause(exc)
                return
            self.on_connection(connection, address)

    def _pause(self, exc: OSError) -> None:
        """Stop accepting for PAUSE_S (the queued connections wait in the backlog), make room if descriptors ran
        out, and say so at most once a minute."""
        self.paused += 1
        self.loop.remove_reader(self.listening.fileno())
        self._resume = self.loop.call_later(PAUSE_S, self._listen_again)
        if exc.errno in OUT_OF_DESCRIPTORS:
            self.on_full()
            what = ("out of file descriptors: new connections wait, the longest-waiting ones are closed (raise "
                    "`ulimit -n`, or stop what holds them)")
        else:
            what = f"accepting a connection failed ({exc.strerror or exc}); trying again"
        if time.monotonic() - self._said_at > SAY_EVERY_S:
            self._said_at = time.monotonic()
            self.logger.error(what)

    def _listen_again(self) -> None:
        self._resume = None
        if not self._stopped:
            self.loop.add_reader(self.listening.fileno(), self._accept)
