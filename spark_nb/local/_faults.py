"""Injected faults for the local server: which route fails how often, and the ASGI wrapper that does it.

A spec is a comma list of ROUTE:KIND:P, e.g. "create:429:0.2,poll:reset:0.1,download:truncated:0.3".
ROUTE is create, poll, download, upload or spec (the model specs); KIND is 402, 429, 500, 503, reset,
reset_after, slow, bad_json or truncated; 402 answers as a sibling platform does when the account has no credit,
`{"code": 40201, "message": "insufficient credits"}`. The extra route `render` takes a seed code suffix as
KIND (095..099): the task then fails with that code of its model, so every service-failure code can be
produced on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import re
import socket
import struct
import threading
from collections.abc import Awaitable, Callable
from typing import Any

ROUTES = ("create", "poll", "download", "upload", "spec", "render")
KINDS = ("402", "429", "500", "503", "reset", "reset_after", "slow", "bad_json", "truncated")
RENDER_CODES = ("095", "096", "097", "098", "099")
SLOW_SECONDS = 5.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault: on route, do kind with this probability.

    Attributes:
        route: create, poll, download, upload, spec or render.
        kind: 402, 429, 500, 503, reset, reset_after, slow, bad_json or truncated; for render, a failure code's
            suffix (095..099).
        probability: 0..1, drawn per request.
    """

    route: str
    kind: str
    probability: float


class FaultPlan:
    """The faults in force and seeded random sources to draw them (thread-safe).

    Each route draws from a stream of its own, seeded with the same seed: the n-th request of a route meets the
    same fault whatever the other routes' traffic, so a seeded plan repeats under any concurrency.

    Args:
        faults: the faults in force (none: the server answers as the service does).
        seed: the seed of every route's random stream, None for an unseeded plan.
    """

    def __init__(self, faults: list[Fault] | None = None, seed: int | None = None) -> None:
        self.faults = list(faults or [])
        self._seed = seed
        self._streams: dict[str, random.Random] = {}
        self._lock = threading.Lock()
        self.drawn: dict[str, int] = {}  # route -> requests that met a draw

    @classmethod
    def parse(cls, spec: str | None, seed: int | None = None) -> FaultPlan:
        """Read a ROUTE:KIND:P comma list, e.g. "create:429:0.2,poll:reset:0.1".

        Args:
            spec: the list (None or "": no faults).
            seed: the plan's seed.

        Returns:
            The FaultPlan.

        Raises:
            ValueError: an item that is not ROUTE:KIND:P, or an unknown route or kind, or P outside 0..1 (the item
                named).
        """
        faults = []
        for item in filter(None, (part.strip() for part in (spec or "").split(","))):
            match = re.fullmatch(r"(\w+):(\w+):(\d+(?:\.\d*)?|\.\d+)", item)
            if not match:
                raise ValueError(f"fault {item!r} is not ROUTE:KIND:P (e.g. poll:500:0.2)")
            route, kind, p = match.group(1), match.group(2), float(match.group(3))
            if route not in ROUTES:
                raise ValueError(f"fault {item!r}: route must be one of {', '.join(ROUTES)}")
            allowed = RENDER_CODES if route == "render" else KINDS
            if kind not in allowed:
                raise ValueError(f"fault {item!r}: kind must be one of {', '.join(allowed)}")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"fault {item!r}: probability must be between 0 and 1")
            faults.append(Fault(route, kind, p))
        return cls(faults, seed)

    def draw(self, route: str) -> str | None:
        """The fault to inject on this request of route, or None.

        Args:
            route: the request's route (create, poll, download, upload, spec, render).

        Returns:
            The fault's kind, or None for no fault this time.
        """
        with self._lock:
            stream = self._streams.setdefault(route, random.Random(self._seed))
            self.drawn[route] = self.drawn.get(route, 0) + 1
            for fault in self.faults:
                if fault.route == route and stream.random() < fault.probability:
                    return fault.kind
        return None


def route_of(scope: Scope) -> str | None:
    """Which fault route a request belongs to, if any."""
    method, path = scope.get("method"), scope.get("path", "")
    if method == "POST" and path == "/model/v1/generation":
        return "create"
    if method == "GET" and path.startswith("/model/v1/generation/task/"):
        return "poll"
    if method == "GET" and path.startswith("/files/results/"):
        return "download"
    if method == "POST" and path == "/api/v1/storage/files":
        return "upload"
    if method == "GET" and path.startswith("/api/v1/skill/models/"):
        return "spec"
    return None


class FaultInjector:
    """ASGI wrapper that injects the plan's faults; must be the outermost app so it holds uvicorn's send."""

    def __init__(self, app: Callable[..., Awaitable[None]], plan: FaultPlan, on_fault: Callable[[str], None]) -> None:
        self.app = app
        self.plan = plan
        self.on_fault = on_fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_of(scope) if scope["type"] == "http" else None
        kind = self.plan.draw(route) if route else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        self.on_fault(f"{route}:{kind}")
        if kind in ("402", "429", "500", "503"):
            await _json_error(send, int(kind))
        elif kind == "reset":
            await drop_connection(send)
        elif kind == "slow":
            await asyncio.sleep(SLOW_SECONDS)
            await self.app(scope, receive, send)
        elif kind == "reset_after":
            await self.app(scope, receive, _discard)
            await drop_connection(send)
        elif kind == "bad_json":
            await self.app(scope, receive, _garbling(send))
        elif kind == "truncated":
            await self.app(scope, receive, _truncating(send))


async def _discard(message: dict[str, Any]) -> None:
    return None


NO_CREDIT = {"code": 40201, "message": "insufficient credits"}  # what a 402 says (protocol page, "Errors")


async def _json_error(send: Send, status: int) -> None:
    body = json.dumps(NO_CREDIT if status == 402 else {"message": f"injected fault: HTTP {status}"}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 429:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def drop_connection(send: Send) -> None:
    """Reset the TCP connection without an answer (RST via SO_LINGER 0).

    ASGI has no message for this, so it reaches uvicorn's transport through its send callable; the
    sleep lets uvicorn see the disconnect, so it does not try to answer on a dead connection.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("connection faults need uvicorn's h11 protocol (http='h11')")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    await asyncio.sleep(0.01)


def _garbling(send: Send) -> Send:
    """A send that answers 200 with a body that is not JSON, whatever the app said."""

    async def garbled(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            body = b'{"id": "tr<html>502 Bad Gateway'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    return garbled


def _truncating(send: Send) -> Send:
    """A send that passes the headers, then half of the first body chunk, then resets the connection."""
    state = {"dropped": False}

    async def truncating(message: dict[str, Any]) -> None:
        if state["dropped"]:
            return
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            state["dropped"] = True
            await drop_connection(send)
            return
        await send(message)

    return truncating
