"""The journal's rows: the states of a create attempt, an Entry, the table's schema, and reading a row that may be
damaged (an older version's, or one edited by hand) without ever raising.

The schema is declared once, by Entry's fields (their `column` metadata: SQL type, default, how a value reads):
Schema derives the CREATE TABLE, the ALTERs of an older journal, the SELECT, the SQL values a row is written with
(always by name, as :named parameters) and the Entry a row reads as, so no value can land in another's column.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from ._enums import Word
from ._money import usd
from ._procs import pid_alive

SCHEMA_VERSION = 2
# Newest first by the journal's own insertion number, never by a clock (one that was ahead would make an old row
# the newest for ever). A row whose number is damaged sorts as the oldest.
NEWEST_FIRST = "ORDER BY CASE typeof(seq) WHEN 'integer' THEN seq ELSE -1 END DESC"
SEQ = "seq INTEGER"  # the insertion number: a column of the table, never of an Entry (see create_schema)
_LATEST_TIME = 253402128000.0  # 9999-12-30: past it, a date cannot be shown (in every time zone)


class JobState(Word):
    """A create attempt's state, in order of life (see _journal's docstring)."""

    RESERVED = "reserved"  # claimed (budget and identity checked), inputs uploading: nothing sent yet
    SUBMITTING = "submitting"  # the create call is being sent: from here a task may exist
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


OPEN = (JobState.RESERVED, JobState.SUBMITTING, JobState.SUBMITTED, JobState.UNCERTAIN)

Kind = Literal["text", "number", "time", "pid", "usd", "flag", "state", "inputs"]


def column(sql: str, kind: Kind, *, fallback: Any = None) -> dict[str, Any]:
    """An Entry field's metadata declaring it a column of the journal: its SQL type, constraints and default (a
    column an older journal lacks is added with its type, and its default when it has one), how its value is read
    (kind) and what an Entry holds when the row's value is NULL or unreadable (fallback)."""
    return {"sql": sql, "kind": kind, "fallback": fallback}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One create attempt as the journal knows it; each field with column metadata is a column of the table, in
    this order (Schema derives the table, its migration, the rows written and read from these declarations)."""

    attempt: str = field(metadata=column("TEXT PRIMARY KEY", "text", fallback="?"))
    fingerprint: str = field(metadata=column("TEXT NOT NULL", "text", fallback=""))
    model: str = field(metadata=column("TEXT NOT NULL", "text", fallback="?"))
    backend: str = field(metadata=column("TEXT NOT NULL", "text", fallback="?"))
    base_url: str | None = field(metadata=column("TEXT", "text"))
    # per input: field, name, and sha256 (a local file) or url
    inputs: list[dict[str, Any]] = field(metadata=column("TEXT NOT NULL DEFAULT '[]'", "inputs"))
    state: JobState = field(metadata=column("TEXT NOT NULL", "state"))
    task_id: str | None = field(metadata=column("TEXT", "text"))
    pid: int | None = field(metadata=column("INTEGER", "pid"))
    host: str | None = field(metadata=column("TEXT", "text"))
    attempted_at: float | None = field(metadata=column("REAL NOT NULL", "time"))  # None: the timestamp is damaged
    updated_at: float | None = field(metadata=column("REAL NOT NULL", "time"))
    # US dollars; stored as REAL, read back by its shortest spelling (exact to 15 digits)
    cost: Decimal | None = field(default=None, metadata=column("REAL", "usd"))
    seconds: float | None = field(default=None, metadata=column("REAL", "number"))  # of the result video
    # of the audio or video that drove it
    input_seconds: float | None = field(default=None, metadata=column("REAL", "number"))
    result_url: str | None = field(default=None, metadata=column("TEXT", "text"))
    path: str | None = field(default=None, metadata=column("TEXT", "text"))
    error: str | None = field(default=None, metadata=column("TEXT", "text"))
    code: str | None = field(default=None, metadata=column("TEXT", "text"))
    retryable: bool = field(default=False, metadata=column("INTEGER NOT NULL DEFAULT 0", "flag"))
    source: str = field(default="generate", metadata=column("TEXT", "text", fallback="generate"))
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


# how a value of each kind is written (what is not listed is written as it is)
_WRITE: dict[str, Callable[[Any], Any]] = {
    "inputs": lambda value: json.dumps(list(value)),
    "state": lambda value: JobState(value).value,
    "usd": lambda value: None if value is None else float(value),  # REAL: see the cost field
    "flag": int,
}


class Schema:
    """The journal's table as its entry class declares it (the fields with column metadata, in order): the CREATE
    TABLE, the ALTERs that bring an older journal up to date, the SELECT, the SQL values of a row to write (always
    by column name, as named parameters) and the Entry a row reads as."""

    def __init__(self, entry: type[Entry]) -> None:
        self.entry = entry
        self.fields = tuple(f for f in dataclasses.fields(entry) if "sql" in f.metadata)
        self.columns = tuple(f.name for f in self.fields)
        self.select = f"SELECT {', '.join(self.columns)} FROM tasks"

    def create(self, db: Any) -> None:
        """Create the table with every column, or add the columns an older one lacks (its rows read with these
        empty, or their default)."""
        declared = [f"{f.name} {f.metadata['sql']}" for f in self.fields]
        db.execute(f"CREATE TABLE IF NOT EXISTS tasks ({', '.join([*declared, SEQ])})")
        present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        for name, sql in (*((f.name, f.metadata["sql"]) for f in self.fields), SEQ.split(" ", 1)):
            if name not in present:  # NOT NULL (and PRIMARY KEY) cannot be added without its default
                db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {sql if 'DEFAULT' in sql else sql.split()[0]}")

    def values(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """row's values (Python's: a JobState, a Decimal, a bool, a list of inputs) as the SQL values of their
        columns, by name; a name that is no column is a bug (KeyError)."""
        kinds = {f.name: f.metadata["kind"] for f in self.fields}
        return {name: _WRITE.get(kinds[name], _same)(value) for name, value in row.items()}

    def entry_of(self, row: Sequence[Any]) -> Entry:
        """An Entry from a row of self.select, whatever it holds: what cannot be read is its field's fallback (a
        state: UNCERTAIN) and named in damaged."""
        damaged: list[str] = []
        read = _Reader(dict(zip(self.columns, row, strict=True)), damaged)
        values = {f.name: read.kind(f.name, f.metadata["kind"], f.metadata["fallback"]) for f in self.fields}
        return self.entry(**values, damaged=tuple(damaged))


def _same(value: Any) -> Any:
    return value


def upsert_sql(columns: Sequence[str], updated: Sequence[str]) -> str:
    """INSERT of a row by its columns' names (named parameters, :name) that, when its attempt is already there,
    sets only the updated columns."""
    sets = ", ".join(f"{name} = excluded.{name}" for name in updated)
    return f"{insert_sql(columns)} ON CONFLICT(attempt) DO UPDATE SET {sets}"


def insert_sql(columns: Sequence[str]) -> str:
    """INSERT of a row by its columns' names, as named parameters (:name): no value can land in another column."""
    return f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join(f':{name}' for name in columns)})"


