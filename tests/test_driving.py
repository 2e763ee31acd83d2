"""The driving video's analysis (local/_driving.py) and the head-only warp (local/_headwarp.py), unit by unit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from spark_nb._faces import Box
from spark_nb._ffmpeg import ffmpeg_exe
from spark_nb.local._driving import EASE, REACH, _Track, analyse_driving, motion_of
from spark_nb.local._headwarp import HeadWarp
from spark_nb.local._tracking import Pose

from .conftest import TOOL_TIMEOUT_S

REAL = Path(__file__).parent / "media" / "real"


def track(first: int, centres: list[tuple[float, float]], width: float = 40.0, mouth: float = 0.1) -> _Track:
    """A face track seen at every frame from first, at these centres."""
    boxes = [Box(x - width / 2, y - width / 2, width, width) for x, y in centres]
    n = len(boxes)
    return _Track(first=first, boxes=boxes, angles=[0.0] * n, mouth=[mouth] * n, eyes=[0.2] * n,
                  seen=list(range(first, first + n)))


def jumps(poses: list[Pose]) -> float:
    """The largest frame-to-frame change of the pose's position, in face widths."""
    xy = np.array([(p.dx, p.dy) for p in poses])
    return float(np.abs(np.diff(xy, axis=0)).max())


def test_a_cut_re_anchors_and_eases_instead_of_jumping() -> None:
    """After a cut the new shot's face is measured from its own start; the old offset eases out, no jump."""
    moving = track(0, [(100 + 2 * i, 100) for i in range(50)])  # drifts right: 0.05 face widths a frame
    elsewhere = track(50, [(20 + 0.5 * i, 60) for i in range(50)])  # another shot, far away on the frame
    motion = motion_of([moving, elsewhere], [0, 50], 100, 100, 240)
    assert motion.shots == (0, 50)
    assert motion.poses[49].dx > 0.1
    assert jumps(motion.poses) < 0.06  # the cut would jump by 2 face widths if it did not re-anchor
    late = np.array([p.dx for p in motion.poses[90:]])
    assert np.all(np.diff(late) > 0)  # by then it follows the second shot's own slow drift


def test_a_lost_face_eases_back_to_rest_and_blinks_naturally() -> None:
    """Where no face is followed the character returns to its rest pose within about a second."""
    seen = track(0, [(100 + 3 * i, 100) for i in range(30)])
    motion = motion_of([seen], [0], 100, 100, 240)
    assert abs(motion.poses[29].dx) > 0.1
    assert abs(motion.poses[-1].dx) < 0.01 and motion.poses[-1].scale == pytest.approx(1.0, abs=0.01)
    assert jumps(motion.poses) < 0.1
    assert not motion.followed[40:].any() and motion.closure[30:].max() > 0.5  # natural blinks at rest
    assert EASE ** 25 < 0.05


def test_the_heaviest_face_is_followed_and_the_other_ignored() -> None:
    """Two faces at once: the larger, steadier one drives; the small one's motion never reaches the pose."""
    big = track(0, [(60, 100)] * 60, width=60)
    small = track(0, [(180, 100 + 3 * i) for i in range(60)], width=30)
    motion = motion_of([small, big], [0], 60, 60, 240)
    assert max(abs(p.dy) for p in motion.poses) < 0.01


def test_motion_stays_within_a_heads_reach_and_keeps_its_shape() -> None:
    """A camera pan of 3 face widths becomes a head move within REACH that still rises steadily."""
    pan = track(0, [(40 + 3 * i, 100) for i in range(40)])
    motion = motion_of([pan], [0], 40, 40, 240)
    dx = np.array([p.dx for p in motion.poses])
    assert dx.max() <= REACH[0] + 1e-9
    assert np.corrcoef(dx, np.arange(40))[0, 1] > 0.95
    assert all(1 / np.exp(REACH[2]) - 1e-9 <= p.scale <= np.exp(REACH[2]) + 1e-9 for p in motion.poses)


def test_a_still_mouth_stays_closed_and_a_talking_one_opens() -> None:
    """Slow drift of the lips' darkness (a zoom) is not speech; a change within a second is."""
    still = track(0, [(100, 100)] * 75)
    still.mouth = list(np.linspace(0.1, 0.2, 75))
    talking = track(0, [(100, 100)] * 75)
    talking.mouth = [0.1 + 0.2 * (i // 5 % 2) for i in range(75)]
    assert motion_of([still], [0], 75, 75, 240).mouth.max() == 0.0
    assert motion_of([talking], [0], 75, 75, 240).mouth.max() > 0.8


def test_a_short_dip_of_the_eyes_is_a_blink() -> None:
    """The driver's blink (a few frames of less dark eyes) closes the character's eyes at that time."""
    face = track(0, [(100, 100)] * 75)
    face.eyes = [0.25] * 75
    face.eyes[40:43] = [0.05, 0.05, 0.05]
    closure = motion_of([face], [0], 75, 75, 240).closure
    assert closure[40:44].max() > 0.8 and closure[:35].max() == 0.0 and closure[50:].max() == 0.0


def _encode(frames: np.ndarray, out: Path) -> Path:
    h, w = frames.shape[1:3]
    subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}",
                    "-r", "25", "-i", "-", "-pix_fmt", "yuv420p", str(out)], input=frames.tobytes(), check=True,
                   timeout=TOOL_TIMEOUT_S)
    return out


