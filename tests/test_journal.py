"""The task journal across real processes: re-run cells and restarts never lose a paid task or pay twice; history,
spend and a budget; local tasks that outlive their process; a damaged journal; SIGKILL at every step."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb._journal import FILENAME, JobState, Journal
from spark_nb.local import LocalServer
from spark_nb.media import read_header

from .conftest import TEST_KEY, cloud_config, ffmpeg
from .peers import Peer, peers

MakeServer = Callable[..., LocalServer]


def home() -> Path:
    """This test's SPARK_NB_HOME (conftest gives every test its own)."""
    return Path(os.environ["SPARK_NB_HOME"])


def child(code: str, *args: str, **env: str) -> subprocess.Popen:
    """A Python child running code (with spark_nb imported) in this test's environment and folder."""
    script = "import os, signal, sys, spark_nb\nfrom spark_nb import avatar\n" + textwrap.dedent(code)
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **env})


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a child; its exit code, stdout and stderr."""
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def cloud_env(server: LocalServer) -> dict[str, str]:
    """The cloud path pointed at server, for a child process."""
    return {"SPARK_NB_BACKEND": "cloud", "VTRIX_GENERATION_URL": server.url, "VTRIX_API_KEY": TEST_KEY,
            "SPARK_NB_UPLOAD_URL": f"{server.url}/api/v1/storage/files"}


SUBMIT_AND_DIE = """
task = avatar.submit(sys.argv[1], sys.argv[2])
print(task.id, flush=True)
os._exit(3)  # no clean-up of any kind: the kernel died
"""


@pytest.mark.slow
def test_a_dead_process_task_is_reattached_then_reused_and_listed_with_its_cost(
        make_server: MakeServer, media: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """A process creates a task and dies; the identical generate() waits for that task (no second create); the next
    returns at once with no request at all; reuse=False makes exactly one more; history and spend list both."""
    server = make_server(api_key=TEST_KEY, latency=2.0, cost_per_second=0.1)
    code, out, err = finish(child(SUBMIT_AND_DIE, str(media["portrait"]), str(media["speech"]), **cloud_env(server)))
    assert code == 3, err
    first_id = out.strip()
    assert server.stats()["created"] == 1

    attached = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert attached.task_id == first_id and server.stats()["created"] == 1
    assert "is not finished: waiting for it" in capsys.readouterr().err

    cost = Decimal(f"{0.1 * (attached.duration or 0):.2f}")  # what the server bills: a decimal string
    assert attached.cost == cost and cost > 0
    requests = server.requests
    again = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert again.task_id == first_id and again.path == attached.path and server.requests == requests
    said = capsys.readouterr().err
    assert f"reusing task {first_id}" in said and f"cost ${cost:.2f}" in said and "reuse=False" in said

    new = avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, **cloud_config(server))
    assert new.task_id != first_id and server.stats()["created"] == 2

    tasks = spark_nb.history()
    assert [t.task_id for t in tasks] == [new.task_id, first_id]
    assert [t.cost for t in tasks] == [cost, cost]  # exact Decimals, through the journal's REAL column
    assert all(t.status == "completed" and t.path and t.path.is_file() for t in tasks)
    assert tasks[0].inputs == [media["portrait"].name, media["speech"].name]
    assert spark_nb.spend() == 2 * cost and spark_nb.spend(since="1h") == 2 * cost
    page = tasks._repr_html_()
    assert page.count("<video") == 2 and "2 task(s)" in page and f"${2 * cost:.2f}" in page


def test_a_budget_refuses_the_task_that_would_pass_it(make_server: MakeServer, media: dict[str, Path]) -> None:
    """With one take's cost spent and a budget of one and a half takes, the next take (estimated from the last
    one's cost per second of audio) is refused before any upload or create; a reuse, costing nothing, is not."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.1)
    first = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    cost = first.cost or Decimal(0)
    budget = round(1.5 * float(cost), 2)
    before = server.stats()
    with pytest.raises(spark_nb.BudgetExceeded) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, budget_usd=budget,
                        **cloud_config(server))
    error = info.value
    assert (error.spend, error.budget) == (cost, Decimal(repr(budget)))  # Decimals, exact
    assert float(error.estimate) == pytest.approx(float(cost), rel=0.05)
    assert f"${budget:.2f}" in str(error) and f"${cost:.2f}" in str(error)
    assert server.stats() == before  # no upload, no create
    reused = avatar.generate(media["portrait"], media["speech"], progress=False, budget_usd=budget,
                             **cloud_config(server))
    assert server.stats()["created"] == 1 and reused.path.is_file()  # a reuse costs nothing: allowed


RACE = """
start = float(sys.argv[3])
while time.time() < start:  # both children leave this line at the same moment
    time.sleep(0.001)
result = avatar.generate(sys.argv[1], sys.argv[2], progress=False)
print(result.task_id, flush=True)
"""


@pytest.mark.slow
def test_two_kernels_with_the_same_inputs_at_the_same_moment_make_one_task(make_server: MakeServer,
                                                                          media: dict[str, Path]) -> None:
    """Two processes generating identical inputs at once: one task, both get its video."""
    server = make_server(api_key=TEST_KEY, latency=1.0)
    start = str(time.time() + 3)
    kids = [child("import time\n" + RACE, str(media["portrait"]), str(media["speech"]), start, **cloud_env(server))
            for _ in range(2)]
    results = [finish(kid) for kid in kids]
    assert all(code == 0 for code, _, _ in results), results
    ids = {out.strip() for _, out, _ in results}
    assert len(ids) == 1 and server.stats()["created"] == 1


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s of real speech: a local render of several seconds."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    ffmpeg("-stream_loop", "20", "-i", str(Path(__file__).parent / "media" / "speech.wav"), "-t", "60", str(path))
    return path


LOCAL_SUBMIT = """
task = avatar.submit(sys.argv[1], sys.argv[2], trim_audio=False, backend="local")
print(task.id, flush=True)
import time
time.sleep(300)  # rendering in this process's embedded server until killed
"""


