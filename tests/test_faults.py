"""Injected faults on every route, Retry-After, deadlines and bounded retries, over real HTTP on loopback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb._ffmpeg import read_header
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config, seed_firing_first

MakeServer = Callable[..., LocalServer]
ROUTES = ("create", "poll", "download", "upload")
KINDS = ("429", "500", "503", "reset", "reset_after", "slow", "bad_json", "truncated")
BEFORE_HANDLING = frozenset({"429", "500", "503", "reset"})  # the app never sees the faulted request
AFTER_HANDLING = frozenset({"reset_after", "bad_json", "truncated"})  # the app handled it, the answer was lost
SEED = seed_firing_first(0.5)


def faulty_server(make_server: MakeServer, route: str, kind: str, **options: object) -> LocalServer:
    """A server requiring TEST_KEY whose first request on route fails with kind and whose second succeeds."""
    return make_server(api_key=TEST_KEY, faults=f"{route}:{kind}:0.5", fault_seed=SEED, **options)


def wait_rendered(server: LocalServer, task_id: str, timeout: float = 60.0) -> None:
    """Block until the server has finished task_id, reading its in-process state (so no poll is spent)."""
    record = server.service.tasks[task_id]
    deadline = time.monotonic() + timeout
    while record.ready_at is None and record.error is None:
        assert time.monotonic() < deadline, f"task {task_id} did not render within {timeout}s"
        time.sleep(0.02)
    assert record.error is None, record.error


def assert_result(result: spark_nb.Result, server: LocalServer, speech: Path) -> None:
    """A completed, complete video of the server's one task, as long as the speech."""
    assert isinstance(result, spark_nb.Result)
    assert result.status == "completed"
    assert list(server.service.tasks) == [result.task_id]
    assert result.path.is_file()
    assert result.size > 0
    assert result.path.stat().st_size == result.size
    assert result.raw["output"][0]["content"][0]["size"] == result.size == server.service.tasks[result.task_id].size
    assert result.duration is not None
    assert abs(result.duration - (read_header(speech).duration or 0)) < 0.3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.slow
def test_a_fault_on_each_route(route: str, kind: str, make_server: MakeServer, media: dict[str, Path]) -> None:
    """One fault of each kind on each route: reads and uploads are retried once and succeed; create is never resent."""
    server = faulty_server(make_server, route, kind)
    config = cloud_config(server)
    if route == "create" and kind not in ("429", "slow"):
        with pytest.raises(spark_nb.TaskMayExist) as info:
            avatar.generate(media["portrait"], media["speech"], progress=False, **config)
        assert "may have been created" in str(info.value)
        assert "not resent" in str(info.value)
        assert info.value.model == avatar.MODEL.id
        assert TEST_KEY not in str(info.value)
        stats = server.stats()
        assert stats["faults"] == {f"create:{kind}": 1}
        assert stats["created"] == (0 if kind in BEFORE_HANDLING else 1)
        assert stats["polls"] == 0
        return
    if route == "poll":
        # generate() is submit() then wait(); the render is let finish first so the retried poll is the last one
        task = avatar.submit(media["portrait"], media["speech"], **config)
        wait_rendered(server, task.id)
        result = task.wait(timeout=60, progress=False)
    else:
        result = avatar.generate(media["portrait"], media["speech"], progress=False, **config)
    assert_result(result, server, media["speech"])
    stats = server.stats()
    assert stats["faults"] == {f"{route}:{kind}": 1}
    assert stats["created"] == 1
    handled_twice = 1 if kind in AFTER_HANDLING else 0  # the faulted request reached the app, then its retry
    if route == "poll":
        assert stats["polls"] == 1 + handled_twice
    elif route == "download":
        assert stats["downloads"] == 1 + handled_twice
    elif route == "upload":
        assert stats["uploads"] == 2 + handled_twice


def retry_gap(records: list[logging.LogRecord], message: str, then: str) -> float:
    """Seconds between the log record saying message and the next record containing then."""
    start = next(i for i, r in enumerate(records) if r.getMessage() == message)
    after = next(r for r in records[start + 1:] if then in r.getMessage())
    return after.created - records[start].created


