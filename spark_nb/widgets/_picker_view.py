"""The view of one media input (MediaPicker): the upload button, URL box, sample button, preview, problem and fix
of a PickerController, rendered from its state; clicks and edits are forwarded to it."""

from __future__ import annotations

import datetime
import html
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as W

from .._config import InputLimits
from .._inputs import FIX_LABELS, Fix, Media
from ..errors import SparkError
from ..models import MediaField
from . import _words
from ._picker_state import PickerController
from ._view_parts import HIDDEN, Area, classes, set_visible

_ACCEPT = {"image": "image/*", "audio": "audio/*,video/*", "video": "video/*"}


class MediaPicker:
    """One media input of a form: an upload, a URL or path, or the bundled sample; previewed and checked at once.

    Widgets: upload (FileUpload), url (Text), sample (Button), preview (Output), problem (HTML), fix (Button,
    shown when the input rules offer a one-click fix: "Trim to 15 s" for long audio, "Shrink" for an oversized
    image). State (read from its controller, a PickerController): value (the Path or URL sent), media (the checked
    Media, with its advice), error (why it cannot be used, or None), note (the advice), pending_fix (the fix on
    offer, or None), name (the input's name as the user knows it).

    Args:
        field: The model's media input this picker fills.
        sample: The bundled file "Use sample" picks.
        on_change: Called after every change of the input.
        limits: The input limits of the form's settings (max_input_mb, check_urls).
        controller: The controller to render (a form's); by default one of its own for field and sample.
    """

    def __init__(self, field: MediaField, sample: Path, on_change: Callable[[], None] | None = None, *,
                 limits: InputLimits | None = None, controller: PickerController | None = None) -> None:
        self.controller = controller or PickerController(field, sample, limits=limits)
        self.field = self.controller.field
        self.sample_path = self.controller.sample_path
        self._lock = threading.RLock()
        self._quiet = False  # set while the view itself changes the upload's value: not a new upload
        kind = self.field.kind
        self.title = W.HTML(f"<b>{html.escape(self.field.label.capitalize())}</b>")
        self.upload = classes(W.FileUpload(accept=_ACCEPT[kind], multiple=False, description="Upload"),
                              "spark-upload", f"spark-upload-{kind}")
        self.url = classes(W.Text(placeholder="https://… URL or a file path, then Enter", continuous_update=False,
                                  layout=W.Layout(width="24em")), "spark-url", f"spark-url-{kind}")
        self.sample = classes(W.Button(description="Use sample", icon="star",
                                       tooltip=f"use the bundled {self.sample_path.name}"),
                              "spark-sample", f"spark-sample-{kind}")
        self.preview = classes(W.Output(), "spark-preview", f"spark-preview-{kind}")
        self._preview = Area(self.preview)
        self.problem = classes(W.HTML(), "spark-problem", f"spark-problem-{kind}")
        # never narrower than its label ("Trim to 15 s"): beside a long note, a flex item would be squeezed
        self.fix = classes(W.Button(button_style="warning", layout=W.Layout(display=HIDDEN, width="auto",
                                                                           min_width="max-content",
                                                                           flex="0 0 auto")),
                           "spark-fix", f"spark-fix-{kind}")
        self.upload.observe(self._on_upload, "value")
        self.url.observe(self._on_url, "value")
        self.sample.on_click(lambda _: self.controller.use_sample())
        self.fix.on_click(lambda _: self.controller.apply_fix())
        self.widget = classes(W.VBox([self.title, W.HBox([self.upload, self.url, self.sample]), self.preview,
                                      W.HBox([self.problem, self.fix])]), "spark-picker", f"spark-picker-{kind}")
        self.controller.subscribe(self._render)
        if on_change is not None:
            self.controller.subscribe(on_change)
        self._render()

    # -- the controller's state, read ------------------------------------------------------------------

    @property
    def value(self) -> Path | str | None:
        """The Path or URL Generate sends, or None."""
        return self.controller.state.value

    @property
    def media(self) -> Media | None:
        """The checked input, with its advice (None until it passed the checks)."""
        return self.controller.state.media

    @property
    def error(self) -> SparkError | None:
        """Why the input cannot be used, or None."""
        return self.controller.state.error

    @property
    def note(self) -> str | None:
        """The advice on the input (long audio, no face found), or None."""
        return self.controller.state.note

    @property
    def pending_fix(self) -> Fix | None:
        """The one-click fix on offer ("trim_audio", "shrink_image"), or None."""
        return self.controller.state.pending_fix

    @property
    def name(self) -> str | None:
        """The input's name as the user knows it (an upload's own file name), or None."""
        return self.controller.state.name

    @property
    def ok(self) -> bool:
        """True when an input is picked and passed the checks (notes such as long audio allowed)."""
        return self.controller.state.ok

    # -- actions, forwarded ----------------------------------------------------------------------------

    def pick(self, value: Any, *, caption: str | None = None, name: str | None = None) -> None:
        """Use value as this input: preview and check it now (see PickerController.pick).

        Args:
            value: A path, an http(s) URL, bytes or a FileUpload item.
            caption: Shown under the preview.
            name: The file's name as the user knows it, used in messages instead of a scratch file's.
        """
        self.controller.pick(value, caption=caption, name=name)

    def use_sample(self) -> None:
        """Pick the bundled sample (what the "Use sample" button does)."""
        self.controller.use_sample()

    def apply_fix(self) -> None:
        """Run the offered fix (trim or shrink) and pick its output in place of the input."""
        self.controller.apply_fix()

    def clear(self) -> None:
        """Forget the input."""
        self.controller.clear()

    # -- the view --------------------------------------------------------------------------------------

    def _render(self) -> None:
        with self._lock:
            state = self.controller.state  # the newest, whichever change called: a late render shows it too
            self._preview.show((state.value, state.caption), lambda: _words.preview_markup(state, self.field.kind))
            self.problem.value = _words.problem_markup(state)
            self.fix.description = FIX_LABELS[state.pending_fix] if state.pending_fix else ""
            self.fix.disabled = state.fixing is not None
            set_visible(self.fix, state.pending_fix is not None)
            if state.source != "upload" and self.upload.value:
                self._set_upload(())  # the button's count back to 0: another kind of input replaced the upload
            if state.source != "url" and self.url.value:
                self.url.value = ""

    def _on_upload(self, change: Mapping[str, Any]) -> None:
        items = change["new"]
        if not items or self._quiet:
            return
        item = items[0]
        name = str(item.get("name") or "upload")
        self.controller.pick(item, caption=name, name=name, source="upload")
        # the bytes are now in a scratch file: drop them from the widget so they never land in the notebook, but
        # keep the file's name and size there, so the button's count ("Upload (1)") says a file is in use
        self._set_upload(({"name": name, "type": str(item.get("type") or ""), "size": int(item.get("size") or 0),
                           "content": memoryview(b""), "last_modified": datetime.datetime.now(datetime.timezone.utc)},))

    def _set_upload(self, value: tuple[dict[str, Any], ...]) -> None:
        with self._lock:
            self._quiet = True
            try:
                self.upload.value = value
            finally:
                self._quiet = False

    def _on_url(self, change: Mapping[str, Any]) -> None:
        text = str(change["new"] or "").strip()
        if text:
            self.controller.pick(text, caption=text.rsplit("/", 1)[-1][:80], source="url")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
