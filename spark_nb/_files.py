"""Writing a small file so that readers (other threads, processes, a crash) see the old one or the new, never half."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomically(path: Path, data: str | bytes, *, durable: bool = False) -> Path:
    """Write data to a temporary sibling, then rename it over path; durable also fsyncs before the rename."""
    part = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.part")
    with open(part, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(part, path)
    return path
