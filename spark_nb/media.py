"""Media helpers on the bundled ffmpeg: read a header, trim audio under a limit, extract audio, compose side by side,
and join results into a reel.

Each file-to-file helper is one ffmpeg run (a filter graph), not moviepy: a moviepy clips_array of the benchmark's
inputs took 5.4x as long as ffmpeg's own hstack (the goal is 2x) where one graph takes ~1.3x (benchmarks/media.py).
Labels are drawn with Pillow (ffmpeg needs no font). Outputs are written under a temporary name and renamed.

moviepy clips are accepted too (`side_by_side`, `trim_audio`, `reel`), and `as_clip=True` hands the output back as
a clip. A clip that still plays exactly its file (not subclipped, resized, re-timed, with effects or another sound)
takes the ffmpeg path on that file; an edited clip is first rendered by moviepy (see spark_nb._clips). Clips you
pass stay open; clips returned by `as_clip=True` and `Result.clip()` read their file until closed: use them in a
`with` block, or call `.close()`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, overload

from . import _clips, _procs
from ._boundary import guard_public, number_argument, path_argument
from ._ffmpeg import MediaFacts, ProbeError, ffmpeg_exe, read_header
from ._ffmpeg import ffmpeg_input as _input
from ._files import make_part
from ._limits import AUDIO_SECONDS
from .errors import MediaError, UsageError

if TYPE_CHECKING:
    from moviepy import AudioClip, AudioFileClip, VideoClip, VideoFileClip

    PathLike: TypeAlias = str | os.PathLike[str]  # a path, or a Result (it is its video file)
    VideoSource: TypeAlias = PathLike | VideoClip
    AudioSource: TypeAlias = PathLike | AudioClip | VideoClip

__all__ = ["MediaError", "MediaFacts", "ProbeError", "extract_audio", "find_cut", "read_header", "reel",
           "shrink_image", "side_by_side", "trim_audio"]

FFMPEG_TIMEOUT_S = 300.0
PAUSE_SEARCH_S = 1.5  # look this far back from the limit for a pause to cut in
PAUSE_WINDOW_S = 0.1
PAUSE_LEVEL_DB = -30.0  # quieter than this, relative to the loudest moment nearby, counts as a pause
SHRINK_SIDE = 2048  # well under the models' 4096 px and 5 MB limits as a JPEG
SAFETY_S = 0.05  # encoders pad a little; stay clearly under the limit
_AUDIO_CODECS = {".m4a": ["-c:a", "aac", "-b:a", "128k"], ".mp4": ["-c:a", "aac", "-b:a", "128k"],
                 ".aac": ["-c:a", "aac", "-b:a", "128k"], ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
                 ".wav": ["-c:a", "pcm_s16le"]}
_VISUALS = "a video or image path, a Result, or a moviepy video clip"
_SOUNDS = "an audio or video path, a Result, a moviepy audio clip, or a moviepy video clip with audio"


@overload
def trim_audio(src: AudioSource, max_seconds: float = ..., out: str | Path | None = ..., fade: float = ..., *,
               as_clip: Literal[False] = ...) -> Path: ...
@overload
def trim_audio(src: AudioSource, max_seconds: float = ..., out: str | Path | None = ..., fade: float = ..., *,
               as_clip: Literal[True]) -> AudioFileClip: ...
def trim_audio(src: AudioSource, max_seconds: float = AUDIO_SECONDS, out: str | Path | None = None,
               fade: float = 0.25, *, as_clip: bool = False) -> Path | AudioFileClip:
    """Audio of src (a file, a Result or a moviepy clip) cut to under max_seconds, in a pause if one is near, faded.

    Args:
        src: an audio or video file, a Result, or a moviepy clip with sound (an edited clip is rendered first).
        max_seconds: the length to stay under (the cut is a little before it, in the nearest pause).
        out: the output file, its suffix the format (.m4a, .wav, .mp3, .aac); None: a scratch file named after src.
        fade: seconds of fade-out at the cut.
        as_clip: return an AudioFileClip of the output instead of its path (close it when done).

    Returns:
        The output's path, or an AudioFileClip of it with as_clip=True.

    Raises:
        MediaError: max_seconds of 0.1 s or less (or not a number), fade below 0, no audio in src, src unreadable
            (ProbeError), or ffmpeg failed.
        UsageError: src is none of the accepted kinds.
    """
    number_argument(max_seconds, "max_seconds", more_than=2 * SAFETY_S, error=MediaError)
    number_argument(fade, "fade", at_least=0, error=MediaError)
    with tempfile.TemporaryDirectory(prefix="spark_nb_trim_") as tmp:
        trimmed = _trim_file(_sound_file(src, Path(tmp)), max_seconds, out, fade)
    return _clips.open_audio(trimmed) if as_clip else trimmed


def _sound_file(src: AudioSource, tmp: Path) -> Path:
    """The file trim_audio reads for src: a path as it is, an untouched clip's file, or an edited clip rendered."""
    if _clips.is_clip(src):
        sound = src.audio if _clips.is_video_clip(src) else src
        if not _clips.is_audio_clip(sound):
            if _clips.is_video_clip(src):
                raise MediaError(f"this {type(src).__name__} has no audio to trim",
                                 hint="pass a clip with sound, or give it one with clip.with_audio(audio_clip)")
            raise _clips.wrong_type(src, "trim_audio's input", _SOUNDS)
        _clips.check_playable(sound, "the clip's audio")
        return _clips.untouched_audio(sound) or _clips.render_audio(sound, tmp / "clip-audio.wav")
    return _path(src, "trim_audio's input", _SOUNDS)


