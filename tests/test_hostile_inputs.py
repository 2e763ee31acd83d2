"""Bad input, fuzzed: corrupt and hostile media, strings and widget values never reach the service.

Every case goes through avatar.generate / imitator.generate pointed at a real local server (cloud path, so
any request would land there) and must end, within a deadline, in a spark_nb.ValidationError that names the
input and says how to fix it, while the server sees no task, upload, poll or download.
"""

from __future__ import annotations

import re
import socket
import string
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import note as _note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from PIL import Image

import spark_nb
from spark_nb import _inputs as inputs
from spark_nb import avatar, imitator
from spark_nb.local import LocalServer

from .conftest import TOOL_TIMEOUT_S, cloud_config, ffmpeg

CALL_LIMIT_S = 10.0  # "no hang": every call returns (or raises) within this
COUNTERS = ("created", "uploads", "polls", "downloads")
FUZZ = settings(max_examples=40, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])
FEW = settings(FUZZ, max_examples=25)

# target label -> (model module, argument). The label is the field label models.py puts in every message.
TARGETS: dict[str, tuple[Any, str]] = {
    "portrait image": (avatar, "image"),
    "speech audio": (avatar, "audio"),
    "character image": (imitator, "image"),
    "driving video": (imitator, "driving_video"),
}
IMAGES = ["portrait image", "character image"]
WORD = {"image": "image", "audio": "audio", "driving_video": "driving video"}  # what a reader looks for
MIME = {".jpg": "image/jpeg", ".png": "image/png", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".mp4": "video/mp4"}


# --------------------------------------------------------------------------------------------- helpers


def note(text: str) -> None:
    """hypothesis.note inside a given test (shown for a failing example); nothing in a plain test."""
    if currently_in_test_context():
        _note(text)


def within_deadline(fn: Callable[[], Any], limit: float = CALL_LIMIT_S) -> tuple[Any, BaseException | None, float]:
    """Run fn in a thread: (its value, what it raised, seconds). Fails the test if it is still running at limit."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    started = time.monotonic()
    worker = threading.Thread(target=run, name="hostile-input", daemon=True)
    worker.start()
    worker.join(limit)
    elapsed = time.monotonic() - started
    assert not worker.is_alive(), f"still running after {limit:g} s: the call hangs"
    return box.get("value"), box.get("error"), elapsed


def untouched(server: LocalServer) -> None:
    """The server saw no task, upload, poll or download."""
    stats = server.stats()
    assert {k: stats[k] for k in COUNTERS} == dict.fromkeys(COUNTERS, 0), stats


def refused(server: LocalServer, media: dict[str, Path], target: str, value: Any,
            limit: float = CALL_LIMIT_S) -> spark_nb.ValidationError:
    """generate() with value as target's input (the other inputs valid) raises a useful ValidationError in time."""
    module, name = TARGETS[target]
    good = {"image": media["portrait"], "audio": media["speech"], "driving_video": media["driving"]}
    values = {field.name: good[field.name] for field in module.MODEL.fields}
    values[name] = value
    _, error, elapsed = within_deadline(
        lambda: module.generate(**values, progress=False, timeout=30, **cloud_config(server)), limit)
    note(f"{target}: {type(error).__name__} after {elapsed:.2f} s: {error}")
    assert error is not None, f"{target} was accepted: {value!r:.200}"
    if type(error) is not spark_nb.ValidationError:
        raise AssertionError(f"{type(error).__name__} instead of ValidationError: {error}") from error
    text = str(error)
    assert error.field == name
    assert target in text and WORD[name] in text, f"the message does not name the input: {text}"
    assert error.hint and error.hint.strip(), "every refusal says how to fix it"
    assert len(text) < 1000, "the message stays readable (no 10k-character echo)"
    untouched(server)
    return error


