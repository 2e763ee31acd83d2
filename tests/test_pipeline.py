"""generate() and submit() of both models through the shared pipeline: local backend, and the cloud path on a local
server."""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import avatar, imitator
from spark_nb._ffmpeg import read_header, try_decode
from spark_nb.local import embedded_server

from .conftest import TEST_KEY, cloud_config

FRAME = 1 / 25


def assert_video(result: spark_nb.Result, duration: float) -> None:
    """The result is a real, complete H.264/AAC video of the expected duration."""
    assert result.status == "completed"
    assert result.path.is_file() and result.path.stat().st_size == result.size > 1000
    info = try_decode(result.path, 30).facts
    assert info.has_video and info.has_audio
    assert info.duration == pytest.approx(duration, abs=2 * FRAME + 0.03)
    assert result.duration == pytest.approx(info.duration)
    assert result.cost == Decimal("0.00")
    assert result.task_id in result._repr_html_() and "<video" in result._repr_html_()


def upload(server: Any, path: Path) -> str:
    """Put a file on the server's storage and return its URL (to pass inputs as URLs)."""
    with open(path, "rb") as fh:
        response = httpx.post(f"{server.url}/api/v1/storage/files", files={"file": (path.name, fh)},
                              headers={"Authorization": f"Bearer {TEST_KEY}"})
    response.raise_for_status()
    return response.json()["url"]


