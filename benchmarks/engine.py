"""Real-time factor of the local engine: generate() wall time / video duration, all overheads included.

    python -m benchmarks --only engine

Runs both models on the bundled samples through the public API on the local backend (upload, create,
decode, face analysis, render, encode, poll, download, verify). Goal: below 1.0 on 2 cores.
"""

from __future__ import annotations

import statistics
import tempfile
import time

from spark_nb import avatar, imitator, samples

from .report import Table, verdict

GOAL_RTF = 1.0


def measure(runs: int) -> list[tuple[str, float, float]]:
    """(model, median wall seconds, video seconds) for each model."""
    out_dir = tempfile.mkdtemp(prefix="spark_nb_bench_")
    jobs = {
        "talking avatar": lambda: avatar.generate(samples.PORTRAIT, samples.SPEECH, backend="local",
                                                  output_dir=out_dir, progress=False, reuse=False),
        "imitation": lambda: imitator.generate(samples.PORTRAIT, samples.DRIVING_VIDEO, backend="local",
                                               output_dir=out_dir, progress=False, reuse=False),
    }
    jobs["talking avatar"]()  # warm up: start the embedded server, load OpenCV's cascades
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
    table = Table("Engine", f"real-time factor (wall time / video duration) below {GOAL_RTF} on 2 cores",
                  ["model", "video s", "generate() wall s", "real-time factor", "verdict"])
    for name, wall, duration in measure(runs):
        table.rows.append([name, duration, wall, wall / duration, verdict(wall / duration < GOAL_RTF)])
    table.notes.append(f"Median of {runs} runs of generate() on the bundled samples, local backend, all overheads "
                       "included (create, decode, face analysis, render, encode, poll, download, verify).")
    return table
