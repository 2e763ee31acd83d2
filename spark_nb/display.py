"""Inline HTML for images, audio and videos: players that work whether the browser is beside the kernel or not.

The browser may run on another machine than the kernel (Binder, JupyterHub), so a src is never the kernel's
loopback server. It is, in order: a path relative to the working directory (JupyterLab and Notebook 7 resolve
relative URLs in HTML outputs to their /files/ handler), a base64 data: URI for small files, or a public
http(s) URL the caller gave. Otherwise the HTML says where the file is saved.

Costs show as everywhere else in spark_nb: `format_usd(amount)` ("$0.004", never "$0.00" for a fraction of a cent).
"""

from __future__ import annotations

import base64
import html
import mimetypes
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote, urlsplit

from ._boundary import guard_public, number_argument, path_argument
from ._money import format_usd
from ._urls import is_http_url, is_loopback_url
from .errors import UsageError

if TYPE_CHECKING:
    from decimal import Decimal

    from IPython.core.display import HTML

__all__ = ["EMBED_LIMIT_BYTES", "Kind", "ShownResult", "audio_html", "image_html", "kind_of", "media_html",
           "media_src", "mime_type", "relative_src", "result_caption", "result_html", "show", "video_html"]

EMBED_LIMIT_BYTES = 1_500_000
"""Files larger than this (1.5 MB) are linked, not embedded, so notebooks stay small."""
THUMBNAIL_SIDE = 768  # images too large to embed are previewed as a JPEG this size
Kind = Literal["image", "audio", "video"]
"""The kinds of media a player is made for."""
_KINDS: dict[str, Kind] = {"image": "image", "audio": "audio", "video": "video"}  # a MIME type's first part


class ShownResult(Protocol):
    """What display needs of a Result (so display never imports the task machinery).

    Attributes:
        task_id: the task that made the video.
        path: the video on disk.
        duration: its length in seconds, or None.
    """

    @property
    def task_id(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def duration(self) -> float | None: ...

    @property
    def cost(self) -> Decimal | None:
        """What the task cost in US dollars, or None when unknown."""


_MIME = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif", ".webp": "image/webp",
    ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".mpo": "image/jpeg",
    ".wav": "audio/wav", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".flac": "audio/flac", ".weba": "audio/webm",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
    ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
}
_MAGIC: list[tuple[int, bytes, str]] = [  # (offset, bytes, mime) for files saved without a suffix
    (0, b"\xff\xd8\xff", "image/jpeg"), (0, b"\x89PNG", "image/png"), (0, b"GIF8", "image/gif"),
    (8, b"WEBP", "image/webp"), (0, b"BM", "image/bmp"), (8, b"WAVE", "audio/wav"), (0, b"ID3", "audio/mpeg"),
    (0, b"\xff\xfb", "audio/mpeg"), (0, b"OggS", "audio/ogg"), (0, b"fLaC", "audio/flac"),
    (8, b"M4A", "audio/mp4"), (4, b"ftyp", "video/mp4"), (0, b"\x1a\x45\xdf\xa3", "video/webm"),
]


def mime_type(path: Path) -> str | None:
    """The MIME type of a media file, from its suffix or else its first bytes; None when unknown.

    Args:
        path: the file.

    Returns:
        e.g. "video/mp4", or None.
    """
    path = path_argument(path, "path")
    mime = _MIME.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if mime:
        return mime
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return None
    return next((m for offset, magic, m in _MAGIC if head[offset:offset + len(magic)] == magic), None)


def kind_of(source: str | os.PathLike[str]) -> Kind | None:
    """'image', 'audio' or 'video' for a path or URL, judged by its type; None when it is none of them.

    Args:
        source: a path, or an http(s) URL (judged by its suffix).

    Returns:
        The kind, or None.
    """
    if isinstance(source, str) and is_http_url(source):
        mime = _MIME.get(Path(urlsplit(source).path).suffix.lower())
    else:
        mime = mime_type(path_argument(source, "source"))
    return _KINDS.get((mime or "").split("/")[0])


