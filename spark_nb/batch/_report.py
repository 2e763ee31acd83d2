"""A batch's outputs for people and machines: results.csv, rows.json and an index.html gallery that opens from disk.

The one writer of the batch folder's own files: each is written whole under a temporary name and renamed (a crash or
an interrupt leaves the old file or the new, and no temporary file: a failed write removes its own, and the final
write of a run sweeps those of killed processes); their names (OWN_NAMES) are refused as row names by the manifest
check. Text from elsewhere (row names, task ids, errors, file names) is made inert for each destination: a
spreadsheet never evaluates a results.csv cell (`_text.csv_cell`), HTML shows it escaped (`_text.inert`, then
`html.escape`).

Every file the gallery shows lives inside the batch folder and is referenced relatively, so the folder can be
moved, shared, or served by Jupyter (whose /files/ handler serves nothing outside its root): an input that lives
elsewhere (the bundled samples in site-packages, a manifest's folder) is hard-linked into out/media/ when on the
same file system, else copied; a big image is shown by a thumbnail instead.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import html
import io
import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from .._files import remove_stale_parts, replace_atomically, write_atomically
from .._money import format_usd, total, usd
from .._text import csv_cell, inert
from .._urls import is_http_url
from ..models import MODELS
from ._outcome import RowOutcome, RowStatus

CSV_COLUMNS = ["name", "model", "task_id", "status", "video", "duration", "cost", "notebook", "error", "advice"]
MEDIA_DIR = "media"  # out/media/: the gallery's copies (or links, or thumbnails) of files from outside out
# the batch folder's own files and folders (gallery.ipynb: the notebook that shows the gallery): no row may be
# named so, in any case (a row's folder would take the file's place, or share media/ with the gallery's copies)
OWN_NAMES = ("index.html", "results.csv", "rows.json", MEDIA_DIR, "gallery.ipynb")
THUMBNAIL_PX = 480  # the longest side of a thumbnail
THUMBNAIL_OVER_BYTES = 512 * 1024  # images larger than this (or than THUMBNAIL_PX * 2) are shown by a thumbnail
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_results_csv(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/results.csv, one line per row; paths relative to out; every cell one a spreadsheet shows, never runs."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for o in outcomes:
        row = {"name": o.name, "model": o.model, "task_id": o.task_id, "status": o.status,
               "video": _relative(o.video, out), "duration": o.duration, "cost": o.cost,
               "notebook": _relative(o.notebook, out), "error": o.error, "advice": o.advice}
        writer.writerow({column: csv_cell(value) for column, value in row.items()})
    return write_atomically(out / "results.csv", text.getvalue())


def write_rows_json(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/rows.json: the batch's rows as the journal knows them, to move or share with the folder."""
    path = out / "rows.json"
    rows = [{"name": o.name, "model": o.model, "status": str(o.status), "task_id": o.task_id,
             "video": _relative(o.video, out) or None, "duration": o.duration, "cost": o.cost,
             "notebook": _relative(o.notebook, out) or None, "error": o.error, "reused": o.reused,
             "advice": o.advice} for o in outcomes]
    return write_atomically(path, json.dumps({"rows": rows}, indent=2))


def gallery_html(out: str | os.PathLike[str], outcomes: Sequence[RowOutcome],
                 relative_to: str | os.PathLike[str] | None = None) -> str:
    """The gallery's cards as HTML to show inline in a notebook (IPython.display.HTML), srcs relative to the
    notebook's folder (relative_to, default the working directory), so JupyterLab serves them from /files/.

    Inline, not in an IFrame: Jupyter serves /files/ pages sandboxed, and a sandboxed page's media requests go
    without the login cookie, so an IFrame of index.html shows black players even for files inside the root.
    """
    out = Path(out)
    base = Path(relative_to) if relative_to is not None else Path.cwd()
    cards = "\n".join(_card(out, o, base) for o in outcomes)
    return f'<div class="spark-gallery"><style>{_INLINE_CSS}</style><div class="grid">{cards}</div></div>'


_INLINE_CSS = """
.spark-gallery .grid { display: flex; flex-wrap: wrap; gap: 1em; }
.spark-gallery .card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; width: 340px; }
.spark-gallery .card video { width: 100%; background: #000; }
.spark-gallery .inputs { display: flex; gap: 0.4em; align-items: center; margin: 0.4em 0; }
.spark-gallery .inputs img, .spark-gallery .inputs video { height: 64px; }
.spark-gallery .completed { color: #1b5e20; }
.spark-gallery .failed, .spark-gallery .uncertain, .spark-gallery .unfinished { color: #b00020; }
.spark-gallery .skipped { color: #8a5a00; }
.spark-gallery .error { font-size: 85%; white-space: pre-wrap; color: #b00020; }
.spark-gallery .advice { font-size: 85%; color: #8a5300; }
"""


def write_gallery(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/index.html: each row's video, inputs, status and cost, with relative links (opens from disk).

    The last report a run writes: it also removes what writers killed mid-write left in the batch folder, its
    media folder and the rows' folders (their processes are gone; this one's own writers clean up after
    themselves).
    """
    _sweep(out, outcomes)
    cards = "\n".join(_card(out, o) for o in outcomes)
    done = [o for o in outcomes if o.status == RowStatus.COMPLETED]
    skipped = sum(o.status == RowStatus.SKIPPED for o in outcomes)
    skipped_text = f" · {skipped} skipped (invalid in the manifest)" if skipped else ""
    cost = total(usd(o.cost) for o in outcomes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spark-nb batch</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.card {{ background: white; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; width: 340px; }}
.card video {{ width: 100%; background: #000; }}
.inputs {{ display: flex; gap: 0.4em; align-items: center; margin: 0.4em 0; }}
.inputs img, .inputs video {{ height: 64px; }}
.completed {{ color: #1b5e20; }} .failed, .uncertain, .unfinished {{ color: #b00020; }} .skipped {{ color: #8a5a00; }}
.error {{ font-size: 85%; white-space: pre-wrap; color: #b00020; }}
</style></head><body>
<h1>spark-nb batch</h1>
<p>{len(done)} of {len(outcomes)} rows completed{skipped_text} · total cost {format_usd(cost)} ·
<a href="results.csv">results.csv</a></p>
<div class="grid">
{cards}
</div></body></html>
"""
    return write_atomically(out / "index.html", page)


