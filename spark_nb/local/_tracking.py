"""Face analysis for the renderer: where a portrait's eyes and mouth are, and the Pose a head is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .._faces import Box, cascade, find_face, to_gray


@dataclasses.dataclass(frozen=True)
class FaceLayout:
    """A face and its parts: two eye boxes (left, right in the image) and the lips."""

    face: Box
    eyes: tuple[Box, Box]
    mouth: Box

    @property
    def chin_y(self) -> float:
        """Where the chin ends (Haar boxes stop a little above it)."""
        return self.face.y + self.face.h * 1.06


def analyse(rgb: np.ndarray) -> FaceLayout | None:
    """Face, eyes and mouth of a portrait, or None when no face is found."""
    gray = to_gray(rgb)
    face = find_face(gray)
    if face is None:
        return None
    return FaceLayout(face=face, eyes=_eyes(gray, face), mouth=mouth_of(face))


def mouth_of(face: Box) -> Box:
    """The lips' box, from the face box's proportions."""
    return Box(face.cx - 0.21 * face.w, face.y + 0.71 * face.h, 0.42 * face.w, 0.15 * face.h)


def _eyes(gray: np.ndarray, face: Box) -> tuple[Box, Box]:
    """The two eyes: detected in the face's upper half when possible, else where faces usually have them."""
    guess = (Box(face.x + 0.17 * face.w, face.y + 0.25 * face.h, 0.26 * face.w, 0.2 * face.h),
             Box(face.x + 0.57 * face.w, face.y + 0.25 * face.h, 0.26 * face.w, 0.2 * face.h))
    x0, y0 = int(face.x), int(face.y + 0.15 * face.h)
    band = gray[y0:int(face.y + 0.55 * face.h), x0:int(face.x + face.w)]
    if band.size == 0:
        return guess
    side = max(8, int(face.w * 0.12))
    found = cascade("haarcascade_eye.xml").detectMultiScale(band, 1.1, 4, minSize=(side, side))
    left = [b for b in found if b[0] + b[2] / 2 < face.w / 2]
    right = [b for b in found if b[0] + b[2] / 2 >= face.w / 2]
    if not left or not right:
        return guess

    def placed(group: Sequence[Sequence[int]]) -> Box:  # the side's widest detection, in the picture's coordinates
        x, y, w, h = max(group, key=lambda r: r[2])
        return Box(float(x + x0), float(y + y0), float(w), float(h))

    return placed(left), placed(right)


@dataclasses.dataclass(frozen=True)
class Pose:
    """A face's pose relative to the first frame: shift (in first-face widths), scale, in-plane rotation."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0  # radians, positive = counter-clockwise in the image
