"""The budget is one journal transaction with the claim of the call: concurrent calls (threads, processes) see each
other's claims and never pass the budget by more than one task's cost; a model whose cost is unknown runs one
budgeted task at a time until its cost is known."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import avatar
from spark_nb.errors import CostUnknown
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config

MakeServer = Callable[..., LocalServer]


def cloud_env(server: LocalServer) -> dict[str, str]:
    """The cloud path pointed at server, for a child process."""
    return {"SPARK_NB_BACKEND": "cloud", "VTRIX_GENERATION_URL": server.url, "VTRIX_API_KEY": TEST_KEY,
            "SPARK_NB_UPLOAD_URL": f"{server.url}/api/v1/storage/files"}


def first_take(server: LocalServer, media: dict[str, Path]) -> float:
    """One task completed with its cost (so the model's cost is known); that cost."""
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    cost = float(result.cost or 0)
    assert cost > 0.5 and server.stats()["created"] == 1
    return cost


def at_once(calls: int, call: Callable[[], Any]) -> list[Any]:
    """call() from `calls` threads released together; each one's result or the exception it raised."""
    barrier = threading.Barrier(calls)

    def one(_: int) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except spark_nb.SparkError as exc:
            return exc

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


@pytest.mark.slow
def test_eight_threads_under_a_budget_never_pass_it_by_more_than_one_task(make_server: MakeServer,
                                                                        media: dict[str, Path]) -> None:
    """The attack: $1 spent, a $3 budget, eight new takes at once. Before, all eight passed the check (made before
    their uploads, claimed after) and $9 was spent; now each claim sees the others': two more tasks at most."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25)
    cost = first_take(server, media)
    budget = round(3 * cost, 2)
    outcomes = at_once(8, lambda: avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                                                  budget_usd=budget, **cloud_config(server)))
    refused = [o for o in outcomes if isinstance(o, spark_nb.BudgetExceeded)]
    made = [o for o in outcomes if isinstance(o, spark_nb.Result)]
    assert len(refused) + len(made) == 8, outcomes
    created = server.stats()["created"]
    assert created == 1 + len(made) and len(made) >= 1
    assert created * cost <= budget + cost + 1e-9  # never more than one task past the budget
    assert server.stats()["uploads"] == 2 * created  # a refused call uploaded nothing


RACE = """
import threading, time
from concurrent.futures import ThreadPoolExecutor
start = float(sys.argv[3])
def one(_):
    while time.time() < start:
        time.sleep(0.001)
    try:
        avatar.generate(sys.argv[1], sys.argv[2], progress=False, reuse=False)
        return "made"
    except spark_nb.BudgetExceeded:
        return "refused"
with ThreadPoolExecutor(4) as pool:
    print(" ".join(pool.map(one, range(4))), flush=True)
"""


@pytest.mark.slow
def test_two_processes_of_four_threads_share_one_budget(make_server: MakeServer, media: dict[str, Path]) -> None:
    """The same attack from two processes (four threads each) leaving the same line at the same moment: the
    journal's transaction is shared by processes too; the server's own count stays within one task's cost."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25)
    cost = first_take(server, media)
    budget = round(3 * cost, 2)
    start = str(time.time() + 4)
    script = "import os, sys, spark_nb\nfrom spark_nb import avatar\n" + textwrap.dedent(RACE)
    kids = [subprocess.Popen([sys.executable, "-c", script, str(media["portrait"]), str(media["speech"]), start],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **cloud_env(server), "SPARK_NB_BUDGET_USD": f"{budget:.2f}"})
            for _ in range(2)]
    said = [kid.communicate(timeout=300) for kid in kids]
    assert all(kid.returncode == 0 for kid in kids), said
    words = " ".join(out for out, _ in said).split()
    assert len(words) == 8 and set(words) <= {"made", "refused"}, said
    created = server.stats()["created"]
    assert created == 1 + words.count("made") and words.count("refused") >= 1
    assert created * cost <= budget + cost + 1e-9


