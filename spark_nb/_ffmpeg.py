"""The bundled ffmpeg (imageio-ffmpeg): where it is, what a file's header says, and whether its start decodes.

Two questions, two functions: read_header() reads the container header only (fast, nothing decoded) and
try_decode() decodes the first seconds to prove the file is usable. Both describe the file with one
MediaFacts, so "still image", "duration" and "size as shown" mean the same everywhere. decode_audio() gives a
renderer both the facts and the samples from one run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

from . import _procs
from ._limits import MEDIA_SECONDS
from .errors import MediaError, safe_text

PROBE_TIMEOUT_S = 30.0
# Decoders refuse frames above this (8192x8192), so a 100-byte file whose header claims 16000x16000
# fails at once instead of ffmpeg allocating gigabytes for it.
MAX_PROBE_PIXELS = 8192 * 8192
_CACHE_SIZE = 4096  # answers kept; a batch of a thousand rows checks each of its files three times
# ffmpeg readers running at once in this process: a batch's downloads all end together, and 32 decoders at once
# took ~1 GB and every core from the threads that create the next tasks, for no answer sooner
_READERS = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg."""
    import imageio_ffmpeg

    exe: str = imageio_ffmpeg.get_ffmpeg_exe()  # imageio-ffmpeg ships no types
    return exe


def ffmpeg_input(path: str | os.PathLike[str]) -> str:
    """path as an ffmpeg input read as a plain file, even when named like a protocol ("pipe:0", "http:x")."""
    return f"file:{os.fspath(path)}"


class ProbeError(MediaError):
    """ffmpeg could not open or decode the file (a MediaError).

    Args:
        message: what failed, naming the file.
        why: why, without naming the file (`.why`: for a message that names the file as its user knows it, an
            upload's own name rather than the scratch file it was written to); the message when not given.
    """

    def __init__(self, message: str, *, why: str | None = None) -> None:
        super().__init__(message)
        self.why = safe_text(why) if why is not None else self.message


