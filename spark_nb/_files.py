"""Writing a file so that readers (other threads, processes, a crash) see the old one or the new, never half, and no
temporary file outlives its writer: removed when the write fails, swept by the next writer when the process died.

Every temporary ("part") file is made here, under a name no one can guess, by an open that creates it or fails
(O_CREAT | O_EXCL | O_NOFOLLOW): a file or symlink planted in its place is never written through. A write that
fails is a WriteError (a SparkError, and an OSError) naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ._procs import pid_alive
from .errors import WriteError

# ".<name>.<pid>-<anything>.part[.suffix]" or ".<name>.<pid>.part": the temporary names our writers and downloads use
_PART = re.compile(r"^\.(.+)\.(\d+)(?:-[^.]*)?\.part(?:\.[A-Za-z0-9]{1,10})?$")
PART_NAME_MAX = 100  # characters of a file's name its part's name keeps (the part's name stays under NAME_MAX)
_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_FIXES = {
    errno.EISDIR: "a folder is in its place: move or rename that folder, or write somewhere else",
    errno.ENOTDIR: "a file is in the place of one of the folders of its path: move that file, or write elsewhere",
    errno.ENOENT: "its folder is gone: create it again, or write somewhere else",
    errno.ENOSPC: "the disk is full: free some space, or write somewhere else",
    errno.EFBIG: "the file is over the size this file system or process may write: free space or write elsewhere",
    errno.EDQUOT: "your disk quota is used up: free some space, or write somewhere else",
    errno.EACCES: "you may not write there: change the folder's permissions, or write somewhere else",
    errno.EPERM: "you may not write there: change the folder's permissions, or write somewhere else",
    errno.EROFS: "the file system is read-only: write somewhere else",
}


def part_path(path: Path, suffix: str = "") -> Path:
    """A temporary sibling name for path, hidden, named after this process (so a later writer can tell when its
    writer is gone) and unguessable; suffix (e.g. ".mp4") is kept at the end for tools that go by it."""
    unique = f"{threading.get_ident()}{secrets.token_hex(6)}"
    return path.with_name(f".{path.name[:PART_NAME_MAX]}.{os.getpid()}-{unique}.part{suffix}")


@contextlib.contextmanager
def new_part(path: Path, suffix: str = "") -> Iterator[tuple[Path, BinaryIO]]:
    """A part file for path, created by this open or not at all (never through a file or link planted there),
    with the mode a new file gets; yields its path and the file open for writing; removed if the block fails."""
    part = part_path(path, suffix)
    descriptor = os.open(part, _EXCLUSIVE, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield part, handle
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise


def make_part(path: Path, suffix: str = "") -> Path:
    """An empty part file for path, created exclusively (see new_part), for a writer that opens it by its name
    (ffmpeg, a download); the caller removes it when its write fails."""
    with new_part(path, suffix) as (part, _):
        return part


def write_atomically(path: Path, data: str | bytes, *, durable: bool = False) -> Path:
    """Write data to a part file, then rename it over path; durable also fsyncs before the rename.

    A write that fails (a full disk, a directory in the way, an interrupt) removes its part file and leaves path as
    it was; an OSError becomes a WriteError naming path and what to do.
    """
    def write(handle: BinaryIO) -> None:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())

    return replace_atomically(path, write)


def replace_atomically(path: Path, make: Callable[[BinaryIO], object]) -> Path:
    """make(file) writes a new part file of path (open for writing), which then replaces path; if anything fails,
    the part goes and path stays as it was (an OSError becomes a WriteError)."""
    with _as_write_error(path):
        with new_part(path) as (part, handle):
            make(handle)
            handle.close()
            os.replace(part, path)
    return path


def link_atomically(source: Path, path: Path, *, check: Callable[[Path], None] | None = None) -> Path:
    """path becomes a hard link to source (on the same file system), else a copy of it, replacing what was there
    in one rename; if anything fails, path stays as it was. A link at source is never followed (a WriteError: what
    a link points to is not the file it stands for), and check(part), when given, judges the part file (our own
    link to, or copy of, the very file that will be renamed into place) before the rename: raising refuses it."""
    part = part_path(path, path.suffix)
    with _as_write_error(path):
        try:
            os.link(source, part, follow_symlinks=False)  # creates the name or fails; a link stays a link
        except OSError:  # another file system, or links not allowed there
            return _copied(source, path, check)
        try:
            if not stat.S_ISREG(os.lstat(part).st_mode):
                raise WriteError(f"{source} is not a regular file (a link, or another kind of thing): not brought "
                                 f"into {path}", hint="replace it with the file itself")
            if check is not None:
                check(part)
            os.replace(part, path)
        except BaseException:
            with contextlib.suppress(OSError):
                part.unlink()
            raise
    return path


def _copied(source: Path, path: Path, check: Callable[[Path], None] | None) -> Path:
    """path as a copy of source, opened without following a link, judged by check before it replaces path."""
    try:
        descriptor = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise WriteError(f"{source} is a link: not brought into {path}",
                             hint="replace it with the file itself") from exc
        raise
    with os.fdopen(descriptor, "rb") as original:
        if not stat.S_ISREG(os.fstat(original.fileno()).st_mode):
            raise WriteError(f"{source} is not a regular file: not brought into {path}",
                             hint="replace it with the file itself")
        with new_part(path, path.suffix) as (part, handle):
            _copy(original, handle)
            handle.close()
            if check is not None:
                check(part)
            os.replace(part, path)
    return path


def _copy(source: BinaryIO, target: BinaryIO) -> None:
    import shutil

    shutil.copyfileobj(source, target, 1 << 20)


@contextlib.contextmanager
def _as_write_error(path: Path) -> Iterator[None]:
    """An OSError in the block (not already a WriteError) becomes a WriteError naming path and its fix."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        fix = _FIXES.get(exc.errno or 0, "check the file and its folder")
        error = WriteError(f"cannot write {path}: {exc.strerror or exc}", hint=fix)
        error.errno, error.strerror, error.filename = exc.errno, exc.strerror, str(path)
        raise error from exc


