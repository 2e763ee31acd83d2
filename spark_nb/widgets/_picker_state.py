"""One media input of a form as state and actions, without widgets: pick a value (upload, URL or path, sample),
check it at once with the pipeline's own input rules, offer and run the one-click fix. Its view
(`_picker_view.MediaPicker`) renders a `PickerState` and forwards clicks; nothing here imports ipywidgets.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from .._config import InputLimits
from .._inputs import FIX_LABELS, Fix, Media, apply_fix, fix_for, normalise, validate
from ..errors import SparkError, ValidationError
from ..models import MediaField
from ._actions import action

Source = Literal["upload", "url", "sample", "file"]  # how the input was given: which of the view's boxes holds it


@dataclasses.dataclass(frozen=True)
class PickerState:
    """What one input holds: the value sent, how it was checked, and the fix on offer.

    value is the Path or URL that Generate sends (an upload's bytes are in a scratch file); name is the input's name
    as the user knows it (an upload's own file name), which every message uses; media the checked input, with its
    advice; error why it cannot be used; pending_fix the fix on offer (for an error or a piece of advice) and
    fixing the fix now running.
    """

    value: Path | str | None = None
    name: str | None = None
    caption: str | None = None
    source: Source | None = None
    media: Media | None = None
    error: SparkError | None = None
    pending_fix: Fix | None = None
    fixing: Fix | None = None
    fix_input: Path | None = None  # the file the fix reads

    @property
    def ok(self) -> bool:
        """True when an input is picked and passed the checks (advice such as long audio allowed)."""
        return self.value is not None and self.error is None

    @property
    def note(self) -> str | None:
        """The advice on the input (e.g. long audio, no face found), or None."""
        advice = self.media.advice if self.media is not None and self.error is None else ()
        return advice[-1].message if advice else None


class PickerController:
    """The state of one media input and its actions (pick, use_sample, apply_fix, clear); listeners are called
    after every change, from the thread that made it."""

    def __init__(self, field: MediaField, sample: Path, *, limits: InputLimits | None = None) -> None:
        self.field = field
        self.sample_path = sample
        self.limits = limits or InputLimits()  # the form's: its max_input_mb and check_urls apply here too
        self._state = PickerState()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def state(self) -> PickerState:
        """The input as it is now (an immutable snapshot)."""
        return self._state

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call listener() after every change of the state."""
        self._listeners.append(listener)

    @action
    def pick(self, value: Any, *, caption: str | None = None, name: str | None = None,
             source: Source = "file") -> None:
        """Use value (path, URL, bytes or FileUpload item) as this input and check it now.

        caption is shown under the preview; name is the file's name as the user knows it (an upload's own name,
        taken from a FileUpload item when not given), used in every message instead of the scratch file an upload
        or bytes are written to; source says which box the value came from.
        """
        if isinstance(value, Mapping) and not name:
            name = str(value.get("name") or "") or None
        self._set(PickerState(name=name, source=source))  # the last input's error goes as soon as another is picked
        try:
            media = normalise(value, self.field)
        except ValidationError as exc:
            self._set(PickerState(name=name, source=source, error=exc))
            return
        media = dataclasses.replace(media, name=name) if name else media
        sent = media.url if media.url is not None else media.path
        assert sent is not None
        picked = PickerState(value=sent, name=name, source=source, caption=caption or name or Path(str(sent)).name,
                             fix_input=media.path)
        self._set(picked)
        try:
            checked = validate(media, self.limits)
        except ValidationError as exc:
            self._set(dataclasses.replace(picked, error=exc, pending_fix=self._offered(fix_for(exc), media)))
            return
        offered = [advice.fix for advice in checked.advice]
        self._set(dataclasses.replace(picked, media=checked, pending_fix=self._offered(offered[-1], media)
                                      if offered else None))

    def use_sample(self) -> None:
        """Pick the bundled sample (what the "Use sample" button does)."""
        self.pick(self.sample_path, caption=f"sample {self.sample_path.name}", source="sample")

    @action
    def apply_fix(self) -> None:
        """Run the offered fix (trim or shrink) and pick its output in place of the input, under the same name."""
        state = self._state
        fix, path = state.pending_fix, state.fix_input
        if fix is None or path is None:
            return
        self._set(dataclasses.replace(state, fixing=fix))
        try:  # ffmpeg or PIL failing is said in the state (action), not in a log
            fixed = apply_fix(fix, path)
        finally:
            self._set(dataclasses.replace(self._state, fixing=None))
        caption = f"{state.name or fixed.name} ({FIX_LABELS[fix].lower()})"
        self.pick(fixed, caption=caption, name=state.name, source=state.source or "file")

    def clear(self) -> None:
        """Forget the input."""
        self._set(PickerState())

    @staticmethod
    def _offered(fix: Fix | None, media: Media) -> Fix | None:
        """fix, when there is a local file to run it on (a URL's input is not on this machine)."""
        return fix if media.path is not None else None

    def _failed(self, exc: SparkError) -> None:
        """A failure of an action (a fix that ffmpeg or PIL could not run, a bug): said as this input's error."""
        self._set(dataclasses.replace(self._state, error=exc, fixing=None))

    def _set(self, state: PickerState) -> None:
        with self._lock:
            self._state = state
        for listener in list(self._listeners):
            listener()
