"""moviepy clips for spark_nb.media: which clips are still their file, rendering edited ones, and reel pieces
(fitted clips, title cards, a tile's label).

moviepy is imported only inside these functions (`import spark_nb` loads none of it). A value can only be a
moviepy clip once moviepy has been imported by someone, so `is_clip` never imports it for a path.

A clip is *untouched* when what it plays is exactly its file: a `VideoFileClip` or `AudioFileClip` (not a
subclass) whose frames still come straight from its reader (the frame function its constructor set, not one
that subclipped/resized/effects wrap around it), starting at 0, as long as the file, at the file's size and
frame rate, with no mask, and (for video) with the file's audio untouched or the file having none. Anything
else (a subclip, `with_duration`, `resized`, `with_effects`, `without_audio`, a composition, an ImageClip) is
*edited* and is rendered through moviepy.
"""

from __future__ import annotations

import math
import sys
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from .errors import MediaError, UsageError

if TYPE_CHECKING:
    from moviepy import AudioClip, AudioFileClip, VideoClip, VideoFileClip
    from moviepy.Clip import Clip

RENDER_FPS = 25  # for edited clips that have no frame rate of their own (stills, text)
TITLE_SECONDS = 1.5
_DURATION_TOLERANCE_S = 1e-6


def is_clip(value: object) -> TypeGuard[Clip]:
    """Whether value is a moviepy clip (without importing moviepy: no clip exists before it is imported)."""
    if "moviepy" not in sys.modules:
        return False
    from moviepy.Clip import Clip

    return isinstance(value, Clip)


def is_video_clip(value: object) -> TypeGuard[VideoClip]:
    """Whether value is a moviepy video clip (one with pictures)."""
    if not is_clip(value):
        return False
    from moviepy import VideoClip

    return isinstance(value, VideoClip)


def is_audio_clip(value: object) -> TypeGuard[AudioClip]:
    """Whether value is a moviepy audio clip (sound only)."""
    if not is_clip(value):
        return False
    from moviepy import AudioClip

    return isinstance(value, AudioClip)


def check_playable(clip: Any, what: str) -> float:
    """clip's duration; MediaError when it was closed, or has no duration (an ImageClip without one) or zero."""
    if hasattr(clip, "reader") and hasattr(clip, "filename"):
        _open_reader(clip)
    duration = getattr(clip, "duration", None)
    if duration is None or not math.isfinite(duration) or duration <= 0:
        raise MediaError(f"{what} is a {type(clip).__name__} of duration {duration}: there is nothing to play",
                         hint="give it a length with clip.with_duration(seconds), or subclip a longer clip")
    return float(duration)


def untouched_video(clip: VideoClip) -> Path | None:
    """The file a VideoFileClip still plays unchanged (see the module's docstring), or None for an edited clip."""
    from moviepy import VideoFileClip

    if type(clip) is not VideoFileClip:
        return None
    reader = _open_reader(clip)
    if not _reads_its_file(clip) or clip.mask is not None or not _whole_file(clip, reader.duration):
        return None
    if tuple(clip.size) != tuple(reader.size) or clip.fps != reader.fps or tuple(reader.size) != _shown_size(reader):
        return None  # resized by assignment, with_fps, or VideoFileClip(target_resolution=...)
    if reader.infos.get("audio_found"):
        # without_audio(), VideoFileClip(audio=False) or an edited soundtrack changes what the file would give
        if clip.audio is None or untouched_audio(clip.audio) != Path(clip.filename):
            return None
    elif clip.audio is not None:
        return None  # a soundtrack added with with_audio()
    return Path(clip.filename)


def untouched_audio(clip: AudioClip) -> Path | None:
    """The file an AudioFileClip still plays unchanged, or None for an edited (or composed) audio clip."""
    from moviepy import AudioFileClip

    if type(clip) is not AudioFileClip:
        return None
    reader = _open_reader(clip)
    if not _reads_its_file(clip) or not _whole_file(clip, reader.duration) or clip.fps != reader.fps:
        return None
    return Path(clip.filename)


def render_video(clip: VideoClip, path: Path) -> Path:
    """Write an edited video clip (and its audio, if any) to path (an .mp4) with moviepy's writer."""
    fps = getattr(clip, "fps", None) or RENDER_FPS
    _moviepy_write(lambda: clip.write_videofile(
        str(path), fps=fps, codec="libx264", preset="ultrafast", ffmpeg_params=["-crf", "16"],
        audio=clip.audio is not None, audio_codec="aac", audio_bitrate="192k",
        temp_audiofile_path=str(path.parent), logger=None), "video clip")
    return path


def render_audio(clip: AudioClip, path: Path) -> Path:
    """Write an edited audio clip to path (a .wav, 16-bit PCM) with moviepy's writer."""
    rate = getattr(clip, "fps", None) or 44100
    _moviepy_write(lambda: clip.write_audiofile(str(path), fps=rate, nbytes=2, codec="pcm_s16le", logger=None),
                   "audio clip")
    return path


def open_video(path: Path) -> VideoFileClip:
    """A VideoFileClip of path (close it, or use it in a `with` block)."""
    from moviepy import VideoFileClip

    return VideoFileClip(str(path))


def open_audio(path: Path) -> AudioFileClip:
    """An AudioFileClip of path (close it, or use it in a `with` block)."""
    from moviepy import AudioFileClip

    return AudioFileClip(str(path))


