"""How a driving video's face moves: its shots, the face to follow in each, and per frame a pose, mouth and blink.

The analysis reads the video once, small and grey, and keeps a few numbers per frame, never the frames:

1. Shots. A hard cut is a jump in the grey-level histogram between two frames; near-black frames (a fade's
   start) show nothing. Motion is measured from the start of each shot, so a cut re-anchors instead of jumping.
2. Faces. Haar detections every STRIDE frames are joined into tracks (near the last box, a similar size,
   gaps of up to MAX_GAP frames bridged); positions between detections are interpolated, which the offline
   analysis can afford. A track that jumps (a dissolve, another person) ends and another begins.
3. The face to follow, per shot: the track with the most face in it (size x frames seen); then, in the time
   it does not cover, the next such track. Every followed track is a segment with its own anchor.
4. Pose: the segment's face position and size relative to its anchor, smoothed and softly limited to what a
   head does (a fifth of a face width, +-10 % size). Between segments the character eases back to rest.
5. Mouth and eyes: how dark the driving face's lips and eyes are, normalised per segment; a mouth that does
   not change stays closed, a short dip of the eyes' darkness is a blink.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import subprocess
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .. import _procs
from .._faces import Box, cascade
from .._ffmpeg import ffmpeg_exe, ffmpeg_input
from ._signals import BLINK_PROFILE, blinks
from ._tracking import Pose

FPS = 25
WIDTH = 240  # driving frames are analysed this wide: faces down to a ninth of the height are found
STRIDE = 3  # a full face detection every STRIDE frames; the analysis is offline, so it interpolates between
MAX_GAP = 12  # frames a face may go unseen (a turn, a hand) and still be the same track
TILTS = (0, 15, -15, 30, -30)  # degrees: a face the upright search misses is looked for tilted
MAX_LIVE = 6  # faces followed at once (a crowd, or a texture full of false faces, keeps only the largest)
MIN_SEEN = 3  # detections a track needs to be kept: fewer is a false face, never followed
CUT = 0.4  # histogram distance (0..1) between consecutive frames that marks a hard cut
BLANK = 14  # mean grey level under which a frame shows nothing (a fade from or to black)
REACH = (0.18, 0.12, 0.1, 0.14)  # the largest head motion passed on: x, y in face widths, log size, tilt
EASE = 0.88  # per frame, how much of a left-over offset remains (a cut or a lost face eases out in ~0.3 s)
MOUTH_RANGE = 0.06  # a driving mouth whose darkness moves less than this within a second stays closed


@dataclasses.dataclass(frozen=True)
class DrivingMotion:
    """Per output frame: the pose to give the character, its mouth opening (0..1) and eye closure (0..1)."""

    poses: list[Pose]
    mouth: np.ndarray
    closure: np.ndarray
    face_found: bool
    shots: tuple[int, ...] = ()  # the first frame of every shot
    followed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))  # a driving face seen


@dataclasses.dataclass
class _Track:
    """One face followed through consecutive detections: a box, mouth and eye darkness per frame."""

    first: int
    boxes: list[Box]
    angles: list[float]  # the tilt (radians, counter-clockwise) at which the face was found
    mouth: list[float]
    eyes: list[float]
    seen: list[int]  # frames with a detection (not interpolated)

    @property
    def last(self) -> int:
        return self.first + len(self.boxes) - 1

    @property
    def weight(self) -> float:
        return sum(self.boxes[f - self.first].w for f in self.seen)


def analyse_driving(video: Path, count: int, size: tuple[int, int],
                    on_progress: Callable[[float], None] | None = None) -> DrivingMotion:
    """Analyse count frames of video (size: its width and height) at 25 fps, streamed small and grey."""
    width, height = WIDTH, max(2, int(round(size[1] * WIDTH / max(1, size[0]) / 2) * 2))
    # -t: however the timestamps jump, the analysis never decodes past the length it was asked for
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-t", f"{count / FPS + 1:.3f}", "-i", ffmpeg_input(video), "-an",
           "-vf", f"fps={FPS},scale={width}:{height}", "-pix_fmt", "gray", "-f", "rawvideo", "-"]
    collector = _Collector(width, height)
    proc = _procs.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    stdout = proc.stdout
    assert stdout is not None  # stdout=PIPE
    try:
        while collector.frames < count:
            raw = stdout.read(width * height)
            if len(raw) < width * height:
                break
            collector.add(np.frombuffer(raw, dtype=np.uint8).reshape(height, width))
            if on_progress and collector.frames % 10 == 0:
                on_progress(collector.frames / count)
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
    if collector.frames == 0:
        raise ValueError("has no decodable frames")
    collector.finish()
    return motion_of(collector.tracks, collector.cuts, collector.frames, count, width)


class _Collector:
    """Reads frames in order and keeps per frame only histogram distances, and per face track a few numbers."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.frames = 0
        self.cuts: list[int] = [0]
        self.tracks: list[_Track] = []
        self._live: list[_Track] = []
        self._recent: deque[np.ndarray] = deque(maxlen=MAX_GAP + 1)  # the frames a new detection fills in
        self._hist: np.ndarray | None = None
        self._detect_next = True

    def add(self, gray: np.ndarray) -> None:
        index = self.frames
        self.frames += 1
        hist = np.asarray(cv2.calcHist([gray], [0], None, [32], [0, 256]), dtype=np.float32).ravel()
        hist /= max(1.0, float(hist.sum()))
        blank = float(gray.mean()) < BLANK
        if self._hist is not None and index > 0 and 0.5 * float(np.abs(hist - self._hist).sum()) > CUT:
            self._cut(index)
        self._hist = hist
        self._recent.append(gray)
        if blank:
            self._close_stale(index, force=False)
            return
        if self._detect_next or index % STRIDE == 0:
            self._detect_next = False
            self._detect(index, gray)

    def _cut(self, index: int) -> None:
        if index - self.cuts[-1] >= 3:  # a flash of a frame or two is not a shot
            self.cuts.append(index)
        self._close_stale(index, force=True)
        self._recent.clear()
        self._detect_next = True

    def _detect(self, index: int, gray: np.ndarray) -> None:
        equalised = cv2.equalizeHist(gray)
        updated: list[Box] = []
        for track in sorted(self._live, key=lambda t: -t.boxes[-1].w):
            found = _refind(equalised, track.boxes[-1])
            if found is not None:
                self._extend(track, index, *found)
                updated.append(found[0])
        side = max(20, int(min(gray.shape) * 0.11))
        boxes = [Box(float(x), float(y), float(w), float(h)) for x, y, w, h in
                 cascade("haarcascade_frontalface_default.xml").detectMultiScale(
                     equalised, scaleFactor=1.2, minNeighbors=4, minSize=(side, side))]
        boxes = [b for b in boxes if all(math.hypot(b.cx - u.cx, b.cy - u.cy) > 0.5 * u.w for u in updated)]
        room = max(0, MAX_LIVE - len(self._live))
        for box in sorted(boxes, key=lambda b: -b.w)[:room]:
            track = _Track(first=index, boxes=[], angles=[], mouth=[], eyes=[], seen=[])
            self._extend(track, index, box, 0.0)
            self._live.append(track)
        self._close_stale(index, force=False)

    def _extend(self, track: _Track, index: int, box: Box, angle: float) -> None:
        """Add a detection at index, filling the frames since the track's last one by interpolation."""
        start = track.last + 1 if track.boxes else index
        previous = track.boxes[-1] if track.boxes else box
        turned = track.angles[-1] if track.angles else angle
        for frame in range(start, index + 1):
            t = (frame - start + 1) / (index - start + 1)
            ends = zip(dataclasses.astuple(previous), dataclasses.astuple(box), strict=True)
            between = Box(*(a + (b - a) * t for a, b in ends))
            gray = self._frame(frame)
            track.boxes.append(between)
            track.angles.append(turned + (angle - turned) * t)
            track.mouth.append(_mouth_darkness(gray, between) if gray is not None else math.nan)
            track.eyes.append(_eye_darkness(gray, between) if gray is not None else math.nan)
        track.seen.append(index)

    def _frame(self, index: int) -> np.ndarray | None:
        back = self.frames - 1 - index
        return self._recent[-1 - back] if back < len(self._recent) else None

    def _close_stale(self, index: int, *, force: bool) -> None:
        for track in list(self._live):
            if force or index - track.last > MAX_GAP:
                self._live.remove(track)
                if len(track.seen) >= MIN_SEEN:
                    self.tracks.append(track)

    def finish(self) -> None:
        self._close_stale(self.frames, force=True)


