"""run_batch: every manifest row through the job notebook (papermill), bounded in concurrency, never paid twice."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from .. import _pipeline as pipeline
from .._backends import share_with_kernels
from .._config import resolve
from .._journal import Entry, JobState, Journal, journal_at
from .._tasks import Task
from ..errors import BudgetExceeded, CostUnknown, JournalError, SparkError, TaskCancelled, TaskMayExist, UsageError
from . import _job as job
from ._manifest import InvalidRow, Row, in_manifest_order, rows_to_run
from ._outcome import RowOutcome, RowStatus
from ._kernels import WarmKernels
from ._report import write_gallery, write_results_csv, write_rows_json
from ._progress import BatchProgress, summary

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "avatar_job.ipynb"
KERNEL_ATTEMPTS = 2  # a row whose kernel dies is tried once more, in a fresh kernel
WARM_UP_DELAY_S = 10.0
CSV_EVERY_S = 1.0  # results.csv is rewritten whole: at most this often while rows finish
STOP_WAIT_S = 60.0  # once stopped, how long the rows in flight get to end (their kernels are killed meanwhile)
COST_WAIT_POLL_S = 0.5  # a row waiting for its model's cost looks at the journal this often
COST_RECHECK_S = 15.0  # and tries again this often (one status read of the task it waits for, see _budget.settle)
logger = logging.getLogger("spark_nb.batch")


def run_batch(manifest: str | Path, out_dir: str | Path, *, concurrency: int = 4, notebook: str | Path | None = None,
              resubmit_uncertain: bool = False, progress: bool = True, timeout: float = 1800,
              skip_invalid: bool = False) -> list[RowOutcome]:
    """Run every row of manifest into out_dir/<name>/; results.csv, index.html and rows.json in out_dir.

    All rows are checked before any runs (ManifestError lists every problem); with skip_invalid the valid rows
    run and each invalid one is reported `skipped`, its problems as its error. The journal makes every row
    idempotent: a completed row is reused, a submitted one resumed by its task id, and one whose create may
    have made a task is `uncertain` and skipped unless resubmit_uncertain. A row that fails for any reason
    (any exception) is `failed` with its error, alone. The reports are always written: also on
    KeyboardInterrupt or SIGTERM (no new task is created, the job kernels are stopped, the interrupt is
    raised again once they are written) and when the batch itself crashes.
    """
    rows, invalid = rows_to_run(manifest, skip_invalid=skip_invalid)
    settings = resolve()
    share_with_kernels(settings)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    template = Path(notebook) if notebook else TEMPLATE
    if not template.is_file():
        raise UsageError(f"job notebook {template} not found", hint="pass notebook= (or --notebook) naming a .ipynb")
    journal = journal_at(settings.home)  # a journal that cannot be used stops the batch before anything runs
    outcomes: dict[str, RowOutcome] = {}
    keys = _keys(rows, outcomes)
    first_of: dict[str, Row] = {}  # rows with the same model and input content are one job, paid once
    for row in rows:
        if row.name in keys:
            first_of.setdefault(keys[row.name], row)
    run = _Run(out, journal, keys, template, resubmit_uncertain, timeout, threading.Semaphore(max(1, concurrency)))
    try:
        with _sigterm_interrupts():
            _run_jobs(list(first_of.values()), run, concurrency, outcomes, skipped=len(invalid), progress=progress,
                      rows=rows)
    except BaseException:
        _write_reports_anyway(out, rows, keys, first_of, outcomes, invalid)
        raise
    return _write_reports(out, rows, keys, first_of, outcomes, invalid)


def _keys(rows: list[Row], outcomes: dict[str, RowOutcome]) -> dict[str, str]:
    """Each row's journal fingerprint; a row whose inputs cannot be read now fails alone (in outcomes)."""
    keys = {}
    for row in rows:
        try:
            keys[row.name] = pipeline.call_key(row.spec, row.inputs)
        except Exception as exc:  # noqa: BLE001 (e.g. a file removed since the check): this row's failure alone
            outcomes[row.name] = _failed(row, exc)
    return keys


