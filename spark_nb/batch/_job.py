"""One batch job, as the job notebook runs it: submit (or reuse, or resume) through the journal, then finish.

The journal (spark_nb's one record of every task) makes a job idempotent: it notes the create before it is
sent and the task id as soon as the task exists, so a kill at any moment leaves enough to resume it, or to
know that a task may exist. The row's folder keeps its own copy: task.json (the task id) and result.json
(see _record), which answers for a finished row wherever the folder has gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .. import _pipeline as pipeline
from .._config import InputLimits
from .._files import write_atomically
from .._inputs import Advice, check
from .._journal import Entry, JobState, Journal, journal_at
from .._money import usd_text
from .._results import Result
from .._reuse import completed_answer, recorded_video
from .._reuse_rule import Verdict, decide
from .._task_state import TaskState
from .._tasks import Task
from ..errors import JournalError, SparkError, TaskCancelled, TaskFailed, TaskMayExist
from ..models import MediaField, get_model
from ._outcome import RowStatus
from ._record import completed_here, new_record, read_record, result_of, row_folder, write_record

JOURNAL_WATCH_S = 0.2
TASK_FILE = "task.json"


def submit_or_resume(model: str, inputs: dict[str, str], out_dir: str | Path, *, name: str,
                     task_id: str | None = None, resubmit: bool = False, cancel: threading.Event | None = None,
                     when_uploaded: Callable[[], None] | None = None, face_advice: bool = True,
                     advise: Callable[[str], None] | None = None, reuse: bool = True, strict: bool = False) -> Task:
    """The job's task: the one task_id names, else the journal's answer for these inputs, else a new task.

    A new task's id is recorded at once, in the journal and in the row folder's task.json.

    Args:
        model: the model id or alias.
        inputs: field name -> path or URL (an empty value is left out).
        out_dir: the row's folder.
        name: the row's name.
        task_id: the row's task, when it has one already (resumed as it is).
        resubmit: submit again even when an earlier create's answer was lost (which may pay twice).
        cancel: once set, stops a submission before its create call (nothing is created).
        when_uploaded: runs between the uploads and the create (a batch row waits there for its turn).
        face_advice: False leaves out the search for faces (a batch reports it with the row instead).
        advise: receives the advice on the inputs (a long audio trimmed...) instead of a warning.
        reuse: answer from an identical earlier call (a finished video, a task still running).
        strict: refuse inputs that would only be advised on.

    Returns:
        The row's Task.

    Raises:
        TaskMayExist: an earlier create's answer was lost and resubmit is False (the row is recorded uncertain).
        TaskCancelled: cancel was set before the create call.
        JournalError: the task was created but its id could not be recorded (task.json has it).
        SparkError: as submit() raises (ValidationError, BudgetExceeded, TaskFailed, ...).
    """
    spec = get_model(model)
    out = row_folder(out_dir)
    if task_id:
        return Task.from_id(task_id, model=spec.id, output_dir=out)

    def before_create() -> None:
        if cancel is not None and cancel.is_set():
            raise TaskCancelled(f"job {name} was stopped before its create call; no task was created",
                                hint="run it again to submit it")

    values = {field: value for field, value in inputs.items() if value}
    try:
        task = pipeline.submit(spec, values, output_dir=out, reuse=reuse and not resubmit, strict=strict,
                               when_uploaded=when_uploaded, before_create=before_create,
                               source=f"batch:{out.resolve()}", face_advice=face_advice, advise=advise)
    except TaskMayExist as exc:
        write_record(out, new_record(name, spec.id, None, RowStatus.UNCERTAIN, error=exc))
        raise
    except JournalError as exc:  # created, but its id could not be recorded in the journal: the row's folder has it
        if exc.task_id:
            with contextlib.suppress(OSError):  # the disk may be the journal's trouble too: the error has the id
                write_task_file(out, exc.task_id, spec.id, name)
        raise
    write_task_file(out, task.id, spec.id, name)
    return task


def write_task_file(out: Path, task_id: str, model: str, name: str) -> None:
    """task.json in out: the row's task id, on disk before anything waits for it."""
    write_atomically(row_folder(out) / TASK_FILE, json.dumps({"task_id": task_id, "model": model, "name": name}),
                     durable=True)


def own_attempt(journal: Journal, fingerprint: str, out: Path) -> Entry | None:
    """The row folder's own attempt at these inputs: the task its task.json names, or the journal's newest attempt
    made from this folder (whatever was made elsewhere since; a folder moved since is still known by its files),
    once it has a task (completed, running) or may have one (its create's answer lost). A new take (reuse=False)
    ignores the takes made before this batch, not its own: a rerun of an interrupted --no-reuse batch keeps its
    finished rows, resumes its running ones, and pays for a task only where there is none."""
    source, record = f"batch:{out.resolve()}", read_record(out)
    named = _task_named(out)
    # a task the folder made itself (not one a rerun reused), wherever the folder was then: moved or renamed since
    own = named is not None and record.get("task_id") in (None, named) and not record.get("reused")
    for entry in (journal.by_task(named) if named else None, journal.latest(fingerprint, source=source)):
        if entry is None or entry.fingerprint != fingerprint or not (
                entry.source == source or (own and entry.task_id == named and entry.source.startswith("batch:"))):
            continue
        if decide(entry).verdict in (Verdict.REUSE, Verdict.ATTACH, Verdict.MAY_EXIST):  # done, running, may exist
            return entry
    if record.get("status") == RowStatus.UNCERTAIN:  # the folder says its own create lost its answer, wherever the
        # folder was then: the newest such attempt of a batch row at these inputs stands
        lost = (e for e in journal.entries(fingerprint=fingerprint) if e.source.startswith("batch:"))
        return next((e for e in lost if decide(e).verdict == Verdict.MAY_EXIST), None)
    return None


