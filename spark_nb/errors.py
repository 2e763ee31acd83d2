"""The exception tree: every error spark_nb raises is a SparkError that says what to do.

Whatever an error carries is made safe when it is constructed: its message, hint, task id, request id and body
are inert (no escape sequences or control characters: `_text.inert`, line breaks kept) and redacted (no live
secret, no bearer token: `_secrets.redact`). So no path from a peer's answer to a terminal, a widget, a log,
the journal or a report can carry the key or drive the terminal, whichever way the error travels.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from ._money import format_usd, usd
from ._secrets import redact
from ._text import inert

if TYPE_CHECKING:
    from types import FrameType

__all__ = [
    "REASONS", "APIError", "AuthenticationError", "BudgetExceeded", "CostUnknown", "DownloadError", "JournalError",
    "MediaError", "NotFoundError", "PermissionDeniedError", "RateLimitError", "ServerError", "SparkError",
    "SparkWarning", "TaskCancelled", "TaskFailed", "TaskMayExist", "TaskTimeout", "UploadError", "UsageError",
    "ValidationError", "WriteError",
]  # safe_text, warn and internal_error are for spark_nb's own modules

def safe_text(text: object, *, newlines: bool = True, limit: int | None = None) -> str:
    """text as spark_nb may show or write it: inert (line breaks kept unless newlines=False), redacted, then cut to
    limit characters (after the redaction: a cut through a key would leave a part of it that no longer matches)."""
    shown = redact(inert(text, newlines=newlines))
    return shown if limit is None else inert(shown, limit=limit, newlines=True)


def _safe_or_none(text: object, *, newlines: bool = True, limit: int | None = None) -> str | None:
    return None if text is None else safe_text(text, newlines=newlines, limit=limit)


class SparkError(Exception):
    """Root of every error spark_nb raises; carries a hint and the task id when there is one.

    str() of it is its headline, and the hint on a second line (`  -> ...`). Everything it carries is made safe as
    it is made (inert, the key redacted), so it may be printed, logged or shown anywhere.

    Args:
        message: what went wrong (kept as `.message`).
        hint: what to do about it (`.hint`), or None.
        task_id: the task concerned (`.task_id`), or None.
    """

    def __init__(self, message: str, *, hint: str | None = None, task_id: str | None = None) -> None:
        message = safe_text(message)
        super().__init__(message)
        self.message = message
        self.hint = _safe_or_none(hint)
        self.task_id = _safe_or_none(task_id, newlines=False)

    @property
    def headline(self) -> str:
        """What went wrong, with the task id when there is one (str() adds the hint on a second line)."""
        text = str(self.args[0]) if self.args else type(self).__name__
        if self.task_id and self.task_id not in text:
            text = f"{text} (task {self.task_id})"
        return text

    def __str__(self) -> str:
        return f"{self.headline}\n  -> {self.hint}" if self.hint else self.headline


class ValidationError(SparkError, ValueError):
    """A local input is missing or breaks the model's rules; nothing was uploaded or billed.

    Also a ValueError. Raised before anything is uploaded or created, also for the arguments of history() and for a
    batch manifest.

    Args:
        message: what is wrong with the input (prefixed `[code] ` when there is a code).
        reason: what is wrong in a word a program can test (`.reason`, one of `REASONS`).
        hint: how to fix it.
        code: the model's error code for it (`.code`), when the service would answer one.
        field: which input (`.field`: the argument name, e.g. "image").

    Raises:
        ValueError: a reason not in REASONS (a bug in spark_nb).
    """

    def __init__(
        self, message: str, *, reason: str, hint: str | None = None, code: str | None = None,
        field: str | None = None,
    ) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown ValidationError reason {reason!r}; add it to REASONS")
        super().__init__(f"[{code}] {message}" if code else message, hint=hint)
        self.reason = reason
        self.code = code
        self.field = field


REASONS = frozenset({
    "missing",            # no input given
    "unsupported_type",   # not a path, URL, bytes or upload
    "unsupported_url",    # a URL of another scheme than http(s)
    "invalid_url",        # an http(s) URL that no server could fetch
    "no_such_file",       # a path that names no file
    "empty",              # bytes or an upload with nothing in them
    "image_too_large",    # over 5 MB or 4096 px: shrinking fixes it
    "unsupported_format",  # an image format the model does not take
    "not_decodable",      # the file does not decode as what it should be
    "no_audio",           # no audio stream, or no sound
    "no_video",           # no picture stream
    "still_video",        # a picture where a moving video is needed
    "media_too_large",    # audio or video over the input size limit
    "media_too_long",     # audio or video over the input length limit
    "unusable_output_dir",  # the folder for results cannot be written
    "unknown_model",      # a model id or alias no spec describes
    "invalid_since",      # history(since=...) that is not a time
    "invalid_status",     # history(status=...) that is not a task status
    "manifest",           # a batch manifest's problems
    "url_unreachable",    # an input URL that does not answer with a file (404, no such host, refused, ...)
    "no_face",            # strict=True: no face found in a portrait (otherwise advice)
    "audio_too_long",     # strict=True with trim_audio=False: audio over the recommended 15 s (otherwise advice)
    "audio_unmeasured",   # strict=True: speech given as a URL, whose length cannot be checked (otherwise advice)
    "service_changed",    # the service's published spec no longer accepts what this spark-nb sends
})
"""Every `ValidationError.reason`, each a word a program can test (`missing`, `no_face`, `image_too_large`, ...)."""


class APIError(SparkError):
    """The service answered with an HTTP error: its status, request id (when sent) and body (key redacted).

    Args:
        message: what failed, with the status.
        status_code: the HTTP status (`.status_code`), None when there was no answer.
        hint: what to do about it.
        task_id: the task concerned, if any.
        request_id: the service's request id (`.request_id`), for its support.
        body: the answer's body (`.body`), inert and redacted.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, hint: str | None = None, task_id: str | None = None,
        request_id: str | None = None, body: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, task_id=task_id)
        self.status_code = status_code
        self.request_id = _safe_or_none(request_id, newlines=False, limit=200)
        self.body = _safe_or_none(body)