def _run_jobs(jobs: list[Row], run: _Run, concurrency: int, outcomes: dict[str, RowOutcome], *, skipped: int,
              progress: bool, rows: list[Row]) -> None:
    """Run the jobs, each outcome into outcomes as it ends; results.csv rewritten at most every CSV_EVERY_S."""
    workers = 2 * max(1, concurrency)
    # twice as many rows as tasks in flight: a row whose task is done finishes its report while the next
    # row's task already runs. The reports (job notebooks) run once their task is done, on a few warm kernels,
    # reused row after row: the machine's memory and CPU follow the cores, not the concurrency or the rows.
    # They run in worker threads: papermill drives its kernel from an event loop of its own, which cannot
    # start in a notebook's thread where a loop already runs.
    notebooks = max(1, min(workers, 2 * (os.cpu_count() or 1)))
    with BatchProgress(len(jobs), skipped=skipped, enabled=progress) as bar, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spark-batch") as pool, \
            ThreadPoolExecutor(max_workers=notebooks, thread_name_prefix="spark-job") as reports:
        run.reports = reports
        run.first_wave = min(len(jobs), max(1, concurrency))
        warm = threading.Barrier(notebooks)
        for _ in range(notebooks):  # kernels start while the first tasks run, one per report thread
            reports.submit(_warm_up, run, warm)
        pending: set[Future[Any]] = {pool.submit(_alone, row, _run_row, row, run, i >= run.first_wave)
                                     for i, row in enumerate(jobs)}
        csv_due = 0.0
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    outcome = future.result()
                    run.wave_sent.set()  # a row is past its submission (or reused): kernels may start
                    if isinstance(outcome, Future):  # the task is done, its report runs
                        pending.add(outcome)
                        continue
                    outcomes[outcome.name] = outcome
                    bar.add(outcome)
                    if time.monotonic() >= csv_due:  # rewritten at most every CSV_EVERY_S, and at the end
                        write_results_csv(run.out, [outcomes[r.name] for r in rows if r.name in outcomes])
                        csv_due = time.monotonic() + CSV_EVERY_S
        except BaseException:  # Ctrl-C, SIGTERM, or a crash of the batch itself: stop, keep what is done
            _stop(run, pending, outcomes)
            raise
        finally:
            run.kernels.close()  # also any warm-up still to come starts no kernel
            run.wave_sent.set()
            warm.abort()


def _stop(run: _Run, pending: set[Future[Any]], outcomes: dict[str, RowOutcome]) -> None:
    """No new task is created and the job kernels are killed; the outcomes of rows that end meanwhile are kept."""
    run.stop.set()
    run.wave_sent.set()  # warm-ups waiting for the first tasks see the stop at once
    deadline = time.monotonic() + STOP_WAIT_S
    while not all(f.done() for f in pending) and time.monotonic() < deadline:  # a kernel may start meanwhile
        run.kill_kernels()
        wait(pending, timeout=0.5)
    for future in pending:
        with contextlib.suppress(BaseException):
            done_row = future.result(timeout=0)
            if isinstance(done_row, Future):
                done_row = done_row.result(timeout=5)
            outcomes[done_row.name] = done_row


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the batch as Ctrl-C does (reports written, KeyboardInterrupt raised), when this is the main
    thread and nobody else handles SIGTERM; otherwise nothing changes."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_reports(out: Path, rows: list[Row], keys: dict[str, str], first_of: dict[str, Row],
                   outcomes: dict[str, RowOutcome], invalid: list[InvalidRow]) -> list[RowOutcome]:
    """results.csv, rows.json and the gallery, every row in them: one not run (yet) is unfinished."""
    ordered = []
    for row in rows:
        outcome = outcomes.get(row.name)
        first = first_of.get(keys.get(row.name, ""))
        if outcome is None and first is not None and (same := outcomes.get(first.name)) is not None:
            outcome = dataclasses.replace(same, name=row.name, reused=True, cost="0.00" if same.cost else None)
        ordered.append(outcome or RowOutcome(row.name, row.spec.id, RowStatus.UNFINISHED, inputs=row.inputs,
                                             error="interrupted before it ran; run the batch again"))
    ordered = in_manifest_order(ordered, rows, invalid)
    write_results_csv(out, ordered)
    write_rows_json(out, ordered)
    write_gallery(out, ordered)
    return ordered