def judged(path: Path, target: str) -> inputs.Media | None:
    """The unit under generate(): normalise + validate. ValidationError or a Media, nothing else, in time."""
    field = next(f for f in TARGETS[target][0].MODEL.fields if f.name == TARGETS[target][1])
    value, error, _ = within_deadline(lambda: inputs.validate(inputs.normalise(path, field)))
    if error is not None and type(error) is not spark_nb.ValidationError:
        raise AssertionError(f"{type(error).__name__} instead of ValidationError: {error}") from error
    return value


def deliver(form: str, data: bytes, name: str, folder: Path) -> Any:
    """The same bytes as a str path, a Path, bytes, or an ipywidgets 8 FileUpload item."""
    if form in ("str", "path"):
        path = folder / name
        path.write_bytes(data)
        return str(path) if form == "str" else path
    if form == "bytes":
        return data
    return {"name": name, "type": MIME.get(Path(name).suffix, ""), "size": len(data), "content": memoryview(data)}


FORMS = st.sampled_from(["str", "path", "bytes", "upload"])


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk with a correct CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose IHDR claims width x height (decoding it would need gigabytes)."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return PNG_SIGNATURE + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """SOI, a JFIF APP0, an SOF0 claiming width x height (3 components), a short scan and EOI."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return b"\xff\xd8" + app0 + sof0 + sos + b"\x00" * 32 + b"\xff\xd9"


def gif_claiming(width: int, height: int) -> bytes:
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
            + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def bmp_claiming(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 16, 0, 0, 54) + info + b"\x00" * 16


def webp_claiming(width: int, height: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") \
        + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def wav_header(*, channels: int, rate: int, bits: int, fmt_tag: int = 1, data_bytes: int = 0,
               riff_size: int | None = None) -> bytes:
    """A canonical 44-byte WAV header; data_bytes is what the data chunk declares."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * align, align, bits)
    size = 36 + data_bytes if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt \
        + b"data" + struct.pack("<I", data_bytes)


# ------------------------------------------------------------------------------------- media of our own


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory, media: dict[str, Path]) -> dict[str, Path]:
    """Real but unsuitable media: audio-only mp4, a one-frame mp4, a still GIF."""
    root = tmp_path_factory.mktemp("odd")
    files = {"audio_only": root / "audio_only.mp4", "one_frame": root / "one_frame.mp4", "gif": root / "still.gif"}
    ffmpeg("-i", str(media["speech"]), "-c:a", "aac", str(files["audio_only"]))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(files["one_frame"]))
    Image.open(media["portrait"]).convert("P").save(files["gif"])
    return files


# --------------------------------------------------------------------------------- truncated media


def _png_essential(data: bytes) -> int:
    """Up to the end of the last IDAT's deflate data (its 4-byte Adler-32 is not checked by decoders)."""
    offset, end = 8, 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            end = offset + 8 + length - 4
        offset += 12 + length
    return end


def _wav_essential(data: bytes) -> int:
    """Cuts up to the start of the samples (a complete header, no sample) must be refused."""
    offset = 12
    while offset + 8 <= len(data):
        kind, length = struct.unpack("<4sI", data[offset:offset + 8])
        if kind == b"data":
            return offset + 8 + 1
        offset += 8 + length + (length & 1)
    raise AssertionError("no data chunk")


def _mp3_essential(data: bytes) -> int:
    """The ID3 tag, the Xing/Info frame and the first audio frame (frames found by their 2-byte sync)."""
    start = 10 + sum(b << (7 * (3 - i)) for i, b in enumerate(data[6:10])) if data[:3] == b"ID3" else 0
    sync = data[start:start + 2]
    second = data.index(sync, start + 4)
    return data.index(sync, second + 4)


def _mp4_essential(data: bytes) -> int:
    """Up to the end of the last track box in moov (after it only user metadata follows)."""
    def boxes(lo: int, hi: int) -> Iterator[tuple[bytes, int, int]]:
        while lo + 8 <= hi:
            size, kind = struct.unpack(">I4s", data[lo:lo + 8])
            yield kind, lo, lo + size
            lo += size

    moov = next((lo, hi) for kind, lo, hi in boxes(0, len(data)) if kind == b"moov")
    return max(hi for kind, lo, hi in boxes(moov[0] + 8, moov[1]) if kind == b"trak")


