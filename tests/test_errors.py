"""Every seed error code and HTTP error, from the server's wire answer to the exception the user sees."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import avatar, imitator
from spark_nb._answers import Answer
from spark_nb._client import ApiClient
from spark_nb._config import Secret
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

MakeServer = Callable[..., LocalServer]
AVATAR = "spark_avatar_picture_omni_v2"
IMITATOR = "spark_avatar_imitator_v2v"
WRONG_KEY = "sk-wrong-9876543210fedcbaSECRET"
IMAGE = "https://example.invalid/face.jpg"  # never fetched: the request is refused before a task exists
AUDIO = "https://example.invalid/speech.wav"
VIDEO = "https://example.invalid/drive.mp4"

# (model, params, code, the seed page's description of the code)
INPUT_ERRORS: list[tuple[str, Any, str, str]] = [
    (AVATAR, {"audio_url": AUDIO}, "003016001", "Image URL missing"),
    (AVATAR, {"image_url": IMAGE}, "003016002", "Audio URL missing"),
    (IMITATOR, {"driving_video_info": {"video_url": VIDEO, "store_type": 0}}, "003018001", "Image URL missing"),
    (IMITATOR, {"image_url": IMAGE}, "003018002", "Driving video information missing"),
    (IMITATOR, {"image_url": IMAGE, "driving_video_info": {"video_url": VIDEO}}, "003018003",
     "Storage type missing"),
    (IMITATOR, {"image_url": IMAGE, "driving_video_info": {"store_type": 0}}, "003018004", "Video URL missing"),
    (IMITATOR, {"image_url": IMAGE, "driving_video_info": {"video_url": VIDEO, "store_type": 1}}, "003018005",
     "Invalid storage type"),
    (IMITATOR, {"image_url": IMAGE, "driving_video_info": VIDEO}, "003018006",
     "Invalid driving video information format"),
]
SERVICE_FAILURES = {
    "095": "Internal generation error",
    "096": "Result parsing error",
    "097": "HTTP error response",
    "098": "Status check error",
    "099": "Task creation error",
}
PREFIXES = {AVATAR: "003016", IMITATOR: "003018"}


def assert_no_key(exc: BaseException) -> None:
    """Neither the real nor a wrong API key shows in the exception's str or repr."""
    for key in (TEST_KEY, WRONG_KEY):
        assert key not in str(exc)
        assert key not in repr(exc)


@pytest.fixture
def api(server: LocalServer) -> Iterator[ApiClient]:
    """An ApiClient of its own for the `server` fixture, closed afterwards."""
    client = ApiClient(server.url, Secret(TEST_KEY))
    yield client
    client.close()


def generate(model: str, media: dict[str, Path], config: dict[str, Any], **inputs: Any) -> spark_nb.Result:
    """Run the model's generate() on the usual media, with any input overridden."""
    if model == AVATAR:
        return avatar.generate(inputs.get("image", media["portrait"]), inputs.get("audio", media["speech"]),
                               progress=False, **config)
    return imitator.generate(inputs.get("image", media["portrait"]), inputs.get("video", media["driving"]),
                             progress=False, **config)


