"""The public boundary: what may leave a public call of spark_nb, and what its frames may hold.

`boundary` wraps a public function (sync or async): a plain-text `api_key=` becomes a checked Secret before anything
else runs (so no frame of a failing call holds the key as text), and any exception but a SparkError becomes one
(`errors.internal_error`: "unexpected internal error: ...", chained from the original, with the task id when the
call knows one); a call whose arguments do not fit the function's signature (too many, a missing one, an unknown
keyword) is a UsageError saying so. The chain of what leaves is scrubbed of secrets (`_secrets.scrub_chain`): a
traceback prints it. KeyboardInterrupt, SystemExit and asyncio's CancelledError pass unchanged.

`guard_public` applies it to everything a public module lists in `__all__`, in one place per module (its last
line): functions are wrapped, a class's constructor is (an Enum's failed lookup is a ValidationError); exception
classes are what the boundary lets out and stay as they are. Methods are wrapped where they are defined
(Task.from_id/status/wait, the forms' actions); the CLI's `main` too.
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast, overload

from ._config import KEY_SOURCES, hide_key
from ._secrets import scrub_chain
from .errors import SparkError, UsageError, ValidationError, internal_error

F = TypeVar("F", bound=Callable[..., Any])
TaskOf = Callable[[Any], "tuple[str | None, str | None]"]


@overload
def boundary(fn: F, *, key_source: str | None = ..., task_of: TaskOf | None = ...,
             as_usage: tuple[type[Exception], ...] = ...) -> F: ...


@overload
def boundary(fn: None = None, *, key_source: str | None = ..., task_of: TaskOf | None = ...,
             as_usage: tuple[type[Exception], ...] = ...) -> Callable[[F], F]: ...


def boundary(fn: F | None = None, *, key_source: str | None = KEY_SOURCES["explicit"],
             task_of: TaskOf | None = None, as_usage: tuple[type[Exception], ...] = ()) -> F | Callable[[F], F]:
    """Decorator (bare or with options): only SparkError (or KeyboardInterrupt) leaves fn; see the module.

    key_source names where an `api_key` keyword comes from in a bad key's error (None: the keyword is fn's own
    business, e.g. a local server's key, and stays as given); task_of(first argument) gives the
    (task id, model) an unexpected error names, for methods of objects that know their task; exceptions of the
    as_usage types say what the caller got wrong (the CLI's arguments, checked by the parsers it calls) and
    become a UsageError with their own text instead of an internal error.
    """
    if fn is None:
        def decorate(fn: F) -> F:
            return boundary(fn, key_source=key_source, task_of=task_of, as_usage=as_usage)

        return decorate

    def unexpected(exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> SparkError:
        if isinstance(exc, as_usage):
            return UsageError(str(exc))
        if isinstance(exc, TypeError) and (misfit := _misfit(fn, args, kwargs)) is not None:
            return misfit
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
            if key_source is not None:
                hide_key(kwargs, key_source)
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                failure = _scrubbed(exc if isinstance(exc, SparkError) else unexpected(exc, args, kwargs), exc)
            raise failure  # outside the handler: the chain is the one _scrubbed left

        guarded_async.spark_nb_boundary = True  # type: ignore[attr-defined]  # a mark on the function: see guarded
        return cast(F, guarded_async)  # functools.wraps keeps fn's signature, which mypy cannot see

    @functools.wraps(fn)
    def guarded_sync(*args: Any, **kwargs: Any) -> Any:
        if key_source is not None:
            hide_key(kwargs, key_source)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            failure = _scrubbed(exc if isinstance(exc, SparkError) else unexpected(exc, args, kwargs), exc)
        raise failure  # as above

    guarded_sync.spark_nb_boundary = True  # type: ignore[attr-defined]  # as above
    return cast(F, guarded_sync)  # as above


def _scrubbed(failure: SparkError, exc: Exception) -> SparkError:
    """failure (what leaves for exc), chained from exc when it is not exc, its chain scrubbed of secrets: a
    traceback prints the chain (a quoted header in httpx's error, say)."""
    if failure is not exc:
        failure.__cause__ = exc
    scrub_chain(failure)
    return failure


def _misfit(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> UsageError | None:
    """The UsageError for a call whose arguments do not fit fn's signature, else None (the TypeError came from
    inside: a bug, or a value of the wrong type that fn did not check)."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(fn, "__qualname__", "the call").replace(".__init__", "")
        return UsageError(f"{name}(): {exc}", hint=f"see help({name}) for its arguments")
    except ValueError:  # no signature to compare with
        return None
    return None


def guarded(value: Any) -> bool:
    """True when value is behind the boundary: a function wrapped by it, a class whose constructor is, or an
    exception class (what the boundary lets out)."""
    if isinstance(value, type):
        if issubclass(value, BaseException):
            return True
        if issubclass(value, enum.Enum):
            return getattr(value._missing_, "spark_nb_boundary", False)
        return getattr(value.__init__, "spark_nb_boundary", False)
    return getattr(value, "spark_nb_boundary", False)


def guard_public(namespace: dict[str, Any]) -> None:
    """Put every callable a public module lists in `__all__` behind the boundary (the module's last line:
    `guard_public(globals())`; a name the module loads lazily goes through `guard` where it is loaded)."""
    for name in namespace.get("__all__", ()):
        if name in namespace:
            namespace[name] = guard(namespace[name])


def guard(value: Any) -> Any:
    """value behind the boundary: a function wrapped, a class with a wrapped constructor (in place: a ValueError
    it raises is a UsageError with its text; an Enum a ValidationError for a value it does not have), anything
    else as it is. Idempotent."""
    if guarded(value) or type(value).__module__ == "typing" or getattr(value, "_is_protocol", False):
        return value  # a type's alias (Literal[...]) or a Protocol: named for annotations, never called
    if isinstance(value, type) and issubclass(value, enum.Enum):
        value._missing_ = classmethod(_no_such_member)  # type: ignore[method-assign,assignment]  # Enum's hook, replaced
        value._create_ = classmethod(_no_new_members)  # type: ignore[attr-defined]  # private to enum: typeshed omits it
    elif isinstance(value, type):  # a constructor's api_key (a server's own) is its own business, and its
        # ValueError says what is wrong with a value given (LocalServer(faults="poll:oops"), the CLI's too)
        value.__init__ = boundary(value.__init__, key_source=None, as_usage=(ValueError,))  # type: ignore[misc]  # a constructor replaced on purpose
    elif callable(value):
        return boundary(value)
    return value


def _no_such_member(cls: type[enum.Enum], value: object) -> None:
    """An Enum's lookup of a value it does not have: a ValidationError naming the values it has (a ValueError,
    as Python's own)."""
    raise ValidationError(f"{str(value)[:60]!r} is not a {cls.__name__}; one of "
                          f"{', '.join(str(m.value) for m in cls)}", reason="invalid_status")


_no_such_member.spark_nb_boundary = True  # type: ignore[attr-defined]  # a mark on the function: see guarded


def _no_new_members(cls: type[enum.Enum], value: object, names: object, *args: Any, **kwargs: Any) -> None:
    """Python 3.10 and 3.11 take an Enum called with two values for its functional API (a new Enum): a lookup of
    the pair, as 3.12 does, which fails as any value it does not have."""
    _no_such_member(cls, (value, names))


def path_argument(value: object, what: str) -> Path:
    """value as a Path when it is a str or path-like (a Result is its video), else a UsageError naming what."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise UsageError(f"{what} must be a path (a str or a Path), not {type(value).__name__}",
                     hint=f"pass {what} as a file or folder path")


def number_argument(value: object, what: str, *, more_than: float | None = None, at_least: float | None = None,
                    integer: bool = False, error: type[SparkError] = UsageError) -> float:
    """value as a number when it is a finite real (an integer if said) within the bound given: a UsageError for
    another type, `error` (a UsageError unless said) for NaN, infinity or a value out of bounds."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise UsageError(f"{what} must be {'a whole number' if integer else 'a number'}, not "
                         f"{type(value).__name__} {str(value)[:40]!r}")
    number = float(value)
    if not math.isfinite(number) or (more_than is not None and number <= more_than) or \
            (at_least is not None and number < at_least):
        bound = f"more than {more_than:g}" if more_than is not None else \
            f"at least {at_least:g}" if at_least is not None else "a finite number"
        raise error(f"{what} must be {bound}, not {value}")
    return number
