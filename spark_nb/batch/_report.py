"""A batch's outputs for people and machines: results.csv and an index.html gallery that opens from disk."""

from __future__ import annotations

import csv
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .._files import write_atomically
from .._urls import is_http_url
from ..models import MODELS
from ._outcome import RowOutcome, RowStatus

CSV_COLUMNS = ["name", "model", "task_id", "status", "video", "duration", "cost", "notebook", "error"]


def write_results_csv(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/results.csv, one line per row; paths relative to out."""
    path = out / "results.csv"
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for o in outcomes:
            writer.writerow({"name": o.name, "model": o.model, "task_id": o.task_id or "", "status": o.status,
                             "video": _relative(o.video, out), "duration": "" if o.duration is None else o.duration,
                             "cost": o.cost or "", "notebook": _relative(o.notebook, out), "error": o.error or ""})
    os.replace(tmp, path)
    return path


def write_rows_json(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/rows.json: the batch's rows as the journal knows them, to move or share with the folder."""
    path = out / "rows.json"
    rows = [{"name": o.name, "model": o.model, "status": str(o.status), "task_id": o.task_id,
             "video": _relative(o.video, out) or None, "duration": o.duration, "cost": o.cost,
             "notebook": _relative(o.notebook, out) or None, "error": o.error, "reused": o.reused} for o in outcomes]
    return write_atomically(path, json.dumps({"rows": rows}, indent=2))


def write_gallery(out: Path, outcomes: Sequence[RowOutcome]) -> Path:
    """out/index.html: each row's video, inputs, status and cost, with relative links (opens from disk)."""
    cards = "\n".join(_card(out, o) for o in outcomes)
    done = [o for o in outcomes if o.status == RowStatus.COMPLETED]
    cost = sum(float(o.cost) for o in outcomes if o.cost)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spark-nb batch</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.card {{ background: white; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; width: 340px; }}
.card video {{ width: 100%; background: #000; }}
.inputs {{ display: flex; gap: 0.4em; align-items: center; margin: 0.4em 0; }}
.inputs img, .inputs video {{ height: 64px; }}
.completed {{ color: #1b5e20; }} .failed, .uncertain, .unfinished {{ color: #b00020; }}
.error {{ font-size: 85%; white-space: pre-wrap; color: #b00020; }}
</style></head><body>
<h1>spark-nb batch</h1>
<p>{len(done)} of {len(outcomes)} rows completed · total cost ${cost:.2f} ·
<a href="results.csv">results.csv</a></p>
<div class="grid">
{cards}
</div></body></html>
"""
    path = out / "index.html"
    write_atomically(path, page)
    return path


def _card(out: Path, o: RowOutcome) -> str:
    esc = html.escape
    video = (f'<video src="{esc(_relative(o.video, out))}" controls preload="metadata"></video>' if o.video
             else "<p><i>no video</i></p>")
    inputs = []
    kinds = {f.name: f.kind for f in MODELS[o.model].fields} if o.model in MODELS else {}
    for field, value in o.inputs.items():
        src = esc(value if is_http_url(value) else _relative(Path(value), out))
        tag = {"image": f'<img src="{src}" alt="{esc(field)}">', "audio": f'<audio src="{src}" controls></audio>',
               "video": f'<video src="{src}" muted></video>'}.get(kinds.get(field, ""), esc(value))
        inputs.append(f'<span title="{esc(field)}: {esc(value)}">{tag}</span>')
    notebook = f' · <a href="{esc(_relative(o.notebook, out))}">notebook</a>' if o.notebook else ""
    error = f'<div class="error">{esc(o.error)}</div>' if o.error and o.status != RowStatus.COMPLETED else ""
    return (f'<div class="card"><h3>{esc(o.name)}</h3>{video}<div class="inputs">{"".join(inputs)}</div>'
            f'<div><span class="{esc(o.status)}">{esc(o.status)}</span> · {esc(o.model)} · '
            f'cost ${esc(o.cost or "?")} · task <code>{esc(o.task_id or "-")}</code>{notebook}</div>{error}</div>')


def _relative(path: Path | None, out: Path) -> str:
    if path is None:
        return ""
    return Path(os.path.relpath(Path(path).resolve(), out)).as_posix()


def outcomes_html(outcomes: Sequence[RowOutcome]) -> str:
    """An HTML table of the outcomes, for showing in a notebook."""
    esc = html.escape
    head = "".join(f"<th>{c}</th>" for c in ("name", "model", "status", "task", "duration", "cost", "error"))
    body = "".join(
        f"<tr><td>{esc(o.name)}</td><td>{esc(o.model)}</td><td>{esc(o.status)}</td><td><code>{esc(o.task_id or '')}"
        f"</code></td><td>{'' if o.duration is None else f'{o.duration:.1f} s'}</td><td>${esc(o.cost or '?')}</td>"
        f"<td>{esc(o.error or '')}</td></tr>" for o in outcomes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
