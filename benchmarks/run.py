"""Run every benchmark against the local server, print the tables and write docs/benchmarks.md.

    python -m benchmarks [--quick] [--only polling,engine,...] [--out docs/benchmarks.md]

Each figure is a ratio or difference of things measured side by side in the same run (these machines
are shared and noisy), with medians of several runs. --quick is a smoke run for CI: one small case
each, nothing asserted about speed, and docs/benchmarks.md left alone.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

SUITES = ["polling", "engine", "media", "startup", "batch", "memory"]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def machine() -> str:
    """One line about where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the suites, print and write the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small cases, docs not written")
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma list from {','.join(SUITES)}")
    parser.add_argument("--out", type=Path, default=DOCS, help="markdown file to write (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    os.environ.pop("VTRIX_API_KEY", None)  # everything here runs on the local server, never the real service
    # a journal of the run's own: nothing is reused from (or left in) the user's, and every run measures afresh
    os.environ["SPARK_NB_HOME"] = tempfile.mkdtemp(prefix="spark_nb_bench_home_")
    started = time.perf_counter()
    sections = []
    for name in chosen:
        suite_started = time.perf_counter()
        table = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        table.notes.append(f"({name} took {time.perf_counter() - suite_started:.0f} s)")
        print(table.text(), flush=True)
        sections.append(table.markdown())
    total = time.perf_counter() - started
    print(f"all benchmarks: {total:.0f} s")
    if not args.quick:
        header = (f"# Benchmarks\n\nWritten by `python -m benchmarks` on {datetime.date.today().isoformat()}.\n\n"
                  f"Machine: {machine()}.\n\nWhole run: {total / 60:.1f} min. Every goal is checked against figures "
                  "measured side by side in the same run; medians where there are several runs.\n\n")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(header + "\n".join(sections))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
