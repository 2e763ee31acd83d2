"""The public boundary (_boundary): nothing but a SparkError (or KeyboardInterrupt) leaves generate, submit, their
async twins, Task.from_id/status/wait, history, spend and the CLI. The attack that found the class: a poll nested
100,000 deep raised RecursionError out of generate() (and killed a whole batch); here a bug of any kind is
planted behind each entry point, and it comes out as "unexpected internal error: ...", chained, with the task."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _cli, _history, _pipeline, avatar, imitator
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

URLS = ("https://inputs.example/face.jpg", "https://inputs.example/hello.wav")


def planted(exc: BaseException) -> Any:
    """A function that raises exc whatever it is given (a bug planted behind an entry point)."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return broken


def assert_wrapped(error: BaseException, cause: type[BaseException], task_id: str | None = None) -> None:
    """error is the boundary's SparkError for cause: named, chained, with a hint to report it (and the task)."""
    assert type(error) is spark_nb.SparkError and isinstance(error.__cause__, cause)
    assert f"unexpected internal error: {cause.__name__}" in str(error) and "report it" in (error.hint or "")
    assert error.task_id == task_id
    if task_id:
        assert f'spark_nb.Task.from_id("{task_id}"' in (error.hint or "")


@pytest.mark.parametrize("cause", [RecursionError("maximum recursion depth exceeded"), KeyError("output"),
                                   OSError(28, "No space left on device"), sqlite3.OperationalError("disk I/O")])
