"""One batch job, as the job notebook runs it: submit (or resume) with the ledger kept current, then finish.

Each step writes to disk before it goes on: the ledger says `submitting` before the create call and
`submitted` with the task id as soon as the task exists (also in `task.json`), so a kill at any moment
leaves enough to resume, or to know that a task may exist.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import _pipeline as pipeline
from .._results import Result
from .._tasks import Task, TaskState
from ..errors import SparkError, TaskCancelled, TaskFailed, TaskMayExist
from ..models import get_model
from ._ledger import Entry, Ledger
from ._outcome import JobState, RowStatus

LEDGER_WATCH_S = 0.2
TASK_FILE = "task.json"
RESULT_FILE = "result.json"


class UncertainJob(SparkError):
    """The ledger says this job's create call may have made a task; it is not resent without being asked."""


def submit_or_resume(model: str, inputs: dict[str, str], out_dir: str | Path, *, name: str,
                     ledger: str | Path | None = None, key: str | None = None, task_id: str | None = None,
                     cancel: threading.Event | None = None) -> Task:
    """The job's task: resumed (given task_id, or from the ledger or task.json), else submitted and recorded at once.

    A task the service itself failed (a retryable code) is replaced by a new one unless task_id names it.
    cancel, once set, stops a submission before its create call (nothing is created).
    """
    spec = get_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    book = Ledger(ledger) if ledger else None
    entry = book.get(key) if book and key else None
    if not task_id and _failed_retryably(out, entry):
        if book is not None and key:
            book.forget(key)
        (out / TASK_FILE).unlink(missing_ok=True)
        entry = None
    task_id = task_id or (entry.task_id if entry else None)
    if not task_id and (out / TASK_FILE).is_file():
        task_id = json.loads((out / TASK_FILE).read_text()).get("task_id")
    if task_id:
        if entry is None or entry.task_id is None:  # never step back from completed/failed
            _note(book, key, name, spec.id, JobState.SUBMITTED, task_id)
        return Task.from_id(task_id, model=spec.id, output_dir=out)
    if entry and entry.state in (JobState.SUBMITTING, JobState.UNCERTAIN):
        raise UncertainJob(f"job {name} may already have a task (its create call's answer was lost)",
                           hint="check the service's task list; run the batch with --resubmit-uncertain to send it "
                                "again (that may pay twice)")

    sending = threading.Event()

    def before_create() -> None:
        if cancel is not None and cancel.is_set():
            raise TaskCancelled(f"job {name} was stopped before its create call; no task was created",
                                hint="run it again to submit it")
        _note(book, key, name, spec.id, JobState.SUBMITTING)
        sending.set()

    values = {field: value for field, value in inputs.items() if value}
    try:
        task = pipeline.submit(spec, values, output_dir=out, before_create=before_create)
    except TaskMayExist as exc:
        record = _record(name, spec.id, None, RowStatus.UNCERTAIN, error=exc)
        _note(book, key, name, spec.id, JobState.UNCERTAIN, record=record)
        write_record(out, record)
        raise
    except SparkError:
        # any other create error (401, 403, 429, refused inputs) means no task exists: not uncertain
        if sending.is_set() and book is not None and key:
            book.forget(key)
        raise
    _atomic_write(out / TASK_FILE, json.dumps({"task_id": task.id, "model": spec.id, "name": name}))
    _note(book, key, name, spec.id, JobState.SUBMITTED, task.id)
    return task


def _failed_retryably(out: Path, entry: Entry | None) -> bool:
    """Whether the job's last task was failed by the service itself (…095–…099), so a new task may succeed."""
    if entry is not None:
        return entry.state == JobState.FAILED and bool(entry.record.get("retryable"))
    try:
        recorded = json.loads((out / TASK_FILE).read_text()).get("task_id")
        result = json.loads((out / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (result.get("task_id") == recorded and result.get("status") == RowStatus.FAILED
            and bool(result.get("retryable")))


def finish(task: Task, out_dir: str | Path, *, name: str, timeout: float = 1800, ledger: str | Path | None = None,
           key: str | None = None, follow_ledger: bool = False, cancel: threading.Event | None = None,
           on_done: Callable[[], None] | None = None) -> Result:
    """Wait for the task, download its video, and write result.json and the ledger (failures too).

    With follow_ledger (a job notebook inside a batch), the batch runner is already waiting for the task:
    watch the ledger instead of polling the service too, then take its result (one poll, no download).
    cancel, once set, stops the wait (TaskCancelled); the task stays `submitted`, to be resumed.
    on_done runs once the service reports the task completed, before the download.
    """
    out = Path(out_dir)
    book = Ledger(ledger) if ledger else None
    if follow_ledger and book is not None and key:
        _await_ledger(book, key, timeout)
    def done_at_service(state: TaskState) -> None:
        if state.done and on_done is not None:  # the service's part is over; the download is ours
            on_done()

    try:
        result = task.wait(timeout, progress=False, cancel=cancel, on_update=done_at_service)
    except SparkError as exc:
        final = isinstance(exc, TaskFailed)  # a timeout or a lost download leaves a task to resume next run
        record = _record(name, task.model, task.id, RowStatus.FAILED if final else RowStatus.UNFINISHED, error=exc,
                         retryable=final and getattr(exc, "retryable", False))
        write_record(out, record)
        _note(book, key, name, task.model, JobState.FAILED if final else JobState.SUBMITTED, task.id, record=record)
        raise
    video = Path(os.path.relpath(result.path, out))
    record = _record(name, result.model, result.task_id, RowStatus.COMPLETED, video=video.as_posix(),
                     duration=result.duration, cost=result.cost)
    write_record(out, record)
    _note(book, key, name, result.model, JobState.COMPLETED, result.task_id, record=record)
    return result


def _await_ledger(book: Ledger, key: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = book.get(key)
        if entry is None or entry.state in (JobState.COMPLETED, JobState.FAILED):
            return
        time.sleep(LEDGER_WATCH_S)


def write_record(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """result.json in out_dir: the machine-readable outcome of the job."""
    path = Path(out_dir) / RESULT_FILE
    _atomic_write(path, json.dumps(record, indent=2))
    return path


def _record(name: str, model: str, task_id: str | None, status: RowStatus, *, video: str | None = None,
            duration: float | None = None, cost: str | None = None, error: BaseException | None = None,
            retryable: bool = False) -> dict[str, Any]:
    return {"name": name, "model": model, "task_id": task_id, "status": status, "video": video,
            "duration": duration, "cost": cost, "error": None if error is None else str(error),
            "retryable": retryable}


def _note(book: Ledger | None, key: str | None, name: str, model: str, state: JobState, task_id: str | None = None,
          record: dict[str, Any] | None = None) -> None:
    if book is not None and key:
        book.set(key, name=name, model=model, state=state, task_id=task_id, record=record)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
