"""Media helpers on the bundled ffmpeg: trim audio under the model's limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .ffmpeg import ffmpeg_exe, probe

FFMPEG_TIMEOUT_S = 120.0


def trim_audio(src: str | Path, max_seconds: float = 15.0, out: str | Path | None = None, fade: float = 0.3) -> Path:
    """Cut src's audio (audio file or video) to at most max_seconds with a short fade-out; returns an .m4a."""
    src = Path(src)
    if out is None:
        from .inputs import scratch_dir

        out = scratch_dir() / f"{src.stem}-max{max_seconds:g}s.m4a"
    out = Path(out)
    duration = probe(src, decode_seconds=0.1).duration or max_seconds
    length = min(duration, max_seconds)
    fade = min(fade, length / 4)
    cmd = [ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-i", str(src), "-vn", "-t", f"{length:.3f}",
           "-af", f"afade=t=out:st={length - fade:.3f}:d={fade:.3f}", "-c:a", "aac", "-b:a", "128k", str(out)]
    proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg could not trim {src.name}: {proc.stderr.decode(errors='replace')[-300:]}")
    return out
