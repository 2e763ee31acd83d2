"""The task journal: one SQLite file recording every task this machine creates, so none is lost or paid twice.

Each create attempt is a row, written before the create call (SUBMITTING), given its task id the moment the
service answers (SUBMITTED), and closed as COMPLETED (cost, video) or FAILED (code, whether a new task may
succeed). A row still SUBMITTING whose process is gone lost the create's answer: a task may exist, so it is
UNCERTAIN and never resent without being asked. The file never holds the key, and input content only as hashes.

Several kernels, forms and a batch write at once: WAL mode, a busy timeout, and BEGIN IMMEDIATE around the
check-then-claim of a fingerprint, so two identical calls at the same moment make one task. A journal that is
not a database (truncated, overwritten) is moved aside and started afresh, with a warning naming the copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._enums import Word
from ._procs import pid_alive
from .errors import warn

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger("spark_nb.journal")
FILENAME = "journal.sqlite"
SCHEMA_VERSION = 1
_COLUMNS = ("attempt", "fingerprint", "model", "backend", "base_url", "inputs", "state", "task_id", "pid", "host",
            "attempted_at", "updated_at", "cost", "seconds", "input_seconds", "result_url", "path", "error", "code",
            "retryable", "source")


class JobState(Word):
    """A create attempt's state, in order of life (see the module docstring)."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    FAILED = "failed"
    UNCERTAIN = "uncertain"


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
    attempted_at: float
    updated_at: float
    cost: float | None = None
    seconds: float | None = None  # of the result video
    input_seconds: float | None = None  # of the audio or video that drove it
    result_url: str | None = None
    path: str | None = None
    error: str | None = None
    code: str | None = None
    retryable: bool = False
    source: str = "generate"

    @property
    def creator_alive(self) -> bool:
        """True while the process that made this attempt runs (on this machine)."""
        return self.host == socket.gethostname() and self.pid is not None and pid_alive(self.pid)


