"""The call's deadline: one moment, computed once where a public call starts (generate's timeout), that every
wait on the call's way ends by, whoever waits.

`_pipeline` sets it around a call's submission (`until`); the waits read it: each request's answer and the retry
loop's backoff (`_client.ApiClient`: uploads, the create), each attempt of an S3 upload (`_uploads.S3Uploader`),
the URL inputs' checks (`_inputs_url`), the wait for an identical call another kernel is creating (`_reuse.follow`),
the journal's busy wait for the claim (`_journal`); an error at the deadline names the call's timeout (`ran_out`).
A context variable carries it, so it reaches an uploader's requests too (an `HTTPUploader` is called with a path
only) and stays with its thread (a thread of its own gets it through `contextvars.copy_context`).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

_call: contextvars.ContextVar[float | None] = contextvars.ContextVar("spark_nb_call_deadline", default=None)
_length: contextvars.ContextVar[float | None] = contextvars.ContextVar("spark_nb_call_timeout", default=None)


@contextlib.contextmanager
def until(deadline: float | None) -> Iterator[None]:
    """Within this block the call ends by deadline (time.monotonic()); None: no deadline but each wait's own."""
    token = _call.set(deadline)
    length = _length.set(None if deadline is None else max(0.0, deadline - time.monotonic()))
    try:
        yield
    finally:
        _length.reset(length)
        _call.reset(token)


def ran_out() -> str | None:
    """When the call's deadline has passed: "the call's timeout of N s" (what the call was given when its
    submission started), for an error to name; else None."""
    call, length = _call.get(), _length.get()
    if call is None or time.monotonic() < call:
        return None
    return f"the call's timeout of {round(length or 0.0, 2):g} s"


def earliest(deadline: float | None) -> float | None:
    """The sooner of deadline and the call's (either may be None: no limit)."""
    call = _call.get()
    if call is None:
        return deadline
    return call if deadline is None else min(call, deadline)


def within(seconds: float) -> float:
    """seconds, or what is left of the call's deadline if that is less (never below 0)."""
    call = _call.get()
    return seconds if call is None else max(0.0, min(seconds, call - time.monotonic()))
