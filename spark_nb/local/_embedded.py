"""The embedded local server: one per home folder and process, started on demand when the backend is `local`.

Its tasks, inputs and results live under <home>/local (a folder only its user may read), so a task created by
one process can be read, waited on and downloaded from another, and one whose process died mid-render is
finished by the next that asks. It answers only its owner: every route needs a random key that only the
process that started it knows (and gives, through the environment, to the job kernels it starts), and its
files are served under unguessable names.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import threading
from pathlib import Path

from .._files import home_folder
from .._limits import MEDIA_BYTES, MEDIA_SECONDS
from ._listen import LocalServer

_servers: dict[Path, LocalServer] = {}
_lock = threading.Lock()


def embedded_server(home: Path, max_bytes: int = MEDIA_BYTES, max_seconds: float = MEDIA_SECONDS) -> LocalServer:
    """This process's local server for home, on 127.0.0.1 (an ephemeral port), started on first use.

    Args:
        home: spark_nb's home folder; the server keeps its tasks, inputs and videos in home/local (owner only).
        max_bytes: the largest audio or video input the calls may send (configure(max_input_mb=...)): taken.
        max_seconds: the longest such input (configure(max_input_seconds=...)): taken.

    Returns:
        The running LocalServer (the same one for the same home, until the process ends).

    Raises:
        SparkError: the server could not start.
    """
    storage = (Path(home).expanduser() / "local").resolve()
    with _lock:
        if storage not in _servers:
            home_folder(storage.parent)
            storage.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):  # a file system without modes keeps its own
                os.chmod(storage, 0o700)  # uploads, videos and task records: the owner's alone
            server = _servers[storage] = LocalServer(storage=storage, persistent=True,
                                                     api_key=secrets.token_urlsafe(32)).start()
            atexit.register(server.stop)
        _servers[storage].admit_inputs(max_bytes, max_seconds)  # what the client's own checks let through
        return _servers[storage]


def stop_servers_under(folder: Path) -> None:
    """Stop and forget the embedded servers of homes inside folder (a long-lived process done with those homes)."""
    folder = Path(folder).expanduser().resolve()
    with _lock:
        gone = [storage for storage in _servers if storage.is_relative_to(folder)]
        stopping = [_servers.pop(storage) for storage in gone]
    for server in stopping:
        server.stop()
