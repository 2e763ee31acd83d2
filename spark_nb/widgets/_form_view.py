"""The view of one model's form (ModelForm): the widgets of a FormController, rendered from its state whenever it
changes (from whichever thread changed it: only this view writes widgets); clicks and edits are forwarded."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as W

from .._results import Result
from .._tasks import Task
from ..errors import SparkError
from ..models import ModelSpec
from . import _words
from ._form_state import FormController
from ._picker_view import MediaPicker
from ._view_parts import HIDDEN, SHOWN, Area, classes, set_visible

KEY_PLACEHOLDER, KEY_SET = "Vtrix API key (kept in memory only)", "key set for this form (hidden); type to replace it"


class ModelForm:
    """A form for one model, built from its spec: a picker per input, backend and key, Generate with live
    progress, the result, and compare.

    Its state and actions are its controller's (form.controller, a FormController, usable without widgets); this
    is the view.
    Widgets, for code and tests: pickers (field name -> MediaPicker; each also an attribute named after its
    input, e.g. form.image, form.audio, unless the name is taken), backend_info (HTML), api_key (Password, shown
    on the cloud backend when no key is set), generate_button, progress (FloatProgress 0..1), status (Label),
    error (HTML), notes (HTML: what the generation said on the way), result_area (Output), reuse and strict
    (Checkbox), compare (ToggleButton), compare_area (Output), widget (the root VBox). State: result (the last
    Result or None), task (the last Task or None), last_error (the last failure or None), running.

    Args:
        spec: The model the form is for.
        timeout: Seconds a generation may take, from Generate to the downloaded video.
        **config: configure()'s options for this form's calls (api_key, backend, base_url, output_dir, ...).

    Raises:
        TypeError: An unknown option (a UsageError), found when the form is made, not at the first click.
    """

    def __init__(self, spec: ModelSpec, *, timeout: float = 600, **config: Any) -> None:
        self.controller = FormController(spec, timeout=timeout, **config)
        self.spec = spec
        self._lock = threading.RLock()
        self.pickers = {name: MediaPicker(c.field, c.sample_path, controller=c)
                        for name, c in self.controller.pickers.items()}
        self.backend_info = classes(W.HTML(), "spark-backend")
        self.api_key = classes(W.Password(description="API key", placeholder=KEY_PLACEHOLDER,
                                          layout=W.Layout(display=SHOWN if self.controller.needs_key else HIDDEN)),
                               "spark-api-key")
        self.generate_button = classes(W.Button(description="Generate", button_style="primary", icon="play"),
                                       "spark-generate")
        self.progress = classes(W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="20em")),
                                "spark-progress")
        self.status = classes(W.Label(), "spark-status")
        self.error = classes(W.HTML(), "spark-error")
        self.notes = classes(W.HTML(), "spark-notes")
        self.result_area = classes(W.Output(), "spark-result")
        self._result = Area(self.result_area)
        self.compare = classes(W.ToggleButton(description="Compare", icon="columns", value=False,
                                              tooltip="show the inputs and the result side by side"), "spark-compare")
        self.compare_area = classes(W.Output(layout=W.Layout(display=HIDDEN)), "spark-compare-area")
        self._compared = Area(self.compare_area)
        box = W.Layout(width="auto")
        self.reuse = classes(W.Checkbox(value=True, description=_words.REUSE_LABEL, indent=False, layout=box),
                             "spark-reuse")
        self.strict = classes(W.Checkbox(value=False, description=_words.STRICT_LABEL, indent=False, layout=box),
                              "spark-strict")
        self._connect()
        header = W.HTML(f"<h3 style='margin:0.2em 0'>{html.escape(spec.title)}</h3>")
        self.widget = classes(W.VBox([
            header, self.backend_info, self.api_key, *(p.widget for p in self.pickers.values()),
            W.HBox([self.generate_button, self.progress, self.status]), self.reuse, self.strict, self.error,
            self.notes, self.result_area, self.compare, self.compare_area,
        ]), "spark-form", f"spark-{spec.id}", *([f"spark-{spec.alias}-form"] if spec.alias else []))
        for name, picker in self.pickers.items():  # form.image, form.audio: plain attributes, made here
            if not hasattr(self, name):
                setattr(self, name, picker)
        self._render()

    def _connect(self) -> None:
        """Forward the widgets' clicks and edits to the controller, and render its every change."""
        self.generate_button.on_click(lambda _: self.controller.start())
        self.compare.observe(lambda change: self.controller.set_compare(bool(change["new"])), "value")
        self.reuse.observe(lambda change: self.controller.set_options(reuse=bool(change["new"])), "value")
        self.strict.observe(lambda change: self.controller.set_options(strict=bool(change["new"])), "value")
        self.api_key.observe(self._on_key, "value")
        self.controller.subscribe(self._render)

    # -- driving the form (the controller's actions) ----------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a generation runs in the background."""
        return self.controller.running

    @property
    def result(self) -> Result | None:
        """The last generation's Result, or None."""
        return self.controller.state.result

    @property
    def task(self) -> Task | None:
        """The last generation's Task, or None."""
        return self.controller.task

    @property
    def last_error(self) -> SparkError | None:
        """The last generation's failure, or None."""
        return self.controller.state.error

    @property
    def on_result(self) -> Callable[[Result], None] | None:
        """Called with each new Result (e.g. the studio refreshing its history)."""
        return self.controller.on_result

    @on_result.setter
    def on_result(self, callback: Callable[[Result], None] | None) -> None:
        self.controller.on_result = callback

    def use_samples(self) -> None:
        """Pick the bundled sample for every input (as clicking each "Use sample" does)."""
        self.controller.use_samples()

    def start(self) -> bool:
        """Start generating in a background thread, as the Generate button does.

        Returns:
            True when it started; False when a generation is already running.
        """
        return self.controller.start()

    def stop(self) -> None:
        """Stop waiting for the running generation (its task keeps running on the service)."""
        self.controller.stop()

    def generate(self, timeout: float | None = None) -> Result:
        """Generate and wait, without a click (headless notebooks); the form shows it all.

        Args:
            timeout: Seconds to wait for the generation here (None: until it ends).

        Returns:
            The Result, as the form shows it.

        Raises:
            SparkError: The generation failed (the error the form shows), or a UsageError when one is already
                running or it is still running after timeout.
        """
        return self.controller.generate(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Join the running generation (and comparison).

        Args:
            timeout: Seconds to wait at most (None: until they end).

        Returns:
            True when nothing is left running.
        """
        return self.controller.wait(timeout)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- the view --------------------------------------------------------------------------------------

    def _render(self) -> None:
        with self._lock:  # the newest state, whichever thread's change called: a late render shows it too
            state = self.controller.state
            self.backend_info.value = _words.backend_markup(state.backend, state.base_url)
            refused = self.controller.refused  # Generate would only fail: it waits for the input's fix
            self.generate_button.disabled = state.running or bool(refused)
            self.progress.value = state.progress
            self.progress.bar_style = {"completed": "success", "failed": "danger"}.get(state.stage, "")
            self.status.value = _words.status_text(state, self.controller.missing, refused)
            self.error.value = _words.error_markup(state.shown_error) if state.shown_error else ""
            self.notes.value = _words.notes_markup(state.notes)
            result = state.result
            self._result.show(None if result is None else (result.task_id, str(result.path)),
                              lambda: None if result is None else _words.result_markup(result))
            self.api_key.placeholder = KEY_SET if state.key_set else KEY_PLACEHOLDER
            self.reuse.value, self.strict.value, self.compare.value = state.reuse, state.strict, state.compare
            set_visible(self.compare_area, state.compare)
            self._compared.show((state.compare, state.compare_stage, state.compare_video),
                                lambda: _words.compare_markup(state))

    def _on_key(self, change: Mapping[str, Any]) -> None:
        text = str(change["new"] or "")
        if not text.strip():
            return
        self.api_key.value = ""  # out of the widget state (and so out of saved notebooks) before it is checked
        self.controller.set_key(text)
