"""What an API's error answer means: the APIError subclass for its status (402, and a 403 that speaks of the balance:
one refusal, one hint), the server's message, the request id and the body, made safe; and the error for a request
refused before it was sent."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .errors import (
    APIError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SparkError,
    safe_text,
)

if TYPE_CHECKING:
    from ._answers import Answer

MESSAGE_CHARS = 300  # of the server's text in an error message; the whole body stays on APIError.body
BODY_CHARS = 4000
_REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "cf-ray")
BALANCE_HINT = "top up your Vtrix balance, then submit again"
# 402 (code 40201, "insufficient credits") and a 403 for balance are the same refusal: one error, one hint
_BALANCE_CODES = frozenset({"40201"})
_BALANCE_WORDS = re.compile(r"\b(balance|credits?|insufficient funds|top[ -]?up)\b", re.IGNORECASE)
ACCOUNT_STATUSES = frozenset({401, 402, 403})  # the key or the account: never a task-level error, whatever the body
_STATUS_ERRORS: dict[int, tuple[type[APIError], str]] = {
    401: (AuthenticationError, "set VTRIX_API_KEY (or api_key=) to a valid key from Vtrix's API Key Management page"),
    402: (PermissionDeniedError, BALANCE_HINT),
    403: (PermissionDeniedError, "check your Vtrix balance and the key's permissions"),
    404: (NotFoundError, "check the task id, and that base URL and backend are the ones that created it"),
    429: (RateLimitError, "too many requests: lower the concurrency or wait a minute"),
}



def server_message(data: Any, answer: Answer) -> str:
    """What an error answer says: its message (top level or in `error`), else its reason phrase or status."""
    if isinstance(data, dict):
        for key in ("message", "error", "detail"):
            value = data.get(key)
            if isinstance(value, dict):
                value = value.get("error_message") or value.get("message")
            if value:
                return str(value)
    return answer.reason or f"HTTP {answer.status}"


def _about_balance(data: Any, message: str) -> bool:
    """The answer refuses for want of credit: a balance code (top level or in `error`, a string or a number) or
    words saying so in its message."""
    error = data.get("error") if isinstance(data, dict) else None
    codes = [data.get("code") if isinstance(data, dict) else None,
             error.get("code") if isinstance(error, dict) else None]
    if any(isinstance(code, (str, int)) and not isinstance(code, bool) and str(code).strip() in _BALANCE_CODES
           for code in codes):
        return True
    return bool(_BALANCE_WORDS.search(message))


def api_error(answer: Answer, what: str, task_id: str | None = None) -> APIError:
    """The APIError subclass for an HTTP error answer: a hint, the request id, and the body (made safe, as every
    error's text is, when the error is constructed: see errors.SparkError)."""
    status = answer.status
    cls, hint = _STATUS_ERRORS.get(status, (ServerError, "the service failed; try again in a minute"))
    if status < 500 and status not in _STATUS_ERRORS:
        cls, hint = APIError, "check the request; this is not a transient error"
    message = safe_text(server_message(answer.data, answer), newlines=False, limit=MESSAGE_CHARS)
    if status == 403 and _about_balance(answer.data, message):
        hint = BALANCE_HINT
    request_id = next((answer.headers[h] for h in _REQUEST_ID_HEADERS if h in answer.headers), None)
    return cls(f"{what} failed: HTTP {status}: {message}", status_code=status, hint=hint, task_id=task_id,
               request_id=request_id, body=safe_text(answer.text, limit=BODY_CHARS) or None)


def not_sent(what: str, exc: Exception, error: type[SparkError] = SparkError) -> SparkError:
    """The error for a request refused before it was sent (see _retry.NOT_SENDABLE): nothing reached the server."""
    import httpx

    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        detail = f"the URL is not usable: {exc}"
    elif isinstance(exc, UnicodeEncodeError):
        detail = "a header holds a character that is not ASCII"
    else:  # h11's message quotes the header value, which may be the key: not repeated here
        detail = "a header value that HTTP does not allow"
    return error(f"{what}: the request could not be sent ({detail}); nothing was sent",
                 hint="check the base URL (base_url= or VTRIX_GENERATION_URL), the upload URL and the API key")
