"""Start-up: `import spark_nb` above a bare interpreter, both timed side by side in fresh processes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from .report import Table, verdict

GOAL_MS = 150.0
HEAVY = ("moviepy", "cv2", "starlette", "uvicorn", "papermill", "ipywidgets", "numpy")
LIST_HEAVY = f"import sys, spark_nb; print(', '.join(m for m in {HEAVY!r} if m in sys.modules) or 'none')"


def _spawn_ms(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - started) * 1000


def run(quick: bool = False) -> Table:
    """Median wall time of `python -c 'import spark_nb'` minus that of `python -c pass`, interleaved."""
    runs = 3 if quick else 15
    bare, loaded = [], []
    for _ in range(runs):  # interleaved, so background load hits both alike
        bare.append(_spawn_ms("pass"))
        loaded.append(_spawn_ms("import spark_nb"))
    extra = statistics.median(loaded) - statistics.median(bare)
    heavy = subprocess.run([sys.executable, "-c", LIST_HEAVY], check=True, capture_output=True, text=True).stdout

    table = Table("Start-up", f"`import spark_nb` costs at most {GOAL_MS:.0f} ms above a bare interpreter",
                  ["bare interpreter ms", "with import spark_nb ms", "import cost ms", "goal ms", "verdict"])
    table.rows.append([statistics.median(bare), statistics.median(loaded), extra, GOAL_MS, verdict(extra <= GOAL_MS)])
    table.notes.append(f"Medians of {runs} fresh processes each. Heavy modules loaded by the import: {heavy.strip()}.")
    return table
