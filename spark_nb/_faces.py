"""Face detection (OpenCV's bundled Haar cascades, offline): the input check's "is there a face" and the renderer's.

Lives outside `local/` because both sides need it: the client warns before paying for a portrait without a
face, and the local renderer tracks faces.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from pathlib import Path
from typing import Any

import cv2
import cv2.data
import numpy as np

DETECT_SIDE = 360  # detection runs on a copy this large: Haar cost grows with pixels, accuracy barely does
# The input check only asks "is there a face": a smaller copy and coarser scale steps answer it at a third of the
# cost (the same answers on the real photographs in tests/media/real), which counts in a manifest of 1,000 rows.
ADVICE_SIDE, ADVICE_SCALE_STEP = 240, 1.2


@dataclasses.dataclass(frozen=True)
class Box:
    """An axis-aligned rectangle in pixels."""

    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        """Horizontal centre."""
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        """Vertical centre."""
        return self.y + self.h / 2

    def scaled(self, factor: float) -> Box:
        """The same box in an image resized by factor."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)


_per_thread = threading.local()


def cascade(name: str) -> Any:
    """OpenCV's bundled cascade called name, one per thread."""
    # A CascadeClassifier keeps scratch state while detecting, so concurrent renders each need their own.
    cache: dict[str, Any] = _per_thread.__dict__.setdefault("cascades", {})
    if name not in cache:
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if cascade.empty():
            raise RuntimeError(
                f"OpenCV's {name} is missing; install opencv-python-headless 4.x (5.x no longer ships it)")
        cache[name] = cascade
    return cache[name]


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Grey copy of an RGB frame (grey frames pass through)."""
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def find_face(gray: np.ndarray, *, min_fraction: float = 0.12, scale_step: float = 1.1) -> Box | None:
    """The largest frontal face in a grey image, or None (scale_step: the detector's step between sizes)."""
    factor = min(1.0, DETECT_SIDE / max(gray.shape[:2]))
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else gray
    small = cv2.equalizeHist(small)
    side = max(24, int(min(small.shape[:2]) * min_fraction))
    found = cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        small, scaleFactor=scale_step, minNeighbors=5, minSize=(side, side))
    if len(found) == 0:
        return None
    x, y, w, h = max(found, key=lambda r: r[2] * r[3])
    return Box(float(x), float(y), float(w), float(h)).scaled(1 / factor)



def face_in_file(path: str | Path) -> bool:
    """True when the image file shows a frontal face (checked on a copy at most ADVICE_SIDE pixels large)."""
    stat = os.stat(path)
    return _face_in_file(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)  # the same file is checked again when a form submits it
def _face_in_file(path: str, size: int, mtime_ns: int) -> bool:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img.draft("L", (ADVICE_SIDE, ADVICE_SIDE))
        gray = ImageOps.exif_transpose(img).convert("L")
        gray.thumbnail((ADVICE_SIDE, ADVICE_SIDE))
    return find_face(np.asarray(gray), scale_step=ADVICE_SCALE_STEP) is not None