@dataclasses.dataclass(frozen=True)
class MediaFacts:
    """What a file's header says: duration, picture size as shown and frame rate, which streams, bytes on disk.

    Attributes:
        path: the file.
        container: its container format, as ffmpeg names it ("mov,mp4,m4a,3gp,3g2,mj2", "wav", "image2").
        duration: its length in seconds; None for a still image.
        width: the picture's width as a player shows it (rotation and non-square pixels applied); None for audio.
        height: the picture's height, the same way.
        fps: the frame rate; None for audio and still images.
        has_audio: whether it has an audio stream.
        is_still_image: a picture format (or a one-frame GIF/WebP): a size but no duration or frame rate.
        bytes: its size on disk.
        damaged: the container's own index is broken (e.g. a track of an MP4 cut inside its table).
    """

    path: Path
    container: str
    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool
    is_still_image: bool
    bytes: int
    damaged: bool = False

    @property
    def has_video(self) -> bool:
        """True when there is a picture stream (a still image counts)."""
        return self.width is not None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the picture, or None for audio."""
        return None if self.width is None or self.height is None else (self.width, self.height)


@dataclasses.dataclass(frozen=True)
class DecodeReport:
    """What decoding the start of a file showed: its header facts, and how many frames and seconds decoded."""

    facts: MediaFacts
    frames: int
    seconds: float


T = TypeVar("T")
_cache: dict[tuple[object, ...], object] = {}  # (real path, size, mtime, *kind) -> what was computed
_cache_lock = threading.Lock()


def read_header(path: str | Path) -> MediaFacts:
    """The header facts of path: nothing is decoded, and the answer is remembered per file version.

    Args:
        path: a media file.

    Returns:
        Its MediaFacts.

    Raises:
        ProbeError: path is no file, or ffmpeg cannot read it.
    """
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path} does not exist", why="it does not exist")
    return per_file_version(path, ("header",), lambda: _facts(path, _run_probe(path, [])))


def try_decode(path: str | Path, seconds: float = 1.0) -> DecodeReport:
    """Decode the first seconds of path (remembered per file version); ProbeError when it cannot be decoded."""
    path = Path(path)

    def decode() -> DecodeReport:
        return _report(path, _run_probe(path, ["-t", f"{seconds:g}", "-f", "null", "-"], check=True))

    return per_file_version(path, ("decode", seconds), decode)


def decode_tail(path: str | Path, duration: float, seconds: float = 1.0) -> DecodeReport:
    """Decode the last seconds before the declared end: a file cut short decodes nothing there."""
    path = Path(path)
    start = max(0.0, duration - seconds)

    def decode() -> DecodeReport:
        log = _run_probe(path, ["-t", f"{seconds:g}", "-f", "null", "-"], check=True, before=["-ss", f"{start:.3f}"])
        return _report(path, log)

    return per_file_version(path, ("tail", duration, seconds), decode)


def loudest_db(path: str | Path, seconds: float = 60.0) -> float:
    """The peak level of the first seconds of audio in dBFS (-inf for digital silence)."""
    path = Path(path)

    def measure() -> float:
        log = _run_probe(path, ["-t", f"{seconds:g}", "-vn", "-af", "volumedetect", "-f", "null", "-"], check=True)
        peak = re.search(r"max_volume:\s*(-?inf|-?[\d.]+) dB", log)
        return float(peak.group(1)) if peak else float("-inf")

    return per_file_version(path, ("loudest", seconds), measure)


def picture_changes(path: str | Path, seconds: float = 10.0) -> int:
    """The largest change of any pixel (0-255) between frames sampled over the first seconds, on a small grey copy."""
    path = Path(path)
    side = 32

    def measure() -> int:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-max_pixels", str(MAX_PROBE_PIXELS),
               "-t", f"{seconds:g}", "-i", ffmpeg_input(path), "-an", "-vf", f"fps=4,scale={side}:{side},format=gray",
               "-frames:v", str(int(seconds * 4) + 1), "-f", "rawvideo", "-"]
        try:
            proc = _procs.run(cmd, timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ProbeError(f"ffmpeg took more than {PROBE_TIMEOUT_S:g}s to read {path.name}",
                             why=f"ffmpeg took more than {PROBE_TIMEOUT_S:g}s to read it") from exc
        data, size = proc.stdout, side * side
        frames = [data[i:i + size] for i in range(0, len(data) - size + 1, size)]
        return max((max(abs(a - b) for a, b in zip(frames[0], frame, strict=True)) for frame in frames[1:]), default=0)

    return per_file_version(path, ("changes", seconds), measure)


def decode_audio(path: str | Path, sample_rate: int, seconds: float, *, timeout: float = 120.0
                 ) -> tuple[MediaFacts, bytes]:
    """The header facts of path and its first seconds of audio as mono 16-bit PCM at sample_rate, from one ffmpeg
    run (a renderer needs both, and each start of ffmpeg costs more than decoding a short clip); ProbeError when
    it cannot be read."""
    path = Path(path)
    if (direct := _plain_wav(path, sample_rate, seconds)) is not None:
        return direct
    # not strict: a damaged frame later on costs a moment of sound, as in any player, not the whole render
    log, pcm = _run_ffmpeg(path, ["-t", f"{seconds:g}", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "s16le",
                                  "-"], check=True, strict=False, timeout=timeout)
    return _facts(path, log), pcm


def _plain_wav(path: Path, sample_rate: int, seconds: float) -> tuple[MediaFacts, bytes] | None:
    """What decode_audio gives, read straight from a WAV that already holds mono 16-bit PCM at sample_rate (as
    ffmpeg would output it byte for byte, without its start); None for any other file, or one whose header claims
    more samples than it holds, for ffmpeg to judge."""
    import wave

    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getcomptype()) != \
                    (1, 2, sample_rate, "NONE"):
                return None
            frames, size = wav.getnframes(), path.stat().st_size
            wanted = min(frames, int(seconds * sample_rate))
            if not frames or frames * 2 > size:
                return None
            pcm = wav.readframes(wanted)
    except (wave.Error, EOFError, OSError, ValueError):
        return None
    if len(pcm) != wanted * 2:
        return None
    return MediaFacts(path=path, container="wav", duration=frames / sample_rate, width=None, height=None, fps=None,
                      has_audio=True, is_still_image=False, bytes=size), pcm


def per_file_version(path: Path, kind: tuple[object, ...], compute: Callable[[], T]) -> T:
    """compute()'s answer about path, remembered for this version of the file (its real path, size and mtime) and
    kind; a failure (an exception) is not remembered."""
    try:
        stat = os.stat(path)
        key: tuple[object, ...] | None = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, *kind)
    except OSError:
        key = None
    with _cache_lock:
        if key is not None and key in _cache:
            return cast(T, _cache[key])  # what compute() made for this kind: kind is part of the key
    value = compute()
    if key is not None:
        with _cache_lock:
            if len(_cache) >= _CACHE_SIZE:
                _cache.clear()
            _cache[key] = value
    return value


def _report(path: Path, log: str) -> DecodeReport:
    frames = re.findall(r"frame=\s*(\d+)", log)
    times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
    return DecodeReport(facts=_facts(path, log), frames=int(frames[-1]) if frames else 0,
                        seconds=_seconds(*times[-1]) if times else 0.0)


def _run_probe(path: Path, args: list[str], *, check: bool = False, before: list[str] | None = None) -> str:
    """ffmpeg's log reading path (bounded in time and frame size); ProbeError naming the file when it cannot.

    check: also fail when ffmpeg fails after opening the file (a decode error).
    """
    return _run_ffmpeg(path, args, check=check, before=before)[0]


def _run_ffmpeg(path: Path, args: list[str], *, check: bool, before: list[str] | None = None, strict: bool = True,
                timeout: float = PROBE_TIMEOUT_S) -> tuple[str, bytes]:
    """ffmpeg reading path with every probe's bounds (time, frame size): its log and its output. strict: stop at
    the first decode error (-xerror)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *(["-xerror"] if strict else []),
           "-max_pixels", str(MAX_PROBE_PIXELS), *(before or []), "-i", ffmpeg_input(path), *args]
    try:
        with _READERS:
            proc = _procs.run(cmd, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"ffmpeg took more than {timeout:g}s to read the file") from exc
    log = proc.stderr.decode("utf-8", "replace")
    if not re.search(r"^Input #0, ", log, re.M) or (check and proc.returncode != 0):
        too_big = re.search(r"Picture size (\d+x\d+) exceeds specified max pixel count", log)
        if too_big:
            raise ProbeError(f"its frames claim {too_big.group(1)} pixels, over the 8192x8192 this reads")
        said = _last_error_line(log)
        raise ProbeError(f"cannot read {path.name}: {said}", why=said)
    return log, proc.stdout