@pytest.mark.slow
def test_a_local_task_whose_process_was_killed_mid_render_is_finished_by_status_wait(
        media: dict[str, Path], long_speech: Path, tmp_path: Path) -> None:
    """On the local backend, a task survives its process: SIGKILL mid-render, then `spark-nb status ID --wait` in a
    new process finishes the render and downloads the video."""
    kid = child(LOCAL_SUBMIT, str(media["portrait"]), str(long_speech))
    task_id = kid.stdout.readline().strip()  # type: ignore[union-attr]
    record = home() / "local" / "tasks" / f"{task_id}.json"
    deadline = time.monotonic() + 60
    while not (record.is_file() and json.loads(record.read_text()).get("rendered", 0) > 0.05):
        assert time.monotonic() < deadline and kid.poll() is None, "the render never started"
        time.sleep(0.1)
    kid.send_signal(signal.SIGKILL)
    kid.communicate(timeout=30)
    assert json.loads(record.read_text())["rendered_at"] is None  # really mid-render
    status = subprocess.run([sys.executable, "-m", "spark_nb", "status", task_id, "--wait", "--out", "videos",
                             "--timeout", "180"], capture_output=True, text=True, timeout=240, cwd=tmp_path,
                            env={**os.environ, "SPARK_NB_BACKEND": "local"})
    assert status.returncode == 0, status.stderr
    video = tmp_path / "videos" / f"{task_id}.mp4"
    assert video.is_file() and read_header(video).duration == pytest.approx(60, abs=0.2)


def test_an_unknown_local_task_says_where_local_tasks_live() -> None:
    """A 404 on the local backend names the backend and the folder its tasks are kept in."""
    with pytest.raises(spark_nb.NotFoundError) as info:
        spark_nb.Task.from_id("0" * 32, backend="local").status()
    assert "local backend" in str(info.value) and str(home() / "local" / "tasks") in str(info.value)


def test_a_create_refused_for_its_inputs_is_not_sent_again(media: dict[str, Path]) -> None:
    """The service refuses the inputs (a seed input-error code): the identical call raises the same error from the
    journal, without a request; a service failure (…095) would get a new task instead (see the next test)."""
    def refuse(p: Peer, conn: Any, req: Any) -> None:
        p.json(conn, 400, {"status": "failed", "error": {"code": "003016002", "error_message": "Audio URL missing"}})

    for start in peers():
        api = start(refuse)
        config = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY}
        for _ in range(2):
            with pytest.raises(spark_nb.TaskFailed, match="Audio URL missing") as info:
                avatar.generate("https://x.example/a.jpg", "https://x.example/b.wav", progress=False, **config)
            assert info.value.code == "003016002" and not info.value.retryable
        assert sum(s.method == "POST" for s in api.seen) == 1


def test_a_service_failure_gets_a_new_task_on_the_next_call(make_server: MakeServer, media: dict[str, Path]) -> None:
    """A task the service failed (…095) is retried by the identical call: a new task, not the old failure."""
    failing = make_server(api_key=TEST_KEY, faults="render:095:1")
    with pytest.raises(spark_nb.TaskFailed) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(failing))
    assert info.value.retryable
    with pytest.raises(spark_nb.TaskFailed):
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(failing))
    assert failing.stats()["created"] == 2


@pytest.mark.slow
def test_a_reused_task_whose_video_is_gone_is_fetched_again_or_explained(make_server: MakeServer,
                                                                        media: dict[str, Path]) -> None:
    """The video deleted: fetched again from its URL (no new task); the URL gone too: a DownloadError that says to
    pass reuse=False."""
    server = make_server(api_key=TEST_KEY)
    first = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    first.path.unlink()
    again = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert again.path.is_file() and server.stats()["created"] == 1 and server.stats()["downloads"] == 2
    again.path.unlink()
    (server.service.storage / "results" / first.url.rsplit("/", 1)[1]).unlink()  # its random name
    with pytest.raises(spark_nb.DownloadError, match="gone from disk") as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert "reuse=False" in (info.value.hint or "") and server.stats()["created"] == 1


@pytest.mark.slow
def test_a_reused_call_lands_in_its_own_output_folder_also_once_the_first_is_deleted(
        make_server: MakeServer, media: dict[str, Path], tmp_path: Path) -> None:
    """generate(output_dir=A), then the same call with output_dir=B: B holds its own video (linked, not A's path);
    A deleted, the same call with output_dir=C fetches it into C. One task, every Result inside its own folder."""
    import shutil

    server = make_server(api_key=TEST_KEY)
    folders = {name: tmp_path / name for name in "ABC"}
    first = avatar.generate(media["portrait"], media["speech"], output_dir=folders["A"], progress=False,
                            **cloud_config(server))
    second = avatar.generate(media["portrait"], media["speech"], output_dir=folders["B"], progress=False,
                             **cloud_config(server))
    assert second.task_id == first.task_id and server.stats()["created"] == 1
    assert second.path.parent.resolve() == folders["B"].resolve() and second.path.is_file()
    shutil.rmtree(folders["A"])
    third = avatar.generate(media["portrait"], media["speech"], output_dir=folders["C"], progress=False,
                            **cloud_config(server))
    assert third.task_id == first.task_id and server.stats()["created"] == 1
    for result, folder in ((second, "B"), (third, "C")):
        assert result.path.resolve().parent == folders[folder].resolve()
        assert read_header(result.path).duration == pytest.approx(first.duration, abs=0.1)


