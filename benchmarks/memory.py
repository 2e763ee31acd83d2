"""Memory: peak resident memory of `spark-nb demo` and of a 60 s imitation, process tree included."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spark_nb import samples
from spark_nb._ffmpeg import ffmpeg_exe

from .report import Table, verdict

GOAL_MB = 1024.0
SAMPLE_EVERY_S = 0.05


def _children(pid: int) -> list[int]:
    """The children of every thread of pid (a child belongs to the thread that started it)."""
    found = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of pid and all its descendants (ffmpeg encoders included), in MB."""
    total, stack, seen = 0, [pid], set()
    while stack and len(seen) < 10_000:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _rss_kb(current)
        stack.extend(_children(current))
    return total / 1024


def peak_mb(cmd: list[str], timeout: float = 600) -> tuple[float, float]:
    """Run cmd; (peak RSS of its process tree in MB, sampled every 50 ms; wall seconds)."""
    started = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("VTRIX_API_KEY", "SPARK_NB_BACKEND")}
    env["SPARK_NB_HOME"] = tempfile.mkdtemp(prefix="spark_nb_bench_home_")  # a journal of its own: it really renders
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = 0.0
    while proc.poll() is None:
        if time.perf_counter() - started > timeout:
            proc.kill()
            raise TimeoutError(f"{cmd} ran over {timeout}s")
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(SAMPLE_EVERY_S)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode(errors='replace')[-500:]}")  # type: ignore[union-attr]
    return peak, time.perf_counter() - started


def long_driving_video(folder: Path, loops: int) -> Path:
    """The sample driving video repeated (stream copy, so it stays small): 5 loops is 60 s."""
    out = folder / f"driving_x{loops}.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-stream_loop", str(loops - 1), "-i", str(samples.DRIVING_VIDEO),
                    "-c", "copy", str(out)], check=True, timeout=120)
    return out


def run(quick: bool = False) -> Table:
    """Peak memory of the demo and of a long imitation on the local backend."""
    folder = Path(tempfile.mkdtemp(prefix="spark_nb_bench_mem_"))
    lengths = (1,) if quick else (1, 5)  # 12 s and 60 s: the same peak shows memory flat with length
    imitate = ("from spark_nb import imitator, samples; import sys; "
               "imitator.generate(samples.PORTRAIT, sys.argv[1], backend='local', progress=False, "
               "output_dir=sys.argv[2], timeout=900)")
    notebook = Path(__file__).resolve().parent.parent / "notebooks" / "01_quickstart.ipynb"
    jobs = {
        "spark-nb demo": [sys.executable, "-m", "spark_nb", "demo", "--out", str(folder / "demo")],
        "01_quickstart notebook (papermill + kernel)": [
            sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(folder), str(notebook),
            str(folder / "quickstart.ipynb")],
    }
    for loops in lengths:
        jobs[f"{loops * 12} s imitation"] = [sys.executable, "-c", imitate, str(long_driving_video(folder, loops)),
                                             str(folder / f"imitation{loops}")]
    table = Table("Memory", f"peak resident memory under {GOAL_MB:.0f} MB (Binder gives 1–2 GB)",
                  ["job", "peak RSS MB", "wall s", "goal MB", "verdict"])
    for name, cmd in jobs.items():
        peak, wall = peak_mb(cmd)
        table.rows.append([name, peak, wall, GOAL_MB, verdict(peak < GOAL_MB)])
    table.notes.append("RSS of the whole process tree (Python, the embedded server's render threads, ffmpeg "
                       f"encoders), sampled every {SAMPLE_EVERY_S * 1000:.0f} ms.")
    return table
