"""Media: trim_audio against `ffmpeg -t`, side_by_side against a hand-written ffmpeg hstack, on the same inputs.

    python benchmarks/media.py [--runs N] [--quick]        (or: python -m benchmarks --only media)

Goals: trim_audio within 3x of `ffmpeg -t`, side_by_side within 2x of hstack (file inputs). Also reported, with
no goal: side_by_side given an edited moviepy clip (the result resized), which moviepy renders before the graph.
Runs are interleaved so background load falls on both alike, and every output's duration is checked before a
figure counts.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import Table, verdict
from spark_nb import media, samples
from spark_nb._ffmpeg import ffmpeg_exe

GOALS = {"trim_audio": 3.0, "side_by_side": 2.0}  # rows not named here are reported without a goal
HEIGHT = 360
RESULT_S = 12.08  # as long as the sample driving video, like an imitator result


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-v", "error", *args], check=True, timeout=300)


def _timed(job: Callable[[], object]) -> float:
    started = time.perf_counter()
    job()
    return time.perf_counter() - started


def _inputs(folder: Path) -> dict[str, Path]:
    """A 20 s speech clip, and a 512x512 result-like video with sound as long as the sample driving video."""
    speech = folder / "speech20.wav"
    _ffmpeg("-stream_loop", "3", "-i", str(samples.SPEECH), "-t", "20", str(speech))
    result = folder / "result.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=512x512:rate=25", "-stream_loop", "2", "-i", str(samples.SPEECH),
            "-t", f"{RESULT_S}", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            str(result))
    return {"speech": speech, "result": result}


def _side_by_side_edited(folder: Path, made: dict[str, Path]) -> Path:
    """side_by_side with the result as an edited moviepy clip (resized to the height), opened and closed here."""
    from moviepy import VideoFileClip

    with VideoFileClip(str(made["result"])) as clip:
        return media.side_by_side([samples.PORTRAIT, samples.DRIVING_VIDEO, clip.resized(height=HEIGHT)],
                                  labels=["character", "driving video", "result"], out=folder / "ours_edited.mp4",
                                  height=HEIGHT)


def _cases(folder: Path, made: dict[str, Path]) -> dict[str, dict]:
    """Each helper: our call, the peer ffmpeg command, and the duration range both outputs must fall in."""
    visuals = [samples.PORTRAIT, samples.DRIVING_VIDEO, made["result"]]
    graph = (f"[0:v]scale=-2:{HEIGHT}[a];[1:v]scale=-2:{HEIGHT}[b];[2:v]scale=-2:{HEIGHT}[c];"
             "[a][b][c]hstack=inputs=3,format=yuv420p[v]")
    hstack = ["-loop", "1", "-framerate", "25", "-t", f"{RESULT_S}", "-i", str(samples.PORTRAIT),
              "-i", str(samples.DRIVING_VIDEO), "-i", str(made["result"]), "-filter_complex", graph,
              "-map", "[v]", "-map", "2:a", "-c:a", "aac", "-b:a", "128k",
              "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-t", f"{RESULT_S}", str(folder / "theirs.mp4")]
    return {
        "trim_audio": {
            "ours": lambda: media.trim_audio(made["speech"], 15.0, out=folder / "ours.m4a"),
            "theirs": lambda: _ffmpeg("-i", str(made["speech"]), "-t", "15", "-c:a", "aac", "-b:a", "128k",
                                      str(folder / "theirs.m4a")),
            "peer": "`ffmpeg -t 15` to AAC",
            "outputs": (folder / "ours.m4a", folder / "theirs.m4a"),
            # ours may cut in a pause up to PAUSE_SEARCH_S before the limit, never at or past it
            "ours_range": (15.0 - media.PAUSE_SEARCH_S - 0.1, 15.0 - 1e-6), "theirs_range": (14.9, 15.1),
        },
        "side_by_side": {
            "ours": lambda: media.side_by_side(visuals, labels=["character", "driving video", "result"],
                                               out=folder / "ours.mp4", height=HEIGHT),
            "theirs": lambda: _ffmpeg(*hstack),
            "peer": "ffmpeg scale + hstack (no labels)",
            "outputs": (folder / "ours.mp4", folder / "theirs.mp4"),
            "ours_range": (RESULT_S - 0.1, RESULT_S + 0.1), "theirs_range": (RESULT_S - 0.1, RESULT_S + 0.1),
        },
        "side_by_side, edited clip": {
            "ours": lambda: _side_by_side_edited(folder, made),
            "theirs": lambda: _ffmpeg(*hstack),
            "peer": "the same hstack (files)",
            "outputs": (folder / "ours_edited.mp4", folder / "theirs.mp4"),
            "ours_range": (RESULT_S - 0.1, RESULT_S + 0.1), "theirs_range": (RESULT_S - 0.1, RESULT_S + 0.1),
        },
    }


def measure(quick: bool = False, runs: int | None = None) -> list[dict]:
    """One row per helper: name, peer, ours_s, theirs_s (medians), ratio, goal, verdict, and both output durations."""
    runs = runs or (1 if quick else 5)
    with tempfile.TemporaryDirectory(prefix="spark_nb_bench_media_") as tmp:
        folder = Path(tmp)
        made = _inputs(folder)
        rows = []
        for name, case in _cases(folder, made).items():
            case["ours"](), case["theirs"]()  # warm up: page cache, ffmpeg binary, Python imports
            ours, theirs = [], []
            for _ in range(runs):
                ours.append(_timed(case["ours"]))
                theirs.append(_timed(case["theirs"]))
            ours_out, theirs_out = (media.read_header(path).duration or 0.0 for path in case["outputs"])
            for which, seconds in (("ours", ours_out), ("theirs", theirs_out)):
                low, high = case[f"{which}_range"]
                if not low <= seconds <= high:
                    raise AssertionError(f"{name}: {which} output lasts {seconds:.2f} s, outside {low:.2f}-{high:.2f}")
            ratio = statistics.median(ours) / statistics.median(theirs)
            goal = GOALS.get(name)
            rows.append({"name": name, "peer": case["peer"], "ours_s": statistics.median(ours),
                         "theirs_s": statistics.median(theirs), "ratio": ratio, "goal": goal if goal else "-",
                         "verdict": verdict(ratio <= goal) if goal else "reported", "ours_duration_s": ours_out,
                         "theirs_duration_s": theirs_out, "runs": runs})
    return rows


def table(rows: list[dict]) -> Table:
    """The rows as the aggregator's Table."""
    result = Table("Media", "trim_audio within 3x of `ffmpeg -t`; side_by_side of files within 2x of ffmpeg's hstack",
                   ["helper", "ours s", "peer", "peer s", "ratio", "goal", "verdict", "output s (ours / peer)"])
    for row in rows:
        result.rows.append([row["name"], row["ours_s"], row["peer"], row["theirs_s"], row["ratio"], row["goal"],
                            row["verdict"], f"{row['ours_duration_s']:.2f} / {row['theirs_duration_s']:.2f}"])
    runs = rows[0]["runs"] if rows else 0
    result.notes.append(f"Medians of {runs} interleaved runs after a warm-up; output durations checked. trim_audio "
                        "includes its probe and pause search; side_by_side includes probing, labels, holding the "
                        "still and the shorter video; its edited-clip row also opens the result with moviepy and "
                        "renders the resized clip with moviepy's writer first (no goal: reported).")
    return result


def run(quick: bool = False) -> Table:
    """The media table for `python -m benchmarks` (median of 5 runs, 1 with quick); rows via measure()."""
    return table(measure(quick))


def main(argv: list[str] | None = None) -> int:
    """Print the media table."""
    parser = argparse.ArgumentParser(prog="python benchmarks/media.py", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="timed runs of each (default 5, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="one timed run of each")
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    print(table(measure(args.quick, args.runs)).text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
