"""What went wrong with the journal file, said as a JournalError with the fix (no raw sqlite3 or OS error escapes),
and the writes that failed, kept to be made later.

A created task that could not be recorded gets its id and the line that resumes it in the error, so it is
never lost with the failed write; the journal keeps the write (KeptWrites) and makes it as soon as it can.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import JournalError

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 8, 11, 13, 26
ELSEWHERE = "or point SPARK_NB_HOME (or configure(home=...)) at another folder"


def is_damage(exc: BaseException) -> bool:
    """True when the file is not a usable database (truncated, overwritten): to be moved aside, not reported."""
    import sqlite3

    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError  # its subclasses are locks, full disks, bugs


def resume_line(task_id: str, model: str) -> str:
    """The line that picks a task up again from its id."""
    return f'spark_nb.Task.from_id("{task_id}", model="{model}").wait()'


def journal_error(path: Path, exc: BaseException, *, busy_seconds: float, task_id: str | None = None,
                  model: str = "") -> JournalError:
    """The JournalError for exc on the journal at path: what is wrong (a folder, read-only, full, locked), the fix."""
    problem, fix = _diagnosis(Path(path), exc, busy_seconds)
    if task_id is None:
        return JournalError(f"the task journal {path} {problem}", hint=f"{fix}, {ELSEWHERE}", path=str(path))
    return JournalError(
        f"task {task_id} was created (and is billed) but could not be recorded in the task journal {path}: it "
        f"{problem}. The id is kept in memory and written to the journal as soon as it can be",
        hint=f"resume it with {resume_line(task_id, model)}; {fix}", task_id=task_id, path=str(path))


def _diagnosis(path: Path, exc: BaseException, busy_seconds: float) -> tuple[str, str]:
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    said = str(exc).lower()
    number = getattr(exc, "errno", None)
    if path.is_dir():
        return "is a folder, not a file", f"move the folder {path} away"
    if code == _SQLITE_FULL or number in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in said \
            or _nearly_full(path.parent):  # a full disk also shows as "disk I/O error" (the WAL index cannot grow)
        return "cannot be written: the disk is full", f"free space on the disk holding {path.parent}"
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in said or "busy" in said:
        return (f"is locked by another process (waited {busy_seconds:g} s)",
                "end or wait for the other process writing to it (another kernel, a batch), then try again")
    folder = path.parent
    if code == _SQLITE_READONLY or "readonly" in said or number in (errno.EACCES, errno.EPERM, errno.EROFS) \
            or not _writable(folder) or (path.exists() and not _writable(path)):
        where = folder if not _writable(folder) else path
        return f"is read-only ({where} cannot be written)", f"make {where} writable"
    return f"could not be used ({type(exc).__name__}: {str(exc)[:200]})", f"check the file and its folder {folder}"


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 64 * 1024
    except OSError:
        return False


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) if path.exists() else _writable(path.parent) if path.parent != path else False


class KeptWrites:
    """Journal writes that failed (a created task's id above all), kept in memory: the journal applies them at the
    start of its next write, and once more at exit; what still fails then is said on stderr."""

    def __init__(self, path: Path, at_exit: Callable[[], None]) -> None:
        self.path = path
        self._writes: dict[str, tuple[Callable[[Any], Any], str]] = {}  # key -> (write, what it records)
        self.ids: dict[str, str] = {}  # attempt -> the task id created for it, not yet on disk
        self._at_exit = at_exit
        self._hooked = False

    def __bool__(self) -> bool:
        return bool(self._writes)

    def keep(self, key: str, write: Callable[[Any], Any], what: str, *, task_id: str | None = None) -> None:
        """Remember write (to apply later under key, replacing an older one); task_id: the id it records."""
        self._writes[key] = (write, what)
        if task_id is not None:
            self.ids[key] = task_id
        if not self._hooked:
            self._hooked = True
            atexit.register(self._at_exit)

    def apply(self, db: Any) -> None:
        """Apply every kept write on db (in the caller's transaction); raises as the first failing one does."""
        for key, (write, _) in list(self._writes.items()):
            write(db)
            self._writes.pop(key, None)
            self.ids.pop(key, None)

    def say_unwritten(self, exc: BaseException) -> None:
        """On stderr, every kept write that could not be made (at exit)."""
        for _, what in self._writes.values():
            print(f"spark_nb: could not record {what} in the task journal {self.path} ({exc})", file=sys.stderr)