def _trim_file(src: Path, max_seconds: float, out: str | Path | None, fade: float) -> Path:
    """trim_audio on a file: one ffmpeg run, cutting in the pause find_cut chooses."""
    facts = read_header(src)
    if not facts.has_audio:
        raise MediaError(f"{src.name} has no audio stream to trim")
    out = _output(out, [src], f"max{max_seconds:g}s", ".m4a", max_seconds, fade)
    codec = _audio_codec(out)
    args = ["-i", _input(src), "-vn", "-map", "0:a:0"]
    if (facts.duration or max_seconds) > max_seconds - SAFETY_S:
        cut = find_cut(src, max_seconds)
        args += ["-t", f"{cut:.3f}"]
        fade = max(0.0, min(fade, cut / 4))
        if fade > 0:
            args += ["-af", f"afade=t=out:st={cut - fade:.3f}:d={fade:.3f}"]
    _write([*args, *codec], out)
    return out


def find_cut(src: str | Path, max_seconds: float) -> float:
    """Where to cut src to stay under max_seconds: the middle of the quietest pause near the limit, else the limit.

    Args:
        src: an audio or video file.
        max_seconds: the length to stay under.

    Returns:
        The time to cut at, in seconds from the start (at most max_seconds - 0.05).

    Raises:
        MediaError: ffmpeg could not read src's audio, or max_seconds is not a number above 0.1.
        UsageError: src is not a path.
    """
    import numpy as np

    src = _path(src, "find_cut's input", _SOUNDS)
    limit = number_argument(max_seconds, "max_seconds", more_than=2 * SAFETY_S, error=MediaError) - SAFETY_S
    start = max(0.0, limit - PAUSE_SEARCH_S)
    rate = 8000
    proc = _ffmpeg(["-ss", f"{start:.3f}", "-t", f"{limit - start:.3f}", "-i", _input(src), "-vn", "-map", "0:a:0",
                    "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"])
    samples = np.frombuffer(proc.stdout, dtype="<i2").astype(np.float32)
    window, hop = int(rate * PAUSE_WINDOW_S), int(rate * 0.02)
    if samples.size < 2 * window:
        return limit
    energy = np.convolve(samples**2, np.ones(window) / window, mode="valid")[::hop]
    level_db = 10 * np.log10(energy + 1e-3)
    quiet = np.flatnonzero(level_db[:-1] <= level_db.max() + PAUSE_LEVEL_DB)  # the last window ends at the limit
    if quiet.size == 0:
        return limit
    latest = int(quiet[-1])  # the pause nearest the limit keeps the most speech
    return start + (latest * hop + window / 2) / rate


def shrink_image(src: str | Path, max_side: int = SHRINK_SIDE, out: str | Path | None = None) -> Path:
    """A JPEG copy of src (quality 90) at most max_side px on its longest side: fixes "image too large".

    Args:
        src: an image file.
        max_side: the longest side in pixels (2048: well under the models' 4096 px and 5 MB).
        out: the output file, or None for a scratch file named after src.

    Returns:
        The JPEG's path (EXIF rotation applied).

    Raises:
        MediaError: src is not an image that can be read (a folder, another kind of file, cut short), or max_side
            is not a whole number of at least 1.
        UsageError: src is not a path.
    """
    from PIL import Image, ImageOps

    src = _path(src, "shrink_image's input", "an image path")
    max_side = int(number_argument(max_side, "max_side", at_least=1, integer=True, error=MediaError))
    try:
        with Image.open(src) as img:
            img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale straight away
            image = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # not an image, a folder, a bomb, cut short
        raise MediaError(f"{src.name} is not an image that can be shrunk ({type(exc).__name__}: {exc})",
                         hint="pass a JPEG, PNG or WebP file") from exc
    out = _output(out, [src], f"max{max_side}", ".jpg")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    part = _part(out)
    try:
        image.save(part, "JPEG", quality=90)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out


