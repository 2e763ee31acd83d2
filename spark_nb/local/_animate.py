"""Animates a portrait frame by frame: the lips part and shape over teeth, eyelids blink, the head moves."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, overload

import cv2
import numpy as np

from .._faces import Box
from ._headwarp import HeadWarp
from ._signals import MouthShape
from ._tracking import FaceLayout, Pose

MOUTH_INTERIOR = np.array([48, 18, 24], dtype=np.float32)  # dark red-brown, as inside a mouth in shadow
TEETH = np.array([236, 224, 198], dtype=np.float32)  # off-white, warm
TONGUE = np.array([150, 66, 72], dtype=np.float32)  # in the mouth's shade
TEETH_JOINTS = (0.0, 0.25, 0.46, 0.64)  # where neighbouring upper teeth meet, in half mouth widths from the middle
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
AT_REST = Pose()  # the first frame's pose


@overload
def _smoothstep(low: float, high: float, x: float) -> np.floating[Any]: ...


@overload
def _smoothstep(low: float, high: float, x: np.ndarray) -> np.ndarray: ...


def _smoothstep(low: float, high: float, x: float | np.ndarray) -> np.floating[Any] | np.ndarray:
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    eased: np.floating[Any] | np.ndarray = (t * t * (3 - 2 * t)).astype(np.float32)
    return eased


class _Eyelid(NamedTuple):
    """One eye's lid, prepared once per portrait: where it is, its rows, its closing range, its shape, its colour."""

    roi: tuple[slice, slice]
    ys: np.ndarray
    top: float
    height: float
    inside: np.ndarray
    lid: np.ndarray


def _ease(x: float) -> float:
    t = min(1.0, max(0.0, x))
    return t * t * (3 - 2 * t)


def _lip_seam(gray: np.ndarray, mouth: Box) -> tuple[float, float, float]:
    """The dark line between the lips as s0 + tilt*u + bend*u^2 (u: -1 at the left corner, 1 at the right).

    Each of 17 columns across the lips votes with its darkest row near the mouth box's middle; a weighted
    parabola through the votes that agree follows a smile's curve. Falls back to the box's middle.
    """
    h, w = gray.shape
    ya, yb = int(max(0, mouth.cy - 0.45 * mouth.h)), int(min(h, mouth.cy + 0.3 * mouth.h + 1))
    xs = np.linspace(mouth.cx - 0.4 * mouth.w, mouth.cx + 0.4 * mouth.w, 17)
    inside = (xs >= 0) & (xs <= w - 1)
    if yb - ya < 4 or inside.sum() < 7:
        return mouth.cy, 0.0, 0.0
    xs = xs[inside]
    band = cv2.GaussianBlur(gray[ya:yb], (0, 0), max(0.8, 0.04 * mouth.h))[:, np.round(xs).astype(int)]
    row = band.argmin(axis=0)
    inner = np.clip(row, 1, band.shape[0] - 2)
    a, b, c = (band[inner + k, np.arange(xs.size)] for k in (-1, 0, 1))
    curve = a - 2 * b + c
    refine = np.where((row == inner) & (curve > 1e-3), 0.5 * (a - c) / np.maximum(curve, 1e-3), 0.0)
    ys = ya + row + np.clip(refine, -0.5, 0.5)
    contrast = np.median(band, axis=0) - band.min(axis=0)
    u = (xs - mouth.cx) / (0.5 * mouth.w)
    middle = np.abs(u) < 0.5
    if not middle.any() or contrast[middle].max() < 4.0:
        return mouth.cy, 0.0, 0.0
    s_mid = float(np.median(ys[middle]))
    agree = (np.abs(ys - s_mid) < 0.12 * mouth.h + 0.15 * mouth.h * u ** 2) & (contrast > 0.3 * contrast[middle].max())
    if agree.sum() < 5:
        return float(np.clip(s_mid, mouth.cy - 0.4 * mouth.h, mouth.cy + 0.3 * mouth.h)), 0.0, 0.0
    for _ in range(3):  # refit without the votes the parabola does not explain (creases near the corners)
        fit = np.polyfit(u[agree], ys[agree], 2, w=np.sqrt(contrast[agree]))
        kept = agree & (np.abs(ys - np.polyval(fit, u)) < max(1.0, 0.06 * mouth.h))
        if kept.sum() < 5 or kept.sum() == agree.sum():
            break
        agree = kept
    bend, tilt, s0 = np.polyfit(u[agree], ys[agree], 2, w=np.sqrt(contrast[agree]))
    return (float(np.clip(s0, mouth.cy - 0.4 * mouth.h, mouth.cy + 0.3 * mouth.h)),
            float(np.clip(tilt, -0.15 * mouth.h, 0.15 * mouth.h)), float(np.clip(bend, -0.3 * mouth.h, 0.1 * mouth.h)))


