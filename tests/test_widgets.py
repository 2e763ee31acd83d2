"""The notebook forms without a browser: uploads and clicks through ipywidgets' own mechanisms, real generations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import pytest
from PIL import Image

from spark_nb._ffmpeg import try_decode
from spark_nb._results import Result
from spark_nb.local import LocalServer
from spark_nb.widgets import MediaPicker, ModelForm, Studio, avatar_form, imitator_form, studio

from .conftest import TEST_KEY, cloud_config

WAIT_S = 240  # a shared, slow machine: local renders take seconds, more under load
LOOPBACK = re.compile(r"127\.0\.0\.1|localhost|\[::1\]")
MIME = {".jpg": "image/jpeg", ".png": "image/png", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".mp4": "video/mp4"}


def upload(picker: MediaPicker, path: Path, name: str | None = None) -> None:
    """Deliver a file to a FileUpload the way the frontend does: a v8 value through set_state (content a buffer)."""
    data = path.read_bytes()
    name = name or path.name
    picker.upload.set_state({"value": [{"name": name, "type": MIME.get(Path(name).suffix, ""), "size": len(data),
                                        "content": memoryview(data), "last_modified": 1_700_000_000_000}]})


def html_of(widget: W.Widget) -> str:
    """The HTML an Output or HTML widget shows."""
    if isinstance(widget, W.Output):
        return "".join(o.get("data", {}).get("text/html", "") for o in widget.outputs)
    return str(widget.value)


def descendants(widget: W.Widget) -> list[W.Widget]:
    """widget and every widget inside it (children of boxes and tabs)."""
    found = [widget]
    for child in getattr(widget, "children", ()):
        found += descendants(child)
    return found


def srcs(markup: str) -> list[str]:
    """Every src attribute in markup."""
    return re.findall(r'src="([^"]*)"', markup)


def visible(widget: W.DOMWidget) -> bool:
    """True unless the widget's layout hides it."""
    return widget.layout.display != "none"


def assert_plays_remotely(markup: str, tag: str) -> None:
    """markup has a tag whose src is relative or data:, and no loopback URL anywhere."""
    assert tag in markup, markup[:300]
    assert srcs(markup), markup[:300]
    for src in srcs(markup):
        assert src.startswith("data:") or not re.match(r"^[a-z]+:", src), src[:80]
    assert not LOOPBACK.search(markup)


def assert_completed(form: ModelForm) -> Result:
    """The form shows a finished generation: status, enabled button, inline video, task id and cost."""
    assert form.wait(WAIT_S), "the generation did not finish"
    assert form.error.value == "", form.error.value
    assert not form.generate_button.disabled
    assert form.status.value.startswith("completed"), form.status.value
    result = form.result
    assert isinstance(result, Result) and result.path.is_file()
    assert result.task_id in form.status.value and "cost $" in form.status.value
    markup = html_of(form.result_area)
    assert_plays_remotely(markup, "<video")
    assert srcs(markup)[0] == f"spark_outputs/{result.task_id}.mp4"  # relative: outputs land under the cwd
    assert result.task_id in markup and "cost $0.00" in markup
    assert form.progress.value == 1.0
    return result


@pytest.fixture
def slow_server(make_server: Callable[..., LocalServer]) -> LocalServer:
    """A server whose tasks take at least 3 s, so their progress is seen between 0 and 1."""
    return make_server(api_key=TEST_KEY, latency=3.0)


def test_avatar_form_uploads_previews_and_generates(server: LocalServer, media: dict[str, Path]) -> None:
    """Upload a portrait and speech, Generate: button disabled while running, result shown with id and cost."""
    form = avatar_form(**cloud_config(server))
    assert "cloud" in form.backend_info.value and not visible(form.api_key)
    upload(form.image, media["portrait"], "p.jpg")
    # the bytes went to a scratch file, not into the notebook's widget state (the item stays, empty, for the count)
    assert [len(item["content"]) for item in form.image.upload.value] == [0]
    assert_plays_remotely(html_of(form.image.preview), "<img")
    assert "p.jpg" in html_of(form.image.preview)
    upload(form.audio, media["speech"])
    assert_plays_remotely(html_of(form.audio.preview), "<audio")
    assert form.image.ok and form.audio.ok and form.status.value.startswith("ready")

    form.generate_button.click()
    assert form.generate_button.disabled
    result = assert_completed(form)
    assert result.model == "spark_avatar_picture_omni_v2"