SCHEMA = Schema(Entry)
COLUMNS = SCHEMA.columns
SELECT = SCHEMA.select
entry_of = SCHEMA.entry_of


def create_schema(db: Any, schema: Schema = SCHEMA) -> None:
    """Create the table, or bring an older one up to date: columns it lacks are added, and every row is numbered.

    seq numbers rows in insertion order. It is an ordinary column (SQLite's implicit rowid of a table without an
    INTEGER PRIMARY KEY may be renumbered by VACUUM), filled by a trigger on every insert, so rows that any
    version of spark_nb writes are numbered, and an older journal's rows get their rowid order once.
    """
    schema.create(db)
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


def migrate(path: Path, connect: Callable[[], Any], *, busy_seconds: float, schema: Schema = SCHEMA) -> None:
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
            create_schema(db, schema)
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


@dataclasses.dataclass
class _Reader:
    """Reads one row's values by column type, noting each one that is not what its column holds."""

    values: dict[str, Any]
    damaged: list[str]

    def kind(self, name: str, kind: Kind, fallback: Any) -> Any:
        """The value of column name as an Entry holds a value of its kind; fallback when it is NULL or unreadable
        (or empty text)."""
        if kind == "text":
            return self.text(name) or fallback
        if kind in ("number", "time", "pid"):
            return self.number(name, pid=kind == "pid", time=kind == "time")
        if kind == "usd":
            return usd(self.number(name))
        return {"flag": self.flag, "state": self.state, "inputs": self.inputs}[kind](name)

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

    def state(self, name: str) -> JobState:
        try:
            return JobState(self.values.get(name))
        except ValueError:  # a state this version does not know: the safe reading is "a task may exist"
            self._note(name, "is not a state this version knows (read as uncertain)")
            return JobState.UNCERTAIN

    def inputs(self, name: str) -> list[dict[str, Any]]:
        value = self.values.get(name)
        try:
            inputs = json.loads(value) if isinstance(value, (str, bytes)) else None
        except ValueError:
            inputs = None
        if isinstance(inputs, list) and all(isinstance(item, dict) for item in inputs):
            return inputs
        self._note(name, "is not a list of inputs")
        return []


def _shown(value: Any) -> str:
    """A damaged value as a message may quote it: short, its repr (no control characters), never the whole blob."""
    shown = repr(value)
    return shown if len(shown) <= 40 else f"{shown[:37]}..."