@pytest.mark.slow
def test_a_second_demo_after_its_folder_was_deleted_reuses_its_local_tasks(tmp_path: Path) -> None:
    """The attack, the README's own command: `spark-nb demo`, its folder deleted, `spark-nb demo` again failed
    ("finished earlier, but its video is gone from disk ... ConnectError: Connection refused"): the journal kept
    the local task's video URL with the port of the embedded server that ended with the first process, although
    the video was still in the local store. A local task's video is fetched from today's embedded server: the
    second demo, in another process, reuses both tasks (no new task in the journal or the local store) and its
    videos decode."""
    from spark_nb._ffmpeg import try_decode

    out = tmp_path / "A"

    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "spark_nb", "demo", "--out", str(out)], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ))

    first = demo()
    assert first.returncode == 0, first.stdout + first.stderr
    made = sorted(p.name for p in out.glob("*.mp4"))
    assert len(made) == 2
    for path in out.iterdir():
        path.unlink()
    out.rmdir()
    second = demo()
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stderr.count("reusing task") == 2, second.stderr
    assert sorted(p.name for p in out.glob("*.mp4")) == made  # the same two tasks' videos
    for video in out.glob("*.mp4"):
        assert try_decode(video, 0.2).facts.duration > 1
    with contextlib.closing(sqlite3.connect(home() / FILENAME)) as db:
        assert db.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall() == [("completed", 2)]
    assert len(list((home() / "local" / "tasks").glob("*.json"))) == 2  # the local store made no new task


KILL_AT = """
import spark_nb._client as client, spark_nb._journal as journal
step = sys.argv[3]
if step == "before-create":
    real_create = client.ApiClient.create
    client.ApiClient.create = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
elif step == "after-create":
    real = journal.Journal.created
    journal.Journal.created = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
elif step == "while-waiting":
    import spark_nb._tasks as tasks
    tasks.Task._wait_until = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # what wait() and generate run
avatar.generate(sys.argv[1], sys.argv[2], progress=False)
"""


@pytest.mark.parametrize("step,created,outcome", [
    ("before-create", 0, "may-exist"),  # claimed, never sent: the journal cannot know, so it says so
    ("after-create", 1, "may-exist"),  # created, id not yet written: never sent again
    ("while-waiting", 1, "attached"),  # the id was on disk before the wait: the next call waits for it
])
@pytest.mark.slow
def test_sigkill_at_each_step_never_pays_twice_nor_loses_a_recorded_task(
        step: str, created: int, outcome: str, make_server: MakeServer, media: dict[str, Path]) -> None:
    """A process SIGKILLed at each step of a generation; the identical call afterwards never makes a second task."""
    server = make_server(api_key=TEST_KEY, latency=1.0)
    code, _, err = finish(child(KILL_AT, str(media["portrait"]), str(media["speech"]), step, **cloud_env(server)))
    assert code == -signal.SIGKILL, err
    assert server.stats()["created"] == created
    if outcome == "may-exist":
        with pytest.raises(spark_nb.TaskMayExist, match="may have created a task") as info:
            avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
        assert info.value.submitted_at and "reuse=False" in (info.value.hint or "")
    else:
        result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
        assert result.path.is_file()
    assert server.stats()["created"] == created
    (entry,) = Journal(home() / FILENAME).entries()
    assert entry.state in (JobState.SUBMITTING, JobState.COMPLETED)


@pytest.mark.slow
def test_a_damaged_journal_is_moved_aside_and_an_old_one_is_read(media: dict[str, Path], tmp_path: Path) -> None:
    """A journal overwritten with garbage, or cut short while in use: moved aside with a warning, a new one works.
    A journal of an older version (fewer columns, a state this version does not know): read, that state as
    uncertain."""
    bad = tmp_path / "bad" / FILENAME
    bad.parent.mkdir()
    bad.write_bytes(b"SQLite format 3\x00" + os.urandom(3000))
    with pytest.warns(UserWarning, match="could not be read"):
        journal = Journal(bad)
    assert journal.entries() == [] and list(bad.parent.glob(f"{FILENAME}.corrupt-*"))

    cut = tmp_path / "cut" / FILENAME  # a journal in use, then cut to two thirds of its length
    cut.parent.mkdir()
    in_use = Journal(cut)
    for i in range(300):
        claim, _ = in_use.reserve(fingerprint=f"f{i}", model="m", backend="local", base_url=None, source="t",
                                  inputs=[{"field": "image", "name": "x" * 300}], input_seconds=1.0,
                                  follow=lambda latest: False)
        assert claim is not None
        in_use.sending(claim)
        in_use.created(claim, f"t{i}")
    with sqlite3.connect(cut) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    with pytest.warns(UserWarning, match="could not be read"):
        assert in_use.entries() == []  # found damaged at the next read: moved aside, a fresh journal answers
    assert in_use.latest("f1") is None and list(cut.parent.glob(f"{FILENAME}.corrupt-*"))

    old = tmp_path / "old" / FILENAME
    old.parent.mkdir()
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE tasks (attempt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, model TEXT NOT NULL, "
                   "backend TEXT NOT NULL, base_url TEXT, inputs TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, "
                   "task_id TEXT, pid INTEGER, host TEXT, attempted_at REAL NOT NULL, updated_at REAL NOT NULL)")
        db.execute("INSERT INTO tasks VALUES ('a1', 'fp', 'spark_avatar_picture_omni_v2', 'cloud', NULL, 'not json', "
                   "'queued-v0', 't-old', 1, 'elsewhere', 1.0, 1.0)")
    (entry,) = Journal(old).entries()
    assert entry.state == JobState.UNCERTAIN and entry.inputs == [] and entry.task_id == "t-old"
    assert entry.cost is None and not entry.creator_alive


@pytest.mark.slow
def test_the_key_never_reaches_the_journal(make_server: MakeServer, media: dict[str, Path]) -> None:
    """After uploads, a create, a wait and a reuse on the cloud path, the journal's files hold no trace of the key."""
    server = make_server(api_key=TEST_KEY)
    for _ in range(2):
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    files = list(home().glob(f"{FILENAME}*"))
    assert files and not any(TEST_KEY.encode() in path.read_bytes() for path in files)


