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
from ._config import apply_env_log_level as _apply_env_log_level
from ._config import configure as _configure
from ._config import resolve as _resolve
from ._history import History, HistoryEntry, history, spend
from ._results import Result
from ._tasks import Task, TaskState
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
configure = _boundary(_configure, key_source=_KEY_SOURCES["configured"])
settings = _boundary(_resolve)


def doctor(**config: Any) -> Report:
    """Check for free what a first call needs (key, service, each model's published spec, uploads, ffmpeg, journal,
    budget): a Report that shows as a table in Jupyter; nothing is created and the key is never shown."""
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
