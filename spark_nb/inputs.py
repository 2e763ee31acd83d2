"""Media inputs: turn a URL, path, bytes or widget upload into a Media, and check it against the seed rules."""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ValidationError
from .ffmpeg import MediaInfo, ProbeError, probe
from .models import MediaField

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 4096  # the seed says "less than 4096x4096"
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}
RECOMMENDED_AUDIO_SECONDS = 15.0
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")


@dataclasses.dataclass(frozen=True)
class Media:
    """One normalised media input: a URL passed through as is, or a local file to check and upload."""

    field: MediaField
    url: str | None = None
    path: Path | None = None
    info: MediaInfo | None = None

    @property
    def is_local(self) -> bool:
        """True when the file is on this machine and must be uploaded."""
        return self.path is not None


def normalise(value: Any, field: MediaField) -> Media:
    """A Media for value (http(s) URL, path, bytes, or an ipywidgets 8 FileUpload item), or ValidationError."""
    what = field.label
    if value is None or (isinstance(value, (str, bytes, bytearray)) and not value.strip()):
        raise ValidationError(
            f"{what} is missing", code=field.missing_code, field=field.name,
            hint=f"pass {field.name}= as a file path, an http(s) URL, bytes or a FileUpload item",
        )
    if isinstance(value, str):
        return _from_string(value.strip(), field)
    if isinstance(value, os.PathLike):
        return Media(field, path=_existing_file(Path(value), field))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Media(field, path=_spill(bytes(value), "", field))
    if isinstance(value, Mapping):
        return Media(field, path=_from_upload(value, field))
    raise ValidationError(
        f"{what}: cannot use a {type(value).__name__}",
        field=field.name,
        hint="pass a file path, an http(s) URL, bytes or an item of FileUpload.value",
    )


def _from_string(text: str, field: MediaField) -> Media:
    scheme = _SCHEME.match(text)
    if scheme and len(scheme.group(1)) > 1:  # one letter is a Windows drive, e.g. C:\face.jpg
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https"):
            raise ValidationError(
                f"{field.label}: {parts.scheme}: URLs are not supported",
                field=field.name,
                hint="use an http(s) URL the service can fetch, or a local file path",
            )
        if not parts.hostname or any(c.isspace() for c in text):
            raise ValidationError(
                f"{field.label}: {text[:80]!r} is not a valid URL", field=field.name,
                hint="check the URL; it needs a host and no spaces",
            )
        return Media(field, url=text)
    return Media(field, path=_existing_file(Path(text), field))


def _existing_file(path: Path, field: MediaField) -> Path:
    shown = str(path)[:120]
    try:
        ok = path.is_file()
    except (OSError, ValueError):  # name too long, NUL byte, ...
        ok = False
    if not ok:
        raise ValidationError(
            f"{field.label}: no such file {shown!r}", field=field.name,
            hint="check the path (relative paths start from the current directory) or pass an http(s) URL",
        )
    return path


def _from_upload(item: Mapping[str, Any], field: MediaField) -> Path:
    content = item.get("content")
    if not isinstance(content, (bytes, bytearray, memoryview)) or len(content) == 0:
        raise ValidationError(
            f"{field.label}: the upload has no content", field=field.name,
            hint="pick the file again; an ipywidgets 8 FileUpload item has 'name' and 'content'",
        )
    name = item.get("name")
    suffix = Path(name).suffix if isinstance(name, str) else ""
    return _spill(bytes(content), suffix, field)


_scratch: Path | None = None
_scratch_lock = threading.Lock()


def scratch_dir() -> Path:
    """A private temporary folder for this process (spilled bytes, trimmed audio), removed at exit."""
    global _scratch
    with _scratch_lock:
        if _scratch is None:
            _scratch = Path(tempfile.mkdtemp(prefix="spark_nb_"))
            atexit.register(shutil.rmtree, _scratch, True)
        return _scratch


