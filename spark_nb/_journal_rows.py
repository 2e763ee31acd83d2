"""The journal's rows: the states of a create attempt, an Entry, the table's schema, and reading a row that may be
damaged (an older version's, or one edited by hand) without ever raising.

A value that is not what its column holds (a NaN or year-20000 timestamp, text where a number goes, a state this
version does not know) reads as unknown (None, or UNCERTAIN for a state) and is named in Entry.damaged, so
history shows the row as damaged and reuse and the budget decide what is safe (see _reuse and _budget).
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import math
import socket
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from ._enums import Word
from ._money import usd
from ._procs import pid_alive

SCHEMA_VERSION = 2
COLUMNS = ("attempt", "fingerprint", "model", "backend", "base_url", "inputs", "state", "task_id", "pid", "host",
           "attempted_at", "updated_at", "cost", "seconds", "input_seconds", "result_url", "path", "error", "code",
           "retryable", "source")
SELECT = f"SELECT {', '.join(COLUMNS)} FROM tasks"
# Newest first by the journal's own insertion number, never by a clock (one that was ahead would make an old row
# the newest for ever). A row whose number is damaged sorts as the oldest.
NEWEST_FIRST = "ORDER BY CASE typeof(seq) WHEN 'integer' THEN seq ELSE -1 END DESC"
_LATEST_TIME = 253402128000.0  # 9999-12-30: past it, a date cannot be shown (in every time zone)
_TEXT = ("base_url", "task_id", "host", "result_url", "path", "error", "code")


class JobState(Word):
    """A create attempt's state, in order of life (see _journal's docstring)."""

    RESERVED = "reserved"  # claimed (budget and identity checked), inputs uploading: nothing sent yet
    SUBMITTING = "submitting"  # the create call is being sent: from here a task may exist
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


OPEN = (JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.UNCERTAIN)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One create attempt as the journal knows it."""

    attempt: str
    fingerprint: str
    model: str
    backend: str
    base_url: str | None
    inputs: list[dict[str, Any]]  # per input: field, name, and sha256 (a local file) or url
    state: JobState
    task_id: str | None
    pid: int | None
    host: str | None
    attempted_at: float | None  # None: the row's timestamp is damaged
    updated_at: float | None
    cost: Decimal | None = None  # US dollars; stored as REAL, read back by its shortest spelling (exact to 15 digits)
    seconds: float | None = None  # of the result video
    input_seconds: float | None = None  # of the audio or video that drove it
    result_url: str | None = None
    path: str | None = None
    error: str | None = None
    code: str | None = None
    retryable: bool = False
    source: str = "generate"
    damaged: tuple[str, ...] = ()  # what of the row could not be read, e.g. "attempted_at 'NaN' is not a time"

    @property
    def creator_alive(self) -> bool:
        """True while the process that made this attempt runs (on this machine)."""
        return self.host == socket.gethostname() and self.pid is not None and pid_alive(self.pid)

    @property
    def when(self) -> str:
        """When the attempt was made, for people ("2026-12-01 14:03:07", or "an unknown time" if damaged)."""
        if self.attempted_at is None:
            return "an unknown time"
        return datetime.datetime.fromtimestamp(self.attempted_at).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def abandoned(self) -> bool:
        """A reservation whose process is gone: nothing was sent, so it answers no call and costs nothing."""
        return self.state == JobState.RESERVED and not self.creator_alive


def create_schema(db: Any) -> None:
    """Create the table, or bring an older one up to date: columns it lacks are added, and every row is numbered.

    seq numbers rows in insertion order. It is an ordinary column (SQLite's implicit rowid of a table without an
    INTEGER PRIMARY KEY may be renumbered by VACUUM), filled by a trigger on every insert, so rows that any
    version of spark_nb writes are numbered, and an older journal's rows get their rowid order once.
    """
    db.execute("""CREATE TABLE IF NOT EXISTS tasks (
        attempt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,
        base_url TEXT, inputs TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, task_id TEXT, pid INTEGER,
        host TEXT, attempted_at REAL NOT NULL, updated_at REAL NOT NULL)""")
    present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
    for column in (*COLUMNS, "seq"):
        if column not in present:  # an older journal: its rows read with these empty
            kind = "REAL" if column in ("cost", "seconds", "input_seconds") else \
                "INTEGER NOT NULL DEFAULT 0" if column == "retryable" else "INTEGER" if column == "seq" else "TEXT"
            db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")
    db.execute("UPDATE tasks SET seq = rowid WHERE seq IS NULL")  # rows of an older journal, in their order
    db.execute("""CREATE TRIGGER IF NOT EXISTS number_each_attempt AFTER INSERT ON tasks WHEN NEW.seq IS NULL
        BEGIN UPDATE tasks SET seq = 1 + COALESCE((SELECT seq FROM tasks WHERE typeof(seq) = 'integer'
        ORDER BY seq DESC LIMIT 1), 0) WHERE rowid = NEW.rowid; END""")
    db.execute("DROP INDEX IF EXISTS by_fingerprint")  # ordered by attempted_at, a clock
    db.execute("CREATE INDEX IF NOT EXISTS by_fingerprint_seq ON tasks (fingerprint, seq)")
    db.execute("CREATE INDEX IF NOT EXISTS by_seq ON tasks (seq)")
    db.execute("CREATE INDEX IF NOT EXISTS by_task ON tasks (task_id)")
    db.execute("CREATE INDEX IF NOT EXISTS reserved ON tasks (pid) WHERE state = 'reserved'")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate(path: Path, connect: Callable[[], Any], *, busy_seconds: float) -> None:
    """Create the journal's table at path, or bring an older one up to date (create_schema), in WAL mode.

    Processes opening a new journal at the same moment take turns (an flock beside it, waited for at most
    busy_seconds): switching a fresh file to WAL needs it to themselves, and SQLite's busy timeout does not wait for
    that. connect() opens the journal.
    """
    import sqlite3

    with open(f"{path}.lock", "a+b") as guard:
        deadline = time.monotonic() + busy_seconds
        while True:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError("database is locked (its .lock file is held)") from None
                time.sleep(0.05)
        db = connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("BEGIN IMMEDIATE")  # a read-only or full journal is found here, before any upload
            create_schema(db)
            db.execute("COMMIT")
        finally:
            db.close()


