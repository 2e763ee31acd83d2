"""The journal's SQLite file and its connections: this process's one write connection (kept between writes; opened
again in a forked child, or once the file on disk is another), write transactions that make the kept writes first,
how durable a commit is and how long a write waits (the busy timeout, or the call's deadline), short read
connections, and making the file (its owner's alone) or migrating it. _journal.Journal builds on it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._deadline import within
from ._files import private_file
from ._journal_faults import KeptWrites
from ._journal_rows import SCHEMA, Schema, migrate

if TYPE_CHECKING:
    import sqlite3

BUSY_TIMEOUT_S = 60.0  # how long a write waits for another process's transaction before it is an error


class JournalFile:
    """One journal file's connections and transactions, safe across threads and processes; writes that failed are
    kept (KeptWrites) and made first by the next transaction, or at exit."""

    schema: Schema = SCHEMA  # its table and rows, as _journal_rows.Entry declares them

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._held: tuple[sqlite3.Connection, int, int] | None = None  # the write connection, its pid and inode
        self._durable = True  # the write connection's commits are fsynced (PRAGMA synchronous = FULL)
        self._busy_ms = int(BUSY_TIMEOUT_S * 1000)  # the write connection's busy timeout
        self._kept = KeptWrites(self.path, self._write_kept_at_exit)  # writes that failed, to make later

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
                except Exception:  # the transaction went with the error: start on a fresh connection
                    self._drop_writer()
                if isinstance(exc, (sqlite3.Error, OSError)):
                    self._drop_writer()  # the file may have been replaced
                raise

    def _write_one(self, sql: str, args: Mapping[str, Any], *, durable: bool = True, bounded: bool = False) -> None:
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

    def close(self) -> None:
        """Let go of the kept write connection (the next write opens one again)."""
        with self._lock:
            self._drop_writer()

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
        migrate(self.path, self._connect, busy_seconds=BUSY_TIMEOUT_S, schema=self.schema)
