"""The local server's connections, bounded: slow and numerous peers cannot starve well-behaved ones.

uvicorn's h11 protocol waits forever for a request's headers and body, and its `limit_concurrency` answers 503 to
everyone once idle connections fill it. Here every connection has a deadline for what it owes (its headers from
its opening or its request's first byte, then its body; a reader that takes nothing of an answer for too long),
and their number stays below the file-descriptor limit (`_accept.room`): at the cap, the connection quiet longest
without completing its request (or stalled longest reading its answer) is closed to make room, not the newcomer;
one nothing was read from yet only when every one is that fresh (`_accept.longest_waiting`). A peer holding or
churning hundreds of half-open connections thus only ever holds the oldest places, and a client that sends its
request at once is served.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .._accept import Room, longest_waiting, room

ACCEPT_BACKLOG = 128  # connections the kernel queues for us
PROCESS_RESERVE = 64  # descriptors kept for renders (ffmpeg's pipes), files, the journal, a kernel's own sockets


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """How long a connection may take over each part of a request, and how many may be open at once."""

    header_timeout: float = 10.0  # from its opening (or a request's first byte) to the end of the headers
    body_timeout: float = 120.0  # from the end of the headers to the end of the body (a 100 MB upload on ~1 MB/s)
    stall_timeout: float = 60.0  # an answer its reader takes nothing of for this long
    max_connections: int = 1000  # lowered further to stay under the file-descriptor limit (see capacity())


class ConnectionGuard:
    """The open connections of one server, their deadlines, and which to close when there are too many."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[GuardedH11Protocol, None] = {}  # insertion-ordered set
        self.closed = {"timed_out": 0, "evicted": 0, "refused": 0}

    def room(self) -> Room:
        """How many connections may be open and how many are accepted a turn, under the soft RLIMIT_NOFILE
        (`_accept.room`), at most max_connections."""
        return room(self.limits.max_connections, PROCESS_RESERVE)

    def capacity(self) -> int:
        """How many connections may be open."""
        return self.room().connections

    def protocol(self) -> type[GuardedH11Protocol]:
        """The uvicorn HTTP protocol class for a server whose connections this guard keeps."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def admit(self, newcomer: GuardedH11Protocol) -> None:
        """Count a new connection; over capacity, close the one waiting longest (`_accept.longest_waiting`: one
        not read from yet only for want of others), or the newcomer when every other is busy being answered."""
        self.open[newcomer] = None
        if len(self.open) <= self.capacity():
            return
        victim = self.longest_waiting(spare=newcomer)
        if victim is not None:
            victim.drop("evicted")
        else:
            newcomer.drop("refused")

    def longest_waiting(self, spare: GuardedH11Protocol | None = None) -> GuardedH11Protocol | None:
        """The connection that has waited longest for a request (or stalled reading its answer), one not read
        from yet only if every one is fresh; never spare."""
        return longest_waiting((c.quiet_since(), c.state(), c) for c in self.open
                               if c is not spare and c.waiting_since is not None)

    def out_of_descriptors(self) -> None:
        """The process ran out of descriptors: close the longest-waiting connection."""
        victim = self.longest_waiting()
        if victim is not None:
            victim.drop("evicted")

    def forget(self, connection: GuardedH11Protocol) -> None:
        """A connection is gone."""
        self.open.pop(connection, None)

    def snapshot(self) -> dict[str, int]:
        """Open connections, the capacity, and how many were closed for each reason."""
        return {"open": len(self.open), "capacity": self.capacity(), **self.closed}


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each part of a request and a place counted by its guard."""

    guard: ConnectionGuard  # set on the class made by ConnectionGuard.protocol()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase = "new"
        self.heard = False  # data has been read from it
        self.heard_at = 0.0  # when data last came
        self.waiting_since: float | None = None  # while it owes us something (a request, or reading its answer)
        self._timer: asyncio.TimerHandle | None = None

    # uvicorn's signature (a stream protocol is given a Transport), narrower than asyncio's BaseProtocol's
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._follow()
        self.guard.admit(self)

    def data_received(self, data: bytes) -> None:
        self.heard, self.heard_at = True, time.monotonic()
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._follow()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_timer(None)
        self.guard.forget(self)
        super().connection_lost(exc)

    def quiet_since(self) -> float:
        """Since when it has owed us something without sending any of it: a request's part, a body's next bytes
        (a client in the middle of an upload is not the one to close), or, stalled, reading its answer."""
        waiting = self.waiting_since or 0.0
        return waiting if self.phase == "stalled" else max(waiting, self.heard_at)

    def state(self) -> str:
        """What it waits in, for `_accept.longest_waiting`: "unread", "idle" or "requesting"."""
        if not self.heard:
            return "unread"
        return "idle" if self.phase == "idle" else "requesting"

    def drop(self, reason: str) -> None:
        """Close the connection at once (nothing more is sent or flushed), counting why."""
        self._set_timer(None)
        self.guard.forget(self)
        self.guard.closed[reason] += 1
        if not self.transport.is_closing():
            self.transport.abort()

    def _current_phase(self) -> str:
        their = self.conn.their_state
        if their is h11.IDLE:
            # a new connection, or part of a request's headers: the header deadline; else an idle keep-alive
            # connection, which uvicorn's keep-alive timeout closes
            return "headers" if self.cycle is None or self.conn.trailing_data[0] else "idle"
        if their is h11.SEND_BODY:
            return "body"
        return "stalled" if self.flow is not None and self.flow.write_paused else "busy"

    def _follow(self) -> None:
        """Move to the phase h11's state says, with that phase's deadline (kept while the phase lasts)."""
        if self.transport is None or self.transport.is_closing():
            return
        phase = self._current_phase()
        if phase == self.phase:
            return
        was_waiting = self.phase in ("idle", "headers", "body")
        self.phase = phase
        limits = self.guard.limits
        timeout = {"headers": limits.header_timeout, "body": limits.body_timeout,
                   "stalled": limits.stall_timeout}.get(phase)
        self._set_timer(timeout)
        if phase == "busy":
            self.waiting_since = None
        elif phase == "stalled" or not was_waiting or self.waiting_since is None:
            self.waiting_since = time.monotonic()

    def _set_timer(self, seconds: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self.drop, "timed_out") if seconds is not None else None
