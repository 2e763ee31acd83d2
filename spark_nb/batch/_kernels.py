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
import queue
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jupyter_client loads when the first kernel starts
    from jupyter_client.manager import AsyncKernelManager

START_TIMEOUT_S = 60.0
RESET_TIMEOUT_S = 30.0
WARM_UP_WAIT_S = 2.0
NICENESS = 10  # job kernels run at a lower CPU priority than the batch runner
CLOSE_TIMEOUT_S = 2.0
WATCH_S = 0.5  # how often a kernel that says nothing is checked for being alive
# what each IOPub output message keeps in the notebook (as nbformat.v4.output_from_msg)
_OUTPUT_FIELDS = {"stream": ("name", "text"), "display_data": ("data", "metadata"),
                  "execute_result": ("data", "metadata", "execution_count"), "error": ("ename", "evalue", "traceback")}

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
    """The warm kernel died, or did not answer in time (the row is tried once more in a fresh kernel)."""


class WarmKernel:
    """A running job kernel and the one blocking client that talks to it for every row it runs."""

    def __init__(self, manager: Any, client: Any) -> None:
        self.manager = manager
        self.client = client
        # held by the one thread talking to the kernel (starting it, running code): zmq sockets belong to one thread
        # at a time, and closing them while another thread waits on them aborts the whole process
        self.in_use = threading.Lock()
        self.channels_closed = False

    def alive(self) -> bool:
        """True while the kernel's process runs."""
        return kernel_alive(self.manager)


class WarmKernels:
    """A kernel per thread that asks, started on first use, reused for later rows, replaced when it dies."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = env  # each kernel's environment (None: this process's)
        self._lock = threading.Lock()
        self._kernels: set[WarmKernel] = set()
        self._local = threading.local()
        self._closed = False

    def for_row(self, folder: Path) -> WarmKernel:
        """This thread's kernel, running, reset and in folder (KernelLost if it cannot be readied)."""
        kernel: WarmKernel | None = getattr(self._local, "kernel", None)
        if kernel is not None and not kernel.alive():
            self.discard(kernel)
            kernel = None
        if kernel is None:
            return self._start(folder)
        try:
            if not run_code(kernel, RESET.format(folder=str(folder)), time.monotonic() + RESET_TIMEOUT_S):
                raise KernelLost("the warm kernel could not be reset for the next row")
        except KernelLost:
            self.discard(kernel)
            raise
        return kernel

    def warm_up(self, folder: Path, together: threading.Barrier) -> None:
        """Start this thread's kernel ahead of its first row (the barrier spreads the warm-ups over the threads)."""
        if self._closed:
            return
        with contextlib.suppress(threading.BrokenBarrierError):
            together.wait(timeout=WARM_UP_WAIT_S)
        if getattr(self._local, "kernel", None) is None:
            with contextlib.suppress(Exception):  # a kernel that cannot start is tried again by its first row
                self._start(folder)

    def _start(self, folder: Path) -> WarmKernel:
        from jupyter_client.blocking.client import BlockingKernelClient
        from jupyter_core.utils import run_sync

        manager = _manager_class()(kernel_name="python3")
        kernel = WarmKernel(manager, None)
        with self._lock:
            if self._closed:
                raise KernelLost("the batch is over: no more kernels")
            self._kernels.add(kernel)
        self._local.kernel = kernel
        try:
            with kernel.in_use:
                # no history database: IPython would write every cell of every row to ~/.ipython's sqlite file
                env = dict(os.environ) if self._env is None else self._env  # jupyter_client needs a mapping
                run_sync(manager.start_kernel)(cwd=str(folder), env=env,
                                               extra_arguments=["--HistoryManager.enabled=False"])
                process = _process(manager)
                if process is not None and hasattr(os, "setpriority"):
                    # reports are the batch's background work: the runner's submissions and polls come first
                    with contextlib.suppress(OSError):
                        os.setpriority(os.PRIO_PROCESS, process.pid, NICENESS)
                client = BlockingKernelClient(connection_file=manager.connection_file)
                client.load_connection_file()
                client.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
                kernel.client = client
                self._wait_ready(kernel)
        except Exception:
            self.discard(kernel)
            raise
        with self._lock:
            closed = self._closed
        if closed:  # the batch ended while this one started: it must not outlive it
            self.discard(kernel)
            raise KernelLost("the batch is over: no more kernels")
        return kernel

    def _wait_ready(self, kernel: WarmKernel) -> None:
        """Wait for the kernel's first answer, looking every second whether it died or the batch ended meanwhile
        (its client has no heartbeat channel, so a killed kernel would otherwise be waited on for the whole
        START_TIMEOUT_S)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                kernel.client.wait_for_ready(timeout=1)
                return
            except RuntimeError:
                if self._closed or not kernel.alive():
                    raise KernelLost("the kernel stopped before it was ready") from None
                if time.monotonic() >= deadline:
                    raise

    def discard(self, kernel: WarmKernel) -> None:
        """Kill a kernel (with its children) and remove its files; the thread's next row gets a fresh one."""
        _close(kernel)
        with self._lock:
            self._kernels.discard(kernel)
        if getattr(self._local, "kernel", None) is kernel:
            self._local.kernel = None

    def kill_all(self) -> None:
        """Kill every kernel now (an interrupt): each kernel leads its own process group, ffmpeg included."""
        with self._lock:
            kernels = list(self._kernels)
        for kernel in kernels:
            _kill(kernel.manager)

    def close(self) -> None:
        """Stop every kernel and remove its connection files (the end of a batch)."""
        with self._lock:
            self._closed = True
            kernels, self._kernels = list(self._kernels), set()
        for kernel in kernels:
            _close(kernel)


