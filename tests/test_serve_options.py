"""`spark-nb serve`'s key file and --host, as a user gives them: every shape of file, every spelling of an address.

The key file is read as every configuration file is (a regular file, small, never blocking) and its key checked as
every key is; what `--host` binds is what was checked, every address a name resolves to included.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .test_cli import CLI, cli_env

KEY = "sk-serve-key-0123456789"


def _key_files(folder: Path) -> dict[str, str]:
    """Key files no one should be able to start a server with, by what is wrong with them."""
    os.mkfifo(folder / "fifo")
    (folder / "latin1").write_bytes(b"caf\xe9-key\n")
    (folder / "big").write_bytes(b"k" * (50 * 1024 * 1024))
    (folder / "two-lines").write_text("first-key\nsecond\x1b[2Jline\n")
    (folder / "controls").write_text("key\x00with\x07controls")
    (folder / "empty").write_text(" \n")
    return {"a FIFO no one writes": str(folder / "fifo"), "/dev/zero": "/dev/zero", "not UTF-8": str(folder / "latin1"),
            "50 MB": str(folder / "big"), "two lines and an escape": str(folder / "two-lines"),
            "NUL and BEL inside": str(folder / "controls"), "blank": str(folder / "empty"),
            "a directory": str(folder), "missing": str(folder / "missing")}


def test_a_key_file_of_any_shape_is_one_clear_line_within_seconds(tmp_path: Path) -> None:
    """A FIFO (it hung forever), /dev/zero (a MemoryError called a bug), a non-UTF-8 file (a bare codec error), 50
    MB (taken as a key), two lines, controls, blank, a directory, a missing file: each exits 1 within seconds with
    one `spark-nb: error:` naming the file and saying to write the key alone on one line; no traceback, nothing of
    the file's content shown, nothing listening."""
    folder = tmp_path / "keys"
    folder.mkdir()
    for what, path in _key_files(folder).items():
        started = time.monotonic()
        proc = subprocess.Popen([*CLI, "serve", "--port", "0", "--api-key-file", path], env=cli_env(), cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
            pytest.fail(f"{what}: spark-nb serve still running after 30 s")
        assert proc.returncode == 1 and out == "", (what, out, err)
        assert err.startswith("spark-nb: error: ") and "Traceback" not in err, (what, err)
        assert path in err and "one line" in err, (what, err)
        assert "second" not in err and "caf" not in err and "\x1b" not in err, (what, err)
        assert time.monotonic() - started < 20, what


def test_a_key_file_with_the_key_and_its_newline_starts_the_server(tmp_path: Path) -> None:
    """The ordinary file (the key and a line end, as `echo KEY > file` writes it) still works, and the exports it
    prints read the key from that file rather than show it."""
    key_file = tmp_path / "server.key"
    key_file.write_text(f"  {KEY}\n")
    proc = subprocess.Popen([*CLI, "serve", "--port", "0", "--api-key-file", str(key_file)], env=cli_env(),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("spark-nb local server on http://127.0.0.1:")  # type: ignore[union-attr]
        exports = proc.stdout.readline()  # type: ignore[union-attr]
        assert f'VTRIX_API_KEY="$(cat {key_file})"' in exports and KEY not in exports, exports
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _serve_line(host: str, tmp_path: Path, *extra: str) -> tuple[str, str]:
    """The first line `spark-nb serve --host host` prints (then it is stopped), and its stderr."""
    proc = subprocess.Popen([*CLI, "serve", "--host", host, "--port", "0", *extra], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    return line, err


@pytest.mark.parametrize("host, bound", [("localhost.", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"),
                                         ("LOCALHOST", "127.0.0.1"), ("[::1]", "[::1]")])
def test_a_loopback_host_however_spelled_binds_the_address_it_was_checked_as(host: str, bound: str,
                                                                             tmp_path: Path) -> None:
    """`--host localhost.`, `127.0.0.1.`, `LOCALHOST` and `[::1]` start without a key on the loopback address they
    name. Before, `localhost.` and `127.0.0.1.` went raw to the resolver, and `[::1]` passed the check and failed
    to bind with a hint about the port."""
    if bound == "[::1]":
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
                probe.bind(("::1", 0))
        except OSError:
            pytest.skip("no ::1 on this machine")
    line, err = _serve_line(host, tmp_path)
    assert line.startswith(f"spark-nb local server on http://{bound}:") and "network" not in line, (line, err)


def test_a_name_that_resolves_beyond_loopback_needs_a_key(tmp_path: Path) -> None:
    """This machine's own host name resolves to an address of its network interface: every address a name
    resolves to is checked, so it needs a key like 0.0.0.0 does."""
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)}
    except OSError:
        pytest.skip(f"{name} does not resolve here")
    if all(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip(f"{name} resolves to loopback only here")
    line, err = _serve_line(name, tmp_path)
    assert line == "" and f"--host {name} makes the server reachable from the network" in err, (line, err)
