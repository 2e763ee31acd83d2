"""The forms' controllers without any widget: state and actions (pick, sample, fix, Generate, the result, the
messages and the errors) driven directly, against the real local server; and in a fresh interpreter that never
imports ipywidgets. What a form says is built from their state, in the form's words (spark_nb.widgets._words)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from spark_nb import _keys, _surfaces, avatar
from spark_nb._scratch import scratch_dir
from spark_nb.errors import SparkError, ValidationError
from spark_nb.local import LocalServer
from spark_nb.models import AVATAR
from spark_nb.samples import PORTRAIT
from spark_nb.widgets import _words
from spark_nb.widgets._form_state import FormController
from spark_nb.widgets._picker_state import PickerController

from .conftest import TEST_KEY, cloud_config

WAIT_S = 240  # a guard against a hang on a shared, slow machine, not a speed test
SCRATCH_NAME = re.compile(r"[0-9a-f]{24}")  # how an upload's scratch copy is named

DRIVE = r"""
import json, sys, threading
config = json.loads(sys.stdin.read())
from spark_nb.models import AVATAR
from spark_nb.widgets import _words
from spark_nb.widgets._form_state import FormController

form = FormController(AVATAR, **config)
seen = []
form.subscribe(lambda: seen.append((form.state.stage, threading.current_thread().name)))
form.use_samples()
idle = _words.status_text(form.state, form.missing)
result = form.generate(240)
print(json.dumps({"idle": idle, "status": _words.status_text(form.state, form.missing), "task": result.task_id,
                  "video": str(result.path), "seen": seen, "notes": list(form.state.notes),
                  "loaded": [m for m in ("ipywidgets", "IPython", "traitlets") if m in sys.modules]}))
"""


def upload_item(path: Path, name: str) -> dict[str, object]:
    """A FileUpload item as ipywidgets 8 delivers it: the file's own name and its bytes."""
    return {"name": name, "type": "", "size": path.stat().st_size, "content": memoryview(path.read_bytes())}


def landscape(folder: Path) -> Path:
    """A picture without a face: the face search's advice (a refusal when strict)."""
    path = folder / "landscape.jpg"
    Image.new("RGB", (480, 360), (90, 140, 200)).save(path, quality=90)
    return path


