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
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ._boundary import boundary
from ._config import Settings, hide_key, resolve
from ._ffmpeg import DecodeReport, ProbeError, try_decode
from ._journal import FILENAME, Entry, journal_at
from ._money import usd, usd_text
from ._polling import PollSchedule
from ._progress import TaskProgress
from ._results import Result
from ._urls import is_http_url
from .errors import DownloadError, NotFoundError, SparkError, TaskCancelled, TaskTimeout, UsageError, safe_text
from .models import task_failure

if TYPE_CHECKING:  # httpx and asyncio load on first use, so `import spark_nb` stays fast
    from ._client import ApiClient

DONE_STATUSES = frozenset({"completed", "success", "succeeded"})
FAILED_STATUSES = frozenset({"failed", "error", "cancelled", "canceled"})
# the embedded server costs nothing to ask, so on it a wait looks at least twice a second (forms move smoothly)
LOCAL_POLL_CAP_S = 0.5
OnUpdate = Callable[["TaskState"], None]
logger = logging.getLogger("spark_nb.tasks")
T = TypeVar("T")
STATUS_CHARS, MODEL_CHARS = 40, 100
AMBIGUOUS_SHOWN = 10  # candidates named when a task id prefix matches several
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One reading of a task: status, progress (0..1 or None) and the raw task object."""

    id: str
    model: str
    status: str
    progress: float | None
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: dict[str, Any], task_id: str, model: str) -> TaskState:
        """Read a task object as the protocol page describes it, trusting none of its types.

        The id is always the one we asked about: an answer naming another task (or a path) changes nothing.
        progress is a number or a string spelling one (as_number), clamped to 0..1 ("2.5" reads as 1.0, "-1" as
        0.0); anything else (NaN, "abc", a list) reads as None, i.e. unknown.
        """
        progress = as_number(raw.get("progress"))
        status, answered_model = raw.get("status"), raw.get("model")
        answered_model = safe_text(answered_model, newlines=False, limit=MODEL_CHARS) \
            if isinstance(answered_model, str) else None
        status = safe_text(status.lower(), newlines=False, limit=STATUS_CHARS) if isinstance(status, str) else None
        return cls(  # the service's strings made inert: they reach progress bars, forms and the CLI as they are
            id=task_id,
            model=answered_model or model,
            status=status or "pending",
            progress=None if progress is None else min(1.0, max(0.0, progress)),
            raw=raw,
        )

    @property
    def content(self) -> dict[str, Any]:
        """The result's content item (output[0].content[0]) when the answer has one as an object, else {}."""
        try:
            item = self.raw["output"][0]["content"][0]
        except (KeyError, IndexError, TypeError):
            return {}
        return item if isinstance(item, dict) else {}

    @property
    def announced_size(self) -> int | None:
        """The video's size in bytes as the task announces it (`size`), or None when absent or not a size.

        Only a whole number of bytes above zero counts ("-5", "12.5", 0, "abc" are ignored): the download is then
        bounded by the result cap and checked by decoding instead of by its size.
        """
        size = as_number(self.content.get("size"))
        return int(size) if size is not None and size > 0 and size.is_integer() else None

    @property
    def announced_duration(self) -> float | None:
        """The video's length in seconds as the task announces it (`duration`, often a string), for information
        only (Result.duration is measured on the file); None when absent, negative or not a number."""
        duration = as_number(self.content.get("duration"))
        return duration if duration is not None and duration >= 0 else None

    @property
    def done(self) -> bool:
        """True when the video is ready."""
        return self.status in DONE_STATUSES

    @property
    def failed(self) -> bool:
        """True when the task ended without a video."""
        return self.status in FAILED_STATUSES


def _this_task(task: Task) -> tuple[str, str]:
    """The task id and model an unexpected error in one of a Task's methods names (see _boundary)."""
    return task.id, task.model