def _write_reports_anyway(out: Path, rows: list[Row], keys: dict[str, str], first_of: dict[str, Row],
                          outcomes: dict[str, RowOutcome], invalid: list[InvalidRow]) -> None:
    """_write_reports while the batch is stopping on an error: a failure to write is said, the error raised."""
    try:
        _write_reports(out, rows, keys, first_of, outcomes, invalid)
    except Exception as exc:  # noqa: BLE001 (the batch's own error is the one to raise)
        print(f"spark-nb batch: the reports in {out} could not be written: {type(exc).__name__}: {exc}",
              file=sys.stderr)


def _alone(row: Row, work: Callable[..., RowOutcome | Future[RowOutcome]], *args: Any,
           task_id: str | None = None) -> RowOutcome | Future[RowOutcome]:
    """work(*args), or, if it raises anything at all, the row failed with that error: the other rows go on."""
    try:
        return work(*args)
    except Exception as exc:  # noqa: BLE001 (a bug, a RecursionError, an OSError: this row's failure, not the batch's)
        logger.debug("row %s failed", row.name, exc_info=True)
        return _failed(row, exc, task_id=task_id)


def _failed(row: Row, exc: BaseException, *, task_id: str | None = None) -> RowOutcome:
    error = str(exc) if isinstance(exc, SparkError) else f"{type(exc).__name__}: {exc}"
    return RowOutcome(row.name, row.spec.id, RowStatus.FAILED, task_id=task_id or getattr(exc, "task_id", None),
                      inputs=row.inputs, error=error[:2000])


@dataclasses.dataclass
class _Run:
    """What every row of one run_batch call shares."""

    out: Path
    journal: Journal
    keys: dict[str, str]  # row name -> the journal fingerprint of its call
    template: Path
    resubmit_uncertain: bool
    timeout: float
    in_flight: threading.Semaphore  # tasks at the service at once
    reports: ThreadPoolExecutor | None = None  # where the job notebooks run (set once the pools exist)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    budget_reached: threading.Event = dataclasses.field(default_factory=threading.Event)
    kernels: WarmKernels = dataclasses.field(default_factory=WarmKernels)  # the job notebooks' kernels

    first_wave: int = 0  # rows to submit before the job kernels start (they would slow those submissions)
    submitted: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    wave_sent: threading.Event = dataclasses.field(default_factory=threading.Event)

    def count_submission(self) -> None:
        """One more row has its task; once the first wave has, the job kernels may start."""
        with self.lock:
            self.submitted += 1
            if self.submitted >= self.first_wave:
                self.wave_sent.set()

    def kill_kernels(self) -> None:
        """Kill every job kernel now, with its children (ffmpeg)."""
        self.kernels.kill_all()


class _Slot:
    """A place among the tasks in flight, taken once the row is ready to create its task, freed once: when its
    task is done, or at the latest on exit."""

    def __init__(self, semaphore: threading.Semaphore, stop: threading.Event) -> None:
        self._semaphore = semaphore
        self._stop = stop
        self._held = False
        self._lock = threading.Lock()

    def __enter__(self) -> _Slot:
        return self

    def take(self) -> None:
        """Wait for a place (TaskCancelled once the batch stops meanwhile); a no-op when already held."""
        if self._held:
            return
        while not self._semaphore.acquire(timeout=0.2):
            if self._stop.is_set():
                raise TaskCancelled("the batch was stopped before this row's create call; no task was created",
                                    hint="run the batch again to submit it")
        self._held = True

    def __exit__(self, *exc: object) -> None:
        self.free()

    def free(self) -> None:
        """Give the place to the next row (again is a no-op)."""
        with self._lock:
            if self._held:
                self._held = False
                self._semaphore.release()


