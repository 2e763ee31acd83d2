"""Task: a handle on one generation that can be polled, waited on and rebuilt from its id."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .client import ApiClient, task_error
from .config import Settings, resolve
from .errors import SparkError, TaskCancelled, TaskTimeout
from .polling import PollSchedule
from .progress import TaskProgress
from .results import Result, download_result

DONE_STATUSES = frozenset({"completed", "success", "succeeded"})
FAILED_STATUSES = frozenset({"failed", "error", "cancelled", "canceled"})


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One reading of a task: status, progress (0..1 or None) and the raw task object."""

    id: str
    model: str
    status: str
    progress: float | None
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: dict[str, Any], task_id: str, model: str) -> "TaskState":
        """Read a task object as the protocol page describes it."""
        progress = raw.get("progress")
        return cls(
            id=str(raw.get("id") or task_id),
            model=str(raw.get("model") or model),
            status=str(raw.get("status") or "pending").lower(),
            progress=float(progress) if isinstance(progress, (int, float)) else None,
            raw=raw,
        )

    @property
    def done(self) -> bool:
        """True when the video is ready."""
        return self.status in DONE_STATUSES

    @property
    def failed(self) -> bool:
        """True when the task ended without a video."""
        return self.status in FAILED_STATUSES


@dataclasses.dataclass(frozen=True)
class Task:
    """A submitted task; rebuild one from its id with Task.from_id after a kernel restart."""

    id: str
    model: str
    settings: Settings = dataclasses.field(repr=False, compare=False)
    initial: dict[str, Any] | None = dataclasses.field(default=None, repr=False, compare=False)
    started: float = dataclasses.field(default_factory=time.monotonic, repr=False, compare=False)

    @classmethod
    def from_id(cls, task_id: str, model: str | None = None, **config: Any) -> "Task":
        """A handle on an existing task (config: api_key, backend, base_url, output_dir, as for configure())."""
        return cls(id=task_id, model=model or "", settings=resolve(**config))

    @property
    def client(self) -> ApiClient:
        """The API client of this task's backend."""
        from .backends import api_client

        return api_client(self.settings)

    def status(self) -> TaskState:
        """Read the task's current state once (transient failures retried briefly)."""
        raw = self.client.get_task(self.id, deadline=time.monotonic() + 60)
        return TaskState.from_raw(raw, self.id, self.model)

    def wait(self, timeout: float = 600, *, progress: bool = True) -> Result:
        """Poll until the task finishes, then download and check its video; TaskTimeout after timeout seconds."""
        return self._wait(timeout, progress, None)

    async def await_result(self, timeout: float = 600, *, progress: bool = True) -> Result:
        """The async twin of wait(): polls in a worker thread; cancelling stops the wait, not the task."""
        return await run_cancellable(self._wait, timeout, progress)

    def _wait(self, timeout: float, progress: bool, cancel: threading.Event | None,
              on_done: Callable[[], None] | None = None) -> Result:
        deadline = time.monotonic() + timeout
        schedule = PollSchedule()
        state = TaskState.from_raw(self.initial, self.id, self.model) if self.initial else None
        try:
            with TaskProgress(self.id, enabled=progress) as bar:
                while True:
                    if state is None:
                        state = self._poll(deadline, timeout)
                    bar.update(state.status, state.progress)
                    if state.done:
                        bar.update(state.status, 1.0)
                        if on_done is not None:  # the service's part is over; the download is ours
                            on_done()
                        break
                    if state.failed:
                        raise task_error(state.raw.get("error"), self.id, state.model)
                    delay = schedule.next_delay(self._elapsed(state), state.progress)
                    if time.monotonic() + delay > deadline:
                        delay = max(0.0, deadline - time.monotonic())
                        if delay == 0.0:
                            raise self._timeout(timeout, state)
                    _sleep(delay, cancel, self)
                    state = None
        except KeyboardInterrupt:
            model = self.model or (state.model if state else "")
            print(f"\nInterrupted: task {self.id} keeps running on the service. Resume it with:\n"
                  f'    spark_nb.Task.from_id("{self.id}", model="{model}").wait()', file=sys.stderr)
            raise
        return download_result(self.client, state, self.settings.output_dir)

    def _poll(self, deadline: float, timeout: float) -> TaskState:
        try:
            raw = self.client.get_task(self.id, deadline=deadline)
        except SparkError as exc:
            if time.monotonic() >= deadline - 0.5 and not isinstance(exc, TaskTimeout):
                raise self._timeout(timeout, None) from exc
            raise
        return TaskState.from_raw(raw, self.id, self.model)

    def _elapsed(self, state: TaskState) -> float:
        if self.initial is not None:  # submitted here: our own clock is exact, the service's is whole seconds
            return time.monotonic() - self.started
        created = state.raw.get("created_at")
        if isinstance(created, (int, float)) and 0 <= time.time() - created < 86400:
            return time.time() - created
        return time.monotonic() - self.started

    def _timeout(self, timeout: float, state: TaskState | None) -> TaskTimeout:
        seen = f"last seen {state.status}" if state else "the service did not answer"
        if state and state.progress is not None:
            seen += f" at {state.progress:.0%}"
        return TaskTimeout(f"task {self.id} did not finish within {timeout:g}s ({seen})",
                           task_id=self.id, model=self.model or (state.model if state else ""))


def _sleep(seconds: float, cancel: threading.Event | None, task: Task) -> None:
    if cancel is None:
        time.sleep(seconds)
    elif cancel.wait(seconds):
        raise TaskCancelled(
            f"stopped waiting for task {task.id}; it keeps running on the service",
            hint=f'resume it with spark_nb.Task.from_id("{task.id}", model="{task.model}").wait()',
            task_id=task.id,
        )


async def run_cancellable(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run fn(*args, cancel_event, **kwargs) in a worker thread; asyncio cancellation sets the event."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(fn, *args, cancel, **kwargs)
    except asyncio.CancelledError:
        cancel.set()
        raise
