"""Strict mode against what the attack on issue 25 and a new user's trial did to it (a real local server on
loopback, real peers serving real images, the journal on disk): strict judges an image URL's face too, and means
the same whether the journal would reuse, re-attach or create."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import spark_nb
from spark_nb import _inputs_url, avatar
from spark_nb.errors import SparkWarning
from spark_nb.local import LocalServer

from .conftest import cloud_config
from .peers import Peer, Seen, peers
from .test_inputs_url import give
from .test_pipeline import faceless


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[Peer, socket.socket, Seen], None]], Peer]]:
    yield from peers()


@pytest.fixture
def urls_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The URL check on, as it is by default (conftest turns it off), nothing remembered."""
    monkeypatch.delenv("SPARK_NB_CHECK_URLS", raising=False)
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()
    yield
    _inputs_url._verdicts.clear()
    _inputs_url._silent.clear()


def test_strict_searches_an_image_urls_face_before_anything_is_paid(
        server: LocalServer, media: dict[str, Path], tmp_path: Path, peer: Callable[..., Peer],
        urls_checked: None) -> None:
    """A faceless portrait given as a URL is refused under strict as the same file is (before: created and paid
    for); a face URL passes; a URL strict cannot fetch (check_urls=False, a 404) is refused saying strict cannot
    judge it, before anything is paid. Once a take exists, a URL that expired since passes under strict: nothing
    is paid, the earlier take is returned."""
    files = {"/blue.jpg": faceless(tmp_path / "landscape.jpg").read_bytes(),
             "/face.jpg": media["portrait"].read_bytes()}
    expired = [False]

    def host(p: Peer, conn: socket.socket, req: Seen) -> None:
        if req.path not in files or (expired[0] and req.path == "/face.jpg"):
            return p.respond(conn, 404, b"gone", {"Content-Type": "text/plain"})
        return give(p, conn, req, files[req.path], "image/jpeg")

    images = peer(host)
    cloud = cloud_config(server)
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.generate(f"{images.url}/blue.jpg", media["speech"], strict=True, progress=False, **cloud)
    assert info.value.reason == "no_face" and "blue.jpg" in str(info.value) and "strict" in str(info.value)
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)

    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(f"{images.url}/none.jpg", media["speech"], strict=True, check_urls=False, **cloud)
    assert info.value.reason == "url_unreachable" and "strict mode searches the portrait image" in str(info.value)
    assert "strict=False" in (info.value.hint or "") and server.stats()["created"] == 0

    task = avatar.submit(f"{images.url}/face.jpg", media["speech"], strict=True, **cloud)
    assert task.id and server.stats()["created"] == 1
    expired[0] = True
    _inputs_url._verdicts.clear()
    again = avatar.submit(f"{images.url}/face.jpg", media["speech"], strict=True, **cloud)
    assert again.id == task.id and server.stats()["created"] == 1


def test_strict_refuses_an_earlier_take_of_advised_inputs_as_it_refuses_a_new_one(
        server: LocalServer, media: dict[str, Path], tmp_path: Path) -> None:
    """Inputs with advice, first sent without strict: strict=True then refuses them with the same ValidationError
    whether the journal would reuse a completed take or re-attach to a running one, naming that take and saying it
    is returned without strict (before: returned under strict, as if judged); nothing is paid either way, and
    without strict the earlier take is what comes back."""
    landscape = faceless(tmp_path / "landscape.jpg")
    cloud = cloud_config(server)
    with pytest.warns(spark_nb.errors.SparkWarning, match="no face found"):
        done = avatar.generate(landscape, media["speech"], progress=False, **cloud)
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.generate(landscape, media["speech"], strict=True, progress=False, **cloud)
    assert info.value.reason == "no_face" and "landscape.jpg" in str(info.value)
    assert f"an earlier take of these inputs exists, task {done.task_id}" in str(info.value)
    assert "completed, and is returned without strict" in str(info.value) and "strict=False" in (info.value.hint or "")

    with pytest.warns(spark_nb.errors.SparkWarning, match="no face found"):
        running = avatar.submit(landscape, media["speech_mp3"], **cloud)  # not waited for: the journal says running
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(landscape, media["speech_mp3"], strict=True, **cloud)
    assert info.value.reason == "no_face" and f"task {running.id}" in str(info.value) and "still running" in str(
        info.value)
    assert server.stats()["created"] == 2
    assert avatar.submit(landscape, media["speech_mp3"], **cloud).id == running.id  # without strict: that take
    assert avatar.generate(landscape, media["speech"], progress=False, **cloud).task_id == done.task_id
    assert server.stats()["created"] == 2