def test_avatar_on_the_local_backend_needs_no_key(media: dict[str, Path], capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key anywhere, generate() says it uses the local backend and returns a real talking-head video."""
    monkeypatch.setattr(spark_nb._notices, "_shown", set())
    before = embedded_server(spark_nb.settings().home).stats()["created"]
    result = avatar.generate(media["portrait"], media["speech"], progress=False)
    assert_video(result, read_header(media["speech"]).duration)
    assert result.path.parent == Path("spark_outputs")
    assert embedded_server(spark_nb.settings().home).stats()["created"] == before + 1
    assert capsys.readouterr().err.count("using the local backend") == 1


def test_one_generate_reads_its_settings_once(media: dict[str, Path], capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One generate() resolves its settings once, also when it attaches to an identical task still running (before,
    Task.from_id resolved them again there), and the local backend's notice is said once, where a call starts."""
    from spark_nb import _config, _notices

    calls: list[dict[str, Any]] = []
    real = _config.resolve

    def counting(**options: Any) -> _config.Settings:
        calls.append(options)
        return real(**options)

    for name, module in list(sys.modules.items()):  # every module that imported resolve, wherever it calls it
        if name.startswith("spark_nb") and getattr(module, "resolve", None) is real:
            monkeypatch.setattr(module, "resolve", counting)
    monkeypatch.setattr(_notices, "_shown", set())
    task = avatar.submit(media["portrait"], media["speech"])  # not waited for: the identical generate attaches to it
    assert len(calls) == 1
    calls.clear()
    result = avatar.generate(media["portrait"], media["speech"], progress=False)
    assert result.origin == "attached" and result.task_id == task.id
    assert len(calls) == 1, calls
    assert capsys.readouterr().err.count("using the local backend") == 1


def test_imitator_on_the_local_backend(media: dict[str, Path]) -> None:
    """The imitation lasts as long as the driving video and carries its audio."""
    result = imitator.generate(str(media["portrait"]), str(media["driving"]), progress=False, backend="local")
    assert_video(result, 2.0)


@pytest.mark.slow
def test_imitator_with_a_silent_driving_video_still_has_an_audio_track(media: dict[str, Path]) -> None:
    """A driving video without sound gives an mp4 with a silent AAC track of the same length."""
    result = imitator.generate(media["png"], media["silent_driving"], progress=False, backend="local")
    assert_video(result, 1.5)


@pytest.mark.parametrize("model", ["avatar", "imitator"])
@pytest.mark.slow
def test_both_models_on_the_cloud_path(model: str, media: dict[str, Path], server: Any) -> None:
    """The cloud code path (key, upload endpoint, create, poll, download) against the local server."""
    if model == "avatar":
        result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
        assert_video(result, read_header(media["speech"]).duration)
    else:
        result = imitator.generate(media["portrait"], media["driving"], progress=False, **cloud_config(server))
        assert_video(result, 2.0)
    stats = server.stats()
    assert (stats["created"], stats["uploads"], stats["downloads"]) == (1, 2, 1)
    assert result.model == spark_nb.models.get_model(model).id


@pytest.mark.slow
def test_inputs_as_bytes_upload_items_and_urls(media: dict[str, Path], server: Any) -> None:
    """bytes, an ipywidgets 8 FileUpload item, and http URLs (passed through, not re-uploaded) all work."""
    item = {"name": "speech.wav", "type": "audio/wav", "size": 1,
            "content": memoryview(media["speech"].read_bytes()), "last_modified": 0}
    result = avatar.generate(media["portrait"].read_bytes(), item, progress=False, **cloud_config(server))
    assert_video(result, read_header(media["speech"]).duration)
    image_url, video_url = upload(server, media["portrait"]), upload(server, media["driving"])
    uploads = server.stats()["uploads"]
    result = imitator.generate(image_url, video_url, progress=False, **cloud_config(server))
    assert_video(result, 2.0)
    assert server.stats()["uploads"] == uploads  # URLs went straight to the task


@pytest.mark.slow
def test_mp3_and_a_videos_audio_track_drive_the_avatar(media: dict[str, Path], server: Any) -> None:
    """Audio may be an mp3 or the sound of a video file."""
    result = avatar.generate(media["portrait"], media["speech_mp3"], progress=False, **cloud_config(server))
    assert_video(result, read_header(media["speech_mp3"]).duration)
    result = avatar.generate(media["portrait"], media["driving"], progress=False, **cloud_config(server))
    assert_video(result, 2.0)


@pytest.mark.slow
def test_long_audio_is_trimmed_to_15_s_with_a_warning(media: dict[str, Path], server: Any) -> None:
    """17 s of audio becomes a video under 15 s (cut in a pause near the limit), and the warning names both lengths."""
    with pytest.warns(UserWarning, match=r"17\.0 s.*15 s limit; trimmed to 1[34]\.\d s") as record:
        result = avatar.generate(media["portrait"], media["long_speech"], progress=False, **cloud_config(server))
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert result.duration is not None and 15.0 - 1.6 < result.duration < 15.0
    said = float(re.search(r"trimmed to ([\d.]+) s", str(record[0].message)).group(1))  # type: ignore[union-attr]
    assert said == pytest.approx(result.duration, abs=0.1)
    assert_video(result, result.duration)


@pytest.mark.slow
def test_trim_audio_false_sends_long_audio_whole_with_a_warning(media: dict[str, Path], server: Any) -> None:
    """trim_audio=False keeps all 17 s and warns that quality may degrade."""
    with pytest.warns(UserWarning, match="sent as it is"):
        result = avatar.generate(media["portrait"], media["long_speech"], trim_audio=False, progress=False,
                                 **cloud_config(server))
    assert_video(result, 17.0)


@pytest.mark.slow
def test_async_twins(media: dict[str, Path], server: Any) -> None:
    """async_generate runs concurrently on an event loop; async_submit + async_wait do the same in two steps."""

    async def main() -> list[spark_nb.Result]:
        config = cloud_config(server)
        task = await imitator.async_submit(media["portrait"], media["driving"], **config)
        return await asyncio.gather(
            avatar.async_generate(media["portrait"], media["speech"], progress=False, **config),
            imitator.async_generate(media["portrait"], media["driving"], progress=False, reuse=False, **config),
            task.async_wait(progress=False),
        )

    results = asyncio.run(main())
    assert len({r.task_id for r in results}) == 3
    assert server.stats()["created"] == 3


@pytest.mark.slow
def test_cancelling_async_generate_stops_waiting_but_not_the_task(media: dict[str, Path], make_server: Any) -> None:
    """Cancelling the coroutine returns promptly; the task still completes on the server and can be resumed."""
    server = make_server(api_key=TEST_KEY, latency=3)

    async def main() -> None:
        job = asyncio.create_task(avatar.async_generate(media["portrait"], media["speech"], progress=False,
                                                   **cloud_config(server)))
        for _ in range(200):  # until the task exists on the server
            if server.stats()["created"]:
                break
            await asyncio.sleep(0.02)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(main())
    (task_id,) = server.service.tasks
    result = spark_nb.Task.from_id(task_id, **cloud_config(server)).wait(timeout=30, progress=False)
    assert result.task_id == task_id and server.stats()["created"] == 1


@pytest.mark.slow
def test_sync_api_inside_a_running_event_loop(media: dict[str, Path], server: Any) -> None:
    """generate() called from a coroutine (as in a Jupyter cell) works without asyncio.run or loop patching."""

    async def cell() -> spark_nb.Result:
        assert asyncio.get_running_loop().is_running()
        return avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))

    result = asyncio.run(cell())
    assert_video(result, read_header(media["speech"]).duration)


