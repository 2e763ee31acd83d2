"""The bundled ffmpeg (imageio-ffmpeg): locate it, and probe a media file by decoding its first second."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import threading
from pathlib import Path

PROBE_TIMEOUT_S = 30.0
_probed: dict[tuple[object, ...], "MediaInfo"] = {}
_cache_lock = threading.Lock()
# Decoders refuse frames above this (8192x8192), so a 100-byte file whose header claims 16000x16000
# fails at once instead of ffmpeg allocating gigabytes for it.
MAX_PROBE_PIXELS = 8192 * 8192
_STILL_IMAGE_FORMATS = re.compile(r"^(image2|\w+_pipe|gif|webp)$")


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


class ProbeError(ValueError):
    """ffmpeg could not open or decode the file."""


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg says about a file: container, duration, streams; decoded_frames proves it decodes."""

    container: str
    duration: float | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    has_audio: bool = False
    decoded_frames: int = 0
    decoded_seconds: float = 0.0

    @property
    def has_video(self) -> bool:
        """True when there is a picture stream (a still image counts)."""
        return self.width is not None

    @property
    def is_still_image(self) -> bool:
        """True for a single picture rather than a moving video."""
        return bool(_STILL_IMAGE_FORMATS.match(self.container)) and self.decoded_frames <= 1


def probe(path: str | Path, *, decode_seconds: float = 1.0) -> MediaInfo:
    """Open path with ffmpeg and decode its first decode_seconds; raise ProbeError when it cannot.

    Answers are remembered per file version (path, size, modification time): a batch or a form checks
    the same inputs again when it submits them.
    """
    try:
        stat = os.stat(path)
        key: tuple[object, ...] | None = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, decode_seconds)
    except OSError:
        key = None
    with _cache_lock:
        if key is not None and key in _probed:
            return _probed[key]
    info = _probe(path, decode_seconds)
    with _cache_lock:
        if key is not None:
            if len(_probed) >= 512:
                _probed.clear()
            _probed[key] = info
    return info


def _probe(path: str | Path, decode_seconds: float) -> MediaInfo:
    # "file:" so that a local file named like a protocol ("pipe:0", "-", "http:...") is read as that file
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-xerror", "-max_pixels", str(MAX_PROBE_PIXELS),
           "-i", f"file:{path}"]
    cmd += ["-t", f"{decode_seconds:g}", "-f", "null", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"ffmpeg took more than {PROBE_TIMEOUT_S:g}s to read the file") from exc
    log = proc.stderr.decode("utf-8", "replace")
    info = parse_ffmpeg_log(log)
    if proc.returncode != 0 or info is None:
        too_big = re.search(r"Picture size (\d+x\d+) exceeds specified max pixel count", log)
        if too_big:
            raise ProbeError(f"its frames claim {too_big.group(1)} pixels, over the 8192x8192 this reads")
        raise ProbeError(_last_error_line(log))
    return info


def parse_ffmpeg_log(log: str) -> MediaInfo | None:
    """MediaInfo from the stderr of `ffmpeg -i FILE -f null -`, or None when no input was opened."""
    container = re.search(r"^Input #0, ([^,]+)", log, re.M)
    if not container:
        return None
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
    seconds = None
    if duration:
        h, m, s = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    input_part = log.split("Stream mapping:", 1)[0]
    video = re.search(r"Stream #0:\d+.*?: Video: .*?, (\d{1,6})x(\d{1,6})", input_part)
    fps = re.search(r"Stream #0:\d+.*?: Video: .*?([\d.]+) fps", input_part)
    frames = re.findall(r"frame=\s*(\d+)", log)
    times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
    decoded = 0.0
    if times:
        h, m, s = times[-1]
        decoded = int(h) * 3600 + int(m) * 60 + float(s)
    return MediaInfo(
        container=container.group(1).split(",")[0].strip(),
        duration=seconds,
        width=int(video.group(1)) if video else None,
        height=int(video.group(2)) if video else None,
        fps=float(fps.group(1)) if fps else None,
        has_audio=bool(re.search(r"Stream #0:\d+.*?: Audio: ", input_part)),
        decoded_frames=int(frames[-1]) if frames else 0,
        decoded_seconds=decoded,
    )


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line or "Invalid" in line or "not found" in line]
    text = (errors or lines or ["ffmpeg could not read the file"])[-1]
    return re.sub(r"^\[[^\]]*\]\s*", "", text)[:300]
