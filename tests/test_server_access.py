"""Who may use the local servers, and what slow or numerous connections do to them: over real sockets on loopback.

The embedded server answers only the process that started it (and the job kernels it hands its key to); another
local user is simulated by a process that has everything but the key. `spark-nb serve` and the embedded server
share one connection guard: deadlines for headers, bodies and stalled readers, and a bound on connections under
the file-descriptor limit that closes the longest-waiting connection rather than refusing a newcomer.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import avatar
from spark_nb.local import LocalServer, embedded_server
from spark_nb.local._connections import ConnectionLimits
from spark_nb.local._upload_store import UploadStore

from .conftest import TEST_KEY

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
AVATAR = "spark_avatar_picture_omni_v2"
MakeServer = Callable[..., LocalServer]

# Another user of this machine: knows the server's address and a task id (a process list shows `spark-nb status
# ID`), tries every route with and without a made-up key, and prints what each answered.
INTRUDER = r"""
import json, sys, httpx
url, task_id = sys.argv[1], sys.argv[2]
answers = {}
with httpx.Client(timeout=10, trust_env=False) as http:
    for key in (None, "local", "anything"):
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        answers[f"stats {key}"] = http.get(f"{url}/_spark_nb/stats", headers=auth).status_code
        answers[f"create {key}"] = http.post(f"{url}/model/v1/generation", headers=auth, json={
            "model": "spark_avatar_picture_omni_v2",
            "input": [{"params": {"image_url": "http://127.0.0.1:9/a.jpg", "audio_url": "http://127.0.0.1:9/a.wav"}}],
        }).status_code
        answers[f"poll {key}"] = http.get(f"{url}/model/v1/generation/task/{task_id}", headers=auth).status_code
        answers[f"upload {key}"] = http.post(f"{url}/api/v1/storage/files", headers=auth,
                                             files={"file": ("x.jpg", b"x" * 1000)}).status_code
    answers["result by task id"] = http.get(f"{url}/files/results/{task_id}.mp4").status_code
    answers["upload by guess"] = http.get(f"{url}/files/uploads/{task_id}.jpg").status_code
print(json.dumps(answers))
"""


def test_the_embedded_server_answers_only_its_owner(media: dict[str, Path]) -> None:
    """A process without the key gets 401 on every route (the stats too) and 404 for a result named by its task
    id; it creates, uploads and learns nothing; the owner's own calls keep working."""
    result = avatar.generate(media["portrait"], media["speech"], progress=False, backend="local")
    server = embedded_server(spark_nb.settings().home)
    before = server.stats()
    assert result.task_id not in result.url, "a result URL must not be derivable from the task id"
    intruder = subprocess.run([sys.executable, "-c", INTRUDER, server.url, result.task_id], capture_output=True,
                              text=True, timeout=60, env={k: v for k, v in os.environ.items()
                                                          if not k.startswith(("SPARK_NB_", "VTRIX_"))})
    assert intruder.returncode == 0, intruder.stderr
    answers = json.loads(intruder.stdout)
    refused = {route: status for route, status in answers.items() if not route.startswith(("result", "upload by"))}
    assert set(refused.values()) == {401}, answers
    assert answers["result by task id"] == 404 and answers["upload by guess"] == 404, answers
    assert server.stats() == before  # nothing created, uploaded, polled or downloaded
    # the owner: its client sends the key, and the same task still answers
    assert spark_nb.Task.from_id(result.task_id, backend="local").status().status == "completed"
    owner = httpx.get(f"{server.url}/_spark_nb/stats", headers={"Authorization": f"Bearer {server.token.reveal()}"},
                      timeout=10, trust_env=False)
    assert owner.status_code == 200 and owner.json()["created"] == before["created"]
    assert httpx.get(result.url, timeout=10, trust_env=False).content == result.path.read_bytes()  # a capability


