"""When to poll next: quick at first, then aimed just past the end that the server's progress predicts."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class PollSchedule:
    """Adaptive poll intervals.

    Without progress figures it backs off 0.5 s, 1 s, 2 s ... up to `blind_cap` (the official CLI's 5 s).
    Once the server reports progress, it estimates the time left from the progress rate and sleeps until
    just after the predicted end (at most `cap`, and at most twice the time elapsed, since early estimates
    are rough), then re-polls quickly if the prediction was early.
    """

    first: float = 0.5
    blind_cap: float = 5.0
    cap: float = 10.0
    margin: float = 0.04  # past the predicted end: a poll that comes early costs one quick poll more
    overrun: float = 0.1
    min_progress: float = 0.05  # below this, one reading says too little about the rate to trust
    _first_seen: tuple[float, float] | None = None
    _blind_polls: int = 0
    _overruns: int = 0

    def next_delay(self, elapsed: float, progress: float | None) -> float:
        """Seconds until the next poll, given seconds since creation and the last progress (0..1) or None."""
        remaining = self._estimate_remaining(elapsed, progress)
        if remaining is None:
            delay = min(self.blind_cap, self.first * 2.0**self._blind_polls)
            self._blind_polls += 1
            return delay
        if remaining > self.margin:
            self._overruns = 0
            # an early estimate can be far off: never sleep more than twice the time seen so far
            return min(self.cap, remaining + self.margin, max(self.first, 2.0 * elapsed))
        delay = min(self.blind_cap, self.overrun * 2.0**self._overruns)  # predicted end passed: look again soon
        self._overruns += 1
        return delay

    def _estimate_remaining(self, elapsed: float, progress: float | None) -> float | None:
        if progress is None or not self.min_progress <= progress < 1.0:
            return None
        if self._first_seen is None:
            self._first_seen = (elapsed, progress)
            return elapsed * (1.0 - progress) / progress  # assumes progress started rising at creation
        t0, p0 = self._first_seen
        if progress <= p0 or elapsed <= t0:
            return elapsed * (1.0 - progress) / progress
        return (1.0 - progress) * (elapsed - t0) / (progress - p0)
