"""SPARK_NB_TRACE=FILE: every HTTP exchange of the client as one JSON line in FILE, to attach to a bug report.

A line holds the method, URL, status, time taken, the headers of the request and of its answer, and the first
few KB of both bodies (a multipart upload's file is never copied: only its size). The key never reaches it: the
Authorization, Proxy-Authorization, Cookie and Set-Cookie headers are left out, every text is redacted
(`_secrets.redact`: the live key, any piece of it a cut could leave, and any bearer token) before it is cut, and
every query value of a URL is masked but for a few names known to be safe to show (`SHOWN_QUERY_NAMES`: an
algorithm, a date, a lifetime), as is a URL's `user:password@`: signatures, credentials, tokens and policies of
any object store or CDN, whatever they are called. A JSON body is read first, so a URL whose `&` a Go service
wrote as `\\u0026` is masked as the URL it is.

Lines are appended with one write each (O_APPEND), from any thread or process, to a regular file this user owns,
never through a symbolic link (O_NOFOLLOW): a name another user planted (a link to one of this user's files, a
file they can read) is not written. A trace that cannot be written, or whose line was cut short (a full disk), is
said once (a warning) and is then off for this process; it never fails a call. A line starts on a line of its
own even after another process's short write.

The bounded reader (`_answers.read_answer`: create, poll, upload endpoint, spec service) and the client's
downloads (`_client.ApiClient.download`) call `exchange` and `download`; nothing else writes the file.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ._secrets import MASK, redact
from .errors import safe_text

ENV = "SPARK_NB_TRACE"
BODY_CHARS = 4096  # of each body: a task object is about 1 KB, an error answer less
LOCK_TRIES, LOCK_PAUSE_S = 200, 0.005  # how long a line waits for another process's write of its own: 1 s at most
DROPPED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
# the query names whose values a trace shows: what a signed URL says of itself (its algorithm, date, lifetime, the
# headers it signs) and what it asks of the file; every other value (a signature, a credential, a key id, a token,
# a policy, a session, a name no one listed) is masked
SHOWN_QUERY_NAMES = frozenset({
    "x-amz-algorithm", "x-amz-date", "x-amz-expires", "x-amz-signedheaders",
    "x-goog-algorithm", "x-goog-date", "x-goog-expires", "x-goog-signedheaders",
    "expires", "response-content-type", "response-content-disposition", "charset",
    "sv", "se", "st", "sp", "sr", "spr",  # an Azure SAS's version, times, permissions, resource, protocol (not sig)
})
# name=value after ? & ; or # (or their JSON and HTML spellings: a body that is not JSON keeps them)
_QUERY_VALUE = re.compile(r"((?:[?&;#]|\\u0026|\\u003[fF])([A-Za-z0-9_.~%\[\]-]{1,100})=)([^&;#\s\"'<>\\]*)")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,30}:(?:\\?/){2})[^/\s\"'<>@\\?#]+@")
_lock = threading.Lock()
_stopped: set[str] = set()  # traces that failed once: off for this process


def target() -> str | None:
    """The trace file SPARK_NB_TRACE names, or None when tracing is off."""
    return os.environ.get(ENV) or None


def exchange(path: str, *, method: str, url: str, started: float, request: Any = None,
             status: int | None = None, reason: str = "", headers: Mapping[str, str] | None = None,
             body: bytes = b"", data: Any = None, problem: str | None = None,
             error: BaseException | None = None) -> None:
    """Trace one request (request: the httpx.Request sent, when known) and its answer (data: its body's JSON, when
    already parsed) or the error it met."""
    record: dict[str, Any] = {"kind": "api", "method": method, "url": clean(url), "status": status,
                              "ms": round((time.monotonic() - started) * 1000, 1)}
    if request is not None:
        record["request"] = {"headers": _headers(request.headers.multi_items()), **_request_body(request)}
    if status is not None:
        record["reason"] = reason
        record["answer"] = {"headers": _headers((headers or {}).items()), **_body(body, data)}
    if problem:
        record["problem"] = problem
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
    write(path, record)


def download(path: str, *, url: str, started: float, status: int | None, size: int | None,
             error: BaseException | None = None) -> None:
    """Trace one download of a result: its URL, status, size and time (its bytes are the video: not traced)."""
    record: dict[str, Any] = {"kind": "download", "method": "GET", "url": clean(url), "status": status,
                              "bytes": size, "ms": round((time.monotonic() - started) * 1000, 1)}
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
    write(path, record)


def write(path: str, record: dict[str, Any]) -> None:
    """Append record to the trace file as one line (0600 when created; only to a regular file this user owns,
    never through a symbolic link); a trace that fails once is off for this process, with one warning."""
    if path in _stopped:
        return
    stamped = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
               "pid": os.getpid(), **record}
    # redacted value by value, before the JSON escaping (a pass over the line could cut through an escape)
    line = (json.dumps(_redacted(stamped), ensure_ascii=True, default=str) + "\n").encode()
    flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_NOFOLLOW", 0))
    try:
        with _lock:
            fd = os.open(path, flags, 0o600)  # O_NONBLOCK: a FIFO never blocks the open (and is refused below)
            try:
                _append(fd, path, line)
            finally:
                os.close(fd)
    except OSError as exc:
        _stop(path, exc)


def _append(fd: int, path: str, line: bytes) -> None:
    """Write line at the end of the open trace file, in one write, after a line break if the file lacks its last
    one (a line cut short); OSError when the file is not this user's or the write falls short."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
        raise OSError(f"{path} belongs to another user")
    with _writers_excluded(fd) as alone:
        size = os.fstat(fd).st_size
        # only with the other writers held off: mid-write, another process's line also lacks its line break
        if alone and size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        written = os.write(fd, line)
    if written != len(line):
        raise OSError(f"only {written} of a line's {len(line)} bytes were written (a full disk?)")


