"""Frame strips of the local engine on real media, for docs/engine.md (small JPEGs under docs/images/).

    python tools/engine_strips.py

Renders an imitation of the real film clip (cuts, a fade from black, a profile shot) and talking heads of
three real portraits (lower face, enlarged), and writes the strips: driving input above the imitation, and a
row of mouth close-ups per portrait.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from spark_nb.local._engine import _load_portrait, render_avatar, render_imitation
from spark_nb.local._tracking import analyse

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "tests" / "media" / "real"
OUT = ROOT / "docs" / "images"
TILE = (180, 135)  # every frame of a strip is fitted into this (width, height)


def frames_at(video: Path, wanted: list[int]) -> list[np.ndarray]:
    """The frames of video at these indices (BGR)."""
    capture = cv2.VideoCapture(str(video))
    found, index = {}, 0
    while index <= max(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            found[index] = frame
        index += 1
    capture.release()
    return [found[i] for i in wanted if i in found]


def fit(frame: np.ndarray) -> np.ndarray:
    """frame scaled to fit a TILE (width, height) and centred on black, so every row lines up."""
    scale = min(TILE[0] / frame.shape[1], TILE[1] / frame.shape[0])
    small = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    tile = np.zeros((TILE[1], TILE[0], 3), np.uint8)
    y, x = (TILE[1] - small.shape[0]) // 2, (TILE[0] - small.shape[1]) // 2
    tile[y:y + small.shape[0], x:x + small.shape[1]] = small
    return tile


def strip(rows: list[list[np.ndarray]], labels: list[str], out: Path) -> None:
    """Rows of frames, each column labelled, written as a JPEG."""
    sheet = np.vstack([np.hstack([fit(f) for f in row]) for row in rows])
    for k, label in enumerate(labels):
        cv2.putText(sheet, label, (k * TILE[0] + 4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 255, 255), 1,
                    cv2.LINE_AA)
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 80])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="spark_nb_strips_"))
    clip = REAL / "film_cuts_fade.mp4"
    imitation = work / "imitation.mp4"
    render_imitation(REAL / "portrait_offcentre.jpg", clip, imitation)
    picks = [10, 40, 74, 90, 120, 139, 160, 190, 220]
    strip([frames_at(clip, picks), frames_at(imitation, picks)], [f"frame {i}" for i in picks],
          OUT / "engine-imitation-real.jpg")
    talking_rows, labels = [], []
    for name in ("portrait_gray_lowlight.jpg", "portrait_large_face.jpg", "portrait_small_face.jpg"):
        video = work / f"{name}.mp4"
        render_avatar(REAL / name, ROOT / "tests" / "media" / "speech.wav", video)
        layout = analyse(_load_portrait(REAL / name, 512))
        assert layout is not None, name
        face = layout.face  # the lower half of the face, enlarged: the mouth is what changes
        y0, y1 = int(face.cy - 0.1 * face.h), int(face.y + 1.25 * face.h)
        x0, x1 = int(face.cx - 0.6 * face.w), int(face.cx + 0.6 * face.w)
        picks = [0, 12, 20, 28, 36, 44, 52, 60, 70]
        talking_rows.append([f[max(0, y0):y1, max(0, x0):x1] for f in frames_at(video, picks)])
        labels = [f"frame {i}" for i in picks]
    strip(talking_rows, labels, OUT / "engine-avatar-real.jpg")
    for path in sorted(OUT.glob("engine-*-real.jpg")):
        print(path.relative_to(ROOT), f"{path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
