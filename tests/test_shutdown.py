"""Process boundaries: `spark-nb serve` stops within seconds of SIGINT or SIGTERM (renders and ffmpeg included)
and leaves no folder; SIGKILL leaves no ffmpeg behind and its folder is cleaned by the next server; a script on
the embedded backend exits promptly after a TaskTimeout; the key never shows in the process list."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil
import pytest

from spark_nb.local import LocalServer

from .conftest import TEST_KEY, ServeProcess, ffmpeg

pytestmark = pytest.mark.slow  # not in the quick run: pytest -m "not slow"

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s of real speech (the test clip, looped): a render that takes several seconds."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    ffmpeg("-stream_loop", "30", "-i", str(Path(__file__).parent / "media" / "speech.wav"), "-t", "90", str(path))
    return path


def start_render(server: ServeProcess, portrait: Path, audio: Path) -> str:
    """Upload, create an avatar task and wait until its render (and its ffmpeg) is under way; the task id."""
    def put(path: Path) -> str:
        answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH, timeout=30,
                            files={"file": (path.name, path.read_bytes())})
        return str(answer.json()["url"])

    params = {"image_url": put(portrait), "audio_url": put(audio)}
    task = httpx.post(f"{server.url}/model/v1/generation", headers=AUTH, timeout=30,
                      json={"model": "spark_avatar_picture_omni_v2", "input": [{"params": params}]}).json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.url}/model/v1/generation/task/{task}", headers=AUTH, timeout=10).json()
        if state.get("progress", 0) > 0.05 and server.children():
            return str(task)
        time.sleep(0.1)
    raise AssertionError("the render never got going")


def storage_of(pid: int) -> list[Path]:
    """The storage folders of the server with this pid."""
    return list(Path(tempfile.gettempdir()).glob(f"spark_nb_server_{pid}_*"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_within_seconds_mid_render(sig: signal.Signals, serve_process: Callable[..., ServeProcess],
                                               media: dict[str, Path], long_speech: Path) -> None:
    """During a 90 s render: the process exits 0 within 5 s, its ffmpeg children are gone, its folder removed."""
    server = serve_process()
    start_render(server, media["portrait"], long_speech)
    children = server.children()
    assert storage_of(server.pid) and children
    started = time.monotonic()
    server.proc.send_signal(sig)
    assert server.proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 5
    assert not [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert storage_of(server.pid) == []


def test_sigkill_leaves_no_ffmpeg_and_the_next_server_cleans_up(serve_process: Callable[..., ServeProcess],
                                                                 media: dict[str, Path], long_speech: Path) -> None:
    """SIGKILL mid-render: its ffmpeg children die with it (they were started to), and the next server removes the
    dead server's storage folder."""
    server = serve_process()
    start_render(server, media["portrait"], long_speech)
    children = server.children()
    server.proc.kill()
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in children):
        assert time.monotonic() < deadline, "an ffmpeg child outlived its killed server"
        time.sleep(0.05)
    assert storage_of(server.pid)  # SIGKILL allows no clean-up...
    LocalServer().start().stop()  # ...so the next server does it
    assert storage_of(server.pid) == []


EMBEDDED_TIMEOUT = """
import signal, sys, time
from spark_nb import avatar
import spark_nb

try:
    avatar.generate(sys.argv[1], sys.argv[2], timeout=1, progress=False, trim_audio=False, backend="local")
except spark_nb.TaskTimeout as exc:
    print("timed out", exc.task_id, flush=True)
except spark_nb.SparkError as exc:  # a loaded machine: the second ran out before the task was created
    print("timed before-create", str(exc).split(" (")[0], flush=True)
print("exiting at", time.monotonic(), flush=True)
"""


def test_a_script_on_the_embedded_backend_exits_right_after_its_timeout(media: dict[str, Path],
                                                                       long_speech: Path) -> None:
    """generate(timeout=1) of a 90 s render, TaskTimeout caught: the interpreter exits within 5 s, render or not."""
    proc = subprocess.Popen([sys.executable, "-c", EMBEDDED_TIMEOUT, str(media["portrait"]), str(long_speech)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the script did not exit") from None
    assert proc.returncode == 0, err
    said = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert said["timed"].startswith("out ") or "timeout" in said["timed"], said  # its timeout ended it
    exiting = float(said["exiting"].split()[-1])
    assert time.monotonic() - exiting < 5  # monotonic is system-wide on Linux


def test_serve_on_a_busy_port_says_so_without_a_traceback() -> None:
    """A taken port: exit 1 and one line naming the address and what to do."""
    with LocalServer() as taken:
        port = taken.url.rsplit(":", 1)[1]
        proc = subprocess.run([sys.executable, "-m", "spark_nb", "serve", "--port", port], capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr
    assert "--port" in proc.stderr


def cmdline(pid: int) -> str:
    """What every user of the machine sees of a process in ps."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_takes_its_key_from_a_file_or_the_environment(serve_process: Callable[..., ServeProcess],
                                                            tmp_path: Path) -> None:
    """--api-key-file and $SPARK_NB_SERVER_API_KEY keep the key out of the process list; both are enforced."""
    key_file = tmp_path / "key"
    key_file.write_text(TEST_KEY + "\n")
    for server in (serve_process("--api-key-file", str(key_file)),
                   serve_process(env={"SPARK_NB_SERVER_API_KEY": TEST_KEY})):
        assert TEST_KEY not in cmdline(server.pid)
        assert httpx.get(f"{server.url}/model/v1/generation/task/x", headers={"Authorization": "Bearer no"},
                         timeout=10).status_code == 401
        assert httpx.get(f"{server.url}/model/v1/generation/task/x", headers=AUTH, timeout=10).status_code == 404


def test_the_api_key_flag_warns_that_it_is_visible(tmp_path: Path) -> None:
    """--api-key still works, with a warning naming the safer ways."""
    proc = subprocess.Popen([sys.executable, "-m", "spark_nb", "serve", "--port", "0", "--api-key", TEST_KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "local server on" in proc.stdout.readline()  # type: ignore[union-attr]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "visible to every user" in err and "--api-key-file" in err and TEST_KEY not in err


def test_no_child_outlives_a_killed_probe(tmp_path: Path, media: dict[str, Path]) -> None:
    """A process killed while it probes media (ffmpeg running) takes its ffmpeg with it."""
    code = ("import sys, time\n"
            "from spark_nb import _procs\n"
            "p = _procs.popen(['sleep', '60'])\n"  # stands in for a long ffmpeg: the same start path
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())  # type: ignore[union-attr]
    # the child is running once setpriv and prlimit (which set its death signal and limit) have become `sleep`:
    # killed before that, the parent would race setpriv's own prctl, which no child of ours can close
    started = time.monotonic() + 10
    while not cmdline(child).startswith("sleep"):
        assert time.monotonic() < started, f"the child never started: {cmdline(child)!r}"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != "zombie":
        assert time.monotonic() < deadline, "the child outlived its parent"
        time.sleep(0.05)