class AuthenticationError(APIError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIError):
    """403 (insufficient balance or permission denied) or 402 (insufficient credits)."""


class NotFoundError(APIError):
    """404: the task id is unknown to this backend."""


class RateLimitError(APIError):
    """429: the rate limit was exceeded and retries did not get through in time."""


class ServerError(APIError):
    """5xx: the service failed; retries did not get through in time."""


class TaskMayExist(SparkError):
    """The create call's answer was lost: a task may have been created (and billed), so it was not resent.

    The journal keeps the attempt; `spark-nb history` lists it, and a batch row in this state is `uncertain`.

    Args:
        message: what happened to the create call.
        hint: how to find out whether the task exists, and how to submit again knowingly.
        model: the model id (`.model`).
        submitted_at: when the create was sent (`.submitted_at`, local time).
    """

    def __init__(self, message: str, *, hint: str | None = None, model: str = "", submitted_at: str = "") -> None:
        super().__init__(message, hint=hint)
        self.model = model
        self.submitted_at = submitted_at


def _dollars(amount: Decimal | float) -> Decimal:
    return usd(amount) or Decimal(0)


class BudgetExceeded(SparkError):
    """Creating this task would take spending past the budget; nothing was uploaded or created.

    Its figures are decimal.Decimal amounts of US dollars.

    Args:
        spend: what finished tasks cost so far (`.spend`).
        running: what tasks still running are expected to cost (`.running`).
        estimate: what this task is expected to cost (`.estimate`).
        budget: the budget (`.budget`: SPARK_NB_BUDGET_USD or configure(budget_usd=)).
    """

    def __init__(self, *, spend: Decimal | float, running: Decimal | float, estimate: Decimal | float,
                 budget: Decimal | float) -> None:
        spend, running, estimate, budget = (_dollars(a) for a in (spend, running, estimate, budget))
        super().__init__(
            f"this task would pass the budget of {format_usd(budget)}: spent {format_usd(spend)}, tasks still "
            f"running about {format_usd(running)}, this one about {format_usd(estimate)}",
            hint="raise SPARK_NB_BUDGET_USD (or configure(budget_usd=...)), or see spark_nb.history() for the spend")
        self.spend, self.running, self.estimate, self.budget = spend, running, estimate, budget


class TaskFailed(SparkError):
    """The task (or its creation) failed with one of the model's error codes.

    Args:
        message: the service's message (`.message`).
        code: the model's error code (`.code`), or None when the service gave none.
        task_id: the task, or None when it was refused before it existed.
        hint: what the code means and what to do.
        retryable: whether the same inputs may succeed if submitted again (`.retryable`).
    """

    def __init__(
        self, message: str, *, code: str | None, task_id: str | None, hint: str | None = None, retryable: bool = False
    ) -> None:
        shown = f"[{code}] {message}" if code else message
        super().__init__(shown, hint=hint, task_id=task_id)
        self.code = _safe_or_none(code, newlines=False)
        self.message = safe_text(message)
        self.retryable = retryable


