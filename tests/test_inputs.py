"""Bad inputs are refused locally with a clear message and fix, before any upload or task creation."""

from __future__ import annotations

import re
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import spark_nb
from spark_nb import avatar, imitator, samples
from spark_nb._inputs import FIXES, check, fix_for
from spark_nb.errors import REASONS
from spark_nb.models import AVATAR, IMITATOR

from .conftest import TEST_KEY, cloud_config, ffmpeg


def png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size (decoding it would need gigabytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


@pytest.fixture
def refused(server: Any) -> Callable[..., spark_nb.ValidationError]:
    """Call a generate function expecting ValidationError; assert the server saw no upload and no task."""

    def check(fn: Callable[..., Any], *args: Any, match: str, code: str | None = None) -> spark_nb.ValidationError:
        with pytest.raises(spark_nb.ValidationError, match=match) as info:
            fn(*args, progress=False, **cloud_config(server))
        error = info.value
        assert error.code == code
        assert error.hint, "every validation error says how to fix it"
        assert error.reason in REASONS
        stats = server.stats()
        assert (stats["created"], stats["uploads"], stats["polls"]) == (0, 0, 0)
        return error

    return check


@pytest.mark.parametrize(
    ("which", "code"), [("image", "003016001"), ("audio", "003016002")]
)
@pytest.mark.parametrize("missing", [None, "", "   ", b""])
def test_missing_avatar_inputs_carry_the_seed_code(which: str, code: str, missing: Any, media: dict[str, Path],
                                                   refused: Callable[..., Any]) -> None:
    """A missing image or audio is refused with 003016001 / 003016002."""
    args = {"image": media["portrait"], "audio": media["speech"], which: missing}
    refused(avatar.generate, args["image"], args["audio"], match="is missing", code=code)


@pytest.mark.parametrize(("which", "code"), [("image", "003018001"), ("driving_video", "003018004")])
def test_missing_imitator_inputs_carry_the_seed_code(which: str, code: str, media: dict[str, Path],
                                                     refused: Callable[..., Any]) -> None:
    """A missing character image or driving video is refused with its seed code."""
    args = {"image": media["portrait"], "driving_video": media["driving"], which: None}
    refused(imitator.generate, args["image"], args["driving_video"], match="is missing", code=code)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("ftp://example.com/face.jpg", "ftp: URLs are not supported"),
        ("file:///etc/passwd", "file: URLs are not supported"),
        ("data:image/png;base64,AAAA", "data: URLs are not supported"),
        ("http://", "not a valid URL"),
        ("https://exa mple.com/a.jpg", "not a valid URL"),
        ("no/such/face.jpg", "no such file"),
        ("C:\\photos\\face.jpg", "no such file"),
        ("x" * 10_000, "no such file"),
        ("visage-\u00e9t\u00e9-\u4eba.jpg", "no such file"),
        ("bad\x00name.jpg", "no such file"),
        (42, "cannot use a int"),
        ({"name": "face.jpg"}, "the upload has no content"),
        ({"name": "face.jpg", "content": b""}, "the upload has no content"),
    ],
)
def test_hostile_strings_and_objects_are_refused(value: Any, match: str, media: dict[str, Path],
                                                 refused: Callable[..., Any]) -> None:
    """Other URL schemes, malformed URLs, missing or absurd paths and odd objects are all refused."""
    refused(avatar.generate, value, media["speech"], match=match)


def test_undecodable_and_oversized_images(media: dict[str, Path], refused: Callable[..., Any],
                                          tmp_path: Path) -> None:
    """Truncated, fake, huge-in-bytes and huge-in-pixels images are refused with the model's limits named."""
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(media["portrait"].read_bytes()[:2000])
    refused(avatar.generate, truncated, media["speech"], match="could not be decoded as an image")
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 100)  # JPEG magic, then nonsense
    refused(avatar.generate, fake, media["speech"], match="could not be decoded as an image")
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    refused(avatar.generate, text, media["speech"], match="could not be decoded as an image")
    heavy = tmp_path / "noise.png"
    noise = Image.effect_noise((1400, 1400), 120).convert("RGB")
    noise.save(heavy, compress_level=0)
    assert heavy.stat().st_size > 5 * 1024 * 1024
    refused(avatar.generate, heavy, media["speech"], match="under 5 MB")
    wide = tmp_path / "wide.png"
    Image.new("RGB", (4096, 8)).save(wide)
    refused(avatar.generate, wide, media["speech"], match="under 4096x4096")


