"""URL inputs are checked before anything is created (spark_nb._inputs_url.check_url): a URL that gives no file
(404, refused, no answer, a redirect loop) is a ValidationError "url_unreachable" naming the input, the URL and
the status; one that gives a web page, or another kind of media, or announces too many bytes is refused for what it
is; what cannot be decided passes. Every host here is a scripted peer on 127.0.0.1."""

from __future__ import annotations

import csv
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _inputs_url, avatar, imitator
from spark_nb._config import DEFAULT_LIMITS, InputLimits, resolve
from spark_nb._inputs import Media
from spark_nb._inputs import check as check_input
from spark_nb.local import LocalServer
from spark_nb.models import AVATAR, IMITATOR

from .conftest import cloud_config
from .peers import Peer, Seen, peers

IMAGE, AUDIO, VIDEO = AVATAR.fields[0], AVATAR.fields[1], IMITATOR.fields[1]
Files = dict[str, tuple[bytes, str]]


def check(value: str, field: Any, limits: InputLimits = DEFAULT_LIMITS) -> Media:
    """The input check as a submission runs it: the URL asked for (urls=True)."""
    return check_input(value, field, limits, urls=True)


@pytest.fixture(autouse=True)
def urls_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The check on, as it is by default (conftest turns it off for the other tests), nothing remembered."""
    monkeypatch.delenv("SPARK_NB_CHECK_URLS", raising=False)
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()
    yield
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[Peer, socket.socket, Seen], None]], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


def give(p: Peer, conn: socket.socket, req: Seen, data: bytes, ctype: str, *, total: int | None = None) -> None:
    """Answer as a file host does: 206 with Content-Range for a `bytes=0-N` range, else 200 and the whole file."""
    wanted = req.headers.get("range", "")
    if req.method == "HEAD":
        return p.respond(conn, 200, b"", {"Content-Type": ctype}, length=len(data))
    if wanted.startswith("bytes=0-"):
        end = min(int(wanted.split("-")[1]), len(data) - 1)
        return p.respond(conn, 206, data[:end + 1], {"Content-Type": ctype,
                                                       "Content-Range": f"bytes 0-{end}/{total or len(data)}"})
    return p.respond(conn, 200, data, {"Content-Type": ctype})


def file_host(files: Files) -> Callable[[Peer, socket.socket, Seen], None]:
    """A host serving files by path, with the odd routes each test needs."""

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        path = req.path
        if path == "/missing.jpg":
            return p.respond(conn, 404, b"<html>Not Found</html>", {"Content-Type": "text/html"})
        if path == "/page.jpg":
            return p.respond(conn, 200, b"<!DOCTYPE html><html><body><img src=x></body></html>",
                             {"Content-Type": "text/html; charset=utf-8"})
        if path == "/moved.jpg":
            return p.respond(conn, 302, b"", {"Location": "/face.jpg"})
        if path == "/loop.jpg":
            return p.respond(conn, 302, b"", {"Location": "/loop.jpg"})
        if path == "/get-refused.jpg" and req.method != "HEAD":
            return p.respond(conn, 405, b"")
        if path == "/no-ranges.jpg":  # a range is refused: the whole answer then, of which the start is read
            if "range" in req.headers:
                return p.respond(conn, 416, b"")
            return p.respond(conn, 200, files["/face.jpg"][0], {"Content-Type": "image/jpeg"})
        if path == "/huge.jpg":  # says the file is 6 MB
            return give(p, conn, req, *files["/face.jpg"], total=6_000_000)
        if path == "/empty.jpg":
            return p.respond(conn, 200, b"", {"Content-Type": "image/jpeg"})
        if path == "/silent-headers.jpg":  # never finishes its headers
            return p.trickle(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000, every=0.2)
        if path in files:
            return give(p, conn, req, *files[path.replace("/get-refused.jpg", "/face.jpg")])
        if path == "/get-refused.jpg":
            return give(p, conn, req, *files["/face.jpg"])
        return p.respond(conn, 404, b"")

    return handle


@pytest.fixture
def host(peer: Callable[..., Peer], media: dict[str, Path]) -> Peer:
    """A file host with a portrait, a speech clip and a driving video, and the odd routes of file_host."""
    files: Files = {"/face.jpg": (media["portrait"].read_bytes(), "image/jpeg"),
                    "/speech.wav": (media["speech"].read_bytes(), "audio/wav"),
                    "/drive.mp4": (media["driving"].read_bytes(), "video/mp4")}
    return peer(file_host(files))


def refused(url: str, field: Any = IMAGE, **limits: Any) -> spark_nb.ValidationError:
    """The ValidationError check() raises for url as an input of field."""
    with pytest.raises(spark_nb.ValidationError) as info:
        check(url, field, InputLimits(**limits))
    return info.value


def test_a_404_image_url_is_refused_before_anything_is_uploaded_or_created(host: Peer, server: LocalServer,
                                                                          media: dict[str, Path]) -> None:
    """generate() with an image URL that answers 404: ValidationError url_unreachable naming the input, the URL and
    the status; the service saw no upload and no create (before: a task was created, failed, and was billed)."""
    url = f"{host.url}/missing.jpg"
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.generate(url, media["speech"], progress=False, **cloud_config(server))
    error = info.value
    assert error.reason == "url_unreachable" and error.field == "image"
    assert "portrait image" in str(error) and url in str(error) and "HTTP 404 Not Found" in str(error)
    assert "check_urls=False" in (error.hint or "")
    stats = server.stats()
    assert (stats["created"], stats["uploads"]) == (0, 0)
    assert spark_nb.history() == []  # nothing claimed in the journal either


@pytest.mark.parametrize("route,expected", [
    ("/page.jpg", "gives a web page or other text (text/html), not an image"),
    ("/speech.wav", "gives audio, not an image"),
    ("/drive.mp4", "gives a video, not an image"),
])
def test_an_image_url_giving_something_else_is_refused(host: Peer, route: str, expected: str) -> None:
    """The first bytes are sniffed with what the input rules already know (PIL, the bundled ffmpeg's header
    reader): a page, a sound or a video where an image should be is refused."""
    error = refused(f"{host.url}{route}")
    assert error.reason == "not_decodable" and expected in str(error) and host.url in str(error)


@pytest.mark.parametrize("route,field,reason,expected", [
    ("/face.jpg", AUDIO, "not_decodable", "gives an image, not audio"),
    ("/face.jpg", VIDEO, "still_video", "gives a still image, not a video"),
    ("/speech.wav", VIDEO, "no_video", "gives audio without a picture, not a video"),
])
def test_audio_and_video_urls_of_another_kind_are_refused(host: Peer, route: str, field: Any, reason: str,
                                                          expected: str) -> None:
    error = refused(f"{host.url}{route}", field)
    assert error.reason == reason and expected in str(error)


@pytest.mark.parametrize("route,field", [("/face.jpg", IMAGE), ("/speech.wav", AUDIO), ("/drive.mp4", VIDEO),
                                         ("/moved.jpg", IMAGE), ("/get-refused.jpg", IMAGE),
                                         ("/no-ranges.jpg", IMAGE)])
def test_good_urls_pass_asking_for_a_few_bytes_only(host: Peer, route: str, field: Any) -> None:
    """A file of the right kind passes: through a redirect, from a host refusing GET (a HEAD then), or refusing
    ranges (the start of the whole answer then); a GET asks for the first 256 KB only."""
    media = check(f"{host.url}{route}", field)
    assert media.url == f"{host.url}{route}" and media.path is None
    gets = [seen for seen in host.seen if seen.method == "GET"]
    assert gets and gets[0].headers.get("range") == f"bytes=0-{_inputs_url.PEEK_BYTES - 1}"
    if route == "/get-refused.jpg":
        assert [seen.method for seen in host.seen] == ["GET", "HEAD"]


def test_announced_sizes_over_the_limits_are_refused(host: Peer) -> None:
    """A 6 MB image (as Content-Range says) is over the model's 5 MB; audio over max_input_mb likewise."""
    error = refused(f"{host.url}/huge.jpg")
    assert error.reason == "image_too_large" and "6.0 MB" in str(error)
    error = refused(f"{host.url}/speech.wav", AUDIO, max_bytes=1000)
    assert error.reason == "media_too_large"
    assert refused(f"{host.url}/empty.jpg").reason == "empty"


