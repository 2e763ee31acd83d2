"""The one bounded reader of API answers (_answers) against a hostile API over real HTTP on loopback: every answer
of create, poll and the upload endpoint is read within one whole-request deadline and a 1 MB cap after
decompression, and JSON nested 100,000 deep, too large, of absurd numbers, not UTF-8 or not an object is an
unreadable answer: a poll retries it until the call's deadline, a create's is TaskMayExist, an upload's an
UploadError. The attacks that found the class: a poll nested 100,000 deep raised RecursionError out of
generate(); a trickled answer held generate(timeout=5) for 90 s; a 1 MB gzip answer grew the client to 3.2 GB."""

from __future__ import annotations

import functools
import socket
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import _client, avatar, samples
from spark_nb._answers import MAX_ANSWER_BYTES, Answer, install_deadlines, parse_json, read_answer
from spark_nb._retry import RetryPolicy

from .conftest import TEST_KEY
from .peers import HOSTILE_ANSWERS, TASK_ID, Peer, Seen, gzip_bomb, hostile_answer, hostile_api, peers

VIDEO = samples.DRIVING_VIDEO.read_bytes()
IMAGE, AUDIO = "https://inputs.example/face.jpg", "https://inputs.example/hello.wav"
LIMIT_S = 2.0  # the request's own limit in these tests (30 s in use)
SLOW_KINDS = {"trickled_body", "trickled_headers", "stall", "gzip_bomb"}  # each takes its limit, or makes a bomb
Handler = Callable[[Peer, socket.socket, Seen], None]


