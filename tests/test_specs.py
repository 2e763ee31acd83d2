"""The published model specs: the local server serves each model's spec as derived from its ModelSpec, the comparison
reads it back to no difference, a drifted spec is named difference by difference, and a create call the service's
spec no longer accepts is refused before it is sent; the spec service slow, down, answering garbage, 404 in the
body or HTTP 500 never fails a call nor holds it past WAIT_S. All over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import spark_nb
from spark_nb import _specs, _specs_service, avatar
from spark_nb._specs import SpecUnreadable, differences, parameters, published
from spark_nb._specs_service import SPEC_TTL_S, guard, known
from spark_nb.errors import ValidationError
from spark_nb.local._spec_route import SpecDrift
from spark_nb.models import AVATAR, IMITATOR, MODELS

from .conftest import TEST_KEY, cloud_config
from .peers import HOSTILE_ANSWERS, Peer, Seen, hostile_answer, peers

Handler = Callable[[Peer, socket.socket, Seen], None]
NOWHERE = "http://127.0.0.1:9"  # a generation URL the guard never contacts
PARAMS = AVATAR.build_params({"image": "https://inputs.example/face.jpg", "audio": "https://inputs.example/a.wav"})
# WAIT_S and the checks around it, with room for a loaded machine, and well short of the fetch limit the test sets:
# a guard that waited for the fetch would be held FETCH_LIMIT_S (or, when the service holds on, until it lets go).
GUARD_BOUND_S = _specs_service.WAIT_S + 2.5
HOLDING_KINDS = ("slow", "stall", "trickled_body", "trickled_headers")  # the service holds the request open


@pytest.fixture
def peer() -> Iterator[Callable[[Handler], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


def envelope(data: Any, code: int = 200) -> dict[str, Any]:
    """A spec service answer."""
    return {"status": {"code": code, "message": "ok" if code == 200 else "not found"}, "data": data}


def spec_of(server_url: str, model: str) -> Any:
    """GET a model's spec from a server, without any key."""
    answer = httpx.get(f"{server_url}/api/v1/skill/models/{model}/spec", timeout=10, trust_env=False)
    assert answer.status_code == 200, answer.text
    return answer.json()


def cache_files() -> list[Path]:
    """The spec cache files in this test's SPARK_NB_HOME."""
    folder = Path(os.environ["SPARK_NB_HOME"]) / "specs"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def test_the_local_server_publishes_every_model_spec_without_a_key(server: Any) -> None:
    """On a server that requires a key, the spec route answers without one: for each registered model the envelope
    with code 200 and data derived from its ModelSpec (every wire path, required, the constants' one value, the
    imitator's video URL nested in driving_video_info), which reads back to no difference; an unknown or
    unpublished model is status.code 404 inside the body."""
    for spec in MODELS.values():
        body = spec_of(server.url, spec.id)
        assert body["status"] == {"code": 200, "message": "ok"}
        data = body["data"]
        assert data["model_id"] == spec.id and data["api"]["endpoint"] == f"{server.url}/model/v1/generation"
        params = parameters(data)
        leaves = {path for path, p in params.items() if p.kind != "object"}
        assert leaves == {f.wire for f in spec.fields} | {c.path for c in spec.constants}
        assert all(p.required for p in params.values())
        assert differences(spec, data) == []
    group = next(p for p in spec_of(server.url, IMITATOR.id)["data"]["parameters"] if p["name"] == "driving_video_info")
    assert group["type"] == "object"
    children = {c["name"]: c for c in group["children"]}
    assert children["video_url"]["type"] == "string" and children["video_url"]["required"] is True
    assert children["store_type"]["constraints"] == {"enum": ["0"], "default": 0}
    assert spec_of(server.url, "no_such_model")["status"]["code"] == 404