def boxes_fit(path: Path, limit: int = 10_000) -> bool:
    """False when an MP4/MOV's top-level boxes claim more bytes than the file has (a file cut short, even by one
    byte inside its index, which ffmpeg itself reads without a word)."""
    import struct

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            offset = 0
            for _ in range(limit):
                if offset >= size:
                    return True
                fh.seek(offset)
                header = fh.read(16)
                if len(header) < 8:
                    return False
                length = struct.unpack(">I", header[:4])[0]
                if length == 1 and len(header) == 16:
                    length = struct.unpack(">Q", header[8:16])[0]
                elif length == 0:  # the last box runs to the end of the file
                    return True
                if length < 8 or offset + length > size:
                    return False
                offset += length
    except OSError:
        return False
    return True


def _facts(path: Path, log: str) -> MediaFacts:
    found = re.search(r"^Input #0, ([^,\n]+)", log, re.M)
    if found is None:  # _run_ffmpeg passes only logs with an input line; this one names no format
        raise ProbeError(f"cannot read {path.name}: ffmpeg named no container format")
    container = found.group(1).strip()
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
    seconds = _seconds(*duration.groups()) if duration else None
    header = log.split("Stream mapping:", 1)[0]
    # the picture: the first video stream that is not a cover (an "attached pic" in a FLAC or M4A is audio's art)
    picture = next((line for line in header.splitlines() if re.search(r"Stream #0:\d+.*?: Video: ", line)
                    and "(attached pic)" not in line), "")
    video = re.search(r"Video: .*?, (\d{1,6})x(\d{1,6})", picture)
    fps_match = re.search(r"Video: .*?([\d.]+) fps", picture)
    fps = float(fps_match.group(1)) if fps_match else None
    width, height = (int(video.group(1)), int(video.group(2))) if video else (None, None)
    if width and height:
        sar = re.search(r"Video: [^\n]*?\d+x\d+ \[SAR (\d+):(\d+)", picture)
        if sar and int(sar.group(1)) and int(sar.group(2)):
            width = max(1, round(width * int(sar.group(1)) / int(sar.group(2))))
        rotation = re.search(r"rotation of (-?[\d.]+) degrees", header, re.IGNORECASE)
        if rotation and round(abs(float(rotation.group(1)))) % 180 == 90:  # players and ffmpeg turn the picture
            width, height = height, width
    if seconds and seconds <= MEDIA_SECONDS and width is None and re.search(r"Stream #0:\d+.*?: Audio: ", header):
        # a header only states or guesses the length (an MP3 without a Xing header guessed from its first frame,
        # a FLAC or M4A header that lies: 40 s read as 10 s), and every check, trim and estimate reads it: audio
        # alone is measured by decoding it (hundreds of times faster than real time, once per file version), up
        # to just past the longest input (a header already past it is refused as it stands)
        seconds = _decoded_seconds(path, MEDIA_SECONDS + 1) or seconds
    # a GIF lasting more than its first frame is animated; a one-frame GIF lasts N/A or one frame's time
    one_frame = not seconds or (fps is not None and seconds <= 1.5 / fps)
    still = width is not None and (container == "image2" or container.endswith("_pipe")
                                   or (container in ("gif", "webp") and one_frame))
    return MediaFacts(path=path, container=container, duration=None if still else seconds, width=width,
                      height=height, fps=None if still else fps,
                      has_audio=bool(re.search(r"Stream #0:\d+.*?: Audio: ", header)), is_still_image=still,
                      bytes=path.stat().st_size if path.is_file() else 0,
                      damaged=bool(re.search(r"timescale not set|moov atom not found|partial file", log))
                      or (container.startswith("mov") and path.is_file() and not boxes_fit(path)))


def _decoded_seconds(path: Path, at_most: float) -> float | None:
    """How long path's first audio stream lasts, decoded to its end or to at_most seconds, whichever comes first
    (remembered per file version); None when ffmpeg says nothing of it."""
    def measure() -> float | None:
        log = _run_ffmpeg(path, ["-map", "0:a:0", "-t", f"{at_most:g}", "-f", "null", "-"], check=False,
                          strict=False)[0]
        times = re.findall(r"time=(\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
        return _seconds(*times[-1]) if times else None

    return per_file_version(path, ("decoded length", at_most), measure)


def _seconds(h: str, m: str, s: str) -> float:
    return int(h) * 3600 + int(m) * 60 + float(s)


def _last_error_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if "rror" in line or "Invalid" in line or "not found" in line]
    text = (errors or lines or ["ffmpeg could not read the file"])[-1]
    return re.sub(r"^\[[^\]]*\]\s*", "", text)[:300]
