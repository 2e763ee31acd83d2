"""The parts every form is made of: a MediaPicker per media input, and the helpers the forms share (showing
markup in an Output, CSS classes, error markup, the _action guard that shows any failure in the widget).

Public through spark_nb.widgets (MediaPicker); see that module for the forms themselves.
"""

from __future__ import annotations

import datetime
import functools
import html
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import ipywidgets as W

from . import display
from ._boundary import boundary
from ._config import InputLimits
from ._inputs import FIX_LABELS, Fix, Media, apply_fix, fix_for, normalise, validate
from .errors import SparkError, ValidationError
from .models import MediaField

_ERROR_COLOUR, _WARN_COLOUR = "#b00020", "#8a5a00"
_ACCEPT = {"image": "image/*", "audio": "audio/*,video/*", "video": "video/*"}
_HIDDEN, _SHOWN = "none", ""


def _html_output(markup: str) -> dict[str, Any]:
    """An Output widget entry holding markup.

    Output (not HTML) widgets render through the notebook's rendermime, whose URL resolver maps the relative
    srcs of display.py to /files/...; an HTML widget's innerHTML would resolve them against the page URL.
    """
    return {"output_type": "display_data", "data": {"text/html": markup, "text/plain": "(media)"}, "metadata": {}}


def _show(area: W.Output, markup: str | None) -> None:
    area.outputs = (_html_output(markup),) if markup else ()


def _set_visible(widget: W.DOMWidget, visible: bool) -> None:
    widget.layout.display = _SHOWN if visible else _HIDDEN


def _classes(widget: W.DOMWidget, *names: str) -> W.DOMWidget:
    for name in names:
        widget.add_class(name)
    return widget


def _named(exc: ValidationError, scratch: Path | None, name: str | None) -> ValidationError:
    """exc with the scratch file an upload was written to replaced by the user's own file name."""
    if scratch is None or not name:
        return exc
    message = str(exc.args[0]) if exc.args else exc.message
    if exc.code and message.startswith(f"[{exc.code}] "):
        message = message[len(exc.code) + 3:]
    renamed = message.replace(str(scratch), name).replace(scratch.name, name)
    if renamed == message:
        return exc
    return ValidationError(renamed, reason=exc.reason, hint=exc.hint, code=exc.code, field=exc.field)


def _error_markup(exc: SparkError) -> str:
    """An error and what to do about it, escaped (a SparkError's text is inert and redacted by construction)."""
    fix = f'<div class="spark-hint">fix: {html.escape(exc.hint)}</div>' if exc.hint else ""
    return (f'<div style="color:{_ERROR_COLOUR}"><b>{html.escape(type(exc).__name__)}</b>: '
            f"{html.escape(exc.headline)}</div>{fix}")


Action = TypeVar("Action", bound=Callable[..., Any])


def _task_of(widget: Any) -> tuple[str | None, str | None]:
    """The task a form is running (for an unexpected error to name), when it has one."""
    task = getattr(widget, "task", None)
    return (task.id, task.model) if task is not None else (None, None)


def _action(method: Action) -> Action:
    """What a click or an edit runs: any failure becomes a SparkError (_boundary) shown by the widget's own
    _show_error, never a traceback in the browser's log (a callback has no cell to raise into)."""
    guarded = boundary(method, task_of=_task_of)

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return guarded(self, *args, **kwargs)
        except SparkError as exc:
            self._show_error(exc)
            return None

    return cast(Action, run)  # wraps keeps method's signature (a failed action returns None: actions return None)


