"""The public boundary (_boundary): nothing but a SparkError (or KeyboardInterrupt) leaves generate, submit, their
async twins, Task.from_id/status/wait, history, spend and the CLI. The attack that found the class: a poll nested
100,000 deep raised RecursionError out of generate() (and killed a whole batch); here a bug of any kind is
planted behind each entry point, and it comes out as "unexpected internal error: ...", chained, with the task."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import spark_nb
import spark_nb.batch
import spark_nb.display
import spark_nb.media
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


# -- the boundary on every public name: spark_nb.__all__ and the public modules' ---------------------------------

PUBLIC_MODULES = ("spark_nb", "spark_nb.avatar", "spark_nb.imitator", "spark_nb.media", "spark_nb.display",
                  "spark_nb.models", "spark_nb.batch", "spark_nb.samples", "spark_nb.local", "spark_nb.widgets")
# a folder is a home that embedded_server starts a local server for: a normal return, not worth one per test run
STARTS_SOMETHING = {"spark_nb.local.embedded_server"}


def public_callables() -> list[tuple[str, Any]]:
    """(module.name, value) for every callable a public module lists in __all__, exception classes left out: they
    are what the boundary lets out, not calls; type aliases (Literal[...]) and Protocols too: names for
    annotations, which Python itself refuses to call."""
    import importlib

    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert hasattr(module, "__all__"), f"{module_name} lists no __all__: its public names are unknown"
        for name in module.__all__:
            value = getattr(module, name)
            for_annotations = type(value).__module__ == "typing" or getattr(value, "_is_protocol", False)
            if callable(value) and not for_annotations and not (isinstance(value, type)
                                                                and issubclass(value, BaseException)):
                found.append((f"{module_name}.{name}", value))
    return found


def test_every_public_callable_is_behind_the_boundary() -> None:
    """The class the second attack found: the boundary was applied function by function from a list, so public
    helpers outside it (media.shrink_image, display.show, models.register, batch.summary...) let raw exceptions
    out. Now each public module puts everything in its __all__ behind it in one place (`guard_public`): a
    function wrapped, a class's constructor (an Enum's lookup) too. This fails for any name that is not."""
    from spark_nb._boundary import guarded

    names = public_callables()
    assert len(names) > 60  # the walk really found the public API
    assert [name for name, value in names if not guarded(value)] == []


def test_every_public_callable_given_hostile_arguments_raises_only_spark_errors(tmp_path: Path) -> None:
    """The attack, on every public callable: one or two hostile positional arguments each (5, None, "x", NaN, a
    folder). Before: media.shrink_image raised PIL's UnidentifiedImageError, ZeroDivisionError or
    IsADirectoryError, media.find_cut, extract_audio and reel, display.show, batch.check_manifest, gallery,
    summary, outcomes_html and origin a TypeError, models.register an AttributeError, batch.submit_or_resume(5)
    a TypeError. Now only a SparkError (or a normal return) comes out; arguments that do not fit a signature are
    a UsageError. The local backend, no network: nothing is created."""
    folder = tmp_path / "a folder"
    folder.mkdir()
    hostile: list[object] = [5, None, "x", float("nan"), folder]
    leaks = []
    for name, value in public_callables():
        for args in [(h,) for h in hostile] + [(h, h) for h in hostile]:
            if name in STARTS_SOMETHING and any(isinstance(a, (str, Path)) for a in args):
                continue
            try:
                answer = value(*args)
                if asyncio.iscoroutine(answer):  # an async twin: its coroutine runs (and fails) when awaited
                    asyncio.run(answer)
            except spark_nb.SparkError:
                pass
            except Exception as exc:  # what the test looks for
                leaks.append(f"{name}{args!r}: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:300])
    assert leaks == [], "\n".join(leaks)


BAD_VALUES = [
    (lambda s: spark_nb.media.shrink_image(s["notmedia"]), spark_nb.MediaError, "is not an image"),
    (lambda s: spark_nb.media.shrink_image(s["folder"]), spark_nb.MediaError, "is not an image"),
    (lambda s: spark_nb.media.shrink_image(s["portrait"], max_side=0), spark_nb.MediaError,
     "max_side must be at least 1"),
    (lambda s: spark_nb.media.shrink_image(s["portrait"], max_side="a"), spark_nb.UsageError,
     "max_side must be a whole"),
    (lambda s: spark_nb.media.trim_audio(s["speech"], max_seconds=float("nan")), spark_nb.MediaError,
     "max_seconds must be more than"),
    (lambda s: spark_nb.media.trim_audio(s["speech"], fade="x"), spark_nb.UsageError, "fade must be a number"),
    (lambda s: spark_nb.media.find_cut(s["speech"], "x"), spark_nb.UsageError, "max_seconds must be a number"),
    (lambda s: spark_nb.media.extract_audio(None), spark_nb.UsageError, "extract_audio's input is a NoneType"),
    (lambda s: spark_nb.media.reel(5), spark_nb.UsageError, "reel takes a list"),
    (lambda s: spark_nb.display.show(5), spark_nb.UsageError, "source must be a path"),
    (lambda s: spark_nb.display.show(s["portrait"], width="x"), spark_nb.UsageError, "width must be a whole number"),
    (lambda s: spark_nb.models.register(5), spark_nb.UsageError, "register takes a ModelSpec"),
    (lambda s: spark_nb.batch.check_manifest(5), spark_nb.UsageError, "the manifest must be a path"),
    (lambda s: spark_nb.batch.gallery(5), spark_nb.UsageError, "folder must be a path"),
    (lambda s: spark_nb.batch.summary(5), spark_nb.UsageError, "outcomes must be a list of RowOutcome"),
    (lambda s: spark_nb.batch.outcomes_html([5]), spark_nb.UsageError, "outcomes must be RowOutcome objects"),
    (lambda s: spark_nb.batch.origin(5), spark_nb.UsageError, "out_dir must be a path"),
    (lambda s: spark_nb.batch.finish(5), spark_nb.UsageError, "finish(): missing a required argument"),
    (lambda s: spark_nb.batch.RowStatus("nope"), spark_nb.ValidationError, "'nope' is not a RowStatus"),
    (lambda s: spark_nb.Task.from_id(""), spark_nb.UsageError, "a task id is a non-empty text"),
    (lambda s: spark_nb.Task.from_id(None), spark_nb.UsageError, "a task id is a non-empty text"),
]


@pytest.mark.parametrize("call, error, said", BAD_VALUES, ids=[f"{n}-{case[2]}" for n, case in enumerate(BAD_VALUES)])
def test_a_bad_value_to_a_public_helper_says_what_is_wrong(call: Any, error: type, said: str, media: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """Each LEAK of the attack's fuzzer, and the values it found accepted (max_seconds=nan returned a file):
    refused with the error that says what is wrong and what the argument must be."""
    (tmp_path / "notmedia.jpg").write_bytes(b"hello")
    things = {"notmedia": tmp_path / "notmedia.jpg", "folder": tmp_path, **media}
    with pytest.raises(error, match=re.escape(said)):
        call(things)


@pytest.mark.parametrize("option", [{"budget_usd": -1}, {"budget_usd": "five"}, {"max_input_mb": "1e999"},
                                    {"max_input_seconds": float("nan")}, {"check_urls": "maybe"},
                                    {"backend": "nope"}])
def test_configure_refuses_a_value_resolve_could_not_read(option: dict[str, Any]) -> None:
    """The attack: configure(budget_usd=-1) returned normally, and from then on every call in the process
    (history, Task.from_id, generate...) raised "budget_usd must be an amount of US dollars"; so did
    configure(max_input_mb='1e999'). configure() now reads each value as resolve() does and refuses it at once,
    keeping nothing: the calls after it work."""
    with pytest.raises(spark_nb.UsageError, match=next(iter(option))):
        spark_nb.configure(**option)
    assert spark_nb.settings().backend == "local" and spark_nb.history() == []