def extract_audio(video: str | Path, out: str | Path | None = None) -> Path:
    """The audio track of video as its own file (.m4a by default, or out's suffix).

    Args:
        video: a video file (or a Result).
        out: the output file; its suffix sets the format. None: a scratch file named after video.

    Returns:
        The audio file's path.

    Raises:
        MediaError: video has no audio track or cannot be read (ProbeError), or ffmpeg failed.
        UsageError: video is not a path or a Result.
    """
    video = _path(video, "extract_audio's input", "a video path or a Result")
    if not read_header(video).has_audio:
        raise MediaError(f"{video.name} has no audio track to extract")
    out = _output(out, [video], "audio", ".m4a")
    _write(["-i", _input(video), "-vn", "-map", "0:a:0", *_audio_codec(out)], out)
    return out


@overload
def side_by_side(videos: Sequence[VideoSource], labels: Sequence[str] | None = ..., out: str | Path | None = ...,
                 height: int = ..., fps: int = ..., *, as_clip: Literal[False] = ...) -> Path: ...
@overload
def side_by_side(videos: Sequence[VideoSource], labels: Sequence[str] | None = ..., out: str | Path | None = ...,
                 height: int = ..., fps: int = ..., *, as_clip: Literal[True]) -> VideoFileClip: ...
def side_by_side(videos: Sequence[VideoSource], labels: Sequence[str] | None = None, out: str | Path | None = None,
                 height: int = 360, fps: int = 25, *, as_clip: bool = False) -> Path | VideoFileClip:
    """Videos, still images and moviepy video clips scaled to one height, labelled, laid side by side in one mp4.

    Args:
        videos: a list of video or image paths, Results, or moviepy video clips (an edited clip is rendered first).
        labels: one label per input, drawn at its bottom (None: no labels).
        out: the output mp4, or None for a scratch file named after the inputs and options.
        height: the height every input is scaled to, in pixels (at least 16).
        fps: the output's frame rate.
        as_clip: return a VideoFileClip of the output instead of its path (close it when done).

    Returns:
        The mp4's path, or a VideoFileClip of it with as_clip=True. It lasts as long as the longest input (stills
            and shorter videos hold their last frame), with the audio of the longest input that has any.

    Raises:
        UsageError: videos is one input instead of a list, or an input of a kind not accepted.
        MediaError: no inputs, not one label per input, a height or fps out of range, an input with no picture or
            unreadable (ProbeError), or ffmpeg failed.
    """
    if isinstance(videos, (str, os.PathLike)) or _clips.is_clip(videos):
        raise UsageError("side_by_side takes a list of inputs, not one", hint="pass [a, b, ...]")
    if not videos:
        raise MediaError("side_by_side needs at least one video or image")
    if labels is not None and len(labels) != len(videos):
        raise MediaError(f"got {len(labels)} labels for {len(videos)} inputs; give one per input or none")
    if height < 16 or fps <= 0:
        raise MediaError(f"height must be at least 16 px and fps positive, not {height} and {fps}")
    with tempfile.TemporaryDirectory(prefix="spark_nb_sbs_") as tmp:
        files = [_visual_file(video, i, Path(tmp)) for i, video in enumerate(videos)]
        composed = _side_by_side_files(files, labels, out, height - height % 2, fps, Path(tmp))
    return _clips.open_video(composed) if as_clip else composed


def _check_video_clip(clip: object, what: str) -> None:
    """MediaError unless clip is an open video clip with frames to show."""
    if not _clips.is_video_clip(clip):
        raise MediaError(f"{what} is a {type(clip).__name__}, which has no picture to show",
                         hint="pass a video clip, or put the sound on one: video_clip.with_audio(audio_clip)")
    _clips.check_playable(clip, what)


def _visual_file(video: VideoSource, index: int, tmp: Path) -> Path:
    """The file side_by_side reads for one input: a path, an untouched clip's file, or an edited clip rendered."""
    what = f"side_by_side's input {index + 1}"
    if _clips.is_clip(video):
        _check_video_clip(video, what)
        return _clips.untouched_video(video) or _clips.render_video(video, tmp / f"clip{index}.mp4")
    return _path(video, what, _VISUALS)