@pytest.mark.slow
def test_history_filters_and_the_cli(make_server: MakeServer, media: dict[str, Path], tmp_path: Path) -> None:
    """history(model=, status=, since=) filter; `spark-nb history --json` prints the same tasks and total."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.1)
    talk = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    move = spark_nb.imitator.generate(media["portrait"], media["driving"], progress=False, **cloud_config(server))
    assert [t.task_id for t in spark_nb.history(model="avatar")] == [talk.task_id]
    assert [t.task_id for t in spark_nb.history(model=move.model)] == [move.task_id]
    assert len(spark_nb.history(status="completed")) == 2 and spark_nb.history(status="failed") == []
    assert spark_nb.history(since="2999-01-01") == [] and len(spark_nb.history(since="1d")) == 2
    with pytest.raises(spark_nb.ValidationError, match="is not a time"):
        spark_nb.history(since="yesterday-ish")
    proc = subprocess.run([sys.executable, "-m", "spark_nb", "history", "--json"], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy(), cwd=tmp_path)
    printed = json.loads(proc.stdout)
    assert [t["task_id"] for t in printed["tasks"]] == [move.task_id, talk.task_id]
    assert Decimal(printed["total_usd"]) == spark_nb.spend()  # exact text, not a float
    table = subprocess.run([sys.executable, "-m", "spark_nb", "history", "--since", "1h"], capture_output=True,
                           text=True, timeout=60, env=os.environ.copy(), cwd=tmp_path).stdout
    assert talk.task_id in table and "2 task(s)" in table


@pytest.mark.slow
def test_a_batch_stops_creating_at_its_budget(make_server: MakeServer, media: dict[str, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Three rows, a budget of one and a half takes: the first row completes, then no task is created; the rows left
    are unfinished with the budget named, in results.csv."""
    import csv

    from spark_nb.batch import run_batch

    server = make_server(api_key=TEST_KEY, cost_per_second=0.1)
    for name, value in cloud_env(server).items():
        monkeypatch.setenv(name, value)
    first = avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False, **cloud_config(server))
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", f"{1.5 * float(first.cost or 0):.2f}")
    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "model", "image", "audio"])
        for name in ("one", "two", "three"):
            writer.writerow([name, "avatar", media["portrait"], media["speech_mp3" if name == "two" else "speech"]])
    outcomes = run_batch(manifest, tmp_path / "out", concurrency=1, progress=False)
    by_name = {o.name: o for o in outcomes}
    assert by_name["one"].status == "completed" and by_name["one"].reused  # the same inputs as `first`
    assert by_name["two"].status == "unfinished" and "budget" in (by_name["two"].error or "")
    assert by_name["three"].status == "completed"  # identical to one: the same job, nothing to pay
    assert server.stats()["created"] == 1
    with (tmp_path / "out" / "results.csv").open() as f:
        assert "budget" in {row["name"]: row for row in csv.DictReader(f)}["two"]["error"]


def test_old_local_tasks_are_pruned_by_age_and_size(tmp_path: Path) -> None:
    """The local backend keeps finished tasks a week and their videos at most a set total, oldest first."""
    from spark_nb.local._records import TaskRecord
    from spark_nb.local._shelf import TaskShelf

    shelf, results = TaskShelf(tmp_path / "tasks"), tmp_path / "results"
    results.mkdir()
    now = time.time()
    for name, age, size in [("old", 8 * 86400, 10), ("big", 3600, 3000), ("new", 60, 3000), ("running", 9 * 86400, 0)]:
        record = TaskRecord(id=name, model="m", urls={}, created_at=now - age, latency=0.0)
        if name != "running":
            record.rendered_at = now - age
            (results / f"{name}.mp4").write_bytes(b"x" * size)
        shelf.save(record)
    shelf.prune(results, keep_seconds=7 * 86400, keep_bytes=4000)
    assert sorted(p.stem for p in results.glob("*.mp4")) == ["new"]  # old: too old; big: past the size, older
    assert shelf.load("running") is not None and shelf.load("old") is None and shelf.load("new") is not None


def test_the_switch_to_sending_and_a_task_id_are_fsynced_and_a_claim_or_a_task_end_need_not_be(
        tmp_path: Path) -> None:
    """The write just before a create (SUBMITTING) and the one recording its task id commit with synchronous=FULL
    (on disk before anything is sent or waits); a claim (nothing sent yet: lost with the machine's power, nothing
    is lost) and a task's end (resumed by its id) commit with NORMAL. One connection serves every write."""
    journal = Journal(tmp_path / FILENAME)

    def synchronous() -> int:
        held = journal._held  # the write connection
        assert held is not None
        return held[0].execute("PRAGMA synchronous").fetchone()[0]

    claim, _ = journal.reserve(fingerprint="f", model="m", backend="cloud", base_url=None, inputs=[],
                               input_seconds=None, source="test", follow=lambda latest: False)
    assert claim is not None and synchronous() == 1  # NORMAL
    connection = journal._held[0]
    journal.sending(claim)
    assert synchronous() == 2  # FULL
    journal.finished("t0", completed=True, cost=0.1)
    assert synchronous() == 1
    journal.created(claim, "t1")
    assert synchronous() == 2 and journal._held[0] is connection
    journal.finished("t1", completed=True, cost=0.1)
    assert journal.by_task("t1").state == JobState.COMPLETED


def test_a_journal_moved_aside_is_written_afresh_not_through_the_old_connection(tmp_path: Path) -> None:
    """The kept write connection follows the file: once the journal is replaced, writes go to the new one."""
    path = tmp_path / FILENAME
    journal = Journal(path)
    journal.reserve(fingerprint="a", model="m", backend="cloud", base_url=None, inputs=[], input_seconds=None,
                    source="test", follow=lambda latest: False)
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            os.replace(f"{path}{suffix}", f"{tmp_path / 'old.sqlite'}{suffix}")
    Journal(path)  # another process starts a new journal in its place
    journal.reserve(fingerprint="b", model="m", backend="cloud", base_url=None, inputs=[], input_seconds=None,
                    source="test", follow=lambda latest: False)
    assert journal.latest("b") is not None and journal.latest("a") is None
    assert Journal(path).latest("b") is not None


