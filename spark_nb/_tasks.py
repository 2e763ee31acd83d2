"""Task: a handle on one generation that can be polled, waited on (the one poll loop) and rebuilt from its id."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ._boundary import boundary
from ._config import Settings, hide_key, resolve
from ._ffmpeg import DecodeReport, ProbeError, try_decode
from ._journal import FILENAME, Entry, Journal, journal_at
from ._notices import begin
from ._polling import PollSchedule
from ._progress import TaskProgress
from ._results import Result
from ._task_state import MAX_TASK_ID_CHARS, TaskState, as_number, cost_of, usable_task_id, usage_of
from ._urls import canonical_url, is_http_url
from .errors import DownloadError, NotFoundError, SparkError, TaskCancelled, TaskTimeout, UsageError, safe_text
from .models import task_failure

if TYPE_CHECKING:  # httpx and asyncio load on first use, so `import spark_nb` stays fast
    from ._client import ApiClient

# the embedded server costs nothing to ask, so on it a wait looks at least twice a second (forms move smoothly)
LOCAL_POLL_CAP_S = 0.5
OnUpdate = Callable[["TaskState"], None]
logger = logging.getLogger("spark_nb.tasks")
T = TypeVar("T")
AMBIGUOUS_SHOWN = 10  # candidates named when a task id prefix matches several
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _this_task(task: Task) -> tuple[str, str]:
    """The task id and model an unexpected error in one of a Task's methods names (see _boundary)."""
    return task.id, task.model


