"""Media: trim_audio against `ffmpeg -t`, side_by_side against ffmpeg's hstack, same inputs, side by side."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from spark_nb import media, samples
from spark_nb.ffmpeg import ffmpeg_exe

from .report import Table, verdict

GOALS = {"trim_audio": 3.0, "side_by_side": 2.0}


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True, timeout=300)


def _timed(job: Callable[[], object]) -> float:
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def _inputs(folder: Path) -> dict[str, Path]:
    """A 20 s speech clip, and a 12 s result-like video beside the sample portrait and driving video."""
    speech = folder / "speech20.wav"
    _ffmpeg("-stream_loop", "3", "-i", str(samples.SPEECH), "-t", "20", str(speech))
    result = folder / "result.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=512x512:rate=25", "-i", str(samples.SPEECH), "-t", "12.08",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(result))
    return {"speech": speech, "result": result}


def run(quick: bool = False) -> Table:
    """Median times of ours and ffmpeg's for each helper, their ratio, and the goal."""
    runs = 1 if quick else 5
    folder = Path(tempfile.mkdtemp(prefix="spark_nb_bench_media_"))
    made = _inputs(folder)
    height = 360
    visuals = [samples.PORTRAIT, samples.DRIVING_VIDEO, made["result"]]
    graph = (f"[0:v]scale=-2:{height}[a];[1:v]scale=-2:{height}[b];[2:v]scale=-2:{height}[c];"
             "[a][b][c]hstack=inputs=3,format=yuv420p[v]")
    hstack = ["-loop", "1", "-framerate", "25", "-t", "12.08", "-i", str(samples.PORTRAIT),
              "-i", str(samples.DRIVING_VIDEO), "-i", str(made["result"]), "-filter_complex", graph,
              "-map", "[v]", "-map", "1:a", "-c:a", "aac",
              "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-t", "12.08"]
    cases = {
        "trim_audio": (lambda: media.trim_audio(made["speech"], 15.0, out=folder / "ours.m4a"),
                       lambda: _ffmpeg("-i", str(made["speech"]), "-t", "15", "-c:a", "aac", "-b:a", "128k",
                                       str(folder / "theirs.m4a")),
                       "`ffmpeg -t 15` to AAC", folder / "ours.m4a", folder / "theirs.m4a"),
        "side_by_side": (lambda: media.side_by_side(visuals, labels=["character", "driving video", "result"],
                                                    out=folder / "ours.mp4", height=height),
                         lambda: _ffmpeg(*hstack, str(folder / "theirs.mp4")),
                         "ffmpeg scale + hstack (no labels, no hold)", folder / "ours.mp4", folder / "theirs.mp4"),
    }
    table = Table("Media", "trim_audio within 3x of `ffmpeg -t`; side_by_side within 2x of ffmpeg's hstack",
                  ["helper", "ours s", "peer", "peer s", "ratio", "goal", "verdict"])
    for name, (ours, theirs, peer, our_out, their_out) in cases.items():
        our_times, their_times = [], []
        for _ in range(runs):  # interleaved, so background load falls on both alike
            our_times.append(_timed(ours))
            their_times.append(_timed(theirs))
        a, b = media.probe(our_out), media.probe(their_out)
        assert a.duration and b.duration and abs(a.duration - b.duration) < 1.6, (name, a, b)  # a pause cut is < 1.5 s
        ratio = statistics.median(our_times) / statistics.median(their_times)
        table.rows.append([name, statistics.median(our_times), peer, statistics.median(their_times), ratio,
                           GOALS[name], verdict(ratio <= GOALS[name])])
    table.notes.append(f"Medians of {runs} interleaved runs; outputs checked for duration. trim_audio includes its "
                       "probe and the pause search; side_by_side includes probing, labels and holding the still.")
    return table
