"""The guard on what a form's controller does for a click, an edit or its worker thread: any failure becomes a
SparkError (`_boundary`) that the controller keeps in its state for its view to show, never a traceback in the
browser's log (a callback has no cell to raise into). No ipywidgets here."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .._boundary import boundary
from ..errors import SparkError

P = ParamSpec("P")


class Failing(Protocol):
    """A controller that keeps a failure in its state (and may know the task it is running)."""

    def _failed(self, exc: SparkError) -> None: ...


C = TypeVar("C", bound=Failing)


def task_of(controller: Any) -> tuple[str | None, str | None]:
    """The task a controller is running (for an unexpected error to name), when it has one."""
    task = getattr(controller, "task", None)
    return (task.id, task.model) if task is not None else (None, None)


def action(method: Callable[Concatenate[C, P], None]) -> Callable[Concatenate[C, P], None]:
    """method, run so that any failure is a SparkError handed to the controller's _failed instead of raised."""
    guarded = boundary(method, task_of=task_of)

    def run(self: C, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            guarded(self, *args, **kwargs)
        except SparkError as exc:
            self._failed(exc)

    functools.update_wrapper(run, method)
    return run