def _side_by_side_files(files: list[Path], labels: Sequence[str] | None, out: str | Path | None, height: int,
                        fps: int, tmp: Path) -> Path:
    """side_by_side on files: one ffmpeg graph (scale, label, hold, hstack) and the longest input's audio."""
    facts = [read_header(v) for v in files]
    widths: list[int] = []  # each scaled to height, even (the encoder's rule)
    for f in facts:
        if not f.has_video or not f.height or not f.width:
            raise MediaError(f"{f.path.name} has no picture to show")
        widths.append(max(2, round(f.width * height / f.height / 2) * 2))
    moving = [f.duration for f in facts if not f.is_still_image and f.duration]
    total = max(moving, default=3.0)
    out = _output(out, [f.path for f in facts], "side-by-side", ".mp4", labels, height, fps)
    args = [arg for f in facts for arg in ("-i", _input(f.path))]
    # stills and labels repeat their one frame as a stream: a lone frame that ends before its overlay
    # partner has started can leave ffmpeg's threaded filter graph with no frames to encode at all
    repeat = f"loop=loop=-1:size=1:start=0,setpts=N/{fps}/TB"
    chains = []
    for i, width in enumerate(widths):
        # setsar=1: non-square pixels were already undone by scaling to the width as shown
        tile = f"[{i}:v]{repeat + ',' if facts[i].is_still_image else ''}scale={width}:{height}:flags=bicubic,setsar=1"
        if labels and labels[i]:
            args += ["-i", _input(_clips.label_image(labels[i], width, height, tmp / f"label{i}.png"))]
            label = len(args) // 2 - 1
            chains.append(f"{tile}[t{i}]")
            chains.append(f"[{label}:v]{repeat}[l{i}]")
            tile = f"[t{i}][l{i}]overlay=0:main_h-overlay_h:format=auto:shortest=1"
        # labelled before padding, so a held still or last frame is drawn once and then only cloned
        chains.append(f"{tile},fps={fps},tpad=stop_mode=clone:stop_duration={total:.3f},format=yuv420p[s{i}]")
    if len(facts) > 1:
        chains.append("".join(f"[s{i}]" for i in range(len(facts))) + f"hstack=inputs={len(facts)}[v]")
    video_out = "[v]" if len(facts) > 1 else "[s0]"
    with_audio = [i for i, f in enumerate(facts) if f.has_audio and not f.is_still_image]
    audio = ["-map", f"{max(with_audio, key=lambda i: facts[i].duration or 0)}:a:0", "-c:a", "aac",
             "-b:a", "128k"] if with_audio else ["-an"]
    _write([*args, "-filter_complex", ";".join(chains), "-map", video_out, *audio, "-t", f"{total:.3f}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart"], out)
    return out


@overload
def reel(results_or_clips: Iterable[VideoSource], titles: Sequence[str | None] | None = ...,
         out: str | Path | None = ..., *, as_clip: Literal[False] = ..., title_seconds: float = ...) -> Path: ...
@overload
def reel(results_or_clips: Iterable[VideoSource], titles: Sequence[str | None] | None = ...,
         out: str | Path | None = ..., *, as_clip: Literal[True], title_seconds: float = ...) -> VideoFileClip: ...
