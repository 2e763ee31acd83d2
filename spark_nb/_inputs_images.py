"""The input rules for images: under 5 MB and 4096x4096 (the seed pages' rules), a common format, decodable.
Part of the input rules: called by _inputs.validate for files, and by _inputs_url on a URL's first bytes."""

from __future__ import annotations

from pathlib import Path

from ._ffmpeg import MediaFacts
from ._imageheader import claimed_size
from .errors import ValidationError
from .models import MediaField

MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 4096  # the seed says "less than 4096x4096"
IMAGE_FORMATS = {"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "MPO"}


def check_image(path: Path, field: MediaField, *, whole: bool = True, name: str | None = None) -> MediaFacts:
    """The image's facts, or the rule it breaks; whole=False: path holds only the file's first bytes (a URL's),
    so only its header is judged (format and size), not whether all of it decodes. Messages call the file name
    (its user's name for it), else by its own name."""
    from PIL import Image, UnidentifiedImageError

    shown = name or path.name

    size = path.stat().st_size
    if whole and size >= MAX_IMAGE_BYTES:
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
            if whole:
                img.draft("RGB", (512, 512))  # JPEG: decode at reduced scale, enough to prove it decodes
                img.load()
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:  # raised by open() itself, from the header's claimed size
        raise ValidationError(
            f"{field.label} claims a size far above the model's limit: it takes images under 4096x4096 ({exc})"[:300],
            reason="image_too_large", field=field.name,
            hint="resize it so its longest side is at most 4095 px (2048 is plenty)",
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # PIL's "cannot identify image file '<path>'" says only that, naming where the bytes were written
        why = "not a known image format" if isinstance(exc, UnidentifiedImageError) else exc
        raise ValidationError(
            f"{field.label} could not be decoded as an image ({shown}: {why})"[:300], reason="not_decodable",
            field=field.name,
            hint="use a JPG or PNG file; check that the file is complete and really an image",
        ) from exc
    if whole and fmt == "PNG" and not _png_ends(path):  # PIL decodes a PNG cut inside its last chunk without a word
        raise ValidationError(
            f"{field.label} is cut short ({shown} has no PNG end marker: it looks truncated)",
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
