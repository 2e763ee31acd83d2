"""The embedded local server: started once per process, on demand, when the backend is `local`."""

from __future__ import annotations

import atexit
import threading

from ._server import LocalServer

_server: LocalServer | None = None
_lock = threading.Lock()


def embedded_server() -> LocalServer:
    """The process's local server on 127.0.0.1 (an ephemeral port), started on first use."""
    global _server
    with _lock:
        if _server is None:
            _server = LocalServer().start()
            atexit.register(_server.stop)
        return _server