@pytest.mark.parametrize("url_of,why", [
    (lambda host: f"{host.url}/loop.jpg", "redirected more than 5 times"),
    (lambda host: "http://127.0.0.1:9/face.jpg", "ConnectError"),  # nothing listens on the discard port
    (lambda host: f"{host.url}/silent-headers.jpg", "no answer within"),
])
def test_no_answer_is_unreachable_within_the_checks_deadline(host: Peer, url_of: Callable[[Peer], str], why: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A redirect loop, a refused connection and a host trickling its headers: url_unreachable, within the
    check's whole deadline (2 s here) whatever the host does."""
    import time

    monkeypatch.setattr(_inputs_url, "URL_CHECK_S", 2.0)
    started = time.monotonic()
    error = refused(url_of(host))
    assert error.reason == "url_unreachable" and why in str(error)
    assert time.monotonic() - started < 8  # a guard against a hang, not a speed test


def test_a_url_that_passed_is_not_asked_again_and_the_check_can_be_turned_off(host: Peer, media: dict[str, Path],
                                                                             server: LocalServer,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch checks each URL in its manifest, then as its row is submitted: the second check asks nothing.
    check_urls=False (or SPARK_NB_CHECK_URLS=0) sends a URL unchecked: for URLs only the service can reach."""
    check(f"{host.url}/face.jpg", IMAGE)
    asked = len(host.seen)
    check(f"{host.url}/face.jpg", IMAGE)
    assert len(host.seen) == asked == 1

    missing = f"{host.url}/missing.jpg"
    check(missing, IMAGE, InputLimits(check_urls=False))
    monkeypatch.setenv("SPARK_NB_CHECK_URLS", "0")
    check(missing, IMAGE)
    assert len(host.seen) == asked  # neither asked
    monkeypatch.delenv("SPARK_NB_CHECK_URLS")
    task = avatar.submit(missing, media["speech"], check_urls=False, **cloud_config(server))
    assert task.id and server.stats()["created"] == 1  # sent as asked (the service will fail it)
    assert not [seen for seen in host.seen if "range" in seen.headers and seen.path == "/missing.jpg"]


def test_the_check_is_on_by_default_and_its_setting_is_read_like_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    assert InputLimits().urls_checked and resolve(backend="local").limits.urls_checked
    spark_nb.configure(check_urls=False)
    assert not InputLimits().urls_checked and not resolve(backend="local").limits.urls_checked
    assert resolve(backend="local", check_urls=True).limits.urls_checked  # a call's own option wins
    spark_nb.configure(check_urls=None)
    for text, on in (("0", False), ("no", False), ("OFF", False), ("1", True), ("true", True), ("", True)):
        monkeypatch.setenv("SPARK_NB_CHECK_URLS", text)
        assert InputLimits().urls_checked is on and resolve(backend="local").limits.urls_checked is on
    monkeypatch.setenv("SPARK_NB_CHECK_URLS", "sometimes")
    with pytest.raises(spark_nb.SparkError, match="check_urls must be yes or no"):
        resolve(backend="local")


def test_a_manifest_with_a_404_url_is_refused_before_anything_runs(host: Peer, media: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    """The batch's manifest check is the same check(): the row is invalid, named with its URL and status."""
    from spark_nb.batch import check_manifest

    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "model", "image", "audio", "driving_video"])
        writer.writerow(["good", "avatar", f"{host.url}/face.jpg", str(media["speech"]), ""])
        writer.writerow(["gone", "avatar", f"{host.url}/missing.jpg", str(media["speech"]), ""])
    rows, invalid = check_manifest(manifest)
    assert [row.name for row in rows] == ["good"]
    assert len(invalid) == 1 and invalid[0].name == "gone"
    problem = " ".join(invalid[0].lines)
    assert "does not give the file (HTTP 404 Not Found)" in problem and f"{host.url}/missing.jpg" in problem