# -- "latest" is the journal's insertion order, never a clock -----------------------------------------------------

@pytest.mark.parametrize("first_offset,later_offset", [
    (86400.0, 0.0),  # the attack: the first call's clock was a day ahead, then put right
    (0.0, -3600.0),  # a variant: the process's clock jumps an hour back between the calls
])
@pytest.mark.slow
def test_a_clock_that_jumps_never_makes_an_identical_call_pay_again(
        first_offset: float, later_offset: float, make_server: MakeServer, media: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A service failure (…095, so the next identical call makes a new task) written while the clock said a later
    time than the calls after it stayed "the latest attempt" by time: every identical call paid for a new task.
    The newest attempt is the newest inserted: the third call reuses the second's video."""
    from .conftest import seed_firing_first

    server = make_server(api_key=TEST_KEY, faults="render:095:0.5", fault_seed=seed_firing_first(0.5))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + first_offset)
    with pytest.raises(spark_nb.TaskFailed) as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert info.value.retryable
    monkeypatch.setattr(time, "time", lambda: real() + later_offset)
    second = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    third = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert third.task_id == second.task_id and server.stats()["created"] == 2
    assert [t.status for t in spark_nb.history()] == ["completed", "failed"]  # newest first, by insertion


def test_an_older_journal_keeps_its_insertion_order_through_migration_and_vacuum(tmp_path: Path) -> None:
    """A version-1 journal whose first row has a timestamp a day ahead: after migration its rows are numbered in
    their insertion order (rowid), the numbers survive VACUUM (a column, not the rowid), and a row inserted by an
    older version of spark_nb (no number given) is numbered by the journal's trigger."""
    path = tmp_path / FILENAME
    now = time.time()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE tasks (attempt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, model TEXT NOT NULL, "
                   "backend TEXT NOT NULL, base_url TEXT, inputs TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, "
                   "task_id TEXT, pid INTEGER, host TEXT, attempted_at REAL NOT NULL, updated_at REAL NOT NULL)")
        for attempt, state, at in (("ahead", "failed", now + 86400), ("later", "completed", now)):
            db.execute("INSERT INTO tasks VALUES (?, 'fp', 'm', 'cloud', NULL, '[]', ?, ?, 1, 'h', ?, ?)",
                       (attempt, state, f"t-{attempt}", at, at))
    journal = Journal(path)
    assert journal.latest("fp").attempt == "later"  # type: ignore[union-attr]
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM tasks WHERE attempt = 'nothing'")
    sqlite3.connect(path, isolation_level=None).execute("VACUUM")
    claim, _ = journal.reserve(fingerprint="fp", model="m", backend="cloud", base_url=None, inputs=[],
                               input_seconds=None, source="t", follow=lambda latest: False)
    assert claim is not None and journal.latest("fp").attempt == claim.attempt  # type: ignore[union-attr]
    with sqlite3.connect(path) as db:  # as spark_nb 0.x would insert: no seq column named
        db.execute("INSERT INTO tasks (attempt, fingerprint, model, backend, inputs, state, attempted_at, updated_at)"
                   " VALUES ('old-version', 'fp', 'm', 'cloud', '[]', 'completed', 1.0, 1.0)")
    assert [e.attempt for e in journal.entries()] == ["old-version", claim.attempt, "later", "ahead"]


def wider_journal() -> type[Journal]:
    """A Journal whose entry declares one more column, `note`, in the middle (after `state`): a later version's."""
    import dataclasses

    from spark_nb._journal_rows import Entry, Schema, column

    fields = [(f.name, f.type, dataclasses.field(default=f.default, metadata=f.metadata))
              for f in dataclasses.fields(Entry)]
    at = [name for name, _, _ in fields].index("state") + 1
    fields.insert(at, ("note", "str | None", dataclasses.field(metadata=column("TEXT DEFAULT 'none'", "text"))))
    wider = dataclasses.make_dataclass("WiderEntry", fields, frozen=True, namespace={
        name: getattr(Entry, name) for name in ("creator_alive", "when", "abandoned")})

    class WiderJournal(Journal):
        schema = Schema(wider)
    return WiderJournal


def write_one_of_each(journal: Journal, task_id: str) -> None:
    """A claim, its create and its end, with a value in every column a write sets."""
    claim, _ = journal.reserve(fingerprint=f"fp-{task_id}", model="m", backend="cloud", base_url="http://127.0.0.1:9",
                               inputs=[{"field": "image", "name": "face.jpg"}], input_seconds=7.5, source="batch",
                               follow=lambda latest: False)
    assert claim is not None
    journal.sending(claim)
    journal.created(claim, task_id)
    journal.finished(task_id, completed=True, cost=Decimal("0.004"), seconds=2.5, result_url="http://127.0.0.1:9/v",
                     path="/out/v.mp4")


def assert_each_value_in_its_field(entry: Any, task_id: str) -> None:
    """Every value write_one_of_each wrote, read back in its own field."""
    assert (entry.fingerprint, entry.model, entry.backend, entry.base_url, entry.task_id, entry.source) == \
        (f"fp-{task_id}", "m", "cloud", "http://127.0.0.1:9", task_id, "batch")
    assert entry.inputs == [{"field": "image", "name": "face.jpg"}] and entry.state == JobState.COMPLETED
    assert (entry.cost, entry.seconds, entry.input_seconds) == (Decimal("0.004"), 2.5, 7.5)
    assert (entry.result_url, entry.path, entry.error, entry.code, entry.retryable) == \
        ("http://127.0.0.1:9/v", "/out/v.mp4", None, None, False)
    assert entry.pid == os.getpid() and isinstance(entry.attempted_at, float) and entry.damaged == ()


