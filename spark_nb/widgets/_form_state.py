"""One model's form as state and actions, without widgets: its inputs (a PickerController each), its options,
the key typed into it, Generate (in a worker thread, through the pipeline's own submit() and Task.wait()), the
result, what the generation said on the way, and the side-by-side comparison.

The state is an immutable `FormState`, replaced whole under a lock; listeners are called after every change, from
the thread that made it (a worker's too). The view (`_form_view.ModelForm`) is such a listener: it alone writes
widgets. Nothing here imports ipywidgets, so a form can be driven, and tested, without a browser or widgets.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from .. import _pipeline as pipeline
from .._boundary import boundary
from .._config import Secret, hide_key, resolve
from .._notices import begin
from .._results import Result
from .._surfaces import notices_to
from .._task_state import TaskState
from .._tasks import Task
from ..errors import AuthenticationError, SparkError, UsageError, ValidationError
from ..models import MediaKind, ModelSpec
from ..samples import DRIVING_VIDEO, PORTRAIT, SPEECH
from ._actions import action, task_of
from ._picker_state import PickerController

SAMPLES: dict[MediaKind, Path] = {"image": PORTRAIT, "audio": SPEECH, "video": DRIVING_VIDEO}
Stage = Literal["idle", "starting", "sending", "attached", "waiting", "downloading", "completed", "failed"]
RUNNING: frozenset[Stage] = frozenset({"starting", "sending", "attached", "waiting", "downloading"})
CompareStage = Literal["none", "waiting", "building", "shown"]


@dataclasses.dataclass(frozen=True)
class FormState:
    """A form at one moment: where its generation is, what it gave or why it failed, and its options.

    stage: idle, starting, sending (uploads and the create), attached (waiting for an identical earlier task),
    waiting (polling the task), downloading, completed or failed. error is the last generation's failure;
    shown_error what the form's error area says (that failure, a refused key or a comparison that failed). notes
    are what the generation said on the way (advice on the inputs, the trimming, a reused task), as it says them
    to code: the view puts them in the form's words.
    """

    stage: Stage = "idle"
    progress: float = 0.0
    task_id: str | None = None
    origin: str | None = None  # the task's: "created", "reused" (an earlier identical call's) or "attached"
    poll: TaskState | None = None
    elapsed: float = 0.0
    result: Result | None = None
    error: SparkError | None = None
    shown_error: SparkError | None = None
    notes: tuple[str, ...] = ()
    backend: str = "local"
    base_url: str = ""
    key_set: bool = False
    reuse: bool = True
    strict: bool = False
    compare: bool = False
    compare_stage: CompareStage = "none"
    compare_video: Path | None = None

    @property
    def running(self) -> bool:
        """True from Generate until the result or the failure is known."""
        return self.stage in RUNNING


class FormController:
    """The state and actions of one model's form: pickers, options, key, Generate, the result, compare."""

    def __init__(self, spec: ModelSpec, *, timeout: float = 600, **config: Any) -> None:
        settings = resolve(**hide_key(config))  # unknown options fail here, not at the first click
        self.spec = spec
        self.timeout = timeout
        self._config = dict(config)
        self.needs_key = settings.backend == "cloud" and settings.api_key is None
        self.pickers = {f.name: PickerController(f, SAMPLES[f.kind], limits=settings.limits) for f in spec.fields}
        self.task: Task | None = None
        self.on_result: Callable[[Result], None] | None = None  # e.g. the studio refreshing its history
        self._key: Secret | None = None
        self._state = FormState(backend=settings.backend, base_url=settings.base_url)
        self._lock = threading.Lock()
        self._starting = threading.Lock()
        self._cancel = threading.Event()
        self._worker: threading.Thread | None = None
        self._compare_worker: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        for picker in self.pickers.values():
            picker.subscribe(self._inputs_changed)

    # -- reading ---------------------------------------------------------------------------------------

    @property
    def state(self) -> FormState:
        """The form as it is now (an immutable snapshot)."""
        return self._state

    @property
    def running(self) -> bool:
        """True while a generation runs in the background (until its result is shown and handed on)."""
        return self._worker is not None and self._worker.is_alive()

    @property
    def missing(self) -> list[str]:
        """The labels of the inputs not picked yet."""
        return [p.field.label for p in self.pickers.values() if p.state.value is None]

    @property
    def refused(self) -> list[str]:
        """The labels of the inputs picked but refused by their checks (each picker says why)."""
        return [p.field.label for p in self.pickers.values() if p.state.value is not None and p.state.error]

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call listener() after every change of the form's state (from the thread that made it)."""
        self._listeners.append(listener)

    # -- actions ---------------------------------------------------------------------------------------

    def use_samples(self) -> None:
        """Pick the bundled sample for every input (as clicking each "Use sample" does)."""
        for picker in self.pickers.values():
            picker.use_sample()

    def set_options(self, *, reuse: bool | None = None, strict: bool | None = None) -> None:
        """Set the options of the next generation (reuse an identical earlier result; strict refusal of advice)."""
        self._change(lambda s: dataclasses.replace(s, reuse=s.reuse if reuse is None else reuse,
                                                   strict=s.strict if strict is None else strict))

    @action
    def set_key(self, text: str) -> None:
        """Use text as this form's API key (kept as a Secret, in memory only); a malformed one is refused."""
        if not text.strip():
            return
        try:
            self._key = Secret(text, "this form's API key field")
        except SparkError as exc:  # whitespace or a control character inside: said, and the key not kept
            self._key = None
            self._update(key_set=False, shown_error=exc)
            return
        # a refused key's message goes with it (a failed generation's stays)
        self._change(lambda s: dataclasses.replace(s, key_set=True, shown_error=s.shown_error if s.error else None))

    def start(self) -> bool:
        """Start generating in a background thread, as the Generate button does; False if one is running."""
        with self._starting:
            if self.running:
                return False
            self.task = None
            self._cancel.clear()
            self._change(lambda s: dataclasses.replace(
                s, stage="starting", progress=0.0, task_id=None, origin=None, poll=None, result=None, error=None,
                shown_error=None, notes=(), compare_stage="waiting" if s.compare else "none", compare_video=None))
            self._worker = threading.Thread(target=self._run, name=f"spark-{self.spec.id}", daemon=True)
            self._worker.start()
            return True

    def stop(self) -> None:
        """Stop waiting for the running generation (its task keeps running on the service)."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the running generation (and comparison); True when nothing is left running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for attribute in ("_worker", "_compare_worker"):
            worker = getattr(self, attribute)  # read after the generation ended: its end may start a comparison
            if worker is not None:
                worker.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(w is not None and w.is_alive() for w in (self._worker, self._compare_worker))

    def generate(self, timeout: float | None = None) -> Result:
        """Generate and wait (headless notebooks); the result, or the failure raised."""
        if not self.start():
            raise UsageError("a generation is already running in this form", hint="call form.wait() first")
        self.wait(timeout)
        if self.running:
            raise UsageError("the generation is still running", hint="call form.wait() for it")
        state = self._state
        if state.error is not None:
            raise state.error
        assert state.result is not None
        return state.result

    def set_compare(self, on: bool) -> None:
        """Show (on) the inputs and the result side by side, built once a result is there; or stop showing it."""
        if not on:
            self._update(compare=False, compare_stage="none", compare_video=None)
            return
        self._change(lambda s: dataclasses.replace(s, compare=True,
                                                   compare_stage="waiting" if s.result is None else "building"))
        state = self._state
        if state.result is not None and not state.running:
            self._start_compare()

    # -- the generation (worker thread) ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            result = boundary(FormController._generate, task_of=task_of)(self)
        except SparkError as exc:
            self._failed(exc)
            return
        self._update(stage="completed", result=result, progress=1.0)
        if self._state.compare:
            self._start_compare()
        if self.on_result is not None:
            self._tell(result)

    @action
    def _tell(self, result: Result) -> None:
        assert self.on_result is not None
        self.on_result(result)

    def _generate(self) -> Result:
        with notices_to(self._note):  # a reused task's notice, a key store's: the form's notes, not the notebook
            values, names = self._inputs()
            config = self._call_config()
            self._update(stage="sending")
            started = time.monotonic()
            options = self._state
            task = pipeline.submit(self.spec, values, reuse=options.reuse, strict=options.strict, source="form",
                                   names=names, advise=self._note, **config)  # long audio: trimmed by the pipeline
            self.task = task
            self._update(task_id=task.id, origin=task.origin, **({"stage": "attached"} if task.origin == "attached"
                                                                   else {}))

            def show(poll: TaskState) -> None:
                self._change(lambda s: dataclasses.replace(
                    s, stage="downloading" if poll.done else "waiting", poll=poll,
                    elapsed=time.monotonic() - started,
                    progress=s.progress if poll.progress is None else max(s.progress, min(1.0, poll.progress))))

            remaining = max(1.0, self.timeout - (time.monotonic() - started))
            result: Result = task.wait(remaining, progress=False, cancel=self._cancel, on_update=show)
            return result

    def _inputs(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The values to send (each input as the user gave it) and the names the user knows them by."""
        values: dict[str, Any] = {}
        names: dict[str, str] = {}
        for name, picker in self.pickers.items():
            state = picker.state
            if state.error is not None:
                raise state.error
            if state.value is None:
                raise ValidationError(f"{picker.field.label} is missing", reason="missing",
                                      code=picker.field.missing_code, field=name,
                                      hint="upload a file, paste a URL (then Enter) or click Use sample")
            values[name] = state.value
            if state.name:
                names[name] = state.name
        return values, names

    def _call_config(self) -> dict[str, Any]:
        config = dict(self._config)
        if self._key is not None:
            config["api_key"] = self._key
        settings = begin(resolve(**config))  # where a form's call starts: a key it cannot use refused, its notices
        # configure() may have changed the backend since the form was made
        self._update(backend=settings.backend, base_url=settings.base_url)
        if settings.backend == "cloud" and settings.api_key is None:
            raise AuthenticationError("the cloud backend needs an API key and none is set",
                                      hint="paste your Vtrix API key into this form's API key field "
                                           "(or set VTRIX_API_KEY before creating the form)")
        return config

    def _note(self, text: str) -> None:
        self._change(lambda s: dataclasses.replace(s, notes=(*s.notes, text)))

    def _failed(self, exc: SparkError) -> None:
        self._update(stage="failed", error=exc, shown_error=exc)

    # -- compare (worker thread) -----------------------------------------------------------------------

    def _start_compare(self) -> None:
        if self._compare_worker is not None and self._compare_worker.is_alive():
            return
        self._compare_worker = threading.Thread(target=self._compare_run, name="spark-compare", daemon=True)
        self._compare_worker.start()

    def _compare_run(self) -> None:
        result = self._state.result
        if result is None:
            return
        self._update(compare_stage="building")
        try:
            path = boundary(self._side_by_side)(result)
        except SparkError as exc:  # the comparison failed, not the generation: said, without failing the form
            self._update(shown_error=exc, compare_stage="none")
            return
        self._change(lambda s: dataclasses.replace(s, compare_stage="shown", compare_video=path)
                     if s.result is result and s.compare else s)

    def _side_by_side(self, result: Result) -> Path:
        from ..media import side_by_side

        out = result.path.with_name(f"{result.task_id}-compare.mp4")
        if out.is_file() and out.stat().st_size > 0:
            return out
        # the visual inputs that are files here (a URL input was never downloaded to this machine)
        visuals = [(p.field.label, p.state.value) for p in self.pickers.values()
                   if p.field.kind in ("image", "video") and isinstance(p.state.value, Path)]
        videos: list[Path] = [value for _, value in visuals if isinstance(value, Path)] + [result.path]
        labels = [label for label, _ in visuals] + ["result"]
        return side_by_side(videos, labels=labels, out=out)

    # -- state -----------------------------------------------------------------------------------------

    def _inputs_changed(self) -> None:
        if self.running:
            return

        def forget_failure(s: FormState) -> FormState:  # a failure about the old inputs: gone with them
            if s.stage == "failed":
                return dataclasses.replace(s, stage="idle", error=None, shown_error=None, progress=0.0)
            return dataclasses.replace(s, error=None, shown_error=None)

        self._change(forget_failure)

    def _update(self, **changes: Any) -> None:
        self._change(lambda s: dataclasses.replace(s, **changes))

    def _change(self, change: Callable[[FormState], FormState]) -> None:
        with self._lock:
            self._state = change(self._state)
        for listener in list(self._listeners):
            listener()
