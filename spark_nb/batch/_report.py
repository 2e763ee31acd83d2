"""A batch's outputs for people and machines: results.csv, rows.json, and the gallery twice: index.html (opens from
disk) and gallery.ipynb (opens in JupyterLab).

The one writer of the batch folder's own files: each is written whole under a temporary name and renamed (a crash or
an interrupt leaves the old file or the new, and no temporary file: a failed write removes its own, and the final
write of a run sweeps those of killed processes); their names (OWN_NAMES) are refused as row names by the manifest
check. Text from elsewhere (row names, task ids, errors, file names) is made inert for each destination: a
spreadsheet never evaluates a results.csv cell (`_text.csv_cell`), HTML shows it escaped (`_text.inert`, then
`html.escape`, in _cards), a notebook holds that HTML as a JSON string.

Every path these files name is relative to the batch folder and inside it, so the folder can be moved, zipped,
shared, or served by Jupyter (whose /files/ handler serves nothing outside its root): a file that lives elsewhere
(an input in the bundled samples or the manifest's folder; a video the journal saw in another folder) is
hard-linked into out/media/ when on the same file system, else copied; a big image is shown by a thumbnail instead.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._answers import parse_json
from .._boundary import path_argument
from .._files import link_atomically, remove_stale_parts, replace_atomically, write_atomically
from .._money import format_usd
from .._task_state import as_number
from .._text import csv_cell
from .._urls import is_http_url, shown_url
from ..models import MODELS
from . import _cards as cards
from ._outcome import RowOutcome, RowStatus, outcomes_argument
from ._record import row_folder

if TYPE_CHECKING:
    from IPython.core.display import HTML

CSV_COLUMNS = ["name", "model", "task_id", "status", "video", "duration", "cost", "reused", "notebook", "error",
               "advice"]
MEDIA_DIR = "media"  # out/media/: the gallery's copies (or links, or thumbnails) of files from outside out
# the batch folder's own files and folders (gallery.ipynb: the notebook that shows the gallery): no row may be
# named so, in any case (a row's folder would take the file's place, or share media/ with the gallery's copies)
NOTEBOOK = "gallery.ipynb"  # the gallery as JupyterLab opens it
OWN_NAMES = ("index.html", "results.csv", "rows.json", MEDIA_DIR, NOTEBOOK)
OWN_FOLDERS = (MEDIA_DIR,)  # of OWN_NAMES, those that are folders; the others are files, replaced whole
ROWS_MAX_BYTES = 64 * 1024 * 1024  # rows.json read back by gallery(): a few hundred bytes a row
THUMBNAIL_PX = 480  # the longest side of a thumbnail
THUMBNAIL_OVER_BYTES = 512 * 1024  # images larger than this (or than THUMBNAIL_PX * 2) are shown by a thumbnail
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ROW_VIDEO = "row video"  # the kind _held knows a row's own video by (an input video is "video")
_OWN_KINDS = (ROW_VIDEO, "notebook")
_STATUSES = frozenset(status.value for status in RowStatus)
# the folders of an absolute path (or one from ~) in a message: not inside a URL (after a host, "://") or a word
_LOCAL_PATH = re.compile(r"(?<![\w.:/~-])~?/(?:[^\s'\"()<>;,/]+/)+(?=[^\s'\"()<>;,/])")


def check_output_folder(out: Path, row_names: Sequence[str]) -> None:
    """Refuse (before anything runs or is paid) an output folder the batch could not write its reports into:
    `out` must be a folder (or absent, under a folder) this user may write; each of its own files absent or a
    file, its media folder and each row's folder absent or a folder inside it, never a link. ValidationError listing
    every obstacle."""
    from ..errors import ValidationError

    problems = _folder_problems(out)
    if not problems and out.is_dir():
        for name in OWN_NAMES:
            if name not in OWN_FOLDERS and (kind := _kind(out / name)) not in (None, "file"):
                problems.append(f"{out / name} is a {kind}, where the batch writes its {name}")
        for name in (*OWN_FOLDERS, *row_names):
            what = "the gallery's media folder" if name in OWN_FOLDERS else f"the folder of row {name!r}"
            if (out / name).is_symlink():  # its files would be written wherever it points, outside the folder
                problems.append(f"{out / name} is a link (to {os.path.realpath(out / name)}), where the batch "
                                f"makes {what} inside the folder")
            elif (kind := _kind(out / name)) not in (None, "folder"):
                problems.append(f"{out / name} is a {kind}, where the batch makes {what}")
    if problems:
        raise ValidationError("the batch cannot write into its output folder: " + "; ".join(problems),
                              reason="unusable_output_dir",
                              hint="move those out of the way, or pass another folder as out_dir (--out); nothing "
                                   "was run or paid")


def _folder_problems(out: Path) -> list[str]:
    """What keeps this user from making or writing the folder out (its nearest existing ancestor must be a writable
    folder when it does not exist yet)."""
    existing = out
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        what = "the output folder" if existing == out else f"a folder of the path of {out}"
        return [f"{existing} is a {_kind(existing)}, where {what} should be"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{existing} is a folder this user may not write into"]
    return []


def _kind(path: Path) -> str | None:
    """"folder" (also through a link), "file" (also a link to one), another kind of thing, or None when absent."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "dangling link" if os.path.islink(path) else None
    except OSError as exc:
        return f"path that cannot be used ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    return "FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"


