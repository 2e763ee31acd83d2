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
from .._backends import kernel_environment
from .._boundary import boundary
from .._config import Settings, resolve
from .._journal import Entry, JobState, Journal, journal_at
from .._notices import begin
from .._reuse_rule import Decision, Verdict, decide
from .._tasks import Task
from ..errors import BudgetExceeded, CostUnknown, JournalError, SparkError, TaskCancelled, TaskMayExist, UsageError
from . import _job as job
from . import _row_folder as folder
from ._kernels import WarmKernels
from ._manifest import InvalidRow, Row, in_manifest_order, rows_to_run
from ._outcome import RowOutcome, RowStatus
from ._progress import BatchProgress, summary
from ._record import row_folder
from ._report import check_output_folder, write_gallery, write_gallery_notebook, write_results_csv, write_rows_json
from ._run import BatchRun, alone, alone_later, failed, settled

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "avatar_job.ipynb"
WARM_UP_DELAY_S = folder.WARM_UP_DELAY_S
CSV_EVERY_S = 1.0  # results.csv is rewritten whole: at most this often while rows finish
STOP_WAIT_S = 60.0  # once stopped, how long the rows in flight get to end (their kernels are killed meanwhile)
COST_WAIT_POLL_S = 0.5  # a row waiting for its model's cost looks at the journal this often
COST_RECHECK_S = 15.0  # and tries again this often (one status read of the task it waits for, see _budget.settle)
logger = logging.getLogger("spark_nb.batch")


@boundary
def run_batch(manifest: str | Path, out_dir: str | Path, *, concurrency: int = 4, notebook: str | Path | None = None,
              resubmit_uncertain: bool = False, progress: bool = True, timeout: float = 1800,
              skip_invalid: bool = False, reuse: bool = True, strict: bool = False) -> list[RowOutcome]:
    """Run every row of manifest into out_dir/<name>/; results.csv, index.html and rows.json in out_dir.

    All rows are checked before any runs. The journal makes every row idempotent: a completed row is reused, a
    submitted one resumed, one whose create may have made a task `uncertain` and skipped unless resubmit_uncertain.
    A row that fails is `failed` with its error, alone. The reports are always written: on Ctrl-C or SIGTERM too (no
    new task is created, the job kernels stop, the interrupt is raised again) and when the batch itself crashes.

    Args:
        manifest: the manifest, a UTF-8 CSV (see columns()).
        out_dir: the output folder (one folder per row, the reports and the gallery).
        concurrency: tasks at the service at once.
        notebook: a job notebook of your own (it calls submit_or_resume() and finish()); None: the bundled one.
        resubmit_uncertain: submit again the rows whose create's answer was lost (which may pay twice).
        progress: show a progress bar.
        timeout: seconds each row may wait for its task.
        skip_invalid: run the valid rows and report each invalid one `skipped`, its problems as its error.
        reuse: False makes a new take of every row (as generate(reuse=False)).
        strict: refuse a row's inputs that would only be advised on (no face found): the row fails, uploading nothing.

    Returns:
        Each row's outcome, in the manifest's order.

    Raises:
        ManifestError: a row is invalid (every problem listed; with skip_invalid, only when no row is valid).
        ValidationError: the output folder cannot take the batch's files (each obstacle named).
        UsageError: the job notebook is not found.
        JournalError: the task journal cannot be used; nothing ran.
        SparkError: a key found in VTRIX_API_KEY or a key store is malformed (the cloud backend needs it).
    """
    out = Path(out_dir).resolve()
    settings = begin(resolve())  # once for the batch: its notices, a key it cannot use refused
    journal = journal_at(settings.home)  # a journal that cannot be used stops the batch before anything runs
    rows, invalid = rows_to_run(manifest, skip_invalid=skip_invalid,
                                pays=_pays(journal, out, reuse, resubmit_uncertain, settings))
    check_output_folder(out, [row.name for row in rows])
    out.mkdir(parents=True, exist_ok=True)
    template = Path(notebook) if notebook else TEMPLATE
    if not template.is_file():
        raise UsageError(f"job notebook {template} not found", hint="pass notebook= (or --notebook) naming a .ipynb")
    outcomes: dict[str, RowOutcome] = {}
    keys = _keys(rows, outcomes, settings)
    run = BatchRun(out, journal, keys, template, resubmit_uncertain, timeout, threading.Semaphore(max(1, concurrency)),
                   reuse=reuse, strict=strict, limits=settings.limits,
                   kernels=WarmKernels(kernel_environment(settings)))
    first_of = _jobs(rows, keys, run.copies)
    try:
        with _sigterm_interrupts():
            _run_jobs(list(first_of.values()), run, concurrency, outcomes, skipped=len(invalid), progress=progress,
                      rows=rows)
    except BaseException:
        _write_reports_anyway(out, rows, keys, first_of, outcomes, invalid)
        raise
    return _write_reports(out, rows, keys, first_of, outcomes, invalid)