@pytest.mark.slow
def test_eight_threads_at_once(media: dict[str, Path], server: Any) -> None:
    """The sync API is safe from 8 threads at once: 8 distinct tasks (new takes), 8 complete videos."""
    barrier = threading.Barrier(8)

    def one(i: int) -> spark_nb.Result:
        barrier.wait(timeout=30)
        if i % 2:
            return imitator.generate(media["portrait"], media["driving"], progress=False, reuse=False,
                                     **cloud_config(server))
        return avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, **cloud_config(server))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert len({r.task_id for r in results}) == 8
    for r in results:
        assert r.path.stat().st_size == r.size
    assert server.stats()["created"] == 8


@pytest.mark.slow
def test_output_dir_from_the_environment(media: dict[str, Path], server: Any, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    """SPARK_NB_OUTPUT_DIR picks the download folder; an explicit output_dir= wins over it."""
    monkeypatch.setenv("SPARK_NB_OUTPUT_DIR", str(tmp_path / "from_env"))
    config = cloud_config(server)
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **config)
    assert result.path.parent == tmp_path / "from_env"
    result = avatar.generate(media["portrait"], media["speech"], progress=False, output_dir=tmp_path / "explicit",
                             **config)
    assert result.path.parent == tmp_path / "explicit"


@pytest.mark.slow
def test_warnings_are_not_raised_for_normal_audio(media: dict[str, Path], server: Any) -> None:
    """A 4 s clip is sent as is, without any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))


# -- the claim before the uploads ------------------------------------------------------------------------------

def counting_uploader(server: Any, seen: list[str], fail: type[BaseException] | None = None) -> Any:
    """An uploader callable (as a user may pass) onto server's storage, noting each file; raising fail if given."""
    def upload_one(path: Path) -> str:
        seen.append(path.name)
        if fail is not None:
            raise fail(f"cannot upload {path.name}")
        return upload(server, path)
    return upload_one


@pytest.mark.slow
def test_identical_calls_at_once_upload_once_because_the_claim_comes_first(media: dict[str, Path],
                                                                          server: Any) -> None:
    """Four threads with identical inputs: the first claims the call before uploading, the others wait for its
    task; before, every thread uploaded its inputs (the claim came after the uploads) and three were wasted."""
    seen: list[str] = []
    config = {**cloud_config(server), "uploader": counting_uploader(server, seen)}
    barrier = threading.Barrier(4)

    def one(_: int) -> spark_nb.Result:
        barrier.wait(timeout=30)
        return avatar.generate(media["portrait"], media["speech"], progress=False, **config)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert len({r.task_id for r in results}) == 1 and server.stats()["created"] == 1
    assert sorted(seen) == sorted([media["portrait"].name, media["speech"].name])