@pytest.fixture
def peer() -> Iterator[Callable[[Handler], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's own limit of 2 s and short backoffs, so a test takes seconds (the bounds are the same)."""
    monkeypatch.setattr(_client, "REQUEST_TIMEOUT_S", LIMIT_S)
    monkeypatch.setattr(_client, "RetryPolicy", functools.partial(RetryPolicy, max_attempts=3, base_delay=0.05,
                                                                  max_delay=0.1))


def kinds() -> list[Any]:
    """Every hostile answer, the slow ones marked slow."""
    return [pytest.param(kind, marks=pytest.mark.slow) if kind in SLOW_KINDS else kind for kind in HOSTILE_ANSWERS]


def config(api: Peer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """The cloud path pointed at the hostile API, results into tmp_path/out."""
    return {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out", **extra}


def read(api: Peer, path: str = "/model/v1/generation/task/t-1", seconds: float = LIMIT_S) -> Answer:
    """One bounded GET to the peer, as the client reads answers."""
    with install_deadlines(httpx.Client(trust_env=False)) as http:
        return read_answer(http, "GET", f"{api.url}{path}", deadline=time.monotonic() + seconds)


@pytest.mark.parametrize("kind", kinds())
def test_a_hostile_poll_is_retried_until_the_calls_deadline(kind: str, peer: Callable[[Handler], Peer],
                                                            tmp_path: Path) -> None:
    """Whatever the poll answers (nested 100,000 deep, a gzip bomb, trickled, stalled, a 5,000-digit number, not
    UTF-8, a list, 2 MB), generate(timeout=2) ends with TaskTimeout naming the task by about 2 s."""
    api = peer(hostile_api("poll", kind, VIDEO))
    started = time.monotonic()
    with pytest.raises(spark_nb.TaskTimeout) as info:
        avatar.generate(IMAGE, AUDIO, progress=False, timeout=2, **config(api, tmp_path))
    assert time.monotonic() - started < 3.5
    assert info.value.task_id == TASK_ID and sum("/task/" in s.path for s in api.seen) >= 1


@pytest.mark.parametrize("kind", kinds())
def test_a_hostile_create_answer_is_a_task_that_may_exist(kind: str, peer: Callable[[Handler], Peer],
                                                          tmp_path: Path) -> None:
    """The create's answer unreadable or cut off at the request's limit: TaskMayExist, sent once, never hanging."""
    api = peer(hostile_api("create", kind, VIDEO))
    started = time.monotonic()
    with pytest.raises(spark_nb.TaskMayExist):
        avatar.generate(IMAGE, AUDIO, progress=False, timeout=30, **config(api, tmp_path))
    assert time.monotonic() - started < LIMIT_S + 2
    assert sum(s.method == "POST" for s in api.seen) == 1


@pytest.mark.parametrize("kind", kinds())
def test_a_hostile_upload_answer_is_an_upload_error_and_nothing_is_created(
        kind: str, peer: Callable[[Handler], Peer], tmp_path: Path, media: dict[str, Path]) -> None:
    """The upload endpoint's answer unreadable or cut off: retried a bounded number of times, then UploadError;
    no task is created."""
    api = peer(hostile_api("upload", kind, VIDEO))
    with pytest.raises(spark_nb.UploadError):
        avatar.generate(media["portrait"], AUDIO, progress=False, timeout=30,
                        **config(api, tmp_path, uploader=f"{api.url}/upload"))
    assert not any(s.path == "/model/v1/generation" for s in api.seen)
    assert 1 <= sum(s.path == "/upload" for s in api.seen) <= 3


@pytest.mark.parametrize("kind,problem", [
    ("nested", "nested deeper than 64"), ("huge_number", "not JSON"), ("invalid_utf8", "not UTF-8"),
    ("too_large", f"larger than {MAX_ANSWER_BYTES} bytes"),
    pytest.param("gzip_bomb", f"larger than {MAX_ANSWER_BYTES} bytes once decompressed", marks=pytest.mark.slow),
])
def test_the_reader_says_why_an_answer_is_unreadable(kind: str, problem: str, peer: Callable[[Handler], Peer]) -> None:
    """Each bound broken is named in Answer.problem, with no data; a list is data (the caller wants an object)."""
    api = peer(lambda p, conn, req: hostile_answer(p, conn, kind, {"id": TASK_ID, "status": "pending"}))
    answer = read(api)
    assert answer.status == 200 and answer.data is None and problem in (answer.problem or "")
    assert len(answer.body) <= MAX_ANSWER_BYTES
    listed = read(peer(lambda p, conn, req: hostile_answer(p, conn, "non_object", {"id": TASK_ID})))
    assert listed.data == [{"id": TASK_ID}] and listed.problem is None


@pytest.mark.slow
def test_a_gzip_bomb_never_grows_the_process(peer: Callable[[Handler], Peer]) -> None:
    """1 MB of gzip that decodes to 1 GB: the reader's allocations stay within a few MB of the 1 MB cap (Python's
    own allocation tracer: what the old read held was the whole gigabyte)."""
    gzip_bomb()  # made before measuring
    api = peer(lambda p, conn, req: hostile_answer(p, conn, "gzip_bomb", {"id": TASK_ID}))
    tracemalloc.start()
    try:
        answer = read(api, seconds=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert answer.problem is not None and "once decompressed" in answer.problem
    assert peak < 16 * 1024**2, peak


def test_a_deflate_bomb_and_an_announced_5_gb_are_refused_unread(peer: Callable[[Handler], Peer]) -> None:
    """Variants: a deflate (zlib) body of 64 MB of zeros, and a Content-Length of 5 GB (not read at all)."""
    zeros = zlib.compress(bytes(64 << 20), 9)
    bomb = peer(lambda p, conn, req: p.respond(conn, 200, zeros, {"Content-Encoding": "deflate"}))
    assert "once decompressed" in (read(bomb).problem or "")

    def announcing(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\n\r\n")
        p.stream(conn, b"\0" * 65536, 50 << 20, limit=10)

    huge = peer(announcing)
    answer = read(huge)
    assert "it announces 5000000000" in (answer.problem or "") and answer.body == b""
    assert huge.sent_bytes < 40 << 20  # the connection was dropped, not drained


def test_the_deadline_covers_a_trickle_that_each_read_timeout_would_allow(peer: Callable[[Handler], Peer]) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the whole request still ends at its 1 s deadline."""
    def trickle(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        p.trickle(conn, b"{" + b" " * 98 + b"}", every=0.1)

    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        read(peer(trickle), seconds=1.0)
    assert time.monotonic() - started < 4.0  # a loaded machine's slack, well short of the trickle's 10 s


def test_error_answers_are_read_through_the_same_bounds(peer: Callable[[Handler], Peer], tmp_path: Path) -> None:
    """A 401 whose body is a 100,000-deep nest, and a 400 of 2 MB: their APIErrors, each body kept short."""
    def refuse(p: Peer, conn: socket.socket, req: Seen) -> None:
        if req.method == "POST":
            return p.respond(conn, 400, b'{"message": "' + b"x" * (2 << 20) + b'"}')
        p.respond(conn, 401, b"[" * 100_000 + b"]" * 100_000)

    api = peer(refuse)
    with pytest.raises(spark_nb.APIError) as refused:
        avatar.generate(IMAGE, AUDIO, progress=False, **config(api, tmp_path))
    assert refused.value.status_code == 400 and len(refused.value.body or "") <= 4000
    with pytest.raises(spark_nb.AuthenticationError) as denied:
        spark_nb.Task.from_id(TASK_ID, **config(api, tmp_path)).status()
    assert len(denied.value.body or "") <= 4000 and len(str(denied.value)) < 1000


def test_json_within_the_bounds_is_read_as_it_is() -> None:
    """parse_json takes what a task object can be: 64 levels, NaN and 1e999 (numbers the task reader then
    refuses), an empty object; 65 levels are too deep."""
    assert parse_json(b"[" * 64 + b"]" * 64)[1] is None
    assert "nested deeper" in (parse_json(b"[" * 65 + b"]" * 65)[1] or "")
    data, problem = parse_json(b'{"progress": NaN, "size": 1e999, "o": {}}')
    assert problem is None and data["size"] == float("inf") and data["o"] == {}