@pytest.mark.slow
def test_an_unknown_cost_runs_one_budgeted_task_at_a_time(make_server: MakeServer, media: dict[str, Path]) -> None:
    """Nothing known of the model's cost (a fresh journal) under a budget: of eight calls at once one creates its
    task and seven are refused at once naming it (before, an unknown cost counted as $0: all eight passed).
    Once it finished with a cost, the estimate applies as usual."""
    # the first task takes 5 s: far longer than the other threads need to reach their claims
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=5)
    config = {**cloud_config(server), "budget_usd": 50.0}
    outcomes = at_once(8, lambda: avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                                                  **config))
    waited = [o for o in outcomes if isinstance(o, CostUnknown)]
    made = [o for o in outcomes if isinstance(o, spark_nb.Result)]
    assert (len(made), len(waited)) == (1, 7), outcomes
    assert server.stats()["created"] == 1 and server.stats()["uploads"] == 2
    error = waited[0]
    assert isinstance(error, spark_nb.BudgetExceeded) and error.model == made[0].model
    assert "is not known yet" in str(error) and "one runs at a time" in str(error) and "$50.00" in str(error)
    assert "wait for it to finish" in (error.hint or "")

    after = at_once(3, lambda: avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                                               **config))
    assert all(isinstance(o, spark_nb.Result) for o in after), after  # its cost is known now: three at once
    assert server.stats()["created"] == 4


@pytest.mark.slow
def test_one_task_of_unknown_cost_runs_at_a_time_whatever_its_model(make_server: MakeServer,
                                                                     media: dict[str, Path]) -> None:
    """No model's cost known (a fresh journal) under a budget: an avatar task runs, so an imitator task is refused
    naming it, with the line that finishes it (the third attack: each model got its task of unknown cost, each
    counted at $0, and two models passed a $0.10 budget by $5.86). Once the avatar's cost is known, the imitator's
    one task of unknown cost goes."""
    from spark_nb import imitator

    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=3)
    config = {**cloud_config(server), "budget_usd": 50.0}
    running = avatar.submit(media["portrait"], media["speech"], **config)
    with pytest.raises(CostUnknown) as refused:
        imitator.submit(media["portrait"], media["driving"], **config)
    assert server.stats()["created"] == 1
    assert running.id in str(refused.value) and refused.value.model == "spark_avatar_imitator_v2v"
    assert f'Task.from_id("{running.id}", model="spark_avatar_picture_omni_v2")' in (refused.value.hint or "")
    running.wait(120, progress=False)
    imitator.submit(media["portrait"], media["driving"], **config).wait(120, progress=False)
    assert server.stats()["created"] == 2


SUBMIT_AND_DIE = """
task = avatar.submit(sys.argv[1], sys.argv[2])
print(task.id, flush=True)
os._exit(3)
"""


