"""The local server's hardening: loopback by default, nothing served outside its storage, bounded fetches and
uploads, and clients that vanish mid-download."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from spark_nb import avatar
from spark_nb._cli import _parser
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def raw_get(server: LocalServer, target: str) -> int:
    """Status code of GET target sent byte for byte (no client-side path normalisation)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def create(server: LocalServer, image_url: str, audio_url: str) -> str:
    """Create an avatar task over raw HTTP; its id."""
    answer = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, timeout=10, json={
        "model": avatar.MODEL.id, "input": [{"params": {"image_url": image_url, "audio_url": audio_url}}]})
    answer.raise_for_status()
    return str(answer.json()["id"])


def final_state(server: LocalServer, task_id: str, within: float = 30) -> dict[str, Any]:
    """Poll the task until it completes or fails (bounded)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.url}/model/v1/generation/task/{task_id}", headers=AUTH, timeout=10).json()
        if state["status"] in ("completed", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} neither completed nor failed within {within}s")


def upload(server: LocalServer, path: Path) -> str:
    """Store path on the server; its URL."""
    answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=10,
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
    assert state["status"] == "failed" and "longer than 1s" in state["error"]["error_message"]
    assert time.monotonic() - started < 10


def test_oversized_uploads_get_413(make_server: Any, media: dict[str, Path]) -> None:
    """Over the upload limit, or with no Content-Length to check, an upload is refused with 413."""
    server = make_server(api_key=TEST_KEY, max_upload_bytes=2_000)
    answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=10,
                        files={"file": ("p.jpg", media["portrait"].read_bytes())})
    assert answer.status_code == 413 and "at most 2000 bytes" in answer.json()["message"]

    def chunks() -> Iterator[bytes]:
        yield b"x" * 100

    chunked = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, content=chunks(), timeout=10)
    assert chunked.status_code == 413
    assert server.stats()["uploads"] == 0


def test_a_client_vanishing_mid_download_harms_nothing(make_server: Any, media: dict[str, Path]) -> None:
    """Read a few bytes of a result, drop the connection; the server still serves the whole file after."""
    server = make_server(api_key=TEST_KEY)
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    path = f"/files/results/{result.task_id}.mp4"
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
