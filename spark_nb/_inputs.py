"""Media inputs: every rule an input must meet, in one place (with its parts for images, audio and video, URLs).

normalise() turns a URL, path, bytes or widget upload into a Media; validate() checks a local file against
its field's rules (_inputs_images, _inputs_streams), or a URL by asking for it (_inputs_url), raising
ValidationError with a machine-readable `reason`, and attaches Advice: what is usable but worth saying (long
audio, no face), with the fix on offer. generate() turns advice into warnings (or, strict, refusals: refusal())
and fixes, forms into notes and one-click buttons.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ._config import DEFAULT_LIMITS, InputLimits
from ._ffmpeg import MediaFacts, per_file_version
from ._files import write_atomically
from ._inputs_images import check_image
from ._inputs_streams import check_stream
from ._inputs_url import check_url, fetch_image
from ._limits import AUDIO_SECONDS
from ._scratch import scratch_dir
from ._urls import MAX_URL_CHARS, is_http_url, url_scheme
from .errors import ValidationError
from .models import MediaField

logger = logging.getLogger("spark_nb.inputs")

RECOMMENDED_AUDIO_SECONDS = AUDIO_SECONDS  # the name the pipeline and the forms know
Fix = Literal["trim_audio", "shrink_image"]
# the one-click fix for each problem that has one: a ValidationError's reason or an Advice's
FIXES: dict[str, Fix] = {"image_too_large": "shrink_image", "audio_too_long": "trim_audio"}
FIX_LABELS: dict[Fix, str] = {"trim_audio": f"Trim to {RECOMMENDED_AUDIO_SECONDS:g} s", "shrink_image": "Shrink"}


@dataclasses.dataclass(frozen=True)
class Advice:
    """Something worth saying about an input that is usable as it is, and the fix on offer (if any)."""

    reason: Literal["audio_too_long", "audio_unmeasured", "no_face"]
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
    name: str | None = None  # as the user knows it: the file's or upload's own name (bytes have none)

    @property
    def shown(self) -> str:
        """The input's name for messages and history: the user's own name for it, else its file's or URL's."""
        if self.name:
            return self.name
        return self.path.name if self.path is not None else (self.url or "").rsplit("/", 1)[-1][:120] or "?"

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


def refusal(advice: Advice, earlier: str | None = None) -> ValidationError:
    """The ValidationError strict mode makes of a piece of advice (reason "no_face", "audio_too_long"); earlier:
    the take of these inputs the journal has (e.g. "task 3f2a… from 2026-12-07 10:31, completed"), which the
    same call returns without strict (nothing is paid either way)."""
    fix = {"no_face": "use a photo of one person with a large, frontal face",
           "audio_too_long": "trim it (pass trim_audio=True, the default: it cuts in a pause near "
                             f"{AUDIO_SECONDS:g} s)",
           "audio_unmeasured": "download it and pass the file, which is measured (and trimmed if long)",
           }.get(advice.reason)
    if earlier is None:
        return ValidationError(f"{advice.message} (refused: strict mode)", reason=advice.reason, field=advice.field,
                               hint=f"{fix or 'change the input'}, or pass strict=False to send it anyway")
    return ValidationError(
        f"{advice.message} (refused: strict mode; an earlier take of these inputs exists, {earlier}, and is "
        "returned without strict)", reason=advice.reason, field=advice.field,
        hint=f"{fix or 'change the input'}, or pass strict=False for the earlier take: nothing is paid")


def with_url_face(media: Media, *, unseen_refused: bool) -> Media:
    """An image URL with the advice of its face search (strict mode: a face unseen is not judged), its image
    fetched whole into scratch (see _inputs_url.fetch_image), searched, removed. One that cannot be fetched raises
    when unseen_refused (a new task would be paid for inputs strict could not judge), else has no advice (what
    cannot be decided passes: an earlier take is returned, nothing is paid). Anything else: media as it is."""
    if media.is_local or media.url is None or media.field.kind != "image":
        return media
    try:
        path = fetch_image(media.url, media.field)
    except ValidationError as exc:
        if not unseen_refused:
            return media
        raise ValidationError(f"strict mode searches the {media.field.label} for a face and cannot: {exc.message}",
                              reason=exc.reason, field=exc.field,
                              hint="make the URL reachable from this machine (or pass the file), or pass "
                                   "strict=False to send it unjudged") from None
    try:
        found = _face_found(path)
    finally:
        path.unlink(missing_ok=True)
    return media if found else dataclasses.replace(media, advice=(_no_face(media.field, media.shown),))


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
        path = _existing_file(Path(text), field)
        return Media(field, path=path, name=path.name)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return Media(field, path=_spill(bytes(value), "", field))
    if isinstance(value, Mapping):
        name = value.get("name")
        return Media(field, path=_from_upload(value, field), name=Path(name).name[:200] if isinstance(name, str)
                     and name.strip() else None)
    raise ValidationError(
        f"{what}: cannot use a {type(value).__name__}", reason="unsupported_type", field=field.name,
        hint="pass a file path, an http(s) URL, bytes or an item of FileUpload.value",
    )


def _from_string(text: str, field: MediaField) -> Media:
    scheme = url_scheme(text)
    if scheme is None:
        path = _existing_file(Path(text), field)
        return Media(field, path=path, name=path.name)
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


def validate(media: Media, limits: InputLimits = DEFAULT_LIMITS, *, advise: bool = True, faces: bool = True,
             urls: bool = False) -> Media:
    """Check a local file against its field's rules, or, with urls, a URL by asking for its first bytes
    (check_url); returns media with its facts and advice (none looked for unless advise: a manifest's check wants
    only the refusals, and a face search costs more than the rest of an image's check; faces=False: all advice but
    the face search's, which a batch gives later). Its messages name the file as its user knows it (media.shown:
    an upload's own name, not the scratch file it was written to).

    A URL is asked for only where a task is about to be paid for (_pipeline.prepare, after the journal said a new
    task is needed), or where a person waits for the verdict (a form's picker, a manifest's rows that will pay):
    a URL that expired since its task was paid for must not stop that task's resumption or reuse."""
    if not media.is_local:
        assert media.url is not None
        if urls:
            check_url(media.url, media.field, limits)
        if advise and media.field.kind == "audio":  # its length is the service's to find: said, strict refuses
            return dataclasses.replace(media, advice=(Advice("audio_unmeasured", media.field.name, (
                f"the {media.field.label} is a URL: its length cannot be checked before paying, and it is sent "
                f"as it is, never trimmed to the recommended {RECOMMENDED_AUDIO_SECONDS:g} s")),))
        return media
    path, field = media.path, media.field
    assert path is not None
    if field.kind == "image":  # a batch checks each image with its manifest, again when its row is submitted
        shown = media.shown
        remembered = per_file_version(path, ("image", field.name), lambda: check_image(path, field, name=shown))
        facts = dataclasses.replace(remembered, path=path)
    else:
        facts = check_stream(path, field, limits, name=media.shown)
    advice = tuple(_advice(path, field, facts, faces, media.shown)) if advise else ()
    return dataclasses.replace(media, facts=facts, advice=advice)


def check(value: Any, field: MediaField, limits: InputLimits = DEFAULT_LIMITS, *, advise: bool = True,
          faces: bool = True, name: str | None = None, urls: bool = False) -> Media:
    """normalise() then validate(): the checked Media for value, or ValidationError. name: the input's name as its
    user knows it, when value does not carry it (a form's upload, kept in a scratch file): its messages use it;
    urls: see validate."""
    media = normalise(value, field)
    return validate(dataclasses.replace(media, name=name) if name else media, limits, advise=advise, faces=faces,
                    urls=urls)


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


def _advice(path: Path, field: MediaField, facts: MediaFacts, faces: bool, shown: str) -> list[Advice]:
    if field.kind == "audio" and (facts.duration or 0) > RECOMMENDED_AUDIO_SECONDS:
        return [Advice("audio_too_long", field.name,
                       f"the {field.label} is {facts.duration:.1f} s, over the model's recommended "
                       f"{RECOMMENDED_AUDIO_SECONDS:g} s limit; longer audio may degrade the result")]
    if field.kind == "image" and faces and not _face_found(path):
        return [_no_face(field, shown)]
    return []


def _no_face(field: MediaField, shown: str) -> Advice:
    return Advice("no_face", field.name, f"no face found in the {field.label} ({shown}): the model wants one "
                                         "person with a large, frontal face, so the result may be poor")


def _face_found(path: Path) -> bool:
    """Whether the image shows a face; True when detection itself fails (the check is advice, never a refusal)."""
    try:
        from ._faces import face_in_file

        return face_in_file(path)
    except Exception as exc:  # OpenCV or PIL trouble must not block a usable input
        logger.debug("face check of %s failed: %r", path.name, exc)
        return True