@pytest.mark.parametrize("model,params,code,text", INPUT_ERRORS, ids=[case[2] for case in INPUT_ERRORS])
def test_malformed_params_answer_400_with_the_seed_code(model: str, params: Any, code: str, text: str,
                                                        server: LocalServer) -> None:
    """A create with malformed params is refused with HTTP 400, the seed code and text, and no task id."""
    with httpx.Client(timeout=30, trust_env=False) as http:
        response = http.post(f"{server.url}/model/v1/generation",
                             json={"model": model, "input": [{"params": params}]},
                             headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert response.status_code == 400
    body = response.json()
    assert "id" not in body
    assert body["error"]["code"] == code
    assert body["error"]["error_message"] == text
    assert server.stats()["created"] == 0
    assert server.service.tasks == {}


@pytest.mark.parametrize("model,params,code,text", INPUT_ERRORS, ids=[case[2] for case in INPUT_ERRORS])
def test_malformed_params_raise_task_failed(model: str, params: Any, code: str, text: str, server: LocalServer,
                                            api: ApiClient) -> None:
    """ApiClient.create turns the refusal into a non-retryable TaskFailed with the code, the text and a hint."""
    with pytest.raises(spark_nb.TaskFailed) as info:
        api.create(model, params)
    exc = info.value
    assert exc.code == code
    assert exc.message == text
    assert f"[{code}] {text}" in str(exc)
    assert exc.hint and exc.hint in str(exc)
    assert exc.retryable is False
    assert exc.task_id is None
    assert_no_key(exc)
    assert server.stats()["created"] == 0


@pytest.mark.parametrize("suffix", sorted(SERVICE_FAILURES))
@pytest.mark.parametrize("model", [AVATAR, IMITATOR])
@pytest.mark.slow
def test_service_failures_raise_retryable_task_failed(model: str, suffix: str, make_server: MakeServer,
                                                      media: dict[str, Path]) -> None:
    """Each service failure code 095..099 of each model ends generate() in a retryable TaskFailed naming the task."""
    server = make_server(api_key=TEST_KEY, faults=f"render:{suffix}:1")
    with pytest.raises(spark_nb.TaskFailed) as info:
        generate(model, media, cloud_config(server))
    exc = info.value
    assert exc.code == PREFIXES[model] + suffix
    assert SERVICE_FAILURES[suffix] in exc.message
    assert exc.retryable is True
    assert exc.task_id is not None
    assert list(server.service.tasks) == [exc.task_id]
    assert exc.task_id in str(exc)
    assert exc.hint == spark_nb.models.SERVICE_FAILURE_HINT
    assert exc.hint in str(exc)
    assert_no_key(exc)
    stats = server.stats()
    assert stats["created"] == 1 and stats["downloads"] == 0
    assert stats["faults"] == {f"render:{suffix}": 1}


@pytest.mark.parametrize("model,which,field", [
    (AVATAR, "image", "image_url"),
    (AVATAR, "audio", "audio_url"),
    (IMITATOR, "image", "image_url"),
    (IMITATOR, "video", "driving_video_info.video_url"),
])
@pytest.mark.slow
def test_an_input_url_that_404s_fails_the_task_with_095(model: str, which: str, field: str, server: LocalServer,
                                                        media: dict[str, Path]) -> None:
    """An input URL the service cannot fetch (HTTP 404; sent unchecked, as URLs only the service could reach are)
    fails the task with ...095 naming that input; it is that input's failure: not retryable (the same URL fails
    again), and the hint says to check that input instead of suggesting to pay again."""
    missing = f"{server.url}/files/uploads/missing{'.jpg' if which == 'image' else '.mp4'}"
    assert httpx.get(missing, trust_env=False).status_code == 404
    with pytest.raises(spark_nb.TaskFailed) as info:
        generate(model, media, cloud_config(server), **{which: missing})
    exc = info.value
    assert exc.code == f"{PREFIXES[model]}095"
    assert field in exc.message
    assert "404" in exc.message
    assert exc.retryable is False
    assert exc.hint is not None and "could not fetch or read the " in exc.hint and f"({field})" in exc.hint
    assert "may succeed" not in exc.hint
    assert exc.task_id is not None and exc.task_id in str(exc)
    assert_no_key(exc)
    assert server.stats()["created"] == 1


def test_a_wrong_key_raises_authentication_error(server: LocalServer, media: dict[str, Path]) -> None:
    """A wrong key is a 401 AuthenticationError, whether the upload or the create call meets it first."""
    config = cloud_config(server, api_key=WRONG_KEY)
    with pytest.raises(spark_nb.AuthenticationError) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **config)
    assert info.value.status_code == 401
    assert info.value.hint
    assert_no_key(info.value)

    urls = (f"{server.url}/files/uploads/face.jpg", f"{server.url}/files/uploads/speech.wav")
    with pytest.raises(spark_nb.AuthenticationError) as info:
        avatar.generate(*urls, progress=False, **config)
    assert info.value.status_code == 401
    assert "creating the task" in str(info.value)
    assert_no_key(info.value)
    stats = server.stats()
    assert stats["created"] == 0 and stats["uploads"] == 0