@pytest.mark.slow
def test_progress_moves_while_polling(slow_server: LocalServer) -> None:
    """The progress bar takes the task's progress between 0 and 1 before completing, and the kernel is free."""
    form = avatar_form(**cloud_config(slow_server))
    form.use_samples()
    seen: list[float] = []
    form.progress.observe(lambda change: seen.append(change["new"]), "value")
    statuses: list[str] = []
    form.status.observe(lambda change: statuses.append(change["new"]), "value")
    assert form.start()
    assert form.running and form.generate_button.disabled
    assert not form.start()  # a second click while running starts nothing
    assert_completed(form)
    assert any(0.0 < v < 1.0 for v in seen), seen
    assert seen == sorted(seen)
    assert any("in_progress" in s or "pending" in s for s in statuses), statuses


def test_default_local_backend_imitator_without_config(media: dict[str, Path]) -> None:
    """With no key and no config the form says local and generates on the embedded server; generate() is sync."""
    form = imitator_form()
    assert "<b class=\"spark-backend-name\">local</b>" in form.backend_info.value
    assert not visible(form.api_key)
    form.image.sample.click()
    assert_plays_remotely(html_of(form.image.preview), "<img")
    upload(form.driving_video, media["driving"])
    assert_plays_remotely(html_of(form.driving_video.preview), "<video")
    result = form.generate(timeout=WAIT_S)
    assert result is form.result and result.model == "spark_avatar_imitator_v2v"
    assert_completed(form)


def test_long_audio_offers_trim_and_the_fix_works(media: dict[str, Path]) -> None:
    """A 17 s clip shows the problem and a 'Trim to 15 s' button; clicking it replaces the input with 15 s."""
    form = avatar_form()
    upload(form.audio, media["long_speech"])
    problem = form.audio.problem.value
    assert "17.0 s" in problem and "15 s" in problem
    assert visible(form.audio.fix) and form.audio.fix.description == "Trim to 15 s"
    assert "spark-fix-audio" in form.audio.fix._dom_classes
    form.audio.fix.click()
    assert form.audio.ok and form.audio.problem.value == "" and not visible(form.audio.fix)
    assert form.audio.media is not None and form.audio.media.facts is not None
    assert form.audio.media.facts.duration is not None and form.audio.media.facts.duration <= 15.0
    assert_plays_remotely(html_of(form.audio.preview), "<audio")


def test_non_image_shows_the_error_and_its_hint(media: dict[str, Path]) -> None:
    """Speech uploaded as the portrait: the error and its fix are shown at once; Generate reports it in the form."""
    form = avatar_form()
    upload(form.image, media["speech"], "p.jpg")
    problem = form.image.problem.value
    assert "could not be decoded as an image" in problem and "fix:" in problem and "JPG or PNG" in problem
    assert not form.image.ok and not visible(form.image.fix)  # no one-click fix for a wrong file
    form.audio.use_sample()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "ValidationError" in form.error.value and "could not be decoded" in form.error.value
    assert form.result is None and form.generate_button.disabled  # until the refused portrait is replaced
    assert form.status.value.startswith("failed")
    with pytest.raises(Exception, match="could not be decoded"):
        form.generate(timeout=WAIT_S)


def test_missing_input_is_reported_in_the_form() -> None:
    """Generate with nothing picked says what is missing and how to pick it."""
    form = avatar_form()
    assert "pick the portrait image" in form.status.value
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "portrait image is missing" in form.error.value and "Use sample" in form.error.value


def test_oversized_image_offers_shrink(tmp_path: Path) -> None:
    """An image over 4096 px shows the limit and a Shrink button; shrinking gives a valid JPEG ≤ 2048 px."""
    big = tmp_path / "wide.png"
    Image.new("RGB", (4200, 300), (120, 90, 60)).save(big)
    form = imitator_form()
    form.image.url.value = str(big)  # a path typed into the URL box
    assert "4200x300" in form.image.problem.value and "fix:" in form.image.problem.value
    assert visible(form.image.fix) and form.image.fix.description == "Shrink"
    form.image.fix.click()
    assert form.image.ok, form.image.problem.value
    assert isinstance(form.image.value, Path)
    with Image.open(form.image.value) as img:
        assert img.format == "JPEG" and max(img.size) <= 2048
    assert_plays_remotely(html_of(form.image.preview), "<img")


