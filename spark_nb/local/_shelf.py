"""The local backend's tasks on disk, shared by every local server on the same storage (one per process).

A task created by one process can be read, waited on and downloaded from another, and a task whose process
died mid-render is finished by the next one that asks: the rendering process holds an flock on the task,
which the kernel releases when that process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from .._files import write_atomically
from ._records import TaskRecord

KEEP_SECONDS = 7 * 24 * 3600.0  # finished tasks (and their videos) are kept a week...
KEEP_BYTES = 2 * 1024**3  # ...and the videos at most 2 GB together, oldest removed first
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


class TaskShelf:
    """tasks/<id>.json (the record) and tasks/<id>.lock (held while a process renders it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def save(self, record: TaskRecord) -> None:
        """Write the record atomically (readers never see half of it)."""
        write_atomically(self.folder / f"{record.id}.json", json.dumps(dataclasses.asdict(record)))

    def load(self, task_id: str) -> TaskRecord | None:
        """The record of task_id as last saved, or None (unknown, unreadable, or not a task name)."""
        if not _NAME.match(task_id):
            return None
        try:
            data = json.loads((self.folder / f"{task_id}.json").read_text(encoding="utf-8"))
            return TaskRecord(**{f.name: data[f.name] for f in dataclasses.fields(TaskRecord) if f.name in data})
        except (OSError, ValueError, TypeError):
            return None

    @contextlib.contextmanager
    def claim(self, task_id: str) -> Iterator[bool]:
        """Hold the task's render lock for the block if no other process holds it; yields whether it is held."""
        fd = os.open(self.folder / f"{task_id}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the lock

    def orphaned(self, task_id: str) -> bool:
        """True when no process holds the task's render lock (its renderer is gone)."""
        with self.claim(task_id) as held:
            return held

    def prune(self, results: Path, *, keep_seconds: float = KEEP_SECONDS, keep_bytes: int = KEEP_BYTES) -> None:
        """Remove finished tasks older than keep_seconds, then the oldest videos past keep_bytes in total."""
        now, finished = time.time(), []
        for path in self.folder.glob("*.json"):
            record = self.load(path.stem)
            if record is not None and record.finished:
                finished.append(record)
        finished.sort(key=lambda r: r.created_at, reverse=True)
        total = 0
        for record in finished:
            video = results / record.video_name
            size = video.stat().st_size if video.is_file() else 0
            total += size
            if now - record.created_at > keep_seconds or total > keep_bytes:
                for leftover in (video, self.folder / f"{record.id}.json", self.folder / f"{record.id}.lock"):
                    leftover.unlink(missing_ok=True)
