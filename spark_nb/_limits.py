"""The input limits, each written once: the client checks them before anything is paid (_inputs and its parts,
the URL check) and the local server enforces them (local/_engine, local/_server), so both sides refuse the same
inputs.

Images follow the seed pages' words, "Less than 5 MB, less than 4096×4096": under, so an image of 5 MB, or with a
side of 4096 px, is refused. Audio and video inputs may be at most MEDIA_BYTES and MEDIA_SECONDS by default (the
client: configure(max_input_mb=..., max_input_seconds=...); a local server: its ServerOptions; the embedded one:
what its process's configuration lets through). Speech past
AUDIO_SECONDS gets advice and is trimmed by default ("recommended less than 15 seconds"), never refused.
"""

from __future__ import annotations

IMAGE_BYTES = 5 * 1024**2  # an image is under this many bytes (the seed: "Less than 5 MB")
IMAGE_SIDE = 4096  # each side of an image is under this many pixels (the seed: "less than 4096×4096")
MEDIA_BYTES = 100 * 1024**2  # an audio or video input, at most (the local server's upload and fetch limit too)
MEDIA_SECONDS = 600.0  # an audio or video input, at most: far above the 15 s the avatar model recommends
AUDIO_SECONDS = 15.0  # speech longer than this is trimmed, or advised against (the seed's recommendation)
FORM_BYTES = 64 * 1024  # an upload's multipart envelope (boundaries, part headers, file name) beyond its file


def image_too_heavy(size: int) -> bool:
    """True when an image file of size bytes breaks the model's rule (it must be under 5 MB)."""
    return size >= IMAGE_BYTES


def image_too_large(width: int, height: int) -> bool:
    """True when an image of width x height pixels breaks the model's rule (each side under 4096)."""
    return max(width, height) >= IMAGE_SIDE


def media_too_large(size: int, max_bytes: int = MEDIA_BYTES) -> bool:
    """True when an audio or video input of size bytes is over its limit (at most max_bytes)."""
    return size > max_bytes


def media_too_long(seconds: float, max_seconds: float = MEDIA_SECONDS) -> bool:
    """True when an audio or video input lasting seconds is over its limit (at most max_seconds)."""
    return seconds > max_seconds