def media_src(path: Path, *, embed_limit: int = EMBED_LIMIT_BYTES) -> str | None:
    """A src the notebook's browser can load: relative to the working directory, else a data: URI, else None.

    Args:
        path: the file.
        embed_limit: the largest file embedded as a data: URI, in bytes.

    Returns:
        The src, or None when the file is outside the working directory and too large to embed.
    """
    path = path_argument(path, "path")
    embed_limit = int(number_argument(embed_limit, "embed_limit", at_least=0, integer=True))
    src = relative_src(path)
    if src is None and path.is_file() and path.stat().st_size <= embed_limit:
        mime = mime_type(path) or "application/octet-stream"
        src = f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    return src


def relative_src(path: Path) -> str | None:
    """path as a URL relative to the working directory, or None when it is outside it (or hidden from /files/).

    Args:
        path: the file.

    Returns:
        The URL-quoted relative path (JupyterLab serves it from its /files/ handler), or None.
    """
    try:
        relative = Path(os.path.relpath(path_argument(path, "path").resolve(), Path.cwd().resolve()))
    except ValueError:  # another drive on Windows
        return None
    parts = relative.parts
    # Jupyter's /files/ handler refuses hidden files and folders by default
    if not parts or parts[0] == ".." or any(part.startswith(".") for part in parts):
        return None
    return quote(relative.as_posix())


def image_html(source: str | os.PathLike[str], *, caption: str = "", width: int = 256,
               embed_limit: int = EMBED_LIMIT_BYTES) -> str:
    """An <img> for a path or public URL (a large image outside the working directory is shown as a thumbnail).

    Args:
        source: a path, or a public http(s) URL (a loopback URL is named, never linked: the browser may be elsewhere).
        caption: a line under the player.
        width: the largest width in pixels.
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        The HTML (a figure), or a line saying where the image is when the browser cannot load it.
    """
    width = _width(width)
    src = _src(source, embed_limit)
    if src is None and not (isinstance(source, str) and is_http_url(source)):
        src = _thumbnail_src(Path(source), embed_limit)
    if src is None:
        return _saved_at("image", source, caption)
    tag = f'<img src="{html.escape(src)}" alt="{html.escape(caption or "image")}" style="max-width:{width}px;' \
          f'max-height:{width * 4 // 3}px;height:auto">'
    return _figure(tag, caption)


def audio_html(source: str | os.PathLike[str], *, caption: str = "", embed_limit: int = EMBED_LIMIT_BYTES) -> str:
    """An <audio> player for a path or public URL.

    Args:
        source: a path, or a public http(s) URL (a loopback URL is named, never linked: the browser may be elsewhere).
        caption: a line under the player.
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        The HTML (a figure), or a line saying where the file is when the browser cannot load it.
    """
    src = _src(source, embed_limit)
    if src is None:
        return _saved_at("audio", source, caption)
    return _figure(f'<audio src="{html.escape(src)}" controls preload="metadata"></audio>', caption)


def video_html(source: str | os.PathLike[str], *, caption: str = "", width: int = 384,
               embed_limit: int = EMBED_LIMIT_BYTES) -> str:
    """A <video> for a path or public URL: relative under the working directory, else embedded if small.

    Args:
        source: a path, or a public http(s) URL (a loopback URL is named, never linked: the browser may be elsewhere).
        caption: a line under the player.
        width: the player's width in pixels.
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        The HTML (a figure), or a line saying where the video is when the browser cannot load it.
    """
    width = _width(width)
    src = _src(source, embed_limit)
    if src is None:
        return _saved_at("video", source, caption)
    tag = f'<video src="{html.escape(src)}" controls playsinline preload="metadata" width="{width}"></video>'
    return _figure(tag, caption)


def media_html(source: str | os.PathLike[str], *, caption: str = "", kind: Kind | None = None,
               width: int | None = None, embed_limit: int = EMBED_LIMIT_BYTES) -> str:
    """The right player for source (image, audio or video, judged by its type unless kind is given).

    Args:
        source: a path, or a public http(s) URL (a loopback URL is named, never linked: the browser may be elsewhere).
        caption: a line under the player.
        kind: "image", "audio" or "video"; None judges it by the file's type.
        width: the player's width in pixels (None: 256 for an image, 384 for a video).
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        The HTML, or a line saying where the file is when it is no media or the browser cannot load it.
    """
    kind = kind or kind_of(source)
    if kind == "image":
        return image_html(source, caption=caption, width=width or 256, embed_limit=embed_limit)
    if kind == "audio":
        return audio_html(source, caption=caption, embed_limit=embed_limit)
    if kind == "video":
        return video_html(source, caption=caption, width=width or 384, embed_limit=embed_limit)
    return _saved_at("file", source, caption)


