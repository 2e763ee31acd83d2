"""What a form says, built from its controllers' state, in the form's own words: its status line, errors with
their fix, notes, the input's advice, the result and the comparison, as text or escaped HTML.

Every message a form shows from elsewhere (an error's text and hint, a note) goes through `_surfaces.in_words_of`
for the form: "untick Reuse earlier results" where code is told "pass reuse=False". No ipywidgets here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from .. import display
from .._inputs import FIX_LABELS
from .._money import format_usd
from .._results import Result
from .._surfaces import in_words_of, words
from ..errors import SparkError
from ..models import MediaKind
from ._form_state import FormState
from ._picker_state import PickerState

ERROR_COLOUR, NOTE_COLOUR = "#b00020", "#8a5a00"
COMPARE_LATER = "<i>the comparison appears here once a video is generated</i>"
COMPARING = "<i>putting the inputs and the result side by side…</i>"
REUSE_LABEL = "Reuse earlier results (an identical earlier call's video, not paid again)"
STRICT_LABEL = "Strict: refuse inputs with a warning (no face found) instead of sending them"


def form_words(text: str) -> str:
    """text with the switches it names in the form's words (see _surfaces)."""
    return in_words_of(text, "form")


def error_markup(exc: SparkError) -> str:
    """An error and what to do about it, in the form's words, escaped (its text is inert and redacted already)."""
    fix = f'<div class="spark-hint">fix: {html.escape(form_words(exc.hint))}</div>' if exc.hint else ""
    return (f'<div style="color:{ERROR_COLOUR}"><b>{html.escape(type(exc).__name__)}</b>: '
            f"{html.escape(form_words(exc.headline))}</div>{fix}")


def notes_markup(notes: tuple[str, ...]) -> str:
    """What the generation said on the way (advice, trimming, a reused task), one line each."""
    return "".join(f'<div style="color:{NOTE_COLOUR}">note: {html.escape(form_words(note.removeprefix("spark_nb: ")))}'
                   "</div>" for note in notes)


def status_text(state: FormState, missing: Sequence[str], refused: Sequence[str] = ()) -> str:
    """The form's status line: what to do next, where the generation is, or how it ended."""
    if state.stage == "idle":
        if refused:
            return f"fix the {' and the '.join(refused)} first (its message says how)"
        return f"pick the {' and the '.join(missing)}, then Generate" if missing else "ready: click Generate"
    if state.stage == "failed":
        failed = f"failed: {type(state.error).__name__}" if state.error is not None else "failed"
        return failed + (f" (task {state.task_id})" if state.task_id else "")
    if state.stage == "completed" and state.result is not None:
        return _completed(state.result, reused=state.origin == "reused")
    poll = state.poll
    if state.stage in ("waiting", "downloading") and poll is not None:
        if state.stage == "downloading":
            return f"{poll.status} · downloading the video…"
        shown = f" {poll.progress:.0%}" if poll.progress is not None else ""
        return f"{poll.status}{shown} · task {state.task_id} · {state.elapsed:.0f} s"
    if state.stage == "attached":
        return f"an identical earlier task {state.task_id} is still running: waiting for it"
    if state.stage == "starting":
        return "starting…"
    return "uploading inputs and creating the task…"


def _completed(result: Result, *, reused: bool) -> str:
    duration = f"{result.duration:.1f} s" if result.duration else "?"
    said = f"task {result.task_id} · {duration} · cost {format_usd(result.cost)}"
    if reused:
        return f"completed earlier: reused · {said} ({words('pass reuse=False', 'form')} for a new take)"
    return f"completed · {said}"


def result_markup(result: Result) -> str:
    """The result's video, its task id and cost, and where it was saved."""
    saved = html.escape(str(result.path))
    info = f'<div class="spark-result-info" style="font-size:90%">saved at <code>{saved}</code></div>'
    return display.result_html(result) + info


def compare_markup(state: FormState) -> str | None:
    """What the comparison area shows: nothing, a wait, or the side-by-side video."""
    if not state.compare or state.compare_stage == "none":
        return None
    if state.compare_stage == "shown" and state.compare_video is not None and state.result is not None:
        return display.video_html(state.compare_video, caption=f"inputs and result · task {state.result.task_id}",
                                  width=640)
    return COMPARING if state.compare_stage == "building" else COMPARE_LATER


def backend_markup(backend: str, base_url: str) -> str:
    """Which backend the form's calls use."""
    if backend == "local":
        where = "the embedded renderer on this machine; no key needed"
    else:
        where = f"Vtrix at {html.escape(base_url)}"
    return f'Backend: <b class="spark-backend-name">{html.escape(backend)}</b> ({where})'


def picker_note(state: PickerState) -> str | None:
    """The advice on an input, with what Generate does about it."""
    note = state.note
    if note is None:
        return None
    if state.pending_fix == "trim_audio":
        note += f"; Generate trims it ({FIX_LABELS['trim_audio'].lower()})"
    return note


def problem_markup(state: PickerState) -> str:
    """An input's problem: its error, the advice on it, or the fix running."""
    if state.fixing is not None:
        return f"<i>{html.escape(FIX_LABELS[state.fixing])}…</i>"
    if state.error is not None:
        return error_markup(state.error)
    note = picker_note(state)
    return f'<div style="color:{NOTE_COLOUR}">note: {html.escape(form_words(note))}</div>' if note else ""


def preview_markup(state: PickerState, kind: MediaKind) -> str | None:
    """The player (or image) for the input picked, with its caption; None when nothing is picked."""
    if state.value is None:
        return None
    return display.media_html(state.value, caption=state.caption or "", kind=kind)