@dataclasses.dataclass(frozen=True)
class Task:
    """A submitted task; rebuild one from its id with Task.from_id after a kernel restart.

    Attributes:
        id: the task id.
        model: the model id ("" when not known).
        settings: where it runs (backend, base URL, key, output folder).
        initial: the create call's answer, when this process created it (its first state, read without a request).
        started: when this handle was made (time.monotonic()), for the poll schedule.
        saved: its video already on disk, when an identical earlier call's is reused.
        origin: "created" by this call, "reused" (an identical earlier call's finished task) or "attached" (an
            identical earlier call's task, still running).
    """

    id: str
    model: str
    settings: Settings = dataclasses.field(repr=False, compare=False)
    initial: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)
    started: float = dataclasses.field(default_factory=time.monotonic, repr=False, compare=False)
    saved: Path | None = dataclasses.field(default=None, repr=False, compare=False)  # its video, already on disk
    origin: str = dataclasses.field(default="created", compare=False)  # or "reused", "attached": an earlier call's

    @classmethod
    @boundary
    def from_id(cls, task_id: str, model: str | None = None, **config: Any) -> Task:
        """A handle on an existing task, e.g. after a kernel restart; nothing is sent until you wait or ask.

        Args:
            task_id: the task's id, or its beginning when this machine's journal knows one task starting so (as git
                takes a commit's: the short id a progress bar shows). An id the journal does not know is used as it
                is (a task made elsewhere).
            model: the model id, for readable error hints (the journal's when it knows the task).
            **config: the options of configure() for this task (api_key, backend, base_url, output_dir, ...): the
                backend and key that created it.

        Returns:
            The Task.

        Raises:
            SparkError: several tasks the journal knows start with task_id (they are listed), or a key found in
                VTRIX_API_KEY or a key store is malformed (the cloud backend needs it).
            UsageError: task_id is empty or not printable text, or an unknown option, or one of the wrong type.
        """
        if isinstance(task_id, int) and not isinstance(task_id, bool):
            task_id = str(task_id)
        if not isinstance(task_id, str) or not task_id.strip() or not usable_task_id(task_id.strip()):
            raise UsageError(f"a task id is a non-empty text, printable and at most {MAX_TASK_ID_CHARS} characters "
                             f"long, not {safe_text(repr(task_id), newlines=False, limit=40)}",  # e.g. a shell's \xff
                             hint="give the id generate() or submit() printed (spark-nb history lists them)")
        settings = begin(resolve(**hide_key(config)))
        whole, known_model = _whole_id(task_id.strip(), settings)
        return cls(id=whole, model=model or known_model or "", settings=settings)

    @property
    def client(self) -> ApiClient:
        """The API client of this task's backend."""
        from ._backends import api_client

        return api_client(self.settings)

    @boundary(task_of=_this_task)
    def status(self) -> TaskState:
        """Read the task's current state once (transient failures retried briefly).

        Returns:
            The TaskState: status, progress and the raw answer.

        Raises:
            NotFoundError: the backend does not know the task.
            AuthenticationError: the key was refused (401).
            PermissionDeniedError: the account was refused (402, 403).
            RateLimitError: 429s for a minute.
            ServerError: 5xx answers for a minute.
            SparkError: the service could not be reached, or the key found is malformed.
        """
        return TaskState.from_raw(self._read(time.monotonic() + 60), self.id, self.model)

    def _read(self, deadline: float) -> dict[str, Any]:
        client = self.client
        try:
            return client.get_task(self.id, deadline=deadline)
        except NotFoundError as exc:
            where = ("the local backend (one made with another SPARK_NB_HOME, or finished over a week ago, is not "
                     "there)" if self.settings.backend == "local" else f"the cloud backend at {client.base_url}")
            said = exc.headline.split(" failed: ", 1)[-1]  # the local server's says where its tasks live
            hint = "check the task id, and that backend, base URL and key are the ones that created it"
            made = _made_elsewhere(self.id, self.settings)
            if made is not None:
                there = f"at {made.base_url}" if made.backend == "cloud" else f"on the {made.backend} backend"
                said += f"; this machine's journal has it as made {made.when} {there}"
                hint = (f"ask it there: set VTRIX_GENERATION_URL={made.base_url} and its key" if made.backend == "cloud"
                        else "ask the local backend: unset VTRIX_API_KEY (or pass backend='local')")
            raise NotFoundError(f"task {self.id} is unknown to {where} ({said})", status_code=404, task_id=self.id,
                                request_id=exc.request_id, body=exc.body, hint=hint) from exc

    @boundary(task_of=_this_task)
    def wait(self, timeout: float = 600, *, progress: bool = True, cancel: threading.Event | None = None,
             on_update: OnUpdate | None = None) -> Result:
        """Poll until the task finishes, then download and check its video.

        The task itself goes on when the wait stops early (timeout, cancel, Ctrl-C) and can be waited on again.

        Args:
            timeout: seconds to wait, in all (a finite number above 0).
            progress: show a progress bar (in Jupyter or the terminal).
            cancel: a threading.Event; setting it stops the wait with TaskCancelled.
            on_update: called with every TaskState seen (the progress bar is one such subscriber).

        Returns:
            The Result: the downloaded, decoded-and-checked video, its URL, duration and cost.

        Raises:
            TaskFailed: the task ended without a video (its error code, hint and whether trying again may succeed).
            TaskTimeout: the timeout passed first; the task goes on (the hint has the line that resumes it).
            TaskCancelled: cancel was set; the task goes on.
            DownloadError: the video could not be downloaded intact.
            NotFoundError: the backend does not know the task.
            AuthenticationError: the key was refused (401).
            PermissionDeniedError: the account was refused (402, 403: balance or permission).
            RateLimitError: 429s until the time ran out.
            ServerError: 5xx answers until the time ran out.
            UsageError: a timeout that is not a number above 0, a cancel that is no Event, an on_update that is
                not callable.
            SparkError: the service could not be reached, or the key found is malformed.
        """
        timeout = checked_wait(timeout, cancel, on_update)
        return self._wait_until(time.monotonic() + timeout, timeout, progress=progress, cancel=cancel,
                                on_update=on_update)

    @boundary(task_of=_this_task)
    def _wait_until(self, deadline: float, timeout: float, *, progress: bool = True,
                    cancel: threading.Event | None = None, on_update: OnUpdate | None = None) -> Result:
        """wait() by deadline (time.monotonic()), for a call whose timeout (said in a TaskTimeout) began earlier."""
        schedule = (PollSchedule(blind_cap=LOCAL_POLL_CAP_S, cap=LOCAL_POLL_CAP_S) if self.settings.backend == "local"
                    else PollSchedule())
        state = TaskState.from_raw(self.initial, self.id, self.model) if self.initial else None
        seen = state  # the last state read, for a timeout's message
        try:
            with TaskProgress(self.id, enabled=progress) as bar:
                while True:
                    if state is None:
                        state = seen = self._poll(deadline, timeout, seen)
                    bar.update(state.status, 1.0 if state.done else state.progress)
                    if on_update is not None:
                        on_update(state)
                    if state.done:
                        break
                    if state.failed:
                        failure = task_failure(state.raw.get("error"), self.id, state.model)
                        self._journal_finished(completed=False, error=failure.headline, code=failure.code,
                                               retryable=failure.retryable)
                        raise failure
                    delay = min(schedule.next_delay(self._elapsed(state), state.progress), deadline - time.monotonic())
                    if delay <= 0:
                        raise self._timeout(timeout, state)
                    self._sleep(delay, cancel)
                    state = None
            result = download_result(lambda: self.client, state, self.settings.output_dir, deadline=deadline,
                                     saved=self.saved, local=self.settings.backend == "local")
            result = dataclasses.replace(result, origin=self.origin)  # reused, attached or created here
            self._journal_finished(completed=True, cost=cost_of(result.usage), seconds=result.duration,
                                   result_url=result.url, path=str(result.path.resolve()))
            return result
        except KeyboardInterrupt:
            model = self.model or (state.model if state else "")
            where = ("is done on the service but its video was not downloaded. Fetch it with"
                     if state is not None and state.done else "keeps running on the service. Resume it with")
            print(f"\nInterrupted: task {self.id} {where}:\n"
                  f'    spark_nb.Task.from_id("{self.id}", model="{model}").wait()', file=sys.stderr)
            raise

    @boundary(task_of=_this_task)
    async def async_status(self) -> TaskState:
        """The async twin of status().

        Returns:
            The TaskState, as status() returns it.

        Raises:
            SparkError: as status() raises (NotFoundError, AuthenticationError, ...).
        """
        return await run_cancellable(lambda _: self.status())

    @boundary(task_of=_this_task)
    async def async_wait(self, timeout: float = 600, *, progress: bool = True,
                         on_update: OnUpdate | None = None) -> Result:
        """The async twin of wait(): polls in a worker thread; cancelling it stops the wait, not the task.

        Args:
            timeout: seconds to wait, in all.
            progress: show a progress bar.
            on_update: called with every TaskState seen.

        Returns:
            The Result, as wait() returns it.

        Raises:
            SparkError: as wait() raises (TaskFailed, TaskTimeout, DownloadError, ...).
        """
        return await run_cancellable(
            lambda cancel: self.wait(timeout, progress=progress, cancel=cancel, on_update=on_update))

    def _journal_finished(self, **how: Any) -> None:
        """Record in the journal how the task ended (a journal problem never fails the generation)."""
        try:
            journal_at(self.settings.home).finished(self.id, **how)
        except Exception as exc:  # the video matters more than the record of it
            logger.warning("could not record task %s in the journal: %r", self.id, exc)

    def _poll(self, deadline: float, timeout: float, seen: TaskState | None) -> TaskState:
        try:
            raw = self._read(deadline)
        except SparkError as exc:  # the reads end at the deadline too (_answers): at it, a timeout
            if time.monotonic() >= deadline - 0.5 and not isinstance(exc, TaskTimeout):
                raise self._timeout(timeout, seen, exc) from exc
            raise
        return TaskState.from_raw(raw, self.id, self.model)

    def _elapsed(self, state: TaskState) -> float:
        if self.initial is not None:  # submitted here: our own clock is exact, the service's is whole seconds
            return time.monotonic() - self.started
        created = as_number(state.raw.get("created_at"))
        if created is not None and 0 <= time.time() - created < 86400:
            return time.time() - created
        return time.monotonic() - self.started

    def _sleep(self, seconds: float, cancel: threading.Event | None) -> None:
        if cancel is None:
            time.sleep(seconds)
        elif cancel.wait(seconds):
            raise TaskCancelled(
                f"stopped waiting for task {self.id}; it keeps running on the service",
                hint=f'resume it with spark_nb.Task.from_id("{self.id}", model="{self.model}").wait()',
                task_id=self.id,
            )

    def _timeout(self, timeout: float, state: TaskState | None, failed: SparkError | None = None) -> TaskTimeout:
        seen = f"last seen {state.status}" if state else "the service did not answer"
        if state and state.progress is not None:
            seen += f" at {state.progress:.0%}"
        if failed is not None:  # the readings that failed until the deadline: why the task was not seen to end
            seen += f"; then {failed.headline}"
        return TaskTimeout(f"task {self.id} did not finish within {timeout:g}s ({seen})",
                           task_id=self.id, model=self.model or (state.model if state else ""))


