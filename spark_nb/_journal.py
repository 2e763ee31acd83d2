"""The task journal: one SQLite file recording every task this machine creates, so none is lost or paid twice.

Each create attempt is a row. It is claimed before the inputs are uploaded (RESERVED: the identity and the budget
checked, nothing sent), switched to SUBMITTING durably just before the create call, given its task id the moment
the service answers (SUBMITTED), and closed as COMPLETED (cost, video) or FAILED (code, whether a new task may
succeed). A reservation whose uploads fail, or whose process is gone, is released: nothing was sent. A row still
SUBMITTING whose process is gone lost the create's answer: a task may exist, so it is UNCERTAIN and never resent
without being asked. The file never holds the key, and input content only as hashes.

Several kernels, forms and a batch write at once: WAL mode, a busy timeout, and BEGIN IMMEDIATE around every
decision about money (is there an earlier identical call; is there budget for this one), taken together with the
claim, so two calls at the same moment see each other. "Newest" is the journal's own insertion number, never a
clock. A journal that is not a database (truncated, overwritten) is moved aside and started afresh, with a
warning naming the copy; any other failure (a folder in its place, read-only, a full disk, locked too long) is a
JournalError saying what to do, and a created task's id that could not be written is kept and written later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ._deadline import within
from ._files import home_folder, private_file
from ._journal_faults import KeptWrites, is_damage, journal_error, resume_line
from ._journal_rows import COLUMNS, NEWEST_FIRST, OPEN, SCHEMA_VERSION, SELECT, Entry, JobState, entry_of, migrate
from .errors import JournalError, warn

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger("spark_nb.journal")
FILENAME = "journal.sqlite"
BUSY_TIMEOUT_S = 60.0  # how long a write waits for another process's transaction before it is an error


@dataclasses.dataclass(frozen=True)
class Claim:
    """A reservation: the attempt's id and the row it was written as (written again if the row has vanished)."""

    attempt: str
    row: Mapping[str, Any]
    model: str


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Run a Journal method: a damaged file is moved aside, a file (or home folder) deleted meanwhile is made again,
    and the method tried once more on the fresh journal; any other sqlite3 or OS error becomes a JournalError with
    its fix."""
    @functools.wraps(method)
    def run(self: Journal, *args: Any, **kwargs: Any) -> Any:
        import sqlite3

        try:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.DatabaseError, FileNotFoundError) as exc:
                if is_damage(exc):
                    self._start_afresh(exc)
                elif self._gone(exc):
                    self._start_again()
                else:
                    raise
                return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise journal_error(self.path, exc, busy_seconds=BUSY_TIMEOUT_S) from None
    return cast(F, run)  # functools.wraps keeps method's signature, which mypy cannot see


class Journal:
    """The journal file; each method is one short transaction, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._held: tuple[sqlite3.Connection, int, int] | None = None  # the write connection, its pid and inode
        self._durable = True  # the write connection's commits are fsynced (PRAGMA synchronous = FULL)
        self._busy_ms = int(BUSY_TIMEOUT_S * 1000)  # the write connection's busy timeout
        self._kept = KeptWrites(self.path, self._write_kept_at_exit)  # writes that failed, to make later
        self._open()

    @_guarded
    def _open(self) -> None:
        home_folder(self.path.parent)
        self._migrate()

    def _start_afresh(self, exc: Exception) -> None:
        """The file is not a usable database (truncated, overwritten): keep it for the curious, start again."""
        moved = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{moved}{suffix}")
        self._drop_writer()
        warn(f"the task journal {self.path} could not be read ({exc}); it was moved to {moved.name} and a new "
             "one started. Tasks recorded only there are not reused; their videos stay in their output folders")
        self._migrate()

    def _gone(self, exc: Exception) -> bool:
        """The journal was deleted while in use (the file, or its whole folder: a user clearing history, a cleaner
        of temporary files): SQLite then opens an empty file with no table, or none at all."""
        said = str(exc)
        opened_nothing = isinstance(exc, FileNotFoundError) or "unable to open" in said
        return "no such table" in said or (opened_nothing and not self.path.exists())

    def _start_again(self) -> None:
        """Make the journal again where it was deleted (its folder too), with a warning: what it recorded is gone."""
        self._drop_writer()
        warn(f"the task journal {self.path} was deleted while in use; a new one was started. Tasks recorded only "
             "in the old one are not reused; their videos stay in their output folders")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- claiming a create ----------------------------------------------------------------------------

    @_guarded
    def reserve(self, *, fingerprint: str, model: str, backend: str, base_url: str | None,
                inputs: Sequence[Mapping[str, Any]], input_seconds: float | None, source: str,
                follow: Callable[[Entry | None], bool],
                admit: Callable[[list[Entry]], None] | None = None) -> tuple[Claim | None, Entry | None]:
        """Claim a create for fingerprint before anything is uploaded, in one write transaction.

        (None, entry) when follow(the newest attempt) says an earlier attempt answers the call; else admit(every
        attempt), when given, may refuse (the budget: it raises, nothing is written); else a RESERVED row is
        written and (its Claim, None) returned. Reservations of processes that are gone are released first.
        """
        now = time.time()
        # lost with the machine's power, a claim had sent nothing; its waits end by the call's deadline
        with self._write(durable=False, bounded=True) as db:
            self._release_abandoned(db)
            latest = self._latest(db, fingerprint)
            if follow(latest):
                return None, latest
            if admit is not None:  # every attempt but reservations nobody holds (another host's: unknowable)
                admit([e for e in map(entry_of, db.execute(f"{SELECT} {NEWEST_FIRST}")) if not e.abandoned])
            attempt = os.urandom(12).hex()
            row = dict(zip(COLUMNS, (
                attempt, fingerprint, model, backend, base_url, json.dumps(list(inputs)),
                JobState.RESERVED.value, None, os.getpid(), socket.gethostname(), now, now, None, None,
                input_seconds, None, None, None, None, 0, source), strict=True))
            db.execute(f"INSERT INTO tasks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
        return Claim(attempt, row, model), None

    @_guarded
    def sending(self, claim: Claim) -> None:
        """The create call is about to be sent: from now on a task may exist (on disk before the call)."""
        self._upsert(claim, bounded=True, state=JobState.SUBMITTING.value)

    def created(self, claim: Claim, task_id: str) -> None:
        """The service answered: the attempt has its task id (written before anything waits).

        If it cannot be written, the id is kept (written at the next journal write, or at exit), printed on
        stderr, and raised in a JournalError with the line that resumes the task.
        """
        try:
            self._created(claim, task_id)
        except JournalError as exc:
            self._kept.keep(claim.attempt, lambda db: self._upsert_in(db, claim, state=JobState.SUBMITTED.value,
                                                                      task_id=task_id),
                            f"task {task_id} ({claim.model}): resume it with {resume_line(task_id, claim.model)}",
                            task_id=task_id)
            error = journal_error(self.path, exc.__context__ or exc, busy_seconds=BUSY_TIMEOUT_S, task_id=task_id,
                                  model=claim.model)
            print(f"spark_nb: {error}", file=sys.stderr, flush=True)
            raise error from None

    @_guarded
    def _created(self, claim: Claim, task_id: str) -> None:
        self._upsert(claim, state=JobState.SUBMITTED.value, task_id=task_id)

    def uncertain(self, claim: Claim, error: str) -> None:
        """The create's answer was lost: a task may exist (never raises: see _record)."""
        self._record(claim.attempt, "uncertain", lambda db: self._upsert_in(
            db, claim, state=JobState.UNCERTAIN.value, error=error[:2000]))

    def refused(self, claim: Claim, *, error: str, code: str | None, retryable: bool) -> None:
        """The service refused the create (no task exists): recorded so input errors are not resent."""
        if code is None and not retryable:  # 401, 403, 429…: nothing about these inputs; forget the attempt
            self._record(claim.attempt, "forget", lambda db: db.execute(
                "DELETE FROM tasks WHERE attempt = ?", (claim.attempt,)))
            return
        self._record(claim.attempt, "refused", lambda db: self._upsert_in(
            db, claim, state=JobState.FAILED.value, error=error[:2000], code=code, retryable=int(retryable)))

    def release(self, claim: Claim) -> None:
        """Nothing was sent (the uploads failed, or the call was stopped before its create): forget the claim."""
        self._record(claim.attempt, "release", lambda db: db.execute(
            "DELETE FROM tasks WHERE attempt = ? AND state = ?", (claim.attempt, JobState.RESERVED.value)))

    @_guarded
    def finished(self, task_id: str, *, completed: bool, cost: Decimal | None = None, seconds: float | None = None,
                 result_url: str | None = None, path: str | None = None, error: str | None = None,
                 code: str | None = None, retryable: bool = False) -> None:
        """A task ended: every attempt that knows this task id records how (kept to write later if it fails)."""
        fields: dict[str, Any] = {"state": (JobState.COMPLETED if completed else JobState.FAILED).value}
        if completed:
            # a REAL column: a cost of at most 15 significant digits reads back as the same Decimal (_journal_rows)
            fields.update(cost=None if cost is None else float(cost), seconds=seconds, result_url=result_url,
                          path=path, error=None)
        else:
            fields.update(error=(error or "")[:2000], code=code, retryable=int(retryable))
        sets = ", ".join(f"{name} = ?" for name in fields)
        sql = f"UPDATE tasks SET {sets}, updated_at = ? WHERE task_id = ?"
        args = (*fields.values(), time.time(), task_id)
        try:
            self._write_one(sql, args, durable=False)
        except Exception:
            self._kept.keep(f"task:{task_id}", lambda db: db.execute(sql, args), f"how task {task_id} ended")
            raise

    # -- reading --------------------------------------------------------------------------------------

    @_guarded
    def latest(self, fingerprint: str) -> Entry | None:
        """The newest attempt for this fingerprint (by insertion, never by clock), or None."""
        with self._read() as db:
            return self._latest(db, fingerprint)

    @_guarded
    def by_task(self, task_id: str) -> Entry | None:
        """The newest attempt that made task_id, or None."""
        with self._read() as db:
            row = db.execute(f"{SELECT} WHERE task_id = ? {NEWEST_FIRST} LIMIT 1", (task_id,)).fetchone()
        return None if row is None else entry_of(row)

    @_guarded
    def attempt(self, attempt: str) -> Entry | None:
        """The attempt with this id, or None once it is gone (released, or an abandoned reservation)."""
        with self._read() as db:
            row = db.execute(f"{SELECT} WHERE attempt = ?", (attempt,)).fetchone()
        entry = None if row is None else self._with_known_id(entry_of(row))
        return None if entry is None or entry.abandoned else entry

    @_guarded
    def entries(self, *, model: str | None = None, since: float | None = None,
                states: Sequence[str] | None = None) -> list[Entry]:
        """Attempts, newest first, filtered by model id, attempt time (a damaged time passes) and state."""
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            rows = db.execute(f"{SELECT} {clause} {NEWEST_FIRST}", args).fetchall()
        found = (self._with_known_id(entry_of(row)) for row in rows)
        return [e for e in found if not e.abandoned
                and (since is None or e.attempted_at is None or e.attempted_at >= since)]

    # -- plumbing -------------------------------------------------------------------------------------

    def _latest(self, db: sqlite3.Connection, fingerprint: str) -> Entry | None:
        for row in db.execute(f"{SELECT} WHERE fingerprint = ? {NEWEST_FIRST}", (fingerprint,)):
            entry = self._with_known_id(entry_of(row))
            if not entry.abandoned:
                return entry
        return None

    def _with_known_id(self, entry: Entry) -> Entry:
        """entry, with the task id this process created for it but could not write yet."""
        task_id = self._kept.ids.get(entry.attempt)
        if task_id is None or entry.task_id is not None:
            return entry
        return dataclasses.replace(entry, state=JobState.SUBMITTED, task_id=task_id)

    @staticmethod
    def _release_abandoned(db: sqlite3.Connection) -> None:
        rows = db.execute(f"{SELECT} WHERE state = 'reserved'").fetchall()  # the partial index `reserved`
        here = socket.gethostname()
        gone = [entry.attempt for entry in map(entry_of, rows) if entry.abandoned and entry.host == here]
        db.executemany("DELETE FROM tasks WHERE attempt = ? AND state = 'reserved'", [(a,) for a in gone])

    def _upsert(self, claim: Claim, *, bounded: bool = False, **fields: Any) -> None:
        self._write_one(*_upsert_sql(claim, fields), bounded=bounded)

    @staticmethod
    def _upsert_in(db: sqlite3.Connection, claim: Claim, **fields: Any) -> None:
        db.execute(*_upsert_sql(claim, fields))

    def _record(self, key: str, what: str, write: Callable[[sqlite3.Connection], Any]) -> None:
        """Write an outcome of a create; if the journal fails, keep it to write later and warn (never raises: the
        caller is raising the outcome itself, which matters more)."""
        try:
            self._guarded_write(write)
        except JournalError as exc:
            self._kept.keep(key, write, f"{what} of attempt {key}")
            logger.warning("could not record %s of attempt %s in the journal: %s", what, key, exc)

    @_guarded
    def _guarded_write(self, write: Callable[[sqlite3.Connection], Any]) -> None:
        with self._write() as db:
            write(db)

    def _write_kept_at_exit(self) -> None:
        """At exit: a last try at the kept writes; what still fails is said on stderr (a task id above all)."""
        if not self._kept or not self._lock.acquire(timeout=5):
            return
        try:
            if not self.path.is_file():  # moved or removed meanwhile: never write into a new, empty journal
                raise FileNotFoundError(f"{self.path} is gone")
            db = self._writer()
            db.execute("BEGIN IMMEDIATE")
            self._kept.apply(db)
            db.execute("COMMIT")
        except Exception as exc:  # at exit: say it, never raise
            self._kept.say_unwritten(exc)
        finally:
            self._lock.release()

    def _connect(self, threads: bool = False) -> sqlite3.Connection:
        import sqlite3

        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=not threads)
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        db.execute("PRAGMA synchronous = FULL")  # a claim and a created task's id are on disk before anything waits
        return db

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True, bounded: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction, the kept writes first. durable: its commit is on the disk before this returns
        (fsync), as a claim and a task id must be; a task's end need not be (lost with the machine's power, the
        task is resumed by its id). bounded: waits for other writers end by the call's deadline (see
        _deadline), as a claim's do; a task id's record waits the whole busy timeout, whatever is left."""
        import sqlite3

        with self._locked(bounded):
            db = self._writer()
            try:
                self._set_durable(db, durable)
                self._set_busy(db, bounded)
                db.execute("BEGIN IMMEDIATE")
                self._kept.apply(db)
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                try:
                    db.execute("ROLLBACK")
                except Exception:  # (the transaction went with the error): start on a fresh connection
                    self._drop_writer()
                if isinstance(exc, (sqlite3.Error, OSError)):
                    self._drop_writer()  # the file may have been replaced
                raise

    def _write_one(self, sql: str, args: Sequence[Any], *, durable: bool = True, bounded: bool = False) -> None:
        """One statement as its own transaction (autocommit): no BEGIN and COMMIT around it, each of which is one
        more wait for the GIL while this process's journal lock is held and a batch's threads queue behind it."""
        if self._kept:
            with self._write(durable=durable, bounded=bounded) as db:
                db.execute(sql, args)
            return
        with self._locked(bounded):
            db = self._writer()
            try:
                self._set_durable(db, durable)
                self._set_busy(db, bounded)
                db.execute(sql, args)
            except BaseException:
                self._drop_writer()
                raise

    def _set_durable(self, db: sqlite3.Connection, durable: bool) -> None:
        if durable != self._durable:
            db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._durable = durable

    def _set_busy(self, db: sqlite3.Connection, bounded: bool) -> None:
        """How long the write waits for another process's transaction: the busy timeout, or (bounded) no longer
        than the call's deadline."""
        milliseconds = int(1000 * (within(BUSY_TIMEOUT_S) if bounded else BUSY_TIMEOUT_S))
        if milliseconds != self._busy_ms:
            db.execute(f"PRAGMA busy_timeout = {milliseconds}")
            self._busy_ms = milliseconds

    @contextlib.contextmanager
    def _locked(self, bounded: bool) -> Iterator[None]:
        """This process's journal lock (its threads write one at a time), waited for as long as a write may wait."""
        import sqlite3

        if not self._lock.acquire(timeout=within(BUSY_TIMEOUT_S) if bounded else BUSY_TIMEOUT_S):
            raise sqlite3.OperationalError("database is locked (by another thread of this process)")
        try:
            yield
        finally:
            self._lock.release()

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
        self._busy_ms = int(BUSY_TIMEOUT_S * 1000)
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
        """Create the table, or bring an older one up to date (see _journal_rows.migrate)."""
        # the journal is its owner's alone (it names inputs, outputs and, for the local backend, the embedded
        # server's unguessable result URLs): 0600 before SQLite opens it, whose -wal and -shm take its mode
        for suffix, create in (("", True), (".lock", True), ("-wal", False), ("-shm", False)):
            private_file(Path(f"{self.path}{suffix}"), create=create)
        migrate(self.path, self._connect, busy_seconds=BUSY_TIMEOUT_S)


def _upsert_sql(claim: Claim, fields: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """Set fields on the claim's row, writing the whole row again if it has vanished (a journal started afresh)."""
    row = {**claim.row, **fields, "updated_at": time.time()}
    sets = ", ".join(f"{name} = excluded.{name}" for name in (*fields, "updated_at"))
    return (f"INSERT INTO tasks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
            f"ON CONFLICT(attempt) DO UPDATE SET {sets}", tuple(row.values()))


_journals: dict[Path, Journal] = {}
_journals_lock = threading.Lock()


def journal_at(home: Path) -> Journal:
    """The journal of this home folder (opened once per process); JournalError when it cannot be used."""
    path = Path(home).expanduser().resolve() / FILENAME
    with _journals_lock:
        if path not in _journals:
            _journals[path] = Journal(path)
        return _journals[path]


__all__ = ["BUSY_TIMEOUT_S", "FILENAME", "OPEN", "SCHEMA_VERSION", "Claim", "Entry", "JobState", "Journal",
           "journal_at"]