@pytest.mark.slow
def test_a_task_of_unknown_cost_left_by_a_dead_process_is_named_with_how_to_finish_it(
        make_server: MakeServer, media: dict[str, Path]) -> None:
    """A variant: the task of unknown cost was submitted by a process that died. Nobody will finish it, so a
    budgeted call is refused at once with the line that finishes it; once finished, the next call runs."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=8)  # still running when refused
    script = "import os, sys, spark_nb\nfrom spark_nb import avatar\n" + textwrap.dedent(SUBMIT_AND_DIE)
    kid = subprocess.run([sys.executable, "-c", script, str(media["portrait"]), str(media["speech"])],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **cloud_env(server)})
    assert kid.returncode == 3, kid.stderr
    task_id = kid.stdout.strip()
    with pytest.raises(CostUnknown) as info:
        avatar.generate(media["portrait"], media["speech_mp3"], progress=False, budget_usd=20,
                        **cloud_config(server))
    assert task_id in str(info.value) and not info.value.creator_alive
    assert f'spark_nb.Task.from_id("{task_id}", model="{info.value.model}").wait()' in (info.value.hint or "")
    assert server.stats()["created"] == 1
    spark_nb.Task.from_id(task_id, model=info.value.model, **cloud_config(server)).wait(timeout=60, progress=False)
    result = avatar.generate(media["portrait"], media["speech_mp3"], progress=False, budget_usd=20,
                             **cloud_config(server))
    assert result.path.is_file() and server.stats()["created"] == 2


@pytest.mark.slow
def test_a_free_task_elsewhere_neither_prices_nor_blocks_the_clouds(make_server: MakeServer,
                                                                    media: dict[str, Path]) -> None:
    """The attack: one task on the local backend (cost 0.00), or on a `spark-nb serve` that reports 0.00, made the
    model's cost "known" at $0, so eight cloud calls at once under a $1 budget were all estimated at $0 and all
    created. Costs are known per service (backend, base URL, model) now: the cloud's is still unknown, so one task
    runs there and seven are refused at once; the free tasks cost nothing in the spend."""
    free = avatar.generate(media["portrait"], media["speech"], progress=False, backend="local")
    serve = make_server(api_key=TEST_KEY)  # reports 0.00, as `spark-nb serve` does by default
    on_serve = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(serve))
    assert free.cost == on_serve.cost == Decimal("0.00")
    cloud = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=5)
    config = {**cloud_config(cloud), "budget_usd": 1.0}
    outcomes = at_once(8, lambda: avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                                                  **config))
    refused = [o for o in outcomes if isinstance(o, CostUnknown)]
    assert cloud.stats()["created"] == 1 and len(refused) == 7, outcomes
    assert refused[0].spend == 0 and "is still running" in str(refused[0])


class Costless:
    """A fake Vtrix on loopback whose tasks complete at once with a usage of `usage` (no cost, or one unreadable)."""

    def __init__(self, usage: dict[str, Any]) -> None:
        from spark_nb import samples

        from .peers import Peer

        self.video, self.usage, self.created = samples.DRIVING_VIDEO.read_bytes(), usage, 0
        self.peer = Peer(self.handle)

    def handle(self, p: Any, conn: Any, req: Any) -> None:
        """create, poll and the video."""
        if req.path == "/model/v1/generation":
            self.created += 1
            return p.json(conn, 200, {"id": f"t-{self.created}", "status": "pending"})
        if "/task/" in req.path:
            content = {"url": f"{p.url}/video.mp4", "size": len(self.video)}
            return p.json(conn, 200, {"id": req.path.rsplit("/", 1)[-1], "status": "completed", "usage": self.usage,
                                      "output": [{"content": [content]}]})
        p.respond(conn, 200, self.video, {"Content-Type": "video/mp4"})


@pytest.mark.parametrize("usage", [{}, {"cost": "abc"}])
def test_a_service_that_reports_no_cost_pays_for_one_task_under_a_budget(usage: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    """The attack: a service whose completed tasks carry no cost (or one that cannot be read): six calls one after
    another under a $0.50 budget all completed, each counted at $0. Now a task that finished without a cost keeps
    the model's cost unknown: the first call runs, the next ones are refused naming it (the budget cannot count
    what they spend), of any model whose cost is unknown too (the sixth round: an imitator task was created beside
    it), with nothing uploaded or created; without a budget they run."""
    api = Costless(usage)
    config = {"backend": "cloud", "base_url": api.peer.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
    try:
        outcomes = []
        for n in range(6):
            try:
                avatar.generate(f"https://inputs.example/f{n}.jpg", "https://inputs.example/a.wav", progress=False,
                                budget_usd=0.5, timeout=30, **config)
                outcomes.append("completed")
            except CostUnknown as exc:
                outcomes.append(exc)
        assert outcomes[0] == "completed" and all(isinstance(o, CostUnknown) for o in outcomes[1:]), outcomes
        assert api.created == 1 and not outcomes[1].creator_alive
        assert "t-1" in str(outcomes[1]) and "without the service reporting its cost" in str(outcomes[1])
        assert "budget" in (outcomes[1].hint or "")
        from spark_nb import imitator  # the sixth round: another model's task of unknown cost was created beside it

        with pytest.raises(CostUnknown, match=r"t-1 \(spark_avatar_picture_omni_v2 at") as other:
            imitator.submit("https://inputs.example/h.jpg", "https://inputs.example/d.mp4", budget_usd=0.5, **config)
        assert "without the service reporting its cost" in str(other.value) and api.created == 1
        avatar.generate("https://inputs.example/g.jpg", "https://inputs.example/a.wav", progress=False, **config)
        assert api.created == 2
    finally:
        api.peer.stop()


def test_a_budget_of_nothing_pays_for_nothing(tmp_path: Path) -> None:
    """A variant the tester found surprising: a $0 budget paid for one task of unknown cost. Decided: a task of
    unknown cost starts only while something is left of the budget, so $0 pays for nothing; nothing is created."""
    api = Costless({"cost": "0.30"})
    config = {"backend": "cloud", "base_url": api.peer.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
    try:
        with pytest.raises(CostUnknown, match="nothing is left of the budget"):
            avatar.generate("https://inputs.example/f.jpg", "https://inputs.example/a.wav", progress=False,
                            budget_usd=0, **config)
        assert api.created == 0
    finally:
        api.peer.stop()


SUBMIT_AND_IDLE = """
task = avatar.submit(sys.argv[1], sys.argv[2])
print(task.id, flush=True)
sys.stdin.readline()  # a notebook left open: alive, never waiting for its task
"""


@pytest.mark.slow
def test_a_task_submitted_and_left_holds_the_budget_only_while_it_runs(make_server: MakeServer,
                                                                       media: dict[str, Path]) -> None:
    """The attack: kernel A submit()s and then idles; kernel B, under a budget, of the same model whose cost is not
    known yet, got CostUnknown "still running, wait for it" for as long as A lived, although the task had finished
    at the service long before (and a batch row waited its whole timeout). Now, while the task runs, B is refused
    with the line that finishes it; once it has finished, B's call asks the service once, records its end and
    cost in the journal, and runs."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=6)
    script = "import os, sys, spark_nb\nfrom spark_nb import avatar\n" + textwrap.dedent(SUBMIT_AND_IDLE)
    kid = subprocess.Popen([sys.executable, "-c", script, str(media["portrait"]), str(media["speech"])],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, **cloud_env(server)})
    try:
        assert kid.stdout is not None
        task_id = kid.stdout.readline().strip()
        assert task_id, kid.stderr.read() if kid.stderr else ""
        with pytest.raises(CostUnknown) as info:
            avatar.generate(media["portrait"], media["speech_mp3"], progress=False, budget_usd=20,
                            **cloud_config(server))
        assert info.value.creator_alive and "is still running" in str(info.value)
        assert f'spark_nb.Task.from_id("{task_id}", model="{info.value.model}").wait()' in (info.value.hint or "")
        record = server.service.tasks[task_id]
        deadline = time.monotonic() + 120
        while record.ready_at is None or time.time() < record.ready_at:  # finished at the service, not waited for
            assert time.monotonic() < deadline, "the task never finished"
            time.sleep(0.2)
        result = avatar.generate(media["portrait"], media["speech_mp3"], progress=False, budget_usd=20,
                                 **cloud_config(server))
        assert result.path.is_file() and server.stats()["created"] == 2
        first = next(e for e in spark_nb.history() if e.task_id == task_id)
        assert first.status == "completed" and first.cost is not None and float(first.cost) > 0
        assert kid.poll() is None  # A still lives, and never waited
    finally:
        kid.kill()
        kid.wait(timeout=30)


class Billing:
    """A fake Vtrix on loopback that bills $0.30 a task: its first task completes at once, the others keep running
    (so concurrent calls see them open in the journal); it accepts any Host name, as a gateway does."""

    def __init__(self) -> None:
        from spark_nb import samples

        from .peers import Peer

        self.video, self.created = samples.DRIVING_VIDEO.read_bytes(), 0
        self.peer = Peer(self.handle)
        self.port = self.peer.url.rsplit(":", 1)[1]

    def handle(self, p: Any, conn: Any, req: Any) -> None:
        """create, poll (t-1 completed, the others running) and the video."""
        if req.path == "/model/v1/generation":
            with p._lock:
                self.created += 1
                task_id = f"t-{self.created}"
            return p.json(conn, 200, {"id": task_id, "status": "pending"})
        if "/task/" in req.path:
            task_id = req.path.rsplit("/", 1)[-1]
            if task_id != "t-1":
                return p.json(conn, 200, {"id": task_id, "status": "running"})
            content = {"url": f"{p.url}/video.mp4", "size": len(self.video)}
            return p.json(conn, 200, {"id": task_id, "status": "completed", "usage": {"cost": "0.30"},
                                      "output": [{"content": [content]}]})
        p.respond(conn, 200, self.video, {"Content-Type": "video/mp4"})

    def config(self, tmp_path: Path, **extra: Any) -> dict[str, Any]:
        """The cloud path pointed at this fake (made-up input URLs: nothing is uploaded)."""
        return {"backend": "cloud", "base_url": self.peer.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out",
                **extra}

    def first_task(self, tmp_path: Path) -> None:
        """t-1, completed at $0.30 under the base URL as configured: the model's cost is known there."""
        result = avatar.generate("https://inputs.example/f.jpg", "https://inputs.example/a.wav", progress=False,
                                 timeout=30, **self.config(tmp_path))
        assert result.cost == Decimal("0.30") and self.created == 1


def submit_at_once(spellings: list[str], config: dict[str, Any]) -> list[Any]:
    """submit() from one thread per base URL spelling, released together: each one's Task or its SparkError."""
    barrier = threading.Barrier(len(spellings))

    def one(base_url: str) -> Any:
        barrier.wait(timeout=30)
        try:
            return avatar.submit(f"https://inputs.example/{len(base_url)}.jpg", "https://inputs.example/a.wav",
                                 **{**config, "base_url": base_url})
        except spark_nb.SparkError as exc:
            return exc

    with ThreadPoolExecutor(len(spellings)) as pool:
        return list(pool.map(one, spellings))


def test_spellings_of_one_base_url_are_one_service_to_the_budget(tmp_path: Path) -> None:
    """The attack (second round): $0.30 spent under a $0.50 budget, then five calls at once, each spelling the
    service's base URL otherwise (`HTTP://`, a trailing `/.`, `Http://`, a default port...). The budget's service
    was the URL as spelled, so each was a service whose cost was unknown and each created a task: $1.80 spent.
    Now a base URL has one spelling from where settings are read: each call is estimated at $0.30 and refused."""
    api = Billing()
    try:
        api.first_task(tmp_path)
        host = f"127.0.0.1:{api.port}"
        spellings = [f"HTTP://{host}", f"http://{host}/.", f"Http://{host}/", f"http://{host}/a/..",
                     f"http://{host}//./"]
        outcomes = submit_at_once(spellings, api.config(tmp_path, budget_usd=0.5))
        assert api.created == 1, outcomes
        assert all(type(o) is spark_nb.BudgetExceeded and o.estimate == Decimal("0.30") for o in outcomes), outcomes
        assert {spark_nb.settings(base_url=s, backend="cloud").base_url for s in spellings} == {api.peer.url}
    finally:
        api.peer.stop()


def test_a_running_task_of_unknown_cost_counts_and_blocks_at_every_address(tmp_path: Path) -> None:
    """A variant the canonical spelling cannot merge: names of one machine that are not one spelling (`localhost`,
    `127.1`, `2130706433`...: names are not resolved). $0.30 known at the configured URL, a $1 budget, five calls
    at once, one per name. Before, each was a service of unknown cost counted at $0 while running, so all five
    were created ($1.80). Now a running task of unknown cost counts at the model's dearest known cost, and blocks
    another task of unknown cost of that model at any address: one is created, four are refused naming it."""
    api = Billing()
    try:
        api.first_task(tmp_path)
        names = ["localhost", "127.1", "127.0.1", "2130706433", "0x7f.1"]
        outcomes = submit_at_once([f"http://{name}:{api.port}" for name in names],
                                  api.config(tmp_path, budget_usd=1.0))
        made = [o for o in outcomes if isinstance(o, spark_nb.Task)]
        refused = [o for o in outcomes if isinstance(o, CostUnknown)]
        assert (len(made), len(refused), api.created) == (1, 4, 2), outcomes
        said = str(refused[0])
        assert "none has finished there with a cost; at another address the dearest was $0.30" in said
        assert re.search(r"(task t-2|a task being created) at http://", said), said  # the one it waits for
        assert all(o.running == Decimal("0.30") for o in refused)  # counted at the dearest known cost
    finally:
        api.peer.stop()


def test_a_row_written_with_another_spelling_is_read_as_the_same_service(tmp_path: Path) -> None:
    """Journal rows written before base URLs had one spelling (`HTTP://HOST:PORT/./`) are the same service: their
    cost is known there, so tasks run at the estimate (before: the model's cost was unknown under the configured
    spelling, and the second task at once was refused as one of unknown cost)."""
    import contextlib
    import sqlite3

    api = Billing()
    try:
        api.first_task(tmp_path)
        home = Path(os.environ["SPARK_NB_HOME"])
        with contextlib.closing(sqlite3.connect(home / "journal.sqlite")) as db, db:
            db.execute("UPDATE tasks SET base_url = ?", (f"HTTP://127.0.0.1:{api.port}/./",))
        config = api.config(tmp_path, budget_usd=1.0)
        for n in (2, 3):
            avatar.submit(f"https://inputs.example/{n}.jpg", "https://inputs.example/a.wav", **config)
        with pytest.raises(spark_nb.BudgetExceeded) as info:
            avatar.submit("https://inputs.example/4.jpg", "https://inputs.example/a.wav", **config)
        assert type(info.value) is spark_nb.BudgetExceeded and api.created == 3
        assert info.value.running == Decimal("0.60")
    finally:
        api.peer.stop()


class LostAnswers:
    """A fake Vtrix on loopback whose create of task t-N, for N in lost, makes a task but loses its answer (the
    connection closes), as a dropped network does; the others answer, t-N for N in done completes at $0.30, and
    the rest keep running. It accepts any Host name, as a gateway does."""

    def __init__(self, lost: set[int], done: set[int]) -> None:
        from spark_nb import samples

        from .peers import Peer

        self.video, self.created, self.lost, self.done = samples.DRIVING_VIDEO.read_bytes(), 0, lost, done
        self.peer = Peer(self.handle)

    def handle(self, p: Any, conn: Any, req: Any) -> None:
        """create (some answers lost), poll (some completed, the others running) and the video."""
        if req.path == "/model/v1/generation":
            with p._lock:
                self.created += 1
                number = self.created
            if number in self.lost:
                return None  # made, billed, and its answer never sent
            return p.json(conn, 200, {"id": f"t-{number}", "status": "pending"})
        if "/task/" in req.path:
            task_id = req.path.rsplit("/", 1)[-1]
            if task_id not in {f"t-{n}" for n in self.done}:
                return p.json(conn, 200, {"id": task_id, "status": "running"})
            content = {"url": f"{p.url}/video.mp4", "size": len(self.video)}
            return p.json(conn, 200, {"id": task_id, "status": "completed", "usage": {"cost": "0.30"},
                                      "output": [{"content": [content]}]})
        p.respond(conn, 200, self.video, {"Content-Type": "video/mp4"})


def test_a_create_that_lost_its_answer_holds_the_turn_of_unknown_cost(tmp_path: Path) -> None:
    """The attack (fourth round): creates whose answers were lost counted $0 and held nothing back, so under a
    $0.10 budget three tasks of unknown cost were made. Now such a create holds the one turn of unknown cost: the
    next budgeted call is refused naming it, until a call without the budget makes the cost known; the lost
    create then counts at that cost, as a running task does."""
    api = LostAnswers(lost={1}, done={2})
    try:
        config = {"backend": "cloud", "base_url": api.peer.url, "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
        with pytest.raises(spark_nb.TaskMayExist):
            avatar.submit("https://inputs.example/1.jpg", "https://inputs.example/a.wav", budget_usd=5, **config)
        for n in (2, 3):
            with pytest.raises(CostUnknown) as refused:
                avatar.submit(f"https://inputs.example/{n}.jpg", "https://inputs.example/a.wav", budget_usd=5,
                              **config)
            assert "lost its answer" in str(refused.value) and "without the budget" in (refused.value.hint or "")
        assert api.created == 1
        known = avatar.generate("https://inputs.example/4.jpg", "https://inputs.example/a.wav", progress=False,
                                timeout=30, **config)
        assert known.cost == Decimal("0.30") and api.created == 2
        with pytest.raises(spark_nb.BudgetExceeded) as over:  # $0.30 spent, $0.30 the lost create, $0.30 this one
            avatar.submit("https://inputs.example/5.jpg", "https://inputs.example/a.wav", budget_usd=0.8, **config)
        assert type(over.value) is spark_nb.BudgetExceeded and over.value.running == Decimal("0.30")
        avatar.submit("https://inputs.example/6.jpg", "https://inputs.example/a.wav", budget_usd=1, **config)
        assert api.created == 3
    finally:
        api.peer.stop()


def test_a_lost_create_of_a_model_priced_elsewhere_holds_the_turn_for_every_model(tmp_path: Path) -> None:
    """The attack (fifth round): one service at two names (`localhost`, `127.0.0.1`: two services, as names are not
    resolved). The avatar model priced at one; at the other an avatar create lost its answer, so its cost there is
    unknown. An imitator call there (its cost known nowhere) was created anyway: the lost create did not block it,
    since its model had a price somewhere, and two tasks of unknown cost ran at once under the budget. A task whose
    cost at its own service is unknown now blocks every call of unknown cost, whatever the models."""
    from spark_nb import imitator

    api = LostAnswers(lost={2}, done={1})
    try:
        port = api.peer.url.rsplit(":", 1)[1]
        config = {"backend": "cloud", "api_key": TEST_KEY, "output_dir": tmp_path / "out"}
        priced = avatar.generate("https://inputs.example/1.jpg", "https://inputs.example/a.wav", progress=False,
                                 timeout=30, base_url=f"http://localhost:{port}", **config)
        assert priced.cost == Decimal("0.30")
        here = {**config, "base_url": f"http://127.0.0.1:{port}", "budget_usd": 50}
        with pytest.raises(spark_nb.TaskMayExist):
            avatar.submit("https://inputs.example/2.jpg", "https://inputs.example/a.wav", **here)
        with pytest.raises(CostUnknown) as refused:
            imitator.submit("https://inputs.example/3.jpg", "https://inputs.example/d.mp4", **here)
        assert "lost its answer" in str(refused.value) and api.created == 2
    finally:
        api.peer.stop()
