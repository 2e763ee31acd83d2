"""The task-object variants the official client knows, each answered by a real local server over HTTP on loopback.

The server's `answer_style` (see spark_nb.local._server.ANSWER_STYLES) shapes its answers as the protocol page's
variants; the fault kind `create:402` refuses a create for want of credit. The pure parsing of every shape,
hostile ones included, is in tests/test_tasks.py and tests/test_errors.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb._api_errors import BALANCE_HINT
from spark_nb._client import ApiClient
from spark_nb._config import Secret
from spark_nb._ffmpeg import read_header
from spark_nb._task_state import cost_of
from spark_nb._tasks import result_path
from spark_nb.local import LocalServer
from spark_nb.local._server import ANSWER_STYLES, answer_styles

from .conftest import TEST_KEY, cloud_config

MakeServer = Callable[..., LocalServer]
PRICE = 0.25  # the server's cost per second of video, so every variant has a cost to read
PREFIX = "003016"  # the talking avatar's codes

COMPLETED_STYLES = ["seed", "content", "usage", "priced", "strings", "content,usage,strings", "content,priced,strings"]


@pytest.mark.parametrize("style", COMPLETED_STYLES)
def test_each_completed_variant_generates_over_the_wire(style: str, make_server: MakeServer,
                                                        media: dict[str, Path]) -> None:
    """generate() on the cloud code path against each answer style: the video downloaded and decoding, its cost
    read as a float (derived from quantity × unit_price when no cost is sent), one task, one download."""
    server = make_server(api_key=TEST_KEY, answer_style=style, cost_per_second=PRICE)
    seen: list[spark_nb.TaskState] = []
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    result = task.wait(60, progress=False, on_update=seen.append)
    content = result.raw["output"][0]["content"][0]
    assert ("size" in content) == ("content" not in style) and ("jobId" in content) == ("content" not in style)
    assert result.path.is_file() and result.path.stat().st_size == result.size > 0
    assert read_header(result.path).has_video and result.duration is not None
    assert abs(result.duration - (read_header(media["speech"]).duration or 0)) < 0.3
    cost = cost_of(result.usage)
    assert isinstance(cost, Decimal) and float(cost) == pytest.approx(PRICE * result.duration, abs=0.02)
    assert result.cost == cost  # Result.cost agrees, exactly
    record = spark_nb.history()[0]
    assert record.task_id == task.id and record.cost == cost  # and so does the journal
    final = seen[-1]
    assert final.done
    if "content" in style:
        assert final.announced_size is None
        assert final.announced_duration == pytest.approx(server.service.tasks[task.id].seconds, abs=0.01)
    else:
        assert final.announced_size == result.size and final.announced_duration is None
    if "strings" in style:
        assert all(isinstance(s.raw["created_at"], str) for s in seen[1:])
        assert any(isinstance(s.raw.get("progress"), str) for s in seen) or len(seen) == 2
    stats = server.stats()
    assert stats["created"] == 1 and stats["downloads"] == 1 and stats["faults"] == {}


def test_without_an_announced_size_a_video_that_does_not_decode_is_not_kept(make_server: MakeServer,
                                                                            media: dict[str, Path]) -> None:
    """No `size` in the answer: the download is still checked by decoding; a broken one is refused, not kept, and
    fetched again by the next wait()."""
    server = make_server(api_key=TEST_KEY, answer_style="content")
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    record = server.service.tasks[task.id]
    deadline = time.monotonic() + 60
    while record.ready_at is None and record.error is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    video = server.service.storage / "results" / record.video_name  # a random name, not the task id
    good = video.read_bytes()
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 5000)  # an mp4's first bytes, then nothing
    with pytest.raises(spark_nb.DownloadError) as info:
        task.wait(60, progress=False)
    assert "cannot be decoded" in str(info.value) and info.value.task_id == task.id
    assert not result_path(task.settings.output_dir, task.id).exists()
    video.write_bytes(good)
    result = task.wait(60, progress=False)
    assert result.path.read_bytes() == good and server.stats()["created"] == 1


@pytest.mark.parametrize("style", ["seed", "error-string", "error-number", "error-message", "error-number,strings"])
def test_each_error_variant_fails_the_task_with_its_code(style: str, make_server: MakeServer,
                                                         media: dict[str, Path]) -> None:
    """A failed task's error as an object, a plain string, with a numeric code, or with `message`: a TaskFailed
    naming the task, with the code (the nine digits restored from a number) and the text; no download."""
    server = make_server(api_key=TEST_KEY, faults="render:096:1", answer_style=style)
    with pytest.raises(spark_nb.TaskFailed) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    exc = info.value
    assert "Result parsing error" in exc.message and exc.task_id in str(exc) and exc.hint
    if style == "error-string":  # a plain string carries no code: nothing to say it is the service's failure
        assert exc.code is None and exc.retryable is False
    else:
        assert exc.code == f"{PREFIX}096" and exc.retryable is True
    assert TEST_KEY not in str(exc) and TEST_KEY not in repr(exc)
    stats = server.stats()
    assert stats["created"] == 1 and stats["downloads"] == 0


@pytest.mark.parametrize("style", ["error-string", "error-number", "error-message"])
def test_a_create_refused_with_an_error_variant_is_a_task_failed(style: str, make_server: MakeServer) -> None:
    """A create refused for its params (HTTP 400, no task id) with the error in each shape is a TaskFailed."""
    server = make_server(api_key=TEST_KEY, answer_style=style)
    images = f"{server.url}/files/uploads/face.jpg"
    client = ApiClient(server.url, Secret(TEST_KEY))
    with pytest.raises(spark_nb.TaskFailed) as info:
        client.create(avatar.MODEL.id, {"image_url": images})
    client.close()
    assert "Audio URL missing" in info.value.message and info.value.task_id is None
    assert info.value.code == (None if style == "error-string" else f"{PREFIX}002")
    assert server.stats()["created"] == 0


def test_a_402_create_is_the_balance_error_sent_once(make_server: MakeServer, media: dict[str, Path]) -> None:
    """HTTP 402 {"code": 40201, "message": "insufficient credits"} on create: PermissionDeniedError with the
    top-up hint, the create sent once (no retry, nothing billed twice), no poll, no task."""
    server = make_server(api_key=TEST_KEY, faults="create:402:1")
    with pytest.raises(spark_nb.PermissionDeniedError) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    exc = info.value
    assert exc.status_code == 402 and exc.hint == BALANCE_HINT and "top up your Vtrix balance" in str(exc)
    assert "insufficient credits" in str(exc) and exc.body is not None and "40201" in exc.body
    assert TEST_KEY not in str(exc) and TEST_KEY not in repr(exc) and TEST_KEY not in exc.body
    stats = server.stats()
    assert stats["faults"] == {"create:402": 1}  # one create reached the server: never resent
    assert stats["created"] == 0 and stats["polls"] == 0 and stats["downloads"] == 0
    assert server.requests == stats["uploads"] + 1


def test_answer_styles_are_checked() -> None:
    """Every documented style is accepted alone; unknown or contradictory ones are a UsageError (a SparkError)."""
    for name in ANSWER_STYLES:
        assert answer_styles(name) == (frozenset() if name == "seed" else {name})
    assert answer_styles(None) == answer_styles("") == answer_styles("seed") == frozenset()
    for bad in ("sizes", "usage,priced", "error-string,error-number"):
        with pytest.raises(spark_nb.errors.UsageError):
            LocalServer(answer_style=bad)