def test_an_unknown_task_raises_not_found(server: LocalServer) -> None:
    """Task.from_id(...).status() for an id the server never issued is a 404 NotFoundError naming the id."""
    task_id = "f" * 32
    task = spark_nb.Task.from_id(task_id, model=AVATAR, **cloud_config(server))
    with pytest.raises(spark_nb.NotFoundError) as info:
        task.status()
    assert info.value.status_code == 404
    assert info.value.task_id == task_id
    assert task_id in str(info.value)
    assert info.value.hint
    assert_no_key(info.value)
    assert server.stats()["polls"] == 1


# -- the shapes of an error the official client knows (pure, no server) ---------------------------------------

ERROR_SHAPES: list[tuple[Any, str | None, str, bool]] = [
    ({"code": "003016002", "error_message": "Audio URL missing"}, "003016002", "Audio URL missing", False),
    ({"code": 3016002, "error_message": "Audio URL missing"}, "003016002", "Audio URL missing", False),
    ({"code": "003016095", "message": "Internal generation error"}, "003016095", "Internal generation error", True),
    ({"code": 3016097, "message": "HTTP error response"}, "003016097", "HTTP error response", True),
    ("Audio URL missing", None, "Audio URL missing", False),
    ({"code": None, "message": "went wrong"}, None, "went wrong", False),
    ({"code": "", "error_message": "went wrong"}, None, "went wrong", False),
    ({"code": [1], "error_message": "went wrong"}, None, "went wrong", False),
    ({"code": True, "error_message": "went wrong"}, None, "went wrong", False),
    ({}, None, "the task failed", False), (None, None, "the task failed", False),
]


@pytest.mark.parametrize("error,code,text,retryable", ERROR_SHAPES, ids=[repr(e)[:40] for e, *_ in ERROR_SHAPES])
def test_every_error_shape_is_a_task_failed(error: Any, code: str | None, text: str, retryable: bool) -> None:
    """error as a plain string, or an object with code (a string, a number, null) and error_message or message:
    a TaskFailed with the nine-digit code (or none), the text, a hint; a code that is not a code is ignored."""
    exc = spark_nb.models.task_failure(error, "t-1", AVATAR)
    assert isinstance(exc, spark_nb.SparkError)
    assert exc.code == code and exc.message == text and exc.retryable is retryable and exc.hint


def http_answer(status: int, body: Any) -> Answer:
    """An HTTP answer with a JSON body, as the bounded reader returns it."""
    return Answer.of(status, json.dumps(body).encode())


@pytest.mark.parametrize("status,body", [
    (402, {"code": 40201, "message": "insufficient credits"}),
    (402, {"code": "40201", "error": "insufficient credits"}),
    (402, None),
    (403, {"message": "insufficient balance"}),
    (403, {"error": {"code": 40201, "message": "no credits left"}}),
    (403, {"code": "40201", "message": "refused"}),
])
def test_no_credit_is_one_error_with_the_top_up_hint(status: int, body: Any) -> None:
    """HTTP 402 (code 40201) and a 403 for balance are the same PermissionDeniedError with the top-up hint."""
    from spark_nb._api_errors import BALANCE_HINT, api_error

    exc = api_error(http_answer(status, body), "creating the task")
    assert type(exc) is spark_nb.PermissionDeniedError and exc.status_code == status and exc.hint == BALANCE_HINT


def test_a_403_for_permission_keeps_its_own_hint() -> None:
    """A 403 that says nothing of balance or credit keeps the balance-and-permissions hint."""
    from spark_nb._api_errors import BALANCE_HINT, api_error

    exc = api_error(http_answer(403, {"message": "permission denied for this model"}), "creating the task")
    assert type(exc) is spark_nb.PermissionDeniedError and exc.hint != BALANCE_HINT and "permissions" in exc.hint


