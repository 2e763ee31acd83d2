"""Every answer from an API read within bounds: one whole-request deadline, a cap on the decoded body, safe JSON.

`read_answer` sends one request and reads its whole answer, success or error alike, so that nothing a peer
sends can hold or grow the process:

- a deadline for the whole request (connect, TLS, sending, status line, headers and body together): every
  socket operation of the connection waits at most until it, so a peer trickling its headers or body a byte
  at a time is cut off when it passes (`install_deadlines` puts this under an httpx client's connections);
- a cap on the body after decompression (and before): gzip and deflate are decoded here, a bounded amount at a
  time, so a small bomb never expands past the cap;
- JSON parsed only when the body is whole, valid UTF-8, within the cap and nested at most MAX_DEPTH deep;
  anything else is an unreadable answer (`Answer.problem` says why) that the caller handles like any other;
- every string of the parsed answer (keys and values, at every depth) and the body itself redacted
  (`_secrets.redact`): a service echoing the key in a successful answer (a result URL's `?token=`, `usage`)
  cannot hand it to the journal, a Result, a notebook or a report, since nothing downstream ever sees it.

Result videos have their own bounded path (`_transfer`); this reader is for the API's answers (create, poll,
upload endpoint, the model spec service). With SPARK_NB_TRACE set, each exchange it reads is traced (`_trace`).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import time
import zlib
from typing import Any

import httpcore
import httpx

from . import _trace
from ._secrets import redact
from .errors import safe_text

MAX_ANSWER_BYTES = 1024**2  # generous for a task object (about 1 KB)
MAX_DEPTH = 64  # a task object is 5 deep; the JSON parser itself overflows near 1,000
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("spark_nb_request_deadline", default=None)


@dataclasses.dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole within its bounds: status, headers, the decoded body, and its JSON when readable.

    data is the parsed JSON (any JSON type), or None with problem saying why it could not be read (too large,
    too deep, not UTF-8, not JSON, an unknown encoding). An empty body is data None and no problem.
    """

    status: int
    reason: str
    headers: httpx.Headers
    body: bytes
    data: Any = None
    problem: str | None = None

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    @classmethod
    def of(cls, status: int, body: bytes, headers: httpx.Headers | dict[str, str] | None = None, reason: str = "",
           *, problem: str | None = None) -> Answer:
        """The Answer for a body already read and decoded (problem: a bound it broke while being read)."""
        data = None
        if problem is None and body.strip():
            data, problem = parse_json(body)
        return cls(status, reason, httpx.Headers(headers or {}), _redacted_bytes(body), _redacted(data), problem)


def parse_json(body: bytes) -> tuple[Any, str | None]:
    """(the JSON value, None), or (None, why it is unreadable): not UTF-8, not JSON, numbers beyond reason, or
    nested deeper than MAX_DEPTH (the parser's own RecursionError included)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except RecursionError:
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    except ValueError as exc:  # JSONDecodeError, and an integer of more digits than Python converts
        return None, f"not JSON ({safe_text(exc, newlines=False, limit=80)})"
    if _deeper_than(data, MAX_DEPTH):
        return None, f"JSON nested deeper than {MAX_DEPTH} levels"
    return data, None


def _redacted(data: Any) -> Any:
    """data (parsed JSON, at most MAX_DEPTH deep) with every string in it, keys too, passed through redact.

    The strings are looked at together first, in one pass (a line break between two: no secret spans one), and
    the value rebuilt only when one holds a secret: a poll's answer costs one redaction, not one per string."""
    strings: list[str] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings.append(item)
        elif isinstance(item, dict):
            strings.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    joined = "\n".join(strings)
    return data if redact(joined) == joined else _rebuilt(data)


def _rebuilt(data: Any) -> Any:
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact(key): _rebuilt(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_rebuilt(item) for item in data]
    return data


def _redacted_bytes(body: bytes) -> bytes:
    """body redacted as text (read as Latin-1, which keeps every byte as it is, so a body that is not UTF-8 stays
    byte for byte what it was but for the secrets: they are ASCII)."""
    text = body.decode("latin-1")
    cleaned = redact(text)
    return body if cleaned == text else cleaned.encode("latin-1")


