"""LocalServer: the local service on a socket, served by uvicorn (h11, connections guarded) in a daemon thread.

uvicorn serves the connections; they are accepted by `_accept.Acceptor` (a batch a turn that fits the descriptor
limit, and no traceback when descriptors run out), not by asyncio's own accept loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._accept import Acceptor
from .._config import Secret
from ..errors import SparkError
from ._connections import ACCEPT_BACKLOG, ConnectionGuard
from ._faults import FaultPlan
from ._pool import STOP_TIMEOUT_S
from ._server import LocalService, ServerOptions

logger = logging.getLogger("spark_nb.local")


class LocalServer:
    """The local server in a background thread: `with LocalServer() as server: server.url`.

    It speaks the Vtrix protocol (create, poll, download, uploads, the model specs) and renders real videos.

    Args:
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one.
        latency: seconds added to every answer.
        faults: faults to inject, as FaultPlan.parse reads them ("create:429:0.2,poll:reset:0.1").
        fault_seed: the faults' seed, so a run repeats.
        api_key: the key every route requires (None: any non-empty key; see ServerOptions.api_key).
        storage: the folder for uploads, videos and task records (None: a temporary one, removed on stop).
        render_workers: renders at once.
        **limits: any other ServerOptions field (longest_side, cost_per_second, max_upload_bytes, ...).

    Raises:
        SparkError: an api_key with a line break, a space, a control or a non-ASCII character inside.
        ValueError: faults that FaultPlan.parse cannot read.
        TypeError: a limit that is no ServerOptions field.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, latency: float = 0.0, faults: str | None = None,
                 fault_seed: int | None = None, api_key: str | None = None, storage: Path | None = None,
                 render_workers: int = 2, **limits: Any) -> None:
        self.host = host
        self.options = ServerOptions(latency=latency, faults=FaultPlan.parse(faults, fault_seed), api_key=api_key,
                                     storage=storage, render_workers=render_workers, **limits)
        self.token = Secret(api_key or f"local-{secrets.token_hex(8)}")  # what our own clients send
        self.service = LocalService(self.options)
        self.guard = ConnectionGuard(self.options.connections)
        self._requested_port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"LocalServer({self.url if self._server else 'not started'})"

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:8765."""
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"

    @property
    def running(self) -> bool:
        """True while the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def requests(self) -> int:
        """How many HTTP requests reached the server so far, on any path and whatever the answer."""
        return self.service.stats.requests

    def stats(self) -> dict[str, Any]:
        """The server's counters (as GET /_spark_nb/stats answers).

        Returns:
            Tasks created, requests, uploads, faults drawn per route, ...
        """
        return self.service.stats.snapshot()

    def connections(self) -> dict[str, int]:
        """Open connections, how many may be open, and how many were closed: timed out, evicted, refused.

        Returns:
            Counts by name ("open", "cap", "timed_out", "evicted", "refused").
        """
        return self.guard.snapshot()

    def admit_inputs(self, max_bytes: int, max_seconds: float) -> None:
        """Take larger inputs from now on: its limits raised to these, never lowered.

        The embedded server takes what its process's configured limits let through.

        Args:
            max_bytes: the largest upload, and input fetched from a URL, to take.
            max_seconds: the longest input medium to render.
        """
        options = self.options  # the service reads them per request
        options.max_upload_bytes = max(options.max_upload_bytes, max_bytes)
        options.max_fetch_bytes = max(options.max_fetch_bytes, max_bytes)
        options.max_seconds = max(options.max_seconds, max_seconds)

    def start(self, timeout: float = 10.0) -> LocalServer:
        """Bind the socket and serve in a daemon thread.

        Args:
            timeout: seconds to wait for the server to start serving.

        Returns:
            The server itself (`server = LocalServer().start()`).

        Raises:
            SparkError: the address cannot be bound (taken, or not this machine's), or the server did not start
                within timeout.
        """
        import uvicorn

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit this. Without it every answer waited ~40 ms: h11 writes the headers and
        # the body separately, and Nagle holds the body until the client's delayed ACK of the headers.
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._socket.bind((self.host, self._requested_port))
            self._socket.listen(ACCEPT_BACKLOG)
        except OSError as exc:
            self._socket.close()
            self.service.close()
            raise SparkError(f"the local server cannot listen on {self.host}:{self._requested_port}: "
                             f"{exc.strerror or exc}",
                             hint="pick another --port (0 picks a free one), or stop what is using this one") from exc
        # no WebSockets (the protocol has none, and an upgraded connection would leave the guard's count); errors
        # only: uvicorn warns of each malformed or upgrade request, which any peer could send to fill a terminal
        # (or, for the embedded server, the notebook cell that happens to run)
        config = uvicorn.Config(self.service.app(), http=self.guard.protocol(), ws="none", lifespan="off",
                                log_level="error", access_log=False, timeout_keep_alive=30,
                                timeout_graceful_shutdown=2)
        self._server = _accepting_server(config, self._socket, self.guard)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": []},
                                        name="spark-nb-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise SparkError(f"the local server did not start on {self.host}:{self._requested_port}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and rendering within a few seconds, and remove the server's own storage."""
        if self._server is not None:
            self._server.should_exit = True
        self.service.close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _quiet_shutdown(record: logging.LogRecord) -> bool:
    """False for uvicorn's line that connections outlived its 2 s shutdown: peers holding connections open (a
    flood, a browser tab) are no error of ours, and the embedded server's lines land in its owner's cell."""
    return not str(record.msg).startswith("Cancel %s running task(s)")


logging.getLogger("uvicorn.error").addFilter(_quiet_shutdown)


def _accepting_server(config: Any, listening: socket.socket, guard: ConnectionGuard) -> Any:
    """A uvicorn Server that serves the connections an `_accept.Acceptor` takes from listening (uvicorn is given
    no socket of its own), the guard's batch a turn, the guard closing a connection when descriptors run out."""
    import uvicorn

    class AcceptingServer(uvicorn.Server):
        acceptor: Acceptor | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=[])
            loop = asyncio.get_running_loop()
            # the guard's, as uvicorn's own startup makes it
            protocol_class: Callable[..., asyncio.Protocol] = self.config.http_protocol_class

            def protocol() -> asyncio.Protocol:
                return protocol_class(config=self.config, server_state=self.server_state,
                                      app_state=self.lifespan.state, _loop=loop)

            connecting: set[asyncio.Task[None]] = set()  # held until done: the loop keeps only weak references

            def connect(connection: socket.socket, address: object) -> None:
                task = loop.create_task(_connect(loop, protocol, connection))
                connecting.add(task)
                task.add_done_callback(connecting.discard)

            self.acceptor = Acceptor(loop, listening, connect, batch=lambda: guard.room().batch,
                                     on_full=guard.out_of_descriptors, logger=logger)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.acceptor is not None:
                self.acceptor.stop()
            await super().shutdown(sockets=[listening])

    return AcceptingServer(config)


async def _connect(loop: asyncio.AbstractEventLoop, protocol: Any, connection: socket.socket) -> None:
    """Serve an accepted connection; one that cannot be set up (reset already) is closed, quietly."""
    try:
        await loop.connect_accepted_socket(protocol, connection)
    except OSError:
        connection.close()