@pytest.mark.parametrize("drift, spec, expected", [
    ("audio_url=audio", AVATAR, "the service now names `audio` what spark-nb sends as `audio_url`"),
    ("audio_url=", AVATAR, "the service no longer lists `audio_url`, which spark-nb sends"),
    ("+prompt", AVATAR, "the service requires `prompt`, which spark-nb does not send"),
    ("driving_video_info:string", IMITATOR,
     "the service takes `driving_video_info` as a string (type 'string'); spark-nb sends an object"),
    ("driving_video_info.store_type~1|2", IMITATOR,
     "the service takes `driving_video_info.store_type` only as 1, 2; spark-nb sends 0"),
    ("driving_video_info=driving_video", IMITATOR,
     "the service now names `driving_video` what spark-nb sends as `driving_video_info`"),
    ("driving_video_info.video_url=url", IMITATOR,
     "the service now names `driving_video_info.url` what spark-nb sends as `driving_video_info.video_url`"),
])
def test_a_drifted_spec_is_named_difference_by_difference(make_server: Callable[..., Any], drift: str, spec: Any,
                                                          expected: str) -> None:
    """A server publishing a drifted spec (ServerOptions.spec_drift): the comparison names each difference, once."""
    data = spec_of(make_server(spec_drift=drift).url, spec.id)["data"]
    assert [d.text for d in differences(spec, data) if d.blocking] == [expected]


def test_what_the_service_only_adds_as_optional_is_no_reason_to_refuse() -> None:
    """A new optional parameter, or a required one with a default, or an optional object with required parts, is
    noted and not blocking; a bad drift item is refused naming it."""
    data = published(AVATAR, "")
    data["parameters"] += [{"name": "callback_url", "type": "string", "required": False},
                           {"name": "seed", "type": "int", "required": True, "constraints": {"default": 1}},
                           {"name": "camera", "type": "object", "required": False,
                            "children": [{"name": "mode", "type": "string", "required": True}]}]
    found = differences(AVATAR, data)
    assert [d.blocking for d in found] == [False, False, False]
    assert [d.text for d in found][0] == "the service also takes `callback_url` (optional; spark-nb does not send it)"
    with pytest.raises(ValueError, match="'audio_url' is not OLD=NEW"):
        SpecDrift.parse("audio_url")


def test_a_spec_of_more_parameters_than_the_reader_takes_is_unreadable() -> None:
    """10,000 parameters (a spec lists a handful): unreadable, so no call is refused on its account."""
    with pytest.raises(SpecUnreadable, match="more than 500 parameters"):
        differences(AVATAR, {"parameters": [{"name": f"p{i}", "type": "string"} for i in range(10_000)]})