class MediaPicker:
    """One media input of a form: an upload, a URL or path, or the bundled sample; previewed and checked at once.

    Widgets: upload (FileUpload), url (Text), sample (Button), preview (Output), problem (HTML), fix (Button,
    shown when the input rules offer a one-click fix: "Trim to 15 s" for long audio, "Shrink" for an oversized
    image). State: value (the Path or URL sent), media (the checked Media, with its advice), error (the
    ValidationError, or None), pending_fix (the fix on offer, or None).
    """

    def __init__(self, field: MediaField, sample: Path, on_change: Callable[[], None] | None = None, *,
                 limits: InputLimits | None = None) -> None:
        self.field = field
        self.sample_path = sample
        self._on_change = on_change
        self.limits = limits or InputLimits()  # the form's: its max_input_mb and check_urls apply here too
        self.value: Path | str | None = None
        self.media: Media | None = None
        self.error: ValidationError | None = None
        self.note: str | None = None
        self.pending_fix: Fix | None = None
        self.name: str | None = None  # the input's name as the user knows it (an upload's own file name)
        self._fix_path: Path | None = None
        self._stub_upload = False
        kind = field.kind
        self.title = W.HTML(f"<b>{html.escape(field.label.capitalize())}</b>")
        self.upload = _classes(W.FileUpload(accept=_ACCEPT[kind], multiple=False, description="Upload"),
                               "spark-upload", f"spark-upload-{kind}")
        self.url = _classes(W.Text(placeholder="https://… URL or a file path, then Enter", continuous_update=False,
                                   layout=W.Layout(width="24em")), "spark-url", f"spark-url-{kind}")
        sample_button = W.Button(description="Use sample", icon="star", tooltip=f"use the bundled {sample.name}")
        self.sample = _classes(sample_button, "spark-sample", f"spark-sample-{kind}")
        self.preview = _classes(W.Output(), "spark-preview", f"spark-preview-{kind}")
        self.problem = _classes(W.HTML(), "spark-problem", f"spark-problem-{kind}")
        # never narrower than its label ("Trim to 15 s"): beside a long note, a flex item would be squeezed
        self.fix = _classes(W.Button(button_style="warning", layout=W.Layout(display=_HIDDEN, width="auto",
                                                                            min_width="max-content", flex="0 0 auto")),
                            "spark-fix", f"spark-fix-{kind}")
        self.upload.observe(self._on_upload, "value")
        self.url.observe(self._on_url, "value")
        self.sample.on_click(lambda _: self.use_sample())
        self.fix.on_click(lambda _: self.apply_fix())
        self.widget = _classes(W.VBox([self.title, W.HBox([self.upload, self.url, self.sample]), self.preview,
                                       W.HBox([self.problem, self.fix])]), "spark-picker", f"spark-picker-{kind}")

    @property
    def ok(self) -> bool:
        """True when an input is picked and passed the checks (notes such as long audio allowed)."""
        return self.value is not None and self.error is None


    @_action
    def pick(self, value: Any, *, caption: str | None = None, name: str | None = None) -> None:
        """Use value (path, URL, bytes or FileUpload item) as this input: preview and check it now.

        caption is shown under the preview; name is the file's name as the user knows it (an upload's own name),
        used in messages instead of the scratch file an upload or bytes are written to.
        """
        self.value, self.media, self.error, self.note = None, None, None, None
        self._set_fix(None, None)
        self.problem.value = ""  # the last input's error goes as soon as another is picked
        if isinstance(value, Mapping) and not name:
            name = str(value.get("name") or "") or None
        self.name = name
        try:
            media = normalise(value, self.field)
        except ValidationError as exc:
            self.error = exc
            _show(self.preview, None)
            self._render_problem()
            self._changed()
            return
        self.value = media.url if media.url is not None else media.path
        assert self.value is not None
        scratch = media.path if name and media.path is not None else None
        shown = caption or name or Path(str(self.value)).name
        _show(self.preview, display.media_html(self.value, caption=shown, kind=self.field.kind))
        try:
            self.media = validate(media, self.limits)
        except ValidationError as exc:
            self.error = _named(exc, scratch, name)
            self._set_fix(fix_for(exc), media.path)
        else:
            for advice in self.media.advice:
                self.note = advice.message
                if scratch is not None and name:
                    self.note = self.note.replace(str(scratch), name).replace(scratch.name, name)
                self._set_fix(advice.fix, media.path)
                if advice.fix == "trim_audio":
                    self.note += f"; Generate trims it ({FIX_LABELS['trim_audio'].lower()})"
        self._render_problem()
        self._changed()

    @_action
    def use_sample(self) -> None:
        """Pick the bundled sample (what the "Use sample" button does)."""
        self._forget_upload()
        self.url.value = ""
        self.pick(self.sample_path, caption=f"sample {self.sample_path.name}")

    @_action
    def apply_fix(self) -> None:
        """Run the offered fix (trim or shrink) and pick its output in place of the input."""
        fix, path = self.pending_fix, self._fix_path
        if fix is None or path is None:
            return
        label = FIX_LABELS[fix]
        self.fix.disabled = True
        self.problem.value = f"<i>{html.escape(label)}…</i>"
        try:  # ffmpeg or PIL failing is said here (_action), not in a log
            fixed = apply_fix(fix, path)
        finally:
            self.fix.disabled = False
        self.pick(fixed, caption=f"{self.name or fixed.name} ({label.lower()})", name=self.name)

    def clear(self) -> None:
        """Forget the input."""
        self._forget_upload()
        self.value, self.media, self.error, self.note, self.name = None, None, None, None, None
        self._set_fix(None, None)
        _show(self.preview, None)
        self.problem.value = ""
        self._changed()

    def _render_problem(self) -> None:
        if self.error is not None:
            self.problem.value = _error_markup(self.error)
        elif self.note:
            self.problem.value = f'<div style="color:{_WARN_COLOUR}">note: {html.escape(self.note)}</div>'
        else:
            self.problem.value = ""

    def _set_fix(self, fix: Fix | None, path: Path | None) -> None:
        self.pending_fix, self._fix_path = (fix, path) if path is not None else (None, None)
        self.fix.description = FIX_LABELS[self.pending_fix] if self.pending_fix else ""
        self.fix.disabled = False
        _set_visible(self.fix, self.pending_fix is not None)

    @_action
    def _on_upload(self, change: Mapping[str, Any]) -> None:
        items = change["new"]
        if not items or self._stub_upload:
            return
        item = items[0]
        name = str(item.get("name") or "upload")
        self.url.value = ""
        self.pick(item, caption=name, name=name)
        # the bytes are now in a scratch file: drop them from the widget so they never land in the notebook, but
        # keep the file's name and size there, so the button's count ("Upload (1)") says a file is in use
        self._stub_upload = True
        try:
            self.upload.value = ({"name": name, "type": str(item.get("type") or ""), "size": int(item.get("size") or 0),
                                  "content": memoryview(b""),
                                  "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
        finally:
            self._stub_upload = False

    def _forget_upload(self) -> None:
        """Empty the upload button (its count back to 0) when another kind of input replaces the upload."""
        if self.upload.value:
            self._stub_upload = True
            try:
                self.upload.value = ()
            finally:
                self._stub_upload = False

    @_action
    def _on_url(self, change: Mapping[str, Any]) -> None:
        text = str(change["new"] or "").strip()
        if text:
            self._forget_upload()
            self.pick(text, caption=text.rsplit("/", 1)[-1][:80])

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _show_error(self, exc: SparkError) -> None:
        self.problem.value = _error_markup(exc)
