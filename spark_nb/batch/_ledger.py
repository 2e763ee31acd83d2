"""The batch ledger: one SQLite row per job (model + input content), so no job is ever paid for twice.

Each job has a JobState (see _outcome.py for their order and meaning). Several kernel processes write at
once: WAL mode and a busy timeout make that safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from ._outcome import JobState

FILENAME = "ledger.sqlite"


@dataclasses.dataclass(frozen=True)
class Entry:
    """What the ledger knows of one job."""

    key: str
    name: str
    model: str
    state: JobState
    task_id: str | None
    record: dict[str, Any]
    updated_at: float


class Ledger:
    """The SQLite file of a batch's output folder; each method is one short transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS jobs (
                key TEXT PRIMARY KEY, name TEXT NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
                task_id TEXT, record TEXT NOT NULL DEFAULT '{}', updated_at REAL NOT NULL)""")

    def get(self, key: str) -> Entry | None:
        """The job's entry, or None if it never started."""
        with self._connect() as db:
            row = db.execute("SELECT key, name, model, state, task_id, record, updated_at FROM jobs WHERE key = ?",
                             (key,)).fetchone()
        if row is None:
            return None
        key, name, model, state, task_id, record, updated_at = row
        return Entry(key, name, model, JobState(state), task_id, json.loads(record), updated_at)

    def set(self, key: str, *, name: str, model: str, state: JobState, task_id: str | None = None,
            record: dict[str, Any] | None = None) -> None:
        """Write the job's state (and task id / result record when given), durably, before returning."""
        state = JobState(state)
        with self._connect() as db:
            db.execute(
                """INSERT INTO jobs (key, name, model, state, task_id, record, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET name = excluded.name, model = excluded.model,
                     state = excluded.state, task_id = COALESCE(excluded.task_id, jobs.task_id),
                     record = excluded.record, updated_at = excluded.updated_at""",
                (key, name, model, state.value, task_id, json.dumps(record or {}), time.time()))

    def forget(self, key: str) -> None:
        """Drop the job's entry (used to resubmit an uncertain job on request)."""
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE key = ?", (key,))

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # autocommit: each statement durable
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA synchronous = FULL")
        return contextlib.closing(db)