def test_a_column_declared_in_the_middle_shifts_no_other_value(tmp_path: Path) -> None:
    """The schema has one declaration (the Entry's fields): a later version that declares a column in the middle
    gets it in CREATE TABLE, in the ALTER of an older journal, in every write (by name) and in every read, and
    no other value moves to a neighbouring column (a positional row would shift every later value by one)."""
    wider = wider_journal()
    fresh = wider(tmp_path / "fresh" / FILENAME)
    write_one_of_each(fresh, "t-fresh")
    (entry,) = fresh.entries()
    assert_each_value_in_its_field(entry, "t-fresh")
    assert entry.note == "none"
    with sqlite3.connect(fresh.path) as db:
        names = [row[1] for row in db.execute("PRAGMA table_info(tasks)")]
        assert names[names.index("state") + 1] == "note"  # really in the middle of the table
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM tasks").fetchone()
    assert (row["state"], row["cost"], row["seconds"], row["input_seconds"], row["note"], row["source"]) == \
        ("completed", 0.004, 2.5, 7.5, "none", "batch")

    older = tmp_path / "older" / FILENAME  # a journal of today's schema, opened by the later version
    write_one_of_each(Journal(older), "t-older")
    (migrated,) = wider(older).entries()
    assert_each_value_in_its_field(migrated, "t-older")
    assert migrated.note == "none"
    write_one_of_each(wider(older), "t-after")
    assert_each_value_in_its_field(wider(older).by_task("t-after"), "t-after")


def test_a_new_journal_and_a_migrated_one_have_the_same_columns(tmp_path: Path) -> None:
    """CREATE TABLE and the ALTERs of a version-1 journal come from the same declaration: same names, same types."""
    Journal(tmp_path / "new" / FILENAME)
    old = tmp_path / "old" / FILENAME
    old.parent.mkdir()
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE tasks (attempt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, model TEXT NOT NULL, "
                   "backend TEXT NOT NULL, base_url TEXT, inputs TEXT NOT NULL DEFAULT '[]', state TEXT NOT NULL, "
                   "task_id TEXT, pid INTEGER, host TEXT, attempted_at REAL NOT NULL, updated_at REAL NOT NULL)")
    Journal(old)
    columns = []
    for path in (tmp_path / "new" / FILENAME, old):
        with sqlite3.connect(path) as db:
            columns.append([(row[1], row[2], row[4]) for row in db.execute("PRAGMA table_info(tasks)")])
    assert columns[0] == columns[1] and len(columns[0]) == 22  # 21 of an Entry, and seq


# -- damaged rows ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_damaged_rows_are_shown_as_damaged_and_reuse_and_the_budget_stay_safe(
        make_server: MakeServer, media: dict[str, Path], tmp_path: Path) -> None:
    """The attack: a NaN timestamp made history() and reuse raise ValueError. Rows with a NaN or year-10^292
    timestamp, text where a number goes, a state this version does not know, a blob for a task id: history and
    `spark-nb history` list each as damaged, naming what; reuse still reuses a completed row whose video and id
    read fine, and treats an unreadable state as a task that may exist; a completed row whose cost is unreadable
    counts at its model's estimate in the budget."""
    from spark_nb._config import resolve
    from spark_nb._pipeline import call_key
    from spark_nb.models import AVATAR

    server = make_server(api_key=TEST_KEY, cost_per_second=0.25)
    first = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    cost = float(first.cost or 0)
    path = home() / FILENAME
    other = call_key(AVATAR, {"image": media["portrait"], "audio": media["speech_mp3"]},
                     resolve(**cloud_config(server)))
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET attempted_at = 'NaN', updated_at = 1e300")
        row = "INSERT INTO tasks (attempt, fingerprint, model, backend, inputs, state, task_id, pid, attempted_at, " \
              "updated_at, cost, seconds, retryable) VALUES (?, ?, ?, 'cloud', ?, ?, ?, ?, ?, 1.0, ?, ?, ?)"
        db.execute(row, ("exploded", other, AVATAR.id, "[]", "exploded", None, 1, time.time(), None, None, 0))
        db.execute(row, ("priceless", "fp-x", AVATAR.id, "[]", "completed", "t-x", 1, 1e300, "abc", -1, 0))
        db.execute(row, ("blob", "fp-y", AVATAR.id, "not json", "failed", b"\x00\x01", "x", "soon", None, None, 7))

    tasks = spark_nb.history()
    assert len(tasks) == 4 and {t.status for t in tasks} == {"damaged"}
    said = " | ".join(t.damaged or "" for t in tasks)
    for note in ("attempted_at 'NaN' is not a time", "recorded as completed", "state 'exploded' is not a state",
                 "cost 'abc' is not a number", "attempted_at 1e+300 is not a time", "seconds -1.0 is negative",
                 "task_id b'\\x00\\x01' is not text", "pid 'x' is not a process id", "retryable 7 is not 0 or 1",
                 "inputs 'not json' is not a list of inputs", "attempted_at 'soon' is not a time"):
        assert note in said, note
    assert {t.created_at for t in tasks if t.task_id in (first.task_id, "t-x")} == {None}
    assert tasks._repr_html_().count("spark-damaged") == 4
    assert len(spark_nb.history(status="damaged")) == 4 and spark_nb.history(status="completed") == []
    for args in (["history"], ["history", "--json"], ["history", "--since", "1h"]):
        shown = subprocess.run([sys.executable, "-m", "spark_nb", *args], capture_output=True, text=True,
                               timeout=60, env=os.environ.copy(), cwd=tmp_path)
        assert shown.returncode == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert len(json.loads(subprocess.run([sys.executable, "-m", "spark_nb", "history", "--json"],
                                         capture_output=True, text=True, timeout=60, env=os.environ.copy(),
                                         cwd=tmp_path).stdout)["tasks"]) == 4

    again = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert again.task_id == first.task_id and server.stats()["created"] == 1  # the video and id read fine
    with pytest.raises(spark_nb.TaskMayExist, match="damaged: state 'exploded'"):
        avatar.generate(media["portrait"], media["speech_mp3"], progress=False, **cloud_config(server))
    with pytest.raises(spark_nb.BudgetExceeded) as info:  # spent: the first task and the unreadable one, at cost
        avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                        budget_usd=round(2.5 * cost, 2), **cloud_config(server))
    assert float(info.value.spend) == pytest.approx(2 * cost, rel=0.05)  # a Decimal
    assert server.stats()["created"] == 1


