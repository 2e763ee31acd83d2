"""SPARK_NB_TRACE=FILE: every HTTP exchange of the client as one JSON line in FILE, to attach to a bug report.

A line holds the method, URL, status, time taken, the headers of the request and of its answer, and the first
few KB of both bodies (a multipart upload's file is never copied: only its size). The key never reaches it: the
Authorization, Proxy-Authorization, Cookie and Set-Cookie headers are left out, every text is redacted
(`_secrets.redact`: the live key and any bearer token) and query values that sign a URL (an S3 presigned URL's
signature, a token) are masked. Lines are appended with one write each (O_APPEND), from any thread or process;
a trace that cannot be written is said once (a warning) and never fails a call.

The bounded reader (`_answers.read_answer`: create, poll, upload endpoint, spec service) and the client's
downloads (`_client.ApiClient.download`) call `exchange` and `download`; nothing else writes the file.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ._secrets import MASK, redact

ENV = "SPARK_NB_TRACE"
BODY_CHARS = 4096  # of each body: a task object is about 1 KB, an error answer less
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# a query value that is a credential: an S3 presigned URL's signature and credential, tokens, keys
_SIGNED = re.compile(r"(?i)([?&;](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|"
                     r"access_token|api_key|apikey|key)=)[^&#\s\"']+")
_lock = threading.Lock()
_warned: set[str] = set()


def target() -> str | None:
    """The trace file SPARK_NB_TRACE names, or None when tracing is off."""
    return os.environ.get(ENV) or None


def exchange(path: str, *, method: str, url: str, started: float, request: Any = None,
             status: int | None = None, reason: str = "", headers: Mapping[str, str] | None = None,
             body: bytes = b"", problem: str | None = None, error: BaseException | None = None) -> None:
    """Trace one request (request: the httpx.Request sent, when known) and its answer or the error it met."""
    record: dict[str, Any] = {"kind": "api", "method": method, "url": _clean(url), "status": status,
                              "ms": round((time.monotonic() - started) * 1000, 1)}
    if request is not None:
        record["request"] = {"headers": _headers(request.headers.multi_items()), **_request_body(request)}
    if status is not None:
        record["reason"] = reason
        record["answer"] = {"headers": _headers((headers or {}).items()), **_body(body)}
    if problem:
        record["problem"] = problem
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
    write(path, record)


def download(path: str, *, url: str, started: float, status: int | None, size: int | None,
             error: BaseException | None = None) -> None:
    """Trace one download of a result: its URL, status, size and time (its bytes are the video: not traced)."""
    record: dict[str, Any] = {"kind": "download", "method": "GET", "url": _clean(url), "status": status,
                              "bytes": size, "ms": round((time.monotonic() - started) * 1000, 1)}
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
    write(path, record)


def write(path: str, record: dict[str, Any]) -> None:
    """Append record to the trace file as one line (0600 when created; only to a regular file)."""
    stamped = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
               "pid": os.getpid(), **record}
    # redacted value by value, before the JSON escaping (a pass over the line could cut through an escape)
    line = (json.dumps(_redacted(stamped), ensure_ascii=True, default=str) + "\n").encode()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        with _lock:
            fd = os.open(path, flags, 0o600)  # O_NONBLOCK: a FIFO without a reader fails at once, never hangs
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise OSError(f"{path} is not a regular file")
                os.write(fd, line)
            finally:
                os.close(fd)
    except OSError as exc:
        _warn_once(path, exc)


def _warn_once(path: str, exc: OSError) -> None:
    if path in _warned:
        return
    _warned.add(path)
    from .errors import warn

    warn(f"the trace file {path} (SPARK_NB_TRACE) cannot be written ({exc.strerror or exc}); calls go on untraced")


def _headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in items:
        if name.lower() not in DROPPED_HEADERS:
            kept[name] = f"{kept[name]}, {value}" if name in kept else value
    return kept


def _request_body(request: Any) -> dict[str, Any]:
    """The request's body when it is in memory (JSON); a streamed one (a multipart upload) only by its size."""
    try:
        content = request.content
    except Exception:  # httpx.RequestNotRead: a multipart upload, streamed from its file
        length = request.headers.get("content-length")
        return {"body": None, "body_note": f"{request.headers.get('content-type', 'a stream')}, {length or '?'} "
                                           "bytes, not traced"}
    return _body(content)


def _body(body: bytes) -> dict[str, Any]:
    text = body[: BODY_CHARS * 4].decode("utf-8", "replace")
    shown = {"body": text[:BODY_CHARS], "body_bytes": len(body)}
    if len(body) > BODY_CHARS:
        shown["body_cut"] = True
    return shown


def _clean(text: str) -> str:
    return _SIGNED.sub(lambda m: m.group(1) + MASK, str(text))


def _redacted(value: Any) -> Any:
    """value with every string redacted and unsigned, at any depth."""
    if isinstance(value, str):
        return redact(_clean(value))
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value