def run_code(kernel: WarmKernel, code: str, deadline: float, *, cell: Any = None) -> bool:
    """Execute code on kernel, filling cell's execution count and outputs as nbclient does when a cell is given
    (consecutive streams merged, clear_output honoured); False when the code raised.

    KernelLost when the kernel dies, or the deadline passes, before the code is done.
    """
    with kernel.in_use:
        return _run_code(kernel, code, deadline, cell)


def _run_code(kernel: WarmKernel, code: str, deadline: float, cell: Any) -> bool:
    client = kernel.client
    msg_id = client.execute(code, store_history=cell is not None, allow_stdin=False, stop_on_error=True)
    outputs: list[Any] = []
    if cell is not None:
        cell.outputs = outputs
    clear_pending = False
    while True:
        # the channels themselves, not client.get_*_msg: those run an event loop per message (run_sync)
        msg = _answer(client.iopub_channel.get_msg, msg_id, kernel, deadline)
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "status" and content.get("execution_state") == "idle":
            break
        if cell is None:
            continue
        if kind == "execute_input":
            cell.execution_count = content.get("execution_count")
        elif kind == "clear_output":
            clear_pending = bool(content.get("wait"))
            if not clear_pending:
                outputs.clear()
        elif kind in _OUTPUT_FIELDS:
            if clear_pending:
                outputs.clear()
                clear_pending = False
            output = _output(kind, content)
            last = outputs[-1] if outputs else None
            if kind == "stream" and last is not None and last.output_type == "stream" and last.name == output.name:
                last.text += output.text
            else:
                outputs.append(output)
    reply: dict[str, Any] = _answer(client.shell_channel.get_msg, msg_id, kernel, deadline)["content"]
    if cell is not None and reply.get("execution_count") is not None:
        cell.execution_count = reply["execution_count"]
    return reply.get("status") == "ok"


def _output(kind: str, content: dict[str, Any]) -> Any:
    """The notebook output of an IOPub output message, as nbformat.v4.output_from_msg makes it, without its schema
    check of every output (a jsonschema run each, a tenth of a report's work in the batch's process): the
    kernel's messages are well formed, and the whole notebook is validated when papermill writes it."""
    from nbformat import from_dict

    fields = {name: content[name] for name in _OUTPUT_FIELDS[kind]}
    return from_dict({"output_type": kind, **fields})  # type: ignore[no-untyped-call]  # nbformat's, unannotated


def _answer(get: Callable[..., dict[str, Any]], msg_id: str, kernel: WarmKernel, deadline: float
            ) -> dict[str, Any]:
    """The next message on a channel that answers msg_id (others, e.g. a previous row's stragglers, are skipped)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise KernelLost("the kernel did not finish in time")
        try:
            msg = get(timeout=min(WATCH_S, left))
        except queue.Empty:
            if not kernel.alive():
                raise KernelLost("the kernel died") from None
            continue
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return msg


def _close(kernel: WarmKernel) -> None:
    """Kill the kernel, then close its client's channels once (bounded: closing zmq sockets can wait on a dead peer).

    Any thread may close a kernel (its own at a row's end, the batch's end, an interrupt), but only while no other
    thread is talking to it: a kernel busy past CLOSE_TIMEOUT_S (still starting, say) keeps its channels until its
    own thread, seeing it dead, discards it.
    """
    _kill(kernel.manager)
    if kernel.client is not None and kernel.in_use.acquire(timeout=CLOSE_TIMEOUT_S):
        try:
            if not kernel.channels_closed:
                kernel.channels_closed = True
                closer = threading.Thread(target=_stop_channels, args=(kernel.client,), name="spark-kernel-close",
                                          daemon=True)
                closer.start()
                closer.join(timeout=CLOSE_TIMEOUT_S)
        finally:
            kernel.in_use.release()
    _remove_files(kernel.manager)


def _stop_channels(client: Any) -> None:
    import zmq

    for channel in (client.shell_channel, client.iopub_channel):
        with contextlib.suppress(Exception):
            channel.socket.setsockopt(zmq.LINGER, 0)  # unsent requests are dropped, not waited on
    with contextlib.suppress(Exception):
        client.stop_channels()


def _manager_class() -> type[AsyncKernelManager]:
    from jupyter_client.manager import AsyncKernelManager

    class JobKernelManager(AsyncKernelManager):
        """A kernel manager on Unix sockets."""

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if os.name == "posix":
                # Unix sockets instead of TCP on loopback: reachable only through the file system, and
                # ipykernel no longer warns "running over TCP without encryption"
                self.transport = "ipc"
                self.ip = os.path.join(tempfile.gettempdir(), f"spark_nb-kernel-{uuid.uuid4().hex[:16]}")

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