# The owner's notebook: a video on the local backend, then the kernel stays up (its embedded server too).
OWNER = """
import sys, time
from spark_nb import avatar
avatar.generate(sys.argv[1], sys.argv[2], backend="local", progress=False, output_dir=sys.argv[3])
print("made", flush=True)
time.sleep(120)
"""
# Another user: copies the owner's journal, reads the result URLs the embedded server handed out, fetches them.
READER = r"""
import json, os, shutil, sqlite3, sys, tempfile, urllib.request
home, seen = sys.argv[1], {}
copy = tempfile.mkdtemp()
try:
    shutil.copyfile(f"{home}/journal.sqlite", f"{copy}/j.sqlite")
    try:
        shutil.copyfile(f"{home}/journal.sqlite-wal", f"{copy}/j.sqlite-wal")
    except FileNotFoundError:
        pass
    db = sqlite3.connect(f"{copy}/j.sqlite")
    urls = [url for (url,) in db.execute("select result_url from tasks where result_url is not null")]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    seen["downloaded"] = [len(opener.open(url, timeout=10).read()) for url in urls]
except OSError as exc:
    seen["refused"] = type(exc).__name__
print(json.dumps(seen))
"""


def _modes(*paths: Path) -> list[str]:
    return [oct(path.stat().st_mode & 0o777) for path in paths]


