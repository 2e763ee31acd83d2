"""The local server's memory: task records (bounded in number and age) and its counters."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class TaskRecord:
    """One task's life on the server; status is derived on read, so the latency needs no timers."""

    id: str
    model: str
    urls: dict[str, str]  # input field name -> URL
    created_at: float
    latency: float
    cost_per_second: float = 0.0
    started: bool = False
    rendered: float = 0.0
    rendered_at: float | None = None
    size: int = 0
    seconds: float = 0.0
    error: dict[str, str] | None = None
    polls: int = 0
    noticed_at: float | None = None  # when a poll first answered "completed": how late clients notice
    video: str = ""  # the result's random file name under a server's results/ (see video_name)

    @property
    def video_name(self) -> str:
        """The result video's file name: the random one given at creation ("<id>.mp4" for a record an earlier
        version saved on a shelf without one)."""
        return self.video or f"{self.id}.mp4"

    @property
    def ready_at(self) -> float | None:
        """Wall time at which the task counts as completed, once rendered."""
        return None if self.rendered_at is None else max(self.rendered_at, self.created_at + self.latency)

    @property
    def finished(self) -> bool:
        """True once the render ended, with a video or an error."""
        return self.error is not None or self.rendered_at is not None

    def to_json(self, base_url: str, now: float) -> dict[str, Any]:
        """The task object as the protocol page describes it."""
        obj: dict[str, Any] = {"id": self.id, "model": self.model, "created_at": int(self.created_at), "metadata": {}}
        if self.error:
            obj.update(status="failed", error=self.error)
        elif self.ready_at is not None and now >= self.ready_at:
            url = f"{base_url}files/results/{self.video_name}"
            obj.update(
                status="completed",
                output=[{"content": [{"type": "video", "url": url, "size": self.size, "jobId": f"local-{self.id}"}]}],
                usage={"cost": f"{self.cost_per_second * self.seconds:.2f}", "discount": 0, "input_tokens": 0,
                       "output_tokens": 0, "total_tokens": 0, "generated_videos": 1},
                metadata={"completed_at": self.ready_at},
            )
        else:
            progress = self.rendered
            if self.latency > 0:
                # the service this server stands in for takes `latency` s a task, so its progress is the share of
                # that time gone, rendered here yet or not: a render still queued behind a burst of creates would
                # otherwise read as a task not started, and its poller back off to its blind 5 s
                progress = (now - self.created_at) / self.latency
            obj.update(status="in_progress" if self.started else "pending", progress=round(min(progress, 0.99), 3))
        return obj


class TaskStore:
    """The records, at most max_tasks of them: the oldest finished ones (and their files) go first, and finished
    ones older than ttl seconds go anyway. on_evict(record) removes what a record leaves on disk."""

    def __init__(self, max_tasks: int, ttl: float, on_evict: Callable[[TaskRecord], None]) -> None:
        self.max_tasks = max_tasks
        self.ttl = ttl
        self._on_evict = on_evict
        self._records: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()

    def __iter__(self) -> Any:
        with self._lock:
            return iter(list(self._records))

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, task_id: str) -> TaskRecord:
        return self._records[task_id]

    def __eq__(self, other: object) -> bool:
        return dict(self._records) == other if isinstance(other, dict) else NotImplemented

    def get(self, task_id: str) -> TaskRecord | None:
        """The record, or None when unknown (or evicted)."""
        return self._records.get(task_id)

    def discard(self, task_id: str) -> None:
        """Forget a record without removing its files (another process owns it)."""
        with self._lock:
            self._records.pop(task_id, None)

    def unfinished(self) -> list[TaskRecord]:
        """The records whose render has not ended."""
        with self._lock:
            return [r for r in self._records.values() if not r.finished]

    def pending(self) -> int:
        """How many tasks have not finished rendering."""
        with self._lock:
            return sum(not r.finished for r in self._records.values())

    def add(self, record: TaskRecord) -> None:
        """Keep record, evicting what the bounds require."""
        evicted = []
        with self._lock:
            self._records[record.id] = record
            now = time.time()
            finished = sorted((r for r in self._records.values() if r.finished), key=lambda r: r.created_at)
            for old in finished:
                if len(self._records) <= self.max_tasks and now - old.created_at <= self.ttl:
                    break
                evicted.append(self._records.pop(old.id))
        for old in evicted:
            self._on_evict(old)


class Stats:
    """Counters: tasks created, task polls, uploads, result downloads, and each injected fault.

    `requests` counts every HTTP request that reached the server, on any path and whatever its answer; it stays
    out of snapshot() so the stats answer keeps its shape (and asking for it does not change it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = {"created": 0, "polls": 0, "uploads": 0, "downloads": 0}
        self.faults: dict[str, int] = {}
        self.requests = 0

    def add(self, name: str) -> None:
        """Count one event ("requests" for any HTTP request)."""
        with self._lock:
            if name == "requests":
                self.requests += 1
            else:
                self.counts[name] += 1

    def add_fault(self, name: str) -> None:
        """Count one injected fault, e.g. 'poll:500'."""
        with self._lock:
            self.faults[name] = self.faults.get(name, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """All counters as a JSON-ready dict."""
        with self._lock:
            return {**self.counts, "faults": dict(self.faults)}