def read_only(path: Path, *, busy_seconds: float) -> list[Entry]:
    """Every attempt recorded at path (newest first, reservations of processes that are gone left out), read
    without writing anything: no table made, nothing migrated or moved, not even a damaged file (the doctor's read).

    Raises sqlite3's errors: a damaged file (`_journal_faults.is_damage`; a failed integrity check is one too),
    a lock held past busy_seconds ("database is locked"), a table of an older version ("no such column")."""
    import sqlite3

    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_seconds)
    try:
        check = db.execute("PRAGMA quick_check(1)").fetchone()
        if not check or check[0] != "ok":
            raise sqlite3.DatabaseError(str(check[0] if check else "no answer to an integrity check"))
        rows = db.execute(f"{SELECT} {NEWEST_FIRST}").fetchall()
    finally:
        db.close()
    return [entry for entry in map(entry_of, rows) if not entry.abandoned]


def entry_of(row: Sequence[Any]) -> Entry:
    """An Entry from a row, whatever the row holds: what cannot be read is None (or UNCERTAIN) and named in damaged."""
    values = dict(zip(COLUMNS, row, strict=True))
    damaged: list[str] = []
    read = _Reader(values, damaged)
    inputs = read.inputs()
    state = read.state()
    entry = Entry(
        attempt=read.text("attempt") or "?", fingerprint=read.text("fingerprint") or "",
        model=read.text("model") or "?",
        backend=read.text("backend") or "?", inputs=inputs, state=state, pid=read.number("pid", pid=True),
        attempted_at=read.number("attempted_at", time=True), updated_at=read.number("updated_at", time=True),
        cost=usd(read.number("cost")), seconds=read.number("seconds"), input_seconds=read.number("input_seconds"),
        retryable=read.flag("retryable"), source=read.text("source") or "generate",
        **{name: read.text(name) for name in _TEXT},  # type: ignore[arg-type]
    )
    return dataclasses.replace(entry, damaged=tuple(damaged)) if damaged else entry


@dataclasses.dataclass
class _Reader:
    """Reads one row's values by column type, noting each one that is not what its column holds."""

    values: dict[str, Any]
    damaged: list[str]

    def _note(self, name: str, what: str) -> None:
        self.damaged.append(f"{name} {_shown(self.values[name])} {what}")

    def text(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or isinstance(value, str):
            return value
        self._note(name, "is not text")
        return None

    def number(self, name: str, *, pid: bool = False, time: bool = False) -> Any:
        value = self.values.get(name)
        if value is None:
            return None
        try:
            number = float(value) if not isinstance(value, (bytes, bool)) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if time and not 0 <= number <= _LATEST_TIME:  # NaN fails this too
            self._note(name, "is not a time")
            return None
        if pid and not (math.isfinite(number) and number.is_integer() and 0 < number < 2**31):
            self._note(name, "is not a process id")
            return None
        if not math.isfinite(number) or number < 0:
            self._note(name, "is not a number" if not math.isfinite(number) else "is negative")
            return None
        return int(number) if pid else number

    def flag(self, name: str) -> bool:
        value = self.values.get(name)
        if value in (0, 1, None):
            return bool(value)
        self._note(name, "is not 0 or 1")
        return False

    def state(self) -> JobState:
        try:
            return JobState(self.values.get("state"))
        except ValueError:  # a state this version does not know: the safe reading is "a task may exist"
            self._note("state", "is not a state this version knows (read as uncertain)")
            return JobState.UNCERTAIN

    def inputs(self) -> list[dict[str, Any]]:
        value = self.values.get("inputs")
        try:
            inputs = json.loads(value) if isinstance(value, (str, bytes)) else None
        except ValueError:
            inputs = None
        if isinstance(inputs, list) and all(isinstance(item, dict) for item in inputs):
            return inputs
        self._note("inputs", "is not a list of inputs")
        return []


def _shown(value: Any) -> str:
    """A damaged value as a message may quote it: short, its repr (no control characters), never the whole blob."""
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."