@pytest.mark.parametrize("status", [401, 402, 403])
def test_an_account_refusal_with_an_error_field_is_not_a_task_failure(status: int) -> None:
    """A create answered 401/402/403 whose body carries `error` (the protocol page: the text is in `message` or
    `error`) is the account's APIError, not a TaskFailed; the key never shows."""
    client = ApiClient("https://api.example", Secret(TEST_KEY))
    try:
        with pytest.raises(spark_nb.APIError) as info:
            client._created(http_answer(status, {"code": 40201, "error": f"insufficient credits {TEST_KEY}"}),
                            AVATAR, "now")
    finally:
        client.close()
    assert info.value.status_code == status and not isinstance(info.value, spark_nb.TaskFailed)
    assert_no_key(info.value)
    assert TEST_KEY not in (info.value.body or "") and "insufficient credits" in (info.value.body or "")


# -- text from the service is inert wherever it shows ---------------------------------------------------------

HOSTILE_MESSAGE = "Audio URL missing\x1b[2K\r\x1b]52;c;cm0gLXJmIH4K\x07\x9b31m (really)\x00"
SEQUENCES = ("\x1b", "\x07", "\r", "\x9b", "\x00", "52;c;")


def assert_inert(text: str) -> None:
    """No escape sequence (CSI erase line, OSC 52 clipboard, 8-bit CSI), CR or NUL survives in text."""
    for sequence in SEQUENCES:
        assert sequence not in text, repr(text)


def escaping_api(p: Any, conn: Any, req: Any) -> None:
    """A service whose create is refused (400) and whose task fails, each saying HOSTILE_MESSAGE."""
    if req.method == "POST":
        return p.json(conn, 400, {"message": HOSTILE_MESSAGE})
    p.json(conn, 200, {"id": "t-1", "status": "failed\x1b[8m", "model": "m\x1b]0;title\x07",
                       "error": {"code": "003016001\x1b[2K", "error_message": HOSTILE_MESSAGE}})


def test_service_messages_with_escape_sequences_reach_no_one_raw(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """A service message carrying CSI erase-line, an OSC 52 clipboard write, an 8-bit CSI, CR and NUL: inert in
    str() of the create's APIError and of the task's TaskFailed (message, code), in TaskState's status and model,
    in the journal's record, in a notice, a warning and a log line; the words themselves are kept."""
    import warnings

    from spark_nb._notices import notify
    from spark_nb.errors import warn

    from .peers import peers

    for start in peers():
        api = start(escaping_api)
        options = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY, "output_dir": tmp_path}
        with pytest.raises(spark_nb.APIError) as refused:
            avatar.generate("https://i.example/f.jpg", "https://i.example/a.wav", progress=False, **options)
        task = spark_nb.Task.from_id("t-1", **options)
        state = task.status()
        with pytest.raises(spark_nb.TaskFailed) as failed:
            task.wait(10, progress=False)
        with caplog.at_level(logging.DEBUG, logger="spark_nb"), warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            notify(f"spark_nb: the service said {HOSTILE_MESSAGE}")
            warn(f"the service said {HOSTILE_MESSAGE}")
            logging.getLogger("spark_nb.client").warning("the service said %s", HOSTILE_MESSAGE)
        entries = spark_nb.history()
    texts = [str(refused.value), str(failed.value), failed.value.message, failed.value.code or "", state.status,
             state.model, capsys.readouterr().err, str(warned[0].message), caplog.records[-1].getMessage(),
             *(e.error or "" for e in entries)]
    for text in texts:
        assert_inert(text)
    assert "Audio URL missing" in str(failed.value) and "(really)" in str(refused.value)
    assert state.status == "failed" and failed.value.code == "003016001"


def test_the_cli_prints_a_service_message_inert(tmp_path: Path) -> None:
    """`spark-nb status` of a task the service failed with escape sequences in its message: stderr holds the
    message's words and none of its sequences."""
    import subprocess
    import sys

    from .peers import peers

    for start in peers():
        api = start(escaping_api)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "XDG_CONFIG"))}
        env.update(VTRIX_GENERATION_URL=api.url, VTRIX_API_KEY=TEST_KEY, VTRIX_NO_KEYCHAIN="1")
        proc = subprocess.run([sys.executable, "-m", "spark_nb", "status", "t-1"], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "spark-nb: error: [003016001] Audio URL missing" in proc.stderr
    assert_inert(proc.stderr + proc.stdout)
