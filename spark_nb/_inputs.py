"""Media inputs: every rule an input must meet, in one place.

normalise() turns a URL, path, bytes or widget upload into a Media; validate() checks a local file against
its field's rules (raising ValidationError with a machine-readable `reason`) and attaches Advice: what is
usable but worth saying (long audio, no face), with the fix on offer. generate() turns advice into warnings
and fixes, forms into notes and one-click buttons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal, Mapping

from ._config import InputLimits
from ._ffmpeg import (DecodeReport, MediaFacts, ProbeError, decode_tail, loudest_db, per_file_version, picture_changes,
                      try_decode)
from ._files import write_atomically
from ._imageheader import claimed_size
from ._scratch import scratch_dir
from ._urls import MAX_URL_CHARS, is_http_url, url_scheme
from .errors import ValidationError
from .models import MediaField

logger = logging.getLogger("spark_nb.inputs")

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 4096  # the seed says "less than 4096x4096"
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
RECOMMENDED_AUDIO_SECONDS = 15.0
SILENCE_DB = -70.0  # a peak below this is no speech (digital silence measures -91 dB or -inf)
STILL_CHANGE = 10  # no pixel of a small grey copy changing by more than this (of 255) is no motion
Fix = Literal["trim_audio", "shrink_image"]
# the one-click fix for each problem that has one: a ValidationError's reason or an Advice's
FIXES: dict[str, Fix] = {"image_too_large": "shrink_image", "audio_too_long": "trim_audio"}
FIX_LABELS: dict[Fix, str] = {"trim_audio": f"Trim to {RECOMMENDED_AUDIO_SECONDS:g} s", "shrink_image": "Shrink"}


@dataclasses.dataclass(frozen=True)
class Advice:
    """Something worth saying about an input that is usable as it is, and the fix on offer (if any)."""

    reason: Literal["audio_too_long", "no_face"]
    field: str
    message: str

    @property
    def fix(self) -> Fix | None:
        """The fix for this advice, e.g. "trim_audio", or None."""
        return FIXES.get(self.reason)


@dataclasses.dataclass(frozen=True)
class Media:
    """One normalised media input: a URL passed through as is, or a local file to check and upload."""

    field: MediaField
    url: str | None = None
    path: Path | None = None
    facts: MediaFacts | None = None
    advice: tuple[Advice, ...] = ()

    @property
    def is_local(self) -> bool:
        """True when the file is on this machine and must be uploaded."""
        return self.path is not None


def fix_for(problem: ValidationError | Advice) -> Fix | None:
    """The one-click fix for a refused input or a piece of advice, or None."""
    return FIXES.get(problem.reason)


def apply_fix(fix: Fix, path: Path) -> Path:
    """Run a fix on the file at path and return the fixed copy (trimmed audio, shrunk image)."""
    from . import media

    if fix == "trim_audio":
        return media.trim_audio(path, RECOMMENDED_AUDIO_SECONDS)
    return media.shrink_image(path)


def normalise(value: Any, field: MediaField) -> Media:
    """A Media for value (http(s) URL, path, bytes, or an ipywidgets 8 FileUpload item), or ValidationError."""
    what = field.label
    if value is None or (isinstance(value, (str, bytes, bytearray)) and not value.strip()):
        raise ValidationError(
            f"{what} is missing", reason="missing", code=field.missing_code, field=field.name,
            hint=f"pass {field.name}= as a file path, an http(s) URL, bytes or a FileUpload item",
        )
    if isinstance(value, str):
        return _from_string(value.strip(), field)
    if isinstance(value, os.PathLike):
        try:
            text = os.fsdecode(os.fspath(value))  # e.g. os.scandir(b".") entries name bytes paths
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"{what}: the {type(value).__name__} does not name a usable path ({exc})"[:300],
                reason="no_such_file", field=field.name,
                hint="pass a file path as a str or pathlib.Path, an http(s) URL, bytes or a FileUpload item",
            ) from exc
        return Media(field, path=_existing_file(Path(text), field))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Media(field, path=_spill(bytes(value), "", field))
    if isinstance(value, Mapping):
        return Media(field, path=_from_upload(value, field))
    raise ValidationError(
        f"{what}: cannot use a {type(value).__name__}", reason="unsupported_type", field=field.name,
        hint="pass a file path, an http(s) URL, bytes or an item of FileUpload.value",
    )


def _from_string(text: str, field: MediaField) -> Media:
    scheme = url_scheme(text)
    if scheme is None:
        return Media(field, path=_existing_file(Path(text), field))
    if scheme not in ("http", "https"):
        raise ValidationError(
            f"{field.label}: {scheme[:20]}: URLs are not supported", reason="unsupported_url", field=field.name,
            hint="use an http(s) URL the service can fetch, or a local file path",
        )
    if len(text) > MAX_URL_CHARS:
        raise ValidationError(
            f"{field.label}: the URL is {len(text)} characters long; servers refuse URLs over {MAX_URL_CHARS}",
            reason="invalid_url", field=field.name,
            hint="use a shorter URL (e.g. upload the file and pass its short link)",
        )
    if not is_http_url(text):
        raise ValidationError(
            f"{field.label}: {text[:80]!r} is not a valid URL", reason="invalid_url", field=field.name,
            hint="check the URL; it needs a host (non-ASCII names in their xn-- form), a numeric port if any, "
                 "and no spaces or control characters",
        )
    return Media(field, url=text)


def _existing_file(path: Path, field: MediaField) -> Path:
    shown = str(path)[:120]
    try:
        ok = path.is_file()
    except (OSError, ValueError):  # name too long, NUL byte, ...
        ok = False
    if not ok:
        raise ValidationError(
            f"{field.label}: no such file {shown!r}", reason="no_such_file", field=field.name,
            hint="check the path (relative paths start from the current directory) or pass an http(s) URL",
        )
    return path


def _from_upload(item: Mapping[str, Any], field: MediaField) -> Path:
    content = item.get("content")
    if not isinstance(content, (bytes, bytearray, memoryview)) or len(content) == 0:
        raise ValidationError(
            f"{field.label}: the upload has no content", reason="empty", field=field.name,
            hint="pick the file again; an ipywidgets 8 FileUpload item has 'name' and 'content'",
        )
    name = item.get("name")
    suffix = Path(name).suffix if isinstance(name, str) else ""
    return _spill(bytes(content), suffix, field)


def _spill(data: bytes, suffix: str, field: MediaField) -> Path:
    """Write in-memory media to a private temporary file (named by content, so repeats are free)."""
    if not data:
        raise ValidationError(f"{field.label}: the data is empty", reason="empty", field=field.name,
                              hint="pass the file's bytes")
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix or "") else ""
    path = scratch_dir() / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if not path.exists():
        write_atomically(path, data)
    return path


def validate(media: Media, limits: InputLimits = InputLimits(), *, advise: bool = True, faces: bool = True) -> Media:
    """Check a local file against its field's rules (URLs pass through); returns media with its facts and advice
    (none looked for unless advise: a manifest's check wants only the refusals, and a face search costs more than
    the rest of an image's check; faces=False: all advice but the face search's, which a batch gives later)."""
    if not media.is_local:
        return media
    path, field = media.path, media.field
    assert path is not None
    if field.kind == "image":  # a batch checks each image with its manifest, again when its row is submitted
        remembered = per_file_version(path, ("image", field.name), lambda: _check_image(path, field))
        facts = dataclasses.replace(remembered, path=path)  # type: ignore[type-var]
    else:
        facts = _check_stream(path, field, limits)
    return dataclasses.replace(media, facts=facts, advice=tuple(_advice(path, field, facts, faces)) if advise else ())


def check(value: Any, field: MediaField, limits: InputLimits = InputLimits(), *, advise: bool = True,
          faces: bool = True) -> Media:
    """normalise() then validate(): the checked Media for value, or ValidationError."""
    return validate(normalise(value, field), limits, advise=advise, faces=faces)


def ensure_output_dir(folder: Path) -> None:
    """Create folder if needed and prove a file can be written there; ValidationError before anything is paid."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".spark_nb_write_test_"):
            pass
    except OSError as exc:
        raise ValidationError(
            f"the output folder {str(folder)[:200]!r} cannot hold the video: {exc.strerror or exc}",
            reason="unusable_output_dir", hint="pass output_dir= (or SPARK_NB_OUTPUT_DIR) naming a writable folder",
        ) from exc


