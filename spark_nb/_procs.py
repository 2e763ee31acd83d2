"""Child processes (the bundled ffmpeg), started in one place: bounded in memory and time, never outliving us.

On Linux each child gets PR_SET_PDEATHSIG (it is killed when the thread that started it ends, which includes
this process dying, even by SIGKILL) and an address-space limit, so one hostile file cannot take the
machine's memory. Every wait has a timeout, and a timed-out child is killed, not abandoned.

Both are set by util-linux's `setpriv` and `prlimit` in front of the command, so Python can start the child
with vfork: a preexec_fn forces a full fork(), which from a batch's large process held the GIL for over 10 ms
a child (page tables copied) while every other thread waited. Without those tools the preexec_fn does it.
"""

from __future__ import annotations

import errno
import functools
import os
import resource
import shutil
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


@functools.lru_cache(maxsize=1)
def _bounding_prefix() -> tuple[str, ...] | None:
    """setpriv and prlimit, as a prefix that bounds the command after it, when both are here and work (tried once)."""
    setpriv, prlimit = shutil.which("setpriv"), shutil.which("prlimit")
    if _linux_prctl() is None or setpriv is None or prlimit is None:
        return None
    prefix = (setpriv, "--pdeathsig", "KILL", prlimit, f"--as={CHILD_MEMORY_BYTES}", "--")
    try:  # an old util-linux lacks --pdeathsig; the inner prlimit reports the limit it runs under
        shown = subprocess.run([*prefix, prlimit, "--as", "--output=SOFT", "--noheadings"], capture_output=True,
                               stdin=subprocess.DEVNULL, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return prefix if shown.returncode == 0 and shown.stdout.strip() == str(CHILD_MEMORY_BYTES) else None


def popen(cmd: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start cmd as a bounded child (see the module docstring); options as for subprocess.Popen."""
    options.setdefault("stdin", subprocess.DEVNULL)
    if (prefix := _bounding_prefix()) is not None:
        if shutil.which(cmd[0]) is None:  # as Popen would say itself, not a prlimit exit status
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), cmd[0])
        return subprocess.Popen([*prefix, *cmd], **options)
    if (prctl := _linux_prctl()) is not None:
        options["preexec_fn"] = functools.partial(_in_child, prctl)
    return subprocess.Popen(list(cmd), **options)


def run(cmd: Sequence[str], *, timeout: float, input: bytes | None = None, **options: Any
        ) -> subprocess.CompletedProcess[bytes]:
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
