"""Media helpers on the bundled ffmpeg: probe, trim audio under a limit, extract audio, compose side by side.

Each helper is a single ffmpeg run (a filter graph), not a frame loop in Python: that keeps side_by_side
within 2x of ffmpeg's own hstack and trim_audio near `ffmpeg -t` (benchmarks/media.py), and leaves no
reader processes behind to close. Labels are drawn with Pillow, so no font has to exist for ffmpeg.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .ffmpeg import MediaInfo, ProbeError, ffmpeg_exe, parse_ffmpeg_log

FFMPEG_TIMEOUT_S = 300.0
PAUSE_SEARCH_S = 1.5  # look this far back from the limit for a pause to cut in
PAUSE_WINDOW_S = 0.1
PAUSE_LEVEL_DB = -30.0  # quieter than this, relative to the loudest moment nearby, counts as a pause
SHRINK_SIDE = 2048  # well under the models' 4096 px and 5 MB limits as a JPEG
SAFETY_S = 0.05  # encoders pad a little; stay clearly under the limit
_AUDIO_CODECS = {".m4a": ["-c:a", "aac", "-b:a", "128k"], ".mp4": ["-c:a", "aac", "-b:a", "128k"],
                 ".aac": ["-c:a", "aac", "-b:a", "128k"], ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
                 ".wav": ["-c:a", "pcm_s16le"]}


@dataclasses.dataclass(frozen=True)
class MediaFacts:
    """What a file's header says: duration, picture size and frame rate, which streams, and bytes on disk."""

    path: Path
    container: str
    duration: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_audio: bool
    is_still_image: bool
    bytes: int

    @property
    def has_video(self) -> bool:
        """True when there is a picture stream (a still image counts)."""
        return self.width is not None

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the picture, or None for audio."""
        return None if self.width is None or self.height is None else (self.width, self.height)


def probe(path: str | Path) -> MediaFacts:
    """Duration, size and streams of path from its header alone (fast: nothing is decoded); ProbeError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path} does not exist")
    proc = _ffmpeg(["-i", f"file:{path}"], check=False)  # no output file: ffmpeg prints the header and stops
    info = parse_ffmpeg_log(proc.stderr)
    if info is None:
        raise ProbeError(f"ffmpeg cannot read {path.name}: {proc.stderr.strip().splitlines()[-1:] or '?'}")
    return _facts(path, info)


def trim_audio(src: str | Path, max_seconds: float = 15.0, out: str | Path | None = None,
               fade: float = 0.25) -> Path:
    """Audio of src (an audio file or a video) cut to under max_seconds, in a pause when one is near, faded out.

    The output format follows out's suffix (.m4a by default; .wav, .mp3, .aac also work).
    """
    src = Path(src)
    facts = probe(src)
    if not facts.has_audio:
        raise ValueError(f"{src.name} has no audio stream to trim")
    if max_seconds <= 2 * SAFETY_S:
        raise ValueError(f"max_seconds must be more than {2 * SAFETY_S:g}, not {max_seconds:g}")
    out = _output(out, src, f"max{max_seconds:g}s", ".m4a")
    duration = facts.duration or max_seconds
    args = ["-i", f"file:{src}", "-vn", "-map", "0:a:0"]
    if duration > max_seconds - SAFETY_S:
        cut = find_cut(src, max_seconds)
        fade = max(0.0, min(fade, cut / 4))
        args += ["-t", f"{cut:.3f}", "-af", f"afade=t=out:st={cut - fade:.3f}:d={fade:.3f}"]
    _ffmpeg([*args, *_audio_codec(out), str(out)])
    return out


def find_cut(src: str | Path, max_seconds: float) -> float:
    """Where to cut src to stay under max_seconds: the middle of the quietest pause near the limit, else the limit."""
    import numpy as np

    limit = max_seconds - SAFETY_S
    start = max(0.0, limit - PAUSE_SEARCH_S)
    rate = 8000
    proc = _ffmpeg(["-ss", f"{start:.3f}", "-t", f"{limit - start:.3f}", "-i", f"file:{src}", "-vn", "-map", "0:a:0",
                    "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"], binary=True)
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
    """A JPEG copy of src (quality 90) at most max_side px on its longest side: fixes "image too large"."""
    from PIL import Image, ImageOps

    src = Path(src)
    out = _output(out, src, f"max{max_side}", ".jpg")
    with Image.open(src) as img:
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale straight away
        image = ImageOps.exif_transpose(img).convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    image.save(out, "JPEG", quality=90)
    return out


def extract_audio(video: str | Path, out: str | Path | None = None) -> Path:
    """The audio track of video as its own file (.m4a by default, or out's suffix)."""
    video = Path(video)
    if not probe(video).has_audio:
        raise ValueError(f"{video.name} has no audio track to extract")
    out = _output(out, video, "audio", ".m4a")
    _ffmpeg(["-i", f"file:{video}", "-vn", "-map", "0:a:0", *_audio_codec(out), str(out)])
    return out


