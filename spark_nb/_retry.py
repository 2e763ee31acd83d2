"""When to retry a request and how long to wait: capped exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import math
import random
import time

import httpx

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
# Errors that prove the request never reached the server: a retried create cannot bill twice.
NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors raised before anything was sent that sending again would meet again: an illegal header value, a URL
# that is not one, a scheme other than http(s), a header that is not ASCII. Not retried; "not sent", never "may
# have been created".
NOT_SENDABLE: tuple[type[Exception], ...] = (httpx.LocalProtocolError, httpx.InvalidURL, httpx.UnsupportedProtocol,
                                             UnicodeEncodeError)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many attempts and which delays: base * 2**attempt, capped, with half of it jittered."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt number attempt+1 (attempt counts from 0)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), or None."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "nan", "inf" and negatives parse as floats but are no delay at all
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # a date without a zone is GMT in HTTP
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - time.time())
