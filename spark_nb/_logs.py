"""The spark_nb loggers: their level (SPARK_NB_LOG_LEVEL, configure(log_level=)) and every record made safe."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from .errors import safe_text

logger = logging.getLogger("spark_nb")
_HANDLER_NAME = "spark_nb.stderr"  # the handler set_log_level adds, once


def set_log_level(level: str | int) -> None:
    """Set the spark_nb logger's level, with a stderr handler so the messages are seen."""
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)


def apply_env_log_level() -> None:
    """Honour SPARK_NB_LOG_LEVEL at import time (and make every spark_nb log record safe, see safe_records)."""
    safe_records()
    level = os.environ.get("SPARK_NB_LOG_LEVEL")
    if level:
        set_log_level(level)


def safe_records() -> None:
    """Make every log record of the spark_nb loggers safe as it is created: its message (and traceback) inert, on
    one line, and redacted, whatever handler then writes it (ours, the root's, a notebook's, pytest's).

    A filter on the `spark_nb` logger would not do: a logger's filters do not see its children's records
    (spark_nb.client, spark_nb.journal, ...). So the record factory is wrapped, once, keeping the previous one.
    """
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "spark_nb_safe", False):  # an attribute, not a type: it survives a reload
        logging.setLogRecordFactory(_SafeRecords(previous))


class _SafeRecords:
    """The record factory safe_records installs: the previous one's records, spark_nb's made safe."""

    spark_nb_safe = True

    def __init__(self, previous: Callable[..., logging.LogRecord]) -> None:
        self._previous = previous

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._previous(*args, **kwargs)
        if record.name == "spark_nb" or record.name.startswith("spark_nb."):
            _make_safe(record)
        return record


def _make_safe(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # arguments that do not fit the format: show the format alone
        message = str(record.msg)
    record.msg, record.args = safe_text(message, newlines=False), None
    if record.exc_info and not record.exc_text:  # formatters use exc_text when it is set
        record.exc_text = safe_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = safe_text(record.stack_info)