@contextlib.contextmanager
def _writers_excluded(fd: int) -> Iterator[bool]:
    """Hold the trace file's lock (flock) that every spark_nb process takes to append to it; True if held. Tried
    for at most LOCK_TRIES * LOCK_PAUSE_S (a writer holds it for one write; one stopped with Ctrl-Z holds it on):
    then False, and the line is appended all the same, without the check that needs the lock."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock, no check
        yield False
        return
    for _ in range(LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(LOCK_PAUSE_S)
    else:
        yield False
        return
    try:
        yield True
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _stop(path: str, exc: OSError) -> None:
    with _lock:
        if path in _stopped:
            return
        _stopped.add(path)
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


def _body(body: bytes, data: Any = None) -> dict[str, Any]:
    """The body as the trace shows it: its JSON with every string cleaned (or its text cleaned), redacted, then cut
    to BODY_CHARS (after the masking: a cut cannot leave a piece of what it masks)."""
    if data is None and body.strip():
        try:
            data = json.loads(body.decode("utf-8"))
        except (ValueError, RecursionError):  # not JSON (or not UTF-8): shown as text
            data = None
    text = None
    if data is not None:
        try:
            text = json.dumps(_cleaned(data), ensure_ascii=False)
        except (RecursionError, ValueError):  # nested beyond what json writes back: as text
            text = None
    if text is None:
        text = clean(body.decode("utf-8", "replace"))
    shown: dict[str, Any] = {"body": safe_text(text, limit=BODY_CHARS), "body_bytes": len(body)}
    if len(text) > BODY_CHARS:
        shown["body_cut"] = True
    return shown


def clean(text: str) -> str:
    """text with every query value masked but those of SHOWN_QUERY_NAMES, and every URL's user:password@."""
    text = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", str(text))
    return _QUERY_VALUE.sub(_masked_value, text)


def _masked_value(match: re.Match[str]) -> str:
    name = match.group(2).lower()
    if name in SHOWN_QUERY_NAMES or not match.group(3):
        return match.group(0)
    return match.group(1) + MASK


def _cleaned(data: Any) -> Any:
    """Parsed JSON with every string (keys too) cleaned (see clean)."""
    if isinstance(data, str):
        return clean(data)
    if isinstance(data, dict):
        return {clean(str(k)): _cleaned(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_cleaned(v) for v in data]
    return data


def _redacted(value: Any) -> Any:
    """value with every string cleaned and redacted, at any depth."""
    if isinstance(value, str):
        return redact(clean(value))
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value
