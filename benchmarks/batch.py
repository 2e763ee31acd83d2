"""Batch: `spark-nb batch` against `spark-nb serve`, both real processes, each row against the ideal wall time.

The ideal is ceil(rows / concurrency) x task time: tasks cannot be split, so 200 rows at 32 at a time need
7 rounds of 5 s. The server stands in for a service that renders elsewhere: its tasks take the stated time,
it renders 128 px videos (--render-size), and each row's speech is a 2 s clip of the sample, so that its own
rendering, which shares this machine's 2 cores with the batch, takes as little of them as it can. Every row is
a real job notebook (papermill) on a warm kernel, its task created once, its video downloaded and checked.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

from spark_nb import samples
from spark_nb._ffmpeg import ffmpeg_exe

from .memory import tree_rss_mb
from .report import Table, verdict

KEY = "benchmark-key"
GOAL_OVER_IDEAL = 0.10
GOAL_TREE_MB = 1536.0
SPEECH_S = 2.0
SAMPLE_EVERY_S = 0.2
NOISE = re.compile(r"warning|IPKernelApp|Traceback", re.IGNORECASE)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manifest(folder: Path, rows: int) -> Path:
    """rows avatar rows, each with its own portrait (a JPEG comment makes each file distinct), one short speech."""
    speech = folder / "speech.wav"
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-i", str(samples.SPEECH), "-t", f"{SPEECH_S:g}", str(speech)],
                   check=True, timeout=60)
    with Image.open(samples.PORTRAIT) as portrait:
        for i in range(rows):
            portrait.save(folder / f"p{i:04d}.jpg", quality=92, comment=f"row {i}".encode())
    path = folder / f"manifest-{rows}.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "model", "image", "audio", "driving_video"])
        writer.writerows([[f"row{i:04d}", "avatar", f"p{i:04d}.jpg", "speech.wav", ""] for i in range(rows)])
    return path


class _Server:
    """`spark-nb serve` on a free loopback port, its tasks taking task_s, rendering 128 px videos."""

    def __init__(self, task_s: float) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "spark_nb", "serve", "--port", str(self.port),
                                      "--latency", f"{task_s:g}", "--render-size", "128"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self.stats()
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the local server did not start")

    def stats(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/_spark_nb/stats", timeout=5) as answer:
            return json.load(answer)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(manifest: Path, out: Path, home: Path, concurrency: int, server: _Server) -> dict:
    """One `spark-nb batch`: its wall time, the CPU of its process tree, its peak memory, what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "SPARK_NB_"))}
    env.update(VTRIX_API_KEY=KEY, VTRIX_GENERATION_URL=server.url, SPARK_NB_BACKEND="cloud",
               SPARK_NB_UPLOAD_URL=f"{server.url}/api/v1/storage/files", SPARK_NB_HOME=str(home))
    created_before = server.stats()["created"]
    cpu_before = _children_cpu_s()  # the server is a child too, but it is waited for only after every run
    console = out.with_name(f"{out.name}.console.txt")  # a file, not a pipe: a pipe read only at the end fills
    with console.open("w") as written:                  # with the bar's updates, and the batch blocks on it
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "spark_nb", "batch", str(manifest), "--out", str(out),
                                 "--concurrency", str(concurrency)], env=env, stdout=written, stderr=subprocess.STDOUT)
        peak = 0.0
        while True:  # a wait, not a sleep, between samples: the wall time ends when the batch does
            peak = max(peak, tree_rss_mb(proc.pid))
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=SAMPLE_EVERY_S)
                break
        wall = time.perf_counter() - started
    printed = console.read_text(errors="replace")
    with (out / "results.csv").open() as f:
        results = list(csv.DictReader(f))
    return {"wall": wall, "cpu": _children_cpu_s() - cpu_before, "peak_mb": peak, "code": proc.returncode,
            "completed": sum(r["status"] == "completed" for r in results), "rows": len(results),
            "notebooks": sum(bool(r["notebook"]) and (out / r["notebook"]).is_file() for r in results),
            "created": server.stats()["created"] - created_before,
            "noise": [line for line in printed.splitlines() if NOISE.search(line)]}


def run(quick: bool = False) -> Table:
    """Wall time of each case against its ideal; CPU per row and peak memory of the batch's process tree."""
    task_s = 2.0 if quick else 5.0
    cases = [(4, 1), (4, 2)] if quick else [(20, 1), (20, 4), (20, 8), (200, 32), (1000, 32)]
    goals = {(4, 2), (20, 8), (200, 32)}  # the cases with a goal; the others are context
    folder = Path(tempfile.mkdtemp(prefix="spark_nb_bench_batch_"))
    manifests = {rows: _manifest(folder, rows) for rows in sorted({rows for rows, _ in cases})}
    table = Table("Batch", f"at concurrency 8 and at 200 rows x 32, at most {GOAL_OVER_IDEAL:.0%} over the ideal wall "
                  f"time; the batch's process tree under {GOAL_TREE_MB / 1024:.1f} GB",
                  ["rows", "task s", "concurrency", "wall s", "ideal s", "over ideal", "batch CPU s / row",
                   "peak tree MB", "verdict"])
    server = _Server(task_s)
    try:
        for rows, concurrency in cases:
            name = f"r{rows}-c{concurrency}"
            got = _run(manifests[rows], folder / f"out-{name}", folder / f"home-{name}", concurrency, server)
            if got["completed"] != rows or got["notebooks"] != rows or got["created"] != rows or got["noise"]:
                raise RuntimeError(f"batch {name} went wrong: {json.dumps({**got, 'noise': got['noise'][:5]})}")
            ideal = math.ceil(rows / concurrency) * task_s
            over = got["wall"] / ideal - 1
            ok = over <= GOAL_OVER_IDEAL and got["peak_mb"] < GOAL_TREE_MB
            table.rows.append([rows, task_s, concurrency, got["wall"], ideal, f"{over:+.0%}", got["cpu"] / rows,
                               round(got["peak_mb"]), verdict(ok) if (rows, concurrency) in goals else ""])
    finally:
        server.stop()
    table.notes.append(
        "Each run is `spark-nb batch` in a process of its own against `spark-nb serve --render-size 128` (tasks of the "
        f"stated length), every row an avatar with its own portrait and a {SPEECH_S:g} s speech clip; every row "
        "completed with its executed notebook, each task created once (the server's count), and nothing printed "
        "but the progress bar and the summary (no warning lines).")
    table.notes.append("Batch CPU is the batch process and its children (job kernels, ffmpeg checks); the server's "
                       "rendering, which a real service does elsewhere, is not in it. Peak memory is of the batch's "
                       "whole process tree, sampled every 0.2 s.")
    return table