def test_url_inputs_preview_public_urls_never_loopback() -> None:
    """A public URL is previewed straight from its host; a loopback one is named, not put in a src."""
    form = avatar_form()
    form.image.url.value = "https://example.com/faces/face.jpg"
    assert srcs(html_of(form.image.preview)) == ["https://example.com/faces/face.jpg"] and form.image.ok
    form.audio.url.value = "http://127.0.0.1:9/speech.wav"
    assert srcs(html_of(form.audio.preview)) == [] and "127.0.0.1" in html_of(form.audio.preview)
    form.audio.url.value = "ftp://example.com/a.wav"
    assert "not supported" in form.audio.problem.value and not form.audio.ok


def test_generation_failure_is_shown_in_the_form(make_server: Callable[..., LocalServer]) -> None:
    """A task that fails on the service shows its code, message and hint in the error area."""
    failing = make_server(api_key=TEST_KEY, faults="render:095:1")
    form = avatar_form(**cloud_config(failing))
    form.use_samples()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "TaskFailed" in form.error.value and "003016095" in form.error.value and "fix:" in form.error.value
    assert form.task is not None and form.task.id in form.error.value
    assert form.progress.bar_style == "danger" and not form.generate_button.disabled and form.result is None


def test_cloud_without_key_shows_password_and_uses_it(server: LocalServer) -> None:
    """On the cloud path with no key the form asks for one; it is used for this form's calls and never shown."""
    options = cloud_config(server)
    del options["api_key"]
    form = avatar_form(**options)
    assert "cloud" in form.backend_info.value and visible(form.api_key)
    assert isinstance(form.api_key, W.Password) and "spark-api-key" in form.api_key._dom_classes
    form.use_samples()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "AuthenticationError" in form.error.value and "API key" in form.error.value

    form.api_key.value = TEST_KEY
    assert form.api_key.value == ""  # held as a Secret by the form, not in the synced widget state
    assert "key set" in form.api_key.placeholder
    form.generate_button.click()
    assert_completed(form)
    shown = json.dumps([w.get_state() for w in descendants(form.widget)], default=str)
    assert TEST_KEY not in shown and form.api_key in descendants(form.widget)


@pytest.mark.parametrize("inside", ["\n", "\r\n", " ", "\x1b[2K"])
def test_a_malformed_key_in_the_form_field_is_refused_and_never_kept(inside: str, server: LocalServer) -> None:
    """A key pasted with a line break (or CR LF, a space, an escape sequence) inside: the form says its field's key
    is malformed, keeps no part of it (not as its key, not in any widget's state) and sends nothing."""
    first, second = "sk-first-line-0123456789", "second-line-abcdefghij"
    options = cloud_config(server)
    del options["api_key"]
    form = avatar_form(**options)
    form.api_key.value = f"{first}{inside}{second}"
    assert "the API key from this form&#x27;s API key field has" in form.error.value
    assert not form.controller.state.key_set
    assert form.api_key.value == "" and "key set" not in form.api_key.placeholder
    form.use_samples()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "needs an API key" in form.error.value and server.stats()["created"] == 0
    shown = json.dumps([w.get_state() for w in descendants(form.widget)], default=str)
    assert first not in shown and second not in shown
    form.api_key.value = TEST_KEY  # a good key afterwards is taken
    assert form.controller.state.key_set and "key set" in form.api_key.placeholder


