"""Child processes (the bundled ffmpeg), started in one place: bounded in memory and time, never outliving us.

On Linux each child gets PR_SET_PDEATHSIG (it is killed when the thread that started it ends, which includes
this process dying, even by SIGKILL) and an address-space limit, so one hostile file cannot take the
machine's memory. Every wait has a timeout, and a timed-out child is killed, not abandoned.
"""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

# Generous for ffmpeg at our sizes (an x264 encode of 512 px takes ~300 MB of address space), far below
# what a decompression bomb or a timestamp trick asks for.
CHILD_MEMORY_BYTES = 3 * 1024**3
_PR_SET_PDEATHSIG, _SIGKILL = 1, 9

@functools.lru_cache(maxsize=1)
def _linux_prctl() -> Any:
    """libc's prctl on Linux (resolved once, before any fork: the child may only call it), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        import ctypes.util

        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):  # an unusual libc: children are still timed and killed
        return None


def _in_child(prctl: Any = None) -> None:
    """Runs in the child between fork and exec: die with the parent thread, cap the address space."""
    prctl(_PR_SET_PDEATHSIG, _SIGKILL)
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))


def popen(cmd: Sequence[str], **options: Any) -> subprocess.Popen:
    """Start cmd as a bounded child (see the module docstring); options as for subprocess.Popen."""
    options.setdefault("stdin", subprocess.DEVNULL)
    if (prctl := _linux_prctl()) is not None:
        options["preexec_fn"] = functools.partial(_in_child, prctl)
    return subprocess.Popen(list(cmd), **options)


def run(cmd: Sequence[str], *, timeout: float, input: bytes | None = None, **options: Any
        ) -> subprocess.CompletedProcess:
    """Run cmd to its end, capturing stdout and stderr (bytes); subprocess.TimeoutExpired once it is killed."""
    options.setdefault("stdout", subprocess.PIPE)
    options.setdefault("stderr", subprocess.PIPE)
    if input is not None:
        options["stdin"] = subprocess.PIPE
    with popen(cmd, **options) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:  # a timeout or Ctrl-C: the child must not go on alone
            proc.kill()
            proc.wait()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (ours or another user's)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True