# -- a created task whose id cannot be recorded; a journal that cannot be used -----------------------------------

LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
for line in sys.stdin:
    if line.strip() == "lock":
        db.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
    elif line.strip() == "release":
        db.execute("COMMIT")
        print("released", flush=True)
"""
URLS = ("https://cdn.example/face.jpg", "https://cdn.example/voice.wav")  # URL inputs: nothing to upload
REFUSED = {"status": "failed", "error": {"code": "003016002", "error_message": "Audio URL missing"}}


class Locker:
    """Another process holding the journal's write lock on request (BEGIN EXCLUSIVE), for as long as asked."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def say(self, word: str, answer: str) -> None:
        """Send word; wait for its answer."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == answer

    def close(self) -> None:
        """End the process."""
        self.proc.kill()
        self.proc.wait(timeout=30)


def create_then(act: Callable[[], None], task_id: str) -> Callable[[Peer, Any, Any], None]:
    """A fake Vtrix whose first create does act() (lock the journal, fill the disk) then answers task_id; later
    creates are refused for their inputs."""
    def handle(p: Peer, conn: Any, req: Any) -> None:
        if sum(s.method == "POST" for s in p.seen) == 1:
            act()
            p.json(conn, 200, {"id": task_id, "status": "queued", "model": "spark_avatar_picture_omni_v2"})
        else:
            p.json(conn, 400, REFUSED)
    return handle


def assert_the_id_is_given(error: spark_nb.SparkError, task_id: str, stderr: str) -> None:
    """The created task's id and the line that resumes it are in the error and on stderr."""
    resume = f'spark_nb.Task.from_id("{task_id}", model="spark_avatar_picture_omni_v2").wait()'
    assert isinstance(error, spark_nb.errors.JournalError) and error.task_id == task_id
    assert resume in str(error) and task_id in stderr and resume in stderr


def recorded(task_id: str) -> list[tuple[str, str]]:
    """(state, task_id) of the journal's rows that know task_id, read as another process would."""
    with sqlite3.connect(home() / FILENAME, timeout=30) as db:
        return db.execute("SELECT state, task_id FROM tasks WHERE task_id = ?", (task_id,)).fetchall()


def test_a_journal_locked_past_its_busy_timeout_still_gives_the_created_tasks_id(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The attack: another process holds the journal (a 60 s busy timeout, 1 s here) right after the create
    answered. Before, a raw sqlite3.OperationalError escaped and the paid task's id was nowhere. Now a
    JournalError names it with its resume line, stderr too, and the journal's next write records it."""
    import spark_nb._journal_db as journal_db

    monkeypatch.setattr(journal_db, "BUSY_TIMEOUT_S", 1.0)
    spark_nb.history()  # the journal exists before the locker opens it
    locker = Locker(home() / FILENAME)
    try:
        for start in peers():
            api = start(create_then(lambda: locker.say("lock", "locked"), "task-locked-1"))
            config = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY}
            with pytest.raises(spark_nb.SparkError) as info:
                avatar.generate(*URLS, progress=False, **config)
            assert_the_id_is_given(info.value, "task-locked-1", capsys.readouterr().err)
            assert "locked by another process" in str(info.value)
            locker.say("release", "released")
            assert recorded("task-locked-1") == []  # not on disk yet: kept in memory
            with pytest.raises(spark_nb.TaskFailed):  # the next call's claim writes the kept id first
                avatar.generate(URLS[0], "https://cdn.example/other.wav", progress=False, **config)
            assert recorded("task-locked-1") == [("submitted", "task-locked-1")]
    finally:
        locker.close()


LOCKED_AT_EXIT = """
import spark_nb._journal_db as journal_db
journal_db.BUSY_TIMEOUT_S = 1.0
try:
    avatar.generate(sys.argv[1], sys.argv[2], progress=False, backend="cloud", base_url=sys.argv[3],
                    api_key="k-0123456789")
except spark_nb.SparkError as exc:
    print("raised", type(exc).__name__, exc.task_id, flush=True)
sys.stdin.readline()  # the parent releases the lock, then lets this process exit
"""


