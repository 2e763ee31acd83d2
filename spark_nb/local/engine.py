"""The local renderer: animates a still image over a soundtrack and encodes H.264/AAC through an ffmpeg pipe."""

from __future__ import annotations

import math
import os
import subprocess
from pathlib import Path
from typing import Callable, Iterator

from ..ffmpeg import ffmpeg_exe, probe

FPS = 25
LONGEST_SIDE = 512
ProgressCallback = Callable[[float], None]


class RenderError(Exception):
    """The renderer could not use an input; the message names which."""


def render_avatar(image: Path, audio: Path, out: Path, *, longest_side: int = LONGEST_SIDE,
                  on_progress: ProgressCallback | None = None) -> None:
    """A talking-head video: the portrait, gently animated, for the audio's whole length, with the audio."""
    duration = _duration(audio, "audio_url", need_audio=True)
    _render(image, duration, audio, out, longest_side, on_progress)


def render_imitation(image: Path, driving_video: Path, out: Path, *, longest_side: int = LONGEST_SIDE,
                     on_progress: ProgressCallback | None = None) -> None:
    """An imitation video: the character over the driving video's length, with its audio when it has some."""
    duration = _duration(driving_video, "driving_video_info.video_url", need_video=True)
    audio = driving_video if probe(driving_video, decode_seconds=0.1).has_audio else None
    _render(image, duration, audio, out, longest_side, on_progress)


def _duration(path: Path, field: str, *, need_audio: bool = False, need_video: bool = False) -> float:
    try:
        info = probe(path, decode_seconds=0.2)
    except ValueError as exc:
        raise RenderError(f"{field} could not be decoded: {exc}") from exc
    if need_audio and not info.has_audio:
        raise RenderError(f"{field} has no audio stream")
    if need_video and (not info.has_video or info.is_still_image):
        raise RenderError(f"{field} has no video stream")
    if not info.duration:
        raise RenderError(f"{field} has no duration")
    return info.duration


def _load_image(path: Path, longest_side: int):  # noqa: ANN202 - PIL is imported lazily
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, SyntaxError) as exc:
        raise RenderError(f"image_url could not be decoded as an image: {exc}") from exc
    scale = longest_side / max(img.size)
    size = (max(2, round(img.width * scale / 2) * 2), max(2, round(img.height * scale / 2) * 2))
    return img.resize(size, Image.Resampling.LANCZOS)


def _frames(img, count: int) -> Iterator[bytes]:  # noqa: ANN001
    """A slow breathing zoom and a small sway, as raw RGB frames."""
    from PIL import Image

    w, h = img.size
    cx, cy = w / 2, h / 2
    for i in range(count):
        t = i / FPS
        zoom = 1.04 + 0.02 * math.sin(2 * math.pi * t / 4.0)
        angle = math.radians(1.2 * math.sin(2 * math.pi * t / 3.0))
        dx = 0.01 * w * math.sin(2 * math.pi * t / 5.0)
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        # inverse affine map: output pixel -> source pixel, rotating and zooming about the centre
        coeffs = (cos, sin, cx - cos * cx - sin * cy + dx, -sin, cos, cy + sin * cx - cos * cy)
        yield img.transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR).tobytes()


def _render(image: Path, duration: float, audio: Path | None, out: Path, longest_side: int,
            on_progress: ProgressCallback | None) -> None:
    img = _load_image(image, longest_side)
    count = max(1, round(duration * FPS))
    exact = count / FPS
    cmd = [ffmpeg_exe(), "-y", "-nostdin", "-v", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{img.width}x{img.height}", "-r", str(FPS), "-i", "-"]
    cmd += ["-i", str(audio)] if audio else ["-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono"]
    cmd += ["-map", "0:v", "-map", "1:a", "-t", f"{exact:.3f}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-f", "mp4"]
    tmp = out.with_name(out.name + ".part")
    proc = subprocess.Popen([*cmd, str(tmp)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for index, frame in enumerate(_frames(img, count), start=1):
            proc.stdin.write(frame)  # type: ignore[union-attr]
            if on_progress and (index % 5 == 0 or index == count):
                on_progress(index / count)
        proc.stdin.close()  # type: ignore[union-attr]
        stderr = proc.stderr.read().decode(errors="replace")  # type: ignore[union-attr]
        if proc.wait(timeout=120) != 0:
            raise RenderError(f"encoding failed: {stderr[-300:]}")
    except BrokenPipeError as exc:
        raise RenderError(f"encoding failed: {proc.stderr.read().decode(errors='replace')[-300:]}") from exc  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    os.replace(tmp, out)