@dataclasses.dataclass(frozen=True)
class Task:
    """A submitted task; rebuild one from its id with Task.from_id after a kernel restart."""

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
        """A handle on an existing task (config: api_key, backend, base_url, output_dir, as for configure()).

        task_id may be the beginning of the id of a task this machine's journal knows (as git takes a commit's),
        e.g. the short id a progress bar shows; several tasks starting so raise a SparkError listing them. An id
        the journal does not know is used as it is (a task made elsewhere).
        """
        settings = resolve(**hide_key(config))
        whole, known_model = _whole_id(str(task_id).strip(), settings)
        return cls(id=whole, model=model or known_model or "", settings=settings)

    @property
    def client(self) -> ApiClient:
        """The API client of this task's backend."""
        from ._backends import api_client

        return api_client(self.settings)

    @boundary(task_of=_this_task)
    def status(self) -> TaskState:
        """Read the task's current state once (transient failures retried briefly)."""
        return TaskState.from_raw(self._read(time.monotonic() + 60), self.id, self.model)

    def _read(self, deadline: float) -> dict[str, Any]:
        client = self.client
        try:
            return client.get_task(self.id, deadline=deadline)
        except NotFoundError as exc:
            where = (f"the local backend (its tasks live in {self.settings.home / 'local' / 'tasks'}; one made with "
                     "another SPARK_NB_HOME, or finished over a week ago, is not there)"
                     if self.settings.backend == "local" else f"the cloud backend at {client.base_url}")
            said = exc.headline.split(" failed: ", 1)[-1]
            raise NotFoundError(f"task {self.id} is unknown to {where} ({said})", status_code=404, task_id=self.id,
                                request_id=exc.request_id, body=exc.body,
                                hint="check the task id, and that backend, base URL and key are the ones that "
                                     "created it") from exc

    @boundary(task_of=_this_task)
    def wait(self, timeout: float = 600, *, progress: bool = True, cancel: threading.Event | None = None,
             on_update: OnUpdate | None = None) -> Result:
        """Poll until the task finishes, then download and check its video.

        on_update(state) is called with every state seen (the progress bar is one such subscriber); setting
        cancel stops the wait with TaskCancelled; TaskTimeout after timeout seconds. The task itself goes on
        in both cases and can be waited on again.
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
        """The async twin of status()."""
        return await run_cancellable(lambda _: self.status())

    @boundary(task_of=_this_task)
    async def async_wait(self, timeout: float = 600, *, progress: bool = True,
                         on_update: OnUpdate | None = None) -> Result:
        """The async twin of wait(): polls in a worker thread; cancelling it stops the wait, not the task."""
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
    if not task_id or not (Path(settings.home).expanduser() / FILENAME).exists():  # none: nothing to look up (and
        return task_id, None                                                     # none made by a mere lookup)
    try:
        journal = journal_at(settings.home)
        exact = journal.by_task(task_id)
        if exact is not None:
            return task_id, exact.model
        candidates: dict[str, Entry] = {}
        for entry in journal.entries():  # newest first: each id with its newest attempt
            if entry.task_id and entry.task_id.startswith(task_id):
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


_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")


def as_number(value: Any) -> float | None:
    """A finite number from a JSON value: a number, or a string spelling one in JSON's way; else None.

    The one reading of "numbers that arrive as strings" (protocol page), for progress, created_at, size,
    duration and the usage figures. Booleans, NaN, infinities, "abc", "1_000", lists and objects are None.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 64 or not _NUMBER.fullmatch(text):
            return None
        value = float(text)
    if not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return number if math.isfinite(number) else None


def cost_of(usage: Any) -> Decimal | None:
    """A task's cost as a decimal.Decimal amount of US dollars, or None when unknown.

    usage comes in two shapes: the seed pages' `{cost, discount, *_tokens, ...}` and the official client's
    `{cost, quantity, unit_price, extra_info}`; cost, quantity and unit_price may each be a number or a string,
    read as spelled (a string never goes through float: _money.usd). A cost that is present but unreadable or
    negative ("abc", "-1") is unknown, never guessed.
    """
    if not isinstance(usage, dict):
        return None
    if usage.get("cost") is not None:
        return usd(usage["cost"])
    # No cost but a quantity and a unit price: their product is what the task is billed by definition of a unit
    # price, so reporting it is honest. If the service also applied a discount it overstates the cost, which errs
    # on the safe side for the budget (spark_nb._budget adds up these figures).
    quantity, price = usd(usage.get("quantity")), usd(usage.get("unit_price"))
    if quantity is None or price is None:
        return None
    return usd(quantity * price)  # 1e9 units at 1e9 dollars is no cost either


def usage_of(usage: Any) -> dict[str, Any]:
    """A Result's usage: a copy of the task's `usage` object ({} when it is not one) whose `cost`, when there is
    one, is what cost_of reads, as decimal text (the service's own spelling when it sent a string).

    So Result.cost, the journal and the budget agree: a derived cost (quantity × unit_price) is filled in, and an
    unreadable one ("abc") is dropped rather than shown. The service's answer as sent stays in Result.raw.
    """
    if not isinstance(usage, dict):
        return {}
    cleaned = dict(usage)
    cost = cost_of(usage)
    if cost is None:
        cleaned.pop("cost", None)
    elif isinstance(usage.get("cost"), str):
        cleaned["cost"] = usage["cost"].strip()
    else:
        cleaned["cost"] = usd_text(cost)
    return cleaned
