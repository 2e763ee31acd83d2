"""Batches against what the attack on issue 25 did to them (real job kernels, a real local server on loopback, the
journal on disk): a task paid for is resumed and reused however its input URL has expired since, and a rerun of an
interrupted `--no-reuse` batch resumes its own tasks instead of paying for them again."""

from __future__ import annotations

import csv
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from spark_nb import _inputs_url, avatar
from spark_nb._money import format_usd
from spark_nb.batch import ManifestError, run_batch
from spark_nb.batch import _job as job
from spark_nb.errors import ValidationError, WriteError

from .peers import Peer, Seen, peers
from .test_batch import journal_states, use_server, write_manifest
from .test_pipeline import faceless

pytestmark = pytest.mark.slow


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[Peer, socket.socket, Seen], None]], Peer]]:
    yield from peers()


def test_a_task_paid_for_is_resumed_and_reused_after_its_url_expired(
        tmp_path: Path, media: dict[str, Path], make_server: type, peer: Callable[..., Peer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An image URL (a presigned URL) that stops answering once its task was created: the batch resumes that task
    (before: the manifest check asked the URL first and said "nothing was run", with --skip-invalid "no row is
    valid": a paid task left unfinished), a rerun into a new folder reuses it, and neither asks the URL again. A
    row that would pay for a new task is still refused, its hint naming SPARK_NB_CHECK_URLS=0."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET")
    use_server(monkeypatch, server)
    monkeypatch.delenv("SPARK_NB_CHECK_URLS")  # the check on, as by default
    _inputs_url._verdicts.clear()
    portrait, expired = media["portrait"].read_bytes(), [False]
    host = peer(lambda p, conn, req: p.respond(conn, 404, b"expired") if expired[0]
                else p.respond(conn, 200, portrait, {"Content-Type": "image/jpeg"}))
    url = f"{host.url}/face.jpg"
    task = avatar.submit(url, media["speech"])  # as an interrupted batch leaves it: created, not waited for
    for _ in range(600):  # the service has fetched the image and rendered (bounded: 60 s)
        if task.status().done:
            break
        time.sleep(0.1)
    expired[0] = True
    _inputs_url._verdicts.clear()  # a new process: nothing remembered
    asked = len(host.seen)
    manifest = write_manifest(tmp_path, [{"name": "r1", "model": "avatar", "image": url,
                                          "audio": str(media["speech"])}])

    [resumed] = run_batch(manifest, tmp_path / "out", progress=False)
    assert resumed.status == "completed" and resumed.task_id == task.id
    [reused] = run_batch(manifest, tmp_path / "again", progress=False, skip_invalid=True)
    assert reused.status == "completed" and reused.reused and reused.task_id == task.id
    assert server.stats()["created"] == 1 and len(host.seen) == asked  # the URL was not asked again

    with pytest.raises(ManifestError) as info:  # a new take would pay: its URL is asked for, and refused
        run_batch(manifest, tmp_path / "new-take", progress=False, reuse=False)
    assert "HTTP 404" in str(info.value) and "SPARK_NB_CHECK_URLS=0" in (info.value.hint or "")
    assert server.stats()["created"] == 1


def test_a_no_reuse_batch_rerun_resumes_its_own_tasks_and_ignores_earlier_takes(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--no-reuse` makes a new take of takes from before the batch, never of the batch's own: a rerun of a
    --no-reuse batch interrupted while one row's task ran and after another's finished (task.json, result.json and
    journal attempts, made from their row folders, exactly as the runner leaves them) resumes the first task and
    keeps the finished one (before: paid for a second task of each, the third attack found the finished one); a row
    whose inputs an earlier generate() made gets a new task. generate(reuse=False) twice while the first runs makes
    two takes, as asked."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET")
    use_server(monkeypatch, server)
    earlier = avatar.generate(media["portrait"], media["speech"], progress=False)
    manifest = write_manifest(tmp_path, [
        {"name": "own", "model": "imitator", "image": str(media["portrait"]), "driving_video": str(media["driving"])},
        {"name": "again", "model": "avatar", "image": str(media["portrait"]), "audio": str(media["speech"])},
        {"name": "done", "model": "imitator", "image": str(media["portrait"]),
         "driving_video": str(media["silent_driving"])},
    ])
    out = tmp_path / "out"
    inputs = {"image": str(media["portrait"].resolve()), "driving_video": str(media["driving"].resolve())}
    own = job.submit_or_resume("imitator", inputs, out / "own", name="own", reuse=False)  # then interrupted
    finished = job.submit_or_resume("imitator", {**inputs, "driving_video": str(media["silent_driving"].resolve())},
                                    out / "done", name="done", reuse=False)
    job.finish(finished, out / "done", name="done", timeout=120)
    assert server.stats()["created"] == 3

    outcomes = {o.name: o for o in run_batch(manifest, out, progress=False, reuse=False)}
    assert outcomes["own"].status == "completed" and outcomes["own"].task_id == own.id
    assert outcomes["done"].status == "completed" and outcomes["done"].task_id == finished.id
    assert outcomes["again"].status == "completed" and outcomes["again"].task_id != earlier.task_id
    assert server.stats()["created"] == 4  # the earlier take, the rows' own (resumed, kept), one new take
    assert sorted(state for _, state, _ in journal_states(out)) == ["completed", "completed", "completed"]

    first = avatar.submit(media["portrait"], media["speech"], reuse=False)
    second = avatar.submit(media["portrait"], media["speech"], reuse=False)
    assert first.id != second.id and server.stats()["created"] == 6


def test_a_no_reuse_rerun_keeps_a_rows_lost_create_whatever_was_made_since(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack (fourth round): a --no-reuse row whose create lost its answer is uncertain; a take of the same
    inputs made since in a notebook hid the row's own attempt (the journal's newest attempt was the notebook's), so
    the next rerun paid for a new task. Now the row's own attempt is the newest made from its folder, in one query:
    the rerun still says uncertain and creates nothing."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET", faults="create:reset_after:1.0")
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [{"name": "take1", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    out = tmp_path / "out"
    [lost] = run_batch(manifest, out, progress=False, reuse=False)
    assert lost.status == "uncertain" and server.stats()["created"] == 1
    server.options.faults.faults.clear()  # the service answers again
    avatar.generate(media["portrait"], media["speech"], reuse=False, progress=False, output_dir=tmp_path / "nb")
    assert server.stats()["created"] == 2
    [again] = run_batch(manifest, out, progress=False, reuse=False)
    assert again.status == "uncertain" and "--resubmit-uncertain" in (again.error or "")
    assert server.stats()["created"] == 2


def test_a_no_reuse_rerun_in_a_moved_folder_keeps_its_own_rows(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack (fifth round): a --no-reuse row whose create lost its answer, its output folder then moved (or
    renamed), was paid again on the rerun: its own attempt was known by the folder's old path only. The folder's
    own files (result.json, task.json) now say which attempt is its own: the lost create stays uncertain, and a
    finished row keeps its task."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET", faults="create:reset_after:1.0")
    use_server(monkeypatch, server)
    lost = {"name": "lost", "model": "avatar", "image": str(media["portrait"]), "audio": str(media["speech"])}
    done = {"name": "done", "model": "imitator", "image": str(media["portrait"]),
            "driving_video": str(media["driving"])}
    out, moved = tmp_path / "out", tmp_path / "moved"
    [first] = run_batch(write_manifest(tmp_path, [lost]), out, progress=False, reuse=False)
    assert first.status == "uncertain" and server.stats()["created"] == 1
    server.options.faults.faults.clear()  # the service answers again
    both = write_manifest(tmp_path, [lost, done])
    made = {o.name: o for o in run_batch(both, out, progress=False, reuse=False)}
    assert (made["lost"].status, made["done"].status) == ("uncertain", "completed")
    assert server.stats()["created"] == 2
    out.rename(moved)
    again = {o.name: o for o in run_batch(both, moved, progress=False, reuse=False)}
    assert again["lost"].status == "uncertain" and "--resubmit-uncertain" in (again["lost"].error or "")
    assert again["done"].status == "completed" and again["done"].task_id == made["done"].task_id
    assert server.stats()["created"] == 2


def test_a_strict_rerun_refuses_a_row_the_journal_answers_as_it_refuses_a_new_one(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch run without strict, then again with strict=True (--strict): the faceless row fails with the no-face
    refusal naming its earlier take (before: reused, completed, exit 0), the other row is reused; nothing is paid."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET")
    use_server(monkeypatch, server)
    landscape = faceless(tmp_path / "landscape.jpg")
    manifest = write_manifest(tmp_path, [
        {"name": "face", "model": "avatar", "image": str(media["portrait"]), "audio": str(media["speech"])},
        {"name": "landscape", "model": "avatar", "image": str(landscape), "audio": str(media["speech"])},
    ])
    first = {o.name: o for o in run_batch(manifest, tmp_path / "out", progress=False)}
    assert {o.status for o in first.values()} == {"completed"}

    again = {o.name: o for o in run_batch(manifest, tmp_path / "out", progress=False, strict=True)}
    assert again["face"].status == "completed" and again["face"].reused
    error = again["landscape"].error or ""
    assert again["landscape"].status == "failed" and "no face found" in error and "strict mode" in error
    assert f"an earlier take of these inputs exists, task {first['landscape'].task_id}" in error
    assert server.stats()["created"] == 2


def test_a_rerun_never_brings_a_linked_file_in_nor_writes_through_a_linked_row_folder(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """(A) the row's video the journal names replaced by a link to a private file, the manifest run into a new
    folder: the row is reused, its video fetched again, the private file nowhere in the new folder (before: linked
    into out2/r1/ and the gallery's media/). (B) the old row folder replaced by a link to another folder, the
    manifest run into the old folder again: refused before anything runs, the other folder untouched (before:
    the rerun wrote its notebook, task.json, result.json and video there)."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET")
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [{"name": "r1", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    [first] = run_batch(manifest, tmp_path / "out", progress=False)
    assert first.status == "completed" and first.video is not None
    private = tmp_path / "private.txt"
    private.write_bytes(b"PRIVATE KEY MATERIAL " * 8)
    moved = tmp_path / "moved.mp4"
    first.video.rename(moved)
    os.symlink(private, first.video)

    [again] = run_batch(manifest, tmp_path / "out2", progress=False)
    assert again.status == "completed" and again.task_id == first.task_id and server.stats()["created"] == 1
    assert again.video is not None and not again.video.is_symlink() and again.video.read_bytes() == moved.read_bytes()
    assert all(b"PRIVATE KEY" not in path.read_bytes() for path in (tmp_path / "out2").rglob("*") if path.is_file())

    first.video.unlink()
    moved.rename(first.video)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("do not touch")
    (tmp_path / "out" / "r1").rename(tmp_path / "r1-old")
    os.symlink(victim, tmp_path / "out" / "r1")
    with pytest.raises(ValidationError) as info:
        run_batch(manifest, tmp_path / "out", progress=False)
    assert info.value.reason == "unusable_output_dir" and "is a link" in str(info.value)
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"] and server.stats()["created"] == 1
    with pytest.raises(WriteError):  # a row writer made to write there all the same refuses
        job.write_task_file(tmp_path / "out" / "r1", first.task_id or "", "avatar", "r1")
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt"]


def test_a_batch_never_writes_a_row_notebook_through_a_link_planted_in_its_folder(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """An output folder prepared by someone else: out/r1/ a real folder, out/r1/r1.ipynb a link to the user's
    ~/.bashrc. The batch runs the row and its executed notebook replaces the link (the .bashrc untouched, no part
    file left; before: papermill opened the link and wrote the 288 KB notebook into the .bashrc); the notebook
    records its own path, as papermill does."""
    server = make_server(api_key="sk-test-0123456789abcdefSECRET")
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [{"name": "r1", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    out = tmp_path / "out"
    (out / "r1").mkdir(parents=True)
    bashrc = tmp_path / "victim-home" / ".bashrc"
    bashrc.parent.mkdir()
    bashrc.write_text("export PATH=$HOME/bin:$PATH\n")
    os.symlink(bashrc, out / "r1" / "r1.ipynb")

    [row] = run_batch(manifest, out, progress=False)

    notebook = out / "r1" / "r1.ipynb"
    assert row.status == "completed" and row.notebook == notebook
    assert bashrc.read_text() == "export PATH=$HOME/bin:$PATH\n"
    assert not notebook.is_symlink() and notebook.is_file()
    executed = json.loads(notebook.read_text())
    assert executed["metadata"]["papermill"]["output_path"].endswith(os.path.join("out", "r1", "r1.ipynb"))
    assert any(cell.get("outputs") for cell in executed["cells"]), "the notebook written is the executed one"
    assert [p.name for p in out.rglob("*.part*")] == []


def test_a_batch_says_what_this_run_spent_the_same_way_everywhere_and_marks_reused_rows(
        tmp_path: Path, media: dict[str, Path], make_server: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two rows paid for by a first run, then a manifest of those two, a new row and a row identical to it: the
    closing line, index.html's and gallery.ipynb's headers and spark_nb.batch.spent() say "spent by this run: $X
    (2 rows reused from earlier runs, 1 the same as another row)", X the new row's cost only (before: the gallery's
    "total cost" summed every row's, whenever paid); results.csv and rows.json say which rows are reused, and each
    reused card carries a mark."""
    from spark_nb.batch import spent, summary

    server = make_server(api_key="sk-test-0123456789abcdefSECRET", cost_per_second=0.25)
    use_server(monkeypatch, server)
    portrait, speech = str(media["portrait"]), str(media["speech"])
    earlier = [{"name": "one", "model": "avatar", "image": portrait, "audio": speech},
               {"name": "two", "model": "imitator", "image": portrait, "driving_video": str(media["driving"])}]
    run_batch(write_manifest(tmp_path, earlier), tmp_path / "first", progress=False)
    manifest = write_manifest(tmp_path, [*earlier, {"name": "new", "model": "avatar", "image": portrait,
                                                    "audio": str(media["speech_mp3"])},
                                         {"name": "twin", "model": "avatar", "image": portrait,
                                          "audio": str(media["speech_mp3"])}])
    out = tmp_path / "out"
    outcomes = {o.name: o for o in run_batch(manifest, out, progress=False)}
    assert server.stats()["created"] == 3 and {o.status for o in outcomes.values()} == {"completed"}
    new_cost = outcomes["new"].cost
    assert new_cost and Decimal(new_cost) > 0 and all(Decimal(outcomes[n].cost or 0) > 0 for n in ("one", "two"))
    said = f"spent by this run: {format_usd(Decimal(new_cost))} (2 rows reused from earlier runs, 1 the same as " \
           "another row)"
    assert spent(list(outcomes.values())) == said and summary(list(outcomes.values())).endswith(f"; {said}")
    assert said in (out / "index.html").read_text()
    assert said.replace("$", "&#36;") in (out / "gallery.ipynb").read_text()  # a $ in markdown would start TeX
    with (out / "results.csv").open(newline="") as fh:
        table = {row["name"]: row for row in csv.DictReader(fh)}
    reused = {name: row["reused"] for name, row in table.items()}
    assert reused == {"one": "yes", "two": "yes", "new": "", "twin": "yes"}
    rows = {row["name"]: row for row in json.loads((out / "rows.json").read_text())["rows"]}
    assert {name: row["reused"] for name, row in rows.items()} == {"one": True, "two": True, "new": False, "twin": True}
    page = (out / "index.html").read_text()
    assert page.count('<span class="reused"') == 3
