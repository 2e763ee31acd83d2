"""A batch on the console: one progress bar (jobs done, failed and pending, the spend so far) and a summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from .._money import format_usd
from ._outcome import RowOutcome, RowStatus, outcomes_argument

# the elapsed and remaining times without tqdm's rate: a job takes minutes, "0.01job/s" says nothing
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


class Tally:
    """Outcomes counted by status, and what the completed ones cost in this run."""

    def __init__(self, outcomes: Iterable[RowOutcome] = ()) -> None:
        self.count: Counter[RowStatus] = Counter()
        self.reused = 0  # completed rows whose video an earlier run, or an identical row, already paid for
        self.spent = Decimal(0)
        for outcome in outcomes:
            self.add(outcome)

    def add(self, outcome: RowOutcome) -> None:
        """Count one more outcome (a completed row's cost is spent unless its video was reused)."""
        self.count[RowStatus(outcome.status)] += 1
        if outcome.status == RowStatus.COMPLETED:
            if outcome.reused:
                self.reused += 1
            elif outcome.cost:
                self.spent += Decimal(outcome.cost)

    @property
    def spend(self) -> str:
        """The spend as the service bills it: '$0.00'."""
        return format_usd(self.spent)


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
    """'3 completed, 1 failed, 0 uncertain, 2 skipped (invalid) of 6 rows; spent $0.00'."""
    outcomes = outcomes_argument(outcomes)
    tally = Tally(outcomes)
    count = tally.count
    text = f"{count[RowStatus.COMPLETED]} completed"
    if tally.reused:
        text += f" ({tally.reused} reused)"
    text += f", {count[RowStatus.FAILED]} failed, {count[RowStatus.UNCERTAIN]} uncertain"
    if count[RowStatus.UNFINISHED]:
        text += f", {count[RowStatus.UNFINISHED]} unfinished (run again to resume)"
    if count[RowStatus.SKIPPED]:
        text += f", {count[RowStatus.SKIPPED]} skipped (invalid)"
    return f"{text} of {len(outcomes)} rows; spent {tally.spend}"


__all__ = ["BatchProgress", "Tally", "bar_text", "summary"]
