"""Writing a file so that readers (other threads, processes, a crash) see the old one or the new, never half, and no
temporary file outlives its writer: removed when the write fails, swept by the next writer when the process died."""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path

from ._procs import pid_alive

# ".<name>.<pid>-<anything>.part" or ".<name>.<pid>.part": the temporary names our writers and downloads use
_PART = re.compile(r"^\..+\.(\d+)(?:-[^.]*)?\.part$")


def part_path(path: Path) -> Path:
    """The temporary sibling a writer of path in this process and thread uses: hidden, and named after its pid."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")


def write_atomically(path: Path, data: str | bytes, *, durable: bool = False) -> Path:
    """Write data to a temporary sibling, then rename it over path; durable also fsyncs before the rename.

    A write that fails (a full disk, a directory in the way, an interrupt) removes its temporary file and leaves
    path as it was.
    """
    return replace_atomically(path, lambda part: _write(part, data, durable))


def replace_atomically(path: Path, make: Callable[[Path], object]) -> Path:
    """make(part) writes a temporary sibling of path, which then replaces path; if anything fails, part goes."""
    part = part_path(path)
    try:
        make(part)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            part.unlink()
        raise
    return path


def _write(part: Path, data: str | bytes, durable: bool) -> None:
    with open(part, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def remove_stale_parts(folder: Path) -> int:
    """Delete the temporary files in folder whose writer's process is gone (killed mid-write); how many went."""
    removed = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            match = _PART.match(entry.name)
            if match and not pid_alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed
