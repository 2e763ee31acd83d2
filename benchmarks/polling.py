"""Polling: how late each client notices a finished task, and how many polls it spends, side by side.

For each task length, spark_nb's generate() and two fixed-interval pollers written like the official
CLI (create once, then GET the task every N seconds) run at the same time against one local server
with the same inputs. The server records when each task completed and when a poll first told the
client so; the difference is the notice delay.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from spark_nb import avatar, samples
from spark_nb.local import LocalServer

from .report import Table, verdict

KEY = "benchmark-key"
NOTICE_SLACK_S = 0.4
EXTRA_POLLS = 2


def fixed_poller(base_url: str, params: dict, interval: float) -> Callable[[], str]:
    """A client like the official CLI: one create, then a GET every `interval` seconds until done."""
    def go() -> str:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            task = http.post("/model/v1/generation",
                             json={"model": avatar.MODEL.id, "input": [{"params": params}]}).json()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                time.sleep(interval)
                state = http.get(f"/model/v1/generation/task/{task['id']}").json()
                if state["status"] in ("completed", "failed"):
                    return str(task["id"])
            raise TimeoutError(f"task {task['id']} did not finish")
    return go


def _upload(base_url: str, path: Path) -> str:
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {KEY}"}) as http:
        answer = http.post(f"{base_url}/api/v1/storage/files", files={"file": (path.name, path.read_bytes())})
        answer.raise_for_status()
        body = answer.json()
        return str(body.get("url") or body["data"]["url"])


def _one_round(server: LocalServer, urls: dict[str, str], out_dir: str) -> dict[str, tuple[float, int]]:
    """Run the three clients at once; (notice delay s, polls) for each."""
    base = server.url.rstrip("/")
    params = {"image_url": urls["image"], "audio_url": urls["audio"]}

    def ours() -> str:
        return avatar.generate(urls["image"], urls["audio"], backend="cloud", base_url=base, api_key=KEY,
                               output_dir=out_dir, progress=False, timeout=600, reuse=False).task_id

    clients = {"spark_nb generate()": ours, "fixed 1 s poller": fixed_poller(base, params, 1.0),
               "fixed 5 s poller (official CLI)": fixed_poller(base, params, 5.0)}
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        futures = {name: pool.submit(client) for name, client in clients.items()}
        task_ids = {name: future.result(timeout=700) for name, future in futures.items()}
    figures = {}
    for name, task_id in task_ids.items():
        record = server.service.tasks[task_id]
        assert record.noticed_at is not None and record.ready_at is not None
        figures[name] = (record.noticed_at - record.ready_at, record.polls)
    return figures


def run(quick: bool = False) -> Table:
    """Notice delay and polls per task for tasks lasting 6, 15 and 40 s (2 s with quick), medians of runs."""
    latencies = [2.0] if quick else [6.0, 15.0, 40.0]
    runs = 1 if quick else 3
    table = Table("Polling",
                  f"notice within {NOTICE_SLACK_S} s of the 1 s poller, with no more polls than the 5 s poller + "
                  f"{EXTRA_POLLS}",
                  ["task length s", "client", "notice delay s (median)", "polls (median)", "verdict"])
    out_dir = tempfile.mkdtemp(prefix="spark_nb_bench_poll_")
    for latency in latencies:
        server = LocalServer(latency=latency, api_key=KEY).start()
        try:
            urls = {"image": _upload(server.url, samples.PORTRAIT), "audio": _upload(server.url, samples.SPEECH)}
            rounds = [_one_round(server, urls, out_dir) for _ in range(runs)]
        finally:
            server.stop()
        med = {name: (statistics.median(r[name][0] for r in rounds), statistics.median(r[name][1] for r in rounds))
               for name in rounds[0]}
        ours = med["spark_nb generate()"]
        ok = (ours[0] <= med["fixed 1 s poller"][0] + NOTICE_SLACK_S
              and ours[1] <= med["fixed 5 s poller (official CLI)"][1] + EXTRA_POLLS)
        for name, (delay, polls) in med.items():
            table.rows.append([latency, name, delay, polls, verdict(ok) if name.startswith("spark_nb") else ""])
    table.notes.append(f"Medians of {runs} rounds; in each round the three clients ran at the same time on one server. "
                       "Completion and notice times are the server's own clock. These task lengths are whole multiples "
                       "of the fixed pollers' intervals, so their polls land just after the end (near-zero delays); "
                       "on tasks of arbitrary length they notice half an interval late on average.")
    return table