def test_a_form_shows_an_unreachable_url_at_once(host: Peer) -> None:
    """Pasting a URL into a form's picker checks it as generate() would, and shows the refusal with its fix."""
    from spark_nb.widgets import ModelForm

    form = ModelForm(IMITATOR, backend="local")
    form.image.url.value = f"{host.url}/missing.jpg"
    assert form.image.error is not None and form.image.error.reason == "url_unreachable"
    assert "HTTP 404" in form.image.problem.value and "check_urls=False" in form.image.problem.value
    form.image.url.value = f"{host.url}/face.jpg"
    assert form.image.error is None and form.image.ok
    unchecked = ModelForm(IMITATOR, backend="local", check_urls=False)  # the form's own option reaches its pickers
    unchecked.image.url.value = f"{host.url}/page.jpg"
    assert unchecked.image.error is None


def test_imitator_checks_its_driving_video_url_too(host: Peer, server: LocalServer, media: dict[str, Path]) -> None:
    with pytest.raises(spark_nb.ValidationError) as info:
        imitator.submit(media["portrait"], f"{host.url}/face.jpg", **cloud_config(server))
    assert info.value.reason == "still_video" and info.value.field == "driving_video"
    assert server.stats()["uploads"] == 0


def test_a_manifests_urls_are_asked_for_together_and_once_each(peer: Callable[..., Peer], media: dict[str, Path],
                                                               tmp_path: Path) -> None:
    """A manifest of 8 URL rows: the check asks the host for each URL once, several at a time (the manifest's
    warm-up, 4 at once), and the row loop then finds each answer remembered."""
    import threading
    import time

    from spark_nb.batch import check_manifest

    portrait = media["portrait"].read_bytes()
    lock, now, most = threading.Lock(), [0], [0]

    def slow_host(p: Peer, conn: socket.socket, req: Seen) -> None:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            time.sleep(0.3)  # long enough for the others to arrive while this one is open
            give(p, conn, req, portrait, "image/jpeg")
        finally:
            with lock:
                now[0] -= 1

    host = peer(slow_host)
    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "model", "image", "audio", "driving_video"])
        for i in range(8):
            writer.writerow([f"row{i}", "avatar", f"{host.url}/face{i}.jpg", str(media["speech"]), ""])
    rows, invalid = check_manifest(manifest)
    assert len(rows) == 8 and invalid == []
    assert sorted(seen.path for seen in host.seen) == sorted(f"/face{i}.jpg" for i in range(8))  # once each
    assert most[0] > 1  # asked together, not one after the other