def reel(results_or_clips: Iterable[VideoSource], titles: Sequence[str | None] | None = None,
         out: str | Path | None = None, *, as_clip: bool = False,
         title_seconds: float = _clips.TITLE_SECONDS) -> Path | VideoFileClip:
    """Results, video paths and moviepy video clips one after another in one mp4, each after its title card if any.

    Args:
        results_or_clips: the pieces: Results, video paths, or moviepy video clips (clips passed stay open).
        titles: one title per piece, shown on a card before it (None or "" for no card); None: no cards.
        out: the output mp4, or None for a scratch file.
        as_clip: return a VideoFileClip of the output instead of its path (close it when done).
        title_seconds: how long each title card shows.

    Returns:
        The mp4's path, or a VideoFileClip of it with as_clip=True: each piece fitted (letterboxed) to the first
            one's size and frame rate, keeping its audio.

    Raises:
        MediaError: no pieces, not one title per piece, title_seconds not positive, a piece that is no video.
        UsageError: a piece of a kind not accepted, or results_or_clips is not a list.
    """
    if isinstance(results_or_clips, (str, bytes, os.PathLike)) or not isinstance(results_or_clips, Iterable):
        raise UsageError(f"reel takes a list of pieces, not a {type(results_or_clips).__name__}",
                         hint=f"pass [a, b, ...], each {_VISUALS}")
    items = list(results_or_clips)
    if not items:
        raise MediaError("reel needs at least one result, video path or clip")
    if titles is not None and len(titles) != len(items):
        raise MediaError(f"got {len(titles)} titles for {len(items)} pieces; give one per piece (None for no card)")
    number_argument(title_seconds, "title_seconds", more_than=0, error=MediaError)
    out = path_argument(out, "out") if out is not None else _scratch_file("reel", ".mp4")
    with contextlib.ExitStack() as opened:  # closes the readers opened here for paths; clips passed in stay open
        clips = [_reel_clip(item, i, opened) for i, item in enumerate(items)]
        size = (clips[0].size[0] - clips[0].size[0] % 2, clips[0].size[1] - clips[0].size[1] % 2)  # for yuv420p
        parts = []
        for clip, title in zip(clips, titles or [None] * len(clips), strict=True):
            if title:
                parts.append(_clips.title_card(title, size, title_seconds))
            parts.append(_clips.fitted(clip, size))
        part = _part(out)
        try:
            _clips.write_joined(parts, part, getattr(clips[0], "fps", None) or _clips.RENDER_FPS)
            os.replace(part, out)
        finally:
            part.unlink(missing_ok=True)
    return _clips.open_video(out) if as_clip else out


def _reel_clip(item: VideoSource, index: int, opened: contextlib.ExitStack) -> VideoClip:
    """One reel piece as a clip: a clip as it is, a video file opened (and closed by opened)."""
    what = f"reel's piece {index + 1}"
    if _clips.is_clip(item):
        _check_video_clip(item, what)
        return item
    path = _path(item, what, _VISUALS)
    facts = read_header(path)
    if not facts.has_video or facts.is_still_image or not facts.duration:
        kind = "a still image" if facts.is_still_image else "not a video"
        raise MediaError(f"{what}, {path.name}, is {kind}",
                         hint="pass a video; for a picture, pass moviepy.ImageClip(path, duration=seconds)")
    return opened.enter_context(_clips.open_video(path))


def _path(value: object, what: str, accepted: str) -> Path:
    """value as a Path when it is a path or path-like (a Result), else UsageError saying what is accepted."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise _clips.wrong_type(value, what, accepted)


def _scratch_file(tag: str, suffix: str) -> Path:
    """A new file name in this process's scratch folder (for outputs with no stable sources to name them by)."""
    from ._scratch import scratch_dir

    return scratch_dir() / f"{tag}-{uuid.uuid4().hex[:10]}{suffix}"


def _output(out: str | Path | None, sources: Sequence[Path], tag: str, suffix: str, *options: object) -> Path:
    """out, or a scratch file named after the first source and a digest of all sources and options."""
    if out is not None:
        return path_argument(out, "out")
    from ._scratch import scratch_dir

    # the digest keeps two different jobs apart even when their files share a name (a/speech.wav, b/speech.wav)
    key = hashlib.sha256()
    for src in sources:
        stat = src.stat()
        key.update(f"{src.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    key.update(repr(options).encode())
    return scratch_dir() / f"{sources[0].stem[:60]}-{key.hexdigest()[:10]}-{tag}{suffix}"


def _part(out: Path) -> Path:
    """A new temporary sibling of out (created exclusively: see `_files.new_part`), keeping its suffix so ffmpeg
    picks the same format."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return make_part(out, out.suffix)


def _write(args: list[str], out: Path) -> None:
    """Run ffmpeg with args writing to a temporary name, then rename it to out (also safe when out is an input)."""
    part = _part(out)
    try:
        _ffmpeg([*args, f"file:{part}"])
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)


def _audio_codec(out: Path) -> list[str]:
    try:
        return _AUDIO_CODECS[out.suffix.lower()]
    except KeyError:
        raise MediaError(f"cannot write audio as {out.suffix!r}; use one of {', '.join(_AUDIO_CODECS)}") from None


def _ffmpeg(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run the bundled ffmpeg (bounded in time); MediaError with its last error line when it fails."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = _procs.run(cmd, timeout=FFMPEG_TIMEOUT_S)
    if check and proc.returncode != 0:
        # file names in the log may be any bytes: decoded leniently rather than failing on a non-UTF-8 name
        log = proc.stderr.decode("utf-8", "replace")
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["(no message)"]
        raise MediaError(f"ffmpeg failed: {last[0][:300]}", hint="check that the inputs are complete media files")
    return proc


guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