def test_an_unexpected_failure_of_any_action_is_shown_as_a_spark_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug behind Generate, a URL field or the studio's Refresh: each is shown in its own area as a SparkError
    ("unexpected internal error: ...", a hint to report it), never a traceback in the browser's log; generate()
    raises that SparkError."""
    import spark_nb
    from spark_nb import _history, _pipeline
    from spark_nb.widgets import _picker_state

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug \x1b]52;c;c2VjcmV0\x07here")

    form = avatar_form(backend="local")
    form.use_samples()
    monkeypatch.setattr(_pipeline, "submit", broken)
    with pytest.raises(spark_nb.SparkError, match="unexpected internal error: RuntimeError: a bug here") as info:
        form.generate(WAIT_S)
    assert type(form.last_error) is spark_nb.SparkError and isinstance(info.value.__cause__, RuntimeError)
    assert "unexpected internal error" in form.error.value and "report it" in form.error.value
    assert "\x1b" not in form.error.value and form.progress.bar_style == "danger"
    monkeypatch.setattr(_picker_state, "normalise", broken)  # what a picker runs on a URL
    form.audio.url.value = "https://example.com/speech.wav"
    assert "unexpected internal error: RuntimeError" in form.audio.problem.value
    monkeypatch.setattr(_history, "history", broken)
    tabs = studio(backend="local")
    assert "unexpected internal error: RuntimeError" in html_of(tabs.history)


def test_compare_toggle_builds_a_side_by_side_video(media: dict[str, Path]) -> None:
    """With a result, the compare toggle shows one video of the inputs and the result side by side."""
    form = avatar_form()
    form.use_samples()
    result = form.generate(timeout=WAIT_S)
    assert not visible(form.compare_area)
    form.compare.value = True
    assert visible(form.compare_area)
    assert form.wait(WAIT_S)
    assert form.error.value == "", form.error.value
    markup = html_of(form.compare_area)
    assert_plays_remotely(markup, "<video")
    compared = Path(srcs(markup)[0])
    assert compared.is_file() and compared != result.path and result.task_id in compared.name
    report = try_decode(compared, 1.0)
    info = report.facts
    assert info.has_video and report.frames > 1
    assert info.width is not None and result_width(result) is not None and info.width > result_width(result)
    form.compare.value = False
    assert not visible(form.compare_area) and html_of(form.compare_area) == ""


def result_width(result: Result) -> int | None:
    """The result video's width in pixels."""
    return try_decode(result.path, 0.1).facts.width


def test_compare_on_before_generating_builds_after(media: dict[str, Path]) -> None:
    """Compare switched on first: the comparison is made once the imitation finishes."""
    form = imitator_form()
    form.compare.value = True
    assert "once a video is generated" in html_of(form.compare_area)
    form.image.use_sample()
    form.driving_video.pick(media["driving"])
    form.generate(timeout=WAIT_S)
    assert form.wait(WAIT_S)
    assert_plays_remotely(html_of(form.compare_area), "<video")


def test_studio_has_both_forms_in_tabs_and_displays() -> None:
    """studio() is a Tab of the two forms; the objects display as their widgets and carry the stable classes."""
    s = studio()
    assert isinstance(s, Studio) and isinstance(s.widget, W.Tab)
    assert s.widget.children[:2] == (s.avatar.widget, s.imitator.widget) and len(s.widget.titles) == 3
    assert s.widget.titles[2] == "History" and "spark-history" in s.history._dom_classes
    assert "0 task(s)" in html_of(s.history)
    bundle = s._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == s.widget.model_id
    assert "application/vnd.jupyter.widget-view+json" in s.avatar._repr_mimebundle_()
    for form, second in [(s.avatar, s.avatar.audio), (s.imitator, s.imitator.driving_video)]:
        assert {"spark-form", f"spark-{form.spec.id}"} <= set(form.widget._dom_classes)
        for widget, name in [(form.generate_button, "spark-generate"), (form.status, "spark-status"),
                             (form.error, "spark-error"), (form.result_area, "spark-result"),
                             (form.compare, "spark-compare"), (form.progress, "spark-progress"),
                             (form.image.sample, "spark-sample-image"), (form.image.upload, "spark-upload-image"),
                             (form.image.url, "spark-url-image"), (form.backend_info, "spark-backend")]:
            assert name in widget._dom_classes, name
        kind = second.field.kind
        assert f"spark-sample-{kind}" in second.sample._dom_classes
        assert isinstance(second.upload, W.FileUpload) and isinstance(second.url, W.Text)
        assert isinstance(form.progress, (W.FloatProgress, W.IntProgress)) and isinstance(form.status, W.Label)
        assert form.result is None
    assert s.wait(1)


def test_form_rejects_unknown_options() -> None:
    """Config options are checked when the form is made, like generate()'s."""
    with pytest.raises(TypeError, match="unknown option"):
        avatar_form(api_kee="x")