def test_a_header_claiming_50000_pixels_is_refused_quickly(media: dict[str, Path], refused: Callable[..., Any],
                                                           tmp_path: Path) -> None:
    """The size comes from the header: no 7.5 GB allocation, an answer in a moment (decoding it would take minutes)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_claiming(50_000, 50_000))
    started = time.monotonic()
    refused(avatar.generate, bomb, media["speech"], match="under 4096x4096")
    assert time.monotonic() - started < 3.0


def test_unusual_image_formats_are_refused(media: dict[str, Path], refused: Callable[..., Any],
                                           tmp_path: Path) -> None:
    """An image format outside the common ones (here an ICO) is refused with advice to use JPEG."""
    icon = tmp_path / "face.ico"
    Image.open(media["portrait"]).save(icon, sizes=[(64, 64)])
    refused(avatar.generate, icon, media["speech"], match="ICO image")


def test_bad_audio_is_refused(media: dict[str, Path], refused: Callable[..., Any], tmp_path: Path) -> None:
    """Text, a still image, a silent video and an empty wav are not speech."""
    text = tmp_path / "speech.wav"
    text.write_text("hello")
    refused(avatar.generate, media["portrait"], text, match="could not be decoded as audio")
    refused(avatar.generate, media["portrait"], media["portrait"], match="no audio stream")
    refused(avatar.generate, media["portrait"], media["silent_driving"], match="no audio stream")
    empty = tmp_path / "empty.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "0", str(empty))
    refused(avatar.generate, media["portrait"], empty, match="no sound|could not be decoded")
    wrong_ext = tmp_path / "speech.jpg"  # a real wav under a misleading name is still accepted later
    wrong_ext.write_bytes(media["speech"].read_bytes()[:100])
    refused(avatar.generate, media["portrait"], wrong_ext, match="could not be decoded|no sound")


def test_bad_driving_videos_are_refused(media: dict[str, Path], refused: Callable[..., Any], tmp_path: Path) -> None:
    """A still image, an audio file and a truncated mp4 are not driving videos."""
    refused(imitator.generate, media["portrait"], media["portrait"], match="still picture")
    refused(imitator.generate, media["portrait"], media["speech"], match="no video stream")
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(media["driving"].read_bytes()[:3000])
    refused(imitator.generate, media["portrait"], truncated, match="could not be decoded as a video")


def test_the_first_problem_is_reported_before_any_network(media: dict[str, Path], refused: Callable[..., Any]) -> None:
    """submit() validates too; a good image with a bad audio still sends nothing."""
    def submit(image: Any, audio: Any, progress: bool, **config: Any) -> Any:
        return avatar.submit(image, audio, **config)

    refused(submit, media["portrait"], "nope.wav", match="no such file")


def test_a_wav_named_wrongly_is_judged_by_content(media: dict[str, Path], server: Any, tmp_path: Path) -> None:
    """Extensions do not matter: a wav saved as .bin is accepted because it decodes as audio."""
    renamed = tmp_path / "speech.bin"
    renamed.write_bytes(media["speech"].read_bytes())
    result = avatar.generate(media["portrait"], renamed, progress=False, **cloud_config(server))
    assert result.status == "completed"


def test_each_refusal_says_its_reason_and_fix(media: dict[str, Path], tmp_path: Path) -> None:
    """A program can tell problems apart by reason; only "too large" comes with a one-click fix (shrink)."""
    image, audio, video = AVATAR.fields[0], AVATAR.fields[1], IMITATOR.fields[1]
    wide = tmp_path / "wide.png"
    Image.new("RGB", (4096, 8)).save(wide)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    cases = [(None, image, "missing"), ("ftp://x.example/a.jpg", image, "unsupported_url"),
             ("HTTP://", image, "invalid_url"), ("no/such.jpg", image, "no_such_file"), (b"", image, "missing"),
             ({"name": "a.jpg", "content": b""}, image, "empty"), (wide, image, "image_too_large"),
             (text, image, "not_decodable"), (3.5, image, "unsupported_type"), (media["portrait"], audio, "no_audio"),
             (media["speech"], video, "no_video"), (media["portrait"], video, "still_video")]
    for value, field, reason in cases:
        with pytest.raises(spark_nb.ValidationError) as info:
            check(value, field)
        assert (info.value.reason, info.value.field) == (reason, field.name), value
        assert fix_for(info.value) == FIXES.get(reason)
    assert fix_for(spark_nb.ValidationError("x", reason="image_too_large")) == "shrink_image"
    with pytest.raises(ValueError, match="unknown ValidationError reason"):
        spark_nb.ValidationError("x", reason="something_new")


def test_advice_is_data_with_its_fix(media: dict[str, Path], tmp_path: Path) -> None:
    """Usable inputs come back with advice: long audio (fix: trim), a picture without a face (no fix)."""
    long = check(media["long_speech"], AVATAR.fields[1])
    (advice,) = long.advice
    assert (advice.reason, advice.field, advice.fix) == ("audio_too_long", "audio", "trim_audio")
    assert "17.0 s" in advice.message and "15 s" in advice.message
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(blank)
    (advice,) = check(blank, AVATAR.fields[0]).advice
    assert (advice.reason, advice.fix) == ("no_face", None) and "no face found" in advice.message
    assert check(media["speech"], AVATAR.fields[1]).advice == ()
    assert check("https://example.com/face.jpg", AVATAR.fields[0]).advice == ()  # URLs are not fetched here


def test_a_check_without_advice_searches_no_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """advise=False (a manifest's check) refuses what it must and looks for no face: that search is most of an
    image's check, and the advice is given when the row is submitted."""
    import spark_nb._faces as faces

    searched: list[Path] = []
    monkeypatch.setattr(faces, "face_in_file", lambda path: searched.append(Path(path)) or False)
    blank = tmp_path / "wall.jpg"
    Image.new("RGB", (400, 300), (120, 130, 140)).save(blank)
    assert check(blank, AVATAR.fields[0], advise=False).advice == ()
    assert searched == []
    (advice,) = check(blank, AVATAR.fields[0]).advice
    assert advice.reason == "no_face" and searched == [blank]
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(spark_nb.ValidationError):
        check(tmp_path / "empty.jpg", AVATAR.fields[0], advise=False)


def test_an_image_is_decoded_once_per_version_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch checks each image with its manifest and again at submit: the second check reuses the first's
    answer, while the same file rewritten (a new version) is checked afresh and refused when broken."""
    import os

    from PIL import ImageFile

    loads: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: loads.append(img.format) or real_load(img))
    face = tmp_path / "face.jpg"
    Image.new("RGB", (320, 240), (200, 150, 120)).save(face)
    first = check(face, AVATAR.fields[0], advise=False)
    second = check(str(face), AVATAR.fields[0], advise=False)
    assert (first.facts.width, second.facts.height) == (320, 240) and len(loads) == 1  # type: ignore[union-attr]
    face.write_bytes(face.read_bytes()[:200])  # the same name, cut short
    stat = face.stat()
    os.utime(face, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(spark_nb.ValidationError, match="could not be decoded"):
        check(face, AVATAR.fields[0], advise=False)


def test_silence_a_still_picture_and_a_cut_file_are_refused(media: dict[str, Path], refused: Callable[..., Any],
                                                            tmp_path: Path) -> None:
    """30 s of digital silence is no speech; a video of one colour does not move; a file cut in half ends before
    its header says: each refused with its reason, before any upload."""
    silence = tmp_path / "silence.wav"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "30", str(silence))
    assert refused(avatar.generate, media["portrait"], silence, match="is silent").reason == "no_audio"
    still = tmp_path / "still.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=320x240:r=25", "-t", "5", "-pix_fmt", "yuv420p", str(still))
    assert refused(imitator.generate, media["portrait"], still, match="shows no motion").reason == "still_video"
    whole = samples.DRIVING_VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    error = refused(imitator.generate, media["portrait"], cut, match="looks truncated|is damaged")
    assert error.reason == "not_decodable"
    cut_speech = tmp_path / "cut.wav"
    cut_speech.write_bytes(samples.SPEECH.read_bytes()[:60_000])
    refused(avatar.generate, media["portrait"], cut_speech, match="truncated|silent|could not be decoded")


def test_inputs_over_the_size_and_length_limits_are_refused_before_any_upload(
        media: dict[str, Path], refused: Callable[..., Any], tmp_path: Path) -> None:
    """A 200 MB driving video is refused by its size before anything is read or uploaded; limits are settings."""
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:
        f.write(samples.DRIVING_VIDEO.read_bytes())
        f.truncate(200 * 1024**2)  # sparse: 200 MB on paper, instant to make
    started = time.monotonic()
    assert refused(imitator.generate, media["portrait"], huge, match="200 MB").reason == "media_too_large"
    assert time.monotonic() - started < 5
    spark_nb.configure(max_input_seconds=3)
    try:
        assert refused(avatar.generate, media["portrait"], media["speech_mp3"], match="limited to 3 s").reason \
            == "media_too_long"
    finally:
        spark_nb.configure(max_input_seconds=None)
    with pytest.raises(spark_nb.SparkError, match="max_input_mb must be a positive number"):
        avatar.generate(media["portrait"], media["speech"], progress=False, max_input_mb="lots")


@pytest.mark.parametrize("url", ["https://ｅｘａｍｐｌｅ.com/face.jpg", "https://exa\u200bmple.com/face.jpg",
                                 "https://bücher.example/face.jpg", "HTTP://[::1/face.jpg"])
def test_urls_a_server_could_not_fetch_are_refused_locally(url: str, media: dict[str, Path],
                                                           refused: Callable[..., Any]) -> None:
    """Full-width or invisible characters in the host, non-ASCII hosts, a broken IPv6 literal: refused here, with
    zero requests, instead of failing on the service after the task is paid."""
    assert refused(avatar.generate, url, media["speech"], match="not a valid URL").reason == "invalid_url"


def test_an_upload_refused_as_too_large_is_an_upload_error(media: dict[str, Path],
                                                           make_server: Callable[..., Any]) -> None:
    """An endpoint answering 413 raises UploadError saying the file is over its limit, and no task is created."""
    server = make_server(api_key=TEST_KEY, max_upload_bytes=10_000)
    with pytest.raises(spark_nb.UploadError, match="HTTP 413") as info:
        avatar.generate(media["portrait"], media["speech"], progress=False, **cloud_config(server))
    assert "size limit" in (info.value.hint or "") and server.stats()["created"] == 0


REAL = Path(__file__).parent / "media" / "real"  # real photographs: sources and licences in tests/media/README.md


@pytest.mark.parametrize("name,face", [
    ("portrait_large_face.jpg", True), ("portrait_small_face.jpg", True), ("portrait_offcentre.jpg", True),
    ("portrait_gray_lowlight.jpg", True), ("portrait_profile_gray.jpg", False),
])
def test_the_face_advice_on_real_photographs(name: str, face: bool) -> None:
    """Real portraits of real people (a face filling the frame, small, off-centre, grey and dark, glasses) pass
    with no advice; a face in profile gets the "no face found" advice, and is still accepted."""
    checked = check(REAL / name, AVATAR.fields[0])
    assert checked.facts is not None and checked.facts.is_still_image
    assert [a.reason for a in checked.advice] == ([] if face else ["no_face"])


@pytest.mark.parametrize(("field", "content", "name"), [
    (AVATAR.fields[0], b"speech", "not_really.png"),   # PIL: "cannot identify image file <scratch path>" before
    (AVATAR.fields[1], b"portrait", "holiday.wav"),     # a picture as audio: no audio stream
    (AVATAR.fields[1], b"garbage", "broken.wav"),       # ffmpeg cannot read it: its reason, without the file
])
def test_a_refused_upload_is_named_by_its_own_name(field: Any, content: bytes, name: str,
                                                   media: dict[str, Path]) -> None:
    """A FileUpload item (a form's upload, or one passed to generate()) is checked in a scratch file named by its
    content hash: the refusal names the upload as its user named it, never the scratch file or its folder."""
    from spark_nb._scratch import scratch_dir

    data = {"speech": media["speech"].read_bytes(), "portrait": media["portrait"].read_bytes(),
            "garbage": b"not media at all " * 64}[content.decode()]
    with pytest.raises(spark_nb.ValidationError) as info:
        check({"name": name, "content": memoryview(data)}, field)
    said = str(info.value)
    assert name in said and str(scratch_dir()) not in said, said
    assert not re.search(r"[0-9a-f]{24}", said), said
