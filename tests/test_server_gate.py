"""What reaches a local server's routes and what its answers and files say, over real sockets on loopback.

A web page on a name that resolves to 127.0.0.1 (DNS rebinding) sends its requests with its own Host name; a
request that carries both Content-Length and Transfer-Encoding smuggles a body past a check of its length;
uploads in flight at the same moment each fit the store's bound alone; an upload named .html is a page of the
server's origin if it is served as one; a result named by its task id is anyone's who saw the id.
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from spark_nb import avatar
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
MakeServer = Callable[..., LocalServer]
CREATE = {"model": "spark_avatar_picture_omni_v2",
          "input": [{"params": {"image_url": "http://127.0.0.1:9/a.jpg", "audio_url": "http://127.0.0.1:9/a.wav"}}]}


def _address(server: LocalServer) -> tuple[str, int]:
    parts = urlsplit(server.url)
    return parts.hostname or "", parts.port or 0


def test_a_foreign_host_name_is_refused_on_loopback(make_server: MakeServer) -> None:
    """Requests whose Host names another host (a rebinding page's, with or without a port) get 403 on every route,
    on a keyless server and on one with a key, and nothing is created or uploaded; loopback names are served.
    Before, a page at evil.test:PORT uploaded, created a task and read the stats."""
    for server in (make_server(), make_server(api_key=TEST_KEY)):
        port = _address(server)[1]
        with httpx.Client(timeout=10, trust_env=False, headers=AUTH) as http:
            for host in (f"evil.test:{port}", "evil.test", f"127.0.0.1.evil.test:{port}", f"localhost.evil:{port}"):
                answers = [http.get(f"{server.url}/_spark_nb/stats", headers={"Host": host}),
                           http.post(f"{server.url}/api/v1/storage/files", headers={"Host": host},
                                     files={"file": ("x.jpg", b"x" * 1000)}),
                           http.post(f"{server.url}/model/v1/generation", headers={"Host": host}, json=CREATE),
                           http.get(f"{server.url}/model/v1/generation/task/x", headers={"Host": host})]
                assert [a.status_code for a in answers] == [403] * 4, (host, [a.text for a in answers])
                assert "loopback" in answers[0].json()["message"]
            for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"127.7.7.7:{port}", "localhost"):
                assert http.get(f"{server.url}/_spark_nb/stats", headers={"Host": host}).status_code == 200, host
        assert server.stats()["created"] == server.stats()["uploads"] == 0


def test_the_urls_a_server_hands_out_are_its_own_address_never_the_host_header(make_server: MakeServer,
                                                                                media: dict[str, Path]) -> None:
    """An upload and a finished task asked for under the name localhost (a loopback name, so served) answer URLs
    at the address the server listens on, 127.0.0.1, that work. Before, the Host header was copied into them."""
    server = make_server(api_key=TEST_KEY)
    host, port = _address(server)
    with httpx.Client(timeout=30, trust_env=False, headers={**AUTH, "Host": f"localhost:{port}"}) as http:
        urls = [http.post(f"{server.url}/api/v1/storage/files",
                          files={"file": (f"input{media[kind].suffix}", media[kind].read_bytes())}).json()["url"]
                for kind in ("portrait", "speech")]
        assert all(url.startswith(f"{server.url}/files/uploads/") for url in urls), urls
        task = http.post(f"{server.url}/model/v1/generation", json={
            "model": "spark_avatar_picture_omni_v2", "input": [{"params": {"image_url": urls[0],
                                                                           "audio_url": urls[1]}}]}).json()
        deadline = time.monotonic() + 120
        while (state := http.get(f"{server.url}/model/v1/generation/task/{task['id']}").json())["status"] not in (
                "completed", "failed"):
            assert time.monotonic() < deadline, state
            time.sleep(0.3)
    video = state["output"][0]["content"][0]["url"]
    assert state["status"] == "completed" and video.startswith(f"http://{host}:{port}/files/results/"), state
    assert httpx.get(video, timeout=30, trust_env=False).status_code == 200


def _raw(server: LocalServer, data: bytes, timeout: float = 10) -> bytes:
    """What the server answers to data within timeout (until it closes the connection, or 64 KB)."""
    answer = b""
    with socket.create_connection(_address(server), timeout=timeout) as sock:
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        try:
            while len(answer) < 65536 and time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk or (b"\r\n\r\n" in answer + chunk and (answer + chunk).endswith(b"}")):
                    return answer + chunk
                answer += chunk
        except (TimeoutError, ConnectionError):
            pass
    return answer


def test_content_length_with_transfer_encoding_is_refused_before_any_body_is_read(make_server: MakeServer) -> None:
    """An upload announcing 100 bytes and sending its body in chunks (Content-Length and Transfer-Encoding
    together): 400 before the body is read, nothing stored. Before, the upload route checked the 100 and h11 read the
    chunks: 150 MB were stored past a 100 MB limit."""
    server = make_server(api_key=TEST_KEY)
    head = (b"POST /api/v1/storage/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TEST_KEY.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n' + b"A" * 60_000
    answer = _raw(server, head + b"%x\r\n%s\r\n" % (len(part), part))  # and more chunks, were it read
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"Content-Length and Transfer-Encoding" in answer
    assert server.stats()["uploads"] == 0 and list((server.service.storage / "uploads").iterdir()) == []


def _upload_head(length: int) -> bytes:
    return (b"POST /api/v1/storage/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + TEST_KEY.encode()
            + b"\r\nContent-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: %d\r\n\r\n" % length)


def test_uploads_arriving_together_fit_the_stores_bound_together(make_server: MakeServer) -> None:
    """Five 100 KB uploads on their way at once into a store bounded at 250 KB: two fit and are stored, the three
    others are refused (413) before their bodies are read. Before, the bound was checked only after an upload
    finished, so uploads in flight together passed it: all five were taken."""
    server = make_server(api_key=TEST_KEY, max_stored_upload_bytes=250_000)
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
    end = b"\r\n--XyZ--\r\n"
    body = part + os.urandom(100_000) + end
    socks = [socket.create_connection(_address(server), timeout=10) for _ in range(5)]
    answers: dict[socket.socket, bytes] = {}
    try:
        for sock in socks:
            sock.sendall(_upload_head(len(body)) + body[:50_000])
        deadline = time.monotonic() + 10
        with selectors.DefaultSelector() as waiting:  # not select.select: a long run's descriptors pass 1024
            for sock in socks:
                waiting.register(sock, selectors.EVENT_READ)
            while len(answers) < 3 and time.monotonic() < deadline:  # the refusals come without the rest of the body
                for key, _ in waiting.select(0.2):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    answers[sock] = sock.recv(4096)
                    waiting.unregister(sock)
        assert [a.split(b"\r\n", 1)[0] for a in answers.values()] == [b"HTTP/1.1 413 Request Entity Too Large"] * 3
        for sock in socks:
            if sock not in answers:
                sock.sendall(body[50_000:])
                answers[sock] = sock.recv(4096)
    finally:
        for sock in socks:
            sock.close()
    statuses = sorted(answer.split(b" ", 2)[1] for answer in answers.values())
    assert statuses == [b"200", b"200", b"413", b"413", b"413"], answers
    assert sum(p.stat().st_size for p in (server.service.storage / "uploads").iterdir()) <= 250_000


def test_an_upload_is_cut_off_past_its_content_length_and_the_limit(make_server: MakeServer) -> None:
    """An upload over the server's limit (a file's and its multipart envelope's) is refused by its length; one
    whose length is within the limit but whose store is full is refused too, before anything is read."""
    from spark_nb._limits import FORM_BYTES

    server = make_server(api_key=TEST_KEY, max_upload_bytes=2000, max_stored_upload_bytes=10_000)
    assert _raw(server, _upload_head(2000 + FORM_BYTES + 1)).startswith(b"HTTP/1.1 413 ")
    small = make_server(api_key=TEST_KEY, max_stored_upload_bytes=1000)
    answer = _raw(small, _upload_head(1500))
    assert answer.startswith(b"HTTP/1.1 413 ") and b"storage is full" in answer, answer
    assert server.stats()["uploads"] == small.stats()["uploads"] == 0


@pytest.mark.parametrize("name, body", [
    ("evil.html", b"<script>document.title = 'ran'</script>"),
    ("evil.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("evil.xhtml", b'<html xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></html>'),
    ("evil.jpg", b"<html><script>alert(1)</script></html>"),
    ("noname", b"<html><script>alert(1)</script></html>"),
])
def test_uploads_are_served_as_media_or_bytes_never_as_pages(name: str, body: bytes, make_server: MakeServer) -> None:
    """An upload is served with a media type from a short list (a .jpg as image/jpeg), anything else as
    application/octet-stream, never sniffed, and sandboxed. Before, .html was text/html and .svg image/svg+xml with
    no nosniff and no CSP: an attacker's page ran on the loopback site (the studio's and JupyterLab's too)."""
    server = make_server()
    url = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, files={"file": (name, body)},
                     timeout=10).json()["url"]
    answer = httpx.get(url, timeout=10, trust_env=False)
    assert answer.content == body
    expected = "image/jpeg" if name.endswith(".jpg") else "application/octet-stream"
    assert answer.headers["content-type"] == expected
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"].startswith("sandbox")


@pytest.mark.slow
def test_spark_nb_serve_with_a_key_serves_no_result_by_its_task_id(serve_process: Callable[..., object],
                                                                    media: dict[str, Path], tmp_path: Path) -> None:
    """`spark-nb serve --api-key-file`: a process without the key that knows a task id (process lists show
    `spark-nb status ID`) gets 404 for results/<id>.mp4; the result's URL is not made of the id, and works. Before,
    only the embedded server named results randomly: serve answered 200 with the video."""
    key_file = tmp_path / "server.key"
    key_file.write_text(TEST_KEY + "\n")
    server = serve_process("--api-key-file", str(key_file))
    config = cloud_config(server)  # type: ignore[arg-type]
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **config)
    assert result.task_id not in result.url
    url = server.url  # type: ignore[attr-defined]
    assert httpx.get(f"{url}/files/results/{result.task_id}.mp4", timeout=10, trust_env=False).status_code == 404
    assert httpx.get(result.url, timeout=30, trust_env=False).content == result.path.read_bytes()
