"""Protocol conformance of the local server, spoken to with raw httpx over loopback."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import httpx
import pytest

from spark_nb._ffmpeg import ffmpeg_exe, read_header, try_decode
from spark_nb.local import Fault, FaultPlan, LocalServer

from .conftest import TEST_KEY

AVATAR = "spark_avatar_picture_omni_v2"
IMITATOR = "spark_avatar_imitator_v2v"
FRAME = 1 / 25
RUNNING = ("pending", "in_progress")
MakeServer = Callable[..., LocalServer]


def bearer(key: str = TEST_KEY) -> dict[str, str]:
    """An Authorization header carrying key."""
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A plain httpx client that ignores proxy settings from the environment."""
    with httpx.Client(timeout=30, trust_env=False) as client:
        yield client


def upload(http: httpx.Client, server: LocalServer, path: Path, key: str = TEST_KEY) -> str:
    """Upload path to the server's storage endpoint and return the URL it answers."""
    with open(path, "rb") as fh:
        response = http.post(f"{server.url}/api/v1/storage/files", files={"file": (path.name, fh)},
                             headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()["url"]


def create(http: httpx.Client, server: LocalServer, model: str, params: dict[str, Any],
           key: str = TEST_KEY) -> dict[str, Any]:
    """Create a task with the nested body and return the answer's task object."""
    response = http.post(f"{server.url}/model/v1/generation", json={"model": model, "input": [{"params": params}]},
                         headers=bearer(key))
    assert response.status_code == 200, response.text
    return response.json()


def poll_until_done(http: httpx.Client, server: LocalServer, task_id: str, key: str = TEST_KEY,
                    timeout: float = 60.0, interval: float = 0.05) -> list[tuple[float, dict[str, Any]]]:
    """Poll a task until it is completed or failed; every (wall time, task object) seen, bounded by timeout."""
    seen: list[tuple[float, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(f"{server.url}/model/v1/generation/task/{task_id}", headers=bearer(key))
        assert response.status_code == 200, response.text
        seen.append((time.time(), response.json()))
        if seen[-1][1]["status"] not in RUNNING:
            return seen
        time.sleep(interval)
    raise AssertionError(f"task {task_id} still {seen[-1][1]['status']} after {timeout}s")


def stats(http: httpx.Client, server: LocalServer, key: str = TEST_KEY) -> dict[str, Any]:
    """GET /_spark_nb/stats (a server with a key wants it there too)."""
    response = http.get(f"{server.url}/_spark_nb/stats", headers=bearer(key))
    assert response.status_code == 200
    return response.json()


def codecs(path: Path) -> tuple[str, str]:
    """The video and audio codec names that the bundled ffmpeg reads from path's header."""
    log = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                         text=True, timeout=30, check=False).stderr
    video = re.search(r"Stream #0:\d+.*?: Video: (\w+)", log)
    audio = re.search(r"Stream #0:\d+.*?: Audio: (\w+)", log)
    assert video and audio, log
    return video.group(1), audio.group(1)


def raw_get(server: LocalServer, raw_path: str) -> tuple[int, bytes]:
    """GET a path sent exactly as written (no client-side dot-segment normalisation)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", raw_path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_upload_round_trip(http: httpx.Client, server: LocalServer, media: dict[str, Path]) -> None:
    """An upload answers a URL that serves back the very same bytes with an exact Content-Length."""
    assert stats(http, server)["uploads"] == 0
    url = upload(http, server, media["portrait"])
    assert url.startswith(f"{server.url}/files/uploads/")
    response = http.get(url)
    data = media["portrait"].read_bytes()
    assert response.status_code == 200
    assert response.content == data
    assert int(response.headers["content-length"]) == len(data)
    upload(http, server, media["speech"])
    assert stats(http, server)["uploads"] == 2


@pytest.mark.parametrize("model", [AVATAR, IMITATOR])
def test_task_lifecycle_delivers_a_real_video(http: httpx.Client, server: LocalServer, media: dict[str, Path],
                                              tmp_path: Path, model: str) -> None:
    """Create with the nested body, poll to completed, download exactly `size` bytes of a real H.264/AAC mp4."""
    image = upload(http, server, media["portrait"])
    if model == AVATAR:
        params: dict[str, Any] = {"image_url": image, "audio_url": upload(http, server, media["speech"])}
        soundtrack = media["speech"]
    else:
        params = {"image_url": image,
                  "driving_video_info": {"video_url": upload(http, server, media["driving"]), "store_type": 0}}
        soundtrack = media["driving"]
    created = create(http, server, model, params)
    assert isinstance(created["id"], str) and created["id"]
    assert created["model"] == model
    assert created["status"] in RUNNING
    assert isinstance(created["created_at"], int) and abs(created["created_at"] - time.time()) < 60

    final = poll_until_done(http, server, created["id"])[-1][1]
    assert final["status"] == "completed", final
    assert final["id"] == created["id"] and final["model"] == model
    content = final["output"][0]["content"][0]
    assert content["type"] == "video"
    assert isinstance(content["jobId"], str) and content["jobId"]
    assert isinstance(content["size"], int) and content["size"] > 1000
    assert isinstance(final["usage"]["cost"], str)
    assert float(final["usage"]["cost"]) >= 0

    response = http.get(content["url"])
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == content["size"] == len(response.content)
    video = tmp_path / "result.mp4"
    video.write_bytes(response.content)
    assert codecs(video) == ("h264", "aac")
    report = try_decode(video, 30)
    info = report.facts
    expected = read_header(soundtrack).duration
    assert expected is not None and info.duration is not None
    assert abs(info.duration - expected) <= FRAME + 1e-6
    assert info.has_audio and info.fps == 25.0
    assert report.frames == pytest.approx(info.duration * 25, abs=1)


@pytest.mark.slow
def test_latency_progress_rises_and_completion_waits(http: httpx.Client, make_server: MakeServer,
                                                     media: dict[str, Path]) -> None:
    """With latency=3, statuses and progress only move forward and completion comes no sooner than 3 s."""
    server = make_server(api_key=TEST_KEY, latency=3)
    params = {"image_url": upload(http, server, media["portrait"]), "audio_url": upload(http, server, media["speech"])}
    before = time.time()
    created = create(http, server, AVATAR, params)
    seen = poll_until_done(http, server, created["id"], interval=0.1)
    statuses = [created["status"]] + [task["status"] for _, task in seen]
    rank = {"pending": 0, "in_progress": 1, "completed": 2}
    assert statuses[-1] == "completed"
    assert all(status in RUNNING for status in statuses[:-1])
    assert [rank[s] for s in statuses] == sorted(rank[s] for s in statuses)
    assert len(statuses) >= 10  # about 3 s of polling at 0.1 s intervals

    progress = [task["progress"] for task in [created] + [t for _, t in seen] if task["status"] in RUNNING]
    assert all(0.0 <= p <= 1.0 for p in progress)
    assert progress == sorted(progress)
    assert progress[-1] > progress[0]

    completed_seen, final = seen[-1]
    assert completed_seen - before >= 3.0
    assert final["metadata"]["completed_at"] - final["created_at"] >= 3.0
    assert "output" not in seen[0][1]


@pytest.mark.parametrize("headers", [{}, bearer("sk-wrong-key"), {"Authorization": "Bearer"},
                                     {"Authorization": f"Basic {TEST_KEY}"}, {"Authorization": TEST_KEY}],
                         ids=["none", "wrong", "bearer-no-key", "basic", "bare-key"])
def test_bad_credentials_are_401_everywhere(http: httpx.Client, server: LocalServer, media: dict[str, Path],
                                            headers: dict[str, str]) -> None:
    """Without the right bearer key, create, poll and upload answer 401 and change nothing."""
    task = create(http, server, AVATAR, {"image_url": "http://127.0.0.1:9/a.jpg",
                                         "audio_url": "http://127.0.0.1:9/a.wav"})
    base = server.url
    body = {"model": AVATAR, "input": [{"params": {"image_url": "http://x/a.jpg", "audio_url": "http://x/a.wav"}}]}
    with open(media["portrait"], "rb") as fh:
        answers = [
            http.post(f"{base}/model/v1/generation", json=body, headers=headers),
            http.get(f"{base}/model/v1/generation/task/{task['id']}", headers=headers),
            http.post(f"{base}/api/v1/storage/files", files={"file": ("p.jpg", fh)}, headers=headers),
        ]
    for response in answers:
        assert response.status_code == 401, (response.request.url, response.text)
        assert "API key" in response.json()["message"]
        assert TEST_KEY not in response.text
    counts = stats(http, server)
    assert (counts["created"], counts["uploads"]) == (1, 0)
    assert http.get(f"{base}/model/v1/generation/task/{task['id']}", headers=bearer()).status_code == 200


def test_keyless_server_accepts_any_bearer_but_not_none(http: httpx.Client, make_server: MakeServer,
                                                        media: dict[str, Path]) -> None:
    """A server without api_key takes any bearer key on every route, yet still answers 401 to no header."""
    server = make_server()
    url = upload(http, server, media["portrait"], key="whatever-1")
    task = create(http, server, AVATAR, {"image_url": url, "audio_url": url}, key="another-2")
    poll = http.get(f"{server.url}/model/v1/generation/task/{task['id']}", headers=bearer("third-3"))
    assert poll.status_code == 200 and poll.json()["id"] == task["id"]

    body = {"model": AVATAR, "input": [{"params": {"image_url": url, "audio_url": url}}]}
    with open(media["portrait"], "rb") as fh:
        denied = [
            http.post(f"{server.url}/model/v1/generation", json=body),
            http.get(f"{server.url}/model/v1/generation/task/{task['id']}"),
            http.post(f"{server.url}/api/v1/storage/files", files={"file": ("p.jpg", fh)}),
        ]
    assert [r.status_code for r in denied] == [401, 401, 401]
    counts = stats(http, server)
    assert (counts["created"], counts["uploads"]) == (1, 1)


def test_unknown_task_is_404(http: httpx.Client, server: LocalServer) -> None:
    """Polling an id the server never issued answers 404 with a message."""
    response = http.get(f"{server.url}/model/v1/generation/task/0123456789abcdef0123456789abcdef", headers=bearer())
    assert response.status_code == 404
    assert "not found" in response.json()["message"]


@pytest.mark.slow
def test_stats_count_a_known_sequence(http: httpx.Client, server: LocalServer, media: dict[str, Path]) -> None:
    """created/polls/uploads/downloads match exactly what was done; refused and non-result requests do not count."""
    assert stats(http, server) == {"created": 0, "polls": 0, "uploads": 0, "downloads": 0, "faults": {}}
    image = upload(http, server, media["portrait"])
    audio = upload(http, server, media["speech"])
    with open(media["speech"], "rb") as fh:  # refused: not stored, not counted
        assert http.post(f"{server.url}/api/v1/storage/files", files={"file": ("s.wav", fh)}).status_code == 401
    refused = http.post(f"{server.url}/model/v1/generation",
                        json={"model": AVATAR, "input": [{"params": {"image_url": image}}]}, headers=bearer())
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "003016002"
    task = create(http, server, AVATAR, {"image_url": image, "audio_url": audio})
    seen = poll_until_done(http, server, task["id"])
    url = seen[-1][1]["output"][0]["content"][0]["url"]
    assert http.get(url).status_code == 200
    assert http.get(url).status_code == 200
    assert http.head(url).status_code == 200  # a HEAD is not a download
    assert http.get(image).status_code == 200  # an input file is not a result download
    assert stats(http, server) == {"created": 1, "polls": len(seen), "uploads": 2, "downloads": 2, "faults": {}}


@pytest.mark.parametrize("raw_path", [
    "/files/uploads/..%2f..%2fetc%2fpasswd",
    "/files/uploads/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/files/uploads/..%2fsecret.txt",
    "/files/uploads/..%2f..%2fsecret.txt",
    "/files/results/../../secret.txt",
    "/files/results/../../x",
    "/files/uploads/%2e%2e%2fother%2fx",
    "/files/other/x",
    "/files/work/x",
    "/files/uploads/..",
    "/files/uploads/.hidden",
    "/files/uploads/%2e%2e",
])
@pytest.mark.slow
def test_unsafe_file_paths_are_404(make_server: MakeServer, tmp_path: Path, raw_path: str) -> None:
    """Traversal and unknown folders under /files answer 404 and never leak a file that sits where they point."""
    marker = b"TOP-SECRET-CONTENTS"
    storage = tmp_path / "store"
    server = make_server(api_key=TEST_KEY, storage=storage)
    (tmp_path / "secret.txt").write_bytes(marker)
    (storage / "secret.txt").write_bytes(marker)
    (storage / "uploads" / ".hidden").write_bytes(marker)
    for folder in ("other", "work"):
        (storage / folder).mkdir(exist_ok=True)
        (storage / folder / "x").write_bytes(marker)
    status, body = raw_get(server, raw_path)
    assert status == 404
    assert marker not in body and b"root:" not in body


def test_upload_without_file_field_is_400(http: httpx.Client, server: LocalServer, media: dict[str, Path]) -> None:
    """A multipart body whose file is in another field, or whose `file` is plain text, is refused with 400."""
    with open(media["portrait"], "rb") as fh:
        wrong_field = http.post(f"{server.url}/api/v1/storage/files", files={"image": ("p.jpg", fh)},
                                headers=bearer())
    text_field = http.post(f"{server.url}/api/v1/storage/files", files={"other": ("o.txt", b"x")},
                           data={"file": "not a file"}, headers=bearer())
    for response in (wrong_field, text_field):
        assert response.status_code == 400
        assert "file" in response.json()["message"]
    assert stats(http, server)["uploads"] == 0


@pytest.mark.parametrize("model,bad,field", [
    (AVATAR, "image", "image_url"),
    (AVATAR, "audio", "audio_url"),
    (IMITATOR, "driving", "driving_video_info.video_url"),
])
def test_undecodable_input_fails_the_task_with_095(http: httpx.Client, server: LocalServer, media: dict[str, Path],
                                                   tmp_path: Path, model: str, bad: str, field: str) -> None:
    """An uploaded text file used as an input ends the task `failed` with code ...095 naming that input, and no path
    of the server's storage (PIL had said "cannot identify image file '<storage>/work/<id>/image'")."""
    text = tmp_path / "notes.txt"
    text.write_text("this is not media at all\n" * 20)
    urls = {"image": upload(http, server, media["portrait"]), "audio": upload(http, server, media["speech"]),
            "driving": upload(http, server, media["driving"])}
    urls[bad] = upload(http, server, text)
    if model == AVATAR:
        params: dict[str, Any] = {"image_url": urls["image"], "audio_url": urls["audio"]}
        prefix = "003016"
    else:
        params = {"image_url": urls["image"], "driving_video_info": {"video_url": urls["driving"], "store_type": 0}}
        prefix = "003018"
    task = create(http, server, model, params)
    final = poll_until_done(http, server, task["id"])[-1][1]
    assert final["status"] == "failed"
    assert final["error"]["code"] == f"{prefix}095"
    message = final["error"]["error_message"]
    assert field in message
    assert os.sep + "work" + os.sep not in message and not re.search(r"['\"]/", message), message
    assert "output" not in final and "usage" not in final


@pytest.mark.parametrize("bad,reason", [
    ("nowhere:500:0.1", "route"),
    ("poll:404:0.1", "kind"),
    ("render:500:1", "kind"),
    ("poll:097:1", "kind"),
    ("poll:500:1.5", "probability"),
    ("create:429:2", "probability"),
    ("poll:500", "ROUTE:KIND:P"),
    ("poll", "ROUTE:KIND:P"),
    ("poll:500:0.2:1", "ROUTE:KIND:P"),
    ("poll:500:-0.1", "ROUTE:KIND:P"),
    ("poll:500:1.2.3", "ROUTE:KIND:P"),
    ("poll 500 0.2", "ROUTE:KIND:P"),
])
def test_fault_plan_refuses_malformed_items(bad: str, reason: str) -> None:
    """FaultPlan.parse raises ValueError naming the bad item and what is wrong with it, even inside a list."""
    for spec in (bad, f"poll:500:0.2, {bad}"):
        with pytest.raises(ValueError) as info:
            FaultPlan.parse(spec)
        assert repr(bad) in str(info.value)
        assert reason in str(info.value)


def test_fault_plan_accepts_a_valid_spec() -> None:
    """A well-formed spec parses into its faults in order; an empty spec means no faults."""
    plan = FaultPlan.parse("poll:500:0.2,render:097:1")
    assert plan.faults == [Fault("poll", "500", 0.2), Fault("render", "097", 1.0)]
    assert FaultPlan.parse(None).faults == [] and FaultPlan.parse(" , ").faults == []
    assert plan.draw("render") == "097" and plan.draw("upload") is None


def test_injected_faults_take_effect(http: httpx.Client, make_server: MakeServer, media: dict[str, Path]) -> None:
    """render:097:1 fails every task with the model's 097 code; poll:503:1 answers every poll 503; both counted."""
    server = make_server(api_key=TEST_KEY, faults="render:097:1")
    url = upload(http, server, media["portrait"])
    task = create(http, server, AVATAR, {"image_url": url, "audio_url": url})
    final = poll_until_done(http, server, task["id"])[-1][1]
    assert final["status"] == "failed" and final["error"]["code"] == "003016097"
    assert stats(http, server)["faults"] == {"render:097": 1}

    flaky = make_server(api_key=TEST_KEY, faults="poll:503:1")
    response = http.get(f"{flaky.url}/model/v1/generation/task/abc", headers=bearer())
    assert response.status_code == 503
    assert stats(http, flaky)["faults"] == {"poll:503": 1}


def test_server_binds_loopback_by_default(http: httpx.Client, make_server: MakeServer) -> None:
    """A LocalServer with no host given listens on 127.0.0.1 on an ephemeral port."""
    server = make_server()
    assert server.host == "127.0.0.1"
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", server.url)
    assert match and int(match.group(1)) > 0
    assert server.running
    assert stats(http, server)["created"] == 0


def test_answers_are_sent_without_waiting_for_acks(make_server: MakeServer) -> None:
    """The listening socket (and so each accepted connection) has TCP_NODELAY: h11 writes an answer's headers
    and body separately, and with Nagle's algorithm the body waited for the client's delayed ACK (~40 ms)."""
    import socket

    server = make_server()
    listening = server._socket  # what the accepted connections inherit
    assert listening.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
