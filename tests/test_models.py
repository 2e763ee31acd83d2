"""Models as data: each spec's wire names, params both ways, seed codes, and a toy third model run end to end."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spark_nb import _pipeline, models, samples
from spark_nb._ffmpeg import try_decode
from spark_nb.batch import ManifestError, read_manifest
from spark_nb.errors import TaskFailed, ValidationError
from spark_nb.local import LocalServer
from spark_nb.models import AVATAR, IMITATOR, MediaField, ModelSpec, ParamsError, error_codes, get_model, register
from spark_nb.widgets import model_form

from .conftest import TEST_KEY, cloud_config
from .test_errors import INPUT_ERRORS

# The whole description of a third model: one image in, a few seconds of video out.
TOY = ModelSpec(
    id="toy_still_v1", alias="toy", title="Toy: a picture breathes",
    fields=(MediaField("picture", "image", "picture", wire="picture_url", missing_code="009001001"),),
    errors=error_codes("009001", ["Picture URL missing"]),
    renderer="still",
)

URLS = st.from_regex(r"https://[a-z]{1,12}\.example/[a-z0-9/]{0,30}\.(jpg|wav|mp4)", fullmatch=True)


@pytest.fixture
def toy() -> Iterator[ModelSpec]:
    """TOY registered for one test (server, forms, manifests and get_model all see it), then forgotten."""
    register(TOY)
    yield TOY
    models.MODELS.pop(TOY.id)
    models._ALIASES.pop("toy")


@given(image=URLS, audio=URLS)
def test_avatar_params_round_trip(image: str, audio: str) -> None:
    """parse_params(build_params(urls)) == urls, and the wire shape is the protocol page's."""
    params = AVATAR.build_params({"image": image, "audio": audio})
    assert params == {"image_url": image, "audio_url": audio}
    assert AVATAR.parse_params(params) == {"image": image, "audio": audio}


@given(image=URLS, video=URLS)
def test_imitator_params_round_trip(image: str, video: str) -> None:
    """The driving video nests in driving_video_info with store_type 0, and parses back."""
    params = IMITATOR.build_params({"image": image, "driving_video": video})
    assert params == {"image_url": image, "driving_video_info": {"video_url": video, "store_type": 0}}
    assert IMITATOR.parse_params(params) == {"image": image, "driving_video": video}


@pytest.mark.parametrize("model,params,code,text", INPUT_ERRORS, ids=[case[2] for case in INPUT_ERRORS])
def test_malformed_params_give_the_seed_code(model: str, params: Any, code: str, text: str) -> None:
    """Each malformed request maps to the code and text the seed page gives for it, in the service's order."""
    with pytest.raises(ParamsError) as info:
        get_model(model).parse_params(params)
    assert (info.value.code, info.value.text) == (code, text)


@pytest.mark.parametrize("params", [None, [], "image_url", {"image_url": ""}, {"image_url": 7}])
def test_params_that_are_not_an_object_or_lack_the_image(params: Any) -> None:
    """Anything but an object with an image URL is 'Image URL missing' for both models."""
    for spec in (AVATAR, IMITATOR):
        with pytest.raises(ParamsError, match="Image URL missing"):
            spec.parse_params(params)


def test_a_boolean_is_not_store_type_zero() -> None:
    """store_type False equals 0 in Python but is not the integer the page asks for: 'Invalid storage type'."""
    with pytest.raises(ParamsError) as info:
        IMITATOR.parse_params({"image_url": "https://a.example/x.jpg",
                               "driving_video_info": {"video_url": "https://a.example/v.mp4", "store_type": False}})
    assert info.value.code == "003018005"


def test_code_tables_and_lookups() -> None:
    """Input errors count from 001, service failures are 095-099; aliases and ids both find a model."""
    assert TOY.code_prefix == "009001" and TOY.errors["009001001"] == "Picture URL missing"
    assert set(TOY.errors) == {"009001001", "009001095", "009001096", "009001097", "009001098", "009001099"}
    assert get_model("avatar") is AVATAR and get_model(IMITATOR.id) is IMITATOR
    with pytest.raises(ValidationError, match="unknown model 'nope'; known: avatar, imitator") as info:
        get_model("nope")
    assert info.value.reason == "unknown_model"


@pytest.mark.parametrize("error,code,message,retryable", [
    ({"code": "003016002", "error_message": "Audio URL missing"}, "003016002", "Audio URL missing", False),
    ({"code": 3016095, "message": "boom"}, "003016095", "boom", True),
    ("plain text", None, "plain text", False),
    (None, None, "the task failed", False),
    ({"code": ["not", "a", "code"], "error_message": "odd"}, None, "odd", False),
])
def test_task_failure_reads_every_error_shape(error: Any, code: str | None, message: str, retryable: bool) -> None:
    """A task's error field, in each shape the protocol page lists, becomes a TaskFailed with a hint."""
    failure = models.task_failure(error, "t1", AVATAR.id)
    assert isinstance(failure, TaskFailed)
    assert (failure.code, failure.message, failure.retryable, failure.task_id) == (code, message, retryable, "t1")
    assert failure.hint


