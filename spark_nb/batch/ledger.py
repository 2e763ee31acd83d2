"""The batch ledger: one SQLite row per job (model + input content), so no job is ever paid for twice.

States, in order: `submitting` (about to send create: a task may come to exist), `submitted` (the task
id is known), then `completed` or `failed`. A job found `submitting` by a later run lost the create
call's answer (or its process died), so it becomes `uncertain` and is not resent unless asked.
Several kernel processes write at once: WAL mode and a busy timeout make that safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

FILENAME = "ledger.sqlite"
STATES = ("submitting", "submitted", "completed", "failed", "uncertain")


@dataclasses.dataclass(frozen=True)
class Entry:
    """What the ledger knows of one job."""

    key: str
    name: str
    model: str
    state: str
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
        return None if row is None else Entry(*row[:5], record=json.loads(row[5]), updated_at=row[6])

    def all(self) -> list[Entry]:
        """Every entry, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT key, name, model, state, task_id, record, updated_at FROM jobs "
                              "ORDER BY updated_at").fetchall()
        return [Entry(*r[:5], record=json.loads(r[5]), updated_at=r[6]) for r in rows]

    def set(self, key: str, *, name: str, model: str, state: str, task_id: str | None = None,
            record: dict[str, Any] | None = None) -> None:
        """Write the job's state (and task id / result record when given), durably, before returning."""
        if state not in STATES:
            raise ValueError(f"unknown ledger state {state!r}")
        with self._connect() as db:
            db.execute(
                """INSERT INTO jobs (key, name, model, state, task_id, record, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET name = excluded.name, model = excluded.model,
                     state = excluded.state, task_id = COALESCE(excluded.task_id, jobs.task_id),
                     record = excluded.record, updated_at = excluded.updated_at""",
                (key, name, model, state, task_id, json.dumps(record or {}), time.time()))

    def forget(self, key: str) -> None:
        """Drop the job's entry (used to resubmit an uncertain job on request)."""
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE key = ?", (key,))

    def _connect(self) -> contextlib.closing[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=60, isolation_level=None)  # autocommit: each statement durable
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA synchronous = FULL")
        return contextlib.closing(db)
