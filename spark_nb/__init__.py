"""spark_nb: Vtrix Spark Avatar video models from Jupyter, with a local backend that needs no key."""

from __future__ import annotations

__version__ = "0.1.0"

from . import avatar, imitator  # noqa: E402
from .config import Settings, configure  # noqa: E402
from .config import apply_env_log_level as _apply_env_log_level  # noqa: E402
from .errors import (  # noqa: E402
    APIError,
    AuthenticationError,
    DownloadError,
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
    ValidationError,
)
from .results import Result  # noqa: E402
from .tasks import Task, TaskState  # noqa: E402
from .uploads import HTTPUploader, S3Uploader  # noqa: E402

_apply_env_log_level()

__all__ = [
    "APIError",
    "AuthenticationError",
    "DownloadError",
    "HTTPUploader",
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
    "ValidationError",
    "__version__",
    "avatar",
    "configure",
    "imitator",
]