def test_a_claim_whose_uploads_fail_is_released_not_uncertain(media: dict[str, Path], server: Any) -> None:
    """Uploads failing (an OSError from a user's uploader, an UploadError) after the claim: nothing was sent, so
    the claim is released; the journal keeps no row and the identical call creates its task normally."""
    for fail in (OSError, spark_nb.UploadError):  # an uploader's own error is an UploadError naming the file
        with pytest.raises(spark_nb.UploadError, match="cannot upload"):
            avatar.generate(media["portrait"], media["speech"], progress=False,
                            **{**cloud_config(server), "uploader": counting_uploader(server, [], fail)})
        assert spark_nb.history() == []
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert result.path.is_file() and server.stats()["created"] == 1


DIE_UPLOADING = """
import os, signal, sys
from spark_nb import avatar
def die(path):
    os.kill(os.getpid(), signal.SIGKILL)
avatar.generate(sys.argv[1], sys.argv[2], progress=False, uploader=die)
"""


@pytest.mark.slow
def test_a_process_killed_while_uploading_leaves_a_reservation_that_costs_nothing(
        media: dict[str, Path], server: Any) -> None:
    """SIGKILL during the uploads: the journal holds a reservation of a dead process. It is not a lost create
    (nothing was sent): the identical call creates at once instead of raising TaskMayExist, and under a budget it
    does not hold the call back as a task of unknown cost on its way (CostUnknown)."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "SPARK_NB_BACKEND": "cloud", "VTRIX_GENERATION_URL": server.url, "VTRIX_API_KEY": TEST_KEY}
    kid = subprocess.run([sys.executable, "-c", DIE_UPLOADING, str(media["portrait"]), str(media["speech"])],
                         capture_output=True, text=True, timeout=120, env=env)
    assert kid.returncode == -signal.SIGKILL, kid.stderr
    assert [t.status for t in spark_nb.history()] == []  # a dead reservation is no attempt
    result = avatar.generate(media["portrait"], media["speech"], progress=False, budget_usd=5.0,
                             **cloud_config(server))  # (a $0 budget now pays for nothing: see test_budget)
    assert result.path.is_file() and server.stats()["created"] == 1


def faceless(path: Path) -> Path:
    """A picture with no face in it: a landscape of flat colour bands."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 360), (90, 140, 200))
    ImageDraw.Draw(img).rectangle((0, 220, 480, 360), fill=(60, 120, 50))
    img.save(path, quality=90)
    return path


def test_strict_refuses_a_faceless_portrait_before_any_upload(media: dict[str, Path], server: Any,
                                                              tmp_path: Path) -> None:
    """strict=True makes the "no face found" advice a ValidationError (reason no_face) before anything is uploaded,
    claimed or created, for both models and submit() as generate(); without it the advice is a SparkWarning and the
    task is made."""
    landscape = faceless(tmp_path / "landscape.jpg")
    calls = [lambda **kw: avatar.generate(landscape, media["speech"], progress=False, **kw),
             lambda **kw: avatar.submit(landscape, media["speech"], **kw),
             lambda **kw: imitator.generate(landscape, media["driving"], progress=False, **kw)]
    for call in calls:
        with pytest.raises(spark_nb.ValidationError) as info:
            call(strict=True, **cloud_config(server))
        assert info.value.reason == "no_face" and "landscape.jpg" in str(info.value)
        assert "strict=False" in (info.value.hint or "")
    stats = server.stats()
    assert (stats["uploads"], stats["created"]) == (0, 0) and spark_nb.history() == []
    with pytest.warns(spark_nb.errors.SparkWarning, match="no face found"):
        task = avatar.submit(landscape, media["speech"], **cloud_config(server))
    assert task.id and server.stats()["created"] == 1


def test_strict_refuses_long_audio_only_when_it_is_not_trimmed(media: dict[str, Path], server: Any) -> None:
    """Long audio is trimmed by default, strict or not; with trim_audio=False, strict refuses it (audio_too_long)."""
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(media["portrait"], media["long_speech"], trim_audio=False, strict=True, **cloud_config(server))
    assert info.value.reason == "audio_too_long" and "17.0 s" in str(info.value)
    assert server.stats()["uploads"] == 0
    with pytest.warns(spark_nb.errors.SparkWarning, match="trimmed to"):
        task = avatar.submit(media["portrait"], media["long_speech"], strict=True, **cloud_config(server))
    assert task.id