def _whole_id(task_id: str, settings: Settings) -> tuple[str, str | None]:
    """The id of the one task in the journal whose id is task_id or starts with it, and its model; task_id itself
    when none is (or the journal cannot be read); SparkError naming the candidates when several are."""
    try:
        journal = _journal_if_any(task_id, settings)
        if journal is None:
            return task_id, None
        exact = journal.by_task(task_id)
        if exact is not None and _here(exact, settings):
            return task_id, exact.model
        candidates: dict[str, Entry] = {}
        for entry in journal.entries(task_prefix=task_id):  # newest first: each id with its newest attempt here
            if entry.task_id and _here(entry, settings):
                candidates.setdefault(entry.task_id, entry)
    except SparkError as exc:  # a journal that cannot be read cannot say which task is meant: the id as given
        logger.debug("task ids not looked up in the journal: %s", exc.headline)
        return task_id, None
    if len(candidates) == 1:
        (whole, entry), = candidates.items()
        return whole, entry.model
    if not candidates:
        return task_id, None
    shown = [f"{i} ({e.model}, {e.when})" for i, e in list(candidates.items())[:AMBIGUOUS_SHOWN]]
    more = f" and {len(candidates) - AMBIGUOUS_SHOWN} more" if len(candidates) > AMBIGUOUS_SHOWN else ""
    raise SparkError(f"task id {task_id!r} is ambiguous: {len(candidates)} tasks this machine made start with it: "
                     f"{'; '.join(shown)}{more}", hint="give more of the id (spark-nb history lists them whole)")