def _refind(equalised: np.ndarray, box: Box) -> tuple[Box, float] | None:
    """The face last seen at box, searched near it at its size, upright and then tilted: (box, tilt) or None."""
    h, w = equalised.shape
    x0, y0 = int(max(0, box.cx - 1.1 * box.w)), int(max(0, box.cy - 1.1 * box.h))
    x1, y1 = int(min(w, box.cx + 1.1 * box.w)), int(min(h, box.cy + 1.1 * box.h))
    roi = equalised[y0:y1, x0:x1]
    if roi.shape[0] < 20 or roi.shape[1] < 20:
        return None
    low, high = int(0.7 * box.w), int(1.45 * box.w) + 1
    centre = ((x1 - x0) / 2, (y1 - y0) / 2)
    for tilt in TILTS:
        image, matrix = roi, None
        if tilt:
            matrix = cv2.getRotationMatrix2D(centre, tilt, 1.0)
            image = cv2.warpAffine(roi, matrix, (roi.shape[1], roi.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        found = cascade("haarcascade_frontalface_default.xml").detectMultiScale(
            image, scaleFactor=1.1, minNeighbors=3, minSize=(max(20, low), max(20, low)), maxSize=(high, high))
        candidates = []
        for fx, fy, fw, fh in found:
            cx, cy = fx + fw / 2, fy + fh / 2
            if matrix is not None:  # back from the rotated search image to the frame
                cx, cy = cv2.invertAffineTransform(matrix) @ np.array([cx, cy, 1.0])
            candidates.append(Box(x0 + cx - fw / 2, y0 + cy - fh / 2, float(fw), float(fh)))
        match = _nearest(box, candidates)
        if match is not None:
            return match, math.radians(-tilt)  # the search turned the picture the other way
    return None


def _nearest(box: Box, candidates: list[Box]) -> Box | None:
    """The candidate that continues box: close to it and of a similar size, or None."""
    near = [c for c in candidates if math.hypot(c.cx - box.cx, c.cy - box.cy) < 0.6 * box.w and
            0.7 < c.w / box.w < 1.45]
    return min(near, key=lambda c: math.hypot(c.cx - box.cx, c.cy - box.cy), default=None)


def _region(gray: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    h, w = gray.shape
    return gray[int(max(0, y0)):int(min(h, y1)), int(max(0, x0)):int(min(w, x1))]


def _mouth_darkness(gray: np.ndarray, face: Box) -> float:
    """How much of the lips' area is darker than the skin around it: grows as the mouth opens."""
    region = _region(gray, face.cx - 0.22 * face.w, face.y + 0.66 * face.h, face.cx + 0.22 * face.w,
                     face.y + 0.98 * face.h)
    if region.size < 16:
        return math.nan
    return float(np.mean(region < 0.55 * float(np.percentile(region, 80))))


def _eye_darkness(gray: np.ndarray, face: Box) -> float:
    """How much of the eyes' band is dark (irises, pupils, lashes): dips when the eyes close."""
    region = _region(gray, face.x + 0.15 * face.w, face.y + 0.28 * face.h, face.x + 0.85 * face.w,
                     face.y + 0.5 * face.h)
    if region.size < 16:
        return math.nan
    return float(np.mean(region < 0.5 * float(np.percentile(region, 90))))


# -- from tracks to per-frame controls (pure: tested without video) ---------------------------------------


def motion_of(tracks: list[_Track], cuts: list[int], analysed: int, count: int, width: int) -> DrivingMotion:
    """The character's controls for count frames from the driving video's face tracks and shot starts."""
    bounds = [*sorted(set(cuts)), max(analysed, count)]
    target = np.zeros((count, 4))  # dx, dy, log scale, tilt; 0 = at rest
    mouth = np.zeros(count)
    closure = np.zeros(count)
    followed = np.zeros(count, bool)
    reset = np.zeros(count, bool)  # where a new anchor starts: the old offset eases out from here
    for start, end in itertools.pairwise(bounds):
        if start < count:
            reset[start] = True
        for track in _followed(tracks, start, end):
            first, last = track.first, min(track.last, count - 1)
            if first > last:
                continue
            span = slice(first, last + 1)
            target[span] = _limited(_relative(track, last - first + 1))
            mouth[span] = _mouth_opening(np.array(track.mouth[:last - first + 1]))
            closure[span] = _driver_blinks(np.array(track.eyes[:last - first + 1]))
            followed[span] = True
            reset[first] = True
            if last + 1 < count:
                reset[last + 1] = True
    natural = blinks(count, FPS)
    closure = np.where(followed, closure, natural)  # eyes that cannot be seen blink at a natural rate
    return DrivingMotion(poses=_eased(target, reset), mouth=mouth, closure=closure.astype(np.float32),
                         face_found=bool(followed.any()), shots=tuple(b for b in bounds[:-1] if b < count),
                         followed=followed)


def _followed(tracks: list[_Track], start: int, end: int) -> list[_Track]:
    """The tracks to follow in the shot [start, end): the heaviest first, then others in the time left."""
    inside = sorted((t for t in tracks if start <= t.first < end and len(t.seen) >= MIN_SEEN),
                    key=lambda t: -t.weight)
    chosen: list[_Track] = []
    for track in inside:
        if all(track.last < other.first or track.first > other.last for other in chosen):
            chosen.append(track)
    return sorted(chosen, key=lambda t: t.first)


def _relative(track: _Track, frames: int) -> np.ndarray:
    """Per frame (dx, dy, log scale, tilt) of the first frames of track from the segment's anchor, in anchor
    face widths and radians; smoothed."""
    values = np.array([(b.cx, b.cy, b.w, a) for b, a in zip(track.boxes[:frames], track.angles[:frames], strict=True)])
    # detections come every STRIDE frames; their size and tilt jitter more than their centre
    values = np.column_stack([_gaussian(values[:, :2], sigma=2.0), _gaussian(values[:, 2:], sigma=4.0)])
    anchor = np.median(values[:5], axis=0)
    return np.column_stack([(values[:, 0] - anchor[0]) / anchor[2], (values[:, 1] - anchor[1]) / anchor[2],
                            np.log(values[:, 2] / anchor[2]), values[:, 3] - anchor[3]])


def _limited(raw: np.ndarray) -> np.ndarray:
    """Head motion within a head's reach, per axis: a segment that moves further (a camera pan, a walk) is
    scaled down as a whole, so the motion keeps its shape, and what is left is softly limited (tanh)."""
    reach = np.array(REACH)
    extent = np.percentile(np.abs(raw), 98, axis=0) if len(raw) else reach
    gain = np.minimum(1.0, 0.8 * reach / np.maximum(extent, 1e-6))
    limited: np.ndarray = reach * np.tanh(raw * gain / reach)
    return limited


def _eased(target: np.ndarray, reset: np.ndarray) -> list[Pose]:
    """Poses that follow target, where every re-anchoring (cut, new face, face lost) eases out instead of jumping."""
    poses: list[Pose] = []
    offset = np.zeros(4)
    previous = np.zeros(4)
    for i, value in enumerate(target):
        if reset[i] and i > 0:
            offset = previous - value
        out = value + offset
        offset *= EASE
        previous = out
        poses.append(Pose(dx=float(out[0]), dy=float(out[1]), scale=float(math.exp(out[2])), angle=float(out[3])))
    return poses


def _gaussian(values: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    return np.column_stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(values.shape[1])])


def _filled(values: np.ndarray) -> np.ndarray:
    """values with NaNs replaced by the nearest known value (all zeros if none is known)."""
    known = np.flatnonzero(~np.isnan(values))
    if known.size == 0:
        return np.zeros_like(values)
    filled: np.ndarray = np.interp(np.arange(values.size), known, values[known])
    return filled


def _mouth_opening(darkness: np.ndarray) -> np.ndarray:
    """0..1 per frame from the lips' darkness within one segment; 0 throughout if it does not move like speech."""
    from ._signals import smooth

    darkness = _filled(darkness)
    # a mouth that talks changes within a second; a still mouth only drifts as the framing changes
    second = np.convolve(np.pad(darkness, (FPS // 2, FPS // 2), mode="edge"), np.ones(FPS) / FPS, mode="valid")
    low, high = np.percentile(darkness - second, [3, 97])
    if high - low < MOUTH_RANGE:
        return np.zeros_like(darkness)
    low, high = np.percentile(darkness, [10, 97])
    return smooth(np.clip((darkness - low) / max(high - low, 1e-6), 0.0, 1.0), attack=0.8, release=0.5)


def _driver_blinks(darkness: np.ndarray) -> np.ndarray:
    """Eye closure per frame: a blink profile wherever the eyes' darkness dips briefly below its usual level."""
    darkness = _filled(darkness)
    closure = np.zeros_like(darkness)
    if darkness.size < 10:
        return closure
    usual = np.array([np.median(darkness[max(0, i - 12):i + 13]) for i in range(darkness.size)])
    dipped = (darkness < 0.55 * usual) & (usual > 0.04)
    i = 0
    while i < dipped.size:
        if dipped[i]:
            j = i
            while j < dipped.size and dipped[j]:
                j += 1
            if j - i <= 8:  # longer is a look down or a lost face, not a blink
                for k, value in enumerate(BLINK_PROFILE):
                    if i - 1 + k < closure.size:
                        closure[i - 1 + k] = max(closure[i - 1 + k], value)
            i = j
        else:
            i += 1
    return closure
