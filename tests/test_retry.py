"""The retry policy's arithmetic: capped exponential backoff with jitter, and Retry-After in both forms."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from spark_nb._retry import NEVER_SENT, RETRYABLE_STATUS, RetryPolicy, parse_retry_after


@pytest.mark.parametrize("attempt", range(10))
def test_backoff_grows_then_caps_and_jitters_within_half(attempt: int) -> None:
    """Attempt n waits between half and all of min(cap, base * 2**n)."""
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    ceiling = min(8.0, 0.5 * 2**attempt)
    delays = [policy.delay(attempt) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 10  # really jittered, so clients do not retry in step


def test_retry_after_wins_and_is_capped() -> None:
    """A server's Retry-After replaces the backoff, between 0 and max_retry_after."""
    policy = RetryPolicy(max_retry_after=60.0)
    assert policy.delay(0, 3.0) == 3.0
    assert policy.delay(5, 0.0) == 0.0
    assert policy.delay(0, -4.0) == 0.0
    assert policy.delay(0, 3600.0) == 60.0


@pytest.mark.parametrize("value,expected", [("2", 2.0), ("0.5", 0.5), ("0", 0.0), ("", None), ("soon", None)])
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    """delta-seconds parse as numbers; garbage is ignored (the backoff applies)."""
    assert parse_retry_after(httpx.Headers({"Retry-After": value})) == expected


def test_retry_after_as_an_http_date() -> None:
    """An HTTP date means the seconds until then; a date in the past means now."""
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(httpx.Headers({"Retry-After": later})) <= 30  # type: ignore[operator]
    earlier = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"Retry-After": earlier})) == 0.0
    assert parse_retry_after(httpx.Headers()) is None


def test_what_counts_as_never_sent_and_retryable() -> None:
    """Only errors before a byte was sent are NEVER_SENT (a create may be retried after them); 5xx/429 retry."""
    assert issubclass(httpx.ConnectError, NEVER_SENT) and not issubclass(httpx.ReadTimeout, NEVER_SENT)
    assert not issubclass(httpx.RemoteProtocolError, NEVER_SENT)
    assert {429, 500, 502, 503, 504} <= RETRYABLE_STATUS and not {400, 401, 403, 404} & RETRYABLE_STATUS
