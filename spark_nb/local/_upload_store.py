"""The local server's uploads folder: files under random names, bounded in age and in total size, oldest first."""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .._urls import is_loopback_url

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")  # a name the server gives or serves
SCAN_EVERY_S = 60.0  # the folder is looked at again this often (other processes may share it)
_URL_PREFIX = "/files/uploads/"


def upload_name(url: str) -> str | None:
    """The stored name a loopback server's /files/uploads/<name> URL names, or None."""
    path = urlsplit(url).path
    name = path.removeprefix(_URL_PREFIX)
    if not is_loopback_url(url) or name == path or not SAFE_NAME.match(name) or ".." in name:
        return None
    return name


class UploadStore:
    """uploads/<random name>: kept at most max_age seconds, and at most max_bytes together, the oldest going first;
    never the newest, nor one that a task still waiting to render names (keep())."""

    def __init__(self, folder: Path, *, max_age: float, max_bytes: int,
                 keep: Callable[[], Iterable[str]] = tuple) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self.max_bytes = max_bytes
        self._keep = keep
        self._lock = threading.Lock()
        self._total = 0  # bytes at the last look, plus those added since
        self._incoming = 0  # bytes of uploads still arriving
        self._looked_at = 0.0

    def new_path(self, filename: str | None) -> Path:
        """Where to write a new upload: an unguessable name (a URL to it is a capability), the original's suffix."""
        suffix = Path(filename or "").suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
        return self.folder / f"{secrets.token_hex(16)}{suffix}"

    def find(self, url: str) -> Path | None:
        """The stored file a loopback URL of /files/uploads/<name> names, when it is here."""
        name = upload_name(url)
        path = self.folder / name if name else None
        return path if path is not None and path.is_file() else None

    @contextlib.contextmanager
    def reserve(self, size: int) -> Iterator[bool]:
        """Room for an upload of size bytes about to arrive, beside what is stored and what other arriving uploads
        reserved (the oldest stored ones pruned first when it would not fit); yields whether it fits. Released at
        the end of the block (a stored upload then counts through added())."""
        fits = self._take(size)
        if not fits:
            self.prune(room=self._incoming + size)
            fits = self._take(size)
        try:
            yield fits
        finally:
            if fits:
                with self._lock:
                    self._incoming -= size

    def _take(self, size: int) -> bool:
        with self._lock:
            if self._total + self._incoming + size > self.max_bytes:
                return False
            self._incoming += size
            return True

    def added(self, size: int) -> None:
        """An upload of size bytes was stored: prune when the bound may be passed, or once a minute."""
        with self._lock:
            self._total += size
            due = self._total > self.max_bytes or time.monotonic() - self._looked_at > SCAN_EVERY_S
        if due:
            self.prune()

    def prune(self, room: int = 0) -> None:
        """Remove uploads older than max_age, then the oldest past max_bytes in total, less room (bytes still
        arriving); the newest stored one always stays."""
        with self._lock:
            now, kept_names = time.time(), set(self._keep())
            files = []
            for path in self.folder.iterdir():
                with contextlib.suppress(OSError):
                    facts = path.stat()
                    files.append((facts.st_mtime, facts.st_size, path))
            files.sort(key=lambda item: item[0], reverse=True)
            total = 0
            for index, (mtime, size, path) in enumerate(files):
                too_old = now - mtime > self.max_age
                if index and path.name not in kept_names and (too_old or total + size + room > self.max_bytes):
                    with contextlib.suppress(OSError):
                        path.unlink()
                    continue
                total += size
            self._total, self._looked_at = total, time.monotonic()