def _sweep(out: Path, outcomes: Sequence[RowOutcome]) -> None:
    """Remove temporary files of dead writers from out, out/media and each row's folder (only folders in out)."""
    root = out.resolve()
    folders = {root, root / MEDIA_DIR}
    folders.update(folder for o in outcomes if (folder := (root / o.name).resolve()).parent == root)
    for folder in folders:
        if folder.is_dir():
            remove_stale_parts(folder)


def _text(value: object, *, newlines: bool = False) -> str:
    """Text from elsewhere as HTML: inert (no controls or escape sequences), then escaped."""
    return html.escape(inert("" if value is None else value, newlines=newlines))


def _card(out: Path, o: RowOutcome, base: Path | None = None) -> str:
    """One row's card; every src relative to base (default out), every file it shows inside out."""
    esc = html.escape
    base = out if base is None else base
    video_src = _shown(o.video, out, "video", base) if o.video else None
    video = (f'<video src="{esc(video_src)}" controls preload="metadata"></video>' if video_src
             else "<p><i>no video</i></p>")
    inputs = []
    kinds = {f.name: f.kind for f in MODELS[o.model].fields} if o.model in MODELS else {}
    for field, value in o.inputs.items():
        if not value:
            continue
        kind = kinds.get(field, "")
        if is_http_url(value):
            src, label = value, value
        else:
            src, label = _shown(Path(value), out, kind, base), Path(value).name  # never an absolute path in the page
        tag = {"image": f'<img src="{esc(src)}" alt="{_text(field)}">',
               "audio": f'<audio src="{esc(src)}" controls preload="metadata"></audio>',
               "video": f'<video src="{esc(src)}" muted preload="metadata"></video>'}.get(kind) if src else None
        inputs.append(f'<span title="{_text(field)}: {_text(label)}">{tag or _text(label)}</span>')
    notebook = f' · <a href="{esc(_href(o.notebook, base))}">notebook</a>' if o.notebook else ""
    error = (f'<div class="error">{_text(o.error, newlines=True)}</div>'
             if o.error and o.status != RowStatus.COMPLETED else "")
    advice = f'<div class="advice">{_text(o.advice)}</div>' if o.advice else ""
    facts = ("not run: invalid in the manifest" if o.status == RowStatus.SKIPPED  # no task, no cost to show
             else f'cost {_text(format_usd(o.cost))} · task <code>{_text(o.task_id or "-")}</code>{notebook}')
    return (f'<div class="card"><h3>{_text(o.name)}</h3>{video}<div class="inputs">{"".join(inputs)}</div>'
            f'<div><span class="{esc(o.status)}">{esc(o.status)}</span> · {_text(o.model)} · {facts}</div>'
            f'{error}{advice}</div>')


def _href(path: Path, out: Path) -> str:
    """path (inside out) as a relative URL: each part percent-encoded, so no name can break or escape it."""
    return quote(_relative(path, out), safe="/")


def _inside(path: Path, out: Path) -> bool:
    return path.is_relative_to(out.resolve())


def _shown(path: Path | None, out: Path, kind: str, base: Path | None = None) -> str | None:
    """The URL, relative to base (default out), the gallery uses for a local file: the file itself when inside
    out, else its copy, link or thumbnail in out/media/; None when the file is gone."""
    base = out if base is None else base
    if path is None:
        return None
    source = Path(path).resolve()
    if not source.is_file():
        return None
    if _inside(source, out):
        return _href(source, base)
    try:
        return _href(_bring_in(source, out, kind), base)
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
    folder = out.resolve() / MEDIA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "image" and (thumbnail := _thumbnail(source, folder / f"{stem}-{digest}-thumb")) is not None:
        return thumbnail
    target = folder / f"{stem}-{digest}{suffix}"
    if target.is_file() and target.stat().st_size == facts.st_size:
        return target

    def link_or_copy(part: Path) -> None:
        part.unlink(missing_ok=True)
        try:
            os.link(source, part)
        except OSError:  # another file system, or links not allowed there
            shutil.copyfile(source, part)

    return replace_atomically(target, link_or_copy)


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
            return replace_atomically(target, lambda part: small.save(part, "PNG" if alpha else "JPEG", quality=85))
    except Exception:  # noqa: BLE001 (PIL raises many kinds on odd files): fall back to the file itself
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
    """An HTML table of the outcomes, for showing in a notebook."""
    head = "".join(f"<th>{c}</th>" for c in ("name", "model", "status", "task", "duration", "cost", "error"))
    body = "".join(
        f"<tr><td>{_text(o.name)}</td><td>{_text(o.model)}</td><td>{_text(o.status)}</td><td><code>"
        f"{_text(o.task_id or '')}</code></td><td>{'' if o.duration is None else f'{o.duration:.1f} s'}</td>"
        f"<td>{_text(format_usd(o.cost))}</td><td>{_text(o.error or '', newlines=True)}</td></tr>" for o in outcomes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