def _recovering(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a Journal method; if the file turns out damaged (not merely busy), start a fresh journal and retry once."""
    @functools.wraps(method)
    def run(self: "Journal", *args: Any, **kwargs: Any) -> Any:
        import sqlite3

        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):
                raise
            self._start_afresh(exc)
            return method(self, *args, **kwargs)
    return run


class Journal:
    """The journal file; each method is one short transaction, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._held: tuple[sqlite3.Connection, int, int] | None = None  # the write connection, its pid and inode
        self._durable = True  # the write connection's commits are fsynced (PRAGMA synchronous = FULL)
        import sqlite3  # here, not at the top: `import spark_nb` stays light

        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError):  # locked, disk full, read-only: not damage
                raise
            self._start_afresh(exc)

    def _start_afresh(self, exc: Exception) -> None:
        """The file is not a usable database (truncated, overwritten): keep it for the curious, start again."""
        moved = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{moved}{suffix}")
        warn(f"the task journal {self.path} could not be read ({exc}); it was moved to {moved.name} and a new "
             "one started. Tasks recorded only there are not reused; their videos stay in their output folders")
        self._migrate()

    # -- writing --------------------------------------------------------------------------------------

    @_recovering
    def begin(self, *, fingerprint: str, model: str, backend: str, base_url: str | None,
              inputs: Sequence[Mapping[str, Any]], input_seconds: float | None, source: str,
              follow: Callable[[Entry | None], bool]) -> tuple[str | None, Entry | None]:
        """Claim a create for fingerprint, unless follow(latest entry) says to follow an existing attempt instead.

        In one write transaction: (attempt id, None) when this caller should create the task (a SUBMITTING row
        is written first), or (None, the entry to follow) when another attempt already answers the call.
        """
        now = time.time()
        with self._write() as db:
            latest = self._latest(db, fingerprint)
            if follow(latest):
                return None, latest
            attempt = os.urandom(12).hex()
            db.execute(f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                       (attempt, fingerprint, model, backend, base_url, json.dumps(list(inputs)),
                        JobState.SUBMITTING.value, None, os.getpid(), socket.gethostname(), now, now, None, None,
                        input_seconds, None, None, None, None, 0, source))
        return attempt, None

    @_recovering
    def created(self, attempt: str, task_id: str) -> None:
        """The service answered: the attempt has its task id (written before anything waits)."""
        self._update(attempt, state=JobState.SUBMITTED.value, task_id=task_id)

    @_recovering
    def uncertain(self, attempt: str, error: str) -> None:
        """The create's answer was lost: a task may exist."""
        self._update(attempt, state=JobState.UNCERTAIN.value, error=error[:2000])

    @_recovering
    def refused(self, attempt: str, *, error: str, code: str | None, retryable: bool) -> None:
        """The service refused the create (no task exists): recorded so input errors are not resent."""
        if code is None and not retryable:  # 401, 403, 429…: nothing about these inputs; forget the attempt
            self._write_one("DELETE FROM tasks WHERE attempt = ?", (attempt,))
            return
        self._update(attempt, state=JobState.FAILED.value, error=error[:2000], code=code, retryable=int(retryable))

    @_recovering
    def finished(self, task_id: str, *, completed: bool, cost: float | None = None, seconds: float | None = None,
                 result_url: str | None = None, path: str | None = None, error: str | None = None,
                 code: str | None = None, retryable: bool = False) -> None:
        """A task ended: every attempt that knows this task id records how."""
        fields: dict[str, Any] = {"state": (JobState.COMPLETED if completed else JobState.FAILED).value}
        if completed:
            fields.update(cost=cost, seconds=seconds, result_url=result_url, path=path, error=None)
        else:
            fields.update(error=(error or "")[:2000], code=code, retryable=int(retryable))
        sets = ", ".join(f"{name} = ?" for name in fields)
        self._write_one(f"UPDATE tasks SET {sets}, updated_at = ? WHERE task_id = ?",
                        (*fields.values(), time.time(), task_id), durable=False)

    # -- reading --------------------------------------------------------------------------------------

    @_recovering
    def latest(self, fingerprint: str) -> Entry | None:
        """The newest attempt for this fingerprint, or None."""
        with self._read() as db:
            return self._latest(db, fingerprint)

    @_recovering
    def by_task(self, task_id: str) -> Entry | None:
        """The newest attempt that made task_id, or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE task_id = ? "
                             "ORDER BY attempted_at DESC LIMIT 1", (task_id,)).fetchone()
        return None if row is None else _entry(row)

    @_recovering
    def entries(self, *, model: str | None = None, since: float | None = None,
                states: Sequence[str] | None = None) -> list[Entry]:
        """Attempts, newest first, filtered by model id, attempt time and state."""
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if since is not None:
            where.append("attempted_at >= ?")
            args.append(since)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks {clause} ORDER BY attempted_at DESC",
                              args).fetchall()
        return [_entry(row) for row in rows]

    # -- plumbing -------------------------------------------------------------------------------------

    @staticmethod
    def _latest(db: sqlite3.Connection, fingerprint: str) -> Entry | None:
        row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE fingerprint = ? "
                         "ORDER BY attempted_at DESC LIMIT 1", (fingerprint,)).fetchone()
        return None if row is None else _entry(row)

    def _update(self, attempt: str, **fields: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in fields)
        self._write_one(f"UPDATE tasks SET {sets}, updated_at = ? WHERE attempt = ?",
                        (*fields.values(), time.time(), attempt))

    def _connect(self, threads: bool = False) -> sqlite3.Connection:
        import sqlite3

        db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=not threads)
        db.execute("PRAGMA busy_timeout = 60000")
        db.execute("PRAGMA synchronous = FULL")  # a claim and a created task's id are on disk before anything waits
        return db

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. durable: its commit is on the disk before this returns (fsync), as a claim and a
        task id must be; a task's end need not be (lost with the machine's power, the task is resumed by its id)."""
        with self._lock:
            db = self._writer()
            try:
                self._set_durable(db, durable)
                db.execute("BEGIN IMMEDIATE")
                yield db
                db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):  # the transaction may already be gone with the error
                    db.execute("ROLLBACK")
                self._drop_writer()  # the next write starts on a fresh connection (the file may have been replaced)
                raise

    def _write_one(self, sql: str, args: Sequence[Any], *, durable: bool = True) -> None:
        """One statement as its own transaction (autocommit): no BEGIN and COMMIT around it, each of which is one
        more wait for the GIL while this process's journal lock is held and a batch's threads queue behind it."""
        with self._lock:
            db = self._writer()
            try:
                self._set_durable(db, durable)
                db.execute(sql, args)
            except BaseException:
                self._drop_writer()
                raise

    def _set_durable(self, db: sqlite3.Connection, durable: bool) -> None:
        if durable != self._durable:
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def _writer(self) -> sqlite3.Connection:
        """This process's write connection, kept between writes: opening one per write (and its pragmas) made every
        write several GIL hand-offs longer, and a batch's threads queue behind the journal's lock. Opened again
        in a forked child, or once the file on disk is another (moved aside, replaced)."""
        with contextlib.suppress(OSError):
            if self._held is not None and self._held[1] == os.getpid() and self._held[2] == os.stat(self.path).st_ino:
                return self._held[0]
        self._drop_writer()
        db = self._connect(threads=True)
        self._held, self._durable = (db, os.getpid(), os.stat(self.path).st_ino), True
        return db

    def _drop_writer(self) -> None:
        held, self._held = self._held, None
        if held is not None and held[1] == os.getpid():  # a parent's connection is not closed in its child
            with contextlib.suppress(Exception):
                held[0].close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            yield db
        finally:
            db.close()

    def _migrate(self) -> None:
        """Create the table, or bring an older one up to date (columns it lacks are added).

        Processes opening a new journal at the same moment take turns (an flock beside it): switching a fresh
        file to WAL needs it to themselves, and SQLite's busy timeout does not wait for that.
        """
        with open(f"{self.path}.lock", "a+b") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            self._create_or_update()

    def _create_or_update(self) -> None:
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("""CREATE TABLE IF NOT EXISTS tasks (
                attempt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, model TEXT NOT NULL, backend TEXT NOT NULL,
                base_url TEXT, inputs TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, task_id TEXT, pid INTEGER,
                host TEXT, attempted_at REAL NOT NULL, updated_at REAL NOT NULL)""")
            present = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
            for column in _COLUMNS:
                if column not in present:  # an older journal: its rows read with these empty
                    kind = "REAL" if column in ("cost", "seconds", "input_seconds") else \
                        "INTEGER NOT NULL DEFAULT 0" if column == "retryable" else "TEXT"
                    db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")
            db.execute("CREATE INDEX IF NOT EXISTS by_fingerprint ON tasks (fingerprint, attempted_at)")
            db.execute("CREATE INDEX IF NOT EXISTS by_task ON tasks (task_id)")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            db.close()


