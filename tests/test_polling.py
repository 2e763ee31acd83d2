"""The adaptive poll schedule, simulated against tasks whose progress rises steadily."""

from __future__ import annotations

import math

import pytest

from spark_nb._polling import PollSchedule


def simulate(duration: float, *, reports_progress: bool = True, queued: float = 0.0) -> tuple[int, float]:
    """Polls needed and delay between completion and noticing it, for a task lasting duration seconds."""
    schedule, t, polls = PollSchedule(), 0.0, 0
    progress: float | None = 0.0 if reports_progress else None
    for _ in range(1000):
        t += schedule.next_delay(t, progress)
        polls += 1
        if t >= duration:
            return polls, t - duration
        if reports_progress:
            progress = max(0.0, (t - queued) / (duration - queued))
    raise AssertionError("the schedule never reached the end")


@pytest.mark.parametrize("duration", [2.0, 6.0, 15.0, 40.0, 120.0])
def test_progress_guided_polling_is_prompt_and_sparse(duration: float) -> None:
    """Notices completion within 0.2 s, with no more polls than a fixed 5 s poller makes, plus two."""
    polls, late = simulate(duration)
    assert late <= 0.2
    assert polls <= math.ceil(duration / 5.0) + 2


def test_a_queued_task_is_still_noticed_promptly() -> None:
    """Progress that starts late (queued 5 s) is re-estimated from the observed rate."""
    polls, late = simulate(20.0, queued=5.0)
    assert late <= 0.5 and polls <= math.ceil(20.0 / 5.0) + 3


def test_without_progress_it_backs_off_to_the_cli_interval() -> None:
    """No progress figures: 0.5, 1, 2, 4, then every 5 s, like the official CLI."""
    schedule = PollSchedule()
    delays = [schedule.next_delay(float(i), None) for i in range(7)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    polls, late = simulate(40.0, reports_progress=False)
    assert late <= 5.0 and polls <= math.ceil(40 / 5.0) + 4


def test_an_early_prediction_is_followed_by_quick_polls() -> None:
    """When the predicted end passes without completion, the next polls come within a second."""
    schedule = PollSchedule()
    schedule.next_delay(1.0, 0.5)  # predicts the end at 2 s
    assert schedule.next_delay(2.1, 0.99) <= 1.0