@pytest.mark.slow
def test_retry_after_is_honoured_on_create(make_server: MakeServer, media: dict[str, Path],
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A 429 on create waits the server's Retry-After of 1 s (not the 0.25-0.5 s backoff) and then creates once."""
    server = faulty_server(make_server, "create", "429")
    caplog.set_level(logging.INFO, logger="spark_nb.client")
    started = time.monotonic()
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert time.monotonic() - started >= 1.0
    records = [r for r in caplog.records if r.name == "spark_nb.client"]
    assert "retrying create (HTTP 429) in 1.0s" in [r.getMessage() for r in records]
    assert retry_gap(records, "retrying create (HTTP 429) in 1.0s", "created task") >= 0.95
    assert_result(result, server, media["speech"])
    assert server.stats()["created"] == 1
    assert server.stats()["faults"] == {"create:429": 1}


def test_retry_after_is_honoured_on_poll(make_server: MakeServer, media: dict[str, Path],
                                         caplog: pytest.LogCaptureFixture) -> None:
    """A 429 on a poll waits the server's Retry-After of 1 s before polling again."""
    server = faulty_server(make_server, "poll", "429")
    caplog.set_level(logging.DEBUG, logger="spark_nb.client")
    started = time.monotonic()
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert time.monotonic() - started >= 1.0
    records = [r for r in caplog.records if r.name == "spark_nb.client"]
    message = f"retrying reading task {result.task_id} (HTTP 429) in 1.0s"
    assert message in [r.getMessage() for r in records]
    assert retry_gap(records, message, f"/model/v1/generation/task/{result.task_id} -> ") >= 0.95
    assert_result(result, server, media["speech"])
    assert server.stats()["created"] == 1
    assert server.stats()["faults"].get("poll:429", 0) >= 1


@pytest.mark.slow
def test_deadline_raises_task_timeout_and_the_task_resumes(make_server: MakeServer, media: dict[str, Path]) -> None:
    """wait(timeout=1) on a 4 s task raises TaskTimeout naming the task; Task.from_id then finishes the same task."""
    server = make_server(api_key=TEST_KEY, latency=4)
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    started = time.monotonic()
    with pytest.raises(spark_nb.TaskTimeout) as info:
        task.wait(timeout=1, progress=False)
    assert 0.5 <= time.monotonic() - started < 3.5
    assert info.value.task_id == task.id
    assert task.id in str(info.value)
    assert "Task.from_id" in str(info.value)
    assert TEST_KEY not in str(info.value)
    assert server.stats()["downloads"] == 0

    resumed = spark_nb.Task.from_id(task.id, model=avatar.MODEL.id, **cloud_config(server))
    result = resumed.wait(timeout=30, progress=False)
    assert result.task_id == task.id
    assert_result(result, server, media["speech"])
    assert server.stats()["created"] == 1


def test_generate_honours_its_timeout(make_server: MakeServer, media: dict[str, Path]) -> None:
    """generate(timeout=1) on a 4 s task raises TaskTimeout well before the task could have finished."""
    server = make_server(api_key=TEST_KEY, latency=4)
    started = time.monotonic()
    with pytest.raises(spark_nb.TaskTimeout) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, timeout=1, **cloud_config(server))
    assert time.monotonic() - started < 4.0  # the task cannot finish before 4 s: this was not a wait to the end
    assert list(server.service.tasks) == [info.value.task_id]
    assert info.value.model == avatar.MODEL.id
    assert server.stats()["created"] == 1 and server.stats()["downloads"] == 0


@pytest.mark.slow
def test_retries_of_a_failing_poll_end_at_the_deadline(make_server: MakeServer, media: dict[str, Path]) -> None:
    """With every poll answered 500, wait(timeout=3) keeps retrying until the deadline, then raises TaskTimeout."""
    server = make_server(api_key=TEST_KEY, faults="poll:500:1.0")
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    started = time.monotonic()
    with pytest.raises(spark_nb.TaskTimeout) as info:
        task.wait(timeout=3, progress=False)
    elapsed = time.monotonic() - started
    assert 2.5 <= elapsed < 6.0
    assert info.value.task_id == task.id
    assert isinstance(info.value.__cause__, spark_nb.ServerError)
    stats = server.stats()
    assert stats["faults"]["poll:500"] >= 3
    assert stats["polls"] == 0
    assert stats["created"] == 1
