"""Animates a portrait frame by frame: the jaw drops to open the mouth, eyelids blink, the head moves."""

from __future__ import annotations

import math

import cv2
import numpy as np

from ._tracking import FaceLayout, Pose

MOUTH_INTERIOR = np.array([48, 18, 24], dtype=np.float32)  # dark red-brown, as inside a mouth in shadow


class Animator:
    """Renders one portrait under (mouth opening, eye closure, pose); the warp grids are computed once."""

    def __init__(self, image: np.ndarray, layout: FaceLayout | None) -> None:
        self.image = image
        self.layout = layout
        h, w = image.shape[:2]
        self.centre = (layout.face.cx, layout.face.cy) if layout else (w / 2, h / 2)
        self.unit = layout.face.w if layout else w / 3  # one "face width" in pixels, for poses
        if layout:
            self._prepare_jaw(layout)
            self._eyelids = [self._prepare_eye(eye) for eye in layout.eyes]

    # -- the jaw: pixels below the lips move down, a dark gap opens where the warp pulls from above ----

    def _prepare_jaw(self, layout: FaceLayout) -> None:
        h, w = self.image.shape[:2]
        mouth, face = layout.mouth, layout.face
        self.lip_y = mouth.cy
        self.jaw_drop = 0.11 * face.h  # fully open mouth
        neck = layout.chin_y + 0.45 * (layout.chin_y - self.lip_y)
        x0, x1 = int(max(0, face.x - 0.05 * face.w)), int(min(w, face.x + face.w * 1.05))
        y0, y1 = int(max(0, mouth.y - 0.2 * mouth.h)), int(min(h, neck + 2))
        self.jaw_roi = (slice(y0, y1), slice(x0, x1))
        xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        # vertical profile: 0 above the lips, 1 from the lips to the chin, back to 0 at the neck
        rise = np.clip((ys - (self.lip_y - 0.15 * mouth.h)) / (0.3 * mouth.h), 0, 1)
        fall = np.clip((neck - ys) / (neck - layout.chin_y), 0, 1)
        # horizontal profile: as wide as the lips near them, as wide as the jaw lower down
        depth = np.clip((ys - self.lip_y) / max(1.0, layout.chin_y - self.lip_y), 0, 1)
        sigma = (0.55 + 0.45 * depth) * (0.5 * mouth.w) + depth * 0.15 * face.w
        across = np.exp(-(((xs - mouth.cx) / sigma) ** 2))
        self._jaw_weight = (rise * fall * across).astype(np.float32)
        self._jaw_xs, self._jaw_ys = xs, ys
        self._lip_edge = np.exp(-(((xs - mouth.cx) / (0.48 * mouth.w)) ** 4)).astype(np.float32)

    def _open_mouth(self, frame: np.ndarray, opening: float) -> None:
        drop = self.jaw_drop * opening * self._jaw_weight
        source_y = self._jaw_ys - drop
        warped = cv2.remap(self.image, self._jaw_xs, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # where the warp would pull from above the lip line, the mouth is open: show its dark inside
        inside = np.clip((self.lip_y - source_y) / 2.0, 0, 1) * (self._jaw_ys >= self.lip_y) * self._lip_edge
        depth = np.clip((self._jaw_ys - self.lip_y) / max(1.0, self.jaw_drop * opening), 0, 1)
        shade = MOUTH_INTERIOR * (0.7 + 0.6 * depth[..., None] * (1 - depth[..., None]))
        alpha = (inside * min(1.0, 3.0 * opening))[..., None]
        frame[self.jaw_roi] = (warped * (1 - alpha) + shade * alpha).astype(np.uint8)

    # -- the eyelids: a lid the colour of the skin above the eye closes from the top ------------------

    def _prepare_eye(self, eye) -> tuple:  # noqa: ANN001
        h, w = self.image.shape[:2]
        x0, x1 = int(max(0, eye.x)), int(min(w, eye.x + eye.w))
        y0, y1 = int(max(0, eye.y)), int(min(h, eye.y + eye.h))
        above = self.image[max(0, y0 - int(0.35 * eye.h)):y0, x0:x1]
        lid = (above.reshape(-1, 3).mean(axis=0) if above.size else self.image[y0, x0]).astype(np.float32)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rx, ry = 0.42 * eye.w, 0.24 * eye.h
        inside = np.clip(3.0 * (1.25 - np.hypot((xs - eye.cx) / rx, (ys - eye.cy) / ry)), 0, 1)
        return (slice(y0, y1), slice(x0, x1)), ys, eye.cy - ry, 2 * ry, inside, lid * 0.9

    def _blink(self, frame: np.ndarray, closure: float) -> None:
        for roi, ys, top, height, inside, lid in self._eyelids:
            edge = top + closure * height * 0.85
            covered = (np.clip((edge - ys) / 1.5, 0, 1) * inside)[..., None]
            lashes = (np.exp(-(((ys - edge) / 1.3) ** 2)) * inside * closure)[..., None]
            lidded = frame[roi] * (1 - covered) + lid * covered
            frame[roi] = (lidded * (1 - 0.6 * lashes)).astype(np.uint8)

    # -- one frame ------------------------------------------------------------------------------------

    def frame(self, opening: float = 0.0, closure: float = 0.0, pose: Pose = Pose()) -> np.ndarray:
        """An RGB frame with the mouth opened (0..1), the eyes closed (0..1) and the head posed."""
        frame = self.image.copy()
        opening, closure = float(opening), float(closure)
        if self.layout is not None:
            if opening > 0.01:
                self._open_mouth(frame, min(1.0, opening))
            if closure > 0.01:
                self._blink(frame, min(1.0, closure))
        return self._place(frame, pose)

    # -- the pose: where the head is -------------------------------------------------------------------

    def _place(self, frame: np.ndarray, pose: Pose) -> np.ndarray:
        """frame with the head moved to pose."""
        matrix = cv2.getRotationMatrix2D(self.centre, math.degrees(pose.angle), pose.scale)
        matrix[:, 2] += (pose.dx * self.unit, pose.dy * self.unit)
        h, w = frame.shape[:2]
        return cv2.warpAffine(frame, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
