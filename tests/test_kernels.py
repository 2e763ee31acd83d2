"""spark_nb.batch._kernels: warm job kernels, closed from any thread without taking the process down."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Threads start kernels (as a batch's report threads warm theirs up) while the batch ends and closes every kernel:
# the closing thread must never close a client's zmq sockets while the starting thread waits on them (libzmq
# aborts the whole process: "Fatal Python error: Aborted" in Context.term), and a starting thread whose kernel was
# killed must notice within seconds rather than wait out START_TIMEOUT_S.
RACE = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from spark_nb.batch._kernels import WarmKernels

    folder = Path(sys.argv[1])
    for delay in [0.4 + 0.1 * i for i in range(20)]:  # across a kernel's start on a 2-core machine
        kernels = WarmKernels()
        ends = []
        def start():
            try:
                kernels._start(folder)
            except Exception as exc:
                ends.append(type(exc).__name__)
            else:
                ends.append("started")
        threads = [threading.Thread(target=start) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(delay)
        began = time.monotonic()
        kernels.close()
        closed_in = time.monotonic() - began
        for thread in threads:
            thread.join(timeout=30)
        stuck = [t for t in threads if t.is_alive()]
        print(f"delay {delay}: close {closed_in:.1f} s, ends {sorted(ends)}, stuck {len(stuck)}", flush=True)
        if stuck:
            sys.exit(3)
    print("survived", flush=True)
""")


@pytest.mark.slow
def test_closing_kernels_while_others_start_never_aborts_and_never_waits_out_the_start(tmp_path: Path) -> None:
    script = tmp_path / "race.py"
    script.write_text(RACE)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stdout, done.stderr[-3000:])
    for line in done.stdout.splitlines()[:-1]:
        close_seconds = float(line.split("close ")[1].split(" s")[0])
        assert close_seconds < 10, line  # CLOSE_TIMEOUT_S per kernel still starting, not START_TIMEOUT_S