def _jobs(rows: list[Row], keys: dict[str, str], copies: dict[str, list[Row]]) -> dict[str, Row]:
    """The first row of each fingerprint: rows with the same model and input content are one job, paid once; each
    other row goes into copies under its first (its folder is made from the first's task once that is done)."""
    first_of: dict[str, Row] = {}
    for row in rows:
        if row.name in keys:
            first = first_of.setdefault(keys[row.name], row)
            if first is not row:
                copies.setdefault(first.name, []).append(row)
    return first_of


def _pays(journal: Journal, out: Path, reuse: bool, resubmit_uncertain: bool,
          settings: Settings) -> Callable[[Row], bool]:
    """Whether a row will pay for a new task, so that its URL inputs are asked for first: when the decision on its
    earlier attempt (see _decision) creates one; not when the journal answers it (a task completed, still running,
    refused for its inputs, or whose create's answer was lost and is not resent)."""
    def pays(row: Row) -> bool:
        try:
            key = pipeline.call_key(row.spec, row.inputs, settings)
        except Exception:  # its inputs cannot be read now: the row fails alone, see _keys
            return True
        return _decision(journal, key, out / row.name, reuse, resubmit_uncertain).creates
    return pays


def _decision(journal: Journal, key: str, row_dir: Path, reuse: bool, resubmit_uncertain: bool) -> Decision:
    """What a row's earlier attempt means for it (the one rule, _reuse_rule.decide): the journal's newest attempt
    at its inputs; for a new take (reuse=False) only its own folder's attempt still at the service
    (job.own_attempt), so a rerun of an interrupted --no-reuse batch resumes its tasks instead of paying again."""
    earlier = journal.latest(key) if reuse else job.own_attempt(journal, key, row_dir)
    return decide(earlier, resubmit_uncertain=resubmit_uncertain)


def _keys(rows: list[Row], outcomes: dict[str, RowOutcome], settings: Settings) -> dict[str, str]:
    """Each row's journal fingerprint; a row whose inputs cannot be read now fails alone (in outcomes)."""
    keys = {}
    for row in rows:
        try:
            keys[row.name] = pipeline.call_key(row.spec, row.inputs, settings)
        except Exception as exc:  # e.g. a file removed since the check: this row's failure alone
            outcomes[row.name] = failed(row, exc)
    return keys


def _run_jobs(jobs: list[Row], run: BatchRun, concurrency: int, outcomes: dict[str, RowOutcome], *, skipped: int,
              progress: bool, rows: list[Row]) -> None:
    """Run the jobs, each outcome into outcomes as it ends; results.csv rewritten at most every CSV_EVERY_S."""
    workers = 2 * max(1, concurrency)
    # twice as many rows as tasks in flight: a row whose task is done finishes its report while the next
    # row's task already runs. The reports (job notebooks) run once their task is done, on a few warm kernels,
    # reused row after row: the machine's memory and CPU follow the cores, not the concurrency or the rows.
    # They run in worker threads: papermill drives its kernel from an event loop of its own, which cannot
    # start in a notebook's thread where a loop already runs.
    notebooks = max(1, min(workers, 2 * (os.cpu_count() or 1)))
    copies = sum(len(same) for same in run.copies.values())
    with BatchProgress(len(jobs) + copies, skipped=skipped, enabled=progress) as bar, \
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spark-batch") as pool, \
            ThreadPoolExecutor(max_workers=notebooks, thread_name_prefix="spark-job") as reports:
        run.reports = reports
        run.first_wave = min(len(jobs), max(1, concurrency))
        warm = threading.Barrier(notebooks)
        for _ in range(notebooks):  # kernels start while the first tasks run, one per report thread
            reports.submit(folder.warm_up, run, warm)
        rows_in: set[Future[Future[RowOutcome]]] = {pool.submit(alone_later, row, _run_row, row, run,
                                                                i >= run.first_wave) for i, row in enumerate(jobs)}
        reports_in: set[Future[RowOutcome]] = set()  # a row's outcome: settled, or its report still running
        csv_due = 0.0
        try:
            while rows_in or reports_in:
                wait(_both(rows_in, reports_in), return_when=FIRST_COMPLETED)
                for row_future in [f for f in rows_in if f.done()]:
                    rows_in.discard(row_future)
                    run.wave_sent.set()  # a row is past its submission (or reused): kernels may start
                    reports_in.add(row_future.result())
                for future in [f for f in reports_in if f.done()]:
                    reports_in.discard(future)
                    outcome = future.result()
                    outcomes[outcome.name] = outcome
                    bar.add(outcome)
                    rows_in.update(pool.submit(alone_later, row, folder.copy_of, row, run, outcome)
                                   for row in run.copies.pop(outcome.name, ()))
                    if time.monotonic() >= csv_due:  # rewritten at most every CSV_EVERY_S, and at the end
                        write_results_csv(run.out, [outcomes[r.name] for r in rows if r.name in outcomes])
                        csv_due = time.monotonic() + CSV_EVERY_S
        except BaseException:  # Ctrl-C, SIGTERM, or a crash of the batch itself: stop, keep what is done
            _stop(run, rows_in, reports_in, outcomes)
            raise
        finally:
            run.kernels.close()  # also any warm-up still to come starts no kernel
            run.wave_sent.set()
            warm.abort()