def result_html(result: ShownResult, *, width: int = 384, embed_limit: int = EMBED_LIMIT_BYTES) -> str:
    """A Result's video with its task id, duration and cost underneath.

    Args:
        result: a Result (anything with task_id, path, duration and cost).
        width: the player's width in pixels.
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        The HTML.
    """
    return video_html(result.path, caption=result_caption(result), width=width, embed_limit=embed_limit)


def result_caption(result: ShownResult) -> str:
    """'task ID · 4.2 s · cost $0.004' for a Result.

    Args:
        result: a Result (anything with task_id, path, duration and cost).

    Returns:
        The caption; "?" for an unknown duration or cost.
    """
    duration = f"{result.duration:.1f} s" if result.duration else "?"
    return f"task {result.task_id} · {duration} · cost {format_usd(result.cost)}"


def show(source: Any, *, caption: str = "", kind: Kind | None = None, width: int | None = None,
         embed_limit: int = EMBED_LIMIT_BYTES) -> HTML:
    """An IPython HTML object playing source: a path, a public URL or a Result (picked by type).

    Args:
        source: a path, a public http(s) URL, or a Result.
        caption: a line under the player.
        kind: "image", "audio" or "video"; None judges it by the file's type.
        width: the player's width in pixels.
        embed_limit: files up to this many bytes outside the working directory are embedded as data: URIs.

    Returns:
        An IPython.display.HTML, shown when it is a cell's last value (or passed to display()).

    Raises:
        UsageError: a width that is not a whole number above 0, a kind none of the three, a path of the wrong type.
    """
    from IPython.core.display import HTML  # where it is defined (IPython.display re-exports it)

    if width is not None:
        _width(width)
    if kind not in (None, "image", "audio", "video"):
        raise UsageError(f"kind must be 'image', 'audio' or 'video' (or None: judged by type), not {kind!r}")
    if hasattr(source, "task_id") and hasattr(source, "path"):
        markup = result_html(source, width=width or 384, embed_limit=embed_limit)
    else:
        markup = media_html(source, caption=caption, kind=kind, width=width, embed_limit=embed_limit)
    return HTML(markup)  # type: ignore[no-untyped-call]  # IPython leaves HTML's constructor unannotated


def _src(source: str | os.PathLike[str], embed_limit: int) -> str | None:
    if isinstance(source, str) and is_http_url(source):
        return None if is_loopback_url(source) else source
    return media_src(path_argument(source, "source"), embed_limit=embed_limit)


def _width(width: object) -> int:
    """A player's width in pixels, checked (a UsageError for "x", 0 or NaN)."""
    return int(number_argument(width, "width", at_least=1, integer=True))


def _thumbnail_src(path: Path, embed_limit: int) -> str | None:
    """A small JPEG of a large image, embedded; None when PIL can't read it."""
    from io import BytesIO

    try:
        from PIL import Image, ImageOps

        with Image.open(path) as img:
            img.draft("RGB", (THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            thumb = ImageOps.exif_transpose(img).convert("RGB")
            thumb.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = BytesIO()
            thumb.save(buffer, "JPEG", quality=80)
    except Exception:  # a broken or exotic image: say where it is instead
        return None
    data = buffer.getvalue()
    return None if len(data) > embed_limit else "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _saved_at(what: str, source: str | os.PathLike[str], caption: str) -> str:
    where = str(source)
    if isinstance(source, str) and is_http_url(source):
        # a loopback URL is only reachable from the kernel's machine: name it, never link it
        text = f"{what} at <code>{html.escape(where)}</code> (on the kernel's machine; not playable here)"
    else:
        text = f"{what} saved at <code>{html.escape(where)}</code> (too large to embed)"
    label = f"{html.escape(caption)}<br>" if caption else ""
    return f'<div class="spark-media spark-saved">{label}{text}</div>'


def _figure(tag: str, caption: str) -> str:
    label = f'<figcaption style="font-size:90%">{html.escape(caption)}</figcaption>' if caption else ""
    return f'<figure class="spark-media" style="margin:0">{tag}{label}</figure>'


guard_public(globals())  # every name in __all__ behind the public boundary: only a SparkError leaves it