def home_folder(home: Path) -> Path:
    """spark_nb's home folder (the journal, the local backend's tasks, uploads and videos), made if missing: its
    owner's alone (0700) when made here, and tightened to 0700 when it is the platform's default folder (spark-nb's
    own, which versions before this one made 0755). A folder someone chose that exists already keeps its mode; what
    spark_nb keeps in it is private on its own (`private_file`, the local backend's 0700 folder)."""
    from ._config import default_home

    home = Path(home).expanduser()
    made = not home.exists()
    home.parent.mkdir(parents=True, exist_ok=True)
    home.mkdir(mode=0o700, exist_ok=True)
    if made or home.resolve() == default_home().expanduser().resolve():
        _tighten(home, 0o700)
    return home


def private_file(path: Path, *, create: bool = False) -> None:
    """path readable and writable by its owner alone (0600): created so (never through a link) when create and
    missing, tightened when it exists with more (a file spark_nb made before it took care of this)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, _EXCLUSIVE, 0o600))
    with contextlib.suppress(FileNotFoundError):
        _tighten(path, 0o600)


def _tighten(path: Path, mode: int) -> None:
    """Take from path every permission beyond mode (on a file system without modes, nothing changes)."""
    with contextlib.suppress(OSError):
        current = os.stat(path).st_mode & 0o7777
        if current & ~mode:
            os.chmod(path, current & mode)


def remove_stale_parts(folder: Path, of: Path | None = None) -> int:
    """Delete the temporary files in folder whose writer's process is gone (killed mid-write), only those of the
    file of when given; how many went."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _PART.match(entry.name)
            if (match and (of is None or match.group(1) == of.name[:PART_NAME_MAX])
                    and not pid_alive(int(match.group(2)))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
