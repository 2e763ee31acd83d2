"""Inline HTML for videos: a player that works whether the browser is beside the kernel or not."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

EMBED_LIMIT_BYTES = 1_500_000  # larger videos are linked, not embedded, to keep notebooks small


def video_html(path: Path, *, caption: str = "", width: int = 384) -> str:
    """A <video> for path: a relative link when it sits under the working directory, else embedded if small."""
    src = _relative_src(path)
    if src is None and path.stat().st_size <= EMBED_LIMIT_BYTES:
        src = "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    if src is None:
        return f"<div>{html.escape(caption)}<br>video saved at <code>{html.escape(str(path))}</code></div>"
    return (
        f'<figure style="margin:0"><video src="{html.escape(src)}" controls playsinline width="{width}"></video>'
        f"<figcaption style=\"font-size:90%\">{html.escape(caption)}</figcaption></figure>"
    )


def _relative_src(path: Path) -> str | None:
    try:
        relative = Path(os.path.relpath(path.resolve(), Path.cwd()))
    except ValueError:
        return None
    if relative.parts and relative.parts[0] == "..":
        return None
    return relative.as_posix()
