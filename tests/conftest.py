"""Shared fixtures: real media made here or shipped in tests/media, and real local servers on loopback."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

import spark_nb
from spark_nb import _config as config
from spark_nb import _specs_service
from spark_nb._ffmpeg import ffmpeg_exe
from spark_nb.local import LocalServer

MEDIA = Path(__file__).parent / "media"
TEST_KEY = "sk-test-0123456789abcdefSECRET"


# A guard against a hung tool, not a speed test: a 2-core machine running kernels and renders beside the
# tests can take many times the usual few seconds, and a limit that fires then is a flaky test.
TOOL_TIMEOUT_S = 240


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly, failing the test on error."""
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-v", "error", *args], check=True, timeout=TOOL_TIMEOUT_S)


def draw_portrait(path: Path, size: tuple[int, int] = (480, 600)) -> Path:
    """A simple frontal face: skin oval, eyes, brows, nose and mouth on a plain background."""
    w, h = size
    img = Image.new("RGB", size, (70, 90, 120))
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.22, h * 0.15, w * 0.78, h * 0.80), fill=(224, 188, 160))
    for cx in (0.38, 0.62):
        d.ellipse((w * (cx - 0.05), h * 0.38, w * (cx + 0.05), h * 0.44), fill=(255, 255, 255))
        d.ellipse((w * (cx - 0.02), h * 0.39, w * (cx + 0.02), h * 0.43), fill=(40, 30, 20))
        d.line((w * (cx - 0.06), h * 0.34, w * (cx + 0.06), h * 0.33), fill=(60, 40, 30), width=4)
    d.polygon([(w * 0.5, h * 0.45), (w * 0.46, h * 0.56), (w * 0.54, h * 0.56)], fill=(200, 160, 135))
    d.ellipse((w * 0.41, h * 0.62, w * 0.59, h * 0.68), fill=(160, 60, 60))
    img.save(path, quality=90)
    return path


def pytest_configure(config: pytest.Config) -> None:
    """Whatever runs outside a test's own folder (subprocesses, session fixtures) never uses the real home."""
    import os
    import tempfile

    os.environ.setdefault("SPARK_NB_HOME", tempfile.mkdtemp(prefix="spark_nb_test_home_"))


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small real media: portrait, speech, 17 s speech, driving video with and without sound, and more."""
    root = tmp_path_factory.mktemp("media")
    speech = MEDIA / "speech.wav"
    files = {"portrait": draw_portrait(root / "portrait.jpg"), "speech": speech}
    files["png"] = root / "portrait.png"
    Image.open(files["portrait"]).save(files["png"])
    files["long_speech"] = root / "long_speech.wav"
    ffmpeg("-stream_loop", "5", "-i", str(speech), "-t", "17", str(files["long_speech"]))
    files["speech_mp3"] = root / "speech.mp3"
    ffmpeg("-i", str(speech), "-c:a", "libmp3lame", "-b:a", "64k", str(files["speech_mp3"]))
    files["driving"] = root / "driving.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=220",
           "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(files["driving"]))
    files["silent_driving"] = root / "silent_driving.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "1.5", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(files["silent_driving"]))
    return files


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ambient key, URL or backend; outputs land in the test's own folder; configure() forgotten."""
    for name in ("VTRIX_API_KEY", "VTRIX_GENERATION_URL", "SPARK_NB_BACKEND", "SPARK_NB_UPLOAD_URL",
                 "SPARK_NB_OUTPUT_DIR", "SPARK_NB_LOG_LEVEL", "SPARK_NB_S3_BUCKET", "SPARK_NB_S3_PREFIX",
                 "SPARK_NB_S3_ENDPOINT_URL", "SPARK_NB_BUDGET_USD", "SPARK_NB_MAX_INPUT_MB",
                 "SPARK_NB_MAX_INPUT_SECONDS", "SPARK_NB_LOCAL_SERVER", "VTRIX_MODELS_URL", "SPARK_NB_TRACE",
                 "SPARK_NB_SPEC_CHECK"):
        monkeypatch.delenv(name, raising=False)
    # URL inputs are not asked for before a create here: tests pass made-up URLs (https://inputs.example/...) to
    # fake services, and nothing but loopback may be contacted. The URL check's own tests turn it on
    # (tests/test_inputs_url.py), and test that it is on by default.
    monkeypatch.setenv("SPARK_NB_CHECK_URLS", "0")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPARK_NB_HOME", str(tmp_path / "spark_nb_home"))  # a journal and local tasks of its own
    # a developer's own vtrix CLI key (keychain, ~/.config/vtrix) must never reach a test: it would call Vtrix
    monkeypatch.setenv("VTRIX_NO_KEYCHAIN", "1")
    (tmp_path / "home").mkdir(exist_ok=True)  # IPython and Jupyter write their settings there
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    config._configured.clear()
    _specs_service.forget()  # a spec read in another test (whose server's port may come again) is not this one's
    yield
    config._configured.clear()
    # the test's home and servers are done with: its journal's connection, its embedded server and the API clients'
    # pools would otherwise stay open until the process ends (a full run passed 1024 descriptors)
    from spark_nb._client import _close_clients
    from spark_nb._journal import forget_journals_under
    from spark_nb.local._embedded import stop_servers_under

    forget_journals_under(tmp_path)
    stop_servers_under(tmp_path)
    _close_clients()


