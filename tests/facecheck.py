"""Face measurements for judging the engine's videos, independent of the engine.

The engine finds faces with OpenCV's Haar cascades; everything here uses scikit-image's LBP frontal face
cascade instead (a different detector, trained differently), so a test cannot pass because the engine and
the test share the same blind spots. Boxes are (x, y, w, h) in the pixels of the frame they were found in.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height

DETECTOR_WINDOW = 24  # the LBP cascade's training window (px): the smallest face it can find
WORK_FACE_WIDTH = 80  # expected faces are shrunk to about this width before searching (speed)
SIZE_BAND = (0.4, 2.5)  # faces_sized() searches widths from 0.4x to 2.5x the expected width


@functools.lru_cache(maxsize=1)
def _cascade():  # skimage's Cascade is a Cython class without stubs
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def read_gray_frames(video: Path, step: int = 1, limit: int = 100_000) -> list[np.ndarray]:
    """Frames 0, step, 2*step, ... of a video as 2-D uint8 grey arrays (at most limit frames read)."""
    capture = cv2.VideoCapture(str(video))
    frames: list[np.ndarray] = []
    try:
        for index in range(limit):
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        capture.release()
    return frames


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """An RGB uint8 image as grey, with the same weights as the frames read by read_gray_frames()."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not touch)."""
    inter = _intersection(a, b)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def _intersection(a: Box, b: Box) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def centre(box: Box) -> tuple[float, float]:
    """The box's centre (x, y)."""
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def merge_boxes(boxes: Iterable[Box], overlap: float = 0.5) -> list[Box]:
    """Overlapping detections of one face merged into one box (their mean), largest faces first.

    Two boxes are the same face when their intersection covers at least `overlap` of the smaller one (the
    cascade sometimes reports a face twice, one box nested in the other). Boxes that merely touch stay apart.
    """
    groups: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: -b[2]):
        for group in groups:
            head = group[0]
            if _intersection(head, box) >= overlap * min(head[2] * head[3], box[2] * box[3]):
                group.append(box)
                break
        else:
            groups.append([box])
    merged = [tuple(int(round(v)) for v in np.mean(np.array(group, dtype=float), axis=0)) for group in groups]
    return sorted(merged, key=lambda b: -b[2])  # type: ignore[return-value]


def detect_faces(gray: np.ndarray, min_width: int = DETECTOR_WINDOW, max_width: int | None = None,
                 shrink: float = 1.0) -> list[Box]:
    """LBP frontal faces of a grey frame with widths in [min_width, max_width], merged, largest first.

    shrink >= 1 divides the frame's sides before searching (faster; min_width is then at least shrink times
    the detector's 24 px window); boxes are returned in the frame's own pixels.
    """
    shrink = max(1.0, float(shrink))
    small = gray if shrink == 1.0 else cv2.resize(
        gray, (max(1, round(gray.shape[1] / shrink)), max(1, round(gray.shape[0] / shrink))),
        interpolation=cv2.INTER_AREA)
    low = max(DETECTOR_WINDOW, int(min_width / shrink))
    high = int((max_width or max(gray.shape)) / shrink)
    if high < low:
        return []
    found = _cascade().detect_multi_scale(img=small, scale_factor=1.2, step_ratio=1, min_size=(low, low),
                                          max_size=(high, high))
    boxes = [(d["c"], d["r"], d["width"], d["height"]) for d in found]
    return merge_boxes(tuple(int(round(v * shrink)) for v in box) for box in boxes)  # type: ignore[misc]


def faces_sized(gray: np.ndarray, width: float) -> list[Box]:
    """LBP faces whose width is near an expected width (0.4x to 2.5x), searched with the face shrunk to ~80 px.

    The same procedure measures a reference face and the frames compared with it, so both carry the same
    detector bias (restricting or rescaling the search moves the LBP boxes by up to ~10%).
    """
    shrink = max(1.0, width / WORK_FACE_WIDTH)
    return detect_faces(gray, int(SIZE_BAND[0] * width), int(SIZE_BAND[1] * width) + 1, shrink)


def faces_near(ref: Box, detections: Sequence[Box], size: tuple[float, float] = (0.5, 2.0),
               reach: float = 1.0) -> list[Box]:
    """The detections that can be the reference face: width within size x ref's, centre within reach ref widths."""
    rx, ry = centre(ref)
    near = []
    for box in detections:
        cx, cy = centre(box)
        if size[0] * ref[2] <= box[2] <= size[1] * ref[2] and np.hypot(cx - rx, cy - ry) <= reach * ref[2]:
            near.append(box)
    return near


def faces_around(gray: np.ndarray, ref: Box, size: tuple[float, float] = (0.5, 2.0), reach: float = 1.0) -> list[Box]:
    """faces_near(ref, ...) of a frame, searched (faces_sized) only in the part of it such faces can reach."""
    rx, ry = centre(ref)
    extent = (reach + size[1] / 2) * ref[2]
    x0, y0 = max(0, int(rx - extent)), max(0, int(ry - extent))
    x1, y1 = min(gray.shape[1], int(np.ceil(rx + extent))), min(gray.shape[0], int(np.ceil(ry + extent)))
    if x1 <= x0 or y1 <= y0:
        return []
    found = faces_sized(gray[y0:y1, x0:x1], ref[2])
    return faces_near(ref, [(x + x0, y + y0, w, h) for x, y, w, h in found], size, reach)


