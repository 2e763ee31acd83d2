"""HTTP for the Vtrix protocol: create and read tasks, upload and download files, with retries and error mapping.

Every request goes through one retry loop (ApiClient._attempts): send, classify the answer, back off, respect
the deadline. What differs per call is only what counts as "retry": a read or a download retries any transient
failure; a create retries only what proves the request never reached the server, so a task is never paid twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from . import _trace
from ._answers import Answer, install_deadlines, read_answer
from ._api_errors import ACCOUNT_STATUSES, api_error, not_sent
from ._config import Secret
from ._deadline import earliest, ran_out
from ._files import make_part, remove_stale_parts
from ._retry import NEVER_SENT, NOT_SENDABLE, RETRYABLE_STATUS, RetryPolicy, parse_retry_after
from ._task_state import usable_task_id
from ._text import file_name_to_send
from ._transfer import TransferError, fetch_to_file
from ._urls import direct_mounts, is_http_url, shown_url
from ._version import __version__
from .errors import (
    APIError,
    AuthenticationError,
    DownloadError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SparkError,
    TaskMayExist,
    UploadError,
    safe_text,
)
from .models import task_failure

logger = logging.getLogger("spark_nb.client")
T = TypeVar("T")

REQUEST_TIMEOUT_S = 30.0  # as the official CLI
POLL_ATTEMPTS = 200  # a poll is retried until the deadline; this only bounds the count
MAX_RESULT_BYTES = 2 * 1024**3  # when the task does not say the video's size
# an upload's own limit: the request's 30 s plus its file at this rate (100 MB: 27 min), however slowly it is read
MIN_UPLOAD_BYTES_PER_S = 64 * 1024
class _ApiKeyAuth(httpx.Auth):
    """Adds the bearer key to requests for the API's own origin only (never to CDN or upload hosts)."""

    def __init__(self, origin: tuple[str, str, int | None], key: Secret | None) -> None:
        self._origin = origin
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._key is not None and _origin(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme))


class _Retry(Exception):
    """One attempt met a transient problem: try again after the backoff (or the server's Retry-After)."""

    def __init__(self, problem: str, retry_after: float | None = None, answer: Answer | None = None):
        super().__init__(problem)
        self.retry_after = retry_after
        self.answer = answer


