"""Warm kernels for the job notebooks: one per report thread, reused row after row, reset before every row.

Starting a kernel costs about half a core-second, more than the rest of a row's local work; on a 2-core machine
a batch that starts one per row is bound by kernel starts, not by the service. So each report thread keeps its
kernel. Before a row runs, the kernel's user namespace and history are cleared (`reset(new_session=True)`), the
package's process settings forgotten and its working directory set to the row's folder: a row sees none of
another row's variables. A kernel that died (a row that crashed it) is replaced by a fresh one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0
RESET_TIMEOUT_S = 30.0
WARM_UP_WAIT_S = 2.0
NICENESS = 10  # job kernels run at a lower CPU priority than the batch runner

# Run in the kernel before each row; the namespace it runs in is the one it empties, so all of it is inside a
# function. The display hook's flush is skipped: it only clears what reset clears anyway, then runs gc.collect(),
# which was half of a warm kernel's work per row (Python's own collector still runs as usual).
RESET = """
def _reset_for_next_row(shell, folder):
    import os, sys
    hook = shell.displayhook
    full, hook.do_full_cache = hook.do_full_cache, False
    try:
        shell.reset(new_session=True)
    finally:
        hook.do_full_cache = full
    hook._ = hook.__ = hook.___ = ""  # the last row's outputs are not kept alive
    os.chdir(folder)
    if "spark_nb._config" in sys.modules:
        sys.modules["spark_nb._config"]._configured.clear()
_reset_for_next_row(get_ipython(), {folder!r})
"""


class KernelLost(Exception):
    """The warm kernel could not be reset for the next row (it died or stopped answering)."""


class WarmKernels:
    """A kernel per thread that asks, started on first use, reused for later rows, replaced when it dies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._managers: set[Any] = set()
        self._local = threading.local()
        self._closed = False

    def for_row(self, folder: Path) -> Any:
        """This thread's kernel manager, its kernel running, reset and in folder, ready for papermill (km=)."""
        manager = getattr(self._local, "manager", None)
        if manager is not None and not kernel_alive(manager):
            self.discard(manager)
            manager = None
        if manager is None:
            manager = self._start(folder)
        else:
            _reset(manager, folder)
        return manager

    def warm_up(self, folder: Path, together: threading.Barrier) -> None:
        """Start this thread's kernel ahead of its first row (the barrier spreads the warm-ups over the threads)."""
        if self._closed:
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=WARM_UP_WAIT_S)
        if getattr(self._local, "manager", None) is None:
            with contextlib.suppress(Exception):  # a kernel that cannot start is tried again by its first row
                self._start(folder)

    def _start(self, folder: Path) -> Any:
        from jupyter_client import AsyncKernelManager
        from jupyter_core.utils import run_sync

        manager = _manager_class(AsyncKernelManager)(kernel_name="python3")
        with self._lock:
            if self._closed:
                raise KernelLost("the batch is over: no more kernels")
            self._managers.add(manager)
        self._local.manager = manager
        # no history database: IPython would write every cell of every row to ~/.ipython's sqlite file
        run_sync(manager.start_kernel)(cwd=str(folder), extra_arguments=["--HistoryManager.enabled=False"])
        with self._lock:
            closed = self._closed
        if closed:  # the batch ended while this one started: it must not outlive it
            self.discard(manager)
            raise KernelLost("the batch is over: no more kernels")
        process = _process(manager)
        if process is not None and hasattr(os, "setpriority"):
            # reports are the batch's background work: the runner's submissions and polls come first
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, process.pid, NICENESS)
        return manager

    def done_with(self, manager: Any) -> None:
        """After a row: close the clients papermill opened on the kernel (the kernel itself stays warm)."""
        for client in manager.clients_made:
            with contextlib.suppress(Exception):
                client.stop_channels()
        manager.clients_made.clear()

    def discard(self, manager: Any) -> None:
        """Kill a kernel (with its children) and remove its files; the thread's next row gets a fresh one."""
        _kill(manager)
        _remove_files(manager)
        with self._lock:
            self._managers.discard(manager)
        if getattr(self._local, "manager", None) is manager:
            self._local.manager = None

    def kill_all(self) -> None:
        """Kill every kernel now (an interrupt): each kernel leads its own process group, ffmpeg included."""
        with self._lock:
            managers = list(self._managers)
        for manager in managers:
            _kill(manager)

    def close(self) -> None:
        """Stop every kernel and remove its connection files (the end of a batch)."""
        with self._lock:
            self._closed = True
            managers, self._managers = list(self._managers), set()
        for manager in managers:
            _kill(manager)
            _remove_files(manager)


def _manager_class(base: type) -> type:
    class JobKernelManager(base):  # type: ignore[misc, valid-type]
        """A kernel manager on Unix sockets that remembers the clients made for it (to close them after a row)."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.clients_made: list[Any] = []
            if os.name == "posix":
                # Unix sockets instead of TCP on loopback: reachable only through the file system, and
                # ipykernel no longer warns "running over TCP without encryption"
                self.transport = "ipc"
                self.ip = os.path.join(tempfile.gettempdir(), f"spark_nb-kernel-{uuid.uuid4().hex[:16]}")

        def client(self, **kwargs: Any) -> Any:
            made = super().client(**kwargs)
            self.clients_made.append(made)
            return made

    return JobKernelManager


def _process(manager: Any) -> Any:
    return getattr(getattr(manager, "provisioner", None), "process", None)


def kernel_alive(manager: Any) -> bool:
    """True while the manager's kernel process runs."""
    process = _process(manager)
    return process is not None and process.poll() is None


def _kill(manager: Any) -> None:
    process = _process(manager)
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(OSError):
        group = getattr(manager.provisioner, "pgid", None)
        if hasattr(os, "killpg") and group:
            os.killpg(group, signal.SIGKILL)
        else:
            process.kill()
    with contextlib.suppress(Exception):
        process.wait(timeout=5)


def _remove_files(manager: Any) -> None:
    """The kernel's connection file and sockets (the async manager's cleanup_resources is a coroutine)."""
    for cleanup in (manager.cleanup_connection_file, manager.cleanup_ipc_files):
        with contextlib.suppress(Exception):
            cleanup()


def _reset(manager: Any, folder: Path) -> None:
    """Clear the kernel for the next row (KernelLost if it does not answer)."""
    from jupyter_client.blocking import BlockingKernelClient

    client = BlockingKernelClient(connection_file=manager.connection_file)
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=START_TIMEOUT_S)
        reply = client.execute_interactive(RESET.format(folder=str(folder)), timeout=RESET_TIMEOUT_S,
                                           store_history=False, allow_stdin=False, output_hook=lambda msg: None)
    except Exception as exc:  # noqa: BLE001 (a dead or stuck kernel fails in several ways)
        raise KernelLost(f"the warm kernel did not answer: {type(exc).__name__}: {exc}") from exc
    finally:
        client.stop_channels()
    if reply["content"].get("status") != "ok":
        raise KernelLost(f"the warm kernel could not be reset: {reply['content'].get('evalue', '')}")
