"""A batch on the console: one progress bar (jobs done, failed and pending, the spend so far) and a summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from .._money import format_usd, usd
from ._outcome import RowOutcome, RowStatus

# the elapsed and remaining times without tqdm's rate: a job takes minutes, "0.01job/s" says nothing
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class Tally:
    """Outcomes counted by status, and what this run spent: the completed rows' costs but those of rows reused from
    earlier runs (paid then) and of rows identical to another row (paid once, with it)."""

    def __init__(self, outcomes: Iterable[RowOutcome] = ()) -> None:
        self.count: Counter[RowStatus] = Counter()
        self.reused = 0  # completed rows whose video an earlier run already paid for
        self.same = 0  # completed rows identical to another row of the manifest: its task, its cost
        self.spent = Decimal(0)
        for outcome in outcomes:
            self.add(outcome)

    def add(self, outcome: RowOutcome) -> None:
        """Count one more outcome (a completed row's cost is spent unless its video was reused)."""
        self.count[RowStatus(outcome.status)] += 1
        if outcome.status == RowStatus.COMPLETED:
            if outcome.same_as:
                self.same += 1
            elif outcome.reused:
                self.reused += 1
            else:
                self.spent += usd(outcome.cost) or 0

    @property
    def spend(self) -> str:
        """The spend as the service bills it: '$0.00'."""
        return format_usd(self.spent)

    @property
    def spent_by_run(self) -> str:
        """'spent by this run: $1.35 (2 rows reused from earlier runs)': the one way a batch says what it paid."""
        notes = [f"{self.reused} {'row' if self.reused == 1 else 'rows'} reused from earlier runs"] if self.reused \
            else []
        notes += [f"{self.same} the same as another row"] if self.same else []
        return f"spent by this run: {self.spend}" + (f" ({', '.join(notes)})" if notes else "")


def bar_text(tally: Tally, pending: int, skipped: int = 0) -> str:
    """'done 88, failed 2, pending 110, spent $0.00' (uncertain, unfinished and skipped named when there are any)."""
    count = tally.count
    parts = [f"done {count[RowStatus.COMPLETED]}", f"failed {count[RowStatus.FAILED]}"]
    parts += [f"{status} {count[status]}" for status in (RowStatus.UNCERTAIN, RowStatus.UNFINISHED) if count[status]]
    parts.append(f"pending {pending}")
    if skipped:
        parts.append(f"skipped {skipped}")
    return ", ".join([*parts, f"spent {tally.spend}"])


class BatchProgress:
    """The batch's one tqdm.auto bar over its jobs, its postfix saying bar_text(); does nothing when disabled."""

    def __init__(self, jobs: int, *, skipped: int = 0, enabled: bool = True) -> None:
        from tqdm.auto import tqdm

        self.jobs = jobs
        self.skipped = skipped
        self.tally = Tally()
        self._bar: Any = tqdm(total=jobs, desc="batch", unit="job", disable=not enabled, bar_format=BAR_FORMAT,
                              postfix=self.text())  # drawn at once: the first state names the pending jobs

    def add(self, outcome: RowOutcome) -> None:
        """One job is over: count it and show the new state."""
        self.tally.add(outcome)
        # n, then one redraw: update() would draw the new count beside the old postfix, or skip drawing
        # when two jobs end within its mininterval
        self._bar.n += 1
        self._bar.set_postfix_str(self.text())

    def text(self) -> str:
        """The bar's postfix now."""
        return bar_text(self.tally, self.jobs - sum(self.tally.count.values()), self.skipped)

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()


def summary(outcomes: Sequence[RowOutcome]) -> str:
    """A batch's outcomes in one line, as its last line says them.

    Args:
        outcomes: the rows' outcomes (run_batch's answer).

    Returns:
        e.g. '3 completed, 1 failed, 0 uncertain, 2 skipped (invalid) of 6 rows; spent by this run: $0.30 (1 row
            reused from earlier runs)'.
    """
    tally = Tally(outcomes)
    count = tally.count
    text = f"{count[RowStatus.COMPLETED]} completed"
    text += f", {count[RowStatus.FAILED]} failed, {count[RowStatus.UNCERTAIN]} uncertain"
    if count[RowStatus.UNFINISHED]:
        text += f", {count[RowStatus.UNFINISHED]} unfinished (run again to resume)"
    if count[RowStatus.SKIPPED]:
        text += f", {count[RowStatus.SKIPPED]} skipped (invalid)"
    return f"{text} of {len(outcomes)} rows; {tally.spent_by_run}"


def spent(outcomes: Sequence[RowOutcome]) -> str:
    """What a batch run paid, said as its summary and gallery say it (a row reused from an earlier run was paid then).

    Args:
        outcomes: the rows' outcomes (run_batch's answer).

    Returns:
        e.g. 'spent by this run: $0.30 (1 row reused from earlier runs)'.
    """
    return Tally(outcomes).spent_by_run


__all__ = ["BatchProgress", "Tally", "bar_text", "spent", "summary"]
