"""The local server's hardening: loopback by default, nothing served outside its storage, bounded fetches and
uploads, and clients that vanish mid-download."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import spark_nb
from spark_nb import avatar, imitator
from spark_nb._cli import _parser
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config, ffmpeg

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def raw_get(server: LocalServer, target: str) -> int:
    """Status code of GET target sent byte for byte (no client-side path normalisation)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def create(server: Any, image_url: str, audio_url: str, *, model: str = avatar.MODEL.id,
           params: dict[str, Any] | None = None) -> str:
    """Create a task over raw HTTP on a server (anything with a .url); its id. An avatar unless params say else."""
    params = params or {"image_url": image_url, "audio_url": audio_url}
    answer = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, timeout=30,
                        json={"model": model, "input": [{"params": params}]})
    answer.raise_for_status()
    return str(answer.json()["id"])


def final_state(server: Any, task_id: str, within: float = 30) -> dict[str, Any]:
    """Poll the task until it completes or fails (bounded)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.url}/model/v1/generation/task/{task_id}", headers=AUTH, timeout=10).json()
        if state["status"] in ("completed", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} neither completed nor failed within {within}s")


def upload(server: Any, path: Path) -> str:
    """Store path on a server (anything with a .url); its URL."""
    answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=30,
                        files={"file": (path.name, path.read_bytes())})
    answer.raise_for_status()
    return str(answer.json()["url"])


@pytest.fixture
def trickle_server() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that sends headers, then one byte every 0.2 s, forever (until closed)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n")
                for _ in range(300):  # at most 60 s
                    if stop.wait(0.2):
                        break
                    try:
                        conn.sendall(b"x")
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow.jpg"
    stop.set()
    thread.join(timeout=10)
    listener.close()


def test_it_binds_loopback_unless_told_otherwise(make_server: Any) -> None:
    """LocalServer and `spark-nb serve` default to 127.0.0.1."""
    server = make_server()
    assert server.url.startswith("http://127.0.0.1:")
    assert _parser().parse_args(["serve"]).host == "127.0.0.1"


@pytest.mark.parametrize("target", [
    "/files/../../etc/passwd", "/files/uploads/..%2f..%2f..%2fetc%2fpasswd", "/files/results/%2e%2e%2fsecret",
    "/files/uploads/%2e%2e", "/files/work/anything", "/files/uploads//etc/passwd", "/files/uploads/.hidden",
    "/files/results/..%5c..%5cwin.ini", "/etc/passwd", "/files/uploads/a%00.mp4",
])
@pytest.mark.slow
def test_nothing_outside_its_storage_is_served(target: str, make_server: Any) -> None:
    """Traversal attempts, sent raw so no client normalises them, get 404."""
    server = make_server(api_key=TEST_KEY)
    assert raw_get(server, target) == 404


def test_input_urls_other_than_http_fail_the_task(make_server: Any) -> None:
    """A file: or ftp: input URL fails the task with the service-error code, naming the rule."""
    server = make_server(api_key=TEST_KEY)
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x.jpg"):
        state = final_state(server, create(server, url, url))
        assert state["status"] == "failed"
        assert state["error"]["code"] == "003016095"
        assert "must be an http(s) URL" in state["error"]["error_message"]


def test_input_downloads_are_capped_in_size(make_server: Any, media: dict[str, Path]) -> None:
    """An input larger than the fetch limit fails the task with a message naming the limit."""
    server = make_server(api_key=TEST_KEY, max_fetch_bytes=10_000)
    big = upload(server, media["portrait"])  # tens of KB
    assert media["portrait"].stat().st_size > 10_000
    state = final_state(server, create(server, big, upload(server, media["speech"])))
    assert state["status"] == "failed" and "larger than the 10000-byte limit" in state["error"]["error_message"]


def test_input_downloads_are_capped_in_time(make_server: Any, trickle_server: str) -> None:
    """A server trickling one byte at a time cannot hold a render worker past the fetch timeout."""
    server = make_server(api_key=TEST_KEY, fetch_timeout=1.0)
    started = time.monotonic()
    state = final_state(server, create(server, trickle_server, trickle_server), within=20)
    assert state["status"] == "failed" and "longer than 1 s" in state["error"]["error_message"]
    assert time.monotonic() - started < 10


def test_oversized_uploads_get_413(make_server: Any, media: dict[str, Path]) -> None:
    """Over the upload limit, or with no Content-Length to check, an upload is refused with 413."""
    server = make_server(api_key=TEST_KEY, max_upload_bytes=2_000)
    answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=10,
                        files={"file": ("p.jpg", media["portrait"].read_bytes())})
    assert answer.status_code == 413 and "upload limit of 2000 bytes" in answer.json()["message"]

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100

    chunked = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, content=chunks(), timeout=10)
    assert chunked.status_code == 413
    assert server.stats()["uploads"] == 0


def test_a_file_of_exactly_the_limit_is_taken_and_one_byte_more_is_not(make_server: Any) -> None:
    """The server holds the file to the limit the client checks (_limits.media_too_large: at most the limit), not
    the request's Content-Length, which carries the multipart envelope too (the third attack: a video of exactly
    100 MB passed the client's checks, was sent, and was refused after the upload)."""
    server = make_server(api_key=TEST_KEY, max_upload_bytes=100_000)
    for size, status in ((100_000, 200), (100_001, 413)):
        answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=10,
                            files={"file": ("driving.mp4", b"v" * size)})
        assert answer.status_code == status, (size, answer.text)
    assert server.stats()["uploads"] == 1
    kept = server.service.storage / "uploads"
    assert [p.stat().st_size for p in kept.iterdir() if p.is_file()] == [100_000]  # none over it kept