def side_by_side(videos: Sequence[str | Path], labels: Sequence[str] | None = None, out: str | Path | None = None,
                 height: int = 360, fps: int = 25) -> Path:
    """Videos and still images scaled to one height, labelled, laid side by side in one mp4.

    Lasts as long as the longest input (stills and shorter videos hold their last frame) and keeps the
    audio of the longest input that has any.
    """
    if not videos:
        raise ValueError("side_by_side needs at least one video or image")
    if labels is not None and len(labels) != len(videos):
        raise ValueError(f"got {len(labels)} labels for {len(videos)} inputs; give one per input or none")
    height -= height % 2
    facts = [probe(v) for v in videos]
    for f in facts:
        if not f.has_video or not f.height or not f.width:
            raise ValueError(f"{f.path.name} has no picture to show")
    moving = [f.duration for f in facts if not f.is_still_image and f.duration]
    total = max(moving, default=3.0)
    out = _output(out, facts[0].path, "side-by-side", ".mp4")
    with tempfile.TemporaryDirectory(prefix="spark_nb_sbs_") as tmp:
        args, chains, stacked, label_inputs = [], [], [], 0
        for i, f in enumerate(facts):
            if f.is_still_image:
                args += ["-loop", "1", "-framerate", str(fps), "-t", f"{total:.3f}"]
            args += ["-i", f"file:{f.path}"]
        width_of = [max(2, round(f.width * height / f.height / 2) * 2) for f in facts]  # type: ignore[operator]
        for i, f in enumerate(facts):
            hold = "" if f.is_still_image else f",tpad=stop_mode=clone:stop_duration={total:.3f}"
            chains.append(f"[{i}:v]scale={width_of[i]}:{height}:flags=bicubic,setsar=1,fps={fps}"
                          f"{hold},format=yuv420p[s{i}]")
            name = f"s{i}"
            if labels and labels[i]:
                label_png = _label_image(labels[i], width_of[i], height, Path(tmp) / f"label{i}.png")
                args += ["-i", f"file:{label_png}"]
                label_inputs += 1
                chains.append(f"[{name}][{len(facts) + label_inputs - 1}:v]overlay=0:main_h-overlay_h:format=auto,"
                              f"format=yuv420p[l{i}]")
                name = f"l{i}"
            stacked.append(name)
        if len(stacked) > 1:
            chains.append("".join(f"[{n}]" for n in stacked) + f"hstack=inputs={len(stacked)}[v]")
            video_out = "[v]"
        else:
            video_out = f"[{stacked[0]}]"
        with_audio = [i for i, f in enumerate(facts) if f.has_audio and not f.is_still_image]
        audio = ["-map", f"{max(with_audio, key=lambda i: facts[i].duration or 0)}:a:0", "-c:a", "aac",
                 "-b:a", "128k"] if with_audio else ["-an"]
        _ffmpeg([*args, "-filter_complex", ";".join(chains), "-map", video_out, *audio, "-t", f"{total:.3f}",
                 "-r", str(fps), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                 "-movflags", "+faststart", str(out)])
    return out


def _label_image(text: str, width: int, height: int, path: Path) -> Path:
    """A translucent bar with the label in white, as wide as its tile, for overlaying at the bottom."""
    from PIL import Image, ImageDraw, ImageFont

    bar = max(16, height // 12)
    image = Image.new("RGBA", (width, bar), (0, 0, 0, 140))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(10, int(bar * 0.62)))
    while draw.textlength(text, font=font) > width - 8 and len(text) > 1:
        text = text[:-2] + "…"
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (right - left)) / 2 - left, (bar - (bottom - top)) / 2 - top), text, font=font,
              fill=(255, 255, 255, 255))
    image.save(path)
    return path


def _facts(path: Path, info: MediaInfo) -> MediaFacts:
    still = info.width is not None and (info.container in ("image2", "gif", "webp") or info.container.endswith("_pipe"))
    return MediaFacts(path=path, container=info.container, duration=None if still else info.duration,
                      width=info.width, height=info.height, fps=info.fps, has_audio=info.has_audio,
                      is_still_image=still, bytes=path.stat().st_size)


def _output(out: str | Path | None, src: Path, tag: str, suffix: str) -> Path:
    if out is not None:
        return Path(out)
    from .inputs import scratch_dir

    return scratch_dir() / f"{src.stem}-{tag}{suffix}"


def _audio_codec(out: Path) -> list[str]:
    try:
        return _AUDIO_CODECS[out.suffix.lower()]
    except KeyError:
        raise ValueError(f"cannot write audio as {out.suffix!r}; use one of {', '.join(_AUDIO_CODECS)}") from None


def _ffmpeg(args: list[str], *, check: bool = True, binary: bool = False) -> subprocess.CompletedProcess:
    """Run the bundled ffmpeg (bounded in time); raise RuntimeError with its last error line when it fails."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, stdin=subprocess.DEVNULL, timeout=FFMPEG_TIMEOUT_S,
                          text=not binary)
    if check and proc.returncode != 0:
        log = proc.stderr.decode(errors="replace") if binary else proc.stderr
        last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["(no message)"]
        raise RuntimeError(f"ffmpeg failed: {last[0][:300]}")
    return proc
