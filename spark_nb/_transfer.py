"""Fetch a URL into a file (or peek at its first bytes) within every bound a hostile or broken peer could break.

One whole-transfer deadline (headers included: a peer trickling its headers a byte at a time is cut off
when the deadline passes, because a watchdog shuts the socket down), a size cap checked against the
announced length before reading and against the bytes as they arrive, and a cap on redirects. Used by
the client for result videos and by the local server for input media, so both sides meet peers alike; peek()
(the same bounds, a few hundred KB at most) by the input check of URLs before anything is paid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import ipaddress
import logging
import math
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore
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


@dataclasses.dataclass(frozen=True)
class Peeked:
    """What a URL answered to a small GET (or a HEAD): its status, the first bytes, the file's whole size when
    the server says it (Content-Range, or Content-Length of a whole answer), and its Content-Type."""

    status: int
    head: bytes
    total: int | None
    content_type: str
    url: str  # where the redirects ended
    method: str = "GET"
    content_encoding: str = ""  # "gzip"...: head is the compressed bytes (nothing is decompressed here)


class _Bounded:
    """One request's bounds: a whole deadline (headers included) kept by a watchdog that shuts its sockets down."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.remaining = deadline - time.monotonic()
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._watchdog = threading.Timer(max(0.0, self.remaining), self._cut_off)
        self._watchdog.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx's trace hook: note each socket as it connects, so the watchdog can shut it down."""
        if event == "connection.connect_tcp.complete":
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                self._sockets.append(sock)

    def _cut_off(self) -> None:
        self.expired.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked recv at once (close() would not)

    @contextlib.contextmanager
    def stream(self, method: str, url: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """The answer to method url, redirects followed (at most MAX_REDIRECTS), within the deadline.

        Whatever goes wrong in building or following the request, short of the network's own failures (which the
        callers classify), is a TransferError that is not retried: a Location of `mailto:`, `data:` or
        `javascript:` (httpx.InvalidURL), a host name IDNA cannot encode (UnicodeError), a scheme httpx does not
        speak. The same address would give the same answer again.
        """
        timeout = httpx.Timeout(min(READ_TIMEOUT_S, max(self.remaining, 0.001)))
        self._watchdog.start()
        try:
            with contextlib.ExitStack() as opened:
                try:
                    http = opened.enter_context(httpx.Client(
                        timeout=timeout, follow_redirects=True, max_redirects=MAX_REDIRECTS,
                        verify=_tls_context(), transport=_transport(self.deadline)))
                    response = opened.enter_context(http.stream(method, url, headers=headers,
                                                                extensions={"trace": self.trace}))
                except httpx.TooManyRedirects as exc:
                    raise TransferError(f"redirected more than {MAX_REDIRECTS} times", retryable=False) from exc
                except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                    raise TransferError(_unusable(exc), retryable=False) from exc
                except httpx.TransportError:
                    raise  # the network's: the caller knows whether the deadline passed and what to retry
                except Exception as exc:  # httpx.InvalidURL, UnicodeError, ...: see above
                    raise TransferError(_unusable(exc), retryable=False) from exc
                logger.debug("%s %s -> %s", method, response.request.url, response.status_code)
                yield response
        finally:
            self._watchdog.cancel()


def _unusable(exc: BaseException) -> str:
    return f"the address (or a redirect's) cannot be fetched: {type(exc).__name__}: {exc}"[:300]


def _transport(deadline: float) -> httpx.BaseTransport | None:
    """A transport whose name lookups end by the deadline (see _BoundedLookups); None (httpx's own, which reads
    the environment's proxies) when a proxy is configured: the proxy then looks the names up."""
    import urllib.request

    if urllib.request.getproxies():
        return None
    transport = httpx.HTTPTransport(verify=_tls_context())
    # httpx has no argument for httpcore's network backend: its pool is made again with ours
    transport._pool = httpcore.ConnectionPool(ssl_context=_tls_context(), network_backend=_BoundedLookups(deadline))
    return transport


def fetch_to_file(url: str, dest: Path, *, deadline: float, max_bytes: int, expected_size: int | None = None,
                  what: str = "the file") -> int:
    """GET url into dest (truncated first) by deadline (time.monotonic()), at most max_bytes; the bytes written.

    expected_size, when known, is also a cap: a peer sending more than it announced is cut off at once.
    """
    bounds = _Bounded(deadline)
    if bounds.remaining <= 0:
        raise TransferError(f"no time was left to fetch {what}", retryable=False)
    limit = max_bytes if expected_size is None else min(max_bytes, expected_size)
    written = 0
    try:
        with bounds.stream("GET", url) as response:
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
                    if bounds.expired.is_set():
                        break
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        if not bounds.expired.is_set():
            raise TransferError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
    if bounds.expired.is_set():
        raise TransferError(f"{what} took longer than {bounds.remaining:.0f} s to fetch (its server sends too slowly)",
                            retryable=False)
    return written


def peek(url: str, *, deadline: float, max_bytes: int, method: str = "GET", ranged: bool = True) -> Peeked:
    """The status and at most the first max_bytes of url (a ranged GET, or a HEAD), by deadline.

    Any status is an answer (the caller judges it); no answer at all (no such host, refused, reset, too many
    redirects, nothing by the deadline) is a TransferError with status None. Bytes that were still coming when
    the deadline passed are given as far as they came: a slow host is not a missing one.
    """
    bounds = _Bounded(deadline)
    if bounds.remaining <= 0:
        raise TransferError("no time was left to ask", retryable=False)
    headers = {"Range": f"bytes=0-{max_bytes - 1}"} if ranged and method == "GET" else None
    head, answered = bytearray(), None
    try:
        with bounds.stream(method, url, headers) as response:
            answered = response
            if method == "GET" and response.status_code in (200, 206):
                for chunk in response.iter_raw():  # the file's bytes as sent: nothing is decompressed here
                    head += chunk[:max_bytes - len(head)]
                    if len(head) >= max_bytes or bounds.expired.is_set():
                        break
    except httpx.HTTPError as exc:
        if answered is None:
            why = (f"no answer within {bounds.remaining:.0f} s" if bounds.expired.is_set()
                   else f"{type(exc).__name__}: {exc}")
            raise TransferError(why, retryable=not bounds.expired.is_set()) from exc
    assert answered is not None
    return Peeked(status=answered.status_code, head=bytes(head), total=_total_size(answered),
                  content_type=answered.headers.get("content-type", ""), url=str(answered.url), method=method,
                  content_encoding=answered.headers.get("content-encoding", "").strip().lower())


LOOKUPS_AT_ONCE = 32  # name lookups still running (each in a thread of its own) before another is refused
_lookups = threading.BoundedSemaphore(LOOKUPS_AT_ONCE)


class _BoundedLookups(httpcore.SyncBackend):
    """httpcore's network backend, its name lookups ended by the transfer's deadline.

    getaddrinfo cannot be interrupted, and the watchdog can only shut sockets that exist: a resolver that does
    not answer (glibc: 5 s x 2 attempts x each nameserver) held a 15 s check 40 s. The lookup runs in a thread of
    its own, waited for until the deadline; then each address is connected to in turn, the host name kept for
    the Host header and TLS (httpcore takes both from the request, not from the socket).
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        """A connection to host:port, its lookup and connect within the deadline (and timeout)."""
        def left() -> float:
            return min(self.deadline - time.monotonic(), timeout if timeout is not None else math.inf)

        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in _addresses(host, port, left()):
            if left() <= 0:
                raise httpcore.ConnectTimeout(f"no connection to {host} by the deadline")
            try:
                return super().connect_tcp(address, port, timeout=left(), local_address=local_address,
                                           socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure


def _addresses(host: str, port: int, seconds: float) -> list[str]:
    """host's addresses (an address as it is), looked up in a worker thread for at most seconds."""
    with contextlib.suppress(OSError, ValueError):
        return [str(ipaddress.ip_address(host))]
    if seconds <= 0:
        raise httpcore.ConnectTimeout(f"no time was left to look up {host[:100]}")
    if not _lookups.acquire(blocking=False):
        raise httpcore.ConnectError(f"{LOOKUPS_AT_ONCE} name lookups are still waiting for an answer")
    found: list[Any] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            found.append(exc)
        finally:
            _lookups.release()
            done.set()

    threading.Thread(target=look_up, name="spark-nb-lookup", daemon=True).start()
    if not done.wait(seconds):
        raise httpcore.ConnectTimeout(f"the name {host[:100]} was not looked up within {seconds:.0f} s")
    if found and isinstance(found[0], UnicodeError):  # a name IDNA cannot encode: never retried (see stream)
        raise found[0]
    if found and isinstance(found[0], Exception):
        raise httpcore.ConnectError(f"{host[:100]}: {found[0]}")
    return list(dict.fromkeys(str(info[4][0]) for info in found))


@functools.lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once: loading the CA bundle costs ~15 ms, and each fetch has a client
    (a pool) of its own so that its watchdog cuts off only its own sockets."""
    return httpx.create_ssl_context()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) < 20 else None


def _total_size(response: httpx.Response) -> int | None:
    """The whole file's size: from Content-Range ("bytes 0-99/5000") on a 206, Content-Length on a 200."""
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() and len(total) < 20 else None
    return _content_length(response) if response.status_code == 200 else None


def _too_large(what: str, size: int, limit: int, expected: int | None, *, sent: bool = False) -> str:
    verb = "sent more than" if sent else "announced"
    if expected is not None and limit == expected:
        return f"{what}: the server {verb} {size} bytes where the task says {expected}"
    return f"{what} is larger than the {limit}-byte limit (its server {verb} {size} bytes)"
