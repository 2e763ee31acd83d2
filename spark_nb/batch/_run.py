"""What every row of one run_batch call shares, and the rule that a row fails alone."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .._config import InputLimits
from .._journal import Journal
from ..errors import SparkError
from ._kernels import WarmKernels
from ._manifest import Row
from ._outcome import RowOutcome, RowStatus

logger = logging.getLogger("spark_nb.batch")


@dataclasses.dataclass
class BatchRun:
    """What every row of one run_batch call shares."""

    out: Path
    journal: Journal
    keys: dict[str, str]  # row name -> the journal fingerprint of its call
    template: Path
    resubmit_uncertain: bool
    timeout: float
    in_flight: threading.Semaphore  # tasks at the service at once
    copies: dict[str, list[Row]] = dataclasses.field(default_factory=dict)  # first row -> rows identical to it
    reports: ThreadPoolExecutor | None = None  # where the job notebooks run (set once the pools exist)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    budget_reached: threading.Event = dataclasses.field(default_factory=threading.Event)
    kernels: WarmKernels = dataclasses.field(default_factory=WarmKernels)  # the job notebooks' kernels
    reuse: bool = True  # False: every row a new take (run_batch(reuse=False), --no-reuse)
    strict: bool = False  # True: advice on a row's inputs refuses the row before its upload (--strict)
    limits: InputLimits = InputLimits()  # the batch's settings' input limits (read once, by run_batch)

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


def alone(row: Row, work: Callable[..., RowOutcome], *args: Any, task_id: str | None = None) -> RowOutcome:
    """work(*args), or, if it raises anything at all, the row failed with that error: the other rows go on."""
    try:
        return work(*args)
    except Exception as exc:  # a bug, a RecursionError, an OSError: this row's failure, not the batch's
        logger.debug("row %s failed", row.name, exc_info=True)
        return failed(row, exc, task_id=task_id)


def alone_later(row: Row, work: Callable[..., Future[RowOutcome]], *args: Any) -> Future[RowOutcome]:
    """A row's work, which gives the future of its outcome (see settled), or, if it raises anything at all, the
    row failed with that error (settled): the other rows go on."""
    try:
        return work(*args)
    except Exception as exc:  # as in alone
        logger.debug("row %s failed", row.name, exc_info=True)
        return settled(failed(row, exc))


def settled(outcome: RowOutcome) -> Future[RowOutcome]:
    """An outcome known now, as the future a row's work gives (the others: its report still to run)."""
    future: Future[RowOutcome] = Future()
    future.set_result(outcome)
    return future


def failed(row: Row, exc: BaseException, *, task_id: str | None = None) -> RowOutcome:
    """The row failed with exc (its text, the task id when known)."""
    error = str(exc) if isinstance(exc, SparkError) else f"{type(exc).__name__}: {exc}"
    return RowOutcome(row.name, row.spec.id, RowStatus.FAILED, task_id=task_id or getattr(exc, "task_id", None),
                      inputs=row.inputs, error=error[:2000])
