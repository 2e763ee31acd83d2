"""The words a batch speaks: a job's state in the ledger, a row's status in the reports, and RowOutcome."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path


class _Word(str, enum.Enum):
    """An Enum whose members are their own strings, in str(), f-strings, JSON, CSV and SQLite alike."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class JobState(_Word):
    """A job's state in the ledger, in order of life.

    SUBMITTING is written before the create call (a task may come to exist), SUBMITTED once its id is known,
    then COMPLETED or FAILED. A job found SUBMITTING by a later run lost the create call's answer (or its
    process died), so it becomes UNCERTAIN and is not resent unless asked.
    """

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


class RowStatus(_Word):
    """How a row of a batch ended, as results.csv and the gallery say it."""

    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # its create call may have made a task; not resent without being asked
    UNFINISHED = "unfinished"  # stopped or timed out; running the batch again resumes it

    @classmethod
    def of(cls, state: JobState | str) -> RowStatus:
        """The row status a ledger state amounts to."""
        state = JobState(state)
        if state in (JobState.SUBMITTING, JobState.UNCERTAIN):
            return cls.UNCERTAIN
        return {JobState.COMPLETED: cls.COMPLETED, JobState.FAILED: cls.FAILED}.get(state, cls.UNFINISHED)


@dataclasses.dataclass
class RowOutcome:
    """How one row ended: its status, task, video and cost, its notebook, and the inputs it was given."""

    name: str
    model: str
    status: RowStatus
    task_id: str | None = None
    video: Path | None = None
    duration: float | None = None
    cost: str | None = None
    notebook: Path | None = None
    error: str | None = None
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    reused: bool = False