@pytest.mark.slow
def test_a_created_tasks_id_kept_in_memory_is_written_at_exit() -> None:
    """A variant: the process exits after the failed write; its exit writes the kept id to the journal."""
    spark_nb.history()
    locker = Locker(home() / FILENAME)
    try:
        for start in peers():
            api = start(create_then(lambda: locker.say("lock", "locked"), "task-at-exit"))
            kid = subprocess.Popen([sys.executable, "-c", "import sys, spark_nb\nfrom spark_nb import avatar\n"
                                    + LOCKED_AT_EXIT, *URLS, api.url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
            assert kid.stdout is not None and kid.stdin is not None
            assert kid.stdout.readline().split() == ["raised", "JournalError", "task-at-exit"]
            locker.say("release", "released")
            _, err = kid.communicate("go\n", timeout=60)
            assert kid.returncode == 0 and "task-at-exit" in err and "Traceback" not in err, err
            assert recorded("task-at-exit") == [("submitted", "task-at-exit")]
    finally:
        locker.close()


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """SPARK_NB_HOME on a 1 MB tmpfs (as root; skipped where mounting is refused), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                                           capture_output=True, timeout=30).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root and a container that allows it")
    monkeypatch.setenv("SPARK_NB_HOME", str(mount))
    yield mount
    subprocess.run(["umount", "-l", str(mount)], timeout=30, check=False)


def fill(folder: Path) -> Path:
    """Fill the file system holding folder to its last page; the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while fh.write(b"\0" * size):
                    pass
    return filler


def test_a_full_disk_right_after_the_create_still_gives_the_created_tasks_id(
        small_disk: Path, capsys: pytest.CaptureFixture) -> None:
    """The attack: the disk fills between the create call and the write of its task id (a tmpfs of 1 MB filled to
    its last byte). Before: a raw sqlite3.OperationalError, the id nowhere. Now: a JournalError with the id, its
    resume line and the fix; once space is freed, the next write records it. A variant first: a disk already
    full before the call is a JournalError before anything is sent."""
    spark_nb.history()  # the journal exists (and its WAL is folded back in: a write must grow it again)
    filler = fill(small_disk)
    for start in peers():
        api = start(create_then(lambda: fill(small_disk), "task-full-1"))
        config = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY}
        with pytest.raises(spark_nb.errors.JournalError, match="the disk is full") as before:
            avatar.generate(*URLS, progress=False, **config)
        assert before.value.task_id is None and "SPARK_NB_HOME" in (before.value.hint or "")
        assert str(small_disk) in str(before.value) and api.seen == []  # refused before anything was sent

        filler.unlink()  # space again; the first create fills the disk before answering
        with pytest.raises(spark_nb.SparkError) as info:
            avatar.generate(*URLS, progress=False, **config)
        assert_the_id_is_given(info.value, "task-full-1", capsys.readouterr().err)
        assert "the disk is full" in str(info.value) and str(small_disk) in str(info.value)

        (small_disk / "filler").unlink()
        with pytest.raises(spark_nb.TaskFailed):  # the next call's claim writes the kept id first
            avatar.generate(URLS[0], "https://cdn.example/other.wav", progress=False, **config)
        assert recorded("task-full-1") == [("submitted", "task-full-1")]


def read_only(path: Path) -> Callable[[], None]:
    """Make path (a file or a folder) read-only, also for root (a read-only bind mount); the undo."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        return lambda: path.chmod(mode)
    for args in (["mount", "--bind", str(path), str(path)], ["mount", "-o", "remount,ro,bind", str(path)]):
        if subprocess.run(args, capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
            pytest.skip("a read-only bind mount is refused here, and root ignores file modes")
    return lambda: subprocess.run(["umount", "-l", str(path)], timeout=30, check=False) and None


@pytest.mark.parametrize("place", ["a folder", "a read-only file", "a read-only folder"])
def test_an_unusable_journal_is_a_journal_error_before_any_upload(place: str, server: LocalServer,
                                                                   media: dict[str, Path]) -> None:
    """A folder where the journal file goes, a read-only journal, a read-only SPARK_NB_HOME: before, a raw
    sqlite3.OperationalError or PermissionError; now a JournalError naming the path and the fix (SPARK_NB_HOME),
    raised before any upload or create; history() says the same."""
    path = home() / FILENAME
    def nothing_to_undo() -> None:
        """A folder in tmp_path needs no undoing."""

    undo: Callable[[], None] = nothing_to_undo
    if place == "a folder":
        path.mkdir(parents=True)
    elif place == "a read-only file":
        Journal(path)
        undo = read_only(path)
    else:
        home().mkdir(parents=True)
        undo = read_only(home())
    try:
        config = cloud_config(server)
        for call in (lambda: avatar.generate(media["portrait"], media["speech"], progress=False, **config),
                     spark_nb.history):
            with pytest.raises(spark_nb.errors.JournalError) as info:
                call()
            said = str(info.value)
            assert str(path) in said and "SPARK_NB_HOME" in said
            assert ("is a folder" if place == "a folder" else "is read-only") in said, said
        assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)
    finally:
        undo()


# -- a journal deleted while in use ---------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["file", "home", "midcall"])
def test_a_journal_deleted_while_in_use_is_made_again(how: str, tmp_path: Path) -> None:
    """The attack: the journal (or the whole SPARK_NB_HOME) deleted while a kernel runs (a user clearing history, a
    cleaner of temporary files), also between a create and the writing of its task id. Before, every later call
    and history() raised JournalError ("no such table: tasks", "unable to open database file") until a restart.
    Now the journal is made again with a warning, the calls go on, a task created meanwhile is recorded, and
    nothing is paid twice."""
    import glob
    import shutil

    video = spark_nb.samples.DRIVING_VIDEO.read_bytes()
    created = {"n": 0}

    def honest(p: Peer, conn: Any, req: Any) -> None:
        if req.method == "POST" and req.path == "/model/v1/generation":
            if how == "midcall" and not created["n"]:  # between the switch to submitting and the task id
                for name in glob.glob(f"{home() / FILENAME}*"):
                    os.remove(name)
            created["n"] += 1
            return p.json(conn, 200, {"id": f"t-{created['n']}", "status": "pending"})
        if "/task/" in req.path:
            task_id = req.path.rsplit("/", 1)[-1]
            return p.json(conn, 200, {"id": task_id, "status": "completed", "usage": {"cost": "0.30"},
                                      "output": [{"content": [{"url": f"{p.url}/video.mp4", "size": len(video)}]}]})
        p.respond(conn, 200, video, {"Content-Type": "video/mp4"})

    def take(n: int) -> spark_nb.Result:
        return avatar.generate(f"https://inputs.example/face{n}.jpg", URLS[1], progress=False, **config)

    for start in peers():
        api = start(honest)
        config = {"backend": "cloud", "base_url": api.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
        if how != "midcall":
            take(1)
            if how == "file":
                for name in glob.glob(f"{home() / FILENAME}*"):
                    os.remove(name)
            else:
                shutil.rmtree(home())
        with pytest.warns(UserWarning, match="was deleted while in use; a new one was started"):
            second = take(2)
        third = take(3)
        assert {second.task_id, third.task_id} <= {e.task_id for e in spark_nb.history()}
        assert all(e.status == "completed" for e in spark_nb.history())
        assert take(3).task_id == third.task_id  # reused from the new journal: not paid again
        assert created["n"] == (2 if how == "midcall" else 3)