def _stop(run: BatchRun, rows_in: set[Future[Future[RowOutcome]]], reports_in: set[Future[RowOutcome]],
          outcomes: dict[str, RowOutcome]) -> None:
    """No new task is created and the job kernels are killed; the outcomes of rows that end meanwhile are kept."""
    run.stop.set()
    run.wave_sent.set()  # warm-ups waiting for the first tasks see the stop at once
    deadline = time.monotonic() + STOP_WAIT_S
    pending = _both(rows_in, reports_in)
    while not all(f.done() for f in pending) and time.monotonic() < deadline:  # a kernel may start meanwhile
        run.kill_kernels()
        wait(pending, timeout=0.5)
    ended = [(future, 0) for future in reports_in]
    for row_future in rows_in:  # a row past its submission meanwhile: its report gets a few seconds
        with contextlib.suppress(BaseException):
            ended.append((row_future.result(timeout=0), 5))
    for future, seconds in ended:
        with contextlib.suppress(BaseException):
            outcome = future.result(timeout=seconds)
            outcomes[outcome.name] = outcome


def _both(rows_in: set[Future[Future[RowOutcome]]], reports_in: set[Future[RowOutcome]]) -> list[Future[Any]]:
    return [*rows_in, *reports_in]


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
            outcome = dataclasses.replace(same, name=row.name, reused=True, cost="0.00" if same.cost else None,
                                          notebook=None, same_as=first.name)
        ordered.append(outcome or RowOutcome(row.name, row.spec.id, RowStatus.UNFINISHED, inputs=row.inputs,
                                             error="interrupted before it ran; run the batch again"))
    ordered = in_manifest_order(ordered, rows, invalid)
    write_results_csv(out, ordered)
    write_rows_json(out, ordered)
    write_gallery_notebook(out, ordered)
    write_gallery(out, ordered)
    return ordered


def _write_reports_anyway(out: Path, rows: list[Row], keys: dict[str, str], first_of: dict[str, Row],
                          outcomes: dict[str, RowOutcome], invalid: list[InvalidRow]) -> None:
    """_write_reports while the batch is stopping on an error: a failure to write is said, the error raised."""
    try:
        _write_reports(out, rows, keys, first_of, outcomes, invalid)
    except Exception as exc:  # the batch's own error is the one to raise
        print(f"spark-nb batch: the reports in {out} could not be written: {type(exc).__name__}: {exc}",
              file=sys.stderr)


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