@pytest.mark.slow
def test_a_form_generates_on_the_local_server_without_ipywidgets(server: LocalServer) -> None:
    """A fresh interpreter drives the avatar form's controller: samples, Generate, the result and its status line;
    ipywidgets (and IPython, traitlets) are never imported. Its listener hears each stage, the later ones from the
    worker thread: that is where a view would render them (only the view writes widgets)."""
    config = {k: str(v) for k, v in cloud_config(server).items() if k != "api_key"}
    env = {**os.environ, "VTRIX_API_KEY": TEST_KEY}  # the key in the environment, not on a command line
    out = subprocess.run([sys.executable, "-c", DRIVE], input=json.dumps(config), capture_output=True, text=True,
                         timeout=WAIT_S + 60, check=False, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    said = json.loads(out.stdout)
    assert said["loaded"] == []
    assert said["idle"] == "ready: click Generate"
    assert said["status"].startswith(f"completed · task {said['task']}") and "cost $0.00" in said["status"]
    assert Path(said["video"]).is_file() and server.stats()["created"] == 1
    stages = [stage for stage, _ in said["seen"]]
    assert set(stages[:stages.index("starting")]) == {"idle"}  # picking the samples: the status follows them
    assert stages[-1] == "completed" and "sending" in stages, stages
    assert {thread for stage, thread in said["seen"] if stage == "completed"} == {"spark-spark_avatar_picture_omni_v2"}


def test_a_picker_takes_the_sample_and_names_a_bad_upload_by_its_own_name(media: dict[str, Path]) -> None:
    """Use sample: checked, previewed under its name. Then speech uploaded as "not_really.png" for the portrait:
    the error names that file, never the scratch copy its bytes were written to, and it is the picker's state,
    not a rewritten message."""
    picker = PickerController(AVATAR.fields[0], PORTRAIT)
    changes: list[str] = []
    picker.subscribe(lambda: changes.append(picker.state.source or ""))
    picker.use_sample()
    state = picker.state
    assert state.ok and state.value == PORTRAIT and state.caption == "sample portrait.jpg" and changes[-1] == "sample"
    assert _words.problem_markup(state) == "" and "<img" in (_words.preview_markup(state, "image") or "")

    picker.pick(upload_item(media["speech"], "not_really.png"), source="upload")
    state = picker.state
    assert isinstance(state.error, ValidationError) and state.error.reason == "not_decodable"
    assert state.name == "not_really.png" and "not_really.png" in state.error.headline, state.error.headline
    shown = _words.problem_markup(state)
    assert "could not be decoded" in shown and "fix:" in shown
    assert str(scratch_dir()) not in shown and not SCRATCH_NAME.search(shown), shown


@pytest.mark.slow
def test_reading_the_inputs_trims_nothing_the_pipeline_trims_long_audio(server: LocalServer,
                                                                       media: dict[str, Path]) -> None:
    """A 17 s clip: the picker offers the trim and says Generate trims it; Generate sends the user's own file (the
    picker still holds it, untouched) and the pipeline trims it, as generate() does: the form's notes say so in the
    form's words, and code calling generate() with the same files afterwards reuses the form's task."""
    form = FormController(AVATAR, **cloud_config(server))
    form.pickers["image"].use_sample()
    form.pickers["audio"].pick(upload_item(media["long_speech"], "long talk.wav"), source="upload")
    audio = form.pickers["audio"].state
    assert audio.pending_fix == "trim_audio" and "Generate trims it" in (_words.picker_note(audio) or "")
    sent = audio.value
    result = form.generate(WAIT_S)
    assert form.pickers["audio"].state is audio and audio.value == sent  # nothing read off the picker changed it
    notes = _words.notes_markup(form.state.notes)
    assert "trimmed to" in notes and "pass trim_audio=False" not in notes and "a form always trims" in notes, notes
    again = avatar.generate(PORTRAIT, media["long_speech"], progress=False, **cloud_config(server))
    assert again.task_id == result.task_id and server.stats()["created"] == 1


def test_a_strict_refusal_is_the_forms_error_in_its_words(server: LocalServer, tmp_path: Path) -> None:
    """Strict on and a faceless picture uploaded as "my view.jpg": Generate fails with ValidationError no_face,
    before any upload; the state keeps the error, the status says it failed, the error names "my view.jpg" and
    tells the user to untick Strict; picking another input clears the failure."""
    form = FormController(AVATAR, **cloud_config(server))
    form.pickers["image"].pick(upload_item(landscape(tmp_path), "my view.jpg"), source="upload")
    form.pickers["audio"].use_sample()
    assert "my view.jpg" in (form.pickers["image"].state.note or "")  # the advice, before Generate
    form.set_options(strict=True)
    with pytest.raises(ValidationError) as info:
        form.generate(WAIT_S)
    state = form.state
    assert info.value is state.error is state.shown_error and info.value.reason == "no_face"
    assert "my view.jpg" in info.value.headline and not SCRATCH_NAME.search(info.value.headline)
    shown = _words.error_markup(info.value)
    assert "untick Strict" in shown and "strict=False" not in shown, shown
    assert _words.status_text(state, form.missing) == "failed: ValidationError"
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)
    form.pickers["image"].use_sample()
    assert form.state.stage == "idle" and form.state.error is None and form.state.shown_error is None


