"""The studio's listening socket against other local processes: one that races for its port, one that holds
thousands of half-open connections, one that writes escape sequences and tracebacks to its terminal.

The guarded HTTP server is tested in this process too (a tornado app on loopback, real sockets), and under a
descriptor limit in a child process; the studio itself runs as `spark-nb studio` does, Voila and all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .test_cli import CLI, free_port, studio_env

pytest.importorskip("voila")
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler

from spark_nb._studio_http import GuardedHTTPServer, StudioLimits


class _Hello(RequestHandler):
    def get(self) -> None:
        self.write("hello")

    def post(self) -> None:
        self.write(f"got {len(self.request.body)}")


@contextlib.contextmanager
def guarded(limits: StudioLimits) -> Iterator[tuple[tuple[str, int], GuardedHTTPServer]]:
    """A GuardedHTTPServer with a tiny app on 127.0.0.1, its event loop in a thread; its address and itself."""
    ready, held = threading.Event(), {}

    def serve() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen(128)
        listening.setblocking(False)
        server = GuardedHTTPServer(Application([("/", _Hello)]), limits=limits)
        server.add_sockets([listening])
        held.update(server=server, address=listening.getsockname(), loop=IOLoop.current())
        ready.set()
        IOLoop.current().start()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield held["address"], held["server"]
    finally:
        held["loop"].add_callback(held["loop"].stop)
        thread.join(10)


def _half_open(address: tuple[str, int], head: bytes) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    if head:
        sock.sendall(head)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> bool:
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


def test_the_studios_server_has_header_and_body_deadlines() -> None:
    """A connection that sends nothing, headers trickled a byte at a time and a body that stops half-way are each
    closed by their deadline (tornado's own waits an hour for headers and forever for a body); a request sent at
    once is answered meanwhile."""
    with guarded(StudioLimits(header_timeout=1.0, body_timeout=1.5)) as (address, _):
        silent = _half_open(address, b"")
        trickle = _half_open(address, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        body = _half_open(address, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nabc")
        stop = threading.Event()

        def keep_trickling() -> None:
            while not stop.wait(0.1):
                with contextlib.suppress(OSError):
                    trickle.send(b"X")

        trickler = threading.Thread(target=keep_trickling)
        trickler.start()
        try:
            assert httpx.get(f"http://{address[0]}:{address[1]}/", timeout=5).text == "hello"
            assert all(_closed_within(sock, 8) for sock in (silent, trickle, body))
        finally:
            stop.set()
            trickler.join()
            for sock in (silent, trickle, body):
                sock.close()


def test_at_the_studios_cap_the_longest_waiting_connection_makes_room() -> None:
    """60 half-open connections against a cap of 20: the oldest are closed for newcomers (not the newcomers), and
    a client that sends its request at once is answered while the others are held."""
    with guarded(StudioLimits(max_connections=20)) as (address, server):
        held = [_half_open(address, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a") for _ in range(60)]
        try:
            assert httpx.get(f"http://{address[0]}:{address[1]}/", timeout=10).text == "hello"
            assert _closed_within(held[0], 5) and not _closed_within(held[-1], 0.5)
            assert server.closed_for["evicted"] >= 40 and server.closed_for["refused"] == 0
        finally:
            for sock in held:
                sock.close()


def test_a_body_larger_than_the_studio_takes_is_refused_before_it_is_read() -> None:
    """A request announcing 100 MB, or a chunked one past 64 KiB, gets 400 and its connection closed without its
    body being kept (tornado's own default kept 100 MB of a body per connection before any handler, or the token
    check, saw it: 34 such connections took Voila to 3.4 GB); a body of 60 KB (the studio's login form is well
    under 1 KB) is read and answered."""
    with guarded(StudioLimits()) as (address, _):
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 104857600\r\n\r\n" + b"x" * 4096)
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
            assert _closed_within(sock, 5)
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            with contextlib.suppress(OSError):
                for _ in range(5):
                    sock.sendall(b"8000\r\n" + b"x" * 0x8000 + b"\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
        answer = httpx.post(f"http://{address[0]}:{address[1]}/", content=b"x" * 60_000, timeout=10)
        assert answer.text == "got 60000"


OUT_OF_DESCRIPTORS = r"""
import asyncio, resource, socket, sys, threading, time
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler
from spark_nb._studio_http import GuardedHTTPServer, StudioLimits
from spark_nb._studio_log import one_inert_line_per_record
import logging

class Hello(RequestHandler):
    def get(self):
        self.write("hello")

one_inert_line_per_record(logging.getLogger("app"))
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
listening = socket.socket(); listening.bind(("127.0.0.1", 0)); listening.listen(128); listening.setblocking(False)
server = GuardedHTTPServer(Application([("/", Hello)]), limits=StudioLimits())
server.add_sockets([listening])
hog = []
try:
    while True:  # another part of the process takes every descriptor left
        hog.append(open("/dev/null"))
except OSError:
    pass
print(listening.getsockname()[1], flush=True)
loop = IOLoop.current()

def release():
    for handle in hog[:100]:
        handle.close()
    print("released", flush=True)

loop.call_later(float(sys.argv[1]), release)
loop.call_later(float(sys.argv[1]) + 8, loop.stop)
started = time.process_time()
loop.start()
print(f"cpu {time.process_time() - started:.2f}", flush=True)
"""


def test_running_out_of_descriptors_pauses_accepting_with_one_line_not_a_flood(tmp_path: Path) -> None:
    """Every descriptor of the studio's process taken (its accept then fails with EMFILE): 40 connections wait
    rather than spin the event loop, the terminal gets at most one line (tornado's loop logged a traceback on every
    turn: 248 MB in 75 s), and once descriptors are free again a request is answered."""
    proc = subprocess.Popen([sys.executable, "-c", OUT_OF_DESCRIPTORS, "3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        waiting = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(40)]
        assert proc.stdout.readline() == "released\n"  # type: ignore[union-attr]
        answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    for sock in waiting:
        sock.close()
    assert answer.text == "hello"
    assert len(err.splitlines()) <= 1 and "Traceback" not in err, err[:2000]
    assert err == "" or err.startswith("spark-nb studio: error: out of file descriptors")
    assert float(out.split("cpu ")[1]) < 4, out  # a spinning accept loop would burn the whole 11 s


FAILING_HANDLER = r"""
import logging, socket, sys
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler
from spark_nb._studio_http import GuardedHTTPServer, StudioLimits
from spark_nb._studio_log import log_failure, one_inert_line_per_record
from spark_nb._studio_voila import _guarded

class Boom(RequestHandler):
    def get(self, rest):
        raise RuntimeError("a handler that fails")

one_inert_line_per_record(logging.getLogger("app"))
listening = socket.socket(); listening.bind(("127.0.0.1", 0)); listening.listen(128); listening.setblocking(False)
app = Application([(r"/boom(.*)", _guarded(Boom))], log_function=log_failure)
GuardedHTTPServer(app, limits=StudioLimits()).add_sockets([listening])
print(listening.getsockname()[1], flush=True)
IOLoop.current().call_later(float(sys.argv[1]), IOLoop.current().stop)
IOLoop.current().start()
"""


@pytest.mark.slow
def test_a_failing_handler_logs_its_path_only_and_not_once_per_request() -> None:
    """A studio handler failing on every request (as /logout did for anyone, an <img> on any page enough): 200
    requests with the token in their query, then 100 on distinct paths, each a 500. The terminal gets no query,
    no request repr, no traceback, one line for the 200 alike and at most 30 in all (before: tornado's
    `Uncaught exception GET /boom?token=...` with the request's repr, two lines per request, unbounded)."""
    proc = subprocess.Popen([sys.executable, "-c", FAILING_HANDLER, "20"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client:
            alike = {client.get(f"/boom?token=SECRET{i}").status_code for i in range(200)}
            distinct = {client.get(f"/boom/{i}?token=SECRET").status_code for i in range(100)}
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    lines = err.splitlines()
    assert alike == distinct == {500}
    assert "SECRET" not in err and "HTTPServerRequest" not in err and "Traceback" not in err, err[:2000]
    assert lines[:2] == ["spark-nb studio: error: uncaught exception in GET /boom (RuntimeError)",
                         "spark-nb studio: error: 500 GET /boom"], lines[:4]
    assert 2 < len(lines) <= 30, len(lines)


def _start_studio(tmp_path: Path, *prefix: str,
                  config: dict[str, Any] | None = None) -> tuple[subprocess.Popen[bytes], int, str, Path]:
    """`spark-nb studio --no-browser` (behind prefix, e.g. prlimit) on a free port; (process, port, URL, log)."""
    env = studio_env(tmp_path)
    if config:
        Path(env["JUPYTER_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
        (Path(env["JUPYTER_CONFIG_DIR"]) / "voila.json").write_text(json.dumps(config))
    port, log = free_port(), tmp_path / f"studio-{time.time_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*prefix, *CLI, "studio", "--no-browser", "--port", str(port), "--dir",
                                 str(tmp_path / "studio")], stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 120
    while (match := re.search(rb"spark-nb studio on (\S+) ", log.read_bytes())) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise AssertionError(f"the studio did not start: {log.read_bytes()[-2000:]!r}")
        time.sleep(0.2)
    return proc, port, match.group(1).decode(), log


def _stop(proc: subprocess.Popen[bytes]) -> None:
    import os
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.mark.slow
def test_no_other_process_can_take_the_studios_port_while_voila_starts(tmp_path: Path) -> None:
    """Another local process watches the process list for Voila (spawned with its port on its command line) and
    binds that port while Voila imports (seconds): it cannot, the port is the studio's from the start, and the URL
    printed opens the studio. Before, the squatter bound it, received the browser and its token, and Voila died."""
    import psutil

    port, tried = free_port(), {}

    def squat() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "error" not in tried:
            if any(f"--Voila.port={port}" in " ".join(p.info["cmdline"] or [])
                   for p in psutil.process_iter(["cmdline"])):
                squatter = socket.socket()
                squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    squatter.bind(("127.0.0.1", port))
                    squatter.listen(16)
                    tried["error"] = None
                    tried["socket"] = squatter
                except OSError as exc:
                    tried["error"] = exc.errno
                    squatter.close()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=squat)
    thread.start()
    env = studio_env(tmp_path)
    log = tmp_path / "studio.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "studio", "--no-browser", "--port", str(port), "--dir", str(tmp_path / "s")],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    try:
        thread.join(70)
        deadline = time.monotonic() + 120
        while b"spark-nb studio on" not in log.read_bytes() and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        url = re.search(rb"spark-nb studio on (\S+) ", log.read_bytes())
        page = httpx.get(url.group(1).decode(), timeout=30, trust_env=False) if url else None
    finally:
        _stop(proc)
        if tried.get("socket"):
            tried["socket"].close()
    assert tried.get("error") == 98, f"another process bound the studio's port: {tried}"  # EADDRINUSE
    assert page is not None and page.status_code == 302, log.read_bytes()[-2000:]


@pytest.mark.slow
def test_thousands_of_half_open_connections_leave_the_studio_to_its_token_holder(tmp_path: Path) -> None:
    """The studio under `prlimit --nofile=512:512` and 700 half-open connections from a process without the token:
    the token holder is let in and gets the studio page (a kernel) within seconds, the attackers only ever hold
    the oldest places, and the terminal gets no traceback. Before, the attack took every descriptor, tornado's
    accept loop spun on EMFILE writing tracebacks, and the token holder was shut out."""
    proc, port, url, log = _start_studio(tmp_path, "prlimit", "--nofile=512:512", "--")
    held: list[socket.socket] = []
    try:
        for _ in range(700):
            with contextlib.suppress(OSError):
                held.append(_half_open(("127.0.0.1", port), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a"))
        started = time.monotonic()
        with httpx.Client(timeout=60, trust_env=False) as owner:
            entered = owner.get(url)
            page = owner.get(f"http://127.0.0.1:{port}/")
        took = time.monotonic() - started
        closed = sum(_closed_within(sock, 0.01) for sock in held[:100])
    finally:
        for sock in held:
            sock.close()
        _stop(proc)
    text = log.read_bytes()
    assert entered.status_code == 302 and page.status_code == 200 and "spark-studio" in page.text
    assert took < 60, took
    assert closed > 50, "the oldest half-open connections were never closed: the cap was not reached"
    assert b"Traceback" not in text and b"Too many open files" not in text and len(text) < 4000, text[-2000:]


@pytest.mark.slow
def test_requests_without_the_token_write_nothing_raw_to_the_studios_terminal(tmp_path: Path) -> None:
    """51 token-less requests for /voila/templates/<no template>, one with a C1 CSI, ESC and a bidi override in
    its path: each a 404, and the terminal gets not a byte of them (before: a traceback of some 880 bytes each,
    the C1 CSI raw). Headers not sent within the configured deadline (voila.json) close the connection."""
    proc, port, _, log = _start_studio(tmp_path, config={"StudioVoila": {"header_timeout": 2}})
    try:
        size = log.stat().st_size

        def send(line: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(line + b"\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
                return sock.recv(200).split(b"\r\n")[0]

        answers = [send(b"GET /voila/templates/\x9b2J\x9b31mFAKE\xe2\x80\xaeabc HTTP/1.1")]
        answers += [send(b"GET /voila/templates/x%d HTTP/1.1" % i) for i in range(50)]
        silent = _half_open(("127.0.0.1", port), b"GET / HTTP/1.1\r\n")
        closed = _closed_within(silent, 10)
        silent.close()
        time.sleep(1)  # a line the server would write for the last requests has reached the log
        written = log.read_bytes()[size:]
    finally:
        _stop(proc)
    assert set(answers) == {b"HTTP/1.1 404 Not Found"}, set(answers)
    assert written == b"", written[:1000]
    assert closed, "a connection that never finished its headers was kept past the header deadline"


@pytest.mark.slow
def test_a_churning_peer_never_closes_a_clients_fresh_connection_to_the_studio() -> None:
    """Two processes open connections as fast as they can against the studio's server allowing 20, each sending
    part of its headers and closing its oldest for each new one: a client whose request follows its connection by
    50 ms (a new connection each time) is answered every time. Before, the longest-waiting connection was closed
    for each newcomer, the client's too before its request came (2 of 26 failed under `ulimit -n 256`)."""
    from .peers import ChurnFlood, late_request

    with guarded(StudioLimits(max_connections=20, header_timeout=60)) as (address, server):
        with ChurnFlood(address, seconds=8) as flood:
            time.sleep(1)
            answers = [late_request(address, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") for _ in range(30)]
        evicted = server.closed_for["evicted"]
    assert flood.opened > 1000, flood.opened
    assert evicted > 500, evicted
    assert set(answers) == {"HTTP/1.1 200 OK"}, answers


@pytest.mark.slow
def test_held_request_bodies_leave_the_studios_memory_alone(tmp_path: Path) -> None:
    """Eight connections from a process without the token each announce a 100 MB body for /login and send what
    the studio lets them of 30 MB: each is refused (400) and Voila's memory grows by less than 40 MB (before: by
    the 240 MB sent, 100 MB a connection at most, until the body deadline); the token holder still gets in."""
    import psutil

    proc, port, url, _ = _start_studio(tmp_path)
    held: list[socket.socket] = []
    try:
        voila = next(child for child in psutil.Process(proc.pid).children()
                     if "_studio_voila" in " ".join(child.cmdline()))
        before = voila.memory_info().rss
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            held.append(sock)
            sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/x-www-form-"
                         b"urlencoded\r\nContent-Length: %d\r\n\r\n" % (port, 100 * 1024**2))
            with contextlib.suppress(OSError):
                for _ in range(30):
                    sock.sendall(b"a" * 1024**2)
        time.sleep(1)  # what was sent has been read
        grown = voila.memory_info().rss - before
        answers = []
        for sock in held:
            sock.settimeout(5)
            try:
                answers.append(sock.recv(100).split(b"\r\n")[0])
            except OSError as exc:
                answers.append(type(exc).__name__.encode())
        with httpx.Client(timeout=60, trust_env=False) as owner:
            entered = owner.get(url)
    finally:
        for sock in held:
            sock.close()
        _stop(proc)
    assert grown < 40 * 1024**2, f"Voila grew by {grown / 1024**2:.0f} MB"
    assert answers == [b"HTTP/1.1 400 Bad Request"] * 8, answers
    assert entered.status_code == 302


@pytest.mark.slow
def test_logout_works_for_its_owner_only_and_writes_nothing(tmp_path: Path) -> None:
    """`/logout` (jupyter_server's rendered a template Voila lacks: a 500 for everyone, two terminal lines each):
    200 requests without the cookie (what `<img src=.../logout>` on any page sends) are answered, and the terminal
    gets nothing; another page's logout (Sec-Fetch-Site: same-site, with the owner's cookie) is refused and leaves
    the owner logged in; the owner's own logout clears the cookie, after which a file asks for the login again."""
    proc, port, url, log = _start_studio(tmp_path)
    try:
        size = log.stat().st_size
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as stranger:
            strangers = {stranger.get(f"/logout?i={i}").status_code for i in range(200)}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False) as owner:
            owner.get(url)  # the token: a login cookie
            before = owner.get("/voila/files/none.mp4").status_code
            by_a_page = owner.get("/logout", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors",
                                                      "Sec-Fetch-Dest": "image"}).status_code
            still = owner.get("/voila/files/none.mp4").status_code
            logout = owner.get("/logout")
            after = owner.get("/voila/files/none.mp4")
        time.sleep(1)  # a line the server would write for the last requests has reached the log
        written = log.read_bytes()[size:]
    finally:
        _stop(proc)
    assert strangers == {200}, strangers
    assert written == b"", written[:1000]
    assert before == still == 404 and by_a_page == 403
    assert logout.status_code == 200 and "logged out" in logout.text
    assert after.status_code == 302 and "/login" in after.headers["location"]


@pytest.mark.slow
def test_the_studio_keeps_its_folder_and_files_to_its_user(tmp_path: Path) -> None:
    """Under the usual umask 022, `spark-nb studio` makes its folder 0700 and its notebook 0600, and Voila and the
    kernel of an opened page run under umask 077, so every video and uploaded portrait they write is the user's
    alone (before: the folder 0755, the notebook and the files the kernels wrote 0644, readable by every local
    user)."""
    import os
    import stat

    import psutil

    old = os.umask(0o022)
    try:
        proc, port, url, _ = _start_studio(tmp_path)
    finally:
        os.umask(old)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, trust_env=False) as owner:
            owner.get(url)
            page = owner.get("/")
        [voila] = psutil.Process(proc.pid).children()
        kernels = voila.children(recursive=True)
        umasks = {p.pid: re.search(r"Umask:\s*(\d+)", Path(f"/proc/{p.pid}/status").read_text()).group(1)
                  for p in [voila, *kernels]}
    finally:
        _stop(proc)
    folder = tmp_path / "studio"
    assert page.status_code == 200 and len(kernels) >= 1
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "studio.ipynb").stat().st_mode) == 0o600
    assert set(umasks.values()) == {"0077"}, umasks
