"""The words a batch speaks: a row's status in the reports, and RowOutcome (job states are the journal's)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .._enums import Word
from .._journal import JobState


class RowStatus(Word):
    """How a row of a batch ended, as results.csv and the gallery say it."""

    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"  # its create call may have made a task; not resent without being asked
    UNFINISHED = "unfinished"  # stopped or timed out; running the batch again resumes it
    SKIPPED = "skipped"  # invalid in the manifest, not run (with --skip-invalid); its error names the problems

    @classmethod
    def of(cls, state: JobState | str) -> RowStatus:
        """The row status a journal state amounts to.

        Args:
            state: a journal state (JobState, or its value).

        Returns:
            completed, failed, uncertain (a create that may have made a task), or unfinished (a reservation sent
                nothing: never uncertain).
        """
        state = JobState(state)
        if state in (JobState.SUBMITTING, JobState.UNCERTAIN):
            return cls.UNCERTAIN
        return {JobState.COMPLETED: cls.COMPLETED, JobState.FAILED: cls.FAILED}.get(state, cls.UNFINISHED)


@dataclasses.dataclass
class RowOutcome:
    """How one row ended: its status, task, video and cost, its notebook, and the inputs it was given.

    Attributes:
        name: the row's name.
        model: its model id.
        status: how it ended.
        task_id: its task, when one was created or reused.
        video: its video, in its folder.
        duration: the video's length in seconds.
        cost: what its task cost, as exact decimal text ("0.004").
        notebook: its executed job notebook.
        error: why it did not complete.
        inputs: field name -> the input it was given.
        reused: its video came from a take paid for earlier (or from the row same_as names): nothing paid again.
        advice: what was advised on its inputs (e.g. no face found): the row ran, its result may be poor.
        same_as: the row of this manifest it is identical to: one task, paid once, for both.
    """

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
    advice: str | None = None
    same_as: str | None = None