def test_a_black_video_gives_a_character_at_rest(tmp_path: Path) -> None:
    """No face anywhere (a black clip): no pose, a closed mouth, natural blinks; nothing raises."""
    video = _encode(np.zeros((50, 120, 160), np.uint8), tmp_path / "black.mp4")
    motion = analyse_driving(video, 50, (160, 120))
    assert not motion.face_found and all(p == Pose() for p in motion.poses)
    assert motion.mouth.max() == 0.0 and len(motion.closure) == 50


def test_a_flickering_video_is_not_a_shot_per_frame(tmp_path: Path) -> None:
    """Alternating black and white frames: cuts are at least three frames apart, so the list stays short."""
    frames = np.zeros((60, 120, 160), np.uint8)
    frames[::2] = 255
    motion = analyse_driving(_encode(frames, tmp_path / "flicker.mp4"), 60, (160, 120))
    assert len(motion.shots) <= 20


def test_the_real_film_clip_has_its_shots_found() -> None:
    """The real clip's three hard cuts (frames 75, 140, 180) are found, and the fade from black is no cut."""
    motion = analyse_driving(REAL / "film_cuts_fade.mp4", 225, (480, 360))
    assert motion.shots == (0, 75, 140, 180)
    assert not motion.followed[140:180].any()  # a profile: no frontal face to follow, the character rests
    assert motion.followed[30:70].all() and motion.followed[190:220].all()


def portrait(size: int = 200) -> np.ndarray:
    """A textured picture with a face box in the middle (random texture: any mirroring would show)."""
    rng = np.random.default_rng(3)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


def test_the_head_moves_and_the_borders_stay_the_still_picture() -> None:
    """Inside the head the pixels follow the pose exactly; the outer strips are the input, untouched."""
    image = portrait()
    face = Box(70, 60, 60, 60)
    moved = HeadWarp(image.shape, face).apply(image, Pose(dx=0.2, dy=-0.1), unit=60)
    np.testing.assert_array_equal(moved[:10], image[:10])
    np.testing.assert_array_equal(moved[:, :10], image[:, :10])
    np.testing.assert_array_equal(moved[-10:], image[-10:])
    np.testing.assert_array_equal(moved[:, -10:], image[:, -10:])
    # the face centre moved by (12, -6) px: the pixel there now is the old centre's
    np.testing.assert_allclose(moved[90 - 6, 100 + 12].astype(int), image[90, 100].astype(int), atol=1)
    assert HeadWarp(image.shape, face).apply(image, Pose(), unit=60) is image


def test_without_a_face_the_whole_picture_moves_inside_its_zoom() -> None:
    """A faceless picture moves gently; even at the extreme pose no border row repeats (nothing uncovered)."""
    image = portrait()
    out = HeadWarp(image.shape, None).apply(image, Pose(dx=5, dy=-5, scale=2.0, angle=1.0), unit=60)
    for strip in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert np.abs(np.diff(strip.astype(int), axis=0)).mean() > 20  # replicated edges would be flat


def test_a_crowd_of_faces_keeps_memory_bounded() -> None:
    """Twelve real faces that change places every few frames: at most MAX_LIVE tracks are followed at once,
    and what the analysis keeps grows with frames x MAX_LIVE, not with the faces the video throws at it."""
    import cv2
    from PIL import Image

    from spark_nb._faces import find_face
    from spark_nb.local._driving import MAX_LIVE, _Collector

    photo = np.asarray(Image.open(REAL / "portrait_small_face.jpg").convert("L"))
    box = find_face(photo)
    assert box is not None
    face = cv2.resize(photo[int(box.y):int(box.y + box.h), int(box.x):int(box.x + box.w)], (56, 56))
    rng = np.random.default_rng(1)
    collector = _Collector(240, 180)
    most_live = 0
    for index in range(150):
        if index % 6 == 0:
            frame = np.full((180, 240), 128, np.uint8)
            for k, (row, col) in enumerate((r, c) for r in range(3) for c in range(4)):
                y, x = row * 60 + int(rng.integers(0, 4)), col * 60 + int(rng.integers(0, 4))
                frame[y:y + 56, x:x + 56] = np.roll(face, k, axis=1) if rng.random() < 0.5 else face
        collector.add(frame)
        most_live = max(most_live, len(collector._live))
    collector.finish()
    assert most_live == MAX_LIVE  # the crowd really filled the slots
    kept = sum(len(t.boxes) for t in collector.tracks)
    assert kept <= 150 * MAX_LIVE
