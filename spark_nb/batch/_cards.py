"""The gallery's HTML: one card per row, the same in index.html, in gallery.ipynb and inline in a notebook.

Styles are inline attributes, not a <style> element: JupyterLab renders an untrusted notebook's HTML outputs
through its sanitizer, which keeps `style` attributes, <video>, <img> and <audio> with their relative `src`
(resolved to its /files/ handler), and drops <style> elements. Text from elsewhere (row names, task ids, errors,
advice, file names) is made inert and escaped here; every src and href is given, already made relative.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence

from .._money import format_usd
from .._text import inert
from ._outcome import RowOutcome, RowStatus
from ._progress import Tally

GRID = "display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start"
CARD = "background: white; color: #222; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; width: 340px"
VIDEO = "display: block; width: 100%; background: #000"
INPUTS = "display: flex; flex-wrap: wrap; gap: 0.4em; align-items: center; margin: 0.4em 0"
THUMB = "display: inline-block; height: 64px; width: auto"
STATUS = {"completed": "#1b5e20", "skipped": "#8a5a00"}  # the rest: red
ERROR = "font-size: 85%; white-space: pre-wrap; color: #b00020"
ADVICE = "font-size: 85%; color: #8a5300"
REUSED = "font-size: 75%; border: 1px solid #999; border-radius: 3px; padding: 0 0.3em; color: #555"
NOTE = "background: #fff8e1; border: 1px solid #f0c36d; border-radius: 6px; padding: 0.6em 0.8em; margin: 0.8em 0"


@dataclasses.dataclass(frozen=True)
class Shown:
    """One input on a card: its field, kind (image, audio, video), src (None when there is nothing to show), and
    the name people see (a file name or a URL, never a path)."""

    field: str
    kind: str
    src: str | None
    label: str


def text(value: object, *, newlines: bool = False) -> str:
    """Text from elsewhere as HTML: inert (no controls or escape sequences), then escaped."""
    return html.escape(inert("" if value is None else value, newlines=newlines))


def card(o: RowOutcome, video_src: str | None, inputs: Sequence[Shown], notebook_href: str | None) -> str:
    """One row's card: its video, inputs, status, model, cost, task, notebook link, error and advice."""
    esc = html.escape
    video = (f'<video src="{esc(video_src)}" controls preload="metadata" style="{VIDEO}"></video>' if video_src
             else "<p><i>no video</i></p>")
    tiles = "".join(_tile(item) for item in inputs)
    notebook = f' · <a href="{esc(notebook_href)}">notebook</a>' if notebook_href else ""
    error = (f'<div class="error" style="{ERROR}">{text(o.error, newlines=True)}</div>'
             if o.error and o.status != RowStatus.COMPLETED else "")
    advice = f'<div class="advice" style="{ADVICE}">{text(o.advice)}</div>' if o.advice else ""
    facts = ("not run: invalid in the manifest" if o.status == RowStatus.SKIPPED  # no task, no cost to show
             else f'cost {text(format_usd(o.cost))}{_reused_mark(o)} · task <code>{text(o.task_id or "-")}</code>'
                  f'{notebook}')
    color = STATUS.get(str(o.status), "#b00020")
    return (f'<div class="card" style="{CARD}"><h3>{text(o.name)}</h3>{video}'
            f'<div class="inputs" style="{INPUTS}">{tiles}</div>'
            f'<div><span class="{text(o.status)}" style="color: {color}">{text(o.status)}</span> · {text(o.model)} · '
            f'{facts}</div>{error}{advice}</div>')


def _reused_mark(o: RowOutcome) -> str:
    """A small mark after the cost of a reused row: that cost was paid by an earlier run (or with another row)."""
    if not o.reused:
        return ""
    why = f"the same task as row {o.same_as}" if o.same_as else "paid by an earlier run, not this one"
    return f' <span class="reused" title="{text(why)}" style="{REUSED}">reused</span>'


def _tile(item: Shown) -> str:
    esc = html.escape
    title = f"{text(item.field)}: {text(item.label)}"
    if item.src is None or item.kind not in ("image", "audio", "video"):
        return f'<span title="{title}">{text(item.label)}</span>'
    src = esc(item.src)
    tag = {"image": f'<img src="{src}" alt="{text(item.field)}" style="{THUMB}">',
           "audio": f'<audio src="{src}" controls preload="metadata"></audio>',
           "video": f'<video src="{src}" muted preload="metadata" style="{THUMB}"></video>'}[item.kind]
    return f'<span title="{title}">{tag}</span>'


def grid(cards: Sequence[str]) -> str:
    """The cards in a wrapping grid: what a notebook output shows."""
    return f'<div class="spark-gallery"><div class="grid" style="{GRID}">{"".join(cards)}</div></div>'


def tally(outcomes: Sequence[RowOutcome]) -> str:
    """'2 of 3 rows completed · 1 skipped (invalid in the manifest) · spent by this run: $0.40 (1 row reused from
    earlier runs)' (plain text)."""
    done = sum(o.status == RowStatus.COMPLETED for o in outcomes)
    skipped = sum(o.status == RowStatus.SKIPPED for o in outcomes)
    skipped_text = f" · {skipped} skipped (invalid in the manifest)" if skipped else ""
    return f"{done} of {len(outcomes)} rows completed{skipped_text} · {Tally(outcomes).spent_by_run}"


# gallery.ipynb named, not linked: a link followed inside JupyterLab's sandboxed viewer answers 403
JUPYTERLAB_NOTE = ("Inside JupyterLab, open <b>gallery.ipynb</b> in this folder from the file browser "
                   "instead: JupyterLab shows this page in a sandbox where its videos and pictures cannot load. "
                   "This page is for a browser opening the folder from disk, or for sharing it.")


def page(outcomes: Sequence[RowOutcome], cards: Sequence[str]) -> str:
    """index.html: the note for JupyterLab users first, the tally, then the cards."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>spark-nb batch</title></head>
<body style="font-family: system-ui, sans-serif; margin: 1.5em; background: #fafafa">
<h1>spark-nb batch</h1>
<p class="jupyterlab-note" style="{NOTE}">{JUPYTERLAB_NOTE}</p>
<p>{tally(outcomes)} · <a href="results.csv">results.csv</a></p>
{grid(cards)}
</body></html>
"""
