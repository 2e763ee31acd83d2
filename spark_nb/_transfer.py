"""Fetch a URL into a file within every bound a hostile or broken peer could break.

One whole-transfer deadline (headers included: a peer trickling its headers a byte at a time is cut off
when the deadline passes, because a watchdog shuts the socket down), a size cap checked against the
announced length before reading and against the bytes as they arrive, and a cap on redirects. Used by
the client for result videos and by the local server for input media, so both sides meet peers alike.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from ._retry import RETRYABLE_STATUS, parse_retry_after

logger = logging.getLogger("spark_nb.client")
READ_TIMEOUT_S = 30.0  # silence on the wire for this long ends a transfer even before its deadline
MAX_REDIRECTS = 5


class TransferError(Exception):
    """A transfer failed or broke a bound; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


def fetch_to_file(url: str, dest: Path, *, deadline: float, max_bytes: int, expected_size: int | None = None,
                  what: str = "the file") -> int:
    """GET url into dest (truncated first) by deadline (time.monotonic()), at most max_bytes; the bytes written.

    expected_size, when known, is also a cap: a peer sending more than it announced is cut off at once.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TransferError(f"no time was left to fetch {what}", retryable=False)
    limit = max_bytes if expected_size is None else min(max_bytes, expected_size)
    sockets: list[socket.socket] = []
    expired = threading.Event()

    def trace(event: str, info: dict[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                sockets.append(sock)

    def cut_off() -> None:
        expired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv at once (close() would not)

    watchdog = threading.Timer(remaining, cut_off)
    watchdog.daemon = True
    timeout = httpx.Timeout(min(READ_TIMEOUT_S, remaining))
    written = 0
    try:
        watchdog.start()
        with httpx.Client(timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                          verify=_tls_context()) as http, \
                http.stream("GET", url, extensions={"trace": trace}) as response:
            logger.debug("GET %s -> %s", response.request.url, response.status_code)
            if response.status_code in RETRYABLE_STATUS:
                raise TransferError(f"HTTP {response.status_code}", retryable=True, status=response.status_code,
                                    retry_after=parse_retry_after(response.headers))
            if response.status_code != 200:
                raise TransferError(f"HTTP {response.status_code}", retryable=False, status=response.status_code)
            announced = _content_length(response)
            if announced is not None and announced > limit:
                raise TransferError(_too_large(what, announced, limit, expected_size), retryable=False)
            with open(dest, "wb") as fh:
                for chunk in response.iter_bytes():  # as received: a re-chunking size would wait to fill
                    written += len(chunk)
                    if written > limit:  # the same URL would send as much again: not retried
                        raise TransferError(_too_large(what, limit, limit, expected_size, sent=True),
                                            retryable=False)
                    if expired.is_set():
                        break
                    fh.write(chunk)
    except httpx.TooManyRedirects as exc:
        raise TransferError(f"{what} redirected more than {MAX_REDIRECTS} times", retryable=False) from exc
    except httpx.HTTPError as exc:
        if not expired.is_set():
            raise TransferError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    finally:
        watchdog.cancel()
    if expired.is_set():
        raise TransferError(f"{what} took longer than {remaining:.0f} s to fetch (its server sends too slowly)",
                            retryable=False)
    return written


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle costs ~15 ms, and each fetch has a client
    (a pool) of its own so that its watchdog cuts off only its own sockets."""
    return httpx.create_ssl_context()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _too_large(what: str, size: int, limit: int, expected: int | None, *, sent: bool = False) -> str:
    verb = "sent more than" if sent else "announced"
    if expected is not None and limit == expected:
        return f"{what}: the server {verb} {size} bytes where the task says {expected}"
    return f"{what} is larger than the {limit}-byte limit (its server {verb} {size} bytes)"