def test_a_call_the_published_spec_no_longer_accepts_is_refused_before_it_is_created(
        make_server: Callable[..., Any], media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """VTRIX_MODELS_URL names a spec service whose avatar spec renamed audio_url: generate() raises
    ValidationError(reason="service_changed") naming the difference and saying to upgrade, the server creates
    nothing, stores no upload (the attack on issue 26: the structure, which needs no URL, is now checked before the
    uploads, not after them) and the journal forgets the attempt; with SPARK_NB_SPEC_CHECK=off the same call is
    sent."""
    server = make_server(api_key=TEST_KEY, spec_drift="audio_url=audio")
    monkeypatch.setenv("VTRIX_MODELS_URL", server.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)  # a guard against a busy machine, not the bound under test
    with pytest.raises(ValidationError) as caught:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert caught.value.reason == "service_changed"
    assert "the service now names `audio` what spark-nb sends as `audio_url`" in str(caught.value)
    assert "upgrade spark-nb" in (caught.value.hint or "") and "Nothing was created" in str(caught.value)
    assert server.stats()["created"] == 0 and server.stats()["uploads"] == 0
    assert list(spark_nb.history()) == []
    monkeypatch.setenv("SPARK_NB_SPEC_CHECK", "off")
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert result.path.is_file() and server.stats()["created"] == 1


def test_ctrl_c_during_the_spec_check_leaves_nothing_that_may_exist(
        server: Any, media: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the spec is being looked at for the call's values (after the uploads, up to half a second):
    nothing was sent, so the claim is released and the identical call creates its task, rather than the attempt
    being recorded as "may exist". (Each call checks twice: the structure before its uploads, then its values.)"""
    from spark_nb._client import ApiClient

    checks: list[dict[str, Any] | None] = []

    def interrupted_once(self: ApiClient, model: str, params: dict[str, Any] | None = None) -> None:
        checks.append(params)
        if params is not None and sum(p is not None for p in checks) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ApiClient, "check_spec", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert server.stats()["created"] == 0 and list(spark_nb.history()) == []
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert result.path.is_file() and server.stats()["created"] == 1
    assert [p is None for p in checks] == [True, False, True, False]


def test_values_the_published_constraints_refuse_are_refused(peer: Callable[[Handler], Peer],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec whose image_url allows 20 characters refuses a longer URL (as the official client checks values
    against the constraints before it sends), naming the parameter."""
    data = published(AVATAR, "")
    data["parameters"][0]["constraints"] = {"max_length": 20}
    service = peer(lambda p, conn, seen: p.json(conn, 200, envelope(data)))
    monkeypatch.setenv("VTRIX_MODELS_URL", service.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)
    with pytest.raises(ValidationError, match=r"`image_url` is 31 characters, over the service's 20"):
        guard(AVATAR.id, PARAMS, NOWHERE)


def test_the_spec_is_cached_and_asked_again_only_when_old(peer: Callable[[Handler], Peer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """One request for many calls: kept in memory, then read from SPARK_NB_HOME/specs by a process that has not
    asked (memory forgotten), asked again once older than SPEC_TTL_S; a damaged cache file or a FIFO in its place
    is no answer (and holds nothing up)."""
    service = peer(lambda p, conn, seen: p.json(conn, 200, envelope(published(AVATAR, ""))))
    monkeypatch.setenv("VTRIX_MODELS_URL", service.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)
    guard(AVATAR.id, PARAMS, NOWHERE)
    guard(AVATAR.id, PARAMS, NOWHERE)
    assert len(service.seen) == 1 and service.seen[0].path == f"/api/v1/skill/models/{AVATAR.id}/spec"
    assert "authorization" not in service.seen[0].headers
    _specs_service.forget()
    guard(AVATAR.id, PARAMS, NOWHERE)
    assert len(service.seen) == 1
    [cache] = cache_files()
    saved = json.loads(cache.read_text())
    cache.write_text(json.dumps({**saved, "fetched_at": time.time() - SPEC_TTL_S - 1}))
    _specs_service.forget()
    guard(AVATAR.id, PARAMS, NOWHERE)
    assert len(service.seen) == 2
    for damage in ("garbage", "fifo"):
        cache.unlink()
        if damage == "garbage":
            cache.write_text("{not json")
        else:
            os.mkfifo(cache)
        _specs_service.forget()
        started = time.monotonic()
        guard(AVATAR.id, PARAMS, NOWHERE)
        assert time.monotonic() - started < 30 and len(service.seen) == (3 if damage == "garbage" else 4)
    assert json.loads(cache.read_text())["state"] == "published"  # the FIFO was replaced by a good answer


def spec_service_kinds() -> list[Any]:
    """Every way the spec service can fail: down, slow, garbage, 404 in the body, HTTP 500, and each hostile
    answer of the API's (nested 100,000 deep, a gzip bomb, trickles, a stall...)."""
    return ["down", "slow", "garbage", "404 in the body", "HTTP 500",
            *(pytest.param(kind, marks=pytest.mark.slow) for kind in HOSTILE_ANSWERS)]


def failing_service(kind: str, release: threading.Event | None = None) -> Handler:
    """A spec service answering the way kind says ("slow": an honest answer once release is set, at most 4 s on)."""
    def answer(p: Peer, conn: socket.socket, seen: Seen) -> None:
        if kind == "slow":
            (release or p.stop_event).wait(4.0)
            p.json(conn, 200, envelope(published(AVATAR, "")))
        elif kind == "garbage":
            p.respond(conn, 200, b"<html>\x00\xff not a spec", {"Content-Type": "text/html"})
        elif kind == "404 in the body":
            p.json(conn, 200, envelope(None, code=404))
        elif kind == "HTTP 500":
            p.json(conn, 500, {"message": "internal error"})
        else:
            hostile_answer(p, conn, kind, envelope(published(AVATAR, "")))
    return answer


@pytest.mark.parametrize("kind", spec_service_kinds())
def test_a_failing_spec_service_never_fails_or_holds_a_call(kind: str, peer: Callable[[Handler], Peer],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The create path's guard returns without raising, whatever the spec service does, and without waiting for a
    service that holds the request (it returns while the fetch is still in flight); the answer it gets in the
    background is missing (404 in the body) or unreadable (cached for RETRY_S only), never a refusal."""
    monkeypatch.setattr(_specs_service, "FETCH_LIMIT_S", 6.0)  # past the slow answer's release: a stall ends sooner
    release = threading.Event()
    if kind == "down":
        closed = socket.create_server(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
    else:
        url = peer(failing_service(kind, release)).url
    monkeypatch.setenv("VTRIX_MODELS_URL", url)
    folder = Path(os.environ["SPARK_NB_HOME"]) / "specs"
    started = time.monotonic()
    guard(AVATAR.id, PARAMS, NOWHERE)
    held = time.monotonic() - started
    answered_by_then = known(folder, url, AVATAR.id, wait=0)
    release.set()
    assert held < GUARD_BOUND_S
    if kind in HOLDING_KINDS:
        assert answered_by_then is None, "the guard waited for the spec service's answer"
    answer = known(folder, url, AVATAR.id, wait=_specs_service.FETCH_LIMIT_S + 10)  # the background fetch's end
    assert answer is not None
    expected = {"404 in the body": "missing", "slow": "published"}.get(kind, "unreadable")
    assert answer.state == expected, answer
    guard(AVATAR.id, PARAMS, NOWHERE)  # what it got refuses nothing


@pytest.mark.slow
def test_generate_completes_while_the_spec_service_stalls(server: Any, media: dict[str, Path],
                                                          peer: Callable[[Handler], Peer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A spec service that sends its headers and then nothing: generate() on the cloud path completes, one task
    created, its create held at most WAIT_S by the spec."""
    stalled = peer(failing_service("stall"))
    monkeypatch.setenv("VTRIX_MODELS_URL", stalled.url)
    result = avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert result.path.is_file() and server.stats()["created"] == 1
    assert [s.path for s in stalled.seen] == [f"/api/v1/skill/models/{AVATAR.id}/spec"]


# -- the attack on issue 26 ----------------------------------------------------------------------------------------


def serve_spec(peer: Callable[[Handler], Peer], data: Any, monkeypatch: pytest.MonkeyPatch) -> Peer:
    """A spec service answering data for every model, named by VTRIX_MODELS_URL; the guard waits for it."""
    service = peer(lambda p, conn, seen: p.json(conn, 200, envelope(data)))
    monkeypatch.setenv("VTRIX_MODELS_URL", service.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)  # a guard against a busy machine, not the bound under test
    return service


def test_a_constraint_of_400_digits_is_not_judged_and_never_an_internal_error(peer: Callable[[Handler], Peer],
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: a spec whose `min_length` is a 401-digit integer made the comparison raise OverflowError, so
    every call of the model was "unexpected internal error... a bug in spark_nb" while the doctor said ok. Now only
    finite numeric constraints of a sane size are read (and any failure of the comparison is an unreadable spec):
    the call is not refused, and the doctor agrees."""
    data = published(AVATAR, "")
    data["parameters"][0]["constraints"] = {"min_length": 10**400, "max_length": float("inf")}
    body = json.dumps(envelope(data), allow_nan=True).replace("Infinity", "1e999")  # as a service would spell it
    service = peer(lambda p, conn, seen: p.respond(conn, 200, body.encode(), {"Content-Type": "application/json"}))
    monkeypatch.setenv("VTRIX_MODELS_URL", service.url)
    monkeypatch.setattr(_specs_service, "WAIT_S", 30.0)
    guard(AVATAR.id, PARAMS, NOWHERE)
    assert parameters(data)["image_url"].constraints == {}
    monkeypatch.setenv("VTRIX_GENERATION_URL", NOWHERE)
    monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
    check = next(c for c in spark_nb.doctor() if c.name == f"spec {AVATAR.id}")
    assert check.status == "ok", check
    data["parameters"][0]["constraints"] = {"min_length": 1000}  # a sane one is still judged
    assert _specs.judge(AVATAR, data, PARAMS).values == ["`image_url` is shorter than 1000 characters"]


def test_any_failure_of_the_comparison_is_an_unreadable_spec(peer: Callable[[Handler], Peer],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a spec makes the comparison raise (here a fault injected in the value check), the guard lets the
    call go on and logs it at DEBUG: the spec is unreadable, never a crash of the call."""
    serve_spec(peer, published(AVATAR, ""), monkeypatch)

    def broken(*args: Any) -> list[str]:
        raise ArithmeticError("a number no one expected")

    monkeypatch.setattr(_specs, "value_problems", broken)
    guard(AVATAR.id, PARAMS, NOWHERE)
    with pytest.raises(SpecUnreadable, match="could not be compared"):
        _specs.judge(AVATAR, published(AVATAR, ""), PARAMS)


def test_an_array_with_children_is_an_array_not_an_object() -> None:
    """The attack: a parameter with children was read as an object whatever its declared type, so a service now
    taking `driving_video_info` as an array of objects (and `image_url` as `string[]`) accepted spark-nb's object
    and string. Now the kind is the declared type's, and the difference is named with it."""
    data = published(IMITATOR, "")
    data["parameters"][1]["type"] = "array"  # its children kept: the items' fields
    assert [d.text for d in differences(IMITATOR, data) if d.blocking] == [
        "the service takes `driving_video_info` as an array (type 'array'); spark-nb sends an object"]
    data = published(IMITATOR, "")
    data["parameters"][0]["type"] = "string[]"
    assert [d.text for d in differences(IMITATOR, data) if d.blocking] == [
        "the service takes `image_url` as an array (type 'string[]'); spark-nb sends a string"]


def test_a_spec_of_another_model_is_unreadable_not_a_refusal(peer: Callable[[Handler], Peer],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack: the spec service answered the avatar's id with the imitator's spec (model_id names it), and
    every avatar call was refused with "upgrade spark-nb". Now a spec naming another model is unreadable: the call
    goes on, and the doctor says it cannot read the spec (a warning, not a failure telling to upgrade)."""
    serve_spec(peer, published(IMITATOR, ""), monkeypatch)
    guard(AVATAR.id, PARAMS, NOWHERE)
    with pytest.raises(SpecUnreadable, match="another model"):
        _specs.judge(AVATAR, published(IMITATOR, ""))
    monkeypatch.setenv("VTRIX_GENERATION_URL", NOWHERE)
    monkeypatch.setenv("VTRIX_API_KEY", TEST_KEY)
    check = next(c for c in spark_nb.doctor() if c.name == f"spec {AVATAR.id}")
    assert check.status == "warn" and "describes another model" in check.detail and "upgrade" not in check.fix


def test_a_spec_in_any_script_is_cached_at_its_own_size_and_dead_writers_parts_are_swept(tmp_path: Path) -> None:
    """The attack: a 900 KB spec of Chinese text (within the reader's 1 MB) was cached with every character
    escaped, 1.8 MB, over the cache's cap, so no other process ever read it back. Now it is cached as UTF-8; and
    the part file a killed writer left in the specs folder is swept by the next write."""
    folder = tmp_path / "specs"
    folder.mkdir()
    dead = subprocess_pid_that_ended()
    stale = folder / f".x-spark_avatar_picture_omni_v2.json.{dead}-0abc.part"
    stale.write_text("{")
    data = {"parameters": [{"name": "image_url", "type": "string", "required": True, "description": "\u4e2d" * 300000},
                           {"name": "audio_url", "type": "string", "required": True}]}
    answer = _specs_service.SpecAnswer(AVATAR.id, "http://m", "published", data, "published", time.time())
    _specs_service.remember(folder, answer)
    [cache] = folder.glob("*.json")
    assert cache.stat().st_size < _specs_service.MAX_CACHE_BYTES
    assert not stale.exists()
    _specs_service.forget()
    again = _specs_service.cached(folder, "http://m", AVATAR.id)
    assert again is not None and again.data == data


def subprocess_pid_that_ended() -> int:
    """The pid of a process that has ended (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           timeout=60, check=True)
    return int(child.stdout)


@pytest.mark.parametrize("fetched_at", ["1" + "0" * 400, "1e999", "NaN", "-1e999", "1e300", '"soon"'])
def test_a_spec_cache_file_that_cannot_be_taken_whole_is_a_miss_and_never_an_internal_error(
        fetched_at: str, server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attack (r04): a cache file in SPARK_NB_HOME/specs (shared by kernels, batch jobs and other versions) whose
    `fetched_at` is a 401-digit integer made float() raise OverflowError, so every call of the model was
    "unexpected internal error" before its create. Now a file that cannot be taken whole (that number, an infinite,
    NaN or absurd time, a string) is a cache miss: the reader gives nothing, and the create is sent."""
    from spark_nb._client import ApiClient
    from spark_nb._config import Secret

    monkeypatch.setenv("VTRIX_MODELS_URL", server.url)
    folder = Path(os.environ["SPARK_NB_HOME"]) / "specs"
    folder.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"model": AVATAR.id, "models_url": server.url, "state": "missing", "data": None,
                       "detail": "x", "fetched_at": "__TIME__"}).replace('"__TIME__"', fetched_at)
    _specs_service._cache_file(folder, server.url, AVATAR.id).write_text(body)
    assert _specs_service.cached(folder, server.url, AVATAR.id) is None
    client = ApiClient(server.url, Secret(TEST_KEY))
    try:
        client.check_spec(AVATAR.id, PARAMS)  # as the pipeline does before the create
        assert client.create(AVATAR.id, PARAMS)["id"]
    finally:
        client.close()
    assert server.stats()["created"] == 1


def test_any_failure_to_read_the_spec_lets_the_call_go_on(server: Any, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """Whatever reading the spec raises (here a fault injected in `known`, which reads the cache and the service),
    the guard takes it as no spec, logged at DEBUG, as it does for a comparison that fails: the create is sent."""
    monkeypatch.setenv("VTRIX_MODELS_URL", server.url)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OverflowError("int too large to convert to float")

    from spark_nb._client import ApiClient
    from spark_nb._config import Secret

    monkeypatch.setattr(_specs_service, "known", broken)
    client = ApiClient(server.url, Secret(TEST_KEY))
    try:
        with caplog.at_level("DEBUG", logger=_specs_service.logger.name):
            client.check_spec(AVATAR.id, PARAMS)  # as the pipeline does before the create
            assert client.create(AVATAR.id, PARAMS)["id"]
    finally:
        client.close()
    assert "int too large" in caplog.text and server.stats()["created"] == 1