def write_results_csv(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/results.csv, one line per row; paths relative to out and inside it; every cell one a spreadsheet shows,
    never runs."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for o in outcomes:
        row = {"name": o.name, "model": o.model, "task_id": o.task_id, "status": o.status,
               "video": _kept(o.video, out, ROW_VIDEO), "duration": o.duration, "cost": o.cost,
               "reused": "yes" if o.reused else "", "notebook": _kept(o.notebook, out, "notebook"),
               "error": _shareable(o.error), "advice": _shareable(o.advice)}
        writer.writerow({column: csv_cell(value) for column, value in row.items()})
    return write_atomically(out / "results.csv", text.getvalue())


def write_rows_json(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/rows.json: the batch's rows as the journal knows them, every path relative to out and inside it (each
    input as the folder holds it: its copy in media/, a thumbnail for a big image, or its URL)."""
    path = out / "rows.json"
    rows = [{"name": o.name, "model": o.model, "status": str(o.status), "task_id": o.task_id,
             "video": _kept(o.video, out, ROW_VIDEO) or None, "duration": o.duration, "cost": o.cost,
             "notebook": _kept(o.notebook, out, "notebook") or None, "error": _shareable(o.error),
             "reused": o.reused, "same_as": o.same_as, "advice": _shareable(o.advice), "inputs": _inputs_kept(o, out)}
            for o in outcomes]
    return write_atomically(path, json.dumps({"rows": rows}, indent=2))


def gallery_html(out: str | os.PathLike[str], outcomes: Sequence[RowOutcome],
                 relative_to: str | os.PathLike[str] | None = None) -> str:
    """The gallery's cards as HTML to show inline in a notebook (IPython.display.HTML).

    Inline, not in an IFrame: Jupyter serves /files/ pages sandboxed, and a sandboxed page's media requests go
    without the login cookie, so an IFrame of index.html shows black players even for files inside the root.

    Args:
        out: the batch's output folder.
        outcomes: the rows' outcomes.
        relative_to: the notebook's folder, which the srcs are relative to (so JupyterLab serves them from
            /files/); None: the working directory.

    Returns:
        The HTML of the cards.
    """
    out, outcomes = path_argument(out, "out"), outcomes_argument(outcomes)
    base = path_argument(relative_to, "relative_to") if relative_to is not None else Path.cwd()
    return cards.grid([_card(out, o, base) for o in outcomes])


def write_gallery_notebook(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/gallery.ipynb: the gallery as a notebook's saved output, which JupyterLab shows on opening, without
    running anything and without trusting the notebook (its sanitizer keeps the players and their relative srcs,
    which its /files/ handler serves with the user's session). Running its cell draws it again from rows.json."""
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "about", "metadata": {}, "source": [
                "# spark-nb batch\n", "\n",
                f"{cards.tally(outcomes).replace('$', '&#36;')} · [results.csv](results.csv) · "  # $: no TeX
                "[rows.json](rows.json)\n", "\n",
                "The gallery below is this notebook's saved output: it shows without running anything. "
                "`index.html` shows the same cards in a browser outside JupyterLab (opened from disk, or shared)."]},
            {"cell_type": "code", "execution_count": None, "id": "gallery", "metadata": {},
             "source": ["from spark_nb import batch\n", "\n",
                        "batch.gallery()  # draws the cards again from rows.json, in this notebook's folder"],
             "outputs": [{"output_type": "display_data", "metadata": {},
                          "data": {"text/html": gallery_html(out, outcomes, relative_to=out),
                                   "text/plain": [f"<spark-nb batch gallery: {len(outcomes)} rows>"]}}]},
        ],
        "metadata": _kernel_metadata(),
        "nbformat": 4, "nbformat_minor": 5,
    }
    return write_atomically(out / NOTEBOOK, json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")


@functools.cache
def _kernel_metadata() -> dict[str, Any]:
    """The kernelspec and language_info JupyterLab writes into a notebook once its python3 kernel connects (as
    ipykernel reports them for this Python), so opening the gallery leaves it unmodified: with less, JupyterLab
    filled them in on opening and asked to save a notebook no one had changed."""
    import sys

    display_name = "Python 3 (ipykernel)"
    try:
        from jupyter_client.kernelspec import get_kernel_spec

        display_name = get_kernel_spec("python3").display_name
    except Exception:  # no kernelspec here (a machine without Jupyter): ipykernel's own name
        pass
    return {"kernelspec": {"display_name": display_name, "language": "python", "name": "python3"},
            "language_info": {"codemirror_mode": {"name": "ipython", "version": sys.version_info[0]},
                              "file_extension": ".py", "mimetype": "text/x-python", "name": "python",
                              "nbconvert_exporter": "python", "pygments_lexer": f"ipython{sys.version_info[0]}",
                              "version": sys.version.split()[0]}}


def write_gallery(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/index.html: each row's video, inputs, status and cost, with relative links (opens from disk); at its
    top, visibly, that inside JupyterLab gallery.ipynb is the one to open.

    The last report a run writes: it also removes what writers killed mid-write left in the batch folder, its
    media folder and the rows' folders (their processes are gone; this one's own writers clean up after
    themselves).
    """
    _sweep(out, outcomes)
    return write_atomically(out / "index.html", cards.page(outcomes, [_card(out, o) for o in outcomes]))


def _sweep(out: Path, outcomes: Sequence[RowOutcome]) -> None:
    """Remove temporary files of dead writers from out, out/media and each row's folder (only folders in out)."""
    root = out.resolve()
    folders = {root, root / MEDIA_DIR}
    folders.update(folder for o in outcomes if (folder := (root / o.name).resolve()).parent == root)
    for folder in folders:
        if folder.is_dir():
            remove_stale_parts(folder)


def _card(out: Path, o: RowOutcome, base: Path | None = None) -> str:
    """One row's card; every src relative to base (default out), every file it shows inside out."""
    base = out if base is None else base
    kinds = {f.name: f.kind for f in MODELS[o.model].fields} if o.model in MODELS else {}
    shown = []
    for field, value in o.inputs.items():
        if not value:
            continue
        kind = kinds.get(field, "")
        if is_http_url(value):
            shown.append(cards.Shown(field, kind, value, shown_url(value)))
        else:  # never an absolute path in the page: the file's name, and its copy inside out
            shown.append(cards.Shown(field, kind, _shown(Path(value), out, kind, base), Path(value).name))
    video_src = _shown(o.video, out, ROW_VIDEO, base) if o.video else None
    notebook = _href(o.notebook, base) if o.notebook and _inside(o.notebook.resolve(), out) else None
    said = dataclasses.replace(o, error=_shareable(o.error), advice=_shareable(o.advice))
    return cards.card(said, video_src, shown, notebook)


def _shareable(text: str | None) -> str | None:
    """An error or advice as the folder's reports say it: a local file by its name, without the folders of its
    path (the folder is made to be moved and shared: its reports say nothing of the disk it was made on)."""
    return _LOCAL_PATH.sub("", text) if text else text


def _kept(path: Path | None, out: Path, kind: str) -> str:
    """path relative to out: itself when inside out, else its copy in out/media/; "" when none or gone."""
    if path is None:
        return ""
    relative = _relative(path, out)
    if relative != ".." and not relative.startswith("../"):
        return relative
    held = _held(path, out, kind)
    return _relative(held, out) if held is not None else ""


def _inputs_kept(o: RowOutcome, out: Path) -> dict[str, str]:
    """Each input of the row as the folder holds it (relative to out), or its URL; gone files left out."""
    kinds = {f.name: f.kind for f in MODELS[o.model].fields} if o.model in MODELS else {}
    kept = {}
    for field, value in o.inputs.items():
        if value and is_http_url(value):
            kept[field] = value
        elif value and (held := _held(Path(value), out, kinds.get(field, ""))) is not None:
            kept[field] = _relative(held, out)
    return kept


def _href(path: Path, out: Path) -> str:
    """path (inside out) as a relative URL: each part percent-encoded, so no name can break or escape it."""
    return quote(_relative(path, out), safe="/")


def _inside(path: Path, out: Path) -> bool:
    return path.is_relative_to(out.resolve())


def _shown(path: Path | None, out: Path, kind: str, base: Path | None = None) -> str | None:
    """The URL, relative to base (default out), the gallery uses for a local file: the file itself when inside
    out, else its copy, link or thumbnail in out/media/; None when the file is gone."""
    held = _held(path, out, kind)
    return None if held is None else _href(held, out if base is None else base)


def _held(path: Path | None, out: Path, kind: str) -> Path | None:
    """The file inside out that stands for path: path itself when inside out, else its copy, link or (an image)
    thumbnail in out/media/; None when the file is gone or cannot be brought in. A row's own file (its video, its
    notebook: kind "video" or "notebook" that is no input) is never taken through a link: one planted in its place
    points wherever its maker chose. An input is the file the manifest names, links followed (it was sent)."""
    if path is None:
        return None
    if kind in _OWN_KINDS and Path(path).is_symlink():
        return None
    source = Path(path).resolve()
    if not source.is_file():
        return None
    if _inside(source, out):
        return source
    try:
        return _bring_in(source, out, kind)
    except OSError:  # a full disk or an unreadable file: the card says no picture rather than failing the batch
        return None


def _bring_in(source: Path, out: Path, kind: str) -> Path:
    """out/media/<safe name>: a hard link to source (same file system), else a copy; a thumbnail of a big image.

    The name is made of the source's safe characters and a digest of its path, size and time, so it can neither
    leave out/media/ nor collide, and an unchanged source is not copied again.
    """
    facts = source.stat()
    digest = hashlib.sha256(f"{source}\0{facts.st_size}\0{facts.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = _UNSAFE.sub("_", source.stem).strip("._")[:40] or "input"
    suffix = _UNSAFE.sub("", source.suffix)[:10].lower()
    folder = row_folder(out.resolve() / MEDIA_DIR)  # never through a link
    if kind == "image" and (thumbnail := _thumbnail(source, folder / f"{stem}-{digest}-thumb")) is not None:
        return thumbnail
    target = folder / f"{stem}-{digest}{suffix}"
    if target.is_file() and target.stat().st_size == facts.st_size:
        return target
    return link_atomically(source, target)


def _thumbnail(source: Path, base: Path) -> Path | None:
    """A small JPEG (PNG when transparent) of a big image at base + suffix; None when the image is small enough
    to show as it is, or cannot be read (it is then linked or copied whole)."""
    for existing in (base.with_suffix(".jpg"), base.with_suffix(".png")):
        if existing.is_file() and existing.stat().st_size > 0:
            return existing
    try:
        from PIL import Image

        with Image.open(source) as image:
            if source.stat().st_size <= THUMBNAIL_OVER_BYTES and max(image.size) <= THUMBNAIL_PX * 2:
                return None
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            alpha = image.mode in ("RGBA", "LA", "P") and "transparency" in image.info or image.mode in ("RGBA", "LA")
            small = image.convert("RGBA") if alpha else image.convert("RGB")
            target = base.with_suffix(".png" if alpha else ".jpg")
            return replace_atomically(target, lambda fh: small.save(fh, "PNG" if alpha else "JPEG", quality=85))
    except Exception:  # (PIL raises many kinds on odd files): fall back to the file itself
        return None


def _relative(path: Path | None, out: Path) -> str:
    if path is None:
        return ""
    return Path(os.path.relpath(_resolved(str(path)), _resolved(str(out)))).as_posix()


@functools.lru_cache(maxsize=4096)
def _resolved(path: str) -> str:
    """os.path.realpath, remembered: results.csv names each row's files again every time it is rewritten."""
    return os.path.realpath(path)


def outcomes_html(outcomes: Sequence[RowOutcome]) -> str:
    """An HTML table of the outcomes, for showing in a notebook.

    Args:
        outcomes: the rows' outcomes.

    Returns:
        The table (every cell escaped).
    """
    outcomes = outcomes_argument(outcomes)
    text = cards.text
    head = "".join(f"<th>{c}</th>" for c in ("name", "model", "status", "task", "duration", "cost", "error"))
    body = "".join(
        f"<tr><td>{text(o.name)}</td><td>{text(o.model)}</td><td>{text(o.status)}</td><td><code>"
        f"{text(o.task_id or '')}</code></td><td>{'' if o.duration is None else f'{o.duration:.1f} s'}</td>"
        f"<td>{text(format_usd(o.cost))}</td><td>{text(o.error or '', newlines=True)}</td></tr>" for o in outcomes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def gallery(folder: str | os.PathLike[str] = ".") -> HTML:
    """The gallery of the batch folder (read from its rows.json) to show in a notebook: gallery.ipynb's cell.

    Args:
        folder: the batch's output folder.

    Returns:
        An IPython.display.HTML of the cards (none when the folder has no rows.json).
    """
    from IPython.core.display import HTML  # where it is defined (IPython.display re-exports it)

    folder = path_argument(folder, "folder")
    return HTML(gallery_html(folder, read_rows(folder)))  # type: ignore[no-untyped-call]  # IPython's, unannotated


def read_rows(folder: str | os.PathLike[str]) -> list[RowOutcome]:
    """The rows of folder/rows.json as outcomes; a path that is not inside folder is left out (the file may come
    from elsewhere: nothing outside the folder is shown or brought in)."""
    out = Path(folder).resolve()
    path = out / "rows.json"
    if not path.is_file() or path.stat().st_size > ROWS_MAX_BYTES:
        return []
    try:
        data, _ = parse_json(path.read_bytes())  # bounded: depth, numbers; None when unreadable
    except OSError:
        return []
    rows = data.get("rows", []) if isinstance(data, dict) else []
    return [_outcome_of(row, out) for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _outcome_of(row: dict[str, Any], out: Path) -> RowOutcome:
    def text(key: str) -> str | None:
        value = row.get(key)
        return None if value is None else str(value)

    def inside(value: object) -> Path | None:
        path = (out / value).resolve() if isinstance(value, str) and value else None
        return path if path is not None and _inside(path, out) else None

    given = row.get("inputs")
    inputs = given if isinstance(given, dict) else {}
    kept = {str(field): str(value if is_http_url(value) else inside(value)) for field, value in inputs.items()
            if is_http_url(value) or inside(value) is not None}
    status = row.get("status")
    return RowOutcome(
        name=text("name") or "?", model=text("model") or "?",
        status=RowStatus(status) if isinstance(status, str) and status in _STATUSES else RowStatus.UNFINISHED,
        task_id=text("task_id"), video=inside(row.get("video")), duration=as_number(row.get("duration")),
        cost=text("cost"), notebook=inside(row.get("notebook")), error=text("error"), inputs=kept,
        reused=row.get("reused") is True, advice=text("advice"), same_as=text("same_as"))