def test_importing_spark_nb_loads_no_widgets() -> None:
    """ipywidgets, IPython and moviepy load only with spark_nb.widgets, not with spark_nb or spark_nb.display."""
    code = ("import sys, json, spark_nb, spark_nb.display; "
            "print(json.dumps([m for m in ['ipywidgets', 'IPython', 'moviepy'] if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == []


def test_an_error_names_the_uploaded_file_not_a_scratch_file(media: dict[str, Path]) -> None:
    """An upload that is not an image: the picker and Generate name not_really.png, never the scratch copy."""
    from spark_nb._scratch import scratch_dir

    form = avatar_form()
    upload(form.image, media["speech"], "not_really.png")
    problem = form.image.problem.value
    assert "not_really.png" in problem and "could not be decoded" in problem, problem
    scratch = str(scratch_dir())
    assert scratch not in problem and not re.search(r"[0-9a-f]{24}", problem), problem
    form.audio.use_sample()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert "not_really.png" in form.error.value and scratch not in form.error.value
    assert not re.search(r"[0-9a-f]{24}", form.error.value)


def test_an_error_clears_when_the_input_changes(media: dict[str, Path]) -> None:
    """A bad input's error (in the picker and from Generate) goes as soon as another input is picked."""
    form = avatar_form()
    upload(form.image, media["speech"], "not_really.png")
    form.audio.use_sample()
    form.generate_button.click()
    assert form.wait(WAIT_S)
    assert form.image.problem.value and form.error.value and form.status.value.startswith("failed")
    form.image.use_sample()
    assert form.image.ok and form.image.problem.value == ""
    assert form.error.value == "" and form.last_error is None and form.progress.bar_style == ""
    assert form.status.value == "ready: click Generate"
    form.image.url.value = "no_such_file.jpg"  # a typed path that is not there: its own error, then cleared again
    assert "no_such_file" in form.image.problem.value
    upload(form.image, media["portrait"])
    assert form.image.ok and form.image.problem.value == "" and form.image.url.value == ""


def test_generate_waits_for_a_refused_input_to_be_fixed(media: dict[str, Path]) -> None:
    """An input its checks refused disables Generate, and the status line says which input to fix (before: "ready:
    click Generate" beside the red error, and Generate could only fail); picking a good one enables it again."""
    form = avatar_form()
    form.audio.use_sample()
    upload(form.image, media["speech"], "not_really.png")
    assert "not_really.png" in form.image.problem.value
    assert form.generate_button.disabled and form.status.value == "fix the portrait image first (its message says how)"
    form.image.use_sample()
    assert form.image.ok and not form.generate_button.disabled and form.status.value == "ready: click Generate"


def test_the_upload_button_counts_the_upload_in_use(media: dict[str, Path]) -> None:
    """After an upload the button shows 1 file (its name and size kept, its bytes not); another input resets it."""
    form = avatar_form()
    picker = form.image
    assert len(picker.upload.value) == 0
    upload(picker, media["portrait"], "me.jpg")
    assert picker.ok and len(picker.upload.value) == 1
    (item,) = picker.upload.value
    assert item["name"] == "me.jpg" and item["size"] == media["portrait"].stat().st_size
    assert len(item["content"]) == 0  # the bytes live in a scratch file, not in the widget (or a saved notebook)
    state = picker.upload.get_state()
    assert len(state["value"]) == 1 and media["portrait"].read_bytes()[:64] not in bytes(state["value"][0]["content"])
    assert "me.jpg" in html_of(picker.preview)
    upload(picker, media["png"], "second.png")  # a second upload replaces the first
    assert picker.ok and [i["name"] for i in picker.upload.value] == ["second.png"]
    picker.use_sample()
    assert len(picker.upload.value) == 0 and picker.ok


def test_tab_titles_are_short_enough_to_show_whole() -> None:
    """A widget Tab cuts titles over about 144 px: the studio's titles are a word each."""
    s = studio()
    assert list(s.widget.titles) == ["Avatar", "Imitator", "History"]
    assert all(len(title) <= 16 for title in s.widget.titles)


def test_the_strict_checkbox_refuses_a_faceless_portrait_before_any_upload(server: LocalServer,
                                                                           tmp_path: Path) -> None:
    """Ticked, "strict" makes Generate refuse the no-face advice (ValidationError no_face, shown in the form's error
    area) before anything is uploaded or created; unticked, the same inputs are sent."""
    landscape = tmp_path / "landscape.jpg"
    Image.new("RGB", (480, 360), (90, 140, 200)).save(landscape, quality=90)
    form = avatar_form(**cloud_config(server))
    assert form.strict.value is False and form.strict in descendants(form.widget)
    form.image.pick(landscape)
    form.audio.use_sample()
    assert form.image.note and "no face found" in form.image.note  # advice, shown before Generate
    form.strict.value = True
    assert form.start() and form.wait(WAIT_S)
    assert form.last_error is not None and getattr(form.last_error, "reason", None) == "no_face"
    assert "no face found" in form.error.value and "strict" in form.error.value
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)


