"""The local renderer: talking avatars and motion imitation, encoded to H.264/AAC through an ffmpeg pipe.

A talking avatar opens its mouth with the speech's loudness, blinks and sways. An imitation follows the
driving video's face (position, size, tilt and mouth). Frames are streamed, never stored, so memory stays
flat however long the input.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypedDict

import numpy as np

from .. import _procs
from .._ffmpeg import MediaFacts, ProbeError, decode_audio, ffmpeg_exe, ffmpeg_input, try_decode
from .._files import make_part
from .._imageheader import claimed_size
from .._limits import IMAGE_BYTES, IMAGE_SIDE, MEDIA_SECONDS, image_too_heavy, image_too_large, media_too_long
from ..models import MediaKind, RendererName
from . import _signals as signals
from ._driving import analyse_driving
from ._tracking import analyse

FPS = 25
LONGEST_SIDE = 512
STILL_SECONDS = 3.0
SMALL_FRAME_PIXELS = 256 * 256  # at most this many pixels a frame, x264 runs its fastest preset
ProgressCallback = Callable[[float], None]


class _Options(TypedDict):
    """What every renderer takes besides its inputs."""

    longest_side: int
    max_seconds: float
    on_progress: ProgressCallback | None


class RenderError(Exception):
    """The renderer could not use an input; `kind` says which (image, audio or video), None for the output."""

    def __init__(self, message: str, kind: MediaKind | None = None) -> None:
        super().__init__(message)
        self.kind = kind


def render(renderer: RendererName, inputs: Mapping[MediaKind, Path], out: Path, *, longest_side: int = LONGEST_SIDE,
           max_seconds: float = MEDIA_SECONDS, on_progress: ProgressCallback | None = None) -> float:
    """Render with the named renderer (a ModelSpec's `renderer`) from the inputs of each kind into out.

    Returns the video's length in seconds; an input longer than max_seconds fails before any frame is made.
    on_progress is called at least every few frames, so raising there stops a render at once.
    """
    options = _Options(longest_side=longest_side, max_seconds=max_seconds, on_progress=on_progress)
    if renderer == "talking_head":
        return render_avatar(inputs["image"], inputs["audio"], out, **options)
    if renderer == "imitation":
        return render_imitation(inputs["image"], inputs["video"], out, **options)
    if renderer == "still":
        return render_still(inputs["image"], out, **options)
    raise RenderError(f"no local renderer called {renderer!r}")


def render_avatar(image: Path, audio: Path, out: Path, *, longest_side: int = LONGEST_SIDE,
                  max_seconds: float = MEDIA_SECONDS, on_progress: ProgressCallback | None = None) -> float:
    """A talking-head video as long as the audio, with the audio; returns its length in seconds."""
    try:  # one pass over a bounded stretch: a long file is decoded only far enough to be refused
        info, pcm = decode_audio(audio, signals.SAMPLE_RATE, max_seconds + 1)
    except ProbeError as exc:
        raise RenderError(f"could not be decoded: {exc}", "audio") from exc
    duration = _duration(info, "audio", max_seconds)
    portrait = _load_portrait(image, longest_side)
    count = max(1, round(duration * FPS))
    mouth = signals.mouth_shapes(signals.samples_of(pcm), count, FPS)
    closure = signals.blinks(count, FPS)
    poses = signals.head_motion(mouth, FPS)
    from ._animate import Animator

    animator = Animator(portrait, analyse(portrait))
    with VideoEncoder(out, portrait.shape[1], portrait.shape[0], count, audio) as encoder:
        for i in range(count):
            encoder.write(animator.frame(mouth[i], closure[i], poses[i]))
            _report(on_progress, i + 1, count)
    return count / FPS


def render_imitation(image: Path, driving_video: Path, out: Path, *, longest_side: int = LONGEST_SIDE,
                     max_seconds: float = MEDIA_SECONDS, on_progress: ProgressCallback | None = None) -> float:
    """The character performing the driving video's head motion, mouth and blinks, as long as it, with its audio."""
    info = _header(driving_video, "video")
    if not info.has_video or info.is_still_image or not info.duration:
        raise RenderError("has no video stream", "video")
    if not info.width or not info.height:
        raise RenderError("has no readable frame size", "video")
    _within(info.duration, max_seconds, "video")
    portrait = _load_portrait(image, longest_side)
    count = max(1, round(info.duration * FPS))
    try:
        motion = analyse_driving(driving_video, count, (info.width, info.height),
                                 lambda f: _report(on_progress, f * 0.3, 1.0))
    except ValueError as exc:
        raise RenderError(str(exc), "video") from exc
    from ._animate import Animator

    animator = Animator(portrait, analyse(portrait))
    audio = driving_video if info.has_audio else None
    with VideoEncoder(out, portrait.shape[1], portrait.shape[0], count, audio) as encoder:
        for i in range(count):
            encoder.write(animator.frame(float(motion.mouth[i]), float(motion.closure[i]), motion.poses[i]))
            _report(on_progress, 0.3 + 0.7 * (i + 1) / count, 1.0)
    return count / FPS


def render_still(image: Path, out: Path, *, seconds: float = STILL_SECONDS, longest_side: int = LONGEST_SIDE,
                 max_seconds: float = MEDIA_SECONDS, on_progress: ProgressCallback | None = None) -> float:
    """A picture that breathes: a few seconds of blinks and a gentle sway, silent (for one-image models)."""
    portrait = _load_portrait(image, longest_side)
    count = max(1, round(seconds * FPS))
    closure = signals.blinks(count, FPS)
    poses = signals.head_motion(np.zeros(count), FPS)  # no speech: the idle sway alone
    from ._animate import Animator

    animator = Animator(portrait, analyse(portrait))
    with VideoEncoder(out, portrait.shape[1], portrait.shape[0], count, None) as encoder:
        for i in range(count):
            encoder.write(animator.frame(0.0, closure[i], poses[i]))
            _report(on_progress, i + 1, count)
    return count / FPS


def _encoding(width: int, height: int) -> list[str]:
    """The encoders' options: thumbnail-sized stand-in renders (--render-size 128) take the cheapest encode, on one
    thread (starting a pool of threads for a few dozen tiny frames costs more than it saves), and AAC's fast coder
    (half the audio's encoding time)."""
    video = ["-c:v", "libx264", "-crf", "23", "-pix_fmt", "yuv420p"]
    audio = ["-c:a", "aac", "-b:a", "96k"]
    if width * height <= SMALL_FRAME_PIXELS:
        return [*video, "-preset", "ultrafast", "-threads", "1", "-filter_threads", "1", *audio, "-aac_coder", "fast"]
    return [*video, "-preset", "veryfast", *audio]


class VideoEncoder:
    """H.264/AAC mp4 at 25 fps from raw RGB frames written to the bundled ffmpeg's stdin."""

    def __init__(self, out: Path, width: int, height: int, count: int, audio: Path | None) -> None:
        self.out, self._tmp = out, make_part(out)  # created exclusively; the finally below removes it
        cmd = [ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(FPS), "-i", "-"]
        cmd += ["-i", ffmpeg_input(audio)] if audio else ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono"]
        cmd += ["-map", "0:v", "-map", "1:a", "-t", f"{count / FPS:.3f}", *_encoding(width, height),
                "-movflags", "+faststart", "-f", "mp4", str(self._tmp)]
        self._proc = _procs.popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdin is not None and self._proc.stderr is not None  # both PIPE
        self._stdin, self._stderr = self._proc.stdin, self._proc.stderr

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame."""
        try:
            self._stdin.write(np.ascontiguousarray(rgb).tobytes())
        except BrokenPipeError as exc:
            raise RenderError(f"encoding failed: {self._errors()}") from exc

    def _errors(self) -> str:
        return self._stderr.read().decode(errors="replace")[-300:]

    def __enter__(self) -> VideoEncoder:
        return self

    def __exit__(self, kind: type | None, *rest: object) -> None:
        try:
            if kind is None:
                self._stdin.close()
                errors = self._errors()
                if self._proc.wait(timeout=120) != 0:
                    raise RenderError(f"encoding failed: {errors}")
                os.replace(self._tmp, self.out)
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            for stream in (self._stdin, self._stderr):
                if not stream.closed:
                    stream.close()
            self._tmp.unlink(missing_ok=True)


def _report(on_progress: ProgressCallback | None, done: float, total: float) -> None:
    if on_progress:
        on_progress(min(1.0, done / total))


def _header(path: Path, kind: MediaKind) -> MediaFacts:
    try:
        return try_decode(path, 0.2).facts
    except ProbeError as exc:
        raise RenderError(f"could not be decoded: {exc}", kind) from exc


def _duration(info: MediaFacts, kind: MediaKind, max_seconds: float) -> float:
    if kind == "audio" and not info.has_audio:
        raise RenderError("has no audio stream", kind)
    if not info.duration:
        raise RenderError("has no duration", kind)
    _within(info.duration, max_seconds, kind)
    return info.duration


def _within(seconds: float, max_seconds: float, kind: MediaKind) -> None:
    if media_too_long(seconds, max_seconds):
        raise RenderError(f"lasts {seconds:.0f} s; this server renders inputs of at most {max_seconds:.0f} s", kind)


def _load_portrait(path: Path, longest_side: int) -> np.ndarray:
    """The image as RGB, EXIF-rotated, scaled so its longest side is longest_side, with even sides."""
    from PIL import Image, ImageOps

    if image_too_heavy(weight := path.stat().st_size):  # the model's rules (_limits), as the client checks them
        raise RenderError(f"is {weight / 1e6:.1f} MB; this server takes images under {IMAGE_BYTES // 1024**2} MB",
                          "image")
    claimed = claimed_size(path)  # before PIL: a small file may claim a picture of gigabytes
    if claimed and image_too_large(*claimed):
        raise RenderError(f"is {claimed[0]}x{claimed[1]}; this server takes images under {IMAGE_SIDE}x{IMAGE_SIDE}",
                          "image")
    try:
        with Image.open(path) as img:
            if image_too_large(*img.size):
                raise RenderError(f"is {img.width}x{img.height}; this server takes images under "
                                  f"{IMAGE_SIDE}x{IMAGE_SIDE}", "image")
            img = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise RenderError(f"could not be decoded as an image: {exc}", "image") from exc
    scale = longest_side / max(img.size)
    size = (max(2, round(img.width * scale / 2) * 2), max(2, round(img.height * scale / 2) * 2))
    return np.asarray(img.resize(size, Image.Resampling.LANCZOS))