def test_a_client_vanishing_mid_download_harms_nothing(make_server: Any, media: dict[str, Path]) -> None:
    """Read a few bytes of a result, drop the connection; the server still serves the whole file after."""
    server = make_server(api_key=TEST_KEY)
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    path = urlsplit(result.url).path  # a random name, not the task id
    host, port = server.url.removeprefix("http://").split(":")
    for _ in range(5):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        assert sock.recv(200)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
        sock.close()
    whole = httpx.get(f"{server.url}{path}", timeout=30)
    assert whole.status_code == 200 and len(whole.content) == result.size
    assert final_state(server, result.task_id)["status"] == "completed"


# -- hostile inputs and requests against a server under a hard memory cap --------------------------------------

GB = 1024**3


def make_jump_video(path: Path) -> Path:
    """A 1 s clip (under 20 KB) whose timestamps jump ten hours ahead after frame 12: its header says 36001 s."""
    ffmpeg("-t", "1", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=25",
           "-vf", r"setpts='if(gte(N\,12)\,PTS+36000/TB\,PTS)'", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A small, valid PNG of width x height that compresses to almost nothing (all one colour)."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = zlib.compress(b"".join(b"\x00" + b"\x00" * width for _ in range(min(height, 64))), 9)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_a_video_whose_timestamps_jump_ten_hours_is_bounded(serve_process: Callable[..., Any], media: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """The client refuses it (36001 s is over its limit) with zero requests; the server, given it anyway, fails
    the task at once with the limit named, under 1 GB, and its next normal task completes."""
    jump = make_jump_video(tmp_path / "jump.mp4")
    assert jump.stat().st_size < 30_000
    server = serve_process()
    with pytest.raises(spark_nb.ValidationError, match="lasts 36001 s") as info:
        imitator.generate(media["portrait"], jump, progress=False, backend="cloud", base_url=server.url,
                          api_key=TEST_KEY, uploader=f"{server.url}/api/v1/storage/files")
    assert info.value.reason == "media_too_long"
    assert httpx.get(f"{server.url}/_spark_nb/stats").json()["uploads"] == 0
    started = time.monotonic()
    image, video = upload(server, media["portrait"]), upload(server, jump)
    task = create(server, image, video, model=imitator.MODEL.id,
                  params={"image_url": image, "driving_video_info": {"video_url": video, "store_type": 0}})
    state = final_state(server, task)
    assert state["status"] == "failed" and "lasts 36001 s" in state["error"]["error_message"]
    assert time.monotonic() - started < 15 and server.peak_rss() < 1 * GB
    normal = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud",
                             base_url=server.url, api_key=TEST_KEY, uploader=f"{server.url}/api/v1/storage/files")
    assert normal.path.is_file() and server.peak_rss() < 1 * GB


def test_a_13000_px_picture_given_as_a_url_is_refused_before_decoding(serve_process: Callable[..., Any],
                                                                     media: dict[str, Path], tmp_path: Path) -> None:
    """A few-KB PNG of 13000x13000 (refused as a path by the client) sent as a URL: the task fails, naming the size;
    two of them at once keep the server under 1 GB."""
    bomb = tmp_path / "huge.png"
    bomb.write_bytes(png_claiming(13_000, 13_000))
    assert bomb.stat().st_size < 200_000
    server = serve_process()
    image, audio = upload(server, bomb), upload(server, media["speech"])
    tasks = [create(server, image, audio) for _ in range(2)]
    for task in tasks:
        state = final_state(server, task)
        assert state["status"] == "failed" and "13000x13000" in state["error"]["error_message"]
    assert server.peak_rss() < 1 * GB


@pytest.mark.parametrize("image", ["side", "bytes"])
def test_the_server_refuses_the_images_the_client_refuses(image: str, make_server: Any, media: dict[str, Path],
                                                          tmp_path: Path) -> None:
    """One set of limits (spark_nb._limits), the seed's "less than 4096x4096, less than 5 MB" read once: an image
    4096 px wide, or of exactly 5 MB, is refused by the client before anything is sent, and a task given it
    directly fails on the local server naming the same limit (before, the server took 4096 px and any weight)."""
    from PIL import Image

    from spark_nb._limits import IMAGE_BYTES, IMAGE_SIDE

    path = tmp_path / "edge.jpg"
    if image == "side":
        Image.new("RGB", (IMAGE_SIDE, 8), "gray").save(path)
    else:  # a valid JPEG padded after its end marker to the limit exactly
        path.write_bytes(media["portrait"].read_bytes().ljust(IMAGE_BYTES, b"\0"))
    said = f"under {IMAGE_SIDE}x{IMAGE_SIDE}" if image == "side" else f"under {IMAGE_BYTES // 1024**2} MB"
    server = make_server(api_key=TEST_KEY)
    with pytest.raises(spark_nb.ValidationError, match=said) as refused:
        avatar.generate(path, media["speech"], progress=False, **cloud_config(server))
    assert refused.value.reason == "image_too_large" and server.stats()["created"] == 0
    state = final_state(server, create(server, upload(server, path), upload(server, media["speech"])))
    assert state["status"] == "failed" and said in state["error"]["error_message"]


@pytest.mark.parametrize("body", [
    pytest.param(lambda: b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="nested-100k-deep"),
    pytest.param(lambda: json.dumps({"model": ["spark_avatar_picture_omni_v2"], "input": []}).encode(),
                 id="model-list"),
    pytest.param(lambda: json.dumps({"model": {"id": "x"}, "input": []}).encode(), id="model-dict"),
    pytest.param(lambda: json.dumps({"model": 7}).encode(), id="model-number"),
    pytest.param(lambda: b"[1, 2, 3]", id="a-list"),
    pytest.param(lambda: b'"just a string"', id="a-string"),
    pytest.param(lambda: b"\xff\xfe not utf-8", id="not-utf8"),
    pytest.param(lambda: json.dumps({"model": "spark_avatar_picture_omni_v2",
                                     "input": [{"params": {"image_url": "x" * 10_000, "audio_url": "y"}}]}).encode(),
                 id="huge-url"),
])
def test_malformed_creates_get_a_4xx_not_a_500(body: Callable[[], bytes], make_server: Any) -> None:
    """Whatever the body, create answers 400 (or 413) with a message, and the server keeps working."""
    server = make_server(api_key=TEST_KEY)
    answer = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, content=body(), timeout=30)
    assert 400 <= answer.status_code < 500 and answer.json()
    assert server.stats()["created"] == 0
    assert httpx.get(f"{server.url}/_spark_nb/stats", headers=AUTH).status_code == 200


def test_a_huge_create_body_is_refused_without_being_read(serve_process: Callable[..., Any]) -> None:
    """A create announcing 300 MB gets 413 at once; one streamed without a length is cut off after 256 KB."""
    server = serve_process()
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /model/v1/generation HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TEST_KEY}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {300 * 1024**2}\r\n\r\n{{".encode())
        assert b" 413 " in sock.recv(4096).split(b"\r\n", 1)[0]

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 40 x 64 KB, no Content-Length
            yield b" " * 65536

    answer = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, content=chunks(), timeout=30)
    assert answer.status_code == 413 and server.peak_rss() < 1 * GB


@pytest.mark.slow
def test_task_records_are_bounded(make_server: Any) -> None:
    """With max_tasks=20, 60 finished tasks leave at most 20 records, and their videos' files go with them."""
    server = make_server(api_key=TEST_KEY, max_tasks=20)
    missing = f"{server.url}/files/uploads/missing.jpg"  # fails fast: the input is not there
    ids = [create(server, missing, missing) for _ in range(60)]
    for task_id in ids[-5:]:
        final_state(server, task_id)
    deadline = time.monotonic() + 30
    while any(server.service.tasks.get(i) and not server.service.tasks[i].finished for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    create(server, missing, missing)  # eviction happens as tasks arrive
    assert len(server.service.tasks) <= 21
    assert server.service.tasks.get(ids[0]) is None and server.service.tasks.get(ids[-1]) is not None


def test_too_many_tasks_in_flight_get_429_with_retry_after(make_server: Any, trickle_server: str) -> None:
    """Past max_pending unfinished tasks, create answers 429 (the client retries that safely), not a queue."""
    server = make_server(api_key=TEST_KEY, max_pending=2, render_workers=1, fetch_timeout=3.0)
    for _ in range(2):
        create(server, trickle_server, trickle_server)
    answer = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, timeout=10, json={
        "model": avatar.MODEL.id, "input": [{"params": {"image_url": trickle_server, "audio_url": trickle_server}}]})
    assert answer.status_code == 429 and answer.headers["retry-after"] == "5"


@pytest.mark.slow
def test_trickled_input_headers_cannot_hold_a_worker(make_server: Any, media: dict[str, Path]) -> None:
    """An input host sending its status line a byte at a time fails the task at the fetch limit; the worker is free
    for the next task."""
    from .peers import Peer

    peer = Peer(lambda p, conn, req: p.trickle(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 10_000, every=0.1))
    try:
        server = make_server(api_key=TEST_KEY, fetch_timeout=1.5, render_workers=1)
        started = time.monotonic()
        state = final_state(server, create(server, f"{peer.url}/face.jpg", f"{peer.url}/a.wav"), within=20)
        assert state["status"] == "failed" and "longer than" in state["error"]["error_message"]
        assert time.monotonic() - started < 6
        image, audio = upload(server, media["portrait"]), upload(server, media["speech"])
        assert final_state(server, create(server, image, audio), within=60)["status"] == "completed"
    finally:
        peer.stop()


@pytest.mark.parametrize("script", ["redirect-loop", "lying-length", "endless"])
def test_hostile_input_hosts_fail_the_task_fast(script: str, make_server: Any) -> None:
    """A redirect loop, a Content-Length over the cap, and an endless body: each fails the task with its reason."""
    from .peers import Peer

    def handle(p: Peer, conn: socket.socket, req: Any) -> None:
        if script == "redirect-loop":
            p.respond(conn, 302, headers={"Location": f"{p.url}/again{len(p.seen)}"})
        elif script == "lying-length":
            p.respond(conn, 200, b"x", length=10**12)
        else:
            p.send(conn, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            p.stream(conn, b"\0" * 65536, 10**12, limit=30)

    peer = Peer(handle)
    try:
        server = make_server(api_key=TEST_KEY, max_fetch_bytes=2 * 1024**2)
        state = final_state(server, create(server, f"{peer.url}/x.jpg", f"{peer.url}/x.wav"), within=30)
        reason = {"redirect-loop": "redirected more than", "lying-length": "larger than",
                  "endless": "larger than"}[script]
        assert state["status"] == "failed" and reason in state["error"]["error_message"]
        assert peer.sent_bytes < 20 * 1024**2
    finally:
        peer.stop()


def test_a_render_over_its_time_limit_fails_the_task(make_server: Any, media: dict[str, Path]) -> None:
    """A render longer than render_timeout fails with the limit named, instead of holding a worker."""
    server = make_server(api_key=TEST_KEY, render_timeout=0.3)
    image, audio = upload(server, media["portrait"]), upload(server, media["long_speech"])
    state = final_state(server, create(server, image, audio), within=60)
    assert state["status"] == "failed" and "longer than this server's 0.3 s" in state["error"]["error_message"]


def test_the_embedded_server_takes_what_the_configured_limits_let_through(tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    """The attack (fourth round): configure(max_input_mb=150) on the local backend passed the client's checks, then
    the embedded server refused the 111 MB upload at its own 100 MB (413). The embedded server now takes what its
    process's configured limits let through (raised, never lowered by a later call with smaller ones)."""
    from spark_nb import _backends
    from spark_nb.local._embedded import embedded_server, stop_servers_under

    raised = spark_nb.settings(backend="local", home=tmp_path / "home", max_input_mb=150, max_input_seconds=900)
    _backends.api_client(raised)
    server = embedded_server(raised.home)
    request.addfinalizer(lambda: stop_servers_under(tmp_path))
    limit = 150 * 1024**2
    assert (server.options.max_upload_bytes, server.options.max_fetch_bytes, server.options.max_seconds) == (
        limit, limit, 900)
    big = tmp_path / "big.mp4"
    with big.open("wb") as fh:
        fh.truncate(101 * 1024**2)  # a sparse file just over the default limit
    with big.open("rb") as fh:
        answer = httpx.post(f"{server.url}/api/v1/storage/files", timeout=120, files={"file": ("big.mp4", fh)},
                            headers={"Authorization": f"Bearer {server.token.reveal()}"})
    assert answer.status_code == 200, answer.text
    _backends.api_client(spark_nb.settings(backend="local", home=tmp_path / "home"))  # the defaults: not lowered
    assert server.options.max_upload_bytes == limit
