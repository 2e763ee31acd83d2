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
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import _journal_db
from ._files import home_folder
from ._journal_db import JournalFile
from ._journal_faults import is_damage, journal_error, resume_line
from ._journal_rows import NEWEST_FIRST, OPEN, SCHEMA_VERSION, Entry, JobState, insert_sql, upsert_sql
from .errors import JournalError, warn

if TYPE_CHECKING:
    import sqlite3

logger = logging.getLogger("spark_nb.journal")
FILENAME = "journal.sqlite"


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
            raise journal_error(self.path, exc, busy_seconds=_journal_db.BUSY_TIMEOUT_S) from None
    return cast(F, run)  # functools.wraps keeps method's signature, which mypy cannot see


class Journal(JournalFile):
    """The journal file; each method is one short transaction, safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
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
                every = map(self.schema.entry_of, db.execute(f"{self.schema.select} {NEWEST_FIRST}"))
                admit([e for e in every if not e.abandoned])
            row = self.schema.values({
                "attempt": os.urandom(12).hex(), "fingerprint": fingerprint, "model": model, "backend": backend,
                "base_url": base_url, "inputs": inputs, "state": JobState.RESERVED, "pid": os.getpid(),
                "host": socket.gethostname(), "attempted_at": now, "updated_at": now, "input_seconds": input_seconds,
                "retryable": False, "source": source})
            db.execute(insert_sql(list(row)), row)
        return Claim(row["attempt"], row, model), None

    @_guarded
    def sending(self, claim: Claim) -> None:
        """The create call is about to be sent: from now on a task may exist (on disk before the call)."""
        self._upsert(claim, bounded=True, state=JobState.SUBMITTING)

    def created(self, claim: Claim, task_id: str) -> None:
        """The service answered: the attempt has its task id (written before anything waits).

        If it cannot be written, the id is kept (written at the next journal write, or at exit), printed on
        stderr, and raised in a JournalError with the line that resumes the task.
        """
        try:
            self._created(claim, task_id)
        except JournalError as exc:
            self._kept.keep(claim.attempt, lambda db: self._upsert_in(db, claim, state=JobState.SUBMITTED,
                                                                      task_id=task_id),
                            f"task {task_id} ({claim.model}): resume it with {resume_line(task_id, claim.model)}",
                            task_id=task_id)
            error = journal_error(self.path, exc.__context__ or exc, busy_seconds=_journal_db.BUSY_TIMEOUT_S,
                                  task_id=task_id, model=claim.model)
            print(f"spark_nb: {error}", file=sys.stderr, flush=True)
            raise error from None

    @_guarded
    def _created(self, claim: Claim, task_id: str) -> None:
        self._upsert(claim, state=JobState.SUBMITTED, task_id=task_id)

    def uncertain(self, claim: Claim, error: str) -> None:
        """The create's answer was lost: a task may exist (never raises: see _record)."""
        self._record(claim.attempt, "uncertain", lambda db: self._upsert_in(
            db, claim, state=JobState.UNCERTAIN, error=error[:2000]))

    def refused(self, claim: Claim, *, error: str, code: str | None, retryable: bool) -> None:
        """The service refused the create (no task exists): recorded so input errors are not resent."""
        if code is None and not retryable:  # 401, 403, 429…: nothing about these inputs; forget the attempt
            self._record(claim.attempt, "forget", lambda db: db.execute(
                "DELETE FROM tasks WHERE attempt = :attempt", {"attempt": claim.attempt}))
            return
        self._record(claim.attempt, "refused", lambda db: self._upsert_in(
            db, claim, state=JobState.FAILED, error=error[:2000], code=code, retryable=retryable))

    def release(self, claim: Claim) -> None:
        """Nothing was sent (the uploads failed, or the call was stopped before its create): forget the claim."""
        self._record(claim.attempt, "release", lambda db: db.execute(
            "DELETE FROM tasks WHERE attempt = :attempt AND state = :state",
            {"attempt": claim.attempt, "state": JobState.RESERVED.value}))

    @_guarded
    def finished(self, task_id: str, *, completed: bool, cost: Decimal | None = None, seconds: float | None = None,
                 result_url: str | None = None, path: str | None = None, error: str | None = None,
                 code: str | None = None, retryable: bool = False) -> None:
        """A task ended: every attempt that knows this task id records how (kept to write later if it fails)."""
        fields: dict[str, Any] = {"state": JobState.COMPLETED if completed else JobState.FAILED}
        if completed:
            fields.update(cost=cost, seconds=seconds, result_url=result_url, path=path, error=None)
        else:
            fields.update(error=(error or "")[:2000], code=code, retryable=retryable)
        args = self.schema.values({**fields, "updated_at": time.time()})
        sets = ", ".join(f"{name} = :{name}" for name in args)
        sql = f"UPDATE tasks SET {sets} WHERE task_id = :ended_task"
        args["ended_task"] = task_id
        try:
            self._write_one(sql, args, durable=False)
        except Exception:
            self._kept.keep(f"task:{task_id}", lambda db: db.execute(sql, args), f"how task {task_id} ended")
            raise

    # -- reading --------------------------------------------------------------------------------------

    @_guarded
    def latest(self, fingerprint: str, *, source: str | None = None) -> Entry | None:
        """The newest attempt for this fingerprint (by insertion, never by clock), or None; with source, the newest
        made from there (a batch's row folder), whatever was made elsewhere since."""
        with self._read() as db:
            return self._latest(db, fingerprint, source)

    @_guarded
    def by_task(self, task_id: str) -> Entry | None:
        """The newest attempt that made task_id, or None."""
        with self._read() as db:
            row = db.execute(f"{self.schema.select} WHERE task_id = ? {NEWEST_FIRST} LIMIT 1", (task_id,)).fetchone()
        return None if row is None else self.schema.entry_of(row)

    @_guarded
    def attempt(self, attempt: str) -> Entry | None:
        """The attempt with this id, or None once it is gone (released, or an abandoned reservation)."""
        with self._read() as db:
            row = db.execute(f"{self.schema.select} WHERE attempt = ?", (attempt,)).fetchone()
        entry = None if row is None else self._with_known_id(self.schema.entry_of(row))
        return None if entry is None or entry.abandoned else entry

    @_guarded
    def entries(self, *, model: str | None = None, since: float | None = None, states: Sequence[str] | None = None,
                task_prefix: str | None = None, fingerprint: str | None = None) -> list[Entry]:
        """Attempts, newest first, filtered by model id, attempt time (a damaged time passes), state, inputs'
        fingerprint, and the start of their task id (an id is found by any prefix of it, a progress bar's short id
        included)."""
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if fingerprint is not None:  # exactly these inputs, even a fingerprint that is empty
            where.append("fingerprint = ?")
            args.append(fingerprint)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(states)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._read() as db:
            rows = db.execute(f"{self.schema.select} {clause} {NEWEST_FIRST}", args).fetchall()
        found = (self._with_known_id(self.schema.entry_of(row)) for row in rows)
        return [e for e in found if not e.abandoned
                and (since is None or e.attempted_at is None or e.attempted_at >= since)
                and (task_prefix is None or (e.task_id or "").startswith(task_prefix))]

    # -- plumbing -------------------------------------------------------------------------------------

    def _latest(self, db: sqlite3.Connection, fingerprint: str, source: str | None = None) -> Entry | None:
        where, args = ("fingerprint = ?", (fingerprint,)) if source is None else (
            "fingerprint = ? AND source = ?", (fingerprint, source))
        for row in db.execute(f"{self.schema.select} WHERE {where} {NEWEST_FIRST}", args):
            entry = self._with_known_id(self.schema.entry_of(row))
            if not entry.abandoned:
                return entry
        return None

    def _with_known_id(self, entry: Entry) -> Entry:
        """entry, with the task id this process created for it but could not write yet."""
        task_id = self._kept.ids.get(entry.attempt)
        if task_id is None or entry.task_id is not None:
            return entry
        return dataclasses.replace(entry, state=JobState.SUBMITTED, task_id=task_id)

    def _release_abandoned(self, db: sqlite3.Connection) -> None:
        rows = db.execute(f"{self.schema.select} WHERE state = 'reserved'").fetchall()  # the partial index `reserved`
        here = socket.gethostname()
        gone = [e.attempt for e in map(self.schema.entry_of, rows) if e.abandoned and e.host == here]
        db.executemany("DELETE FROM tasks WHERE attempt = :attempt AND state = 'reserved'",
                       [{"attempt": attempt} for attempt in gone])

    def _upsert(self, claim: Claim, *, bounded: bool = False, **fields: Any) -> None:
        self._write_one(*self._upsert_sql(claim, fields), bounded=bounded)

    def _upsert_in(self, db: sqlite3.Connection, claim: Claim, **fields: Any) -> None:
        db.execute(*self._upsert_sql(claim, fields))

    def _upsert_sql(self, claim: Claim, fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Set fields on the claim's row, writing the whole row again if it has vanished (a journal started
        afresh)."""
        changed = self.schema.values({**fields, "updated_at": time.time()})
        return upsert_sql(list({**claim.row, **changed}), list(changed)), {**claim.row, **changed}

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

_journals: dict[Path, Journal] = {}
_journals_lock = threading.Lock()


def journal_at(home: Path) -> Journal:
    """The journal of this home folder (opened once per process); JournalError when it cannot be used."""
    path = Path(home).expanduser().resolve() / FILENAME
    with _journals_lock:
        if path not in _journals:
            _journals[path] = Journal(path)
        return _journals[path]


def forget_journals_under(folder: Path) -> None:
    """Close and forget the journals of homes inside folder (a long-lived process done with those homes)."""
    folder = Path(folder).expanduser().resolve()
    with _journals_lock:
        gone = [path for path in _journals if path.is_relative_to(folder)]
        for path in gone:
            _journals.pop(path).close()


__all__ = ["FILENAME", "OPEN", "SCHEMA_VERSION", "Claim", "Entry", "JobState", "Journal", "forget_journals_under",
           "journal_at"]
