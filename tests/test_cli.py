"""The spark-nb command, run as a real subprocess against local servers on loopback."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from spark_nb import avatar
from spark_nb._ffmpeg import read_header, try_decode
from spark_nb.local import LocalServer

from .conftest import TEST_KEY

CLI = [sys.executable, "-m", "spark_nb"]
TIMEOUT_S = 120
AVATAR = "spark_avatar_picture_omni_v2"
MakeServer = Callable[..., LocalServer]


_NO_KEY_HOME = tempfile.mkdtemp(prefix="spark_nb_cli_home_")  # no vtrix CLI config file in it


def cli_env(**values: str) -> dict[str, str]:
    """The current environment without any VTRIX_* or SPARK_NB_* variable (but the test's home), plus values.

    The machine's own vtrix CLI key stores are out of reach: an empty HOME, no XDG_CONFIG_HOME, no keychain.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "SPARK_NB_")) or k == "SPARK_NB_HOME"}
    env.pop("XDG_CONFIG_HOME", None)
    env.update(HOME=_NO_KEY_HOME, VTRIX_NO_KEYCHAIN="1")
    env.update(values)
    return env


def cloud_env(server: LocalServer, key: str = TEST_KEY) -> dict[str, str]:
    """Environment for the cloud code path pointed at server, uploading through its storage endpoint."""
    return cli_env(SPARK_NB_BACKEND="cloud", VTRIX_GENERATION_URL=server.url, VTRIX_API_KEY=key,
                   SPARK_NB_UPLOAD_URL=f"{server.url}/api/v1/storage/files")


def run(args: list[str], env: dict[str, str], cwd: Path, command: list[str] = CLI) -> subprocess.CompletedProcess:
    """Run the command with args, capturing text output, bounded by a timeout."""
    return subprocess.run([*command, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, check=False)


def printed_result(proc: subprocess.CompletedProcess, cwd: Path) -> dict[str, Any]:
    """The task id, video path (resolved against cwd) and cost that a successful generation printed."""
    assert proc.returncode == 0, proc.stderr
    task = re.search(r"^task:\s+([0-9a-f]{32})$", proc.stdout, re.MULTILINE)
    video = re.search(r"^video:\s+(.+)$", proc.stdout, re.MULTILINE)
    cost = re.search(r"^cost:\s+\$(\S+)$", proc.stdout, re.MULTILINE)
    assert task and video and cost, proc.stdout
    return {"task": task.group(1), "video": cwd / video.group(1).strip(), "cost": cost.group(1)}


def assert_video_in(result: dict[str, Any], folder: Path) -> None:
    """The printed video exists in folder, is named after the task, and decodes with picture and sound."""
    path: Path = result["video"]
    assert path.is_file()
    assert path.resolve().parent == folder.resolve()
    assert path.name == f"{result['task']}.mp4"
    info = try_decode(path, 0.2).facts
    assert info.has_video and info.has_audio


def test_avatar_on_the_local_backend(media: dict[str, Path], tmp_path: Path) -> None:
    """`avatar` on the local backend exits 0 and prints the task id, a video under --out and the cost."""
    proc = run(["avatar", "--image", str(media["portrait"]), "--audio", str(media["speech"]), "--out", "videos"],
               cli_env(SPARK_NB_BACKEND="local"), tmp_path)
    result = printed_result(proc, tmp_path)
    assert_video_in(result, tmp_path / "videos")
    assert result["cost"] == "0.00"
    assert re.search(rf"task {result['task'][:12]}: 100%.*\| \d\d:\d\d, completed", proc.stderr)  # the progress bar
    assert try_decode(result["video"], 0.2).facts.duration == pytest.approx(read_header(media["speech"]).duration,
                                                                                abs=0.05)


def test_imitate_on_the_local_backend(media: dict[str, Path], tmp_path: Path) -> None:
    """`imitate` on the local backend exits 0 and prints the task id, a video under --out and the cost."""
    out = tmp_path / "imitations"
    proc = run(["imitate", "--image", str(media["portrait"]), "--driving-video", str(media["driving"]),
                "--out", str(out), "--no-progress"], cli_env(SPARK_NB_BACKEND="local"), tmp_path)
    result = printed_result(proc, tmp_path)
    assert_video_in(result, out)
    assert result["cost"] == "0.00"
    assert f"task {result['task'][:12]}" not in proc.stderr  # --no-progress: no bar


def test_cloud_avatar_then_status_and_wait(server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """Cloud path: avatar works, `status` reports the task, `status --wait --out` downloads it; the key never shows."""
    env = cloud_env(server)
    made = run(["avatar", "--image", str(media["portrait"]), "--audio", str(media["speech"]), "--out", "first"],
               env, tmp_path)
    result = printed_result(made, tmp_path)
    assert_video_in(result, tmp_path / "first")
    task_id = result["task"]
    assert server.stats()["created"] == 1 and server.stats()["uploads"] == 2

    status = run(["status", task_id], env, tmp_path)
    assert status.returncode == 0, status.stderr
    assert re.search(rf"^task:\s+{task_id}$", status.stdout, re.MULTILINE)
    assert re.search(rf"^model:\s+{AVATAR}$", status.stdout, re.MULTILINE)
    assert re.search(r"^status:\s+completed$", status.stdout, re.MULTILINE)

    waited = run(["status", task_id, "--wait", "--out", "again"], env, tmp_path)
    again = printed_result(waited, tmp_path)
    assert again["task"] == task_id
    assert_video_in(again, tmp_path / "again")
    assert again["video"].read_bytes() == result["video"].read_bytes()

    counts = server.stats()
    assert (counts["created"], counts["downloads"]) == (1, 2)  # status never creates a task
    for proc in (made, status, waited):
        assert TEST_KEY not in proc.stdout and TEST_KEY not in proc.stderr
        assert TEST_KEY[-12:] not in proc.stdout + proc.stderr


def test_status_of_a_running_task(make_server: MakeServer, media: dict[str, Path], tmp_path: Path) -> None:
    """`status` of a task that is still running says so, with its progress, and exits 0."""
    server = make_server(api_key=TEST_KEY, latency=60)
    task = avatar.submit(media["portrait"], media["speech"], backend="cloud", base_url=server.url, api_key=TEST_KEY,
                         uploader=f"{server.url}/api/v1/storage/files")
    proc = run(["status", task.id, "--model", AVATAR], cloud_env(server), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^status:\s+(pending|in_progress) \d+%$", proc.stdout, re.MULTILINE), proc.stdout
    assert server.stats()["created"] == 1


def test_missing_image_fails_before_any_task(server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """A missing image exits non-zero naming the file on stderr, and nothing is uploaded or created."""
    proc = run(["avatar", "--image", "no_such_face.jpg", "--audio", str(media["speech"])], cloud_env(server), tmp_path)
    assert proc.returncode != 0
    assert "spark-nb: error:" in proc.stderr and "no_such_face.jpg" in proc.stderr
    assert "task:" not in proc.stdout
    counts = server.stats()
    assert (counts["created"], counts["uploads"]) == (0, 0)
    assert not (tmp_path / "spark_outputs").exists()


def test_wrong_key_fails_with_401(server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """A wrong API key exits non-zero with the 401 message on stderr and creates no task."""
    wrong = "sk-wrong-key-0000WRONGKEY"
    proc = run(["avatar", "--image", str(media["portrait"]), "--audio", str(media["speech"])],
               cloud_env(server, key=wrong), tmp_path)
    assert proc.returncode != 0
    assert "401" in proc.stderr and "missing or invalid API key" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert server.stats()["created"] == 0


def test_status_of_unknown_task_fails_with_404(server: LocalServer, tmp_path: Path) -> None:
    """`status` of an id the server never issued exits non-zero with the 404 message on stderr."""
    proc = run(["status", "f" * 32], cloud_env(server), tmp_path)
    assert proc.returncode != 0
    assert "404" in proc.stderr and "task not found" in proc.stderr


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_serve_runs_a_usable_server(media: dict[str, Path], tmp_path: Path) -> None:
    """`serve` runs a server on loopback, prints the exports that point spark-nb at it, generates a video through
    the Python API with them, and stops on terminate."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--latency", "0"], env=cli_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate(timeout=10)
            assert time.monotonic() < deadline, "the server did not answer within 30 s"
            try:
                if httpx.get(f"{url}/_spark_nb/stats", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        banner, exports = proc.stdout.readline(), proc.stdout.readline()  # type: ignore[union-attr]
        assert exports.startswith("to use it from another shell: export "), exports
        told = dict(word.split("=", 1) for word in shlex.split(exports.split(" export ", 1)[1]))
        assert told == {"VTRIX_GENERATION_URL": url, "VTRIX_API_KEY": "anything",
                        "SPARK_NB_UPLOAD_URL": f"{url}/api/v1/storage/files"}
        result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud",
                                 base_url=told["VTRIX_GENERATION_URL"], api_key=told["VTRIX_API_KEY"],
                                 uploader=told["SPARK_NB_UPLOAD_URL"], output_dir=tmp_path / "served")
        assert result.status == "completed"
        assert result.path.is_file() and result.path.stat().st_size == result.size
        assert result.url.startswith(f"{url}/files/results/")
        counts = httpx.get(f"{url}/_spark_nb/stats", timeout=5, trust_env=False).json()
        assert (counts["created"], counts["uploads"], counts["downloads"]) == (1, 2, 1)
    finally:
        proc.terminate()
        try:
            stdout, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
            raise AssertionError("spark-nb serve did not exit on terminate") from None
    assert proc.returncode is not None
    assert banner.startswith(f"spark-nb local server on {url} ") and not stdout
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/_spark_nb/stats", timeout=2, trust_env=False)


def test_installed_entry_point(tmp_path: Path) -> None:
    """The installed spark-nb script runs main(): a bad --faults spec exits 1 with the item named on stderr."""
    exe = shutil.which("spark-nb")
    assert exe is not None, "the spark-nb console script is not installed"
    proc = run(["serve", "--port", str(free_port()), "--faults", "poll:oops:1"], cli_env(), tmp_path, command=[exe])
    assert proc.returncode == 1
    assert "spark-nb: error: fault 'poll:oops:1'" in proc.stderr
    assert "kind must be one of" in proc.stderr


def test_serve_reports_cost_per_second_of_video(serve_process: Any, media: dict[str, Path]) -> None:
    """`spark-nb serve --cost-per-second 0.25` answers usage.cost = 0.25 × the video's seconds, as a string."""
    server = serve_process("--cost-per-second", "0.25")
    result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud", base_url=server.url,
                             api_key=TEST_KEY, uploader=f"{server.url}/api/v1/storage/files")
    assert result.cost == Decimal(f"{0.25 * (result.duration or 0):.2f}") and (result.cost or 0) > 0


def test_version(tmp_path: Path) -> None:
    """`spark-nb --version` prints the package's version and exits 0."""
    from spark_nb import __version__

    proc = run(["--version"], cli_env(), tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"spark-nb {__version__}"


def subcommands() -> tuple[Any, dict[str, Any]]:
    """The spark-nb parser's subparsers action and its commands by name (the top-level parser as "spark-nb")."""
    import argparse

    from spark_nb._cli import _parser

    parser = _parser()
    [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return subparsers, {"spark-nb": parser, **subparsers.choices}


def test_every_option_of_every_subcommand_has_help() -> None:
    """Walking the parser: each option and argument of the command and of each subcommand says what it is."""
    import argparse

    subparsers, commands = subcommands()
    assert {"avatar", "imitate", "status", "history", "demo", "batch", "serve"} <= set(commands)
    missing = [f"{name} {action.option_strings or action.dest}"
               for name, command in commands.items() for action in command._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
               and not (action.help or "").strip()]
    assert missing == []
    assert [a.help for a in subparsers._choices_actions if not (a.help or "").strip()] == []


def test_imitate_asks_for_a_character_image() -> None:
    """imitate's --image is the character who performs the motion, not a portrait."""
    commands = subcommands()[1]
    helps = {name: next(a.help for a in commands[name]._actions if "--image" in a.option_strings)
             for name in ("avatar", "imitate")}
    assert "character image" in helps["imitate"] and "portrait" not in helps["imitate"]
    assert "portrait" in helps["avatar"]


def test_serve_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """A taken port: exit 1, exactly one line naming the port and what to do, no traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(["serve", "--port", str(port)], cli_env(), tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"spark-nb: error: cannot listen on 127.0.0.1:{port}: port {port} is in use; "
                           f"pass --port N (0 picks a free one) or stop the other server\n")


def test_studio_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    """The studio on a taken port: exit 1, one line naming the port and what to do; no Voila left running."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(["studio", "--no-browser", "--port", str(port), "--dir", str(tmp_path / "studio")], cli_env(),
                   tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and str(port) in lines[0] and "--port" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "my-laptop.example"])
def test_serve_on_another_host_needs_a_key(host: str, tmp_path: Path) -> None:
    """A --host other than loopback is refused without a server key, in one line saying it would face the network.

    Nothing is bound: the check comes before the socket.
    """
    proc = run(["serve", "--host", host, "--port", "0"], cli_env(), tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"--host {host} makes the server reachable from the network" in proc.stderr
    assert "--api-key-file" in proc.stderr and "SPARK_NB_SERVER_API_KEY" in proc.stderr


def test_which_hosts_are_loopback() -> None:
    """What `serve --host` binds is what it checked: 127.0.0.0/8, ::1 and localhost (brackets, a final dot and case
    normalised once) bind a loopback address; 0.0.0.0, ::, "", other addresses and names that do not resolve to
    loopback only are not loopback. Before, `localhost.` and `127.0.0.1.` passed the check and went to DNS raw."""
    from spark_nb._cli_serve import _bind_address

    assert [_bind_address(h) for h in ("127.0.0.1", "127.5.0.1", "127.0.0.1.", " [::1] ", "::1")] == [
        ("127.0.0.1", True), ("127.5.0.1", True), ("127.0.0.1", True), ("::1", True), ("::1", True)]
    assert _bind_address("LOCALHOST.") == _bind_address("localhost") == ("127.0.0.1", True)
    for host in ("0.0.0.0", "::", "", "10.0.0.1", "localhost.evil.invalid"):
        assert _bind_address(host)[1] is False, host


def test_a_name_is_loopback_only_when_every_address_it_resolves_to_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name whose DNS answer holds a loopback address and another (the resolver's answers given here: tests
    reach no DNS) is not loopback; one answering loopback addresses only is, and binds its IPv4 one."""
    from spark_nb import _cli_serve

    answers = {"mixed.example": ["127.0.0.1", "192.0.2.7"], "home.example": ["::1", "127.0.0.1"]}

    def resolve(name: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0))
                for a in answers[name]]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert _cli_serve._bind_address("mixed.example") == ("127.0.0.1", False)
    assert _cli_serve._bind_address("Home.Example.") == ("127.0.0.1", True)


def test_serve_on_loopback_ipv6_with_a_key_file_runs(tmp_path: Path) -> None:
    """A loopback host other than the default (::1) with a key file starts, and says nothing about the network."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no ::1 on this machine")
    key_file = tmp_path / "server.key"
    key_file.write_text("sk-server-key-for-this-test\n", encoding="utf-8")
    proc = subprocess.Popen([*CLI, "serve", "--host", "::1", "--port", "0", "--api-key-file", str(key_file)],
                            env=cli_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("spark-nb local server on http://[::1]:") and "network" not in line
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


class StudioRun:
    """`spark-nb studio --no-browser` on a loopback port (local backend, a fresh home), its output in a log file.

    url is the one it printed (with its token); stop() sends SIGINT as Ctrl-C does and checks that Voila and
    every kernel went with it.
    """

    def __init__(self, tmp_path: Path, port: int, env: dict[str, str]) -> None:
        import psutil

        self.port, self.folder, self.log = port, tmp_path / "studio", tmp_path / f"studio-{port}-{time.time_ns()}.log"
        self.base = f"http://127.0.0.1:{port}"
        cli = Path(sys.executable).with_name("spark-nb")
        command = [str(cli)] if cli.exists() else [*CLI]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([*command, "studio", "--no-browser", "--port", str(port), "--dir",
                                          str(self.folder)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=tmp_path)
        deadline = time.monotonic() + 120
        while (match := re.search(r"spark-nb studio on (\S+) ", self.log.read_text())) is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"the studio did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        self.url = match.group(1)
        self.token = self.url.partition("?token=")[2]
        [self.voila] = psutil.Process(self.proc.pid).children()

    def kernels(self) -> list[Any]:
        """The kernels Voila runs now (one per open studio page)."""
        return self.voila.children(recursive=True)

    def stop(self) -> str:
        """Ctrl-C; exit 0 within 40 s, Voila and its kernels gone; the log's text."""
        import psutil

        tree = [self.voila, *self.kernels()]
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        _, alive = psutil.wait_procs(tree, timeout=20)
        text = self.log.read_text()
        assert code == 0, text[-2000:]
        assert not alive, f"left running after Ctrl-C: {[p.cmdline() for p in alive]}"
        assert "Traceback" not in text and "VTRIX_API_KEY=" not in text, text[-2000:]
        return text


def studio_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a studio a test drives: no key or backend of the developer's, fresh homes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VTRIX_", "SPARK_NB_", "JUPYTER_"))}
    env.update(HOME=str(tmp_path / "home"), SPARK_NB_HOME=str(tmp_path / "spark-home"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    return env


def _studio_or_skip() -> None:
    import importlib.util

    if importlib.util.find_spec("voila") is None:
        pytest.skip("Voila is not installed (pip install 'spark-nb[studio]')")


@pytest.mark.slow
def test_the_studio_answers_only_its_token_on_loopback_names_and_caps_its_kernels(tmp_path: Path) -> None:
    """The printed URL carries a token that no process's command line shows. Without it (or with a wrong one) the
    page and the videos send to the login page, under another Host name everything is 403, and none of that
    starts a kernel. With it: a cookie, the URL without the token, the videos, and at most 4 pages (kernels)."""
    import psutil

    _studio_or_skip()
    studio = StudioRun(tmp_path, free_port(), studio_env(tmp_path))
    try:
        assert len(studio.token) >= 40 and studio.url == f"{studio.base}/?token={studio.token}"
        shown = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                 if studio.token in " ".join(p.info["cmdline"] or [])]
        assert shown == [], f"the token is in a process list: {shown}"
        (studio.folder / "spark_outputs").mkdir()
        (studio.folder / "spark_outputs" / "made.mp4").write_bytes(b"a video of the user's")
        video = "/voila/files/spark_outputs/made.mp4"
        with httpx.Client(timeout=60, trust_env=False) as stranger:
            for path in ("/", "/?token=wrong", video):
                answer = stranger.get(f"{studio.base}{path}")
                assert answer.status_code == 302 and "/login" in answer.headers["location"], (path, answer)
            assert stranger.post(f"{studio.base}/voila/api/shutdown/x").status_code == 403  # the API: no login page
            rebound = {"Host": f"rebind.example:{studio.port}"}
            for path in (f"/?token={studio.token}", video, "/voila/static/voila.js", "/login"):
                assert stranger.get(f"{studio.base}{path}", headers=rebound).status_code == 403, path
        assert studio.kernels() == []
        with httpx.Client(timeout=90, trust_env=False) as owner:
            entered = owner.get(studio.url)
            assert entered.status_code == 302 and entered.headers["location"] == "/"  # the token leaves the URL
            assert owner.get(f"{studio.base}{video}").content == b"a video of the user's"
            pages = [owner.get(f"{studio.base}/").status_code for _ in range(5)]
        assert pages == [200, 200, 200, 200, 503], pages
        assert len(studio.kernels()) == 4
    finally:
        text = studio.stop()
    assert studio.token not in text.replace(studio.url, "")  # the log names it only in the URL printed
    assert "without encryption" not in text and "WARNING" not in text, text


@pytest.mark.slow
def test_the_studio_restarts_right_after_a_stop(tmp_path: Path) -> None:
    """Stopped while a browser keeps a connection open (the server closes it: TIME_WAIT on the studio's port), the
    studio starts again on the same port at once (before, 'Address already in use' for a minute)."""
    _studio_or_skip()
    port = free_port()
    first = StudioRun(tmp_path, port, studio_env(tmp_path))
    try:
        client = httpx.Client(timeout=30, trust_env=False)
        assert client.get(f"{first.base}/login").status_code == 200  # kept alive, so the server closes it
    finally:
        first.stop()
    client.close()
    second = StudioRun(tmp_path, port, studio_env(tmp_path))
    try:
        assert httpx.get(f"{second.base}/login", timeout=30, trust_env=False).status_code == 200
    finally:
        second.stop()


def faceless(path: Path) -> Path:
    """A landscape without a face (flat colour bands)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (480, 360), (90, 140, 200))
    ImageDraw.Draw(img).rectangle((0, 220, 480, 360), fill=(60, 120, 50))
    img.save(path, quality=90)
    return path


def test_no_reuse_and_strict_are_options_listed_in_help() -> None:
    """Every message says "pass reuse=False": the CLI has it as --no-reuse on demo, avatar, imitate and batch, and
    strict as --strict on avatar, imitate and batch, each listed in the command's --help."""
    commands = subcommands()[1]
    for command, options in (("demo", ["--no-reuse"]), ("avatar", ["--no-reuse", "--strict"]),
                             ("imitate", ["--no-reuse", "--strict"]), ("batch", ["--no-reuse", "--strict"])):
        shown = commands[command].format_help()
        for option in options:
            assert option in shown, (command, option)


def test_strict_refuses_a_faceless_portrait_before_anything_is_sent(server: LocalServer, media: dict[str, Path],
                                                                    tmp_path: Path) -> None:
    """`avatar --strict` with a landscape: exit 1, one error line naming the file and strict mode; no upload, no
    task."""
    landscape = faceless(tmp_path / "landscape.jpg")
    proc = run(["avatar", "--image", str(landscape), "--audio", str(media["speech"]), "--strict"], cloud_env(server),
               tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("spark-nb: error: no face found in the portrait image")
    assert "landscape.jpg" in proc.stderr and "strict" in proc.stderr and "Traceback" not in proc.stderr
    assert "leave out --strict" in proc.stderr and "strict=False" not in proc.stderr  # the CLI's words for it
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)


@pytest.mark.slow
def test_the_cli_says_its_own_switches_in_notices_and_warnings(server: LocalServer, media: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """The same long clip twice: the first run's warning says the clip was trimmed and that --no-trim sends it whole,
    the second's notice that the task was reused and --no-reuse makes a new take; never the Python caller's
    trim_audio=False or reuse=False."""
    args = ["avatar", "--image", str(media["portrait"]), "--audio", str(media["long_speech"]), "--no-progress"]
    first = run(args, cloud_env(server), tmp_path)
    assert first.returncode == 0, first.stderr
    assert "trimmed to" in first.stderr and "pass --no-trim to send it whole" in first.stderr, first.stderr
    again = run(args, cloud_env(server), tmp_path)
    assert again.returncode == 0 and "reusing task" in again.stderr, again.stderr
    assert "pass --no-reuse for a new take" in again.stderr and server.stats()["created"] == 1
    assert "=False" not in first.stderr + again.stderr


def test_a_warning_is_one_spark_nb_line_and_python_still_gets_a_real_warning(capsys: pytest.CaptureFixture) -> None:
    """In the CLI a warning is `spark_nb: ...` on one line (no source line, no UserWarning), written through tqdm so
    a bar stays whole; Python code still gets a SparkWarning it can filter, and the display is restored after."""
    import warnings

    from spark_nb._cli import _one_line_warnings
    from spark_nb.errors import SparkWarning, warn

    before = warnings.showwarning
    with _one_line_warnings(), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = warnings.showwarning  # catch_warnings restores it: keep the CLI's display inside
        warn("no face found in the portrait image (x.jpg)\n\x1b[2Jcleared")
        warnings.warn("an old parameter", DeprecationWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.splitlines() == ["spark_nb: no face found in the portrait image (x.jpg) cleared",
                                "spark_nb: DeprecationWarning: an old parameter"]
    assert warnings.showwarning is before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn("advice")
    assert [w.category for w in caught] == [SparkWarning]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=SparkWarning)
        warn("filtered away")  # raises nothing: a program can filter spark_nb's warnings by category


@pytest.mark.slow
def test_the_clis_warnings_are_one_line_each(server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """A whole `spark-nb avatar` run with a faceless portrait: its stderr has the advice as one `spark_nb:` line
    and no Python source line (before: `UserWarning: ...` then `sys.exit(main())`)."""
    landscape = faceless(tmp_path / "landscape.jpg")
    proc = run(["avatar", "--image", str(landscape), "--audio", str(media["speech"]), "--no-progress"],
               cloud_env(server), tmp_path)
    assert proc.returncode == 0, proc.stderr
    advice = [line for line in proc.stderr.splitlines() if "no face found" in line]
    assert len(advice) == 1 and advice[0].startswith("spark_nb: no face found in the portrait image (landscape.jpg)")
    assert "UserWarning" not in proc.stderr and "sys.exit" not in proc.stderr and "warn(" not in proc.stderr


def test_status_of_a_task_made_at_another_service_says_where_to_ask(make_server: MakeServer, media: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """`status ID` in a shell set for the local backend, of a task the journal has from another service, says where
    and when it was made and how to ask there (before: "unknown …, check the task id", the local folder named
    twice)."""
    server = make_server(api_key=TEST_KEY)
    result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud",
                             base_url=server.url, api_key=TEST_KEY, uploader=f"{server.url}/api/v1/storage/files")
    proc = run(["status", result.task_id[:12]], cli_env(), tmp_path)
    assert proc.returncode == 1
    assert re.search(rf"journal has it as made \d{{4}}-\d\d-\d\d [\d:]+ at {re.escape(server.url)}", proc.stderr)
    assert f"set VTRIX_GENERATION_URL={server.url} and its key" in proc.stderr
    assert proc.stderr.count("tasks live in") == 1 and TEST_KEY not in proc.stderr


def test_status_takes_a_short_id_and_prints_the_video_and_cost_it_knows(make_server: MakeServer,
                                                                        media: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    """`status` with the 12 characters the progress bar shows finds the task in the journal, and prints the video's
    path and the cost the journal knows, without --wait."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.002, answer_style="usage,strings")  # cost "0.00408"
    result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="cloud",
                             base_url=server.url, api_key=TEST_KEY, uploader=f"{server.url}/api/v1/storage/files")
    assert result.cost is not None and result.cost < Decimal("0.01") and result.cost.as_tuple().exponent < -2
    proc = run(["status", result.task_id[:12]], cloud_env(server), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^task:\s+{result.task_id}$", proc.stdout, re.MULTILINE)
    assert re.search(r"^status:\s+completed$", proc.stdout, re.MULTILINE)
    assert re.search(rf"^video:\s+{re.escape(str(result.path.resolve()))}$", proc.stdout, re.MULTILINE)
    assert re.search(rf"^cost:\s+\${re.escape(str(result.cost))}$", proc.stdout, re.MULTILINE)  # $0.00408, not $0.00
    assert server.stats()["created"] == 1


@pytest.mark.slow
def test_demo_says_when_it_reused_a_video_and_no_reuse_renders_again(tmp_path: Path) -> None:
    """The second `spark-nb demo` reuses both videos and says so once per video, with the task and when (before:
    "5.2 s of video in 0.1 s"; then each reuse said twice); --no-reuse renders them again."""
    env = cli_env(SPARK_NB_HOME=str(tmp_path / "home"))
    first = run(["demo", "--out", "demo"], env, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("s of video in") == 2 and "reused" not in first.stdout
    again = run(["demo", "--out", "demo"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    reused = re.findall(r"reusing task ([0-9a-f]{32}) from (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) .*--no-reuse", again.stderr)
    assert len(reused) == 2 and "s of video in" not in again.stdout
    assert again.stdout.count("(reused)") == 2 and "reusing" not in again.stdout  # said once per video, not twice
    fresh = run(["demo", "--out", "demo", "--no-reuse"], env, tmp_path)
    assert fresh.returncode == 0 and fresh.stdout.count("s of video in") == 2 and "reused" not in fresh.stdout
    assert not {task for task, _ in reused} & set(re.findall(r"([0-9a-f]{32})\.mp4", fresh.stdout))


@pytest.mark.slow
def test_batch_strict_and_no_reuse_reach_the_rows(server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """`batch --strict`: the faceless row fails with the no-face refusal before its upload, the other completes;
    `batch --no-reuse` into another folder makes a new take of every row (each a new task), none reused."""
    import csv

    landscape = faceless(tmp_path / "landscape.jpg")
    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "model", "image", "audio"])
        writer.writerow(["face", "avatar", str(media["portrait"]), str(media["speech"])])
        writer.writerow(["landscape", "avatar", str(landscape), str(media["speech"])])
    env = cloud_env(server)
    strict = run(["batch", str(manifest), "--out", "strict", "--strict", "--concurrency", "2"], env, tmp_path)
    assert strict.returncode == 1, strict.stderr
    with (tmp_path / "strict" / "results.csv").open(newline="") as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    assert rows["face"]["status"] == "completed"
    assert rows["landscape"]["status"] == "failed" and "no face found" in rows["landscape"]["error"]
    assert server.stats()["created"] == 1 and server.stats()["uploads"] == 2  # the faceless row sent nothing

    again = run(["batch", str(manifest), "--out", "again", "--no-reuse", "--concurrency", "2"], env, tmp_path)
    assert again.returncode == 0, again.stderr
    with (tmp_path / "again" / "results.csv").open(newline="") as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    assert {row["status"] for row in rows.values()} == {"completed"} and server.stats()["created"] == 3
