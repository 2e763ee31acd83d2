"""Hostile and broken HTTP peers on 127.0.0.1, scripted byte by byte: a fake Vtrix, a lying CDN, a slow host.

A Peer accepts connections in a thread and hands each parsed request to a handler, which writes whatever it
likes to the raw socket: trickled headers, lying lengths, redirects, endless bodies. Every loop is bounded
in time, and stop() ends them all.
"""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_SECONDS = 120.0  # no handler loop outlives this


@dataclass
class Seen:
    """One request a peer received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Peer:
    """A scripted HTTP server: handler(peer, conn, request) answers each request on the raw connection."""

    handler: Callable[[Peer, socket.socket, Seen], None]
    seen: list[Seen] = field(default_factory=list)
    sent_bytes: int = 0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="hostile-peer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def stop(self) -> None:
        """End every connection and the listener."""
        self.stop_event.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def send(self, conn: socket.socket, data: bytes) -> bool:
        """Write data; False once the other side is gone or the peer is stopping."""
        if self.stop_event.is_set():
            return False
        try:
            conn.sendall(data)
        except OSError:
            return False
        with self._lock:
            self.sent_bytes += len(data)
        return True

    def respond(self, conn: socket.socket, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                *, length: int | None = None) -> None:
        """A complete answer; length overrides the Content-Length sent (to lie about it)."""
        head = {"Content-Length": str(len(body) if length is None else length), "Connection": "close",
                **(headers or {})}
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in head.items()]
        self.send(conn, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def json(self, conn: socket.socket, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        """A JSON answer."""
        self.respond(conn, status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def trickle(self, conn: socket.socket, data: bytes, every: float, limit: float = MAX_SECONDS) -> None:
        """Send data one byte at a time, every `every` seconds, for at most limit seconds."""
        ends = time.monotonic() + limit
        for byte in data:
            if time.monotonic() > ends or self.stop_event.wait(every) or not self.send(conn, bytes([byte])):
                return

    def stream(self, conn: socket.socket, chunk: bytes, total: int, limit: float = MAX_SECONDS) -> None:
        """Send chunk repeatedly, up to total bytes or limit seconds, or until the other side leaves."""
        ends, sent = time.monotonic() + limit, 0
        while sent < total and time.monotonic() < ends and self.send(conn, chunk):
            sent += len(chunk)

    def _accept(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                request = _read_request(conn)
            except (OSError, ValueError):
                return
            with self._lock:
                self.seen.append(request)
            try:
                self.handler(self, conn, request)
            except OSError:
                pass


def _read_request(conn: socket.socket) -> Seen:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("closed before the headers ended")
        data += chunk
        if len(data) > 1 << 20:
            raise ValueError("headers too large")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    wanted = int(headers.get("content-length", "0") or 0)
    while len(body) < min(wanted, 1 << 20):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return Seen(method, path, headers, body)


def peers() -> Iterator[Callable[..., Peer]]:
    """Fixture body: start Peers, all stopped afterwards."""
    started: list[Peer] = []

    def start(handler: Callable[[Peer, socket.socket, Seen], None]) -> Peer:
        peer = Peer(handler)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


# -- a hostile API: every way an answer can break a bound -------------------------------------------------

TASK_ID = "t-1"
HOSTILE_ANSWERS = ("nested", "gzip_bomb", "trickled_body", "trickled_headers", "stall", "huge_number",
                   "invalid_utf8", "non_object", "too_large")


@functools.lru_cache(maxsize=1)
def gzip_bomb() -> bytes:
    """About 1 MB of gzip that decompresses to 1 GB of zeros (made once per session, ~4 s)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 24)
    return b"".join([*(packer.compress(zeros) for _ in range(64)), packer.flush()])