def test_generate_and_submit_raise_only_spark_errors(cause: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any exception from inside generate() or submit(), of both models: a SparkError caused by it."""
    monkeypatch.setattr(_pipeline, "prepare", planted(cause))
    for call in (avatar.generate, avatar.submit, imitator.generate, imitator.submit):
        options: dict[str, Any] = {"progress": False} if call.__name__ == "generate" else {}
        with pytest.raises(spark_nb.SparkError) as info:
            call(*URLS, backend="local", **options)
        assert_wrapped(info.value, type(cause))


def test_the_async_twins_raise_only_spark_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """async_generate and async_submit: the same boundary around the coroutine."""
    monkeypatch.setattr(_pipeline, "prepare", planted(RecursionError("deep")))
    for call in (avatar.async_generate, avatar.async_submit, imitator.async_generate, imitator.async_submit):
        with pytest.raises(spark_nb.SparkError) as info:
            asyncio.run(call(*URLS, backend="local"))
        assert_wrapped(info.value, RecursionError)


def test_a_bug_while_waiting_names_the_task_and_how_to_resume(server: LocalServer, media: dict[str, Path]) -> None:
    """wait() whose update hook fails unexpectedly: a SparkError naming the task and the line that resumes it; the
    task itself was created once and can be waited on again."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    with pytest.raises(spark_nb.SparkError) as info:
        task.wait(60, progress=False, on_update=planted(ZeroDivisionError("division by zero")))
    assert_wrapped(info.value, ZeroDivisionError, task.id)
    with pytest.raises(spark_nb.SparkError) as async_info:
        asyncio.run(task.async_wait(60, progress=False, on_update=planted(ValueError("bad"))))
    assert_wrapped(async_info.value, ValueError, task.id)
    assert task.wait(60, progress=False).path.is_file() and server.stats()["created"] == 1


def test_keyboard_interrupt_passes_unchanged(server: LocalServer, media: dict[str, Path]) -> None:
    """Ctrl-C is not an error to wrap: it leaves wait() as KeyboardInterrupt."""
    task = avatar.submit(media["portrait"], media["speech"], **cloud_config(server))
    with pytest.raises(KeyboardInterrupt):
        task.wait(60, progress=False, on_update=planted(KeyboardInterrupt()))


def test_history_spend_and_from_id_raise_only_spark_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal that fails in an unexpected way, a task id that breaks the client: SparkErrors."""
    monkeypatch.setattr(_history, "journal_at", planted(sqlite3.DatabaseError("file is not a database")))
    for call in (spark_nb.history, spark_nb.spend):
        with pytest.raises(spark_nb.SparkError) as info:
            call()
        assert_wrapped(info.value, sqlite3.DatabaseError)
    monkeypatch.setattr(spark_nb.Task, "_read", planted(TypeError("unhashable")))
    task = spark_nb.Task.from_id("t-9", model=avatar.MODEL.id, backend="local")
    with pytest.raises(spark_nb.SparkError) as info:
        task.status()
    assert_wrapped(info.value, TypeError, "t-9")


def test_the_cli_prints_one_line_and_no_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
                                                  ) -> None:
    """`spark-nb history` with a planted bug: exit 1, "spark-nb: error: unexpected internal error: ...", no
    traceback (main itself, and the installed command through a real process)."""
    monkeypatch.setattr(_history, "journal_at", planted(RecursionError("deep")))
    assert _cli.main(["history"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spark-nb: error: unexpected internal error: RecursionError: deep") and "Traceback" not in err
    code = ("import sys, spark_nb._history as h, spark_nb._cli as c\n"
            "def broken(*a, **k): raise MemoryError('planted')\n"
            "h.journal_at = broken\nsys.exit(c.main(['history']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "unexpected internal error: MemoryError: planted" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("options", [{"timeout": None}, {"timeout": "5"}, {"timeout": float("nan")},
                                     {"timeout": float("inf")}, {"timeout": 0}, {"timeout": -1}, {"timeout": True},
                                     {"cancel": "yes"}, {"output_dir": object()}, {"home": 5}, {"base_url": 5},
                                     {"uploader": 5}])
def test_bad_arguments_are_refused_before_anything_is_sent(options: dict[str, Any], tmp_path: Path) -> None:
    """The attack: generate(timeout=None), timeout="5" and timeout=nan each created (and paid for) a task, then
    raised "unexpected internal error: TypeError" or a DownloadError about "nan s"; a timeout of 0 or less paid
    for a task nobody waits for. Now each argument is checked before anything is sent: a UsageError (a SparkError)
    saying which argument and what it must be, and not one request reaches the service."""
    from .peers import peers

    start = peers()
    api = next(start)(lambda p, conn, req: p.json(conn, 200, {"id": "t-1", "status": "pending"}))
    try:
        with pytest.raises(spark_nb.UsageError) as info:
            avatar.generate(*URLS, progress=False, **{"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY,
                                                      "output_dir": tmp_path, **options})
        assert next(iter(options)) in str(info.value) and api.seen == []
    finally:
        next(start, None)


def test_settings_configure_and_wait_take_only_usable_arguments() -> None:
    """The same class on the other public calls: settings(home=5) and settings(output_dir=object()) let a raw
    TypeError out (settings had no boundary); configure(home=5) broke every later call; Task.wait(timeout=nan)
    waited on a deadline that never comes; history(model=5) was an "unexpected internal error". Now each is a
    UsageError (or a ValidationError) naming the argument, and configure keeps nothing it refused."""
    for call in (lambda: spark_nb.settings(home=5), lambda: spark_nb.settings(output_dir=object()),
                 lambda: spark_nb.configure(home=5), lambda: spark_nb.configure(uploader=[1]),
                 lambda: spark_nb.Task.from_id("t-9", backend="local").wait(timeout=float("nan"), progress=False),
                 lambda: spark_nb.Task.from_id("t-9", backend="local").wait(timeout="5", progress=False),
                 lambda: spark_nb.Task.from_id("t-9", backend="local").wait(on_update=5, progress=False)):
        with pytest.raises(spark_nb.UsageError):
            call()
    for model in (5, ["avatar"]):  # an internal TypeError before
        with pytest.raises(spark_nb.ValidationError, match="unknown model"):
            spark_nb.history(model=model)
    assert spark_nb.settings().home != 5 and spark_nb.history() == []