def test_history_names_an_upload_by_its_own_file_name(media: dict[str, Path], server: Any) -> None:
    """A FileUpload item is written to a scratch file named by its content; the journal (history) keeps the name
    the user picked, and the advice names it too."""
    item = {"name": "my portrait.jpg", "type": "image/jpeg", "size": 1,
            "content": memoryview(media["portrait"].read_bytes()), "last_modified": 0}
    avatar.submit(item, media["speech"], **cloud_config(server))
    assert spark_nb.history()[0].inputs == ["my portrait.jpg", media["speech"].name]


# -- one deadline for the whole call: uploads, the create, waiting for an identical call, the journal --------------

TIMEOUT_S = 3.0
SLACK_S = 7.0  # a guard against the old waits (30 s, 60 s, 120 s, minutes), not a speed test


def hostile_submission(attack: str) -> Any:
    """A fake Vtrix on loopback whose upload or create misbehaves as attack says; the rest answers honestly."""
    import json
    import time

    from spark_nb import samples

    video = samples.DRIVING_VIDEO.read_bytes()

    def trickled(p: Any, conn: Any, data: dict[str, Any]) -> None:
        body = json.dumps(data).encode()
        p.send(conn, f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               .encode())
        p.trickle(conn, body, every=2.0)

    def handle(p: Any, conn: Any, req: Any) -> None:
        if req.path == "/upload":
            if attack == "trickled upload answer":
                return trickled(p, conn, {"url": "https://inputs.example/u.jpg"})
            if attack == "upload 503, Retry-After 60":
                return p.json(conn, 503, {"message": "busy"}, {"Retry-After": "60"})
            return p.json(conn, 200, {"url": "https://inputs.example/u.jpg"})
        if req.path == "/model/v1/generation":
            if attack == "trickled create answer":
                return trickled(p, conn, {"id": "t-1", "status": "pending"})
            if attack == "create 429, Retry-After 60":
                return p.json(conn, 429, {"message": "slow down"}, {"Retry-After": "60"})
            return p.json(conn, 200, {"id": "t-1", "status": "pending"})
        if "/task/" in req.path:
            time.sleep(0.5)
            return p.json(conn, 200, {"id": "t-1", "status": "completed",
                                      "output": [{"content": [{"url": f"{p.url}/video.mp4", "size": len(video)}]}]})
        p.respond(conn, 200, video, {"Content-Type": "video/mp4"})

    return handle


@pytest.mark.parametrize("attack,error", [
    ("trickled create answer", spark_nb.TaskMayExist), ("create 429, Retry-After 60", spark_nb.RateLimitError),
    ("trickled upload answer", spark_nb.UploadError), ("upload 503, Retry-After 60", spark_nb.UploadError)])
