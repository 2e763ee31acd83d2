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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_finished_result_is_not_downloaded_twice(media: dict[str, Path], server: Any) -> None:
    """Waiting again on a task whose video is already on disk reuses the file (e.g. after a restart)."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    first = task.wait(progress=False)
    again = spark_nb.Task.from_id(task.id, **cloud_config(server)).wait(progress=False)
    assert again.path == first.path and server.stats()["downloads"] == 1


# -- reading the task object: every shape the protocol page names, and hostile ones (pure, no server) -------------

NUMBERS: list[tuple[Any, float | None]] = [
    (3, 3.0), (0.42, 0.42), ("0.42", 0.42), (" 2.5 ", 2.5), ("1710000000", 1710000000.0), ("-5", -5.0),
    (".5", 0.5), ("1e3", 1000.0), ("NaN", None), ("inf", None), ("-Infinity", None), ("1e400", None),
    ("abc", None), ("", None), ("1_000", None), ("0x10", None), ("1" * 65, None), (True, None), (None, None),
    ([1], None), ({"v": 1}, None), (float("nan"), None), (10**400, None),
]


@pytest.mark.parametrize("value,number", NUMBERS, ids=[repr(v)[:20] for v, _ in NUMBERS])
def test_one_number_reader_takes_numbers_and_strings_and_nothing_else(value: Any, number: float | None) -> None:
    """as_number: a finite number from a number or a string spelling one; booleans, NaN, infinities, garbage: None."""
    from spark_nb._task_state import as_number

    assert as_number(value) == number


def state_of(**fields: Any) -> spark_nb.TaskState:
    """A TaskState read from a completed task object whose content item and other fields are given."""
    content = {"type": "video", "url": "https://cdn.example/x.mp4", **fields.pop("content", {})}
    raw = {"id": "t-1", "status": "completed", "output": [{"content": [content]}], **fields}
    return spark_nb.TaskState.from_raw(raw, "t-1", "m")


@pytest.mark.parametrize("progress,read", [
    (0.42, 0.42), ("0.42", 0.42), ("2.5", 1.0), (-1, 0.0), ("-0.3", 0.0), ("NaN", None), ("abc", None),
    (None, None), (True, None), ([0.5], None),
])
def test_progress_of_any_type_is_read_clamped_or_ignored(progress: Any, read: float | None) -> None:
    """progress as a number or a string reads as 0..1 (out of range clamped); anything else is unknown (None)."""
    assert state_of(progress=progress).progress == read


@pytest.mark.parametrize("size,read", [
    (1234, 1234), ("1234", 1234), (1234.0, 1234), ("-5", None), (-5, None), ("12.5", None), (0, None),
    ("abc", None), (None, None), (True, None), ("1e400", None),
])
def test_an_announced_size_counts_only_when_it_is_a_size(size: Any, read: int | None) -> None:
    """size is trusted only as a whole number of bytes above zero; otherwise the download has no size check (its
    caps and the decode check still apply)."""
    assert state_of(content={"size": size}).announced_size == read


@pytest.mark.parametrize("duration,read", [
    ("2.04", 2.04), (2.04, 2.04), ("0", 0.0), ("NaN", None), ("-3", None), ("abc", None), (None, None),
])
def test_an_announced_duration_is_information_when_it_is_a_length(duration: Any, read: float | None) -> None:
    """duration (a string of seconds in the official client's types) is exposed as announced_duration, or None."""
    assert state_of(content={"duration": duration}).announced_duration == read


def test_a_content_item_needs_only_its_url() -> None:
    """A content item with duration, id and img_id and without size or jobId reads; one missing or odd is {}."""
    state = state_of(content={"duration": "2.04", "id": "c-1", "img_id": "i-1"})
    assert state.content["url"] == "https://cdn.example/x.mp4" and state.announced_size is None
    for output in (None, [], [{}], [{"content": []}], [{"content": ["x"]}], "x", [{"content": {"url": "u"}}]):
        odd = spark_nb.TaskState.from_raw({"status": "completed", "output": output}, "t-1", "m")
        assert odd.content == {} and odd.announced_size is None and odd.announced_duration is None


USAGES: list[tuple[Any, str | None]] = [
    ({"cost": "0.30", "discount": 0, "input_tokens": 0, "total_tokens": 0, "generated_videos": 1}, "0.30"),
    ({"cost": 0.3, "quantity": "2", "unit_price": "0.15", "extra_info": {}}, "0.3"),
    ({"cost": "0.30", "quantity": 100, "unit_price": 100}, "0.30"),  # a cost sent is the cost
    ({"quantity": "2.04", "unit_price": "0.25", "extra_info": {"unit": "second"}}, "0.51"),
    ({"quantity": 2, "unit_price": 0.25}, "0.5"),
    ({"cost": None, "quantity": "4", "unit_price": "0.1"}, "0.4"),
    ({"cost": "0.004"}, "0.004"), ({"cost": 0.004}, "0.004"), ({"quantity": 3, "unit_price": 0.1}, "0.3"),
    ({"cost": "abc"}, None), ({"cost": "abc", "quantity": 2, "unit_price": 1}, None),  # unreadable: not guessed
    ({"cost": "-1"}, None), ({"cost": "NaN"}, None), ({"cost": True}, None), ({"cost": [1]}, None),
    ({"quantity": "abc", "unit_price": 1}, None), ({"quantity": 2}, None), ({"quantity": -2, "unit_price": 1}, None),
    ({"quantity": "1e300", "unit_price": "1e300"}, None), ({"cost": "1e13"}, None), ({}, None), ("0.10", None),
    (None, None), ([1], None),
]


@pytest.mark.parametrize("usage,cost", USAGES, ids=[repr(u)[:40] for u, _ in USAGES])
def test_cost_of_every_usage_shape(usage: Any, cost: str | None) -> None:
    """cost_of reads the seed shape and {cost, quantity, unit_price, extra_info}, strings or numbers, as an exact
    Decimal (never through float: 3 × 0.1 is 0.3); with no cost, quantity × unit_price; a cost unreadable,
    negative or absurd is None. usage_of's cost is that figure as a string."""
    from decimal import Decimal

    from spark_nb._task_state import cost_of, usage_of

    found = cost_of(usage)
    assert found == (None if cost is None else Decimal(cost))
    assert found is None or isinstance(found, Decimal)
    shown = usage_of(usage)
    assert (shown.get("cost") is None) == (cost is None)
    if cost is not None:
        assert Decimal(shown["cost"]) == Decimal(cost)
    if isinstance(usage, dict) and isinstance(usage.get("cost"), str) and cost is not None:
        assert shown["cost"] == usage["cost"]  # the service's own string, untouched


def test_usage_of_spells_numbers_as_dollars() -> None:
    """A cost sent as a number, or derived, is written with at least cents and without float noise."""
    from spark_nb._task_state import usage_of

    assert usage_of({"cost": 1})["cost"] == "1.00"
    assert usage_of({"cost": 0.3})["cost"] == "0.30"
    assert usage_of({"quantity": 3, "unit_price": 0.1})["cost"] == "0.30"  # not 0.30000000000000004
    assert usage_of({"quantity": "2.04", "unit_price": "0.0125"})["cost"] == "0.0255"
    assert usage_of({"cost": "abc", "extra_info": {}}) == {"extra_info": {}}


@pytest.mark.parametrize("created,from_service", [
    (lambda now: now - 30, True), (lambda now: str(now - 30), True), (lambda now: "abc", False),
    (lambda now: now + 3600, False), (lambda now: "NaN", False), (lambda now: None, False),
])
def test_created_at_as_a_number_or_a_string_sets_the_elapsed_time(created: Callable[[float], Any],
                                                                 from_service: bool) -> None:
    """A rebuilt task's elapsed time comes from created_at (number or string) when it is a recent past time; an
    unreadable or future one is ignored for the task's own clock."""
    import time

    task = spark_nb.Task.from_id("t-1", model="m", backend="cloud", base_url="http://127.0.0.1:9", api_key=TEST_KEY)
    state = spark_nb.TaskState.from_raw({"status": "in_progress", "created_at": created(time.time())}, "t-1", "m")
    elapsed = task._elapsed(state)
    assert (abs(elapsed - 30) < 5) if from_service else (0 <= elapsed < 5)


def journal_task(task_id: str, model: str = "spark_avatar_picture_omni_v2", *, backend: str = "local",
                 base_url: str | None = None) -> None:
    """Record in this test's journal a created task with this id (as a create the service answered), made on
    backend (a cloud one at base_url)."""
    from spark_nb._config import resolve
    from spark_nb._journal import journal_at

    journal = journal_at(resolve(backend="local").home)
    claim, _ = journal.reserve(fingerprint=f"fp-{task_id}", model=model, backend=backend, base_url=base_url,
                               inputs=[], input_seconds=None, source="test", follow=lambda entry: False)
    assert claim is not None
    journal.sending(claim)
    journal.created(claim, task_id)


def test_from_id_takes_the_short_id_a_progress_bar_shows(server: LocalServer, media: dict[str, Path]) -> None:
    """The progress bar names a task by its first 12 characters; Task.from_id finds the whole id in the journal (as
    git does a commit's), with its model, and the task answers."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    found = spark_nb.Task.from_id(task.id[:12], **cloud_config(server))
    assert (found.id, found.model) == (task.id, task.model)
    assert found.status().id == task.id
    assert spark_nb.Task.from_id(task.id, model="given", **cloud_config(server)).model == "given"


def test_an_ambiguous_prefix_lists_its_candidates_and_an_unknown_id_is_taken_as_it_is() -> None:
    for task_id in ("dup0001aaaa", "dup0001bbbb", "other"):
        journal_task(task_id)
    with pytest.raises(spark_nb.SparkError) as info:
        spark_nb.Task.from_id("dup0001", backend="local")
    assert "ambiguous: 2 tasks" in str(info.value) and "dup0001aaaa" in str(info.value)
    assert "dup0001bbbb" in str(info.value) and "give more of the id" in (info.value.hint or "")
    assert spark_nb.Task.from_id("dup0001b", backend="local").id == "dup0001bbbb"
    assert spark_nb.Task.from_id("elsewhere-made", backend="local").id == "elsewhere-made"  # not in the journal
    assert spark_nb.Task.from_id("other", backend="local").id == "other"  # whole: never a prefix of another


def test_a_prefix_names_only_a_task_of_the_service_it_is_asked_of(server: LocalServer) -> None:
    """On the cloud backend, `a8` is not a local task's id, nor one another gateway made (before: expanded to the
    local task's id and its model, and asked of the cloud gateway); the same id on its own service is found."""
    journal_task("a8local0001")
    journal_task("a8other0001", backend="cloud", base_url="http://127.0.0.1:9")
    cloud = cloud_config(server)
    assert spark_nb.Task.from_id("a8", **cloud).id == "a8"  # no task of this gateway starts so: taken as given
    assert spark_nb.Task.from_id("a8l", backend="local").id == "a8local0001"
    assert spark_nb.Task.from_id("a8o", backend="cloud", base_url="http://127.0.0.1:9", api_key="sk-x" * 8).id \
        == "a8other0001"
    assert spark_nb.Task.from_id("a8local0001", **cloud).model == ""  # a whole id of another service: no model


@pytest.mark.parametrize("task_id", ["abc\udcff", "abc\x1b[2K", "t-" + "1" * 300])
def test_an_id_no_task_can_have_is_refused_before_any_lookup_or_request(task_id: str) -> None:
    """The seventh attack: `spark-nb status $'abc\\xff'` (a lone surrogate in Python) was "unexpected internal error:
    UnicodeEncodeError ... a bug", and without a journal its hint named task "abc" (the cleaned text): another
    task. An id that is not printable text of at most 200 characters is a UsageError now, before anything."""
    with pytest.raises(spark_nb.UsageError, match="a task id is a non-empty text, printable and at most 200"):
        spark_nb.Task.from_id(task_id)