@pytest.mark.slow
def test_another_user_can_read_neither_the_journal_nor_the_videos_it_names(media: dict[str, Path]) -> None:
    """The owner's home in the platform's place under a 0755 home directory, as on Debian; the owner's kernel is
    still running. Its home is 0700 and the journal files 0600, so another user (uid nobody) cannot read the
    journal and never learns the embedded server's unguessable result URLs. Before: 0755 and 0644, and nobody
    downloaded the owner's video."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="spark_nb_alice_"))  # not under pytest's own 0700 folder: others may enter
    try:
        os.chmod(root, 0o755)
        home, project = root / ".local" / "share" / "spark-nb", root / "private-project"
        project.mkdir(mode=0o700)
        owner = subprocess.Popen([sys.executable, "-c", OWNER, str(media["portrait"]), str(media["speech"]),
                                  str(project)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "SPARK_NB_HOME": str(home)})
        try:
            assert owner.stdout.readline() == "made\n"  # type: ignore[union-attr]
            journal = [home / f"journal.sqlite{suffix}" for suffix in ("", "-wal", "-shm")]
            assert _modes(home, *journal) == ["0o700"] + ["0o600"] * 3
            assert _modes(root / ".local" / "share") == ["0o755"]  # folders around it are not spark_nb's
            if os.geteuid() != 0 or shutil.which("setpriv") is None or not Path("/usr/bin/python3").exists():
                pytest.skip("another user can only be simulated as root, with setpriv")
            nobody = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                                     "/usr/bin/python3", "-c", READER, str(home)], capture_output=True, text=True,
                                    timeout=60, env={"PATH": os.environ["PATH"], "HOME": "/tmp"}, cwd="/tmp")
            assert nobody.returncode == 0, nobody.stderr
            assert json.loads(nobody.stdout) == {"refused": "PermissionError"}, nobody.stdout
        finally:
            owner.kill()
            owner.wait(timeout=30)
            owner.stdout.close()  # type: ignore[union-attr]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_default_home_and_a_journal_made_by_an_earlier_version_are_made_private(tmp_path: Path) -> None:
    """The platform's default home (spark-nb's own) and the journal in it as an earlier version left them (0755,
    0644) are tightened to 0700 and 0600 by the next call; a folder someone chose keeps its mode, the journal in
    it is 0600 all the same."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_NB_", "XDG_"))}
    env["HOME"] = str(tmp_path / "user")
    default = tmp_path / "user" / ".local" / "share" / "spark-nb"
    chosen = tmp_path / "project-home"
    for home in (default, chosen):
        home.mkdir(parents=True)
        conn = sqlite3.connect(home / "journal.sqlite")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE earlier (x)")
        kept_open = sqlite3.connect(home / "journal.sqlite")  # the -wal and -shm stay while a connection lives
        kept_open.execute("SELECT * FROM earlier").fetchall()
        for path in (home, *home.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        run_env = env if home == default else {**env, "SPARK_NB_HOME": str(chosen)}
        proc = subprocess.run([sys.executable, "-c", "import spark_nb; spark_nb.history()"], env=run_env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        journal = ("journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "journal.sqlite.lock")
        expected = "0o700" if home == default else "0o755"
        assert _modes(home, *(home / name for name in journal)) == [expected] + ["0o600"] * 4, home
        kept_open.close()
        conn.close()


def test_serve_without_a_key_accepts_any_key_and_with_one_only_that_key(make_server: MakeServer) -> None:
    """`spark-nb serve`'s documented rule: on loopback without a key, any bearer key (and the stats need none);
    with a key, that key on every route, the stats included."""
    open_server, keyed = make_server(), make_server(api_key=TEST_KEY)
    assert httpx.get(f"{open_server.url}/_spark_nb/stats").status_code == 200
    assert httpx.get(f"{open_server.url}/model/v1/generation/task/x", headers=AUTH).status_code == 404
    assert httpx.get(f"{open_server.url}/model/v1/generation/task/x").status_code == 401
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.get(f"{keyed.url}/_spark_nb/stats", headers=headers).status_code == 401
    assert httpx.get(f"{keyed.url}/_spark_nb/stats", headers=AUTH).status_code == 200


def test_uploads_are_pruned_by_total_size_oldest_first(make_server: MakeServer) -> None:
    """Four 40 KB uploads under a 100 KB bound: the two oldest are gone, the two newest still served."""
    server = make_server(api_key=TEST_KEY, max_stored_upload_bytes=100_000)
    urls = []
    for index in range(4):
        answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH,
                            files={"file": (f"part{index}.bin", os.urandom(40_000))}, timeout=30)
        assert answer.status_code == 200, answer.text
        urls.append(answer.json()["url"])
    assert [httpx.get(url, timeout=10).status_code for url in urls] == [404, 404, 200, 200]
    assert sum(p.stat().st_size for p in (server.service.storage / "uploads").iterdir()) <= 100_000


def test_the_upload_store_keeps_what_waiting_tasks_need_and_drops_the_old(tmp_path: Path) -> None:
    """Pruning by age and size skips the uploads a task still waiting to render names, and never the newest."""
    now = time.time()
    folder = tmp_path / "uploads"
    folder.mkdir()
    ages = {"ancient-needed": 9 * 86400, "ancient": 9 * 86400, "old": 3000, "mid": 2000, "new": 10}
    for name, age in ages.items():
        (folder / name).write_bytes(b"x" * 100)
        os.utime(folder / name, (now - age, now - age))
    store = UploadStore(folder, max_age=86400, max_bytes=250, keep=lambda: {"ancient-needed"})
    store.prune()
    assert sorted(p.name for p in folder.iterdir()) == ["ancient-needed", "mid", "new"]


def _half_open(server_url: str, head: bytes) -> socket.socket:
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes sock within seconds (reading and dropping whatever it sends first)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionError:
            return True
    return False


def test_headers_and_bodies_have_deadlines(make_server: MakeServer) -> None:
    """Headers trickled a byte at a time, a body that stops half-way, and a connection that sends nothing are each
    closed by their deadline; a request sent at once is answered meanwhile."""
    limits = ConnectionLimits(header_timeout=1.0, body_timeout=1.5)
    server = make_server(api_key=TEST_KEY, connections=limits)
    silent = _half_open(server.url, b"")
    trickle = _half_open(server.url, b"GET /_spark_nb/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    body = _half_open(server.url, b"POST /model/v1/generation HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                                  + TEST_KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"model\"")
    stop = threading.Event()

    def keep_trickling() -> None:
        for _ in range(100):
            if stop.wait(0.1):
                return
            try:
                trickle.send(b"X")
            except OSError:
                return

    trickler = threading.Thread(target=keep_trickling)
    trickler.start()
    try:
        assert httpx.get(f"{server.url}/_spark_nb/stats", headers=AUTH, timeout=5).status_code == 200
        assert all(_closed_within(sock, 8) for sock in (silent, trickle, body))
    finally:
        stop.set()
        trickler.join()
        for sock in (silent, trickle, body):
            sock.close()
    assert server.connections()["timed_out"] >= 3 and server.stats()["created"] == 0


def test_a_reader_that_stalls_is_closed(make_server: MakeServer) -> None:
    """A download whose reader takes nothing (a tiny receive window) is closed once stalled past its deadline."""
    server = make_server(api_key=TEST_KEY, connections=ConnectionLimits(stall_timeout=1.0))
    answer = httpx.post(f"{server.url}/api/v1/storage/files", headers=AUTH,
                        files={"file": ("big.bin", os.urandom(16 * 1024 * 1024))}, timeout=60)
    path = "/" + answer.json()["url"].split("/", 3)[3]
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect((host, int(port)))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        deadline = time.monotonic() + 20
        while server.connections()["timed_out"] == 0:
            assert time.monotonic() < deadline, server.connections()
            time.sleep(0.1)
    finally:
        sock.close()
    assert server.connections()["timed_out"] == 1


def test_at_the_cap_the_longest_waiting_connection_makes_room(make_server: MakeServer) -> None:
    """60 half-open connections on a server allowing 20: the oldest are closed for newcomers, and a client that
    sends its requests at once is served (create, then poll) while the others are still held."""
    server = make_server(api_key=TEST_KEY, connections=ConnectionLimits(max_connections=20, header_timeout=60))
    held = [_half_open(server.url, b"POST /model/v1/generation HTTP/1.1\r\nHost: 127.0.0.1\r\n") for _ in range(60)]
    try:
        body = {"model": AVATAR, "input": [{"params": {"image_url": "http://127.0.0.1:9/a.jpg",
                                                       "audio_url": "http://127.0.0.1:9/a.wav"}}]}
        with httpx.Client(timeout=5, trust_env=False) as http:
            created = http.post(f"{server.url}/model/v1/generation", headers=AUTH, json=body)
            assert created.status_code == 200, created.text
            polled = http.get(f"{server.url}/model/v1/generation/task/{created.json()['id']}", headers=AUTH)
            assert polled.status_code == 200
        assert _closed_within(held[0], 2) and not _closed_within(held[-1], 0.5)
    finally:
        for sock in held:
            sock.close()
    counts = server.connections()
    assert counts["evicted"] >= 40 and counts["refused"] == 0 and counts["capacity"] == 20, counts


def test_what_a_peer_sends_writes_nothing_to_the_servers_terminal(make_server: MakeServer,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """Malformed requests and WebSocket upgrades get their answers, and not one line on the server's stderr (for
    the embedded server, that is the notebook cell that happens to run)."""
    server = make_server(api_key=TEST_KEY)
    capfd.readouterr()
    for head in (b"GARBAGE\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"):
        sock = _half_open(server.url, head)
        try:
            assert sock.recv(100).startswith(b"HTTP/1.1 4")
        finally:
            sock.close()
    assert httpx.get(f"{server.url}/_spark_nb/stats", headers=AUTH, timeout=5).status_code == 200
    assert capfd.readouterr().err == ""


class _Slowloris:
    """Holds `count` half-open connections to a server, opening a new one for each the server closes."""

    def __init__(self, url: str, count: int) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address, self.count = (host, int(port)), count
        self.held: list[socket.socket] = []
        self.opened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Slowloris:
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.opened < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        for sock in self.held:
            sock.close()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            alive = []
            for sock in self.held:
                try:
                    sock.send(b"a")
                    alive.append(sock)
                except OSError:
                    sock.close()
            self.held = alive
            while len(self.held) < self.count and not self._stop.is_set():
                try:
                    sock = socket.create_connection(self.address, timeout=2)
                    sock.sendall(b"POST /model/v1/generation HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Wait: ")
                except OSError:
                    break
                self.held.append(sock)
                self.opened += 1


@pytest.fixture
def serve_under_fd_limit(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`spark-nb serve` (no key, loopback) started under `prlimit --nofile=256:256` (macOS's default in a terminal);
    yields its URL and its log (its stderr)."""
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(["prlimit", "--nofile=256:256", "--", sys.executable, "-m", "spark_nb", "serve",
                                 "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True,
                                start_new_session=True)
        try:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert "local server on" in line, log_path.read_text()
            yield line.split(" on ", 1)[1].split()[0], log_path
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.slow
def test_slowloris_under_a_lowered_fd_limit_leaves_service_to_others(serve_under_fd_limit: tuple[str, Path],
                                                                     media: dict[str, Path]) -> None:
    """700 half-open connections held (and reopened when closed) against a server allowed 256 descriptors: an
    upload, a create and polls each answer within seconds, and the server writes nothing to its terminal. (Before
    the guard, the attack took every descriptor and nothing else was answered; before its own accept loop, asyncio
    accepted 128 at once, ran out of descriptors and printed a traceback each time.)"""
    url, log = serve_under_fd_limit
    answered: list[float] = []

    def timed(call: Callable[[], httpx.Response]) -> dict[str, Any]:
        started = time.monotonic()
        response = call()
        answered.append(time.monotonic() - started)
        assert response.status_code == 200, response.text
        return response.json()

    with _Slowloris(url, 700) as attack, httpx.Client(timeout=15, trust_env=False, headers=AUTH) as http:
        assert attack.opened >= 700
        image = timed(lambda: http.post(f"{url}/api/v1/storage/files",
                                        files={"file": ("p.jpg", media["portrait"].read_bytes())}))["url"]
        audio = timed(lambda: http.post(f"{url}/api/v1/storage/files",
                                        files={"file": ("s.wav", media["speech"].read_bytes())}))["url"]
        task = timed(lambda: http.post(f"{url}/model/v1/generation", json={
            "model": AVATAR, "input": [{"params": {"image_url": image, "audio_url": audio}}]}))
        for _ in range(3):
            state = timed(lambda: http.get(f"{url}/model/v1/generation/task/{task['id']}"))
            assert state["id"] == task["id"]
            time.sleep(0.5)
        reopened = attack.opened - 700
    assert max(answered) < 10, answered
    assert reopened > 0, "the server never closed an attacker's connection: the cap was not reached"
    assert log.read_text() == ""


def _job_notebook(path: Path) -> Path:
    """A job notebook that asks the shared server for its row's task itself, and checks its own command line."""
    cells = [
        ('model = "avatar"\ninputs = {}\nname = "job"\nout_dir = "."\ntask_id = ""\ntimeout = 1800', ["parameters"]),
        ("import os, sys\nfrom spark_nb import Task\n"
         "state = Task.from_id(task_id, model=model).status()\n"
         "assert 'spark_nb.local' not in sys.modules, 'the kernel started a server of its own'\n"
         "key = os.environ['SPARK_NB_LOCAL_SERVER_KEY']\n"
         "assert key.encode() not in open('/proc/self/cmdline', 'rb').read()\n"
         "print('status:', state.status)", []),
    ]
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {"tags": tags},
                           "outputs": [], "source": source} for i, (source, tags) in enumerate(cells)],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))
    return path


@pytest.mark.slow
def test_a_batch_gives_its_kernels_the_embedded_servers_key_and_writes_it_nowhere(tmp_path: Path,
                                                                                  media: dict[str, Path]) -> None:
    """On the local backend a batch's job kernels talk to the batch's own embedded server (none of their own) with
    its key from their environment; the key is in no command line and no file of the batch or the home."""
    from spark_nb.batch import run_batch

    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"name,model,image,audio\ntalks,avatar,{media['portrait']},{media['speech']}\n")
    notebook = _job_notebook(tmp_path / "job.ipynb")
    outcomes = run_batch(manifest, tmp_path / "out", concurrency=1, progress=False, notebook=notebook,
                         timeout=120)
    assert [(o.status, o.error) for o in outcomes] == [("completed", None)]
    executed = json.loads((tmp_path / "out" / "talks" / "talks.ipynb").read_text())
    assert "status: completed" in json.dumps([cell.get("outputs") for cell in executed["cells"]])
    key = embedded_server(spark_nb.settings().home).token.reveal().encode()
    assert "SPARK_NB_LOCAL_SERVER_KEY" not in os.environ, "the batch put the server's key in its own environment"
    for folder in (tmp_path / "out", spark_nb.settings().home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert key not in path.read_bytes(), f"the server's key was written to {path}"


@pytest.mark.slow
def test_a_churning_peer_never_closes_a_clients_fresh_connection(make_server: MakeServer) -> None:
    """Two processes open connections as fast as they can against a server allowing 20, each sending part of its
    headers and closing its oldest for each new one: a client whose request follows its connection by 50 ms (a
    new connection each time) is answered every time. Before, the longest-waiting connection was closed for each
    newcomer, and a burst accepted in one turn closed the client's before its request came (2 of 21 failed under
    `ulimit -n 512`)."""
    from .peers import ChurnFlood, late_request

    server = make_server(api_key=TEST_KEY, connections=ConnectionLimits(max_connections=20, header_timeout=60))
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    request = f"GET /_spark_nb/stats HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TEST_KEY}\r\n\r\n"
    with ChurnFlood((host, int(port)), seconds=8) as flood:
        time.sleep(1)
        answers = [late_request((host, int(port)), request.encode()) for _ in range(30)]
    assert flood.opened > 2 * 256, flood.opened  # the attack was real: twice the owner's descriptors, or more
    assert server.connections()["evicted"] > 500, server.connections()
    assert set(answers) == {"HTTP/1.1 200 OK"}, answers


FLOODED_OWNER = r"""
import os, sys, time
from spark_nb import avatar
from spark_nb.local import embedded_server
from pathlib import Path
server = embedded_server(Path(os.environ["SPARK_NB_HOME"]))
print(server.url, flush=True)
sys.stdin.readline()  # the flood has started
outcomes = []
for _ in range(12):
    try:
        avatar.submit(sys.argv[1], sys.argv[2], reuse=False)
        outcomes.append("ok")
    except Exception as exc:
        outcomes.append(type(exc).__name__)
    time.sleep(0.3)
print(" ".join(outcomes), flush=True)
"""


@pytest.mark.slow
def test_a_flood_on_the_embedded_servers_port_writes_nothing_in_its_owners_process(tmp_path: Path,
                                                                                   media: dict[str, Path]) -> None:
    """The owner's program on the local backend under `ulimit -n 256`, and two processes that know no key churning
    half-open connections to its embedded server's port: every submit() succeeds and the owner's stderr (in
    Jupyter, the cell that runs) stays empty. Before, asyncio's accept loop ran out of descriptors and printed
    2,905 lines of tracebacks in 20 s."""
    from .peers import ChurnFlood

    env = {**os.environ, "SPARK_NB_BACKEND": "local", "SPARK_NB_HOME": str(tmp_path / "home")}
    owner = subprocess.Popen(["prlimit", "--nofile=256:256", "--", sys.executable, "-c", FLOODED_OWNER,
                              str(media["portrait"]), str(media["speech"])], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        url = owner.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:"), owner.communicate(timeout=30)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        with ChurnFlood((host, int(port)), hold=300, seconds=10) as flood:
            time.sleep(1)
            owner.stdin.write("go\n")  # type: ignore[union-attr]
            owner.stdin.flush()  # type: ignore[union-attr]
            out, err = owner.communicate(timeout=120)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.communicate(timeout=10)
    assert flood.opened > 2 * 256, flood.opened  # the attack was real: twice the owner's descriptors, or more
    assert out.split() == ["ok"] * 12, out
    assert err == "", err[:3000]
