"""Task.wait, the one poll loop: every state to its subscribers, cancel, one deadline, and the Result it returns."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb import media as helpers
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config


@pytest.fixture
def slow(make_server: Callable[..., LocalServer]) -> LocalServer:
    """A server whose tasks take at least 2 s, so a wait sees several states."""
    return make_server(api_key=TEST_KEY, latency=2.0)


def test_on_update_sees_every_state_in_order(slow: LocalServer, media: dict[str, Path]) -> None:
    """Subscribers get the submit answer, then each poll, ending with the done state; progress never falls."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(slow))
    seen: list[spark_nb.TaskState] = []
    result = task.wait(60, progress=False, on_update=seen.append)
    assert len(seen) == slow.stats()["polls"] + 1  # the create answer, then one state per poll
    assert seen[-1].done and not any(s.done for s in seen[:-1])
    assert all(s.id == task.id for s in seen)
    progress = [s.progress for s in seen if s.progress is not None]
    assert progress == sorted(progress) and len(seen) >= 3
    assert result.task_id == task.id


def test_cancel_stops_the_wait_not_the_task(slow: LocalServer, media: dict[str, Path]) -> None:
    """Setting cancel ends the wait with TaskCancelled (task id and resume hint); waiting again gets the video."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(slow))
    cancel = threading.Event()
    with pytest.raises(spark_nb.TaskCancelled) as info:
        task.wait(60, progress=False, cancel=cancel, on_update=lambda state: cancel.set())
    assert info.value.task_id == task.id and "Task.from_id" in str(info.value)
    assert slow.stats()["downloads"] == 0
    again = spark_nb.Task.from_id(task.id, model=task.model, **cloud_config(slow)).wait(60, progress=False)
    assert again.path.is_file() and slow.stats()["created"] == 1


def test_one_deadline_one_timeout_message(slow: LocalServer, media: dict[str, Path]) -> None:
    """A deadline shorter than the task raises TaskTimeout naming the task, what was last seen, and how to resume."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(slow))
    with pytest.raises(spark_nb.TaskTimeout) as info:
        task.wait(0.6, progress=False)
    message = str(info.value)
    assert f"task {task.id} did not finish within 0.6s (last seen " in message
    assert f'spark_nb.Task.from_id("{task.id}", model="{task.model}").wait()' in message
    assert isinstance(info.value, TimeoutError)


def test_a_result_is_a_path(server: LocalServer, media: dict[str, Path]) -> None:
    """A Result passes wherever a path does: os.fspath, open(), Path()."""
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert os.fspath(result) == str(result.path) and Path(result) == result.path
    with open(result, "rb") as f:
        assert f.read(12)[4:8] == b"ftyp"
    assert helpers.read_header(result).has_video


def test_status_reads_once(slow: LocalServer, media: dict[str, Path]) -> None:
    """status() is one reading, without waiting."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(slow))
    polls = slow.stats()["polls"]
    state = task.status()
    assert state.id == task.id and not state.done and slow.stats()["polls"] == polls + 1


def test_submit_status_wait_and_resume_by_id(media: dict[str, Path], make_server: Any) -> None:
    """submit() returns at once; status() reads it; Task.from_id rebuilds the handle and waits it out."""
    server = make_server(api_key=TEST_KEY, latency=2)
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    state = task.status()
    assert state.id == task.id and state.status in ("pending", "in_progress") and not state.done
    resumed = spark_nb.Task.from_id(task.id, model=avatar.MODEL.id, **cloud_config(server))
    assert resumed == task  # same id and model: the same task
    result = resumed.wait(timeout=60, progress=False)
    assert result.task_id == task.id and task.status().done
    assert server.stats()["created"] == 1


def test_wait_shows_a_tqdm_progress_bar(media: dict[str, Path], make_server: Any,
                                        capsys: pytest.CaptureFixture) -> None:
    """progress=True draws a bar with the task id, the status and 100 % at the end."""
    server = make_server(api_key=TEST_KEY, latency=1.5)
    result = avatar.generate(media["portrait"], media["speech"], **cloud_config(server))
    err = capsys.readouterr().err
    assert f"task {result.task_id[:12]}" in err and "100%" in err and "completed" in err


def test_a_finished_result_is_not_downloaded_twice(media: dict[str, Path], server: Any) -> None:
    """Waiting again on a task whose video is already on disk reuses the file (e.g. after a restart)."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    first = task.wait(progress=False)
    again = spark_nb.Task.from_id(task.id, **cloud_config(server)).wait(progress=False)
    assert again.path == first.path and server.stats()["downloads"] == 1