class TaskTimeout(SparkError, TimeoutError):
    """The deadline passed before the task finished; the task goes on and can be resumed.

    Also a TimeoutError. The hint holds the line that resumes it.

    Args:
        message: what timed out, and after how long.
        task_id: the task, still running.
        model: its model id (`.model`).
    """

    def __init__(self, message: str, *, task_id: str, model: str) -> None:
        resume = f'spark_nb.Task.from_id("{task_id}", model="{model}").wait()'
        super().__init__(message, hint=f"the task keeps running; resume it with {resume}", task_id=task_id)
        self.model = model


class TaskCancelled(SparkError):
    """Waiting was cancelled (async cancellation); the task itself keeps running on the service."""


class MediaError(SparkError, ValueError):
    """A media helper (spark_nb.media) or the bundled ffmpeg could not do what was asked with a file."""


class UsageError(SparkError, TypeError):
    """spark_nb was called wrongly: an unknown option, or a form asked to generate twice at once."""


class DownloadError(SparkError):
    """The result video could not be downloaded intact."""


class UploadError(SparkError):
    """A local file could not be turned into a URL the service can fetch."""


class WriteError(SparkError, OSError):
    """A file spark_nb writes (a report, a record) could not be written; the message names it and what to do.

    An OSError too (errno and filename set), so code that handles a failed write as an OSError still does.
    """


def internal_error(exc: Exception, task_id: str | None = None, model: str | None = None) -> SparkError:
    """The SparkError an unexpected exception becomes at the public boundary (the caller chains it `from exc`)."""
    what = safe_text(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, limit=1000)
    hint = "this is a bug in spark_nb: please report it with this message and the traceback"
    if task_id:
        hint += (f"; the task keeps running on the service: resume it with "
                 f'spark_nb.Task.from_id("{task_id}", model="{model or ""}").wait()')
    return SparkError(f"unexpected internal error: {what}", hint=hint, task_id=task_id)


class SparkWarning(UserWarning):
    """What spark_nb warns of: advice on an input (no face found, long audio), a trimmed clip.

    Silence it with `warnings.filterwarnings("ignore", category=spark_nb.errors.SparkWarning)`.
    """


def warn(message: str) -> None:
    """warnings.warn a SparkWarning pointing at the user's line (the first caller outside spark_nb), made safe."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame: FrameType | None = sys._getframe(1)
    level = 2  # level 1 is this function
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(safe_text(message), SparkWarning, stacklevel=level)


class JournalError(SparkError):
    """The task journal (SPARK_NB_HOME/journal.sqlite) could not be read or written; the message says what to do.

    Args:
        message: what went wrong with the file.
        hint: what to do (free space, permissions, another home).
        task_id: set when a task was created but could not be recorded: resume it with the line in the hint.
        path: the journal's file (`.path`).
    """

    def __init__(self, message: str, *, hint: str | None = None, task_id: str | None = None,
                 path: str = "") -> None:
        super().__init__(message, hint=hint, task_id=task_id)
        self.path = path


class CostUnknown(BudgetExceeded):
    """Under a budget, a model whose cost is not known yet runs one task at a time, and one is running now.

    A BudgetExceeded (its estimate is 0): nothing was uploaded or created.

    Args:
        model: the model id (`.model`).
        budget: the budget, in US dollars.
        spend: what finished tasks cost so far.
        running: what tasks still running are expected to cost.
        blocking: which task holds the turn (named in the message).
        attempt: the journal's attempt of that task (`.attempt`).
        creator_alive: whether the process that created it still runs (`.creator_alive`).
        hint: what to do (wait for it, resume it, raise the budget).
        service: the address (base URL) where the model's cost is unknown, named in the message.
        elsewhere: the model's dearest known cost at another address, named in the message (`.estimate`).
    """

    def __init__(self, *, model: str, budget: Decimal | float, spend: Decimal | float, running: Decimal | float,
                 blocking: str, attempt: str, creator_alive: bool, hint: str, service: str | None = None,
                 elsewhere: Decimal | None = None) -> None:
        where = f" at {service}" if service else ""
        known = "" if elsewhere is None else f"; at another address the dearest was {format_usd(elsewhere)}"
        SparkError.__init__(
            self, f"the cost of a {model} task{where} is not known yet (none has finished there with a cost{known}), "
                  f"so under the budget of {format_usd(budget)} one runs at a time until one has: {blocking}",
            hint=hint)
        self.spend, self.running, self.budget = _dollars(spend), _dollars(running), _dollars(budget)
        self.estimate = Decimal(0) if elsewhere is None else _dollars(elsewhere)
        self.model, self.attempt, self.creator_alive = model, attempt, creator_alive