def _run_row(row: Row, run: _Run, after_first_wave: bool = False) -> RowOutcome | Future[RowOutcome]:
    """The row's task (submitted, resumed or reused); its outcome, or the future of its report once the task is done.

    A row after the first wave checks and uploads its inputs only once the first wave is sent: on a small machine
    its work would otherwise delay the first tasks' creates, which every later wave waits on.
    """
    if after_first_wave:
        run.wave_sent.wait(timeout=WARM_UP_DELAY_S)
    row_dir = run.out / row.name
    executed = row_dir / f"{row.name}.ipynb"
    notebook = executed if executed.exists() else None
    entry = run.journal.latest(run.keys[row.name])
    if entry and entry.state == JobState.COMPLETED and _video_of(entry) is not None:
        return _from_entry(row, entry, executed, reused=True)
    if entry and entry.state == JobState.FAILED and not entry.retryable:
        # an input error: the same inputs fail again, so the failure is reported, not paid for again
        return _from_entry(row, entry, executed, reused=True)
    if run.budget_reached.is_set():
        return RowOutcome(row.name, row.spec.id, RowStatus.UNFINISHED, inputs=row.inputs,
                          error="not started: the budget was reached (raise SPARK_NB_BUDGET_USD, then run again)")
    lost = entry is not None and (entry.state == JobState.UNCERTAIN
                                  or (entry.state == JobState.SUBMITTING and not entry.creator_alive))
    if lost and not run.resubmit_uncertain:
        return RowOutcome(row.name, row.spec.id, RowStatus.UNCERTAIN, notebook=notebook, inputs=row.inputs,
                          error="the create call may have made a task (its answer was lost); not resent. "
                                "Check the service, or run again with --resubmit-uncertain")
    row_dir.mkdir(parents=True, exist_ok=True)
    parameters = {"model": row.spec.id, "name": row.name, "out_dir": str(row_dir), "timeout": run.timeout,
                  "inputs": dict(row.inputs)}
    # The runner talks to the service (submit, poll, download); the slot counts tasks at the service, so a row
    # uploads its inputs before it waits for one (the create follows at once when a slot frees), and frees it
    # as soon as the task is done.
    with _Slot(run.in_flight, run.stop) as slot:
        try:
            task = _submit(row, run, row_dir, slot, resubmit=lost)
            slot.take()  # a task resumed or reused also runs at the service (a no-op once taken)
        except SparkError as exc:
            return _not_submitted(row, run, exc)
        finally:
            run.count_submission()
        unfinished = None
        try:
            job.finish(task, row_dir, name=row.name, timeout=run.timeout, cancel=run.stop, on_done=slot.free)
        except SparkError as exc:  # recorded in the journal and result.json; the row's error
            unfinished = exc
    # the report runs once the task is done, on a warm kernel, and the row's thread goes on to the next row
    assert run.reports is not None
    return run.reports.submit(_alone, row, _reported, row, run, task.id, task.origin == "reused", executed,
                              {**parameters, "task_id": task.id}, row_dir, unfinished, task_id=task.id)


def _submit(row: Row, run: _Run, row_dir: Path, slot: _Slot, *, resubmit: bool) -> Task:
    """The row's task, submitted (or resumed, or reused). While its model's cost is unknown under a budget, a row
    waits for the task that will make it known (CostUnknown names it), within the row's timeout."""
    deadline = time.monotonic() + run.timeout
    while True:
        try:
            return job.submit_or_resume(row.spec.id, row.inputs, row_dir, name=row.name, resubmit=resubmit,
                                        cancel=run.stop, when_uploaded=slot.take, face_advice=False)
        except CostUnknown as exc:
            if not exc.creator_alive or time.monotonic() >= deadline:
                raise
            again = min(deadline, time.monotonic() + COST_RECHECK_S)  # a task nobody waits for: the try settles it
            while True:  # at least one poll between two tries
                if run.stop.wait(COST_WAIT_POLL_S):
                    raise TaskCancelled("the batch was stopped while this row waited for its model's cost to be "
                                        "known; no task was created", hint="run the batch again to submit it")
                if not _still_open(run.journal.attempt(exc.attempt)) or time.monotonic() >= again:
                    break


def _still_open(entry: Entry | None) -> bool:
    return entry is not None and entry.state in (JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED)


