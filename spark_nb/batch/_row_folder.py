"""A row's folder once its task is done, whoever paid for it: the video inside it, result.json, the advice on its
inputs, and the job notebook run on a warm kernel.

A fresh row's video is downloaded into its folder. A row answered by an earlier task (a rerun into another
folder, a row identical to another in the manifest, a video a notebook made elsewhere) gets the same folder: the
earlier video hard-linked (or copied) in, a result.json saying which task it came from and when, its advice, and
its job notebook, which finds all of it in the folder (no task, no download). So a batch folder can be moved,
zipped or shared as it is, however its rows were obtained.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import threading
import time
from concurrent.futures import Future
from pathlib import Path

from .._journal import Entry, JobState
from .._money import usd_text
from .._reuse import place_video, recorded_video
from .._tasks import result_path
from ..errors import SparkError
from . import _job as job
from ._manifest import Row
from ._outcome import RowOutcome, RowStatus
from ._record import completed_here, note_advice, record_reused, row_folder
from ._run import BatchRun, alone, settled

KERNEL_ATTEMPTS = 2  # a row whose kernel dies is tried once more, in a fresh kernel
WARM_UP_DELAY_S = 10.0


def notebook_of(run: BatchRun, row: Row) -> Path:
    """The row's executed job notebook: <out>/<name>/<name>.ipynb."""
    return run.out / row.name / f"{row.name}.ipynb"


def parameters(run: BatchRun, row: Row, task_id: str) -> dict[str, object]:
    """The job notebook's parameters. out_dir is the row folder, where the kernel runs: "." keeps the notebook
    working once the folder is moved. The task id is given, so running the notebook never creates a task."""
    return {"model": row.spec.id, "name": row.name, "out_dir": ".", "timeout": run.timeout,
            "inputs": dict(row.inputs), "task_id": task_id}


def warm_up(run: BatchRun, together: threading.Barrier) -> None:
    """Start a report thread's kernel once the first tasks are sent (within WARM_UP_DELAY_S at the latest)."""
    run.wave_sent.wait(timeout=WARM_UP_DELAY_S)
    import papermill  # noqa: F401 (seconds of imports, jsonschema's among them: while the first tasks run)

    if not run.stop.is_set():
        run.kernels.warm_up(run.out, together)


def reported(row: Row, run: BatchRun, task_id: str, origin: str, advice: list[str],
             unfinished: SparkError | None = None) -> RowOutcome:
    """A row whose task this run waited for: its advice in result.json, its job notebook run, its outcome as the
    journal has it. advice: what its submission said; the face search is done here, off the way to the creates.
    origin is the Task's: a task an earlier call made ("reused", "attached") was not checked by this submission,
    so its advice is found as for any reused row, and a reused one's result.json says where it came from. When the
    runner's own wait failed (unfinished: a timeout, a video that does not decode), that is the row's error and no
    notebook runs (it would wait for the same task again, holding a kernel for another timeout, and its error
    would hide this one)."""
    row_dir, executed = run.out / row.name, notebook_of(run, row)
    created = origin == "created"
    advice = advice + job.face_advice(row.spec.id, row.inputs) if created else job.row_advice(row.spec.id, row.inputs)
    entry = run.journal.by_task(task_id)
    video = row_video(entry, row_dir) if entry is not None and entry.state == JobState.COMPLETED else None
    if origin == "reused" and entry is not None and video is not None:
        record_reused(row_dir, row.name, entry, video, advice)
    else:
        note_advice(row_dir, advice)
    error = execute(run, executed, parameters(run, row, task_id), row_dir) if unfinished is None else str(unfinished)
    entry = run.journal.by_task(task_id)
    if entry is None:
        return RowOutcome(row.name, row.spec.id, RowStatus.FAILED, notebook=executed if executed.exists() else None,
                          error=error or "the job notebook ended without a result", inputs=row.inputs)
    outcome = from_entry(row, run, entry, reused=origin == "reused", advice=advice)
    if error and not outcome.error:  # e.g. a video made, but its report notebook failed
        outcome.error = error
    return outcome


def reused(row: Row, run: BatchRun, entry: Entry, video: Path, *, same_as: str | None = None) -> Future[RowOutcome]:
    """A row answered by an earlier completed task, whose video is at video: its outcome (settled at once when its
    folder already holds all of it: a rerun into the same folder), else the future of its folder being completed.

    same_as: the row of this manifest it is identical to (its cost is that row's, not counted again).
    """
    assert entry.task_id is not None
    row_dir, executed = run.out / row.name, notebook_of(run, row)
    record = completed_here(row_dir, entry.task_id)
    if record is not None and isinstance(record.get("advice"), list) and _newer(executed, row_dir / "result.json"):
        return settled(_as_copy(from_entry(row, run, entry, reused=True, advice=record["advice"]), same_as))
    assert run.reports is not None
    return run.reports.submit(alone, row, _complete_reused, row, run, entry, video, same_as,
                              task_id=entry.task_id)


