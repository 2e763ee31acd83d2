"""Shared fixtures: real media made here or shipped in tests/media, and real local servers on loopback."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from PIL import Image, ImageDraw

import spark_nb
from spark_nb import _config as config
from spark_nb._ffmpeg import ffmpeg_exe
from spark_nb.local import LocalServer

MEDIA = Path(__file__).parent / "media"
TEST_KEY = "sk-test-0123456789abcdefSECRET"


def ffmpeg(*args: str) -> None:
    """Run the bundled ffmpeg quietly, failing the test on error."""
    subprocess.run([ffmpeg_exe(), "-y", "-nostdin", "-v", "error", *args], check=True, timeout=60)


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
                 "SPARK_NB_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    config._configured.clear()
    yield
    config._configured.clear()


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


__all__ = ["TEST_KEY", "cloud_config", "draw_portrait", "ffmpeg", "seed_firing_first", "spark_nb"]
