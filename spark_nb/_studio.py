"""`spark-nb studio`: the studio notebook served by Voila on loopback behind a random token, until Ctrl-C or SIGTERM.

The token is made here and goes to Voila (`_studio_voila`) in its environment only, never on a command line: the
URL printed (and opened through a private redirect file, as `jupyter lab` does, so no browser's command line holds
it either) is the one way in. Voila's kernels talk to it over IPC sockets in its private folder, not loopback TCP.

The port is bound and listening here, before Voila starts, and the socket handed to Voila as an inherited
descriptor: no other process can take the port while Voila imports (seconds), and the URL is printed only once
Voila says, on a pipe of its own, that it serves that socket (a connection that succeeds proves nothing).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _procs
from .errors import SparkError

SOCKET_ENV = "SPARK_NB_STUDIO_SOCKET"  # read by _studio_voila: the listening socket's inherited descriptor
READY_ENV = "SPARK_NB_STUDIO_READY"  # read by _studio_voila: where it says it serves

HOST = "127.0.0.1"
MAX_KERNELS = 4  # studio pages open at once (a kernel each)
IDLE_KERNEL_S = 900  # a page left without closing it (a lost tab) loses its kernel after 15 idle minutes
MEDIA = r".*\.(jpe?g|png|gif|webp|bmp|svg|wav|mp3|m4a|aac|ogg|oga|opus|flac|weba|mp4|m4v|mov|webm|mkv)"
TEMPLATES = Path(__file__).resolve().parent / "templates"
PRIVATE_FOLDER = 0o700
PRIVATE_FILES = 0o600
UMASK = 0o077  # Voila's and its kernels': every file and folder the studio writes is the user's alone


def run_studio(port: int, folder: str | Path, *, open_browser: bool) -> int:
    """Serve the studio on 127.0.0.1:port from folder; print its URL with the token and open it; stop on Ctrl-C."""
    import importlib.util

    if importlib.util.find_spec("voila") is None:
        raise SparkError("the studio needs Voila, which is not installed: pip install 'spark-nb[studio]'")
    with _listening(port) as listening:  # this process's copy closes once Voila holds its own
        notebook = _prepare(Path(folder).expanduser().resolve())
        token = secrets.token_urlsafe(32)
        voila, ready = _start_voila(notebook, port, token, listening)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    private = Path(tempfile.mkdtemp(prefix="spark-nb-studio-"))  # 0700: the browser's redirect file
    url = f"http://{HOST}:{port}/?token={token}"
    try:
        if not _wait_until_serving(voila, ready):
            print(f"spark-nb: error: Voila stopped (exit code {voila.returncode}) before serving the studio",
                  file=sys.stderr)
            return voila.returncode or 1
        print(f"spark-nb studio on {url} (Ctrl-C to stop); its videos go to {notebook.parent}", flush=True)
        if open_browser:
            _open_in_browser(url, private)
        voila.wait()
        return voila.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _stop(voila)
        shutil.rmtree(private, ignore_errors=True)


def _listening(port: int) -> socket.socket:
    """The studio's socket on HOST:port, bound and listening (so no one else can bind it), to hand to Voila; a busy
    port is one clear line. SO_REUSEADDR, as servers bind: a port whose last connections are in TIME_WAIT (a
    studio stopped a moment ago) is free, one with a listener is not."""
    listening = socket.socket()
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((HOST, port))
        listening.listen(128)
    except OSError as exc:
        listening.close()
        raise SparkError(f"cannot serve the studio on {HOST}:{port}: {exc.strerror or exc}; pick another port "
                         f"with --port, or stop what uses it") from exc
    return listening


def _prepare(folder: Path) -> Path:
    """folder (made 0700 if new: the videos and uploaded portraits are the user's alone, as the spark-nb home is)
    with a fresh copy of the studio notebook in it (0600); its path."""
    try:
        folder.mkdir(mode=PRIVATE_FOLDER, parents=True, exist_ok=True)
        notebook = Path(shutil.copyfile(TEMPLATES / "studio.ipynb", folder / "studio.ipynb"))
        notebook.chmod(PRIVATE_FILES)
        return notebook
    except OSError as exc:
        raise SparkError(f"cannot prepare the studio folder {folder}: {exc.strerror or exc}; pick another with "
                         f"--dir") from exc


def _start_voila(notebook: Path, port: int, token: str,
                 listening: socket.socket) -> tuple[subprocess.Popen[bytes], int]:
    """The Voila server in its own session (Ctrl-C reaches this process only, which then stops Voila once), dying
    with this process (SIGTERM, so it still shuts its kernels down), serving the socket listening (inherited);
    with the reading end of the pipe on which it says it serves."""
    cmd = [sys.executable, "-m", "spark_nb._studio_voila", str(notebook), "--no-browser", f"--Voila.ip={HOST}",
           f"--Voila.port={port}", "--Voila.port_retries=0", f"--Voila.root_dir={notebook.parent}",
           "--Voila.log_level=ERROR", "--template=spark-studio", f"--VoilaConfiguration.file_allowlist={MEDIA}",
           f"--CappedKernelManager.max_kernels={MAX_KERNELS}", "--KernelManager.transport=ipc",
           "--PasswordIdentityProvider.allow_password_change=False",
           f"--MappingKernelManager.cull_idle_timeout={IDLE_KERNEL_S}", "--MappingKernelManager.cull_interval=60"]
    ready, says_ready = os.pipe()
    env = {**os.environ, "JUPYTER_TOKEN": token, SOCKET_ENV: str(listening.fileno()), READY_ENV: str(says_ready)}
    # the studio's Voila template (no CDN requests) lives in the package, found through the Jupyter data path
    env["JUPYTER_PATH"] = os.pathsep.join([str(TEMPLATES), *filter(None, [env.get("JUPYTER_PATH")])])
    prctl = _procs._linux_prctl()

    def die_with_us() -> None:
        prctl(_procs._PR_SET_PDEATHSIG, signal.SIGTERM)

    try:
        voila = subprocess.Popen(cmd, env=env, cwd=notebook.parent, stdin=subprocess.DEVNULL, start_new_session=True,
                                 pass_fds=(listening.fileno(), says_ready),
                                 preexec_fn=die_with_us if prctl is not None else None, umask=UMASK)
    except BaseException:
        os.close(ready)
        raise
    finally:
        os.close(says_ready)  # Voila's copy is the only one: its exit ends the pipe
    return voila, ready


def _wait_until_serving(voila: subprocess.Popen[bytes], ready: int) -> bool:
    """True once Voila says (on the pipe ready) that it serves the socket it was handed; False when it exited
    first. Reads ready and closes it."""
    import select

    try:
        while voila.poll() is None:
            readable, _, _ = select.select([ready], [], [], 0.5)
            if readable:
                return os.read(ready, 1) == b"1"
        return False
    finally:
        os.close(ready)


def _open_in_browser(url: str, private: Path) -> None:
    """Open url through a redirect file only this user can read, so the token is in no browser's command line."""
    import html
    import webbrowser

    page = private / "open.html"
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
                 f'<p><a href="{html.escape(url)}">Open the spark-nb studio</a></p>')
    webbrowser.open(page.as_uri())


def _stop(voila: subprocess.Popen[bytes]) -> None:
    """Stop Voila (it stops its kernels on SIGTERM), killing it after 20 s."""
    if voila.poll() is None:
        voila.terminate()
        try:
            voila.wait(timeout=20)
        except subprocess.TimeoutExpired:
            voila.kill()
            voila.wait()