def test_a_reused_result_and_its_notice_are_the_forms(server: LocalServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The same inputs twice: the second generation reuses the first task; its status and the reuse notice are in
    the form's notes, worded for the form ("untick Reuse earlier results"), not printed where code's go."""
    first = FormController(AVATAR, **cloud_config(server))
    first.use_samples()
    made = first.generate(WAIT_S)
    second = FormController(AVATAR, **cloud_config(server))
    second.use_samples()
    assert second.generate(WAIT_S).task_id == made.task_id and second.state.origin == "reused"
    status = _words.status_text(second.state, second.missing)
    assert status.startswith("completed earlier: reused") and "untick Reuse earlier results" in status
    notes = _words.notes_markup(second.state.notes)
    assert f"reusing task {made.task_id}" in notes and "untick Reuse earlier results for a new take" in notes
    assert "reusing" not in capsys.readouterr().err and server.stats()["created"] == 1


def test_missing_inputs_and_a_refused_key_are_state() -> None:
    """Nothing picked: the status asks for both inputs, Generate fails with what is missing and how to pick it.
    A key with a line break inside is refused into the error area and not kept; a good one is kept as a Secret."""
    form = FormController(AVATAR, backend="cloud", base_url="http://127.0.0.1:9", api_key=None)
    assert form.needs_key
    assert _words.status_text(form.state, form.missing) == "pick the portrait image and the speech audio, then Generate"
    with pytest.raises(ValidationError, match="portrait image is missing"):
        form.generate(WAIT_S)
    assert form.state.error is not None and "Use sample" in _words.error_markup(form.state.error)
    form.set_key(f"{TEST_KEY}\n{TEST_KEY}")
    assert not form.state.key_set and form.state.shown_error is not None
    assert TEST_KEY not in repr(form.state) and TEST_KEY not in _words.error_markup(form.state.shown_error)
    form.set_key(TEST_KEY)
    assert form.state.key_set and TEST_KEY not in repr(form.state) and TEST_KEY not in repr(vars(form))


def test_a_key_stores_malformed_key_is_the_forms_error_and_a_pasted_key_replaces_it(server: LocalServer,
                                                                                     tmp_path: Path) -> None:
    """~/.config/vtrix/config.yml holds a key with a line break: the form is still made (reading settings refuses
    nothing; before, its constructor raised) and asks for a key; Generate fails naming the file, never showing the
    key, before anything is sent; a key pasted into the form is used instead."""
    stored = tmp_path / "home" / ".config" / "vtrix" / "config.yml"
    stored.parent.mkdir(parents=True)
    stored.write_text('api_key: "sk-first-half-0123\\nsecond-half-4567"\n', encoding="utf-8")
    _keys.forget()
    form = FormController(AVATAR, base_url=server.url, uploader=f"{server.url}/api/v1/storage/files")
    assert form.needs_key
    form.use_samples()
    with pytest.raises(SparkError) as info:
        form.generate(WAIT_S)
    said = f"{info.value} {_words.error_markup(info.value)}"
    assert "~/.config/vtrix/config.yml has a line break" in said and "half" not in said
    assert (server.stats().get("uploads", 0), server.stats()["created"]) == (0, 0)
    form.set_key(TEST_KEY)
    assert form.generate(WAIT_S).task_id and server.stats()["created"] == 1


def test_each_surface_has_its_words_for_every_switch() -> None:
    """One table words each switch for each surface; code keeps its own spelling."""
    text = "or pass reuse=False for a new take; or pass strict=False to send it anyway (pass trim_audio=False)"
    assert _surfaces.in_words_of(text, "code") == text
    cli = _surfaces.in_words_of(text, "cli")
    assert "pass --no-reuse" in cli and "leave out --strict" in cli and "--no-trim" in cli and "=False" not in cli
    form = _surfaces.in_words_of(text, "form")
    assert "untick Reuse earlier results" in form and "untick Strict" in form
    for switch in _surfaces.SWITCHES:  # the form's words name its boxes as they are labelled
        box = _surfaces.words(switch, "form").removeprefix("untick ")
        if switch.startswith(("pass reuse", "pass strict")):
            assert (_words.REUSE_LABEL + _words.STRICT_LABEL).count(box) == 1, box


def test_the_url_checks_switch_is_named_as_each_surface_can_set_it() -> None:
    """check_urls= is an argument of code and of a form's constructor: the CLI names the variable that sets it
    (the second new-user pass: the CLI said "pass check_urls=False", which it has no flag for), a form says where
    the argument goes, or the variable."""
    from spark_nb._inputs_url import _unreachable
    from spark_nb.models import AVATAR

    hint = _unreachable("https://inputs.example/p.jpg", AVATAR.fields[0], "HTTP 404").hint or ""
    assert "pass check_urls=False" in hint
    cli, form = _surfaces.in_words_of(hint, "cli"), _surfaces.in_words_of(hint, "form")
    assert "check_urls" not in cli and "set SPARK_NB_CHECK_URLS=0 to send it unchecked" in cli, cli
    assert "make the form with check_urls=False" in form and "SPARK_NB_CHECK_URLS=0" in form, form


def test_notices_go_to_the_thread_that_asked_for_them(capsys: pytest.CaptureFixture[str]) -> None:
    """A form's worker thread takes its own notices; another thread's still reach stderr, in the process's words."""
    from spark_nb._notices import notify

    taken: list[str] = []

    def worker() -> None:
        with _surfaces.notices_to(taken.append):
            notify("reusing task x; pass reuse=False for a new take")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(WAIT_S)
    notify("elsewhere")
    with _surfaces.speaking("cli"):
        notify("pass reuse=False")
    assert taken == ["reusing task x; pass reuse=False for a new take"]
    assert capsys.readouterr().err.splitlines() == ["elsewhere", "pass --no-reuse"]
