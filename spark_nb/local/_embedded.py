"""The embedded local server: one per home folder and process, started on demand when the backend is `local`.

Its tasks, inputs and results live under <home>/local, so a task created by one process can be read, waited
on and downloaded from another, and one whose process died mid-render is finished by the next that asks.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from ._server import LocalServer

_servers: dict[Path, LocalServer] = {}
_lock = threading.Lock()


def embedded_server(home: Path) -> LocalServer:
    """This process's local server for home, on 127.0.0.1 (an ephemeral port), started on first use."""
    storage = (Path(home).expanduser() / "local").resolve()
    with _lock:
        if storage not in _servers:
            server = _servers[storage] = LocalServer(storage=storage, persistent=True).start()
            atexit.register(server.stop)
        return _servers[storage]