class ApiClient:
    """One connection pool to one API base URL; thread-safe; every method retries what is safe to retry."""

    def __init__(
        self, base_url: str, api_key: Secret | None, *, retry: RetryPolicy | None = None,
        timeout: float | None = None, specs: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.specs = specs  # a create consults the model's published spec first (not for the embedded server)
        self._limit = timeout = REQUEST_TIMEOUT_S if timeout is None else timeout  # one request's own limit
        try:
            origin = _origin(httpx.URL(self.base_url))
        except httpx.InvalidURL as exc:
            raise SparkError(f"the base URL {self.base_url!r} is not a URL ({exc}); nothing was sent",
                             hint="set base_url= (or VTRIX_GENERATION_URL) to e.g. https://cloud.vtrix.ai") from exc
        self._http = install_deadlines(httpx.Client(
            auth=_ApiKeyAuth(origin, api_key),
            timeout=timeout,
            follow_redirects=True,
            # the encodings the bounded reader decodes itself (an answer in another one is unreadable)
            headers={"User-Agent": f"spark-nb/{__version__}", "X-Source": "spark-nb",
                     "Accept-Encoding": "gzip, deflate"},
            event_hooks={"response": [self._log_response]},
            mounts=direct_mounts(self.base_url),  # the key never goes to a proxy in clear: loopback is sent direct
        ))

    def __repr__(self) -> str:
        return f"ApiClient({shown_url(self.base_url)!r})"

    @staticmethod
    def _log_response(response: httpx.Response) -> None:
        request = response.request
        logger.debug("%s %s -> %s", request.method, request.url, response.status_code)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- one request, its answer read whole within bounds ------------------------------------------

    def _answer(self, method: str, url: str, *, deadline: float | None = None, limit: float | None = None,
                **request: Any) -> Answer:
        """Send one request and read its answer (_answers.read_answer) by the soonest of now + limit (the request's
        own limit, 30 s unless said), deadline, and the call's deadline (_deadline: what is left of its timeout)."""
        ends = time.monotonic() + (self._limit if limit is None else limit)
        deadline = earliest(deadline)
        return read_answer(self._http, method, url, deadline=ends if deadline is None else min(ends, deadline),
                           **request)

    # -- the one retry loop -------------------------------------------------------------------------

    def _attempts(self, attempt: Callable[[], T], *, what: str, give_up: Callable[[_Retry, int], SparkError],
                  attempts: int | None = None, deadline: float | None = None) -> T:
        """attempt() until it returns; each _Retry it raises backs off, until the attempts or the deadline (or the
        call's, see _deadline) run out."""
        attempts = attempts or self.retry.max_attempts
        deadline = earliest(deadline)
        for number in range(1, attempts + 1):
            try:
                return attempt()
            except _Retry as exc:
                problem = exc
            delay = self.retry.delay(number - 1, problem.retry_after)  # 0 (Retry-After: 0) means "again now"
            if number == attempts:
                raise give_up(problem, number) from problem
            if deadline is not None and deadline - time.monotonic() <= delay:
                # no attempt could start before the deadline: the last wait ends at it (not before), and the error
                # names this problem, not the "no time left" of an attempt made at the deadline
                time.sleep(max(0.0, deadline - time.monotonic()))
                raise give_up(problem, number) from problem
            logger.info("retrying %s (%s) in %.1fs", what, problem, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # -- create: never resent once it may have reached the server -------------------------------

    def check_spec(self, model: str, params: dict[str, Any] | None = None) -> None:
        """ValidationError when the model's published spec, where one applies, no longer accepts params
        (_specs_service.guard; params None: its parameters' structure only, checked before any upload); called
        before a create is journaled as sent, so a refusal sends nothing."""
        if self.specs:
            from ._specs_service import guard

            guard(model, params, self.base_url)

    def create(self, model: str, params: dict[str, Any]) -> dict[str, Any]:
        """POST a task; retried only when it certainly was not created. Returns the task object (check_spec first)."""
        url = f"{self.base_url}/model/v1/generation"
        payload = {"model": model, "input": [{"params": params}]}
        submitted_at = time.strftime("%Y-%m-%d %H:%M:%S %Z")

        def attempt() -> dict[str, Any]:
            try:  # never redirected: a 303 "created, see other" would be sent again, and paid again
                answer = self._answer("POST", url, json=payload, follow_redirects=False)
            except NOT_SENDABLE as exc:
                raise not_sent("creating the task", exc) from exc
            except NEVER_SENT as exc:
                raise _Retry(f"connect failed: {exc}") from exc
            except httpx.TimeoutException as exc:  # a time limit, not the network: the call's, or the request's
                limit = ran_out() or f"the request's own limit of {self._limit:g} s"
                raise self._may_exist(model, submitted_at, f"{limit} ran out before its answer came") from exc
            except httpx.HTTPError as exc:
                raise self._may_exist(model, submitted_at, f"the connection failed after sending ({exc!r})") from exc
            except KeyboardInterrupt:  # the request may have reached the service: say so before stopping
                print(f"\nInterrupted: {self._may_exist(model, submitted_at, 'interrupted (Ctrl-C) during the call')}",
                      file=sys.stderr)
                raise
            if answer.status == 429:  # refused, not created
                raise _Retry("HTTP 429", parse_retry_after(answer.headers), answer)
            return self._created(answer, model, submitted_at)

        def give_up(problem: _Retry, attempts: int) -> SparkError:
            if problem.answer is not None:
                return api_error(problem.answer, "creating the task")
            if (timeout := ran_out()) is not None:  # the call's timeout, not the network, ended it
                return SparkError(f"{timeout} ran out before the create was sent: nothing was created "
                                  f"({attempts} attempts; last: {problem})", hint="pass a longer timeout=")
            return SparkError(f"could not connect to {self.base_url} ({attempts} attempts; last: {problem})",
                              hint="check VTRIX_GENERATION_URL and the network; no task was created")

        return self._attempts(attempt, what="create", give_up=give_up)

    def _created(self, answer: Answer, model: str, submitted_at: str) -> dict[str, Any]:
        data, status = answer.data, answer.status
        if status >= 500 or 300 <= status < 400:
            raise self._may_exist(model, submitted_at, f"the service answered HTTP {status}")
        if status in ACCOUNT_STATUSES:  # e.g. 402 {"error": "insufficient credits"}: not a task's error
            raise api_error(answer, "creating the task")
        if isinstance(data, dict) and not data.get("id") and data.get("error"):
            raise task_failure(data["error"], None, model)  # refused before a task existed
        if status >= 400:
            raise api_error(answer, "creating the task")
        if not isinstance(data, dict):
            unreadable = answer.problem or "not a JSON object"
            raise self._may_exist(model, submitted_at, f"its answer was unreadable ({unreadable})")
        task_id = data.get("id")
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = data["id"] = str(task_id)
        if not isinstance(task_id, str) or not task_id.strip():
            raise self._may_exist(model, submitted_at, "its answer had no task id")
        if not usable_task_id(task_id):
            shown = safe_text(task_id, newlines=False, limit=60)
            raise self._may_exist(model, submitted_at, f"its answer had an unusable task id {shown!r}")
        logger.info("created task %s (%s)", task_id, model)
        return data

    @staticmethod
    def _may_exist(model: str, submitted_at: str, reason: str) -> TaskMayExist:
        return TaskMayExist(
            f"creating a {model} task: {reason}, so a task may have been created (and billed) "
            f"without spark_nb learning its id; it was not resent, to avoid paying twice",
            hint=f"look for a {model} task created at {submitted_at} in your Vtrix dashboard before "
            "submitting again; if there is none, submitting again is safe",
            model=model,
            submitted_at=submitted_at,
        )

    def probe(self, method: str, url: str, *, limit: float) -> Answer:
        """One request read whole within limit seconds: no retry, no error mapping, the key only to the API's own
        host (the doctor's free requests); raises what httpx raises."""
        return self._answer(method, url, limit=limit, follow_redirects=False)

    # -- reads: retried until the deadline --------------------------------------------------------

    def get_task(self, task_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        """GET a task object, retrying transient failures until deadline (time.monotonic())."""
        url = f"{self.base_url}/model/v1/generation/task/{path_segment(task_id)}"
        return self._read_json(lambda: self._answer("GET", url, deadline=deadline), what=f"reading task {task_id}",
                               task_id=task_id, deadline=deadline, attempts=POLL_ATTEMPTS)

    def upload(self, endpoint: str, path: Path) -> str:
        """POST a file as multipart field `file` to an upload endpoint; returns the `url` (or `data.url`) it answers."""
        limit = self._limit + path.stat().st_size / MIN_UPLOAD_BYTES_PER_S

        def send() -> Answer:
            with open(path, "rb") as fh:
                return self._answer("POST", endpoint, limit=limit, files={"file": (file_name_to_send(path.name), fh)})

        try:
            data = self._read_json(send, what=f"uploading {path.name}", error=UploadError)
        except (AuthenticationError, PermissionDeniedError, RateLimitError):
            raise  # the key or the account, not this file
        except APIError as exc:  # refused, e.g. 413 too large: an upload problem, named as one
            too_large = exc.status_code == 413
            raise UploadError(f"the upload endpoint refused {path.name}: {exc.headline}",
                              hint="the file is over the endpoint's size limit: shrink or cut it" if too_large
                              else "check SPARK_NB_UPLOAD_URL (or uploader=) and what the endpoint expects") from exc
        nested = data.get("data") if isinstance(data, dict) else None
        url = data.get("url") if isinstance(data, dict) else None
        url = url or (nested.get("url") if isinstance(nested, dict) else None)
        if not is_http_url(url):
            raise UploadError(
                f"the upload endpoint {endpoint} answered without an http(s) url",
                hint='it must answer JSON {"url": ...} or {"data": {"url": ...}}',
            )
        return url

    def _read_json(self, send: Callable[[], Answer], *, what: str, task_id: str | None = None,
                   deadline: float | None = None, attempts: int | None = None,
                   error: type[SparkError] = ServerError) -> dict[str, Any]:
        """send() until it answers a JSON object, retrying transient failures and unreadable answers."""
        def attempt() -> dict[str, Any]:
            try:
                answer = send()
            except NOT_SENDABLE as exc:
                raise not_sent(what, exc, UploadError if error is UploadError else SparkError) from exc
            except httpx.HTTPError as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}") from exc
            if answer.status < 300 and isinstance(answer.data, dict):
                return answer.data
            if answer.status >= 300 and answer.status not in RETRYABLE_STATUS:
                raise api_error(answer, what, task_id)
            if answer.status < 300:
                raise _Retry(f"an unreadable answer ({answer.problem or 'not a JSON object'})")
            raise _Retry(f"HTTP {answer.status}", parse_retry_after(answer.headers))

        def give_up(problem: _Retry, attempts: int) -> SparkError:
            ends = earliest(deadline)
            if ends is not None and time.monotonic() >= ends:  # the call's timeout, not the service, ended it
                return error(f"{what} did not end within the call's timeout ({attempts} attempts; last: {problem})",
                             hint="pass a longer timeout= (a large file on a slow link takes long), or try again "
                                  "later", task_id=task_id)
            return error(f"{what} failed after {attempts} attempts; last: {problem}",
                         hint="the service or network is failing; try again later", task_id=task_id)

        return self._attempts(attempt, what=what, give_up=give_up, attempts=attempts, deadline=deadline)

    # -- download: streamed to a temporary name, checked, then renamed ----------------------------

    def download(self, url: str, dest: Path, *, deadline: float, expected_size: int | None = None,
                 max_bytes: int | None = None, check: Callable[[Path], None] | None = None,
                 task_id: str | None = None) -> int:
        """Download url to dest by deadline, atomically: under a temporary name, size-checked, then check(tmp)
        (e.g. that it decodes), then renamed. Transient failures are retried. Returns the size.

        Result URLs need no key, so downloads go through a client that has none.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(dest.parent, of=dest)  # what a download of dest killed mid-way left

        def attempt() -> int:
            tmp = make_part(dest)  # created exclusively, never through a file or link planted there
            try:
                size = _fetch_traced(url, tmp, deadline=deadline, max_bytes=max_bytes or MAX_RESULT_BYTES,
                                     expected_size=expected_size)
                if expected_size is not None and size != expected_size:
                    raise _Retry(f"got {size} bytes, the task says {expected_size}")
                if check is not None:
                    check(tmp)
                os.replace(tmp, dest)
                return size
            except TransferError as exc:
                if not exc.retryable:
                    raise DownloadError(f"could not download the result: {exc}", task_id=task_id,
                                        hint=f"the video stays at {url} for a while; wait() again, or fetch it "
                                             "with a browser or curl") from exc
                raise _Retry(str(exc), exc.retry_after) from exc
            finally:
                tmp.unlink(missing_ok=True)

        def give_up(problem: _Retry, attempts: int) -> SparkError:
            return DownloadError(
                f"could not download the result after {attempts} attempts; last: {problem}",
                hint=f"the video stays at {url} for a while; fetch it with a browser or curl", task_id=task_id,
            )

        return self._attempts(attempt, what="download", give_up=give_up, deadline=deadline)


def _fetch_traced(url: str, dest: Path, **limits: Any) -> int:
    """fetch_to_file for a result video, traced (URL, status, size, time) when SPARK_NB_TRACE is set."""
    started, size, failure = time.monotonic(), None, None
    try:
        size = fetch_to_file(url, dest, what="the result video", **limits)
        return size
    except TransferError as exc:
        failure = exc
        raise
    finally:
        if trace := _trace.target():
            _trace.download(trace, url=url, started=started, size=size, error=failure,
                            status=200 if size is not None else getattr(failure, "status", None))


def path_segment(text: str) -> str:
    """text as one URL path segment: every "/" and "?" quoted, and "." or ".." (which URLs collapse) spelled out."""
    quoted = quote(text, safe="")
    return "%2E" * len(quoted) if quoted in (".", "..") else quoted


_clients: dict[tuple[str, int, bool], ApiClient] = {}
_clients_lock = threading.Lock()


def client_for(base_url: str, api_key: Secret | None, *, local: bool = False) -> ApiClient:
    """The shared ApiClient for this base URL and key (one pool each, created once, closed at exit); local: the
    embedded server's (its creates need no published spec: it serves our own)."""
    cache_key = (base_url, hash(api_key), local)
    with _clients_lock:
        client = _clients.get(cache_key)
        if client is None:
            if not _clients:
                atexit.register(_close_clients)
            client = _clients[cache_key] = ApiClient(base_url, api_key, specs=not local)
        return client


def _close_clients() -> None:
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
