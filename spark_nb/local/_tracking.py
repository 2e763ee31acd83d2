"""Face analysis for the renderer: where a portrait's eyes and mouth are, and how a face moves through a video."""

from __future__ import annotations

import dataclasses
import math

import cv2
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
    pick = [max(group, key=lambda r: r[2]) for group in (left, right)]
    return tuple(Box(float(x + x0), float(y + y0), float(w), float(h)) for x, y, w, h in pick)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Pose:
    """A face's pose relative to the first frame: shift (in first-face widths), scale, in-plane rotation."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0  # radians, positive = counter-clockwise in the image


class FaceTracker:
    """Follows one face through a video: optical flow on face features, corrected by Haar detections.

    Optical flow (Lucas-Kanade) gives smooth translation, scale and rotation between frames; detections pull
    position and size back when flow drifts; frames where both fail keep the last pose.
    """

    def __init__(self, first_gray: np.ndarray) -> None:
        self.face0 = find_face(first_gray)
        self.found = self.face0 is not None
        h, w = first_gray.shape[:2]
        self._face = self.face0 or Box(w * 0.25, h * 0.2, w * 0.5, h * 0.5)
        self._prev = first_gray
        self._points = self._features(first_gray, self._face)
        self._transform = np.eye(3)  # first frame -> current frame
        self.detections = 0

    @staticmethod
    def _features(gray: np.ndarray, face: Box) -> np.ndarray | None:
        mask = np.zeros_like(gray)
        cv2.rectangle(mask, (int(face.x), int(face.y)), (int(face.x + face.w), int(face.y + face.h)), 255, -1)
        return cv2.goodFeaturesToTrack(gray, maxCorners=60, qualityLevel=0.01, minDistance=4, mask=mask)

    def update(self, gray: np.ndarray, *, detect: bool = True) -> Pose:
        """The pose in this frame (call once per frame, in order)."""
        step = self._flow_step(gray)
        if step is not None:
            self._transform = step @ self._transform
        face = self._current_face()
        if detect:
            seen = find_face(gray, min_fraction=0.5 * self._face.w / max(gray.shape[:2]))
            if seen is not None and abs(seen.cx - face.cx) < face.w and 0.6 < seen.w / face.w < 1.6:
                self.detections += 1
                self._pull_towards(seen, face, weight=0.25 if step is not None else 1.0)
        self._prev = gray
        if self._points is None or len(self._points) < 12:
            self._points = self._features(gray, self._current_face())
        return self.pose()

    def _flow_step(self, gray: np.ndarray) -> np.ndarray | None:
        if self._points is None or len(self._points) < 6:
            return None
        moved, status, _ = cv2.calcOpticalFlowPyrLK(self._prev, gray, self._points, None, winSize=(21, 21),
                                                    maxLevel=3)
        good = status.reshape(-1) == 1
        if good.sum() < 6:
            self._points = None
            return None
        matrix, inliers = cv2.estimateAffinePartial2D(self._points[good], moved[good], method=cv2.RANSAC,
                                                      ransacReprojThreshold=2.0)
        if matrix is None:
            self._points = None
            return None
        keep = inliers.reshape(-1).astype(bool)
        self._points = moved[good][keep].reshape(-1, 1, 2)
        return np.vstack([matrix, [0.0, 0.0, 1.0]])

    def _current_face(self) -> Box:
        scale, cx, cy = self._scale(), *self._apply(self._face.cx, self._face.cy)
        return Box(cx - self._face.w * scale / 2, cy - self._face.h * scale / 2, self._face.w * scale,
                   self._face.h * scale)

    def _apply(self, x: float, y: float) -> tuple[float, float]:
        px, py, _ = self._transform @ np.array([x, y, 1.0])
        return float(px), float(py)

    def _scale(self) -> float:
        return float(math.hypot(self._transform[0, 0], self._transform[1, 0]))

    def _pull_towards(self, seen: Box, face: Box, weight: float) -> None:
        """Blend the tracked centre and size towards a detection (a complementary filter against drift)."""
        ratio = (seen.w / face.w) ** weight
        shift_x, shift_y = (seen.cx - face.cx) * weight, (seen.cy - face.cy) * weight
        cx, cy = face.cx, face.cy
        correction = np.array([[ratio, 0, cx - ratio * cx + shift_x], [0, ratio, cy - ratio * cy + shift_y],
                               [0, 0, 1.0]])
        self._transform = correction @ self._transform

    def pose(self) -> Pose:
        """The current pose relative to the first frame."""
        cx, cy = self._apply(self._face.cx, self._face.cy)
        angle = math.atan2(self._transform[1, 0], self._transform[0, 0])
        return Pose(dx=(cx - self._face.cx) / self._face.w, dy=(cy - self._face.cy) / self._face.w,
                    scale=self._scale(), angle=-angle)

    def mouth_box(self) -> Box:
        """Where the tracked face's lips are now."""
        return mouth_of(self._current_face())