def hostile_answer(p: Peer, conn: socket.socket, kind: str, task: dict[str, Any]) -> None:
    """Answer with kind, one of HOSTILE_ANSWERS; task is the honest answer the hostile ones stand for."""
    honest = json.dumps(task).encode()
    json_type = {"Content-Type": "application/json"}
    if kind == "nested":
        return p.respond(conn, 200, b"[" * 100_000 + b"]" * 100_000, json_type)
    if kind == "gzip_bomb":
        return p.respond(conn, 200, gzip_bomb(), {**json_type, "Content-Encoding": "gzip"})
    if kind == "trickled_body":
        p.send(conn, f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(honest)}\r\n\r\n"
               .encode())
        return p.trickle(conn, honest, every=0.1)
    if kind == "trickled_headers":
        return p.trickle(conn, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 10_000, every=0.1)
    if kind == "stall":
        p.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        p.stop_event.wait(MAX_SECONDS)
        return None
    if kind == "huge_number":  # more digits than Python converts (4,300)
        return p.respond(conn, 200, honest[:-1] + b', "progress": 1' + b"0" * 5000 + b"}", json_type)
    if kind == "invalid_utf8":
        return p.respond(conn, 200, honest[:-1] + b', "status": "\xff\xfe"}', json_type)
    if kind == "non_object":
        return p.respond(conn, 200, b"[" + honest + b"]", json_type)
    if kind == "too_large":  # valid JSON, 2 MB, without a length to refuse it by: counted as it comes
        p.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        p.send(conn, honest[:-1] + b', "pad": "' + b"x" * (2 << 20) + b'"}')
        return None
    raise ValueError(kind)


def hostile_api(route: str, kind: str, video: bytes) -> Callable[[Peer, socket.socket, Seen], None]:
    """A Vtrix look-alike (create, poll, an upload endpoint at /upload, the video at /video.mp4) whose answers on
    route ("create", "poll" or "upload") are of the hostile kind; the others are honest."""

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        content = {"type": "video", "url": f"{p.url}/video.mp4", "size": len(video)}
        answers = {
            "create": {"id": TASK_ID, "status": "pending"},
            "poll": {"id": TASK_ID, "status": "completed", "output": [{"content": [content]}]},
            "upload": {"url": "https://inputs.example/uploaded.jpg"},
        }
        here = ("create" if req.method == "POST" and req.path == "/model/v1/generation" else
                "poll" if req.path.startswith("/model/v1/generation/task/") else
                "upload" if req.path == "/upload" else "video" if req.path == "/video.mp4" else None)
        if here == route:
            return hostile_answer(p, conn, kind, answers[here])
        if here == "video":
            return p.respond(conn, 200, video, {"Content-Type": "video/mp4"})
        if here is None:
            return p.json(conn, 404, {"message": "no such route"})
        return p.json(conn, 200, answers[here])

    return handle


_CHURN = r"""
import socket, sys, time
host, port, hold, seconds, head = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
held, opened, until = [], 0, time.monotonic() + seconds
while time.monotonic() < until:
    if len(held) >= hold:
        held.pop(0).close()
    try:
        sock = socket.create_connection((host, port), timeout=2)
        sock.send(head.encode())
    except OSError:
        time.sleep(0.001)
        continue
    held.append(sock)
    opened += 1
print(opened, flush=True)
"""


class ChurnFlood:
    """Processes that open connections to address as fast as they can, each sending head (part of a request's
    headers) and never finishing it, holding `hold` each and closing the oldest for every new one, for `seconds`."""

    def __init__(self, address: tuple[str, int], *, processes: int = 2, hold: int = 150, seconds: float = 8.0,
                 head: bytes = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-") -> None:
        import subprocess
        import sys

        self.procs = [subprocess.Popen([sys.executable, "-c", _CHURN, address[0], str(address[1]), str(hold),
                                        str(seconds), head.decode()], stdout=subprocess.PIPE, text=True)
                      for _ in range(processes)]
        self.opened = 0

    def __enter__(self) -> ChurnFlood:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Wait for the flood to end (it ends by itself), counting the connections it opened."""
        import subprocess

        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=MAX_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate(timeout=10)
            self.opened += int(out.strip() or 0)


def late_request(address: tuple[str, int], request: bytes, *, delay: float = 0.05) -> str:
    """The status line a server answers to request sent `delay` seconds after connecting (a client a little slower
    than the flood around it), or the name of the error that ended the connection first."""
    try:
        with socket.create_connection(address, timeout=5) as sock:
            time.sleep(delay)
            sock.sendall(request)
            return sock.makefile("rb").readline().decode("latin-1").strip() or "closed"
    except OSError as exc:
        return type(exc).__name__