@pytest.fixture
def make_server() -> Iterator[Callable[..., LocalServer]]:
    """Start LocalServers on 127.0.0.1 with the given options; all are stopped after the test."""
    servers: list[LocalServer] = []

    def start(**options: Any) -> LocalServer:
        server = LocalServer(**options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., LocalServer]) -> LocalServer:
    """A fresh local server that requires TEST_KEY."""
    return make_server(api_key=TEST_KEY)


def cloud_config(server: LocalServer, **extra: Any) -> dict[str, Any]:
    """Options for the cloud code path pointed at a local server, uploading through its storage endpoint."""
    return {"backend": "cloud", "base_url": server.url, "api_key": TEST_KEY,
            "uploader": f"{server.url}/api/v1/storage/files", **extra}


@pytest.fixture
def cloud(server: LocalServer) -> dict[str, Any]:
    """cloud_config for the `server` fixture."""
    return cloud_config(server)


def seed_firing_first(probability: float) -> int:
    """A fault seed whose first draw fires and second does not: the first request fails, its retry succeeds."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if rng.random() < probability <= rng.random():
            return seed
    raise AssertionError("no seed found")




class ServeProcess:
    """`spark-nb serve` in a child process under a hard address-space cap, with its process tree's peak RSS.

    A regression that makes the server allocate gigabytes fails the test (the cap kills the allocation)
    instead of taking the machine; peak_rss() says how much the server and its ffmpeg children really used.
    """

    def __init__(self, *args: str, cap_bytes: int = 3 * 1024**3, env: dict[str, str] | None = None) -> None:
        import os
        import resource
        import signal
        import sys
        import threading

        def in_child() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))
            signal.signal(signal.SIGINT, signal.SIG_DFL)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spark_nb", "serve", "--port", "0", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, preexec_fn=in_child, env={**os.environ, **(env or {})})
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "local server on" not in line:
            self.proc.kill()
            raise AssertionError(f"spark-nb serve did not start: {line}{self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.url = line.split(" on ", 1)[1].split()[0]
        self.pid = self.proc.pid
        self._peak = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.wait(0.05):
            try:
                root = psutil.Process(self.pid)
                tree = [root, *root.children(recursive=True)]
                self._peak = max(self._peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                continue

    def children(self) -> list[int]:
        """Pids of the server's children (ffmpeg) right now."""
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            return []

    def peak_rss(self) -> int:
        """The largest resident memory of the server and its children seen so far, in bytes."""
        return self._peak

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after 10 s."""
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def serve_process() -> Iterator[Callable[..., ServeProcess]]:
    """Start `spark-nb serve` children under a memory cap; all stopped after the test."""
    started: list[ServeProcess] = []

    def start(*args: str, **options: Any) -> ServeProcess:
        process = ServeProcess(*args, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


__all__ = ["TEST_KEY", "ServeProcess", "cloud_config", "draw_portrait", "ffmpeg", "seed_firing_first", "spark_nb"]
