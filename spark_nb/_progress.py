"""A tqdm.auto bar for one task: status, percent when the server gives it, elapsed time."""

from __future__ import annotations

from typing import Any


class TaskProgress:
    """Context manager showing a task's progress; does nothing when disabled."""

    def __init__(self, task_id: str, *, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=100, desc=f"task {task_id[:12]}", unit="%", leave=True,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")  # ", status"

    def update(self, status: str, progress: float | None) -> None:
        """Show the latest status and progress (0..1, or None when unknown)."""
        if self._bar is None:
            return
        if progress is not None:
            self._bar.n = round(max(0.0, min(1.0, progress)) * 100)
        self._bar.set_postfix_str(status, refresh=False)
        self._bar.refresh()

    def __enter__(self) -> TaskProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