def _complete_reused(row: Row, run: BatchRun, entry: Entry, video: Path, same_as: str | None) -> RowOutcome:
    """The reused row's folder made whole: video, result.json (where it came from, its advice), job notebook."""
    assert entry.task_id is not None
    row_dir = row_folder(run.out / row.name)
    placed = place_video(video, result_path(row_dir, entry.task_id), entry.seconds)
    record = completed_here(row_dir, entry.task_id)
    advice = record.get("advice") if record is not None else None
    if not isinstance(advice, list):
        advice = job.row_advice(row.spec.id, row.inputs)
    executed = notebook_of(run, row)
    ran = record is not None and _newer(executed, row_dir / "result.json")  # an earlier batch's row, whole
    if record is None:
        job.write_task_file(row_dir, entry.task_id, entry.model, row.name)
        record_reused(row_dir, row.name, entry, placed, advice)
    else:  # the row's own record of this very task: kept, with its advice
        note_advice(row_dir, advice)
        if ran:  # only the advice was added: the notebook still stands for the record (see reused())
            os.utime(executed)
    error = None if ran else execute(run, executed, parameters(run, row, entry.task_id), row_dir)
    outcome = from_entry(row, run, entry, reused=True, advice=advice)
    outcome.error = outcome.error or error
    return _as_copy(outcome, same_as)


def copy_of(row: Row, run: BatchRun, first: RowOutcome) -> Future[RowOutcome]:
    """A row identical to first (same model and inputs: one job, paid once): a folder of its own when first
    completed, else first's outcome under this row's name."""
    entry = run.journal.by_task(first.task_id) if first.status == RowStatus.COMPLETED and first.task_id else None
    video = first.video or (video_of(entry) if entry is not None else None)
    if entry is not None and video is not None and video.is_file():
        return reused(row, run, entry, video, same_as=first.name)
    return settled(dataclasses.replace(first, name=row.name, reused=True, cost="0.00" if first.cost else None,
                                       notebook=None, inputs=row.inputs, same_as=first.name))


def _as_copy(outcome: RowOutcome, same_as: str | None) -> RowOutcome:
    if same_as:
        outcome.cost = "0.00" if outcome.cost else None
        outcome.same_as = same_as
    return outcome


def _newer(executed: Path, record: Path) -> bool:
    """executed exists and was written after record (the notebook ran on this record)."""
    try:
        return executed.stat().st_mtime_ns >= record.stat().st_mtime_ns
    except OSError:
        return False


def execute(run: BatchRun, executed: Path, parameters: dict[str, object], row_dir: Path) -> str | None:
    """Run the job notebook on this thread's warm kernel; None when it ran through, else its error.

    A kernel that dies under a row (or cannot start) is replaced and the row tried once more in a fresh kernel.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ._notebook_engine import ENGINE_NAME, row_notebook_output

    for attempt in range(KERNEL_ATTEMPTS):
        if run.stop.is_set():
            return "interrupted"
        kernel = None
        try:
            kernel = run.kernels.for_row(row_dir)
            # the notebook is written once, at the end (a row cut short runs its notebook again), by _files
            papermill.execute_notebook(str(run.template), row_notebook_output(executed), parameters=parameters,
                                       kernel_name="python3", engine_name=ENGINE_NAME, kernel=kernel,
                                       execution_timeout=run.timeout, progress_bar=False, log_output=False,
                                       request_save_on_cell_execute=False)
            return None
        except PapermillExecutionError as exc:
            return f"{exc.ename}: {exc.evalue}".strip()
        except Exception as exc:  # kernel start-up failures and dead kernels vary
            died = kernel is not None and not kernel.alive()
            if kernel is not None:
                run.kernels.discard(kernel)
            if died and attempt + 1 < KERNEL_ATTEMPTS and not run.stop.is_set():
                continue  # the row crashed its kernel: once more, in a fresh one
            if run.stop.is_set() or attempt + 1 == KERNEL_ATTEMPTS:
                what = f"kernel died (tried {attempt + 1} times)" if died else "could not run"
                return f"the job notebook {what}: {type(exc).__name__}: {exc}"
            time.sleep(0.5)
    return None


def from_entry(row: Row, run: BatchRun, entry: Entry, *, reused: bool = False,
               advice: list[str] | None = None) -> RowOutcome:
    """The row's outcome as the journal has its task; a completed task's video is the copy in the row's folder."""
    executed = notebook_of(run, row)
    return RowOutcome(row.name, row.spec.id, RowStatus.of(entry.state), task_id=entry.task_id,
                      video=row_video(entry, run.out / row.name), duration=entry.seconds,
                      cost=usd_text(entry.cost),
                      notebook=executed if executed.exists() else None, error=entry.error, inputs=row.inputs,
                      reused=reused, advice="; ".join(advice) if advice else None)


def row_video(entry: Entry, row_dir: Path) -> Path | None:
    """The task's video in row_dir (brought in from where the journal saw it last when it is not there yet)."""
    if entry.task_id is None:
        return None
    target = result_path(row_dir, entry.task_id)
    if _own_file(target):
        return target
    source = video_of(entry)
    if source is None or not row_dir.is_dir():
        return source
    return place_video(source, target, entry.seconds)


def earlier_video(entry: Entry, row_dir: Path) -> Path | None:
    """A completed task's video: where the journal saw it last, else the copy already in row_dir; None if gone."""
    found = video_of(entry)
    if found is None and entry.task_id is not None:
        own = result_path(row_dir, entry.task_id)
        found = own if _own_file(own) else None
    return found


def video_of(entry: Entry) -> Path | None:
    """The task's video where the journal saw it last, while it is still that video (see recorded_video)."""
    return recorded_video(entry)


def _own_file(path: Path) -> bool:
    """path is a regular, non-empty file itself (a link is not: it points wherever its maker chose)."""
    try:
        facts = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(facts.st_mode) and facts.st_size > 0