def _entry(row: Sequence[Any]) -> Entry:
    """An Entry from a row, forgiving what an older or damaged row may hold."""
    values = dict(zip(_COLUMNS, row))
    try:
        inputs = json.loads(values["inputs"] or "[]")
    except (TypeError, ValueError):
        inputs = []
    try:
        state = JobState(values["state"])
    except ValueError:  # a state this version does not know: the safe reading is "a task may exist"
        state = JobState.UNCERTAIN
    return Entry(
        attempt=str(values["attempt"]), fingerprint=str(values["fingerprint"]), model=str(values["model"]),
        backend=str(values["backend"]), base_url=values["base_url"], inputs=inputs if isinstance(inputs, list) else [],
        state=state, task_id=values["task_id"], pid=_number(values["pid"], int), host=values["host"],
        attempted_at=_number(values["attempted_at"], float) or 0.0,
        updated_at=_number(values["updated_at"], float) or 0.0, cost=_number(values["cost"], float),
        seconds=_number(values["seconds"], float), input_seconds=_number(values["input_seconds"], float),
        result_url=values["result_url"], path=values["path"], error=values["error"], code=values["code"],
        retryable=bool(values["retryable"]), source=values["source"] or "generate",
    )


def _number(value: Any, kind: type) -> Any:
    try:
        return None if value is None else kind(value)
    except (TypeError, ValueError):
        return None


_journals: dict[Path, Journal] = {}
_journals_lock = threading.Lock()


def journal_at(home: Path) -> Journal:
    """The journal of this home folder (opened once per process)."""
    path = Path(home).expanduser().resolve() / FILENAME
    with _journals_lock:
        if path not in _journals:
            _journals[path] = Journal(path)
        return _journals[path]


def file_digest(path: Path) -> str:
    """sha256 of a file's content (remembered per file version: inputs are hashed again when a call repeats)."""
    stat = os.stat(path)
    return _digest(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
