"""spark_nb: Vtrix Spark Avatar video models from Jupyter, with a local backend that needs no key.

The public API is what `__all__` lists here, and these modules: `avatar` and `imitator` (one per model),
`models` (the specs, to describe or register a model), `errors`, `media` (ffmpeg and moviepy helpers),
`display` (inline players), `widgets` (forms), `batch` (papermill batches), `samples`, and `local`
(the local server, for tests and other tools). Modules whose names start with `_` are internal and may
change without notice; docs/architecture.md says what each one owns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import avatar, imitator
from ._boundary import boundary as _boundary
from ._boundary import guard_public as _guard_public
from ._config import KEY_SOURCES as _KEY_SOURCES
from ._config import Settings
from ._config import configure as _configure
from ._config import resolve as _resolve
from ._history import History, HistoryEntry, history, spend
from ._logs import apply_env_log_level as _apply_env_log_level
from ._results import Result
from ._task_state import TaskState
from ._tasks import Task
from ._uploads import HTTPUploader, S3Uploader
from ._version import __version__
from .errors import (
    APIError,
    AuthenticationError,
    BudgetExceeded,
    DownloadError,
    MediaError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SparkError,
    TaskCancelled,
    TaskFailed,
    TaskMayExist,
    TaskTimeout,
    UploadError,
    UsageError,
    ValidationError,
)

if TYPE_CHECKING:
    from ._doctor import Report

_apply_env_log_level()


# public, so behind the boundary: nothing but a SparkError leaves them (settings(home=5) let a TypeError out)
@_boundary(key_source=_KEY_SOURCES["configured"])
def configure(**options: Any) -> None:
    """Set defaults for the calls of this process; a call's own arguments win over them, and they over the environment.

    configure() is also the way to have the vtrix CLI's key stores read again (they are cached for a minute).

    Args:
        **options: any of api_key, backend ("cloud" or "local"), base_url, output_dir, uploader (an upload URL or a
            callable taking a Path and returning a URL), upload_url, s3_bucket, s3_prefix, s3_endpoint_url,
            log_level, max_input_mb, max_input_seconds, home (the journal's folder), budget_usd, check_urls,
            models_url. None forgets a value set before.

    Raises:
        UsageError: an unknown option, a value of the wrong type (a folder given as a number), or an unknown
            log level.
        SparkError: an api_key with a line break, a space, a control or a non-ASCII character inside (named by its
            source, never shown).
    """
    _configure(**options)


@_boundary
def settings(**options: Any) -> Settings:
    """The settings a call with these options would use: its arguments, then configure(), then the environment.

    Nothing is shown, asked or sent: a call's notices ("using the local backend", which key store's key) are said
    where the call starts, and a malformed key found in VTRIX_API_KEY or a key store is refused by the first call
    that needs it (it is in `key_problem`).

    Args:
        **options: the options of configure(), for this call only.

    Returns:
        The Settings: backend, base URL, key (hidden), output folder, uploader, home, budget, input limits.

    Raises:
        UsageError: an unknown option, or a value of the wrong type.
        SparkError: an unknown backend, a budget or an input limit that is not a positive number, or a malformed
            api_key= (named, never shown).
    """
    return _resolve(**options)


@_boundary
def doctor(**config: Any) -> Report:
    """Check for free what a first call needs; nothing is created, and the key is never shown.

    The checks, in the order a person would debug them: the key (found? from which source? well-formed?), the
    generation URL, the key accepted, each model's published spec, the upload route, ffmpeg, the journal and the
    budget; all at once, within 25 s. Settings that cannot be read (a malformed key) fail the key check, not the
    call.

    Args:
        **config: the options of configure(), for this check only.

    Returns:
        A Report: a list of checks (`name`, `status` "ok", "warn" or "fail", `detail`, `fix`) that prints as text and
            shows as a table in Jupyter; `.ok` is False when a check failed, `.to_json()` for programs.

    Raises:
        SparkError: an api_key= with a line break, a space, a control or a non-ASCII character inside.
    """
    from ._doctor import doctor as run_doctor  # not at import: `import spark_nb` stays fast

    return run_doctor(**config)

_LAZY_MODULES = frozenset({"samples"})  # public modules reachable after a bare `import spark_nb`, loaded on first use


def __getattr__(name: str) -> object:
    """spark_nb.samples (and the other lazy modules) on first use, so `import spark_nb` stays fast."""
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "APIError",
    "AuthenticationError",
    "BudgetExceeded",
    "DownloadError",
    "HTTPUploader",
    "History",
    "HistoryEntry",
    "MediaError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Result",
    "S3Uploader",
    "ServerError",
    "Settings",
    "SparkError",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskMayExist",
    "TaskState",
    "TaskTimeout",
    "UploadError",
    "UsageError",
    "ValidationError",
    "__version__",
    "avatar",
    "configure",
    "doctor",
    "history",
    "imitator",
    "settings",
    "spend",
]
_guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