def _task_named(out: Path) -> str | None:
    """The task id out/task.json names, if it is a small regular file of ours (never through a link)."""
    path = out / TASK_FILE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 4096:
            return None
        task_id = json.loads(path.read_text(encoding="utf-8")).get("task_id")
    except (OSError, ValueError, AttributeError):
        return None
    return task_id if isinstance(task_id, str) and task_id else None


def face_advice(model: str, inputs: dict[str, str]) -> list[str]:
    """What the face search says of the job's local images ("no face found ..."), empty when each shows one
    (a URL is not fetched: check() gives it no advice)."""
    spec = get_model(model)
    return [advice.message for field in spec.fields if field.kind == "image" and inputs.get(field.name)
            for advice in _advice_of(inputs[field.name], field) if advice.reason == "no_face"]


def row_advice(model: str, inputs: dict[str, str]) -> list[str]:
    """Everything a submission of these inputs would advise (a long audio trimmed, no face found), said as it
    would be, without sending anything: the advice of a row whose result came from an earlier task."""
    said: list[str] = []
    values = {field: value for field, value in inputs.items() if value}
    try:  # its URLs are not asked for: nothing is paid (and an expired one would cost the check's deadline)
        pipeline.prepare(get_model(model), values, advise=said.append, limits=InputLimits(check_urls=False))
    except SparkError:  # the inputs changed since (or are gone): nothing to advise on
        return []
    return said


def judge_strictly(model: str, inputs: dict[str, str], earlier: Entry, limits: InputLimits) -> None:
    """Strict mode's verdict on a row the journal answers with earlier (reused, resumed, reported again): the
    ValidationError a new task's inputs would get, saying that take is returned without strict (pipeline.prepare
    decides with the batch's limits; nothing is sent)."""
    values = {field: value for field, value in inputs.items() if value}
    pipeline.prepare(get_model(model), values, limits=limits, strict=True, earlier=earlier)


def _advice_of(value: str, field: MediaField) -> tuple[Advice, ...]:
    try:
        return check(value, field).advice
    except SparkError:  # the file changed since it was sent: nothing to advise on
        return ()


def finish(task: Task, out_dir: str | Path, *, name: str, timeout: float = 1800, follow_journal: bool = False,
           cancel: threading.Event | None = None, on_done: Callable[[], None] | None = None) -> Result:
    """Wait for the task, download its video, and write result.json (failures too); the journal records it.

    A row folder whose result.json records this task completed, with its video there, answers at once: no
    journal, no request, no download (a reused row, a row done by the batch runner, a folder moved elsewhere).

    Args:
        task: the row's task (from submit_or_resume).
        out_dir: the row's folder.
        name: the row's name.
        timeout: seconds to wait.
        follow_journal: the batch runner is already waiting for the task (a job notebook inside a batch): watch
            the journal instead of polling the service too, and take the result it records; a task the journal
            does not show completed is waited for as usual.
        cancel: once set, stops the wait (TaskCancelled); the task goes on, to be resumed.
        on_done: runs once the service reports the task completed, before the download.

    Returns:
        The Result, its video in the row's folder.

    Raises:
        TaskFailed: the task failed (recorded as the row's failure).
        TaskTimeout: the timeout passed (the row is unfinished: running the batch again resumes it).
        TaskCancelled: cancel was set.
        SparkError: as Task.wait() raises (DownloadError, ...); WriteError when result.json cannot be written.
    """
    out = Path(out_dir)
    if (record := completed_here(out, task.id)) is not None:
        return result_of(out, record)
    if follow_journal and (result := _from_journal(_await_journal(task, timeout))) is not None:
        return _completed(out, name, result)

    def done_at_service(state: TaskState) -> None:
        if state.done and on_done is not None:  # the service's part is over; the download is ours
            on_done()

    try:
        result = task.wait(timeout, progress=False, cancel=cancel, on_update=done_at_service)
    except SparkError as exc:
        final = isinstance(exc, TaskFailed)  # a timeout or a lost download leaves a task to resume next run
        write_record(out, new_record(name, task.model, task.id, RowStatus.FAILED if final else RowStatus.UNFINISHED,
                                  error=exc, retryable=final and getattr(exc, "retryable", False)))
        raise
    return _completed(out, name, result)


def _completed(out: Path, name: str, result: Result) -> Result:
    """result, once result.json in out records it."""
    video = Path(os.path.relpath(result.path, out))
    write_record(out, new_record(name, result.model, result.task_id, RowStatus.COMPLETED, video=video.as_posix(),
                              duration=result.duration, cost=usd_text(result.cost)))
    return result


def _await_journal(task: Task, timeout: float) -> Entry | None:
    """The task's journal entry once it has ended (None when the journal does not know the task)."""
    journal = journal_at(task.settings.home)
    deadline = time.monotonic() + timeout
    entry = None
    while time.monotonic() < deadline:
        entry = journal.by_task(task.id)
        if entry is None or entry.state in (JobState.COMPLETED, JobState.FAILED):
            break
        time.sleep(JOURNAL_WATCH_S)
    return entry


def _from_journal(entry: Entry | None) -> Result | None:
    """The Result a completed entry records (its video downloaded and checked by the batch runner), else None."""
    path = recorded_video(entry) if entry is not None else None
    if entry is None or entry.state != JobState.COMPLETED or not entry.task_id or path is None:
        return None
    raw = completed_answer(entry)
    return Result(task_id=entry.task_id, model=entry.model, status="completed", url=entry.result_url or "",
                  path=path, size=path.stat().st_size, duration=entry.seconds, usage=raw["usage"], raw=raw)
