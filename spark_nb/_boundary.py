"""The public boundary: what may leave a public call of spark_nb, and what its frames may hold.

`boundary` wraps a public function (sync or async): a plain-text `api_key=` becomes a checked Secret before anything
else runs (so no frame of a failing call holds the key as text), and any exception but a SparkError becomes one
(`errors.internal_error`: "unexpected internal error: ...", chained from the original, with the task id when the
call knows one). KeyboardInterrupt, SystemExit and asyncio's CancelledError pass unchanged. Applied to generate,
submit, their async twins, Task.from_id/status/wait, history, spend, configure, batch.run_batch, the forms'
actions and the CLI.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast, overload

from ._config import KEY_SOURCES, hide_key
from .errors import SparkError, UsageError, internal_error

F = TypeVar("F", bound=Callable[..., Any])
TaskOf = Callable[[Any], "tuple[str | None, str | None]"]


@overload
def boundary(fn: F, *, key_source: str = ..., task_of: TaskOf | None = ...,
             as_usage: tuple[type[Exception], ...] = ...) -> F: ...


@overload
def boundary(fn: None = None, *, key_source: str = ..., task_of: TaskOf | None = ...,
             as_usage: tuple[type[Exception], ...] = ...) -> Callable[[F], F]: ...


def boundary(fn: F | None = None, *, key_source: str = KEY_SOURCES["explicit"],
             task_of: TaskOf | None = None, as_usage: tuple[type[Exception], ...] = ()) -> F | Callable[[F], F]:
    """Decorator (bare or with options): only SparkError (or KeyboardInterrupt) leaves fn; see the module.

    key_source names where an `api_key` keyword comes from in a bad key's error; task_of(first argument) gives the
    (task id, model) an unexpected error names, for methods of objects that know their task; exceptions of the
    as_usage types say what the caller got wrong (the CLI's arguments, checked by the parsers it calls) and
    become a UsageError with their own text instead of an internal error.
    """
    if fn is None:
        def decorate(fn: F) -> F:
            return boundary(fn, key_source=key_source, task_of=task_of, as_usage=as_usage)

        return decorate

    def unexpected(exc: Exception, args: tuple[Any, ...]) -> SparkError:
        if isinstance(exc, as_usage):
            return UsageError(str(exc))
        task_id, model = (None, None)
        if task_of is not None and args:
            try:
                task_id, model = task_of(args[0])
            except Exception:  # the error being reported matters more
                pass
        return internal_error(exc, task_id, model)

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def guarded_async(*args: Any, **kwargs: Any) -> Any:
            hide_key(kwargs, key_source)
            try:
                return await fn(*args, **kwargs)
            except SparkError:
                raise
            except Exception as exc:
                raise unexpected(exc, args) from exc

        return cast(F, guarded_async)  # functools.wraps keeps fn's signature, which mypy cannot see

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        hide_key(kwargs, key_source)
        try:
            return fn(*args, **kwargs)
        except SparkError:
            raise
        except Exception as exc:
            raise unexpected(exc, args) from exc

    return cast(F, guarded)  # as above
