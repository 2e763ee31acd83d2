"""The studio's terminal (Voila's process): every log line one inert line, naming a request by its path only, and
no line repeated more than once a minute.

A request's query may hold the token, and any web page can make requests to the studio (`<img src=...>` sends no
cookie, but it needs none to make a handler fail): tornado's own lines for an uncaught exception name the whole
URI and print the request's repr, and one page made two such lines per image, without bound (400 lines in 1.6 s
for `/logout`). Here: `PathOnlyLog` (mixed into every handler by `_studio_voila`) names a request by method and
path, `log_failure` (tornado's log_function) logs the studio's own failures (5xx) the same way, and `OncePerMinute`
lets a line through once a minute and at most LINES_PER_MINUTE lines a minute, saying how many it left out.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from tornado import web
from tornado.log import access_log, app_log

from ._text import inert

REPEAT_EVERY_S = 60.0
LINES_PER_MINUTE = 30
REMEMBERED = 1024  # distinct lines remembered within the minute (a bound on memory, not on what is said)


class InertLine(logging.Formatter):
    """A log record as one line a terminal only shows: its message inert (no escape sequence, control character or
    line break from a request's path), cut short, and an exception named, never its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        """`spark-nb studio: <level>: <message> (<exception type>)`."""
        text = inert(record.getMessage(), limit=300)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text += f" ({type(exc).__name__})"
        return f"spark-nb studio: {record.levelname.lower()}: {text}"


class OncePerMinute(logging.Filter):
    """Lets a line through once a minute at most, and at most LINES_PER_MINUTE lines a minute in all; the next
    line let through says how many were left out."""

    def __init__(self) -> None:
        super().__init__()
        self._said: dict[str, float] = {}
        self._window_start = -REPEAT_EVERY_S
        self._in_window = 0
        self._left_out = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether record is written (its message then notes the lines left out before it)."""
        now, text = time.monotonic(), record.getMessage()
        if now - self._window_start >= REPEAT_EVERY_S:
            self._window_start, self._in_window = now, 0
            self._said = {line: at for line, at in self._said.items() if now - at < REPEAT_EVERY_S}
        if now - self._said.get(text, -REPEAT_EVERY_S) < REPEAT_EVERY_S or self._in_window >= LINES_PER_MINUTE:
            self._left_out += 1
            return False
        if len(self._said) < REMEMBERED:
            self._said[text] = now
        self._in_window += 1
        if self._left_out:
            record.msg, record.args = f"{text} ({self._left_out} lines like it left out)", None
            self._left_out = 0
        return True


def one_inert_line_per_record(application_log: logging.Logger) -> None:
    """Route every logger of this process (tornado's, jupyter_server's, Voila's) to one handler on stderr that
    writes InertLine through OncePerMinute; the application's own handlers do the same."""
    once = OncePerMinute()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(InertLine())
    handler.addFilter(once)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    for name in ("tornado", "tornado.access", "tornado.application", "tornado.general"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for own in application_log.handlers:
        own.setFormatter(InertLine())
        own.addFilter(once)


def log_failure(handler: web.RequestHandler) -> None:
    """The terminal shows the studio's own failures (5xx), by path only (a query may hold the token); refusals of
    requests without the token or from another Host name are the studio working, not news."""
    status = handler.get_status()
    if status >= 500:
        request = handler.request
        access_log.error("%d %s %s", status, request.method, request.path)


class PathOnlyLog(web.RequestHandler):
    """A handler whose log lines name its request by method and path only: tornado's name the whole URI (its
    query) and print the request's repr (its headers)."""

    def _request_summary(self) -> str:
        return f"{self.request.method} {self.request.path}"

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        """An uncaught exception in one line, by path and exception type; a refusal (HTTPError) is not news."""
        if value is not None and not isinstance(value, web.HTTPError):
            app_log.error("uncaught exception in %s (%s)", self._request_summary(), type(value).__name__)