def _not_submitted(row: Row, run: _Run, exc: SparkError) -> RowOutcome:
    """The outcome of a row whose task could not be submitted (or resumed)."""
    status = RowStatus.FAILED
    error = str(exc)
    if isinstance(exc, TaskCancelled):
        status = RowStatus.UNFINISHED
    elif isinstance(exc, TaskMayExist):
        status = RowStatus.UNCERTAIN
    elif isinstance(exc, CostUnknown):  # waited for as long as the row may: run again once its cost is known
        status = RowStatus.UNFINISHED
    elif isinstance(exc, BudgetExceeded):  # no more rows are started: the budget is reached
        run.budget_reached.set()
        status, error = RowStatus.UNFINISHED, exc.headline
    elif isinstance(exc, JournalError) and exc.task_id:  # created, its id kept to record: the next run resumes it
        status = RowStatus.UNFINISHED
    return RowOutcome(row.name, row.spec.id, status, task_id=exc.task_id, error=error, inputs=row.inputs)


def _warm_up(run: _Run, together: threading.Barrier) -> None:
    """Start a report thread's kernel once the first tasks are sent (within WARM_UP_DELAY_S at the latest)."""
    run.wave_sent.wait(timeout=WARM_UP_DELAY_S)
    import papermill  # noqa: F401 (seconds of imports, jsonschema's among them: while the first tasks run)

    if not run.stop.is_set():
        run.kernels.warm_up(run.out, together)


def _reported(row: Row, run: _Run, task_id: str, reused: bool, executed: Path, parameters: dict[str, object],
              row_dir: Path, unfinished: SparkError | None = None) -> RowOutcome:
    """Run the row's job notebook, then the row's outcome as the journal has it. When the runner's own wait failed
    (unfinished: a timeout, a video that does not decode), that is the row's error and no notebook runs (it would
    wait for the same task again, holding a kernel for another timeout, and its error would hide this one)."""
    error = _execute(run, executed, parameters, row_dir) if unfinished is None else str(unfinished)
    advice = None if reused else job.face_advice(row.spec.id, row.inputs)  # searched here, not before the create
    entry = run.journal.by_task(task_id)
    if entry is None:
        return RowOutcome(row.name, row.spec.id, RowStatus.FAILED, notebook=executed if executed.exists() else None,
                          error=error or "the job notebook ended without a result", inputs=row.inputs)
    outcome = _from_entry(row, entry, executed, reused=reused)
    outcome.advice = advice
    if error and not outcome.error:  # e.g. a video made, but its report notebook failed
        outcome.error = error
    return outcome


def _execute(run: _Run, executed: Path, parameters: dict[str, object], row_dir: Path) -> str | None:
    """Run the job notebook on this thread's warm kernel; None when it ran through, else its error.

    A kernel that dies under a row (or cannot start) is replaced and the row tried once more in a fresh kernel.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ._notebook_engine import ENGINE_NAME

    for attempt in range(KERNEL_ATTEMPTS):
        if run.stop.is_set():
            return "interrupted"
        kernel = None
        try:
            kernel = run.kernels.for_row(row_dir)
            # the notebook is given the row's task id, so running it again never creates a task; it is written
            # once, at the end (a row cut short runs its notebook again)
            papermill.execute_notebook(str(run.template), str(executed), parameters=parameters, kernel_name="python3",
                                       engine_name=ENGINE_NAME, kernel=kernel, execution_timeout=run.timeout,
                                       progress_bar=False, log_output=False, request_save_on_cell_execute=False)
            return None
        except PapermillExecutionError as exc:
            return f"{exc.ename}: {exc.evalue}".strip()
        except Exception as exc:  # noqa: BLE001 (kernel start-up failures and dead kernels vary)
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


def _from_entry(row: Row, entry: Entry, executed: Path, reused: bool = False) -> RowOutcome:
    return RowOutcome(row.name, row.spec.id, RowStatus.of(entry.state), task_id=entry.task_id,
                      video=_video_of(entry), duration=entry.seconds,
                      cost=None if entry.cost is None else f"{entry.cost:.2f}",
                      notebook=executed if executed.exists() else None, error=entry.error, inputs=row.inputs,
                      reused=reused)


def _video_of(entry: Entry) -> Path | None:
    path = Path(entry.path) if entry.path else None
    return path if path is not None and path.is_file() and path.stat().st_size > 0 else None


__all__ = ["run_batch", "summary"]