@dataclasses.dataclass(frozen=True)
class _Paint:
    interior: np.ndarray
    teeth: np.ndarray
    tongue: np.ndarray


def _mouth_colours(image: np.ndarray, face: Box) -> _Paint:
    """Teeth, inside and tongue colours lit like the skin around the mouth; grey in a grey picture."""
    h, w = image.shape[:2]
    x0, x1 = int(np.clip(face.x + 0.15 * face.w, 0, w - 1)), int(np.clip(face.x + 0.85 * face.w, 1, w))
    y0, y1 = int(np.clip(face.y + 0.45 * face.h, 0, h - 1)), int(np.clip(face.y + face.h, 1, h))
    region = image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
    luma = region @ LUMA if region.size else np.full(1, 128.0, dtype=np.float32)
    skin, bright = (float(v) for v in np.percentile(luma, (50, 90)))  # the lower face: cheeks, lips, chin
    chroma = float(np.mean(region.max(axis=1) - region.min(axis=1))) / max(8.0, float(luma.mean()))
    colourful = min(1.0, chroma / 0.2)  # 0 for a grey picture, 1 for ordinary skin tones

    def lit(tint: np.ndarray, luma: float) -> np.ndarray:
        tinted = tint * (luma / float(tint @ LUMA))
        return (luma + colourful * (tinted - luma)).astype(np.float32)

    return _Paint(interior=lit(MOUTH_INTERIOR, float(np.clip(0.13 * skin + 2, 4, 32))),
                  teeth=lit(TEETH, float(np.clip(bright + 10, 50, 235))),
                  tongue=lit(TONGUE, float(np.clip(0.42 * skin, 14, 90))))