def is_doubled(near: Sequence[Box], max_iou: float = 0.2) -> bool:
    """True when two of the boxes are separate faces (they overlap by less than max_iou)."""
    return any(iou(a, b) < max_iou for i, a in enumerate(near) for b in near[i + 1:])


def follow_face(per_frame: Sequence[Sequence[Box]], reach: float = 1.0) -> list[Box | None]:
    """One face through a shot: the largest in its first frame with one, then the box continuing it.

    From the last frame where the face was found, the next is the detection whose centre is nearest, within
    reach widths and with a width 0.67x to 1.5x; frames without one are None (a false box elsewhere in the
    frame never takes over the track).
    """
    track: list[Box | None] = []
    last: Box | None = None
    for boxes in per_frame:
        pick: Box | None = None
        if last is None:
            pick = max(boxes, key=lambda b: b[2], default=None)
        else:
            candidates = faces_near(last, boxes, size=(0.67, 1.5), reach=reach)
            lx, ly = centre(last)
            pick = min(candidates, key=lambda b: np.hypot(centre(b)[0] - lx, centre(b)[1] - ly), default=None)
        track.append(pick)
        last = pick or last
    return track


def relative_centres(track: Sequence[Box | None], origin: Box) -> np.ndarray:
    """Each box's centre minus origin's, in units of origin's width; rows (NaN, NaN) where the box is None."""
    ox, oy = centre(origin)
    return np.array([((centre(b)[0] - ox) / origin[2], (centre(b)[1] - oy) / origin[2]) if b else (np.nan, np.nan)
                     for b in track], dtype=float).reshape(-1, 2)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two equally long series (NaN when either is constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def loudness_db_per_frame(video: Path, count: int, fps: int = 25, rate: int = 16000) -> np.ndarray:
    """RMS loudness in dB of a file's audio track per video frame (1/fps s), decoded by the bundled ffmpeg."""
    from spark_nb._ffmpeg import ffmpeg_exe

    raw = subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(video), "-vn", "-ac", "1", "-ar",
                          str(rate), "-f", "s16le", "-"], capture_output=True, check=True, timeout=240).stdout
    pcm = np.frombuffer(raw, dtype=np.int16).astype(np.float64)
    hop = rate // fps
    pcm = np.pad(pcm, (0, max(0, count * hop - len(pcm))))
    rms = np.sqrt(np.mean(pcm[:count * hop].reshape(count, hop) ** 2, axis=1))
    return 20 * np.log10(rms + 1.0)


def border_strips(gray: np.ndarray, fraction: float = 0.06) -> dict[str, np.ndarray]:
    """The outer strips (left, right, top, bottom) of a grey frame, each fraction of its side thick."""
    h, w = gray.shape
    kx, ky = max(1, round(fraction * w)), max(1, round(fraction * h))
    return {"left": gray[:, :kx], "right": gray[:, w - kx:], "top": gray[:ky, :], "bottom": gray[h - ky:, :]}


def mirror_difference(gray: np.ndarray, side: str, fraction: float = 0.06, min_width: int = 4,
                      band: int = 32) -> float:
    """How well the side's outer strip is a mirror image of the pixels inside it (mean |grey diff|, 0 = exact).

    A frame moved with a reflecting border (OpenCV's BORDER_REFLECT or BORDER_REFLECT_101) shows, for some
    axis d, column j equal to column 2d-1-j or 2d-j (rows, at the top and bottom). The strip is cut into
    bands `band` pixels long, since a rotated frame tilts the axis; in each band every axis d from min_width
    to twice the strip's thickness is tried, and the best (smallest) difference is kept. The result is the
    mean over the bands. Flat or self-similar content mirrors itself too: compare it with the strip's
    difference from the still picture, never with zero.
    """
    oriented = {"left": gray, "right": gray[:, ::-1], "top": gray.T, "bottom": gray[::-1].T}[side].astype(np.float32)
    rows, cols = oriented.shape
    k = max(min_width, round(fraction * cols))
    count = rows // band
    if count == 0 or 4 * k + 1 > cols:
        return float("inf")
    oriented = oriented[:count * band]
    best = np.full(count, np.inf, dtype=np.float32)
    for d in range(min_width, 2 * k + 1):
        width = min(d, k)
        for partner_of_zero in (2 * d - 1, 2 * d):  # BORDER_REFLECT, BORDER_REFLECT_101
            partners = partner_of_zero - np.arange(width)
            diff = np.abs(oriented[:, :width] - oriented[:, partners]).mean(axis=1)
            best = np.minimum(best, diff.reshape(count, band).mean(axis=1))
    return float(best.mean())


def contact_sheet(images: Sequence[np.ndarray], columns: int = 6, height: int = 200) -> np.ndarray:
    """Images (grey or BGR) scaled to one height and tiled into a BGR sheet, for looking at by eye."""
    tiles = []
    for image in images:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        tiles.append(cv2.resize(bgr, (max(1, round(bgr.shape[1] * height / bgr.shape[0])), height)))
    width = max(t.shape[1] for t in tiles)
    tiles = [cv2.copyMakeBorder(t, 0, 0, 0, width - t.shape[1], cv2.BORDER_CONSTANT) for t in tiles]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    return np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