def _spill(data: bytes, suffix: str, field: MediaField) -> Path:
    """Write in-memory media to a private temporary file (named by content, so repeats are free)."""
    if not data:
        raise ValidationError(f"{field.label}: the data is empty", field=field.name, hint="pass the file's bytes")
    suffix = suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix or "") else ""
    path = scratch_dir() / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
    if not path.exists():
        tmp = path.with_name(path.name + f".{threading.get_ident()}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def validate(media: Media) -> Media:
    """Check a local file against its field's rules; URLs pass through. Returns media with its MediaInfo."""
    if not media.is_local:
        return media
    check = {"image": _check_image, "audio": _check_audio, "video": _check_video}[media.field.kind]
    return dataclasses.replace(media, info=check(media.path, media.field))  # type: ignore[arg-type]


def _check_image(path: Path, field: MediaField) -> MediaInfo:
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size >= MAX_IMAGE_BYTES:
        raise ValidationError(
            f"{field.label} is {size / 1e6:.1f} MB; the model takes images under 5 MB", field=field.name,
            hint="shrink it, e.g. spark_nb.media.shrink_image(path) or save it as a JPEG at quality 90",
        )
    try:
        with Image.open(path) as img:  # reads the header only
            width, height, fmt = img.width, img.height, img.format
            if fmt not in IMAGE_FORMATS:
                raise ValidationError(
                    f"{field.label} is a {fmt} image; use JPG (recommended), PNG or another common format",
                    field=field.name, hint="convert it to JPEG",
                )
            if width >= MAX_IMAGE_SIDE or height >= MAX_IMAGE_SIDE:
                raise ValidationError(
                    f"{field.label} is {width}x{height}; the model takes images under 4096x4096",
                    field=field.name, hint="resize it so its longest side is at most 4095 px (2048 is plenty)",
                )
            img.draft("RGB", (512, 512))  # JPEG: decode at reduced scale, enough to prove it decodes
            img.load()
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:  # raised by open() itself, from the header's claimed size
        raise ValidationError(
            f"{field.label} claims a size far above the model's limit: it takes images under 4096x4096 ({exc})"[:300],
            field=field.name, hint="resize it so its longest side is at most 4095 px (2048 is plenty)",
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValidationError(
            f"{field.label} could not be decoded as an image ({path.name}: {exc})"[:300], field=field.name,
            hint="use a JPG or PNG file; check that the file is complete and really an image",
        ) from exc
    return MediaInfo(container=fmt.lower(), duration=None, width=width, height=height, decoded_frames=1)


def _probe(path: Path, field: MediaField, kind: str) -> MediaInfo:
    try:
        return probe(path)
    except ProbeError as exc:
        raise ValidationError(
            f"{field.label} could not be decoded as {kind} ({path.name}: {exc})", field=field.name,
            hint=f"check that the file is complete and really {kind} (e.g. wav, mp3, m4a, mp4)",
        ) from exc


def _check_audio(path: Path, field: MediaField) -> MediaInfo:
    info = _probe(path, field, "audio")
    if not info.has_audio:
        raise ValidationError(
            f"{field.label} has no audio stream ({path.name})", field=field.name,
            hint="pass a speech clip (wav, mp3, m4a) or a video with sound",
        )
    if not info.duration or info.decoded_seconds <= 0:
        raise ValidationError(
            f"{field.label} contains no sound ({path.name} is empty)", field=field.name,
            hint="pass a speech clip with at least a fraction of a second of sound",
        )
    return info


def _check_video(path: Path, field: MediaField) -> MediaInfo:
    info = _probe(path, field, "a video")
    if not info.has_video:
        raise ValidationError(
            f"{field.label} has no video stream ({path.name})", field=field.name,
            hint="pass a video file (e.g. mp4) showing a person moving",
        )
    if info.is_still_image or info.decoded_frames < 2:
        raise ValidationError(
            f"{field.label} is a still picture or has no frames ({path.name})", field=field.name,
            hint="pass a video file (e.g. mp4) with motion",
        )
    return info