def _advice(path: Path, field: MediaField, facts: MediaFacts, faces: bool = True) -> list[Advice]:
    if field.kind == "audio" and (facts.duration or 0) > RECOMMENDED_AUDIO_SECONDS:
        return [Advice("audio_too_long", field.name,
                       f"the {field.label} is {facts.duration:.1f} s, over the model's recommended "
                       f"{RECOMMENDED_AUDIO_SECONDS:g} s limit; longer audio may degrade the result")]
    if field.kind == "image" and faces and not _face_found(path):
        return [Advice("no_face", field.name,
                       f"no face found in the {field.label} ({path.name}): the model wants one person with a "
                       "large, frontal face, so the result may be poor")]
    return []


def _face_found(path: Path) -> bool:
    """Whether the image shows a face; True when detection itself fails (the check is advice, never a refusal)."""
    try:
        from ._faces import face_in_file

        return face_in_file(path)
    except Exception as exc:  # noqa: BLE001 - OpenCV or PIL trouble must not block a usable input
        logger.debug("face check of %s failed: %r", path.name, exc)
        return True


def _check_image(path: Path, field: MediaField) -> MediaFacts:
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size >= MAX_IMAGE_BYTES:
        raise ValidationError(
            f"{field.label} is {size / 1e6:.1f} MB; the model takes images under 5 MB", reason="image_too_large",
            field=field.name,
            hint="shrink it, e.g. spark_nb.media.shrink_image(path) or save it as a JPEG at quality 90",
        )
    claimed = claimed_size(path)  # before PIL: a header claiming 50000x50000 is refused without touching it
    if claimed and max(claimed) >= MAX_IMAGE_SIDE:
        raise _too_large(*claimed, field)
    try:
        with Image.open(path) as img:  # reads the header only
            width, height, fmt = img.width, img.height, img.format
            if fmt not in IMAGE_FORMATS:
                raise ValidationError(
                    f"{field.label} is a {fmt} image; use JPG (recommended), PNG or another common format",
                    reason="unsupported_format", field=field.name, hint="convert it to JPEG",
                )
            if width >= MAX_IMAGE_SIDE or height >= MAX_IMAGE_SIDE:
                raise _too_large(width, height, field)
            img.draft("RGB", (512, 512))  # JPEG: decode at reduced scale, enough to prove it decodes
            img.load()
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:  # raised by open() itself, from the header's claimed size
        raise ValidationError(
            f"{field.label} claims a size far above the model's limit: it takes images under 4096x4096 ({exc})"[:300],
            reason="image_too_large", field=field.name, hint="resize it so its longest side is at most 4095 px (2048 is plenty)",
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValidationError(
            f"{field.label} could not be decoded as an image ({path.name}: {exc})"[:300], reason="not_decodable",
            field=field.name,
            hint="use a JPG or PNG file; check that the file is complete and really an image",
        ) from exc
    if fmt == "PNG" and not _png_ends(path):  # PIL decodes a PNG cut inside its last chunk without a word
        raise ValidationError(
            f"{field.label} is cut short ({path.name} has no PNG end marker: it looks truncated)",
            reason="not_decodable", field=field.name, hint="the file is incomplete: download or export it again",
        )
    return MediaFacts(path=path, container=fmt.lower(), duration=None, width=width, height=height, fps=None,
                      has_audio=False, is_still_image=True, bytes=size)


def _png_ends(path: Path) -> bool:
    """True when the PNG ends with its IEND chunk, as every complete PNG does."""
    with open(path, "rb") as fh:
        fh.seek(max(0, path.stat().st_size - 12))
        return fh.read(12) == b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _too_large(width: int, height: int, field: MediaField) -> ValidationError:
    return ValidationError(
        f"{field.label} is {width}x{height}; the model takes images under 4096x4096", reason="image_too_large",
        field=field.name, hint="resize it so its longest side is at most 4095 px (2048 is plenty)",
    )


def _decode(path: Path, field: MediaField, kind: str, seconds: float = 1.0) -> DecodeReport:
    try:
        return try_decode(path, seconds)
    except ProbeError as exc:
        raise ValidationError(
            f"{field.label} could not be decoded as {kind} ({path.name}: {exc})", reason="not_decodable",
            field=field.name, hint=f"check that the file is complete and really {kind} (e.g. wav, mp3, m4a, mp4)",
        ) from exc


def _check_stream(path: Path, field: MediaField, limits: InputLimits) -> MediaFacts:
    """Audio or video: within the size and length limits, decodable from start to end, with sound or motion."""
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise ValidationError(
            f"{field.label} is {size / 1024**2:.0f} MB; inputs are limited to {limits.max_bytes / 1024**2:.0f} MB",
            reason="media_too_large", field=field.name,
            hint="cut or re-encode it smaller (e.g. spark_nb.media.trim_audio for speech), or raise the limit with "
                 "configure(max_input_mb=...) if your service takes larger files",
        )
    report = _decode(path, field, "audio" if field.kind == "audio" else "a video")
    facts = report.facts
    (_check_audio if field.kind == "audio" else _check_video)(path, field, report)
    if facts.duration and facts.duration > limits.max_seconds:
        raise ValidationError(
            f"{field.label} lasts {facts.duration:.0f} s; inputs are limited to {limits.max_seconds:.0f} s",
            reason="media_too_long", field=field.name,
            hint="cut it shorter, or raise the limit with configure(max_input_seconds=...)",
        )
    truncated = ValidationError(
        f"{field.label} ends before its declared {facts.duration or 0:.1f} s ({path.name} looks truncated)",
        reason="not_decodable", field=field.name, hint="the file is incomplete: download or export it again",
    )
    if facts.damaged:  # e.g. an MP4 cut inside its index: a track (often the sound) silently gone
        raise ValidationError(
            f"{field.label} is damaged ({path.name}: its index is incomplete, so a track cannot be read)",
            reason="not_decodable", field=field.name, hint="the file is incomplete: download or export it again",
        )
    if facts.duration and facts.duration > 1.0:  # a file cut short: its header promises more than it holds
        tail = _unless_undecodable(decode_tail, path, facts.duration, min(3.0, facts.duration / 2))
        if tail is None or (tail.frames <= 0 and tail.seconds <= 0):
            raise truncated
    if field.kind == "audio":
        peak = _unless_undecodable(loudest_db, path)
        if peak is None:
            raise truncated
        if peak < SILENCE_DB:
            raise ValidationError(
                f"{field.label} is silent ({path.name}: its loudest moment is {peak:.0f} dB)", reason="no_audio",
                field=field.name, hint="pass a recording of speech; check that the recording was not muted",
            )
    else:
        changes = _unless_undecodable(picture_changes, path)
        if changes is not None and changes <= STILL_CHANGE:
            raise ValidationError(
                f"{field.label} shows no motion ({path.name}: its frames are all the same picture)",
                reason="still_video", field=field.name, hint="pass a video of a person moving",
            )
    return facts


def _unless_undecodable(measure: Any, *args: Any) -> Any:
    """measure(*args), or None when the part of the file it reads does not decode."""
    try:
        return measure(*args)
    except ProbeError:
        return None


def _check_audio(path: Path, field: MediaField, report: DecodeReport) -> None:
    if not report.facts.has_audio:
        raise ValidationError(
            f"{field.label} has no audio stream ({path.name})", reason="no_audio", field=field.name,
            hint="pass a speech clip (wav, mp3, m4a) or a video with sound",
        )
    if not report.facts.duration or report.seconds <= 0:
        raise ValidationError(
            f"{field.label} contains no sound ({path.name} is empty)", reason="no_audio", field=field.name,
            hint="pass a speech clip with at least a fraction of a second of sound",
        )


def _check_video(path: Path, field: MediaField, report: DecodeReport) -> None:
    if not report.facts.has_video:
        raise ValidationError(
            f"{field.label} has no video stream ({path.name})", reason="no_video", field=field.name,
            hint="pass a video file (e.g. mp4) showing a person moving",
        )
    if report.facts.is_still_image or report.frames < 2:
        raise ValidationError(
            f"{field.label} is a still picture or has no frames ({path.name})", reason="still_video",
            field=field.name, hint="pass a video file (e.g. mp4) with motion",
        )