def test_a_forms_upload_is_listed_by_its_own_name_in_the_history(server: LocalServer, media: dict[str, Path]) -> None:
    """An upload is written to a scratch file named by its content hash; the history (and the studio's table)
    lists it by the name the user picked."""
    from spark_nb import history

    tabs = studio(**cloud_config(server))
    form = tabs.avatar
    upload(form.image, media["portrait"], name="Anna at the lake.jpg")
    upload(form.audio, media["speech"], name="greeting.wav")
    form.generate(WAIT_S)
    assert history()[0].inputs == ["Anna at the lake.jpg", "greeting.wav"]
    assert "Anna at the lake.jpg, greeting.wav" in html_of(tabs.history)


@pytest.mark.slow
def test_the_history_table_fits_its_area_and_embeds_no_video(server: LocalServer, media: dict[str, Path],
                                                             tmp_path: Path) -> None:
    """The studio's history table is as wide as its tab (fixed layout, long ids and names wrap), shows each task's
    first 12 characters (the whole id in its title), and plays videos from the folder (a relative src) instead of
    embedding them: a video outside the folder is named, never turned into a data: URI."""
    from spark_nb import avatar

    inside = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    outside = avatar.generate(media["portrait"], media["speech"], progress=False, reuse=False,
                              **cloud_config(server, output_dir=tmp_path.parent / f"{tmp_path.name}-elsewhere"))
    markup = html_of(studio(**cloud_config(server)).history)
    assert "data:" not in markup and "base64" not in markup
    assert srcs(markup) == [f"spark_outputs/{inside.task_id}.mp4"]
    assert outside.path.name in markup and "outside this folder" in markup
    assert "table-layout:fixed" in markup and "width:100%" in markup
    assert f"title='{inside.task_id}'><code>{inside.task_id[:12]}…</code>" in markup  # the whole id in its title


@pytest.mark.slow
def test_a_form_reuses_what_code_paid_for_with_the_same_long_audio(server: LocalServer,
                                                                   media: dict[str, Path]) -> None:
    """generate(image, long_audio) (trim_audio=True, the default) and then the form with the same two files: one
    task. The form submits the user's file and lets the pipeline trim it, as code does, so one journal fingerprint
    covers both; it used to trim the clip itself and submit the trimmed copy, a new fingerprint, paid again. The form
    made again (a fresh upload of the same file) reuses it too; the picker still shows the file the user picked."""
    from spark_nb import avatar

    with pytest.warns(UserWarning, match="trimmed to"):  # code trims it on the way
        paid = avatar.generate(media["portrait"], media["long_speech"], progress=False, **cloud_config(server))
    assert server.stats()["created"] == 1
    for _ in range(2):
        form = avatar_form(**cloud_config(server))
        upload(form.image, media["portrait"], "me.jpg")
        upload(form.audio, media["long_speech"], "long talk.wav")
        assert form.audio.pending_fix == "trim_audio"
        reused = form.generate(WAIT_S)
        assert reused.task_id == paid.task_id and form.task is not None and form.task.origin == "reused"
        assert server.stats()["created"] == 1
        assert form.audio.pending_fix == "trim_audio" and "long talk.wav" in html_of(form.audio.preview)
        assert "untick Reuse earlier results for a new take" in form.status.value, form.status.value
        assert "reuse=False" not in form.status.value + form.notes.value + form.error.value


def test_a_strict_refusal_names_the_upload_and_says_what_to_untick(server: LocalServer, tmp_path: Path) -> None:
    """A landscape uploaded as "Anna's holiday.jpg" and Strict ticked: the refusal in the form's error area names
    that file (never the scratch copy it was written to) and says "untick Strict", not the Python caller's
    "pass strict=False"; nothing is uploaded or created."""
    from spark_nb._scratch import scratch_dir

    landscape = tmp_path / "landscape.jpg"
    Image.new("RGB", (480, 360), (90, 140, 200)).save(landscape, quality=90)
    form = avatar_form(**cloud_config(server))
    upload(form.image, landscape, "Anna's holiday.jpg")
    form.audio.use_sample()
    form.strict.value = True
    assert form.start() and form.wait(WAIT_S)
    shown = form.error.value
    assert "no face found" in shown and "Anna&#x27;s holiday.jpg" in shown, shown
    assert "untick Strict" in shown and "strict=False" not in shown, shown
    assert str(scratch_dir()) not in shown and not re.search(r"[0-9a-f]{24}", shown), shown
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)