# -- the call's one deadline covers the URL checks, and a call's URLs are asked for at once ----------------------

def held_host(media: dict[str, Path], mode: str, release: Any) -> Callable[[Peer, socket.socket, Seen], None]:
    """A host of a portrait and a speech clip that, in mode "slow", answers only once release is set (or after
    12 s: within the check's own 15 s), in mode "trickled" trickles its headers, in mode "together" answers its
    first two requests only once both have arrived (a barrier: one after the other, the first gets a 503)."""
    import threading

    files = {"/face.jpg": (media["portrait"].read_bytes(), "image/jpeg"),
             "/speech.wav": (media["speech"].read_bytes(), "audio/wav")}
    barrier, count, lock = threading.Barrier(2), [0], threading.Lock()

    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        if mode == "trickled":
            return p.trickle(conn, b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 10_000, every=0.5)
        if mode == "slow":
            release.wait(12)
        if mode == "together":
            with lock:
                count[0] += 1
                first_two = count[0] <= 2
            if first_two:
                try:
                    barrier.wait(timeout=10)
                except threading.BrokenBarrierError:
                    return p.respond(conn, 503, b"")
        return give(p, conn, req, *files[req.path])

    return handle


@pytest.mark.parametrize("mode", ["slow", "trickled"])
def test_the_calls_timeout_ends_its_url_checks_and_names_that_timeout(mode: str, peer: Callable[..., Peer],
                                                                      media: dict[str, Path], tmp_path: Path) -> None:
    """The second attack: generate(timeout=3) with URL inputs on a host trickling its headers ran 15 s (the check's
    own limit), and with two URLs answering after 12 s each (within that limit) 25 s, one after the other, then
    raised "could not connect ... check VTRIX_GENERATION_URL". Now the check's limit is the sooner of its 15 s and
    the call's deadline, the URLs are asked at once: the call ends by about its timeout, saying that timeout ended
    it, nothing created; and the URL is not judged (no verdict kept, its host not called silent)."""
    import threading
    import time

    from .conftest import TEST_KEY
    from .test_pipeline import SLACK_S, TIMEOUT_S, hostile_submission

    release = threading.Event()
    host, api = peer(held_host(media, mode, release)), peer(hostile_submission("none"))
    try:
        began = time.monotonic()
        with pytest.raises(spark_nb.SparkError) as info:
            avatar.generate(f"{host.url}/face.jpg", f"{host.url}/speech.wav", progress=False, timeout=TIMEOUT_S,
                            backend="cloud", base_url=api.url, api_key=TEST_KEY, output_dir=tmp_path / "out")
        assert time.monotonic() - began < TIMEOUT_S + SLACK_S  # a guard against the old 15 s and 25 s
        said = str(info.value)
        assert type(info.value) is spark_nb.SparkError, said  # not the URL's fault: no url_unreachable
        assert f"the call's timeout of {TIMEOUT_S:g} s ran out while checking the" in said and "timeout=" in said
        assert not any(s.path == "/model/v1/generation" for s in api.seen)
        assert _inputs_url._verdicts == {} and _inputs_url._silent == {}
    finally:
        release.set()


def test_a_calls_urls_are_asked_for_at_once(peer: Callable[..., Peer], media: dict[str, Path],
                                             tmp_path: Path) -> None:
    """The image and the audio URL of one call are asked for together, not one after the other (the host answers
    neither until both have arrived: one after the other, the first would wait 10 s and get a 503, refused)."""
    from .conftest import TEST_KEY
    from .test_pipeline import hostile_submission

    host, api = peer(held_host(media, "together", None)), peer(hostile_submission("none"))
    task = avatar.submit(f"{host.url}/face.jpg", f"{host.url}/speech.wav", backend="cloud", base_url=api.url,
                         api_key=TEST_KEY, output_dir=tmp_path / "out")
    assert task.id == "t-1" and sorted(s.path for s in host.seen) == ["/face.jpg", "/speech.wav"]