def test_speech_given_as_a_url_is_said_to_go_whole_and_refused_under_strict(
        server: LocalServer, media: dict[str, Path], peer: Callable[..., Peer], urls_checked: None) -> None:
    """A speech URL cannot be measured before paying nor trimmed (the second new-user pass: a 25 s clip by URL went
    whole, without a word, even under strict with trim_audio=False): without strict a warning says so and the
    task is made; strict refuses it (audio_unmeasured) before anything is sent, saying to pass the file."""
    speech = media["speech"].read_bytes()
    audio = peer(lambda p, conn, req: give(p, conn, req, speech, "audio/wav"))
    cloud = cloud_config(server)
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(media["portrait"], f"{audio.url}/speech.wav", strict=True, trim_audio=False, **cloud)
    assert info.value.reason == "audio_unmeasured" and "strict" in str(info.value)
    assert "pass the file" in (info.value.hint or "")
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)

    with pytest.warns(SparkWarning, match="speech audio is a URL: its length cannot be checked"):
        task = avatar.submit(media["portrait"], f"{audio.url}/speech.wav", **cloud)
    assert task.id and server.stats()["created"] == 1


def test_speech_whose_header_guesses_its_length_is_measured(server: LocalServer, media: dict[str, Path],
                                                           tmp_path: Path) -> None:
    """The attack (fourth round): 0.5 s of speech at 320 kb/s, then 40 s at 32 kb/s, an MP3 without a Xing header
    (as joined or streamed MP3s are). Its header guessed 10.4 s from the first frame's bitrate; strict with
    trim_audio=False let it through and the trim cut nothing, 40 s sent whole. Audio whose header only guesses is
    measured by decoding it: strict refuses it, and the trim cuts it under 15 s."""
    import subprocess

    from spark_nb._ffmpeg import ffmpeg_exe, read_header

    lame = ["-ar", "44100", "-ac", "1", "-c:a", "libmp3lame", "-write_xing", "0", "-id3v2_version", "0",
            "-write_id3v1", "0"]
    for name, seconds, rate, loops in (("head", "0.5", "320k", "0"), ("long", "40", "32k", "12")):
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", loops, "-i", str(media["speech"]),
                        "-t", seconds, *lame, "-b:a", rate, str(tmp_path / f"{name}.mp3")], check=True, timeout=60)
    mix = tmp_path / "mix.mp3"
    mix.write_bytes((tmp_path / "head.mp3").read_bytes() + (tmp_path / "long.mp3").read_bytes())
    assert 39.5 < (read_header(mix).duration or 0) < 41.5
    cloud = cloud_config(server)
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(media["portrait"], mix, strict=True, trim_audio=False, **cloud)
    assert info.value.reason == "audio_too_long"
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)
    with pytest.warns(SparkWarning, match="trimmed"):
        result = avatar.generate(media["portrait"], mix, progress=False, **cloud)
    assert result.duration is not None and result.duration <= 15.0


def test_speech_whose_header_states_a_short_length_is_measured(server: LocalServer, media: dict[str, Path],
                                                              tmp_path: Path) -> None:
    """The attack (fifth round): 40 s of speech as FLAC whose STREAMINFO states a quarter of its samples (Matroska
    and M4A headers lie the same way) read as 10 s, so strict with trim_audio=False sent it whole; the sixth: the
    same with a cover picture, which made it a video. Audio (its cover no picture) is measured by decoding it,
    whatever its header states."""
    import subprocess

    from spark_nb._ffmpeg import ffmpeg_exe, read_header

    flac = tmp_path / "long.flac"  # with a cover picture, as taggers write one (the sixth round: it hid the lie)
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "12", "-i", str(media["speech"]),
                    "-i", str(media["portrait"]), "-map", "0:a", "-map", "1:v", "-disposition:v", "attached_pic",
                    "-t", "40", "-ac", "1", "-ar", "16000", str(flac)], check=True, timeout=60)
    data = bytearray(flac.read_bytes())  # STREAMINFO's total samples: the low 36 bits of bytes 18..25
    value, low = int.from_bytes(data[18:26], "big"), (1 << 36) - 1
    data[18:26] = ((value & ~low) | ((value & low) // 4)).to_bytes(8, "big")
    lying = tmp_path / "lying.flac"
    lying.write_bytes(bytes(data))
    facts = read_header(lying)
    assert 39.5 < (facts.duration or 0) < 40.5 and facts.width is None and facts.has_audio  # the cover is no picture
    with pytest.raises(spark_nb.ValidationError) as info:
        avatar.submit(media["portrait"], lying, strict=True, trim_audio=False, **cloud_config(server))
    assert info.value.reason == "audio_too_long"
    assert (server.stats()["uploads"], server.stats()["created"]) == (0, 0)
