"""Child processes: every one runs under the address-space cap and dies with the thread that started it, whether
util-linux's setpriv/prlimit set that up (the vfork path) or the preexec_fn fallback does; a missing command is a
FileNotFoundError, as from Popen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from spark_nb import _procs

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
PATHS = ["setpriv", "preexec_fn"]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "setpriv":
        if _procs._bounding_prefix() is None:
            pytest.skip("setpriv/prlimit (util-linux) are not installed")
    else:
        monkeypatch.setattr(_procs, "_bounding_prefix", lambda: None)
    return request.param


def test_a_child_runs_under_the_memory_cap(path: str) -> None:
    """The child's own view of its address-space limit (ulimit -v, in KiB) is CHILD_MEMORY_BYTES."""
    shown = _procs.run(["sh", "-c", "ulimit -v"], timeout=10)
    assert shown.returncode == 0
    assert int(shown.stdout) * 1024 == _procs.CHILD_MEMORY_BYTES


def test_a_child_that_asks_for_more_memory_fails(path: str) -> None:
    """Allocating beyond the cap fails in the child, however the child was started."""
    grab = f"bytearray({_procs.CHILD_MEMORY_BYTES + (1 << 30)})"
    proc = _procs.run([sys.executable, "-c", grab], timeout=60)
    assert proc.returncode != 0 and b"MemoryError" in proc.stderr


@pytest.mark.parametrize("which", PATHS)
def test_a_child_dies_with_its_killed_parent(which: str) -> None:
    """SIGKILL of the parent ends the child within seconds (no orphan left running)."""
    fallback = "_procs._bounding_prefix = lambda: None\n" if which == "preexec_fn" else ""
    code = ("import time\n"
            "from spark_nb import _procs\n"
            f"{fallback}"
            "p = _procs.popen(['sleep', '60'])\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while psutil.Process(child).name() != "sleep":  # setpriv and prlimit exec into it
            assert time.monotonic() < deadline, "the child never became the command"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_missing_command_is_file_not_found(path: str) -> None:
    """As Popen itself says it, not as a wrapper's exit status."""
    with pytest.raises(FileNotFoundError):
        _procs.popen(["/nonexistent/ffmpeg", "-version"])


def test_the_childs_pid_is_the_command(path: str) -> None:
    """Popen.pid is the command itself (the wrappers exec into it), so killing it kills the command."""
    proc = _procs.popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(proc.pid).name() != "sleep":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.kill()
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