def fitted(clip: VideoClip, size: tuple[int, int]) -> VideoClip:
    """clip scaled to fit inside size, keeping its shape, centred on black (letterboxed); as it is if it fits."""
    from moviepy import CompositeVideoClip

    width, height = size
    if tuple(clip.size) == (width, height):
        return clip
    scale = min(width / clip.size[0], height / clip.size[1])
    inner = (max(2, round(clip.size[0] * scale)), max(2, round(clip.size[1] * scale)))
    placed = clip.resized(new_size=inner).with_start(0).with_position("center")
    return CompositeVideoClip([placed], size=(width, height), bg_color=(0, 0, 0)).with_duration(clip.duration)


def title_card(text: str, size: tuple[int, int], seconds: float = TITLE_SECONDS) -> VideoClip:
    """White text centred on black, size large, for seconds (Pillow's default font: no font file needed)."""
    from moviepy import TextClip

    width, height = size
    font_size = max(10, min(height // 8, int(width / max(6, len(text)) * 1.6)))
    return TextClip(text=text, font_size=font_size, color="white", bg_color="black", size=(width, height),
                    method="caption", text_align="center", horizontal_align="center", vertical_align="center",
                    transparent=False, duration=seconds).with_fps(RENDER_FPS)


def label_image(text: str, width: int, height: int, path: Path) -> Path:
    """A side-by-side tile's label: a translucent bar with text in white, as wide as the tile, saved at path (PIL)."""
    from PIL import Image, ImageDraw, ImageFont

    bar = max(16, height // 12)
    image = Image.new("RGBA", (width, bar), (0, 0, 0, 140))
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=max(10, int(bar * 0.62)))
    except TypeError:  # Pillow < 10.1 has only its small fixed bitmap font
        font = ImageFont.load_default()
    while draw.textlength(text, font=font) > width - 8 and len(text) > 1:
        text = text[:-2] + "…"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) / 2 - left, (bar - (bottom - top)) / 2 - top), text, font=font,
              fill=(255, 255, 255, 255))
    image.save(path)
    return path


def write_joined(parts: list[VideoClip], path: Path, fps: float) -> Path:
    """parts (all one size) one after another in one browser-playable mp4, the audio of those that have it."""
    from moviepy import concatenate_videoclips

    joined = concatenate_videoclips(parts, method="chain")
    try:
        with tempfile.TemporaryDirectory(prefix="spark_nb_reel_") as tmp:  # moviepy's mixed-down sound, then muxed
            _moviepy_write(lambda: joined.write_videofile(
                str(path), fps=fps, codec="libx264", preset="veryfast",
                ffmpeg_params=["-crf", "23", "-movflags", "+faststart"],
                audio=joined.audio is not None, audio_codec="aac", audio_bitrate="128k",
                temp_audiofile_path=tmp, logger=None), "reel")
    finally:
        joined.close()  # the composition's own audio mix; the parts' readers belong to their owners
    return path


def _open_reader(clip: Any) -> Any:
    """clip's reader, or MediaError when the clip was closed."""
    if getattr(clip, "reader", None) is None:
        raise MediaError(f"this {type(clip).__name__} of {Path(clip.filename).name} was closed",
                         hint="open it again (e.g. result.clip()) and pass the open clip")
    return clip.reader


def _reads_its_file(clip: Any) -> bool:
    """Whether clip's frames come straight from its reader: the frame function its file class's constructor set."""
    function = getattr(clip, "frame_function", None)
    if (not isinstance(function, types.FunctionType)
            or function.__qualname__ != f"{type(clip).__name__}.__init__.<locals>.<lambda>"):
        return False  # subclipped, resized, effects: moviepy wraps the frame function in a new one
    contents = (cell.cell_contents for cell in function.__closure__ or ())
    cells = dict(zip(function.__code__.co_freevars, contents, strict=True))
    owner = cells.get("self")
    return owner is not None and getattr(owner, "reader", None) is clip.reader


def _whole_file(clip: Any, file_seconds: float) -> bool:
    """Whether clip starts at 0 and lasts exactly as long as its file (with_duration, with_start, with_end differ)."""
    return (clip.start == 0 and clip.duration is not None and clip.end is not None
            and abs(clip.duration - file_seconds) <= _DURATION_TOLERANCE_S
            and abs(clip.end - file_seconds) <= _DURATION_TOLERANCE_S)


def _shown_size(reader: Any) -> tuple[int, int]:
    """The file's picture size as shown (rotation applied), before any target_resolution."""
    width, height = reader.infos.get("video_size", (1, 1))
    return (height, width) if abs(reader.infos.get("video_rotation", 0)) in (90, 270) else (width, height)


def _moviepy_write(write: Any, what: str) -> None:
    """Run a moviepy writer; MediaError naming what could not be rendered when it fails."""
    try:
        write()
    except (OSError, ValueError, AttributeError) as exc:
        last = [line for line in str(exc).strip().splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise MediaError(f"moviepy could not render the {what}: {last[0][:300]}",
                         hint="check that the clip plays (clip.preview() or clip.get_frame(0)) and that its "
                              "source files are still open") from exc


def wrong_type(value: object, what: str, accepted: str) -> UsageError:
    """The error for an input of a type a helper cannot use: what it got, and what it takes instead."""
    return UsageError(f"{what} is a {type(value).__name__}, not something a media helper can read",
                      hint=f"pass {accepted}")