def _run_row(row: Row, run: BatchRun, after_first_wave: bool = False) -> Future[RowOutcome]:
    """The row's task (submitted, resumed or reused) as the decision on its earlier attempt says (_decision); the
    future of its outcome: settled at once, or its report's once the task is done.

    A row after the first wave checks and uploads its inputs only once the first wave is sent: on a small machine
    its work would otherwise delay the first tasks' creates, which every later wave waits on.
    """
    if after_first_wave:
        run.wave_sent.wait(timeout=WARM_UP_DELAY_S)
    row_dir = run.out / row.name
    decision = _decision(run.journal, run.keys[row.name], row_dir, run.reuse, run.resubmit_uncertain)
    if (answered := _answered(row, run, decision, row_dir)) is not None:
        return answered
    row_folder(row_dir)
    advice: list[str] = []  # what the submission says of the inputs (a long audio trimmed): the row's, not the console
    # The runner talks to the service (submit, poll, download); the slot counts tasks at the service, so a row
    # uploads its inputs before it waits for one (the create follows at once when a slot frees), and frees it
    # as soon as the task is done.
    own = decision.entry.task_id if not run.reuse and decision.entry and decision.verdict == Verdict.ATTACH else None
    with _Slot(run.in_flight, run.stop) as slot:
        try:
            task = _submit(row, run, row_dir, slot, resubmit=decision.verdict == Verdict.RESEND,
                           advise=advice.append, task_id=own)
            slot.take()  # a task resumed or reused also runs at the service (a no-op once taken)
        except SparkError as exc:
            return settled(_not_submitted(row, run, exc))
        finally:
            run.count_submission()
        unfinished = None
        try:
            job.finish(task, row_dir, name=row.name, timeout=run.timeout, cancel=run.stop, on_done=slot.free)
        except SparkError as exc:  # recorded in the journal and result.json; the row's error
            unfinished = exc
    # the report runs once the task is done, on a warm kernel, and the row's thread goes on to the next row
    assert run.reports is not None
    return run.reports.submit(alone, row, folder.reported, row, run, task.id, task.origin, advice, unfinished,
                              task_id=task.id)


def _answered(row: Row, run: BatchRun, decision: Decision, row_dir: Path) -> Future[RowOutcome] | None:
    """The row's outcome when it sends nothing: strict refusing what answers it, an earlier video, the same refusal
    of its inputs, the budget reached, a task that may exist (not resent); None when the row goes to submission."""
    entry = decision.entry
    if run.strict and entry is not None and not decision.creates:  # strict: the same whatever answers it
        try:
            job.judge_strictly(row.spec.id, row.inputs, entry, run.limits)
        except SparkError as exc:
            return settled(_not_submitted(row, run, exc))
    if decision.verdict == Verdict.REUSE and entry and (video := folder.earlier_video(entry, row_dir)) is not None:
        return folder.reused(row, run, entry, video)  # its folder made whole, from the earlier task: nothing paid
    if decision.verdict == Verdict.REFUSED and entry:  # the same inputs fail again: reported, not paid again
        return settled(folder.from_entry(row, run, entry, reused=True))
    if run.budget_reached.is_set():
        return settled(RowOutcome(row.name, row.spec.id, RowStatus.UNFINISHED, inputs=row.inputs,
                                  error="not started: the budget was reached (raise SPARK_NB_BUDGET_USD, then run "
                                        "again)"))
    if decision.verdict == Verdict.MAY_EXIST and entry:
        executed = folder.notebook_of(run, row)
        why = "its journal record is damaged" if entry.damaged else "its answer was lost"
        return settled(RowOutcome(row.name, row.spec.id, RowStatus.UNCERTAIN, inputs=row.inputs,
                                  notebook=executed if executed.exists() else None,
                                  error=f"the create call may have made a task ({why}); not resent. "
                                        "Check the service, or run again with --resubmit-uncertain"))
    return None


def _submit(row: Row, run: BatchRun, row_dir: Path, slot: _Slot, *, resubmit: bool,
            advise: Callable[[str], None], task_id: str | None = None) -> Task:
    """The row's task, submitted (or resumed, or reused; task_id: the row's own task, resumed). While its model's
    cost is unknown under a budget, a row waits for the task that will make it known (CostUnknown names it),
    within the row's timeout."""
    deadline = time.monotonic() + run.timeout
    while True:
        try:
            return job.submit_or_resume(row.spec.id, row.inputs, row_dir, name=row.name, resubmit=resubmit,
                                        task_id=task_id,
                                        cancel=run.stop, when_uploaded=slot.take, face_advice=run.strict,
                                        advise=advise, reuse=run.reuse, strict=run.strict)
        except CostUnknown as exc:
            if not exc.creator_alive or time.monotonic() >= deadline:
                raise
            again = min(deadline, time.monotonic() + COST_RECHECK_S)  # a task nobody waits for: the try settles it
            while True:  # at least one poll between two tries
                if run.stop.wait(COST_WAIT_POLL_S):
                    raise TaskCancelled("the batch was stopped while this row waited for its model's cost to be "
                                        "known; no task was created", hint="run the batch again to submit it"
                                        ) from exc
                if not _still_open(run.journal.attempt(exc.attempt)) or time.monotonic() >= again:
                    break


def _still_open(entry: Entry | None) -> bool:
    return entry is not None and entry.state in (JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED)


def _not_submitted(row: Row, run: BatchRun, exc: SparkError) -> RowOutcome:
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


__all__ = ["run_batch", "summary"]