@pytest.mark.parametrize("model,message,named", [
    (AVATAR, "Internal generation error: image_url: image_url could not be fetched: HTTP 404",
     "portrait image (image_url)"),
    (AVATAR, "failed to download the audio from its URL", "speech audio (audio_url)"),
    (IMITATOR, "video_url: cannot identify the file", "driving video (driving_video_info.video_url)"),
    (AVATAR, "HTTP error response: upstream returned 403 Forbidden", "an input"),
])
def test_a_failure_saying_an_input_could_not_be_fetched_says_to_check_that_input(model: ModelSpec, message: str,
                                                                                  named: str) -> None:
    """A service failure (095-099) whose message says an input could not be fetched or read is that input's: the
    hint names it and says a new task would fail (and be billed) again, and a new task is not retryable."""
    failure = models.task_failure({"code": f"{model.code_prefix}095", "error_message": message}, "t1", model.id)
    assert failure.retryable is False and failure.hint is not None
    assert f"could not fetch or read {'the ' if named != 'an input' else ''}{named}" in failure.hint
    assert "would fail again" in failure.hint and "may succeed" not in failure.hint
    plain = models.task_failure({"code": f"{model.code_prefix}095", "error_message": "Internal generation error"},
                                "t1", model.id)
    assert plain.retryable is True and plain.hint == models.SERVICE_FAILURE_HINT  # nothing says it was an input


def test_a_task_failed_for_an_unfetchable_input_is_not_paid_for_again(server: LocalServer, media: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    """The service (the local server on the cloud path) fails a task whose image URL gives a web page: the error
    names the input with no path of the server's, says to check it, and the identical call creates nothing."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from spark_nb import avatar

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            body = b"<!doctype html><title>a gallery page</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{host.server_address[1]}/face.jpg"
    try:
        with pytest.raises(TaskFailed) as info:  # unchecked here (conftest), as a URL only the service could reach
            avatar.generate(url, media["speech"], progress=False, timeout=120, **cloud_config(server))
        failure = info.value
        assert failure.code == "003016095" and failure.retryable is False
        assert "image_url" in failure.message and "/work/" not in str(failure) and str(tmp_path) not in str(failure)
        assert "could not fetch or read the portrait image (image_url)" in (failure.hint or "")
        with pytest.raises(TaskFailed, match="would fail again") as again:  # answered by the journal: not sent
            avatar.generate(url, media["speech"], progress=False, timeout=120, **cloud_config(server))
        assert "could not fetch or read the portrait image" in (again.value.hint or "")
        assert "may succeed" not in (again.value.hint or "")
        assert server.stats()["created"] == 1
    finally:
        host.shutdown()
        host.server_close()


@pytest.mark.slow
def test_a_toy_third_model_runs_end_to_end(toy: ModelSpec, server: LocalServer, tmp_path: Path) -> None:
    """Registered as data only, a new model is served, generated, offered in a form and read from a manifest."""
    refused = httpx.post(f"{server.url}/model/v1/generation", json={"model": toy.id, "input": [{"params": {}}]},
                         headers={"Authorization": f"Bearer {TEST_KEY}"}, trust_env=False)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "009001001"

    result = _pipeline.generate(toy, {"picture": samples.PORTRAIT}, progress=False, **cloud_config(server))
    facts = try_decode(result.path, 5).facts
    assert result.model == toy.id and facts.has_video and facts.duration == pytest.approx(3.0, abs=0.1)

    form = model_form(toy, **cloud_config(server))
    assert list(form.pickers) == ["picture"] and form.picture.field.kind == "image"
    form.use_samples()
    assert form.generate(timeout=120).task_id == result.task_id  # the same inputs: the journal's result, no task
    assert "reused" in form.status.value and server.stats()["created"] == 1
    form.reuse.value = False
    assert form.generate(timeout=120).model == toy.id and server.stats()["created"] == 2

    manifest = tmp_path / "toy.csv"
    with manifest.open("w", newline="") as f:
        csv.writer(f).writerows([["name", "model", "picture"], ["one", "toy", str(samples.PORTRAIT)]])
    (row,) = read_manifest(manifest)
    assert row.spec is toy and row.inputs == {"picture": str(samples.PORTRAIT.resolve())}
    manifest.write_text("name,model,picture\nempty,toy,\n")
    with pytest.raises(ManifestError, match=r"row 2: picture: \[009001001\] picture is missing"):
        read_manifest(manifest)
