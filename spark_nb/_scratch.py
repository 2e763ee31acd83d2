"""This process's private scratch folder (spilled uploads, trimmed audio, composed videos), removed at exit."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

_scratch: Path | None = None
_lock = threading.Lock()


def scratch_dir() -> Path:
    """A private temporary folder for this process, created on first use and removed when it exits."""
    global _scratch
    with _lock:
        if _scratch is None:
            _scratch = Path(tempfile.mkdtemp(prefix="spark_nb_"))
            atexit.register(shutil.rmtree, _scratch, True)
        return _scratch
