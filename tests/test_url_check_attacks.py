"""The URL check against what the attack on issue 25 sent it (scripted peers on 127.0.0.1): hostile redirects are
url_unreachable (never an internal error), a silent host costs one deadline and not one per row, a name that takes
40 s to look up ends at the check's deadline, a valid JPEG with large metadata or a compressed answer passes, a
verdict is kept for the limits it was made under, and no message shows a URL's password."""

from __future__ import annotations

import csv
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import spark_nb
from spark_nb import _inputs_url, _transfer
from spark_nb._config import DEFAULT_LIMITS, InputLimits
from spark_nb._inputs import Media
from spark_nb._inputs import check as check_input
from spark_nb.models import AVATAR

from .peers import Peer, Seen, peers
from .test_inputs_url import give

IMAGE, AUDIO = AVATAR.fields


def check(value: str, field: Any, limits: InputLimits = DEFAULT_LIMITS) -> Media:
    """The input check as a submission runs it: the URL asked for (urls=True)."""
    return check_input(value, field, limits, urls=True)


@pytest.fixture(autouse=True)
def urls_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The check on, as it is by default (conftest turns it off for the other tests), nothing remembered; no
    proxy (the name lookups are then this process's own)."""
    monkeypatch.delenv("SPARK_NB_CHECK_URLS", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()
    yield
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[Peer, socket.socket, Seen], None]], Peer]]:
    """Start scripted HTTP peers on 127.0.0.1; all stopped after the test."""
    yield from peers()


def redirect_to(location: str) -> Callable[[Peer, socket.socket, Seen], None]:
    def handle(p: Peer, conn: socket.socket, req: Seen) -> None:
        p.send(conn, f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
               .encode("latin-1"))
    return handle


@pytest.mark.parametrize("location", ["data:image/png;base64,AAAA", "javascript:alert(1)", "mailto:x@y",
                                      "http://" + "a" * 300 + "/x", "http://xn--/x", "ftp://127.0.0.1/x"])
def test_a_hostile_redirect_is_url_unreachable_never_an_internal_error(peer: Callable[..., Peer], location: str,
                                                                      tmp_path: Path, media: dict[str, Path]) -> None:
    """A Location httpx cannot follow (InvalidURL, an IDNA UnicodeError, another scheme) is a non-retryable
    TransferError at the bounded fetcher, so the check says url_unreachable and a manifest's row is invalid (before:
    httpx.InvalidURL, UnicodeError and IDNAError escaped: generate() called it a bug, a batch died before any row)."""
    host = peer(redirect_to(location))
    with pytest.raises(_transfer.TransferError) as info:
        _transfer.peek(f"{host.url}/face.jpg", deadline=time.monotonic() + 10, max_bytes=100)
    assert not info.value.retryable
    with pytest.raises(_transfer.TransferError):
        _transfer.fetch_to_file(f"{host.url}/face.jpg", tmp_path / "f", deadline=time.monotonic() + 10, max_bytes=100)
    _inputs_url._verdicts.clear()
    with pytest.raises(spark_nb.ValidationError) as refused:
        check(f"{host.url}/face.jpg", IMAGE)
    assert refused.value.reason == "url_unreachable" and host.url in str(refused.value)

    from spark_nb.batch import check_manifest

    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["name", "model", "image", "audio"],
                                  ["bad", "avatar", f"{host.url}/other.jpg", str(media["speech"])],
                                  ["good", "avatar", str(media["portrait"]), str(media["speech"])]])
    rows, invalid = check_manifest(manifest)
    assert [row.name for row in rows] == ["good"] and [row.name for row in invalid] == ["bad"]