def test_the_calls_timeout_covers_its_uploads_and_its_create(attack: str, error: type, media: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """The attack: generate(timeout=5) whose create answer trickled ended after 30 s (the request's own limit);
    one answered 429 with Retry-After: 60 was still running at 100 s; a trickled upload answer at 150 s: the
    timeout covered only the wait after the create. Now one deadline, computed where generate() starts, ends the
    uploads and the create too: each of these ends by about its timeout, saying what happened (nothing created,
    or a task that may exist for a create cut off after it was sent)."""
    import time

    from .peers import peers

    start = peers()
    api = next(start)(hostile_submission(attack))
    try:
        began = time.monotonic()
        with pytest.raises(error) as info:
            avatar.generate(media["portrait"], "https://inputs.example/a.wav", progress=False, timeout=TIMEOUT_S,
                            backend="cloud", base_url=api.url, api_key=TEST_KEY, uploader=f"{api.url}/upload",
                            output_dir=tmp_path / "out")
        assert time.monotonic() - began < TIMEOUT_S + SLACK_S
        if error is spark_nb.TaskMayExist:  # the call's timeout cut the answer off, not the network: said so
            said = str(info.value)
            assert f"the call's timeout of {TIMEOUT_S:g} s ran out before its answer came" in said, said
        posts = sum(s.path == "/model/v1/generation" for s in api.seen)
        assert posts == (0 if "upload" in attack else 1)  # never sent again, never sent without the uploads
        assert [e.status for e in spark_nb.history()] == (["uncertain"] if "trickled create" in attack else [])
    finally:
        next(start, None)


def test_a_create_the_calls_timeout_left_no_time_for_names_that_timeout(media: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """The second attack: generate(timeout=3) whose inputs took the whole timeout (slow URL checks then) raised
    "could not connect to http://127.0.0.1:P (...no time was left to send the request) -> check
    VTRIX_GENERATION_URL and the network": the network was fine, the call's timeout had run out. Now the error
    names that timeout, says nothing was created, and says to pass a longer one; nothing was sent."""
    import time

    from .peers import peers

    start = peers()
    api = next(start)(hostile_submission("none"))

    def slow_uploader(path: Path) -> str:
        time.sleep(TIMEOUT_S + 0.5)  # the uploads take all the call's time
        return "https://inputs.example/u.jpg"

    try:
        with pytest.raises(spark_nb.SparkError) as info:
            avatar.generate(media["portrait"], "https://inputs.example/a.wav", progress=False, timeout=TIMEOUT_S,
                            backend="cloud", base_url=api.url, api_key=TEST_KEY, uploader=slow_uploader,
                            output_dir=tmp_path / "out")
        said = str(info.value)
        assert f"the call's timeout of {TIMEOUT_S:g} s ran out before the create was sent: nothing was created" \
            in said, said
        assert "timeout=" in (info.value.hint or "") and "VTRIX_GENERATION_URL" not in said
        assert sum(s.path == "/model/v1/generation" for s in api.seen) == 0
    finally:
        next(start, None)


def test_the_calls_timeout_covers_waiting_for_an_identical_call_and_for_the_journal(
        media: dict[str, Path], tmp_path: Path) -> None:
    """Two more waits of the same class, found by reading the code: an identical call still preparing its task
    in another thread was waited for 120 s whatever the timeout; the journal, locked by another process, 60 s.
    Now each ends with the call's deadline, and nothing is created for the waiting call."""
    import time

    from .peers import peers
    from .test_journal import Locker

    start = peers()
    api = next(start)(hostile_submission("none"))
    release = threading.Event()

    def slow_uploader(path: Path) -> str:
        release.wait(60)  # the first call holds its claim while it "uploads"
        return "https://inputs.example/u.jpg"

    config = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(avatar.generate, media["portrait"], "https://inputs.example/a.wav", progress=False,
                                uploader=slow_uploader, **config)
            deadline = time.monotonic() + 30
            while [e.status for e in spark_nb.history()] != ["reserved"]:
                assert time.monotonic() < deadline and not first.done(), "the first call never claimed"
                time.sleep(0.05)
            began = time.monotonic()
            with pytest.raises(spark_nb.SparkError, match="is still preparing its task"):
                avatar.generate(media["portrait"], "https://inputs.example/a.wav", progress=False,
                                timeout=TIMEOUT_S, uploader=slow_uploader, **config)
            assert time.monotonic() - began < TIMEOUT_S + SLACK_S
            release.set()
            assert first.result(timeout=60).task_id == "t-1"
        locker = Locker(Path(spark_nb.settings().home) / "journal.sqlite")
        try:
            locker.say("lock", "locked")
            began = time.monotonic()
            with pytest.raises(spark_nb.errors.JournalError, match="locked by another process"):
                avatar.generate("https://inputs.example/other.jpg", "https://inputs.example/a.wav", progress=False,
                                timeout=TIMEOUT_S, **config)
            assert time.monotonic() - began < TIMEOUT_S + SLACK_S
        finally:
            locker.close()
        assert sum(s.path == "/model/v1/generation" for s in api.seen) == 1
    finally:
        next(start, None)
