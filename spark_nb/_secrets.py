"""The secret values alive in this process, and the one redaction every message passes before it leaves.

Every `_config.Secret` remembers its value here when it is made. `redact` replaces each remembered value, and
anything sent as a bearer token, with asterisks; it is applied where text leaves spark_nb: an exception's
construction (`errors.SparkError`), warnings and notices, and every log record of the `spark_nb` loggers. So a
message that quotes a request (an echoed header, a refused header value) cannot carry the key to a terminal, a
log, the journal or a report, whichever path it takes.
"""

from __future__ import annotations

import re
import threading

MASK = "********"
# shorter values are not keys (the embedded server's placeholder is "local"): masking them would garble messages
MIN_SECRET_CHARS = 8
_BEARER = re.compile(r"(bearer\s+)[^\s\"',;]+", re.IGNORECASE)
_values: set[str] = set()
_longest_first: tuple[str, ...] = ()
_lock = threading.Lock()


def remember(value: str) -> None:
    """Make value one of the secrets redact() masks, for the rest of the process."""
    global _longest_first
    if len(value) < MIN_SECRET_CHARS or value in _values:
        return
    with _lock:
        _values.add(value)
        _longest_first = tuple(sorted(_values, key=len, reverse=True))


def redact(text: str) -> str:
    """text with every remembered secret, and any bearer token, replaced by asterisks."""
    for value in _longest_first:
        if value in text:
            text = text.replace(value, MASK)
    return _BEARER.sub(r"\1" + MASK, text)