def _made_elsewhere(task_id: str, settings: Settings) -> Entry | None:
    """The newest attempt this machine's journal has of a task whose id is task_id (or starts with it) made at
    another service than these settings talk to; None when there is none, or the journal cannot be read."""
    try:
        journal = _journal_if_any(task_id, settings)
        return None if journal is None else next(
            (e for e in journal.entries(task_prefix=task_id) if not _here(e, settings)), None)
    except SparkError:
        return None


def _journal_if_any(task_id: str, settings: Settings) -> Journal | None:
    """The journal to look task_id up in; None with no id or no journal (a mere lookup makes none)."""
    found = bool(task_id) and (Path(settings.home).expanduser() / FILENAME).exists()
    return journal_at(settings.home) if found else None


def _here(entry: Entry, settings: Settings) -> bool:
    """Whether the attempt's task is at the service these settings talk to (its backend, a cloud's base URL)."""
    return entry.backend == settings.backend and (settings.backend != "cloud" or  # a row spelled otherwise too
                                                  canonical_url(entry.base_url or "") == settings.base_url)


def checked_wait(timeout: Any, cancel: Any = None, on_update: Any = None, *, positive: bool = False) -> float:
    """timeout as seconds, once it and cancel and on_update are found usable: a UsageError saying which is not, and
    how to fix it, before anything is sent (generate checks them before it creates the task; positive: a timeout
    of zero or less, which would pay for a task nobody waits for, is refused too)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        shown = safe_text(repr(timeout), newlines=False, limit=40)
        raise UsageError(f"timeout must be a number of seconds, not {shown}",
                         hint="pass e.g. timeout=600 (ten minutes)")
    seconds = float(timeout)
    if not math.isfinite(seconds) or (positive and seconds <= 0):
        raise UsageError(f"timeout must be a {'positive' if positive else 'finite'} number of seconds, not "
                         f"{timeout!r}", hint="pass e.g. timeout=600 (ten minutes); a long wait is a large number")
    if cancel is not None and not all(callable(getattr(cancel, name, None)) for name in ("is_set", "wait")):
        raise UsageError(f"cancel must be a threading.Event, not {type(cancel).__name__}",
                         hint="pass cancel=threading.Event(), and set() it to stop waiting")
    if on_update is not None and not callable(on_update):
        raise UsageError(f"on_update must be a function taking a TaskState, not {type(on_update).__name__}")
    return seconds


def result_path(output_dir: Path, task_id: str) -> Path:
    """Where a task's video is saved: <task id>.mp4 when the id is a plain name, else a name derived from it.

    The id comes from the service: one like "../../x" or "/abs/x" never becomes a path of its own.
    """
    if _SAFE_ID.fullmatch(task_id) and ".." not in task_id:
        return Path(output_dir) / f"{task_id}.mp4"
    return Path(output_dir) / f"task-{hashlib.sha256(task_id.encode()).hexdigest()[:24]}.mp4"


def download_result(client: Callable[[], ApiClient], state: TaskState, output_dir: Path, *, deadline: float,
                    saved: Path | None = None, local: bool = False) -> Result:
    """Download a completed task's video into output_dir by deadline, unless it is already there intact (at saved,
    or from an earlier download); client() is asked for only when a download is needed.

    Every field of the content item but `url` is optional. Without an announced size the download is bounded by
    the result cap (_client.MAX_RESULT_BYTES) and the deadline, and must decode, as with one. A local task's video
    (local) is fetched from today's embedded server, whatever server its URL names (see on_server).
    """
    url = state.content.get("url")
    if not isinstance(url, str) or not is_http_url(url):
        raise SparkError(f"task {state.id} completed but its answer has no usable video URL",
                         hint="read task.status().raw to see what the service returned", task_id=state.id)
    expected = state.announced_size
    on_disk = saved is not None and _intact(saved, None)
    path = saved if on_disk and saved is not None else result_path(output_dir, state.id)

    decoded: list[DecodeReport] = []  # the downloaded file's decode, which its final name inherits

    def check(video: Path) -> None:
        try:
            decoded.append(try_decode(video, 0.2))
        except ProbeError as exc:
            raise DownloadError(f"the downloaded video cannot be decoded ({exc}); it was not kept",
                                hint=f"wait() again to fetch it again from {url}", task_id=state.id) from exc

    if not on_disk and not _intact(path, expected):
        api = client()
        if local:
            url = on_server(url, api.base_url)
        try:
            api.download(url, path, deadline=deadline, expected_size=expected, check=check, task_id=state.id)
        except OSError as exc:  # the folder or the disk, not the network
            raise DownloadError(f"could not save the result video in {output_dir}: {exc}", task_id=state.id,
                                hint="free some disk space or choose another output_dir, then wait() again") from exc
    report = decoded[-1] if decoded else try_decode(path, 0.2)
    return Result(
        task_id=state.id, model=state.model, status=state.status, url=url, path=path, size=path.stat().st_size,
        duration=report.facts.duration, usage=usage_of(state.raw.get("usage")), raw=state.raw,
    )


def on_server(url: str, base_url: str) -> str:
    """url's path and query on the server at base_url: where a local task's video is now.

    The embedded local server listens on a new port in every process, and the journal keeps the URL a task's
    result had in the process that made it; the video itself stays in the local store (SPARK_NB_HOME/local),
    which today's server serves under the same path. So a local URL is read relative to today's server, never
    to the port it was recorded with (that port is closed, or another program's).
    """
    parts, base = urlsplit(url), urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def _intact(path: Path, expected: int | None) -> bool:
    """An earlier download of this result is complete (expected bytes, when given) and decodes."""
    try:
        if not path.is_file() or (expected is not None and path.stat().st_size != expected):
            return False
        try_decode(path, 0.2)
    except (OSError, ProbeError):
        return False
    return True


async def run_cancellable(fn: Callable[[threading.Event], T]) -> T:
    """Run fn(cancel_event) in a worker thread; asyncio cancellation of the caller sets the event."""
    import asyncio

    cancel = threading.Event()
    try:
        return await asyncio.to_thread(fn, cancel)
    except asyncio.CancelledError:
        cancel.set()
        raise