def test_a_silent_host_costs_one_deadline_not_one_per_row(peer: Callable[..., Peer], tmp_path: Path,
                                                         media: dict[str, Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """12 rows whose images are on a host that accepts connections and never answers: the first URLs asked use up
    the check's deadline, the others of that host are refused at once ("gave no answer ... ago"), and the row loop
    finds every verdict kept. Before: each URL asked in the warm-up and again in the row loop, one at a time (24
    asks; with the 15 s deadline 225 s for 12 rows)."""
    from spark_nb.batch import check_manifest

    monkeypatch.setattr(_inputs_url, "URL_CHECK_S", 2.0)
    host = peer(lambda p, conn, req: p.stop_event.wait(30))
    manifest = tmp_path / "rows.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "model", "image", "audio"])
        for i in range(12):
            writer.writerow([f"r{i}", "avatar", f"{host.url}/face{i}.jpg", str(media["speech"])])
    rows, invalid = check_manifest(manifest)
    assert rows == [] and len(invalid) == 12
    assert all("does not give the file" in row.error for row in invalid)
    assert 1 <= len(host.seen) <= 4  # the warm-up's first wave only
    assert sum("gave no answer" in row.error for row in invalid) >= 8


def test_a_refusal_is_kept_like_a_pass_and_a_verdict_only_for_its_limits(peer: Callable[..., Peer],
                                                                       media: dict[str, Path]) -> None:
    """A URL refused is not asked again (a manifest's warm-up, then its row loop); a pass made under a 100 MB limit
    does not pass the same URL under a 1 KB one (before: kept by URL and kind only)."""
    speech = media["speech"].read_bytes()
    host = peer(lambda p, conn, req: give(p, conn, req, speech, "audio/wav") if req.path == "/speech.wav"
                else p.respond(conn, 404, b""))
    for _ in range(2):
        with pytest.raises(spark_nb.ValidationError, match="HTTP 404"):
            check(f"{host.url}/gone.wav", AUDIO)
    assert [seen.path for seen in host.seen] == ["/gone.wav"]
    check(f"{host.url}/speech.wav", AUDIO)
    with pytest.raises(spark_nb.ValidationError) as info:
        check(f"{host.url}/speech.wav", AUDIO, InputLimits(max_bytes=1000))
    assert info.value.reason == "media_too_large"


def test_a_name_lookup_that_does_not_answer_ends_at_the_deadline(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    """A resolver that takes 40 s (simulated for one name, in this process): the check ends by its deadline (2 s
    here) as url_unreachable, and so does a result download; the lookups run in a worker the deadline does not
    wait for. Before: the deadline's watchdog only shut sockets, and the lookup ran before there was one."""
    real, release = socket.getaddrinfo, threading.Event()

    def slow(host: object, *args: object, **kwargs: object) -> object:
        if host == "slow-resolver.test":
            release.wait(40)
            return real("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setattr(_inputs_url, "URL_CHECK_S", 2.0)
    try:
        started = time.monotonic()
        with pytest.raises(spark_nb.ValidationError) as info:
            check("http://slow-resolver.test:9/face.jpg", IMAGE)
        assert info.value.reason == "url_unreachable" and "slow-resolver.test" in str(info.value)
        started_fetch = time.monotonic()
        with pytest.raises(_transfer.TransferError):
            _transfer.fetch_to_file("http://slow-resolver.test:9/video.mp4", tmp_path / "v",
                                    deadline=time.monotonic() + 2, max_bytes=100)
        assert started_fetch - started < 8 and time.monotonic() - started_fetch < 8  # guards against a hang
    finally:
        release.set()


def test_a_name_with_several_addresses_is_tried_address_by_address(peer: Callable[..., Peer],
                                                                  media: dict[str, Path]) -> None:
    """localhost (::1, then 127.0.0.1) with a host listening on 127.0.0.1 only: the check connects to the address
    that answers, keeping the name for the Host header."""
    portrait = media["portrait"].read_bytes()
    host = peer(lambda p, conn, req: give(p, conn, req, portrait, "image/jpeg"))
    url = host.url.replace("127.0.0.1", "localhost") + "/face.jpg"
    assert check(url, IMAGE).url == url
    assert host.seen[0].headers["host"].startswith("localhost:")


def test_a_jpeg_with_large_metadata_and_a_compressed_answer_pass(peer: Callable[..., Peer],
                                                                media: dict[str, Path]) -> None:
    """A valid JPEG whose APPn segments (ICC, XMP, as cameras write them) fill the first 256 KB, and a portrait
    served with Content-Encoding: gzip: neither can be judged from its first bytes, so both pass (before: both were
    refused as "audio": ffmpeg's image2 demuxer guessed a 0.04 s stream of no size, taken for sound)."""
    portrait = media["portrait"].read_bytes()
    segment = b"\xff\xe2" + (65535).to_bytes(2, "big") + b"ICC_PROFILE\x00" + b"\x00" * (65533 - 12)
    large = portrait[:2] + segment * 5 + portrait[2:]
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(large)).size  # a valid JPEG as a whole
    zipped = gzip.compress(portrait)
    host = peer(lambda p, conn, req: give(p, conn, req, large, "image/jpeg") if req.path == "/large.jpg"
                else p.respond(conn, 200, zipped, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"}))
    assert check(f"{host.url}/large.jpg", IMAGE).url
    assert check(f"{host.url}/zipped.jpg", IMAGE).url


def test_no_message_shows_a_urls_user_name_or_password(peer: Callable[..., Peer]) -> None:
    host = peer(lambda p, conn, req: p.respond(conn, 404, b""))
    url = host.url.replace("http://", "http://someone:hunter2@") + "/missing.jpg"
    with pytest.raises(spark_nb.ValidationError) as info:
        check(url, IMAGE)
    assert "hunter2" not in str(info.value) and "someone" not in str(info.value)
    assert f"{host.url}/missing.jpg" in str(info.value)
