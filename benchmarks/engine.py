"""Real-time factor of the local engine: generate() wall time / video duration, all overheads included.

    python benchmarks/engine.py [--runs 3]

Runs both models on the bundled samples through the public API on the local backend (upload, create,
decode, face analysis, render, encode, poll, download, verify). Goal: below 1.0 on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

from spark_nb import avatar, imitator, samples


def measure(runs: int) -> list[tuple[str, float, float]]:
    """(model, median wall seconds, video seconds) for each model."""
    out_dir = tempfile.mkdtemp(prefix="spark_nb_bench_")
    jobs = {
        "talking avatar": lambda: avatar.generate(samples.PORTRAIT, samples.SPEECH, backend="local",
                                                  output_dir=out_dir, progress=False),
        "imitation": lambda: imitator.generate(samples.PORTRAIT, samples.DRIVING_VIDEO, backend="local",
                                               output_dir=out_dir, progress=False),
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


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'model':16s} {'video s':>8s} {'wall s':>8s} {'RTF':>6s}  goal < 1.0")
    for name, wall, duration in measure(args.runs):
        rtf = wall / duration
        print(f"{name:16s} {duration:8.2f} {wall:8.2f} {rtf:6.2f}  {'meets' if rtf < 1.0 else 'misses'}")


if __name__ == "__main__":
    main()
