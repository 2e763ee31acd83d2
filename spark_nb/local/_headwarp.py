"""Moves a portrait's head and nothing else: the head region moves rigidly, the picture's edges stay put.

A displacement field, not a cut-out: inside the head's feathered ellipse every pixel follows the head's
transform; outside it the displacement fades smoothly to zero, so the neck and the background next to the
head stretch a little and the rest of the picture, and every border, is the still portrait. A continuous
warp uncovers nothing, so no pixel is filled by mirroring or by a second copy of the face.

Without a face the whole picture moves, zoomed in just enough that no border is ever uncovered.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .._faces import Box
from ._tracking import Pose

HEAD = (0.78, 1.0, 0.12)  # the head's ellipse: half-width and half-height in face sizes, raised by this
FEATHER = (1.0, 1.9)  # the displacement fades from full to none between these multiples of the ellipse
EDGE = (0.05, 0.13)  # ...and between these fractions of the picture's size from its border
ZOOM = 1.04  # a faceless picture's zoom: a 2 % margin on every side to move within


def _smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class HeadWarp:
    """Renders a picture with its head moved to a Pose; the weight map and grids are made once."""

    def __init__(self, shape: tuple[int, ...], face: Box | None) -> None:
        self.height, self.width = shape[:2]
        self.face = face
        if face is None:
            self.centre = (self.width / 2, self.height / 2)
            return
        self.centre = (face.cx, face.cy)
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        cx, cy = face.cx, face.cy - HEAD[2] * face.h
        radius = np.hypot((xs - cx) / (HEAD[0] * face.w), (ys - cy) / (HEAD[1] * face.h))
        border = np.minimum(np.minimum(xs, self.width - 1 - xs), np.minimum(ys, self.height - 1 - ys))
        weight = (1 - _smoothstep(*FEATHER, radius)) * _smoothstep(*EDGE, border / min(self.height, self.width))
        rows, cols = np.nonzero(weight > 1e-3)
        if rows.size == 0:
            self.face = None
            self.centre = (self.width / 2, self.height / 2)
            return
        self._roi = (slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1))
        self._weight = weight.astype(np.float32)
        self._xs, self._ys = xs[self._roi], ys[self._roi]
        self._origin = (float(cols.min()), float(rows.min()))

    def matrix(self, pose: Pose, unit: float) -> np.ndarray:
        """The head's forward transform (2x3): rotation and scale about the face centre, then the shift."""
        matrix = np.asarray(cv2.getRotationMatrix2D(self.centre, math.degrees(pose.angle), pose.scale), np.float64)
        matrix[:, 2] += (pose.dx * unit, pose.dy * unit)
        return matrix

    def apply(self, frame: np.ndarray, pose: Pose, unit: float) -> np.ndarray:
        """frame with the head (or, without a face, the whole picture) moved to pose."""
        if self.face is None:
            return self._whole(frame, pose, unit)
        if abs(pose.dx) < 1e-4 and abs(pose.dy) < 1e-4 and abs(pose.scale - 1) < 1e-4 and abs(pose.angle) < 1e-4:
            return frame
        matrix = self.matrix(pose, unit)
        inverse = cv2.invertAffineTransform(matrix).astype(np.float32)
        # the weight where each output pixel's source is, so the full weight travels with the head
        shifted = matrix.copy()
        shifted[:, 2] -= self._origin
        roi_h, roi_w = self._xs.shape
        weight = cv2.warpAffine(self._weight, shifted, (roi_w, roi_h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        xs, ys = self._xs, self._ys
        map_x = xs + weight * (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] - xs)
        map_y = ys + weight * (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] - ys)
        out: np.ndarray = frame.copy()
        out[self._roi] = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out

    def _whole(self, frame: np.ndarray, pose: Pose, unit: float) -> np.ndarray:
        """A gentle move of the whole picture inside its zoom margin (nothing uncovered, nothing mirrored)."""
        margin = (ZOOM - 1) / 2
        scale = ZOOM * min(1.03, max(0.99, pose.scale))
        dx = max(-margin, min(margin, pose.dx * unit / self.width)) * self.width * 0.8
        dy = max(-margin, min(margin, pose.dy * unit / self.height)) * self.height * 0.8
        angle = max(-1.0, min(1.0, math.degrees(pose.angle)))
        matrix = np.asarray(cv2.getRotationMatrix2D(self.centre, angle, scale), np.float64)
        matrix[:, 2] += (dx, dy)
        return cv2.warpAffine(frame, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
