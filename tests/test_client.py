"""The HTTP client's pure pieces: error mapping with the key redacted, and the one retry loop's bounds."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from spark_nb._answers import Answer
from spark_nb._client import ApiClient, _Retry, api_error
from spark_nb._config import Secret
from spark_nb.errors import (
    APIError,
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SparkError,
)

KEY = Secret("sk-unit-0123456789abcdefSECRET")


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None) -> Answer:
    """An HTTP answer as the bounded reader returns it."""
    raw = text.encode() if text is not None else json.dumps(body).encode()
    return Answer.of(status, raw, headers)


@pytest.mark.parametrize("status,cls", [
    (401, AuthenticationError), (402, PermissionDeniedError), (403, PermissionDeniedError), (404, NotFoundError),
    (429, RateLimitError), (500, ServerError), (503, ServerError), (400, APIError), (422, APIError),
])
def test_each_status_maps_to_its_error_with_a_hint(status: int, cls: type) -> None:
    """Every HTTP error becomes its APIError subclass, carrying the status, the server's message and a hint."""
    error = api_error(answer(status, {"message": "nope"}), "creating the task", task_id="t9")
    assert type(error) is cls and error.status_code == status and error.task_id == "t9"
    assert f"creating the task failed: HTTP {status}: nope" in str(error) and error.hint


def test_the_key_is_redacted_from_everything_built_from_server_text() -> None:
    """A server echoing the key or the Authorization header: message, body and request id hold no key."""
    echo = f"bad request; you sent Authorization: Bearer {KEY.reveal()} and key={KEY.reveal()}"
    error = api_error(answer(400, {"message": echo}, headers={"x-request-id": f"req-{KEY.reveal()}"}), "x")
    for text in (str(error), repr(error), error.body or "", error.request_id or ""):
        assert KEY.reveal() not in text
    assert "Bearer ********" in str(error) and error.request_id == "req-********"
    other = api_error(answer(401, text="Authorization: Bearer someone-elses-token-123"), "x")
    assert "someone-elses-token" not in (other.body or "") and other.body == "Authorization: Bearer ********"


def test_request_id_and_body_are_kept() -> None:
    """The request id (for the service's support) and the whole body are on the error; the message stays short."""
    long = "x" * 5000
    error = api_error(answer(500, {"message": long}, headers={"X-Request-Id": "abc-123"}), "reading")
    assert error.request_id == "abc-123"
    assert error.body is not None and len(error.body) == 4000 and len(str(error)) < 500
    assert api_error(answer(502, text="<html>gateway</html>"), "reading").body == "<html>gateway</html>"


def test_the_retry_loop_stops_at_its_deadline() -> None:
    """A call that keeps failing is retried until the deadline, then gives up with the attempt count."""
    client = ApiClient("https://api.example", KEY)
    calls: list[float] = []

    def attempt() -> None:
        calls.append(time.monotonic())
        raise _Retry("HTTP 503")

    started = time.monotonic()
    with pytest.raises(SparkError, match=r"gave up after (\d+) attempts") as info:
        client._attempts(attempt, what="reading", attempts=200, deadline=started + 1.0,
                         give_up=lambda problem, n: SparkError(f"gave up after {n} attempts; last: {problem}"))
    assert 0.9 <= time.monotonic() - started < 3.0  # the upper bound: a loaded machine's slack, not a speed test
    assert len(calls) >= 2 and str(len(calls)) in str(info.value)
    client.close()


def test_the_retry_loop_stops_at_its_attempts_and_returns_a_success() -> None:
    """max attempts bound the loop without a deadline; a later success is returned as is."""
    client = ApiClient("https://api.example", KEY)
    client.retry = client.retry.__class__(max_attempts=3, base_delay=0.01, max_delay=0.02)
    answers = iter([_Retry("a"), _Retry("b"), "done"])

    def attempt() -> str:
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    assert client._attempts(attempt, what="x", give_up=lambda p, n: SparkError(str(n))) == "done"
    with pytest.raises(SparkError, match="^3$"):
        client._attempts(lambda: (_ for _ in ()).throw(_Retry("z")), what="x", give_up=lambda p, n: SparkError(str(n)))
    client.close()


def test_a_request_refused_before_it_was_sent_is_not_sent_not_may_exist(tmp_path: Path) -> None:
    """A create that HTTP itself refuses (h11: an illegal header value, here a key changed after its check) or a
    base URL that is no URL: a plain SparkError saying nothing was sent, never TaskMayExist; the peer saw nothing;
    the journal forgets the attempt, so the same call is tried again rather than refused as "may exist"."""
    import spark_nb
    from spark_nb import avatar

    from .peers import Peer

    api = Peer(lambda p, conn, req: p.json(conn, 200, {"id": "t-1", "status": "pending"}))
    key = Secret("sk-unit-refused-0123456789")
    key._value = "sk-unit-refused\n0123456789"  # past the check at entry: the second line of defence
    client = ApiClient(api.url, key)
    try:
        with pytest.raises(SparkError, match="could not be sent .*; nothing was sent") as info:
            client.create("spark_avatar_picture_omni_v2", {"image_url": "https://i.example/f.jpg"})
        assert type(info.value) is SparkError and "0123456789" not in str(info.value) and api.seen == []
    finally:
        client.close()
        api.stop()
    for base_url, said in (("ftp://127.0.0.1:9", "the URL is not usable"), ("http://127.0.0.1:9/v\x7f1", "not a URL")):
        options = {"backend": "cloud", "base_url": base_url, "api_key": KEY, "output_dir": tmp_path}
        for _ in range(2):  # the second call is sent (and refused) again: nothing "may exist"
            with pytest.raises(SparkError, match=said) as refused:
                avatar.generate("https://i.example/f.jpg", "https://i.example/a.wav", progress=False, **options)
            assert not isinstance(refused.value, spark_nb.TaskMayExist) and "nothing was sent" in str(refused.value)
    assert all(e.status != "uncertain" for e in spark_nb.history())


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_an_http_loopback_api_is_never_reached_through_the_environments_proxy(
        host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY and ALL_PROXY naming a proxy (here a recording peer standing in for proxy.corp:3128), a call to
    an http:// loopback base URL goes straight to it: the proxy never sees the request, nor the key in clear."""
    from .peers import Peer

    api = Peer(lambda p, conn, req: p.json(conn, 200, {"id": "t-1", "status": "pending"}))
    proxy = Peer(lambda p, conn, req: p.json(conn, 502, {"message": "the proxy answered"}))
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = ApiClient(api.url.replace("127.0.0.1", host), KEY)
    try:
        assert client.get_task("t-1", deadline=time.monotonic() + 10)["status"] == "pending"
        assert proxy.seen == [] and len(api.seen) == 1
        assert api.seen[0].headers["authorization"] == f"Bearer {KEY.reveal()}"
    finally:
        client.close()
        api.stop()
        proxy.stop()