TRUNCATABLE = {  # media key -> (target, suffix, cuts shorter than this must be refused)
    "portrait": ("portrait image", ".jpg", len),
    "png": ("character image", ".png", _png_essential),
    "speech": ("speech audio", ".wav", _wav_essential),
    "speech_mp3": ("speech audio", ".mp3", _mp3_essential),
    "driving": ("driving video", ".mp4", _mp4_essential),
}


def test_an_mp4_cut_inside_its_index_is_refused(media: dict[str, Path], tmp_path: Path) -> None:
    """Found by the fuzzer below: an MP4 (index at the end) cut inside its sound track's tables still opens and
    plays its picture, silently without the sound; it is refused as damaged instead of accepted as silent."""
    data = media["driving"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:int(0.984375 * _mp4_essential(data))])
    field = next(f for f in imitator.MODEL.fields if f.name == "driving_video")
    with pytest.raises(spark_nb.ValidationError, match="damaged"):
        inputs.check(str(cut), field)


def test_a_png_cut_inside_its_last_chunk_is_refused(media: dict[str, Path], tmp_path: Path) -> None:
    """Found by the fuzzer below: a PNG missing the last bytes of its image data decodes in PIL; it has no end
    marker (IEND), so it is refused as cut short."""
    data = media["png"].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[:_png_essential(data) - 1])
    field = next(f for f in imitator.MODEL.fields if f.name == "image")
    with pytest.raises(spark_nb.ValidationError, match="cut short"):
        inputs.check(str(cut), field)
    inputs.check(str(media["png"]), field)  # the whole file passes


@FUZZ
@given(key=st.sampled_from(sorted(TRUNCATABLE)), where=st.floats(0, 1, exclude_max=True), anywhere=st.booleans(),
       form=FORMS)
def test_truncated_media_is_refused(key: str, where: float, anywhere: bool, form: str, media: dict[str, Path],
                                    server: LocalServer, tmp_path: Path) -> None:
    """A real file cut short inside the part its decoder needs is refused; a cut anywhere never raises anything else.

    WAV and MP3 are streams and an MP4's trailing user metadata is optional, so a cut past the essential
    part can leave a shorter but valid file: there only the unit (normalise + validate) is run, which
    must answer with a Media or a ValidationError, never another exception and never a hang.
    """
    target, suffix, essential = TRUNCATABLE[key]
    data = media[key].read_bytes()
    limit = len(data) if anywhere else min(len(data), essential(data))
    cut = int(where * limit)
    note(f"{key}: {cut} of {len(data)} bytes (essential part {essential(data)})")
    if cut < essential(data):
        refused(server, media, target, deliver(form, data[:cut], f"cut{suffix}", tmp_path))
    else:
        path = tmp_path / f"cut{suffix}"
        path.write_bytes(data[:cut])
        event(f"cut past the essential part: {'accepted' if judged(path, target) else 'refused'}")
    untouched(server)


# ------------------------------------------------------------------------------ garbage after magic


def _png_ihdr(width: int = 64, height: int = 48) -> bytes:
    return PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))