def _deeper_than(data: Any, limit: int) -> bool:
    """True when data nests lists and objects more than limit deep (walked without recursion)."""
    stack = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def read_answer(http: httpx.Client, method: str, url: str, *, deadline: float, max_bytes: int = MAX_ANSWER_BYTES,
                **request: Any) -> Answer:
    """Send one request with http (a client given install_deadlines) and read its whole answer by deadline
    (time.monotonic()); the body is capped at max_bytes, before and after decompression.

    Raises what httpx raises: a request that could not be sent, a connection that failed, and the deadline
    passing (httpx.ConnectTimeout before anything was sent, else ReadTimeout or WriteTimeout).
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpx.ConnectTimeout("no time was left to send the request")
    trace, started, sent = _trace.target(), time.monotonic(), None
    token = _deadline.set(deadline)
    try:
        with http.stream(method, url, timeout=left, **request) as response:
            sent = response.request
            body, problem = _read_body(response, max_bytes)
            answer = Answer.of(response.status_code, body, response.headers, response.reason_phrase, problem=problem)
    except Exception as exc:
        if trace:
            _trace.exchange(trace, method=method, url=url, started=started, error=exc,
                            request=sent or _request_of(exc))
        raise
    finally:
        _deadline.reset(token)
    if trace:
        _trace.exchange(trace, method=method, url=str(sent.url if sent is not None else url), started=started,
                        request=sent, status=answer.status,
                        reason=answer.reason, headers=answer.headers, body=answer.body, data=answer.data,
                        problem=answer.problem)
    return answer


def _request_of(exc: Exception) -> httpx.Request | None:
    """The request an httpx error was raised for, when it says."""
    if not isinstance(exc, httpx.HTTPError):
        return None
    try:
        return exc.request
    except RuntimeError:  # raised before a request was made
        return None


def _read_body(response: httpx.Response, max_bytes: int) -> tuple[bytes, str | None]:
    """The decoded body, at most max_bytes of it, and the bound it broke (or None)."""
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in _DECODERS:
        decoder = zlib.decompressobj(_DECODERS[encoding])
    else:
        shown = safe_text(encoding, newlines=False, limit=40)
        return b"", f"an answer in an encoding this client did not ask for ({shown})"
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > max_bytes:  # refused unread
        return b"", f"an answer larger than {max_bytes} bytes (it announces {announced})"
    chunks: list[bytes] = []
    size = received = 0
    for raw in response.iter_raw():  # as received (at most 64 KB a read)
        received += len(raw)
        if received > max_bytes:
            return b"".join(chunks), f"an answer larger than {max_bytes} bytes"
        try:
            data = raw if decoder is None else decoder.decompress(raw, max_bytes - size + 1)
        except zlib.error:
            return b"".join(chunks), f"a body that is not valid {encoding}"
        size += len(data)
        if size > max_bytes or (decoder is not None and decoder.unconsumed_tail):
            return b"".join(chunks), f"an answer larger than {max_bytes} bytes once decompressed"
        chunks.append(data)
    if decoder is not None:
        tail = decoder.flush(max_bytes - size + 1)
        if size + len(tail) > max_bytes:
            return b"".join(chunks), f"an answer larger than {max_bytes} bytes once decompressed"
        chunks.append(tail)
    return b"".join(chunks), None


# -- the deadline under every socket operation ------------------------------------------------------------


def _within(timeout: float | None, expired: type[Exception]) -> float | None:
    """timeout, shortened to what is left of the current request's deadline; expired() once none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline passed")
    return left if timeout is None or not math.isfinite(timeout) else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every read, write and handshake ends by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.start_tls(ssl_context, server_hostname,
                                                    _within(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BoundedBackend(httpcore.NetworkBackend):
    """The network backend of an httpx client's connection pools, with the request deadline under each stream."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_tcp(host, port, _within(timeout, httpcore.ConnectTimeout),
                                                      local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._inner.connect_unix_socket(path, _within(timeout, httpcore.ConnectTimeout),
                                                              socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install_deadlines(http: httpx.Client) -> httpx.Client:
    """http, with read_answer's deadline under the connections of every pool it has (direct and proxies).

    httpx has no public hook for a whole-request deadline; httpcore's network backend is public, and every httpx
    transport keeps its connection pool (a ConnectionPool, HTTPProxy or SOCKSProxy) as `_pool`, whose connections
    are made by `_network_backend`. A change there fails loudly here, not silently in a hang.
    """
    transports = [http._transport, *(t for t in http._mounts.values() if t is not None)]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if pool is None or not isinstance(backend, httpcore.NetworkBackend):
            raise RuntimeError(f"cannot bound the connections of {type(transport).__name__}: httpx changed")
        if not isinstance(backend, _BoundedBackend):
            pool._network_backend = _BoundedBackend(backend)
    return http