class Animator:
    """Renders one portrait under (mouth shape, eye closure, pose); the warp grids are computed once."""

    def __init__(self, image: np.ndarray, layout: FaceLayout | None) -> None:
        self.image = image
        self.layout = layout
        h, w = image.shape[:2]
        self.centre = (layout.face.cx, layout.face.cy) if layout else (w / 2, h / 2)
        self.unit = layout.face.w if layout else w / 3  # one "face width" in pixels, for poses
        if layout:
            self._prepare_jaw(layout)
            self._eyelids = [self._prepare_eye(eye) for eye in layout.eyes]

    # -- the mouth: the jaw drops, the lips part over teeth, the corners spread or purse ----------------
    #
    # One remap over the mouth and jaw moves the lips: below the seam between the lips everything moves
    # down (the lower lip with the opening's profile, the chin with the jaw's), the upper lip rises a
    # little, and the lips spread or purse sideways. The gap that opens between them is painted: the upper
    # teeth under the upper lip, the dark inside, the tongue low down. The grids are made once; per frame
    # only arithmetic on the mouth and jaw's region remains.

    def _prepare_jaw(self, layout: FaceLayout) -> None:
        h, w = self.image.shape[:2]
        mouth, face = layout.mouth, layout.face
        gray = cv2.cvtColor(self.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        s0, tilt, bend = _lip_seam(gray, mouth)
        self.lip_y = s0  # the seam between the lips at the mouth's middle
        self.jaw_drop = 0.11 * face.h  # fully open mouth
        self._cx, self._half, self._lip_h = mouth.cx, 0.5 * mouth.w, mouth.h
        neck = layout.chin_y + 0.45 * (layout.chin_y - s0)
        x0, x1 = int(max(0, face.x - 0.05 * face.w)), int(min(w, face.x + face.w * 1.05))
        x_line = np.arange(x0, x1, dtype=np.float32)
        across = np.clip((x_line - mouth.cx) / self._half, -1.3, 1.3)
        seam = s0 + tilt * across + bend * across ** 2
        y0 = int(max(0, (seam.min() if seam.size else s0) - 1.4 * mouth.h))
        y1 = int(min(h, neck + 2))
        self._has_mouth = x1 - x0 >= 8 and y1 - y0 >= 8 and s0 < y1 - 2
        if not self._has_mouth:
            return
        self.jaw_roi = (slice(y0, y1), slice(x0, x1))
        y_line = np.arange(y0, y1, dtype=np.float32)
        xs, ys = np.meshgrid(x_line, y_line)
        rel = ys - seam[None, :]  # how far below the seam
        depth = _smoothstep(0.0, 1.8 * mouth.h, rel)  # 0 at the lips, 1 at the chin
        fall = np.clip((neck - y_line) / max(1.0, neck - layout.chin_y), 0, 1)[:, None]  # 0 at the neck
        edge = 0.15 * (x1 - x0)  # nothing moves at the region's sides
        taper = _smoothstep(0.0, edge, x_line - x0) * _smoothstep(0.0, edge, x1 - 1 - x_line)
        jaw_across = np.exp(-(((x_line - mouth.cx) / (0.5 * mouth.w + 0.12 * face.w)) ** 2)) * taper
        self._x_line, self._seam, self._x0, self._y0 = x_line, seam, x0, y0
        self._xs, self._ys, self._rel = xs, ys, rel
        self._lip_weight = ((1 - depth) * fall).astype(np.float32)
        self._jaw_weight = (jaw_across[None, :] * depth * fall).astype(np.float32)
        self._lift_weight = _smoothstep(-0.9 * mouth.h, 0.0, rel)  # the upper lip rises, the nose does not
        self._below = (rel >= 0).astype(np.float32)
        self._spread_across = np.exp(-(((x_line - mouth.cx) / (1.7 * self._half)) ** 2)) * taper
        # the teeth belong to the skull: their pattern does not follow the lips
        t = np.abs(x_line - mouth.cx) / self._half
        joints = np.minimum(1, sum(np.exp(-(((t - gap) * self._half / max(0.8, 0.015 * mouth.w)) ** 2))
                                   for gap in TEETH_JOINTS))
        self._teeth_shade = np.clip(1 - 0.5 * t ** 2, 0.3, 1) * (1 - 0.1 * joints)
        # the band is shallower towards the corners, and each tooth's edge is rounded where it meets the next
        self._teeth_arch = np.clip(1 - 0.45 * t ** 2, 0.15, 1) * (1 - 0.12 * joints)
        self._teeth_height = 0.095 * mouth.w
        self._paint = _mouth_colours(self.image, face)

    def _open_mouth(self, frame: np.ndarray, shape: MouthShape) -> None:
        opening, wide, rounded = (min(1.0, max(0.0, v)) for v in (shape.open, shape.wide, shape.round))
        spread = 0.10 * wide - 0.22 * rounded  # the lips' horizontal stretch at the middle
        drop = self.jaw_drop * opening * (1 - 0.15 * rounded)
        lift = drop * (0.10 + 0.14 * wide + 0.25 * rounded)  # an "o" arches the upper lip too
        # lips part from the middle outwards; pursed lips leave a smaller hole
        half_open = self._half * (1 + spread) * (0.88 - 0.28 * rounded) * (0.5 + 0.5 * _ease(opening / 0.4))
        u = np.abs(self._x_line - self._cx) / half_open
        power, sharp = 2.0 + 0.8 * wide * (1 - rounded), 0.75 - 0.25 * rounded
        bottom = np.clip(1 - u ** power, 0, 1) ** sharp  # the lower lip's curve (1 in the middle)
        top = np.clip(1 - u ** (power + 1.0 - rounded), 0, 1) ** sharp  # the upper lip's: flatter
        down = drop * (bottom[None, :] * self._lip_weight + self._jaw_weight)
        up = (lift * top)[None, :] * self._lift_weight
        source_y = self._ys - down * self._below + up * (1 - self._below)
        source_x = self._xs
        if abs(spread) > 0.002 or rounded > 0.01:
            offset = source_y - self._seam[None, :]
            h = self._lip_h
            band = _smoothstep(-1.25 * h, -0.6 * h, offset) * (1 - _smoothstep(0.7 * h, 1.3 * h, offset))
            weight = self._spread_across[None, :] * band
            source_x = self._cx + (self._xs - self._cx) / (1 + spread * weight)
            source_y = self._seam[None, :] + offset / (1 + 0.2 * rounded * weight)  # pursed lips look fuller
        warped = cv2.remap(self.image, source_x, source_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        cols = np.nonzero(u < 1.02)[0]
        if drop > 0.05 and cols.size:
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            seam = self._seam[c0:c1]
            r0 = max(0, int(seam.min() - lift) - self._y0 - 2)
            r1 = min(warped.shape[0], int(seam.max() + drop) - self._y0 + 3)
            if r1 > r0:
                part = (slice(r0, r1), slice(c0, c1))
                gap = (lift * top + drop * bottom)[c0:c1]
                warped[part] = self._paint_gap(warped[part], self._rel[part], down[part], up[part], gap,
                                               u[c0:c1], slice(c0, c1), opening, wide, rounded, drop)
        frame[self.jaw_roi] = warped

    def _paint_gap(self, lips: np.ndarray, rel: np.ndarray, down: np.ndarray, up: np.ndarray, gap: np.ndarray,
                   u: np.ndarray, cols: slice, opening: float, wide: float, rounded: float,
                   drop: float) -> np.ndarray:
        """The region around the gap between the lips, with the teeth, the inside and the tongue painted in."""
        paint = self._paint
        # how much of each pixel (rows rel-0.5..rel+0.5) lies in the gap between -up and +down
        cover = np.clip(np.minimum(rel + 0.5, down) - np.maximum(rel - 0.5, -up), 0, 1) * min(1.0, 5 * opening)
        depth = np.clip((rel + up) / np.maximum(gap, 0.5), 0, 1)  # 0 under the upper lip, 1 on the lower
        middle = np.clip(1 - u ** 2, 0, 1)
        inside = paint.interior * ((0.6 + 0.5 * depth) * (0.55 + 0.45 * middle))[..., None]
        # the tongue: the top of a rounded shape rising from behind the lower lip
        shown = _smoothstep(0.25, 0.8, opening) * (1 - 0.5 * rounded) * 0.85
        if shown > 0.01:
            bulge = 1 - (u / 0.62) ** 2 - ((rel - 1.05 * drop) / (0.55 * drop)) ** 2
            tongue = np.clip(3 * bulge, 0, 1) * shown
            inside += (paint.tongue * (0.75 + 0.25 * np.clip(2 * bulge, 0, 1))[..., None] - inside) * tongue[..., None]
        # the upper teeth: a band under the upper lip, deeper when the lips spread, hidden when they purse
        visible = float(np.clip(0.35 + 0.75 * wide - 0.6 * rounded, 0.05, 1.0)) * _smoothstep(0.02, 0.2, opening)
        height = np.minimum(self._teeth_height * visible * self._teeth_arch[cols], 0.65 * gap)
        if visible > 0.01:
            teeth = np.clip(height - up - rel + 0.5, 0, 1)  # pixels above the band's lower edge, -up + height
            teeth *= 1 - _smoothstep(0.55, 0.95, u)  # the side teeth are in the cheeks' shadow
            along = np.clip((rel + up) / np.maximum(height, 0.5), 0, 1)
            light = 0.8 + 0.2 * _smoothstep(0.0, 0.4, along) - 0.06 * _smoothstep(0.75, 1.0, along)
            shade = paint.teeth * (light * self._teeth_shade[cols])[..., None]
            inside += (shade - inside) * teeth[..., None]
        # the lips' inner edges catch a little shadow
        outside = np.maximum(rel - down, -up - rel)
        rim = np.clip(1 - outside / 1.6, 0, 1) * (1 - cover) * min(1.0, 4 * opening) * middle ** 0.5
        lips = lips.astype(np.float32) * (1 - 0.22 * rim)[..., None]
        painted: np.ndarray = (lips + (inside - lips) * cover[..., None] + 0.5).astype(np.uint8)
        return painted

    # -- the eyelids: a lid the colour of the skin above the eye closes from the top ------------------

    def _prepare_eye(self, eye: Box) -> _Eyelid:
        h, w = self.image.shape[:2]
        x0, x1 = int(max(0, eye.x)), int(min(w, eye.x + eye.w))
        y0, y1 = int(max(0, eye.y)), int(min(h, eye.y + eye.h))
        above = self.image[max(0, y0 - int(0.35 * eye.h)):y0, x0:x1]
        lid = (above.reshape(-1, 3).mean(axis=0) if above.size else self.image[y0, x0]).astype(np.float32)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rx, ry = 0.42 * eye.w, 0.24 * eye.h
        inside = np.clip(3.0 * (1.25 - np.hypot((xs - eye.cx) / rx, (ys - eye.cy) / ry)), 0, 1)
        return _Eyelid((slice(y0, y1), slice(x0, x1)), ys, eye.cy - ry, 2 * ry, inside, lid * 0.9)

    def _blink(self, frame: np.ndarray, closure: float) -> None:
        for roi, ys, top, height, inside, lid in self._eyelids:
            edge = top + closure * height * 0.85
            covered = (np.clip((edge - ys) / 1.5, 0, 1) * inside)[..., None]
            lashes = (np.exp(-(((ys - edge) / 1.3) ** 2)) * inside * closure)[..., None]
            lidded = frame[roi] * (1 - covered) + lid * covered
            frame[roi] = (lidded * (1 - 0.6 * lashes)).astype(np.uint8)

    # -- one frame ------------------------------------------------------------------------------------

    def frame(self, mouth: MouthShape | float = 0.0, closure: float = 0.0, pose: Pose = AT_REST) -> np.ndarray:
        """An RGB frame with the mouth shaped (a MouthShape, or a float: how far it opens, 0..1), the eyes
        closed (0..1) and the head posed."""
        frame = self.image.copy()
        shape = mouth if isinstance(mouth, MouthShape) else MouthShape(open=float(mouth))
        closure = float(closure)
        if self.layout is not None:
            if self._has_mouth and (shape.open > 0.01 or shape.wide > 0.02 or shape.round > 0.01):
                self._open_mouth(frame, shape)
            if closure > 0.01:
                self._blink(frame, min(1.0, closure))
        return self._place(frame, pose)

    # -- the pose: where the head is -------------------------------------------------------------------

    @functools.cached_property
    def _head(self) -> HeadWarp:
        return HeadWarp(self.image.shape, self.layout.face if self.layout else None)

    def _place(self, frame: np.ndarray, pose: Pose) -> np.ndarray:
        """frame with the head moved to pose (the background and the borders stay the still portrait)."""
        return self._head.apply(frame, pose, self.unit)
