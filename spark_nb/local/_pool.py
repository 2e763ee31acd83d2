"""The local server's renders: a few daemon threads, stopped within seconds with the server."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

STOP_TIMEOUT_S = 5.0


class RenderPool:
    """A few daemon threads rendering tasks in order; close() stops them within seconds, renders included.

    Daemon threads, unlike a ThreadPoolExecutor's, never hold up the interpreter's exit; a render in progress
    notices `stopping` at its next frame.
    """

    def __init__(self, workers: int) -> None:
        self.stopping = threading.Event()
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"spark-nb-render-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) on the next free worker."""
        self._queue.put((fn, args))

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop taking work, end the renders in progress, and join the workers (at most timeout seconds)."""
        self.stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while not self.stopping.is_set():
            item = self._queue.get()
            if item is None or self.stopping.is_set():
                return
            fn, args = item
            fn(*args)

