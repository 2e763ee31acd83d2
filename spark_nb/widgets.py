"""Notebook forms (ipywidgets 8) for the two models: pick inputs, check and fix them, generate, compare.

    import spark_nb.widgets
    spark_nb.widgets.studio()        # both forms in tabs; or avatar_form() / imitator_form()

A form is built from a model's spec (ModelForm(spec)): one picker per media input, Generate, the result.
Each form takes the configure() options for its own calls (api_key, backend, base_url, output_dir, uploader)
and exposes its widgets as attributes (see ModelForm and MediaPicker), with stable CSS classes
(spark-generate, spark-status, spark-error, spark-result, spark-sample-image, ...) for browser tests.
Every input rule is the pipeline's own (spark_nb._inputs): a form shows its errors and advice and offers
its fixes, and generates through the same submit() and Task.wait() as generate().
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ipywidgets as W

from . import _pipeline as pipeline
from . import display
from ._boundary import boundary
from ._config import Secret, hide_key, resolve
from ._inputs import FIX_LABELS
from ._money import format_usd
from ._results import Result
from ._tasks import Task, TaskState
from ._widgets_picker import _HIDDEN, _SHOWN, MediaPicker, _action, _classes, _error_markup, _set_visible, _show
from .errors import AuthenticationError, SparkError, UsageError, ValidationError
from .models import AVATAR, IMITATOR, MediaKind, ModelSpec
from .samples import DRIVING_VIDEO, PORTRAIT, SPEECH

__all__ = ["MediaPicker", "ModelForm", "Studio", "avatar_form", "imitator_form", "model_form", "studio"]

SAMPLES: dict[MediaKind, Path] = {"image": PORTRAIT, "audio": SPEECH, "video": DRIVING_VIDEO}
_COMPARE_LATER = "<i>the comparison appears here once a video is generated</i>"


class ModelForm:
    """A form for one model, built from its spec: a picker per input, backend and key, Generate with live
    progress, the result, and compare.

    Attributes for code and tests: spec, pickers (field name -> MediaPicker; each also as an attribute named
    after the input, e.g. form.image, form.audio), backend_info (HTML), api_key (Password, shown on the cloud
    backend when no key is set), generate_button, progress (FloatProgress 0..1), status (Label), error (HTML),
    result_area (Output), compare (ToggleButton), compare_area (Output), result (last Result or None), task
    (last Task or None), last_error (the last failure or None), widget (the root VBox).
    """

    def __init__(self, spec: ModelSpec, *, timeout: float = 600, **config: Any) -> None:
        settings = resolve(**hide_key(config))  # unknown options fail here, not at the first click
        self.spec = spec
        self.timeout = timeout
        self._config = dict(config)
        self._key: Secret | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._worker: threading.Thread | None = None
        self._compare_worker: threading.Thread | None = None
        self.result: Result | None = None
        self.task: Task | None = None
        self.last_error: SparkError | None = None
        self.pickers = {f.name: MediaPicker(f, SAMPLES[f.kind], self._inputs_changed, limits=settings.limits)
                        for f in spec.fields}
        self.backend = settings.backend
        self.backend_info = _classes(W.HTML(self._backend_markup(settings.backend, settings.base_url)),
                                     "spark-backend")
        self.needs_key = settings.backend == "cloud" and settings.api_key is None
        self.api_key = _classes(W.Password(description="API key", placeholder="Vtrix API key (kept in memory only)",
                                           layout=W.Layout(display=_SHOWN if self.needs_key else _HIDDEN)),
                                "spark-api-key")
        self.api_key.observe(self._on_key, "value")
        self.generate_button = _classes(W.Button(description="Generate", button_style="primary", icon="play"),
                                        "spark-generate")
        self.progress = _classes(W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=W.Layout(width="20em")),
                                 "spark-progress")
        self.status = _classes(W.Label(value=self._idle_text()), "spark-status")
        self.error = _classes(W.HTML(), "spark-error")
        self.result_area = _classes(W.Output(), "spark-result")
        self.compare = _classes(W.ToggleButton(description="Compare", icon="columns", value=False,
                                               tooltip="show the inputs and the result side by side"),
                                "spark-compare")
        self.compare_area = _classes(W.Output(layout=W.Layout(display=_HIDDEN)), "spark-compare-area")
        self.reuse = _classes(W.Checkbox(value=True, description="reuse an identical earlier result",
                                         indent=False, layout=W.Layout(width="auto")), "spark-reuse")
        self.strict = _classes(W.Checkbox(value=False, description="strict: refuse inputs with a warning (no face "
                                                                   "found) instead of sending them",
                                          indent=False, layout=W.Layout(width="auto")), "spark-strict")
        self.on_result: Callable[[Result], None] | None = None  # e.g. the studio refreshing its history
        self.generate_button.on_click(lambda _: self.start())
        self.compare.observe(self._on_compare, "value")
        header = W.HTML(f"<h3 style='margin:0.2em 0'>{html.escape(spec.title)}</h3>")
        self.widget = _classes(W.VBox([
            header, self.backend_info, self.api_key, *(p.widget for p in self.pickers.values()),
            W.HBox([self.generate_button, self.progress, self.status]), self.reuse, self.strict, self.error,
            self.result_area,
            self.compare, self.compare_area,
        ]), "spark-form", f"spark-{spec.id}", *([f"spark-{spec.alias}-form"] if spec.alias else []))

    def __getattr__(self, name: str) -> MediaPicker:
        pickers: dict[str, MediaPicker] = self.__dict__.get("pickers", {})
        if name in pickers:
            return pickers[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # -- driving the form ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a generation runs in the background."""
        return self._worker is not None and self._worker.is_alive()

    def use_samples(self) -> None:
        """Pick the bundled sample for every input (as clicking each "Use sample" does)."""
        for picker in self.pickers.values():
            picker.use_sample()

    def start(self) -> bool:
        """Start generating in a background thread, as the Generate button does; False if one is running."""
        with self._lock:
            if self.running:
                return False
            self.generate_button.disabled = True
            self.result, self.task, self.last_error = None, None, None
            self._cancel.clear()
            self.error.value = ""
            self.progress.value, self.progress.bar_style = 0.0, ""
            self.status.value = "starting…"
            _show(self.result_area, None)
            _show(self.compare_area, _COMPARE_LATER if self.compare.value else None)
            self._worker = threading.Thread(target=self._run, name=f"spark-{self.spec.id}", daemon=True)
            self._worker.start()
            return True

    def stop(self) -> None:
        """Stop waiting for the running generation (its task keeps running on the service)."""
        self._cancel.set()

    def generate(self, timeout: float | None = None) -> Result:
        """Generate and wait, without a click (headless notebooks); the form shows it all. Raises on failure."""
        if not self.start():
            raise UsageError("a generation is already running in this form", hint="call form.wait() first")
        self.wait(timeout)
        if self.running:
            raise UsageError("the generation is still running", hint="call form.wait() for it")
        if self.last_error is not None:
            raise self.last_error
        assert self.result is not None
        return self.result

    def wait(self, timeout: float | None = None) -> bool:
        """Join the running generation (and comparison); True when nothing is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for attribute in ("_worker", "_compare_worker"):
            worker = getattr(self, attribute)  # read after the generation ended: its end may start a comparison
            if worker is not None:
                worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        busy = [w for w in (self._worker, self._compare_worker) if w is not None and w.is_alive()]
        return not busy

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # -- the generation --------------------------------------------------------------------------------

    def _show_error(self, exc: SparkError) -> None:
        self.last_error = exc
        self.error.value = _error_markup(exc)
        self.progress.bar_style = "danger"
        self.status.value = f"failed: {type(exc).__name__}" + (f" (task {self.task.id})" if self.task else "")

    @_action
    def _run(self) -> None:
        try:
            result = self._generate()
            self.result = result
            self.progress.value, self.progress.bar_style = 1.0, "success"
            duration = f"{result.duration:.1f} s" if result.duration else "?"
            cost = format_usd(result.cost)
            self.status.value = f"completed · task {result.task_id} · {duration} · cost {cost}"
            if self.task is not None and self.task.origin == "reused":
                self.status.value = (f"completed earlier: reused · task {result.task_id} · {duration} · "
                                     f"cost {cost} (untick reuse for a new take)")
            saved = html.escape(str(result.path))
            info = f'<div class="spark-result-info" style="font-size:90%">saved at <code>{saved}</code></div>'
            self.generate_button.disabled = False  # usable as soon as the result shows (the history may still load)
            _show(self.result_area, display.result_html(result) + info)
            if self.compare.value:
                self._start_compare()
            if self.on_result is not None:
                self.on_result(result)
        finally:
            self.generate_button.disabled = False

    def _generate(self) -> Result:
        values = self._values()
        config = self._call_config()
        self.status.value = "uploading inputs and creating the task…"
        started = time.monotonic()
        names = {name: picker.name for name, picker in self.pickers.items() if picker.name}  # an upload's own name
        task = pipeline.submit(self.spec, values, reuse=self.reuse.value, strict=self.strict.value, source="form",
                               names=names, **config)
        self.task = task
        if task.origin == "attached":
            self.status.value = f"an identical earlier task {task.id} is still running: waiting for it"

        def show(state: TaskState) -> None:
            if state.progress is not None:
                self.progress.value = max(self.progress.value, min(1.0, state.progress))
            shown = f" {state.progress:.0%}" if state.progress is not None else ""
            self.status.value = f"{state.status}{shown} · task {task.id} · {time.monotonic() - started:.0f} s"
            if state.done:
                self.status.value = f"{state.status} · downloading the video…"

        remaining = max(1.0, self.timeout - (time.monotonic() - started))
        return task.wait(remaining, progress=False, cancel=self._cancel, on_update=show)

    def _values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, picker in self.pickers.items():
            if picker.value is None and picker.error is None:
                raise ValidationError(f"{picker.field.label} is missing", reason="missing",
                                      code=picker.field.missing_code, field=name,
                                      hint="upload a file, paste a URL (then Enter) or click Use sample")
            if picker.error is not None:
                raise picker.error
            if picker.pending_fix == "trim_audio":  # as generate() would: the picker then shows what is sent
                self.status.value = f"{FIX_LABELS['trim_audio'].lower()}: the {picker.field.label}…"
                picker.apply_fix()
                if picker.error is not None:
                    raise picker.error
            values[name] = picker.value
        return values

    def _call_config(self) -> dict[str, Any]:
        config = dict(self._config)
        if self._key is not None:
            config["api_key"] = self._key
        settings = resolve(**config)
        self.backend = settings.backend  # configure() may have changed it since the form was made
        self.backend_info.value = self._backend_markup(settings.backend, settings.base_url)
        if settings.backend == "cloud" and settings.api_key is None:
            raise AuthenticationError("the cloud backend needs an API key and none is set",
                                      hint="paste your Vtrix API key into this form's API key field "
                                           "(or set VTRIX_API_KEY before creating the form)")
        return config

    # -- compare ---------------------------------------------------------------------------------------

    @_action
    def _on_compare(self, change: Mapping[str, Any]) -> None:
        _set_visible(self.compare_area, bool(change["new"]))
        if not change["new"]:
            _show(self.compare_area, None)
        elif self.result is None:
            _show(self.compare_area, _COMPARE_LATER)
        elif not self.running:
            self._start_compare()

    def _start_compare(self) -> None:
        if self._compare_worker is not None and self._compare_worker.is_alive():
            return
        self._compare_worker = threading.Thread(target=self._compare_run, name="spark-compare", daemon=True)
        self._compare_worker.start()

    def _compare_run(self) -> None:
        result = self.result
        if result is None:
            return
        _show(self.compare_area, "<i>putting the inputs and the result side by side…</i>")
        try:
            path = boundary(self._side_by_side)(result)
        except SparkError as exc:  # the comparison failed, not the generation: said, without failing the form
            self.error.value = _error_markup(exc)
            _show(self.compare_area, None)
            return
        if self.result is result and self.compare.value:
            _show(self.compare_area, display.video_html(path, caption=f"inputs and result · task {result.task_id}",
                                                        width=640))

    def _side_by_side(self, result: Result) -> Path:
        from .media import side_by_side

        out = result.path.with_name(f"{result.task_id}-compare.mp4")
        if out.is_file() and out.stat().st_size > 0:
            return out
        # the visual inputs that are files here (a URL input was never downloaded to this machine)
        visuals = [(p.field.label, p.value) for p in self.pickers.values()
                   if p.field.kind in ("image", "video") and isinstance(p.value, Path)]
        videos = [value for _, value in visuals] + [result.path]
        labels = [label for label, _ in visuals] + ["result"]
        return side_by_side(videos, labels=labels, out=out)

    # -- small helpers ---------------------------------------------------------------------------------

    def _inputs_changed(self) -> None:
        if self.running:
            return
        if self.last_error is not None or self.error.value:  # a failure about the old inputs: gone with them
            self.error.value = ""
            self.last_error = None
            self.progress.value, self.progress.bar_style = 0.0, ""
        if self.result is None:
            self.status.value = self._idle_text()

    def _idle_text(self) -> str:
        missing = [p.field.label for p in self.__dict__.get("pickers", {}).values() if p.value is None]
        if missing:
            return f"pick the {' and the '.join(missing)}, then Generate"
        return "ready: click Generate"

    @_action
    def _on_key(self, change: Mapping[str, Any]) -> None:
        if not str(change["new"] or "").strip():
            return
        # out of the widget state (and so out of saved notebooks) before it is checked: kept only as a Secret
        self.api_key.value = ""
        try:
            self._key = Secret(str(change["new"]), "this form's API key field")
        except SparkError as exc:  # whitespace or a control character inside: said, and the key not kept
            self._key = None
            self.api_key.placeholder = "Vtrix API key (kept in memory only)"
            self.error.value = _error_markup(exc)
            return
        self.api_key.placeholder = "key set for this form (hidden); type to replace it"
        if self.last_error is None:  # a refused key's message goes with it (a failed generation's stays)
            self.error.value = ""

    @staticmethod
    def _backend_markup(backend: str, base_url: str) -> str:
        if backend == "local":
            where = "the embedded renderer on this machine; no key needed"
        else:
            where = f"Vtrix at {html.escape(base_url)}"
        return f'Backend: <b class="spark-backend-name">{backend}</b> ({where})'


class Studio:
    """Forms for several models in a Tab (by default the two Spark models); each also as an attribute by alias.

    .forms maps model id -> ModelForm; .avatar and .imitator are the two default ones; .widget is the Tab.
    """

    def __init__(self, specs: tuple[ModelSpec, ...] = (AVATAR, IMITATOR), *, timeout: float = 600,
                 **config: Any) -> None:
        self._config = dict(hide_key(config))
        self.forms = {spec.id: ModelForm(spec, timeout=timeout, **config) for spec in specs}
        # short titles: a widget Tab gives each title a fixed width (about 144 px) and cuts longer ones off
        titles = [_tab_title(spec) for spec in specs]
        self.history = _classes(W.Output(), "spark-history")
        refresh = _classes(W.Button(description="Refresh", icon="refresh"), "spark-history-refresh")
        refresh.on_click(lambda _: self.show_history())
        for form in self.forms.values():
            form.on_result = lambda _: self.show_history()
        self.widget = _classes(W.Tab(children=[*(form.widget for form in self.forms.values()),
                                               W.VBox([refresh, self.history])], titles=[*titles, "History"]),
                               "spark-studio")
        self.show_history()

    @_action
    def show_history(self) -> None:
        """Show the journal's tasks (newest first) and their total cost in the History tab."""
        from ._history import history

        _show(self.history, history(**self._config)._repr_html_())

    def _show_error(self, exc: SparkError) -> None:
        _show(self.history, _error_markup(exc))

    def __getattr__(self, name: str) -> ModelForm:
        forms: dict[str, ModelForm] = self.__dict__.get("forms", {})
        for form in forms.values():
            if form.spec.alias == name:
                return form
        raise AttributeError(f"Studio has no form called {name!r}")

    def wait(self, timeout: float | None = None) -> bool:
        """Join every form's running work; True when nothing is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = True
        for form in self.forms.values():
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = form.wait(left) and done
        return done

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _tab_title(spec: ModelSpec) -> str:
    """A model's tab title: its alias (or id), short enough for a widget tab to show whole."""
    title = (spec.alias or spec.id).replace("_", " ").capitalize()
    return title if len(title) <= 16 else f"{title[:15]}…"


def model_form(spec: ModelSpec, *, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for any model spec; config takes configure()'s options (api_key, backend, base_url, ...)."""
    return ModelForm(spec, timeout=timeout, **config)


def avatar_form(*, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for the avatar model; config takes configure()'s options (api_key, backend, base_url, ...)."""
    return ModelForm(AVATAR, timeout=timeout, **config)


def imitator_form(*, timeout: float = 600, **config: Any) -> ModelForm:
    """A form for the imitator model; config takes configure()'s options (api_key, backend, base_url, ...)."""
    return ModelForm(IMITATOR, timeout=timeout, **config)


def studio(*, timeout: float = 600, **config: Any) -> Studio:
    """Both forms in tabs (avatar, imitator); config takes configure()'s options for their calls."""
    return Studio(timeout=timeout, **config)