MAGIC = {  # name -> (leading bytes, targets)
    "jpg": (b"\xff\xd8\xff\xe0", IMAGES),
    "jpg+sof0": (jpeg_claiming(64, 48)[:-2 - 32 - 14], IMAGES),  # a real header up to the scan, then garbage
    "png": (PNG_SIGNATURE, IMAGES),
    "png+ihdr": (_png_ihdr(), IMAGES),
    "gif": (b"GIF89a", IMAGES),
    "wav": (b"RIFF\x24\x00\x01\x00WAVE", ["speech audio"]),
    "wav+fmt": (wav_header(channels=1, rate=16000, bits=16, data_bytes=0)[:-8], ["speech audio"]),
    "mp4": (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2", ["driving video", "speech audio"]),
}


@FUZZ
@given(name=st.sampled_from(sorted(MAGIC)), garbage=st.binary(max_size=3000), pick=st.integers(0, 1), form=FORMS)
@example(name="png", garbage=b"", pick=0, form="path")
@example(name="mp4", garbage=b"\x00" * 64, pick=0, form="upload")
def test_garbage_after_magic_bytes_is_refused(name: str, garbage: bytes, pick: int, form: str,
                                              media: dict[str, Path], server: LocalServer, tmp_path: Path) -> None:
    """Valid magic bytes (JPEG, PNG, GIF, RIFF/WAVE, ftyp) followed by nonsense do not fool the checks."""
    magic, targets = MAGIC[name]
    target = targets[pick % len(targets)]
    suffix = {"wav": ".wav", "wav+fmt": ".wav", "mp4": ".mp4"}.get(name, "." + name.split("+")[0])
    refused(server, media, target, deliver(form, magic + garbage, f"garbage{suffix}", tmp_path))


# ---------------------------------------------------------------------------------- wrong extensions


DISGUISES = [  # (media key, misleading suffix, target): the content is wrong for the input, whatever the name
    ("png", ".wav", "speech audio"),
    ("portrait", ".mp3", "speech audio"),
    ("silent_driving", ".wav", "speech audio"),
    ("speech", ".jpg", "portrait image"),
    ("speech_mp3", ".png", "character image"),
    ("driving", ".jpg", "portrait image"),
    ("speech_mp3", ".mp4", "driving video"),
    ("speech", ".mp4", "driving video"),
    ("png", ".mp4", "driving video"),
    ("portrait", ".mp4", "driving video"),
]


@FEW
@given(case=st.sampled_from(DISGUISES), form=FORMS)
def test_wrong_extensions_are_judged_by_content(case: tuple[str, str, str], form: str, media: dict[str, Path],
                                                server: LocalServer, tmp_path: Path) -> None:
    """A PNG saved as .wav is not audio, a wav saved as .jpg is not an image, a still saved as .mp4 is no video."""
    key, suffix, target = case
    error = refused(server, media, target, deliver(form, media[key].read_bytes(), f"disguised{suffix}", tmp_path))
    assert re.search(r"could not be decoded|no audio stream|no video stream|still picture", str(error)), error


# -------------------------------------------------------------------------- empty and frameless media


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("form", ["str", "path", "bytes", "upload", "memoryview"])
@pytest.mark.slow
def test_zero_length_input_is_refused(target: str, form: str, media: dict[str, Path], server: LocalServer,
                                      tmp_path: Path) -> None:
    """An empty file, empty bytes or an empty upload is refused for every input, before anything is sent."""
    value = memoryview(b"") if form == "memoryview" else deliver(form, b"", "empty.bin", tmp_path)
    error = refused(server, media, target, value)
    assert re.search(r"missing|empty|no content|could not be decoded|no sound", str(error)), error


@FUZZ
@given(channels=st.integers(1, 8), rate=st.integers(1, 384_000), bits=st.sampled_from([8, 16, 24, 32]),
       fmt_tag=st.sampled_from([1, 3]), riff=st.sampled_from(["exact", "zero", "huge"]),
       tail=st.floats(0, 0.004), form=FORMS)
@example(channels=1, rate=16000, bits=16, fmt_tag=1, riff="exact", tail=0.0, form="path")
@pytest.mark.slow
def test_wav_declaring_no_frames_is_refused(channels: int, rate: int, bits: int, fmt_tag: int, riff: str,
                                            tail: float, form: str, media: dict[str, Path], server: LocalServer,
                                            tmp_path: Path) -> None:
    """A WAV header whose data chunk declares 0 bytes (whatever its format, and with at most 4 ms of stray
    bytes after it) holds no sound."""
    byte_rate = rate * channels * bits // 8
    riff_size = {"exact": None, "zero": 0, "huge": 0xFFFFFFFF}[riff]
    header = wav_header(channels=channels, rate=rate, bits=bits, fmt_tag=fmt_tag, data_bytes=0, riff_size=riff_size)
    stray = b"\x01\x02" * (int(byte_rate * tail) // 2)
    error = refused(server, media, "speech audio", deliver(form, header + stray, "silent.wav", tmp_path))
    assert re.search(r"no sound|could not be decoded|no audio stream", str(error)), error


@pytest.mark.parametrize(("key", "target", "match"), [
    ("audio_only", "driving video", "no video stream"),
    ("one_frame", "driving video", "still picture or has no frames"),
    ("gif", "driving video", "still picture"),
    ("portrait", "driving video", "still picture"),
    ("png", "driving video", "still picture"),
    ("silent_driving", "speech audio", "no audio stream"),
    ("one_frame", "portrait image", "could not be decoded as an image"),
])
def test_media_without_the_needed_stream_is_refused(key: str, target: str, match: str, media: dict[str, Path],
                                                    odd: dict[str, Path], server: LocalServer) -> None:
    """Audio-only mp4 or a still as the driving video, a silent video as speech: refused, naming what is missing."""
    error = refused(server, media, target, {**media, **odd}[key])
    assert match in str(error)


# --------------------------------------------------------------------------------------- pixel bombs


BOMBS: dict[str, tuple[Callable[[int, int], bytes], int]] = {  # format -> (maker, largest side it can state)
    "png": (png_claiming, 2**31 - 1),
    "jpeg": (jpeg_claiming, 65_535),
    "gif": (gif_claiming, 65_535),
    "bmp": (bmp_claiming, 2**31 - 1),
    "webp": (webp_claiming, 2**24),
}


@pytest.fixture
def pil_opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files PIL.Image.open is asked to open."""
    opened: list[str] = []
    real_open = Image.open

    def spy(fp: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(getattr(fp, "name", fp)).name)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return opened


@FUZZ
@given(fmt=st.sampled_from(sorted(BOMBS)), big=st.integers(4096, 2**31 - 1), other=st.integers(1, 2**31 - 1),
       swap=st.booleans(), target=st.sampled_from(IMAGES), form=FORMS)
@example(fmt="png", big=50_000, other=50_000, swap=False, target="portrait image", form="path")
@example(fmt="jpeg", big=50_000, other=50_000, swap=False, target="character image", form="path")
@example(fmt="png", big=2**31 - 1, other=2**31 - 1, swap=False, target="portrait image", form="upload")
def test_a_header_claiming_a_huge_picture_is_refused_from_the_header(
        fmt: str, big: int, other: int, swap: bool, target: str, form: str, media: dict[str, Path],
        server: LocalServer, tmp_path: Path, pil_opened: list[str]) -> None:
    """50000x50000 (or any side >= 4096 a header can state): refused in < 2 s, without allocating the picture
    (peak traced memory < 50 MB), by the size check on the header, not by PIL's decompression-bomb guard
    or a decode: PIL is never even asked to open the file."""
    make, largest = BOMBS[fmt]
    big, other = min(big, largest), min(other, largest)
    width, height = (other, big) if swap else (big, other)
    pil_opened.clear()
    tracemalloc.start()
    try:
        started = time.monotonic()
        error = refused(server, media, target, deliver(form, make(width, height), f"bomb.{fmt}", tmp_path), limit=2.0)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MB"
    assert f"is {width}x{height}; the model takes images under 4096x4096" in str(error)
    assert not isinstance(error.__cause__, Image.DecompressionBombError)
    assert pil_opened == [], "the header check refuses it before PIL opens anything"


CHILD_PEAK = """
import resource, sys
from spark_nb._ffmpeg import ProbeError, decode_audio, try_decode
try:
    try_decode(sys.argv[1]) if sys.argv[2] == "probe" else decode_audio(sys.argv[1], 16000, 16.0)
except ProbeError as exc:
    print("refused:", exc)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


@pytest.mark.parametrize("target", ["speech audio", "driving video"])
def test_a_huge_picture_given_as_audio_or_video_is_refused_without_decoding_it(
        target: str, media: dict[str, Path], server: LocalServer, tmp_path: Path) -> None:
    """A 100-byte PNG claiming 16000x16000 as audio or driving video: ffmpeg refuses it quickly, and its probe
    stays small (it used to allocate ~800 MB for the frame before failing)."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(16_000, 16_000))
    started = time.monotonic()
    error = refused(server, media, target, bomb, limit=5.0)
    assert time.monotonic() - started < 5.0
    assert "16000x16000" in str(error)
    for reader in ("probe", "render"):  # the client's check, and the local server's decode of the speech
        out = subprocess.run([sys.executable, "-c", CHILD_PEAK, str(bomb), reader], capture_output=True, text=True,
                             timeout=TOOL_TIMEOUT_S, check=True).stdout.split()
        assert out[0] == "refused:", (reader, out)
        assert int(out[-1]) < 200 * 1024, f"{reader}: ffmpeg peaked at {int(out[-1]) // 1024} MB"  # ru_maxrss: KB


# ------------------------------------------------------------------------------------- hostile strings


OTHER_SCHEMES = st.one_of(
    st.sampled_from(["file", "ftp", "data", "javascript", "gopher", "FILE", "JavaScript", "smb", "sftp", "s3",
                     "ws", "wss", "blob", "about", "mailto", "dict", "ldap", "jar", "pipe", "concat", "subfile",
                     "tcp", "udp", "rtmp", "htp", "httpx", "https+unix", "hxxp"]),
    st.from_regex(r"[a-zA-Z][a-zA-Z0-9+.-]{1,40}", fullmatch=True).filter(lambda s: s.lower() not in ("http", "https")),
)
HTTP = st.sampled_from(["http", "https", "HTTP", "Https"])
HOSTS = st.sampled_from(["example.com", "127.0.0.1", "[::1]", "cdn.example.org:8443", "a.b.c.d.example"])
BAD_CHARS = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"])  # control, invisible, spaces
NOT_A_URL_PREFIX = re.compile(r"\s*https?:", re.IGNORECASE)


def _inject(url: str, where: float, char: str) -> str:
    cut = len("http://") + int(where * (len(url) - len("http://") - 1))
    return url[:cut] + char + url[cut:]


HOSTILE_STRINGS = st.one_of(
    st.builds(lambda s, rest: f"{s}:{rest}", OTHER_SCHEMES, st.text(max_size=200)),
    st.builds(lambda s, rest: f"{s}://{rest}", HTTP, st.sampled_from(["", "/", "/face.jpg", "?q=1", "#x", "user@",
                                                                      "user:pw@/x", ":80/x"])),
    st.builds(lambda s, rest: f"{s}://[{rest}", HTTP, st.text(max_size=40)),  # broken IPv6 literal
    st.builds(lambda s, port: f"{s}://example.com:{port}/face.jpg", HTTP,
              st.one_of(st.integers(65_536, 10**12).map(str), st.text(string.ascii_letters + "-_", min_size=1))),
    st.builds(lambda s, h, where, c: _inject(f"{s}://{h}/faces/face.jpg?size=large", where, c),
              HTTP, HOSTS, st.floats(0, 1), BAD_CHARS),
    st.builds(lambda s, n: (f"{s}://example.com/" + "a/é" * n)[:n], HTTP,
              st.integers(inputs.MAX_URL_CHARS + 1, 20_000)),
    st.builds(lambda s: f"{s}://a\u2100b/face.jpg", HTTP),  # a host that changes under NFKC normalisation
    st.text(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2003\u2028\u2029\u202f\u3000", max_size=50),
    st.text(max_size=300).filter(lambda t: not NOT_A_URL_PREFIX.match(t)),
    st.text(st.characters(codec=None, categories=["Cs", "Co", "L", "N", "Cc"]), min_size=1, max_size=50).filter(
        lambda t: not NOT_A_URL_PREFIX.match(t)),
    st.builds(lambda a, b: f"{a}\x00{b}", st.text(max_size=30), st.text(max_size=30)),
    st.builds(lambda s, n: (s * n)[:n], st.sampled_from(["x", "a/", "é/", "人", "../", " /"]),
              st.integers(4_000, 12_000)),
    st.builds(lambda n: "C:\\" + "d\\" * n, st.integers(1, 5000)),
)


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), value=HOSTILE_STRINGS)
@example(target="portrait image", value="file:///etc/passwd")
@example(target="speech audio", value="ftp://example.com/speech.wav")
@example(target="driving video", value="data:video/mp4;base64,AAAA")
@example(target="character image", value="javascript:alert(document.cookie)")
@example(target="portrait image", value="gopher://127.0.0.1:70/_GET")
@example(target="speech audio", value=" \t\n ")
@example(target="driving video", value="")
@example(target="portrait image", value="x" * 10_000)
@example(target="speech audio", value="https://example.com/" + "a" * 10_000)
@example(target="character image", value="visage-été-人.jpg")
@example(target="driving video", value="clip\x00.mp4")
@example(target="portrait image", value="http://[::1/face.jpg")
@example(target="speech audio", value="http://example.com:99999/speech.wav")
@example(target="character image", value="https://example.com/face.jpg\x00.png")
def test_hostile_strings_are_refused(target: str, value: str, media: dict[str, Path], server: LocalServer) -> None:
    """Other URL schemes, broken or over-long http(s) URLs, control characters, blank, absurd or
    non-existent paths: refused naming the input; none of them is ever sent."""
    note(f"{value[:200]!r} ({len(value)} chars)")
    refused(server, media, target, value)


# ------------------------------------------------------------------------------------- hostile objects


class BadPath:
    """An os.PathLike whose __fspath__ gives something odd."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __fspath__(self) -> Any:
        return self.value

    def __repr__(self) -> str:
        return f"BadPath({self.value!r})"


HOSTILE_OBJECTS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.complex_numbers(), st.decimals(),
    st.lists(st.integers() | st.text(max_size=10), max_size=4), st.tuples(st.integers(), st.text(max_size=5)),
    st.sets(st.integers(), max_size=3), st.frozensets(st.text(max_size=3), max_size=3),
    st.sampled_from([object(), Ellipsis, NotImplemented, int, len, range(3), iter([1]), Exception("x"),
                     b"   ", bytearray(b"\t\n"), memoryview(b""), slice(1), type]),
    st.builds(BadPath, st.one_of(st.integers(), st.none(), st.floats(), st.binary(max_size=30),
                                 st.text(max_size=30).filter(lambda t: not NOT_A_URL_PREFIX.match(t)))),
)


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), value=HOSTILE_OBJECTS)
@example(target="portrait image", value=None)
@example(target="speech audio", value=42)
@example(target="driving video", value=["face.jpg"])
@example(target="character image", value=BadPath(b"face\xff.jpg"))
@example(target="portrait image", value=BadPath(7))
def test_hostile_objects_are_refused(target: str, value: Any, media: dict[str, Path], server: LocalServer) -> None:
    """None, numbers, containers, callables and path objects that name no usable file are refused."""
    refused(server, media, target, value)


