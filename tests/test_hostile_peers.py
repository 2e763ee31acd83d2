"""The client against a hostile or broken service and result host (scripted peers on loopback): every read has
a size bound, a whole-operation deadline and a type check, nothing a peer sends becomes a path, a create is
never sent twice, and every error is a SparkError naming the task and never the key."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _client, avatar, samples

from .conftest import TEST_KEY
from .peers import Peer, Seen, peers

VIDEO = samples.DRIVING_VIDEO.read_bytes()  # a real mp4 for results that should succeed
IMAGE, AUDIO = "https://inputs.example/face.jpg", "https://inputs.example/hello.wav"  # never fetched by a fake API
Handler = Callable[[Peer, socket.socket, Seen], None]


@pytest.fixture
def peer() -> Iterator[Callable[[Handler], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


def fake_api(task_id: str = "t-1", *, video_url: str | None = None, size: int | None = len(VIDEO),
             video: Handler | None = None, task: Callable[[Peer], Any] | None = None,
             create: Handler | None = None) -> Handler:
    """A Vtrix look-alike: create answers task_id; the task is completed at once; /video.mp4 serves VIDEO."""

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        if req.method == "POST" and req.path == "/model/v1/generation":
            return create(p, conn, req) if create else p.json(conn, 200, {"id": task_id, "status": "pending"})
        if req.path.startswith("/model/v1/generation/task/"):
            if task is not None:
                return p.json(conn, 200, task(p))
            content: dict[str, Any] = {"type": "video", "url": video_url or f"{p.url}/video.mp4"}
            if size is not None:
                content["size"] = size
            return p.json(conn, 200, {"id": task_id, "status": "completed", "output": [{"content": [content]}],
                                      "usage": {"cost": "0.30"}})
        if req.path == "/video.mp4":
            return video(p, conn, req) if video else p.respond(conn, 200, VIDEO, {"Content-Type": "video/mp4"})
        p.json(conn, 404, {"message": "no such route"})

    return handle


def config(api: Peer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The cloud path pointed at a fake API, results into tmp_path/out."""
    return {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out", **extra}


def generate(api: Peer, tmp_path: Path, timeout: float = 30, **extra: Any) -> spark_nb.Result:
    """avatar.generate on URL inputs (nothing uploaded) against the fake API."""
    return avatar.generate(IMAGE, AUDIO, progress=False, timeout=timeout, **config(api, tmp_path, **extra))


def files_under(folder: Path) -> list[str]:
    """Every file below folder, relative, sorted (but the test's own spark_nb home: its journal)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and "spark_nb_home" not in p.relative_to(folder).parts)


@pytest.mark.parametrize("task_id", ["../../../../escaped", "/abs/dir/escaped", "..", "a/../../b", "x" * 150,
                                     "con:nul", "id with spaces"])
@pytest.mark.slow
def test_a_task_id_never_becomes_a_path(task_id: str, peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """Whatever id the service answers, the video lands directly in output_dir and the id is sent quoted."""
    task_id = task_id.replace("escaped", f"escaped-{uuid.uuid4().hex}")  # so nothing earlier can be mistaken for it
    api = peer(fake_api(task_id))
    result = generate(api, tmp_path)
    assert result.task_id == task_id and result.path.parent == tmp_path / "out"
    assert files_under(tmp_path) == [f"out/{result.path.name}"]
    escaped = task_id.rsplit("/", 1)[-1]  # where the id taken as a path would have put the video:
    assert not (tmp_path / "out").parents[3].joinpath(f"{escaped}.mp4").exists()
    assert not Path(f"/abs/dir/{escaped}.mp4").exists() and not Path("/abs").exists()
    polls = [s.path for s in api.seen if "/task/" in s.path]
    assert polls and all(p.count("/") == 5 for p in polls)  # the id is one path segment, however it looks


@pytest.mark.parametrize("where", ["status line", "header line", "chunk header"])
def test_a_create_answer_echoing_the_key_in_broken_http_leaves_it_in_no_traceback(
        where: str, peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """The seventh attack: an answer whose malformed status line, header line or chunk header echoes the request's
    Authorization header. TaskMayExist's text was redacted, but it was raised from httpx's RemoteProtocolError, which
    quotes the line, so every printed traceback (a notebook cell's error output, an uncaught error) showed the key.
    The boundary now scrubs the chain of what leaves: the cause is a RedactedError naming httpx's error."""
    def echo(p: Peer, conn: socket.socket, req: Seen) -> None:
        said = req.headers.get("authorization", "").encode()
        p.send(conn, {"status line": said + b"\r\n\r\n",
                      "header line": b"HTTP/1.1 200 OK\r\n" + said + b"\r\n\r\n",
                      "chunk header": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + said + b"\r\n"}[where])

    api = peer(fake_api(create=echo))
    with pytest.raises(spark_nb.TaskMayExist) as info:
        generate(api, tmp_path)
    printed = "".join(traceback.format_exception(info.value))
    assert TEST_KEY[:12] not in printed and "Bearer ********" in printed, printed
    assert type(info.value.__cause__).__name__ == "RedactedError" and "RemoteProtocolError" in str(info.value.__cause__)
    cause = traceback.TracebackException.from_exception(info.value.__cause__, capture_locals=True)
    assert TEST_KEY[:12] not in "".join(cause.format())  # the frames of httpx and h11 held the echoed line: dropped
    assert [s.method for s in api.seen] == ["POST"]


def test_a_create_held_past_the_requests_own_limit_names_that_limit_not_the_network(
        peer: Callable[[Handler], Peer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seventh attack: submit() (no call timeout) whose create the service held past the request's own limit
    said "the connection failed after sending (ReadTimeout)": the network was fine. Now the limit is named (2 s
    here for the 30 s), the task may exist, and the create was sent once."""
    monkeypatch.setattr(_client, "REQUEST_TIMEOUT_S", 2.0)
    api = peer(fake_api(create=lambda p, conn, req: p.stop_event.wait(10)))
    with pytest.raises(spark_nb.TaskMayExist) as info:
        avatar.submit(IMAGE, AUDIO, **config(api, tmp_path))
    assert "the request's own limit of 2 s ran out before its answer came" in str(info.value), info.value
    assert [s.method for s in api.seen] == ["POST"]


def test_a_redirected_create_is_not_followed_and_not_resent(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """A 303 "see other" to an unreachable place: TaskMayExist (a task may exist), and exactly one POST."""
    def redirect(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.respond(conn, 303, headers={"Location": "http://127.0.0.1:9/created/t-1"})

    api = peer(fake_api(create=redirect))
    with pytest.raises(spark_nb.TaskMayExist, match="HTTP 303"):
        generate(api, tmp_path)
    assert [s.method for s in api.seen] == ["POST"]


@pytest.mark.slow
def test_a_slow_result_host_is_cut_off_at_the_deadline(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """generate(timeout=3) with a video trickling a byte every 50 ms ends by about 3 s, naming the task."""
    def slowly(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {len(VIDEO)}\r\n\r\n".encode())
        p.trickle(conn, VIDEO, every=0.05, limit=60)

    api = peer(fake_api(video=slowly))
    started = time.monotonic()
    with pytest.raises(spark_nb.DownloadError, match="took longer") as info:
        generate(api, tmp_path, timeout=3)
    assert time.monotonic() - started < 6 and info.value.task_id == "t-1"
    assert files_under(tmp_path / "out") == []


@pytest.mark.slow
def test_trickled_result_headers_are_cut_off_too(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """A result host sending its status line a byte at a time cannot hold the download past the deadline."""
    def trickled_headers(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.trickle(conn, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 10_000, every=0.05, limit=60)

    api = peer(fake_api(video=trickled_headers))
    started = time.monotonic()
    with pytest.raises(spark_nb.DownloadError):
        generate(api, tmp_path, timeout=3)
    assert time.monotonic() - started < 6


@pytest.mark.parametrize("created", ["pending", "completed"])
def test_a_host_sending_more_than_announced_is_stopped_once_and_not_retried(
        created: str, peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """The task says 1,000 bytes; the host streams 200 MB: one GET, cut off after about 1,000 bytes, not retried
    (the same URL sends as much again: the attack pulled 22 MB in 8 attempts). With a create answered `completed`
    (the variant that found the wording), the error does not claim the task "finished earlier"."""
    def flood(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        p.stream(conn, b"\0" * 65536, 200 * 1024**2, limit=30)

    def create(p: Peer, conn: socket.socket, req: Seen) -> None:
        content = {"type": "video", "url": f"{p.url}/video.mp4", "size": 1000}
        p.json(conn, 200, {"id": "t-1", "status": created, "output": [{"content": [content]}]})

    api = peer(fake_api(size=1000, video=flood, create=create))
    with pytest.raises(spark_nb.DownloadError, match="more than 1000 bytes") as info:
        generate(api, tmp_path, timeout=60)
    assert "finished earlier" not in str(info.value) and info.value.task_id == "t-1"
    assert sum(s.path == "/video.mp4" for s in api.seen) == 1 and api.sent_bytes < 8 * 1024**2
    assert files_under(tmp_path / "out") == []


def test_an_unannounced_endless_result_stops_at_the_cap(peer: Callable[[Handler], Peer], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No size in the task and no Content-Length: the download stops at the result cap, and nothing is kept."""
    monkeypatch.setattr(_client, "MAX_RESULT_BYTES", 3 * 1024**2)

    def endless(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        p.stream(conn, b"\0" * 65536, 300 * 1024**2, limit=30)

    api = peer(fake_api(size=None, video=endless))
    with pytest.raises(spark_nb.DownloadError, match="larger than the 3145728-byte limit"):
        generate(api, tmp_path)
    assert files_under(tmp_path / "out") == [] and api.sent_bytes < 40 * 1024**2


@pytest.mark.parametrize("location", ["mailto:x@y", "http://" + "a" * 300 + "/x", "http://xn--/x"])
def test_a_result_redirected_where_no_fetcher_goes_is_a_download_error_of_the_task(
        location: str, peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """A paid task whose result URL redirects to `mailto:`, a 300-character host or `xn--`: a DownloadError naming
    the task (the bounded fetcher's TransferError, not retried), and the next call waits for that same task instead
    of paying again (before: httpx.InvalidURL, UnicodeError or IDNAError, "an unexpected internal error", every
    time)."""
    def redirect(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.respond(conn, 302, headers={"Location": location})

    api = peer(fake_api(video=redirect))
    for _ in range(2):
        with pytest.raises(spark_nb.DownloadError, match="cannot be fetched") as info:
            generate(api, tmp_path, timeout=20)
        assert info.value.task_id == "t-1"
    assert [s.method for s in api.seen].count("POST") == 1
    assert sum(s.path == "/video.mp4" for s in api.seen) == 2  # once per call: not retried


def test_a_download_that_does_not_decode_is_not_kept_and_is_fetched_again(
        peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """The right size but garbage: DownloadError, no file under the final name; the next wait() fetches again."""
    garbage = os.urandom(5000)
    api = peer(fake_api(size=len(garbage), video=lambda p, conn, req: p.respond(conn, 200, garbage)))
    for _ in range(2):
        with pytest.raises(spark_nb.DownloadError, match="cannot be decoded"):
            generate(api, tmp_path)
        assert files_under(tmp_path / "out") == []
    assert sum(s.path == "/video.mp4" for s in api.seen) == 2


@pytest.mark.parametrize("answer", [[1, 2, 3], "completed", 42, None])
@pytest.mark.slow
def test_a_poll_that_is_not_a_task_object_is_retried_then_times_out(answer: Any, peer: Callable[[Handler], Peer],
                                                                     tmp_path: Path) -> None:
    """A poll answering a JSON list, string or number is no task: retried, then TaskTimeout (a SparkError)."""
    api = peer(fake_api(task=lambda p: answer))
    with pytest.raises(spark_nb.TaskTimeout) as info:
        generate(api, tmp_path, timeout=2)
    assert info.value.task_id == "t-1" and sum("/task/" in s.path for s in api.seen) >= 2


@pytest.mark.parametrize("usage", ["0.10", [1], 7, None])
@pytest.mark.slow
def test_odd_usage_and_fields_do_not_break_a_finished_result(usage: Any, peer: Callable[[Handler], Peer],
                                                              tmp_path: Path) -> None:
    """usage as a string, list or number; progress as text; a status of another type: still a Result."""
    def task(p: Peer) -> dict[str, Any]:
        return {"id": "t-1", "status": "completed", "progress": "NaN", "usage": usage, "model": ["x"],
                "output": [{"content": [{"url": f"{p.url}/video.mp4", "size": len(VIDEO)}]}]}

    result = generate(peer(fake_api(task=task)), tmp_path)
    assert result.usage == {} and result.cost is None and result.path.stat().st_size == len(VIDEO)


@pytest.mark.parametrize("retry_after", ["nan", "inf", "-5", "1e309", "soon", "Wed, 32 Foo 2026 00:00:00 GMT"])
@pytest.mark.slow
def test_a_nonsense_retry_after_is_ignored(retry_after: str, peer: Callable[[Handler], Peer], tmp_path: Path,
                                           media: dict[str, Path]) -> None:
    """Retry-After that is not a delay (nan, inf, negative, garbage) falls back to the backoff, on the upload, the
    create and the poll alike: each is retried once and the generation completes."""
    hits = {"upload": 0, "create": 0, "poll": 0}

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        route = ("upload" if req.path == "/upload" else "create" if req.path == "/model/v1/generation"
                 else "poll" if "/task/" in req.path else "video")
        if route == "video":
            return p.respond(conn, 200, VIDEO)
        hits[route] += 1
        if hits[route] == 1:
            return p.json(conn, 429, {"message": "slow down"}, {"Retry-After": retry_after})
        if route == "upload":
            return p.json(conn, 200, {"url": "https://inputs.example/uploaded.jpg"})
        if route == "create":
            return p.json(conn, 200, {"id": "t-1", "status": "pending"})
        p.json(conn, 200, {"id": "t-1", "status": "completed",
                           "output": [{"content": [{"url": f"{p.url}/video.mp4", "size": len(VIDEO)}]}]})

    api = peer(handle)
    started = time.monotonic()
    result = avatar.generate(media["portrait"], AUDIO, progress=False, timeout=30,
                             **config(api, tmp_path, uploader=f"{api.url}/upload"))
    assert result.status == "completed" and hits == {"upload": 2, "create": 2, "poll": 2}
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"])
@pytest.mark.slow
def test_retry_after_zero_or_a_past_date_means_again_now(retry_after: str, peer: Callable[[Handler], Peer],
                                                         tmp_path: Path, media: dict[str, Path]) -> None:
    """The attack: `Retry-After: 0` ("retry now") on the upload, the create (429), the poll or the download ended
    the retry loop after one attempt (a delay of 0 was read as "the deadline passed"): an UploadError, a
    RateLimitError, a ServerError or a DownloadError, the last two after paying. A date in the past the same. Now
    each route is tried again at once and the generation completes, within a second or two."""
    hits = {"upload": 0, "create": 0, "poll": 0, "video": 0}

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        route = ("upload" if req.path == "/upload" else "create" if req.path == "/model/v1/generation"
                 else "poll" if "/task/" in req.path else "video")
        hits[route] += 1
        if hits[route] == 1:
            return p.json(conn, 429 if route == "create" else 503, {"message": "busy"}, {"Retry-After": retry_after})
        if route == "upload":
            return p.json(conn, 200, {"url": "https://inputs.example/uploaded.jpg"})
        if route == "create":
            return p.json(conn, 200, {"id": "t-1", "status": "pending"})
        if route == "video":
            return p.respond(conn, 200, VIDEO, {"Content-Type": "video/mp4"})
        p.json(conn, 200, {"id": "t-1", "status": "completed",
                           "output": [{"content": [{"url": f"{p.url}/video.mp4", "size": len(VIDEO)}]}]})

    api = peer(handle)
    started = time.monotonic()
    result = avatar.generate(media["portrait"], AUDIO, progress=False, timeout=60,
                             **config(api, tmp_path, uploader=f"{api.url}/upload"))
    assert result.status == "completed" and hits == {"upload": 2, "create": 2, "poll": 2, "video": 2}
    assert time.monotonic() - started < 30  # a guard against a hang, not a speed test


@pytest.mark.parametrize("answer", [{"id": {"nested": 1}}, {"id": ["a"]}, {"id": ""}, {"id": "x" * 500},
                                    {"id": "bad\nid"}, [], "ok"])
@pytest.mark.slow
def test_a_create_answer_without_a_usable_id_says_a_task_may_exist(answer: Any, peer: Callable[[Handler], Peer],
                                                                    tmp_path: Path) -> None:
    """An id that is an object, a list, empty, huge or has control characters: TaskMayExist, sent once."""
    api = peer(fake_api(create=lambda p, conn, req: p.json(conn, 200, answer)))
    with pytest.raises(spark_nb.TaskMayExist):
        generate(api, tmp_path)
    assert sum(s.method == "POST" for s in api.seen) == 1


def test_a_server_echoing_the_key_never_puts_it_in_an_error(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """A 401 whose body repeats the Authorization header: the AuthenticationError holds no key anywhere."""
    def echo(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.json(conn, 401, {"message": f"bad key; you sent Authorization: {req.headers['authorization']}"},
               {"X-Request-Id": req.headers["authorization"]})

    with pytest.raises(spark_nb.AuthenticationError) as info:
        generate(peer(fake_api(create=echo)), tmp_path)
    error = info.value
    for text in (str(error), repr(error), error.body or "", error.request_id or "", json.dumps(error.args)):
        assert TEST_KEY not in text
    assert "Bearer ********" in str(error)


@pytest.mark.slow
def test_an_explicit_key_is_in_no_traceback_frame(tmp_path: Path) -> None:
    """api_key= given to generate(): once inside, no frame of the failing call holds it as plain text."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens: the create fails to connect, after validation
    with pytest.raises(spark_nb.SparkError) as info:
        avatar.generate(IMAGE, AUDIO, progress=False, backend="cloud", base_url=f"http://127.0.0.1:{port}",
                        api_key=TEST_KEY, output_dir=tmp_path)
    tb, frames = info.value.__traceback__, 0
    while tb is not None:
        if "spark_nb" in tb.tb_frame.f_code.co_filename:
            frames += 1
            assert TEST_KEY not in repr(tb.tb_frame.f_locals), tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    assert frames >= 3


def test_an_unusable_output_folder_is_found_before_anything_is_sent(peer: Callable[[Handler], Peer],
                                                                    tmp_path: Path) -> None:
    """output_dir naming a file (or below one): ValidationError, and the service saw nothing."""
    api = peer(fake_api())
    (tmp_path / "a_file").write_text("x")
    for folder in (tmp_path / "a_file", tmp_path / "a_file" / "below"):
        with pytest.raises(spark_nb.ValidationError, match="output folder") as info:
            avatar.generate(IMAGE, AUDIO, progress=False, **{**config(api, tmp_path), "output_dir": folder})
        assert info.value.reason == "unusable_output_dir"
    assert api.seen == []


KILLED_DOWNLOAD = """
import sys, spark_nb
spark_nb.Task.from_id("t-1", model="spark_avatar_picture_omni_v2", backend="cloud", base_url=sys.argv[1],
                      api_key="k-0123456789", output_dir=sys.argv[2]).wait(60, progress=False)
"""


def test_a_client_killed_mid_download_leaves_no_part_file_after_the_next_wait(
        peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """SIGKILL during a download leaves a .part file; the next wait() into that folder removes it and finishes."""
    slow = {"on": True}

    def video(p: Peer, conn: socket.socket, req: Seen) -> None:
        if not slow["on"]:
            return p.respond(conn, 200, VIDEO)
        p.send(conn, f"HTTP/1.1 200 OK\r\nContent-Length: {len(VIDEO)}\r\n\r\n".encode() + VIDEO[:10_000])
        p.stop_event.wait(30)

    api, out = peer(fake_api(video=video)), tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", KILLED_DOWNLOAD, api.url, str(out)])
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob(".*.part")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(out.glob(".*.part")), "the child never started its download"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    slow["on"] = False
    result = spark_nb.Task.from_id("t-1", model=avatar.MODEL.id, **config(api, tmp_path)).wait(30, progress=False)
    assert files_under(out) == [result.path.name]


def test_a_download_sweeps_its_own_stale_parts_only(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """ApiClient.download into a folder holding part files: the one a killed download of this very file left (its
    name over 100 characters, cut in the part's name) goes; a live download's part of another file whose name
    begins with this one's, and a dead writer's part of another file, stay (not this download's to judge). Before:
    the long name's part was never swept, and the live part of "<name>.x" was deleted under its writer."""
    api = peer(fake_api())
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead = int(gone.stdout)  # a process that has exited: its parts are stale
    dest = out / ("v" * 120 + ".mp4")
    own = out / f".{dest.name[:100]}.{dead}-1a.part"
    live_other = out / f".{dest.name}.x.{os.getpid()}-2b.part"
    dead_other = out / f".other.mp4.{dead}-3c.part"
    for part in (own, live_other, dead_other):
        part.write_bytes(b"x" * 100)
    client = _client.ApiClient(api.url, None, specs=False)
    size = client.download(f"{api.url}/video.mp4", dest, deadline=time.monotonic() + 30)
    assert size == len(VIDEO) and dest.read_bytes() == VIDEO
    assert not own.exists(), "a killed download's part of this file was left"
    assert live_other.exists() and dead_other.exists(), "a part of another file was swept"


def test_progress_and_retry_numbers_stay_finite() -> None:
    """The poll schedule never sleeps a NaN or a negative time, whatever progress reads (unit check)."""
    from spark_nb._polling import PollSchedule

    schedule = PollSchedule()
    for elapsed, progress in [(0.0, None), (1.0, 0.0), (2.0, 1e-9), (3.0, 0.99999), (1e9, 0.5), (4.0, 0.2)]:
        delay = schedule.next_delay(elapsed, progress)
        assert math.isfinite(delay) and 0 < delay <= 10
