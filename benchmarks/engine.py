"""Real-time factor of the local engine: generate() wall time / video duration, all overheads included.

    python -m benchmarks --only engine

Runs both models through the public API on the local backend (upload, create, decode, face analysis, render,
encode, poll, download, verify), on the bundled samples and on real photographs and a real clip with cuts, a
fade and camera moves (tests/media/real). Goal: at most half of real time on 2 cores.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from spark_nb import avatar, imitator, samples

from .report import Table, verdict

GOAL_RTF = 0.5
REAL = Path(__file__).resolve().parent.parent / "tests" / "media"


def measure(runs: int) -> list[tuple[str, float, float]]:
    """(model, median wall seconds, video seconds) for each model."""
    out_dir = tempfile.mkdtemp(prefix="spark_nb_bench_")
    options = {"backend": "local", "output_dir": out_dir, "progress": False, "reuse": False}
    jobs = {
        "talking avatar, samples": lambda: avatar.generate(samples.PORTRAIT, samples.SPEECH, **options),
        "talking avatar, real photo (grey, dark, glasses)": lambda: avatar.generate(
            REAL / "real" / "portrait_gray_lowlight.jpg", REAL / "speech.wav", **options),
        "imitation, samples": lambda: imitator.generate(samples.PORTRAIT, samples.DRIVING_VIDEO, **options),
        "imitation, real clip (cuts, fade, 4 shots)": lambda: imitator.generate(
            REAL / "real" / "portrait_offcentre.jpg", REAL / "real" / "film_cuts_fade.mp4", **options),
    }
    jobs["talking avatar, samples"]()  # warm up: start the embedded server, load OpenCV's cascades
    rows = []
    for name, job in jobs.items():
        walls, duration = [], 0.0
        for _ in range(runs):
            started = time.perf_counter()
            result = job()
            walls.append(time.perf_counter() - started)
            duration = result.duration or 0.0
        rows.append((name, statistics.median(walls), duration))
    return rows


def run(quick: bool = False) -> Table:
    """Real-time factor of both models, median of 3 runs (1 with quick)."""
    runs = 1 if quick else 3
    table = Table("Engine", f"real-time factor (wall time / video duration) at most {GOAL_RTF} on 2 cores",
                  ["model", "video s", "generate() wall s", "real-time factor", "verdict"])
    for name, wall, duration in measure(runs):
        table.rows.append([name, duration, wall, wall / duration, verdict(wall / duration <= GOAL_RTF)])
    table.notes.append(f"Median of {runs} runs of generate(), local backend, all overheads "
                       "included (create, decode, face analysis, render, encode, poll, download, verify).")
    return table