# ----------------------------------------------------------------------------- malformed widget uploads


JUNK = st.one_of(st.none(), st.text(max_size=20), st.integers(), st.floats(), st.booleans(),
                 st.lists(st.integers(), max_size=3), st.just(b""), st.just(memoryview(b"")), st.just(bytearray()),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
NESTED = st.recursive(JUNK, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                      | st.dictionaries(st.sampled_from(["name", "content", "value", "data"]), inner, max_size=3),
                      max_leaves=8)
UPLOAD_ITEMS = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=40), JUNK), "type": st.one_of(st.text(max_size=20), JUNK),
    "size": st.one_of(st.integers(), JUNK), "content": NESTED, "last_modified": JUNK,
})


def _real_item(media: dict[str, Path], key: str) -> dict[str, Any]:
    data = media[key].read_bytes()
    return {"name": media[key].name, "type": MIME.get(media[key].suffix, ""), "size": len(data),
            "content": memoryview(data)}


@FUZZ
@given(target=st.sampled_from(sorted(TARGETS)), shape=st.sampled_from(["item", "nested", "pair", "empty", "list"]),
       item=UPLOAD_ITEMS, junk=NESTED)
@example(target="portrait image", shape="item", item={"name": "face.jpg", "type": "image/jpeg", "size": 3}, junk=None)
@example(target="speech audio", shape="item", item={"name": "a.wav", "content": "UklGRg=="}, junk=None)
@example(target="driving video", shape="item", item={"name": "a.mp4", "content": 1234}, junk=None)
@example(target="character image", shape="item", item={"content": None}, junk=None)
@example(target="portrait image", shape="pair", item={}, junk=None)
@example(target="driving video", shape="empty", item={}, junk=None)
def test_malformed_widget_uploads_are_refused(target: str, shape: str, item: dict[str, Any], junk: Any,
                                              media: dict[str, Path], server: LocalServer) -> None:
    """FileUpload-like values gone wrong: missing keys, content as str/int/None/nested junk, the whole
    FileUpload.value tuple (two real items, or none) instead of one item."""
    key = {"image": "portrait", "audio": "speech", "driving_video": "driving"}[TARGETS[target][1]]
    value: Any = {
        "item": item,
        "nested": {"name": "x.jpg", "content": junk, "value": (item,)},
        "pair": (_real_item(media, key), _real_item(media, key)),
        "empty": (),
        "list": [item],
    }[shape]
    error = refused(server, media, target, value)
    if shape in ("pair", "empty", "list"):
        assert "FileUpload.value" in (error.hint or "")


# ---------------------------------------------------------------------- files that point at the network


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP port on loopback that records whatever connects to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(200) or b"<connected>")
                except OSError:
                    seen.append(b"<connected>")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    stop.set()
    thread.join(2)
    sock.close()


@pytest.mark.parametrize("target", ["speech audio", "driving video"])
@pytest.mark.parametrize("kind", ["m3u8", "ffconcat", "sdp", "m3u8-as-wav"])
@pytest.mark.slow
def test_playlists_pointing_at_the_network_are_refused_offline(
        kind: str, target: str, media: dict[str, Path], server: LocalServer, tmp_path: Path,
        listener: tuple[int, list[bytes]]) -> None:
    """An HLS playlist, ffconcat list or SDP file naming network URLs is not media: ffmpeg fetches nothing."""
    port, seen = listener
    url = f"http://127.0.0.1:{port}/segment.ts"
    text, suffix = {
        "m3u8": (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{url}\n#EXT-X-ENDLIST\n", ".m3u8"),
        "m3u8-as-wav": (f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{url}\n#EXT-X-ENDLIST\n", ".wav"),
        "ffconcat": (f"ffconcat version 1.0\nfile '{url}'\nfile '{server.url}/files/uploads/a.wav'\n", ".txt"),
        "sdp": (f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio {port} RTP/AVP 0\n", ".sdp"),
    }[kind]
    playlist = tmp_path / f"list{suffix}"
    playlist.write_text(text)
    refused(server, media, target, playlist)
    time.sleep(0.3)
    assert seen == []


@pytest.mark.parametrize("name", ["pipe:0", "-", "http:", "concat:speech.wav"])
def test_files_named_like_ffmpeg_protocols_are_read_as_files(name: str, media: dict[str, Path],
                                                             server: LocalServer, tmp_path: Path) -> None:
    """A local file called "pipe:0" or "-" is that file, not ffmpeg's stdin (which could block forever)."""
    fake = Path(name)  # relative to the current directory (the test's own): ffmpeg sees exactly this name
    assert Path.cwd() == tmp_path
    fake.write_bytes(media["png"].read_bytes())  # a picture: refused as audio, for its content
    error = refused(server, media, "speech audio", fake)
    assert "no audio stream" in str(error), error
    fake.write_bytes(media["speech"].read_bytes())  # real speech under the same name: accepted by the checks
    assert judged(fake, "speech audio") is not None
