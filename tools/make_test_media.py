"""Rebuild tests/media/real/: real photographs of real people, and short videos cut from them.

    python tools/make_test_media.py ASTRONAUT_PNG CAMERA_PNG GRACE_HOPPER_JPG [--out DIR] [--check]

The three arguments are files taken out of registry packages (this script downloads nothing):

  ASTRONAUT_PNG     skimage/data/astronaut.png from the scikit-image wheel (PyPI `scikit-image`, 0.26.0;
                    the same bytes are in Debian's python3-skimage 0.19.3-8). Eileen Collins, NASA photo,
                    public domain.
  CAMERA_PNG        skimage/data/camera.png from the same wheel. A man filming with a camcorder, grayscale,
                    CC0 by the photographer (Lav Varshney).
  GRACE_HOPPER_JPG  matplotlib/mpl-data/sample_data/grace_hopper.jpg from the matplotlib wheel (PyPI
                    `matplotlib`, 3.11.2). Rear Admiral Grace Hopper, US Navy photo, public domain.

For example:

    pip download --no-deps -d /tmp/src scikit-image matplotlib
    cd /tmp/src && unzip -o -q 'scikit_image-*.whl' 'skimage/data/*' && \
        unzip -o -q 'matplotlib-*.whl' 'matplotlib/mpl-data/sample_data/*'
    python tools/make_test_media.py /tmp/src/skimage/data/astronaut.png /tmp/src/skimage/data/camera.png \
        /tmp/src/matplotlib/mpl-data/sample_data/grace_hopper.jpg --check

No real video footage of faces with a licence fit for this repository was found in the registries, so the
videos are made from these three real photographs: pans and zooms over one photo (camera motion), hard cuts
between photos, a fade from black, and a split screen of two photos (two faces). Every frame shows real
people, but the people do not move: these clips test cuts, fades, framing and camera motion, not motion of
a face. tests/media/README.md lists what each file shows.

--check runs OpenCV's Haar frontal face detector over every still and every video frame and prints the rates.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "media" / "real"
FPS = 25
SIZE = (480, 360)  # every video, width x height
# sha256 of the source files the committed media were made from; other bytes still work, with a warning
SOURCES = {
    "astronaut": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "camera": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "hopper": "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
}

Window = tuple[float, float, float]  # centre x, centre y, width (in source pixels); height follows the aspect


def ffmpeg_exe() -> str:
    """The ffmpeg bundled with imageio-ffmpeg (a dependency of spark_nb), else the one on PATH."""
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]
        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        return "ffmpeg"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def crop(img: Image.Image, window: Window, size: tuple[int, int]) -> Image.Image:
    """The window (centre x, centre y, width; height from size's aspect) resampled to size, with sub-pixel
    accuracy so slow pans and zooms move smoothly. The window must lie inside the image."""
    cx, cy, w = window
    h = w * size[1] / size[0]
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    if box[0] < -0.01 or box[1] < -0.01 or box[2] > img.width + 0.01 or box[3] > img.height + 0.01:
        raise ValueError(f"window {box} leaves the {img.size} image")
    return img.resize(size, Image.Resampling.LANCZOS, box=box)


def ease(t: float) -> float:
    """Smoothstep: starts and ends at rest, like a camera operator's move."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def move(start: Window, end: Window, t: float, eased: bool = True) -> Window:
    k = ease(t) if eased else min(max(t, 0.0), 1.0)
    return tuple(a + (b - a) * k for a, b in zip(start, end, strict=True))  # type: ignore[return-value]


# --- stills ---------------------------------------------------------------------------------------------

def stills(astronaut: Image.Image, camera: Image.Image, hopper: Image.Image) -> dict[str, Image.Image]:
    """Five portraits: large face, small face, off-centre face, dark grayscale face, grayscale profile."""
    out = {}
    # Grace Hopper's face (with glasses) filling the frame: a 276 px square around her face, 384x384
    out["portrait_large_face.jpg"] = crop(hopper, (264.0, 218.0, 276.0), (384, 384))
    # the whole NASA photo: head and shoulders of an astronaut, face about 3% of the frame
    out["portrait_small_face.jpg"] = astronaut.copy()
    # the astronaut photo cut so her face sits in the upper-left quadrant (pixel-exact crop, no resampling)
    out["portrait_offcentre.jpg"] = astronaut.crop((144, 24, 504, 384))
    # Grace Hopper head and shoulders, grayscale and darkened as if shot in low light (mean level ~40/255)
    gray = np.asarray(crop(hopper, (264.0, 300.0, 416.0), (384, 480)).convert("L"), dtype=np.float64) / 255.0
    dark = np.clip(255.0 * 0.45 * gray ** 1.6, 0, 255).round().astype(np.uint8)
    out["portrait_gray_lowlight.jpg"] = Image.fromarray(dark, "L")
    # the CC0 "camera" photo as it is: a real grayscale photo, face in profile (frontal detectors miss it)
    out["portrait_profile_gray.jpg"] = camera.convert("L")
    return out


# --- videos ---------------------------------------------------------------------------------------------

Shot = tuple[Image.Image, int, Callable[[float], Window]]  # source, frame count, window at t in [0, 1]


def film_cuts_fade(astronaut: Image.Image, camera: Image.Image, hopper: Image.Image) -> Iterator[np.ndarray]:
    """9.0 s: fade from black into a push-in on Grace Hopper (0.00-3.00 s), hard cut at 3.00 s to a pan
    across the astronaut, hard cut at 5.60 s to the cameraman in profile, hard cut at 7.20 s to a close-up
    of Grace Hopper until 9.00 s. The fade runs over the first 25 frames (frame 0 is black)."""
    shots: list[Shot] = [
        (hopper, 75, lambda t: move((264.0, 250.0, 440.0), (264.0, 232.0, 372.0), t)),
        (astronaut, 65, lambda t: move((200.0, 150.0, 400.0), (312.0, 150.0, 400.0), t)),
        (camera, 40, lambda t: move((250.0, 205.0, 380.0), (250.0, 195.0, 350.0), t)),
        (hopper, 45, lambda t: move((256.0, 222.0, 340.0), (272.0, 218.0, 330.0), t)),
    ]
    index = 0
    for source, count, window in shots:
        for i in range(count):
            frame = np.asarray(crop(source, window(i / (count - 1)), SIZE), dtype=np.float64)
            if index < 25:
                frame = frame * (index / 25.0)
            index += 1
            yield frame.round().astype(np.uint8)


def two_faces(astronaut: Image.Image, hopper: Image.Image) -> Iterator[np.ndarray]:
    """6.0 s split screen: Grace Hopper on the left (face about 140-160 px wide, slow push-in), the astronaut
    on the right (face about 85-92 px wide, slow drift), a 4 px dark bar between them."""
    panel = (238, 360)
    for i in range(150):
        t = i / 149
        left = crop(hopper, move((264.0, 300.0, 390.0), (264.0, 275.0, 350.0), t), panel)
        right = crop(astronaut, move((210.0, 205.0, 270.0), (240.0, 195.0, 250.0), t), panel)
        frame = np.full((SIZE[1], SIZE[0], 3), 24, dtype=np.uint8)
        frame[:, :panel[0]] = np.asarray(left)
        frame[:, SIZE[0] - panel[0]:] = np.asarray(right)
        yield frame


def camera_pan(astronaut: Image.Image) -> Iterator[np.ndarray]:
    """6.0 s continuous camera move over the astronaut photo: starts wide with the flag on the left and her
    face right of centre, pans right and slightly up while zooming in, and settles with her face left of
    centre and the shuttle model on the right. One shot, no cuts."""
    for i in range(150):
        yield np.asarray(crop(astronaut, move((170.0, 170.0, 340.0), (300.0, 150.0, 290.0), i / 149), SIZE))


def encode(frames: Iterator[np.ndarray], out: Path) -> None:
    """H.264 yuv420p mp4 at 25 fps, silent, with no timestamps or encoder strings that would change per run."""
    cmd = [ffmpeg_exe(), "-y", "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{SIZE[0]}x{SIZE[1]}", "-r", str(FPS), "-i", "-",
           "-c:v", "libx264", "-preset", "slow", "-crf", "24", "-pix_fmt", "yuv420p", "-g", "50",
           "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
           "-movflags", "+faststart", str(out)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for frame in frames:
        assert frame.shape == (SIZE[1], SIZE[0], 3), frame.shape
        proc.stdin.write(np.ascontiguousarray(frame).tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"ffmpeg failed on {out}")


# --- check ----------------------------------------------------------------------------------------------

def check(folder: Path) -> None:
    """Haar frontal face detection on every file, on the plain grayscale image and on a histogram-equalised
    one (stills: boxes found, as share of the frame; videos: frames by number of boxes found)."""
    import cv2

    haar = cv2.data.haarcascades  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(haar + "haarcascade_frontalface_default.xml")

    def faces(bgr: np.ndarray, equalise: bool) -> list[tuple[int, int, int, int]]:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if equalise:
            gray = cv2.equalizeHist(gray)
        found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(20, 20))
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]

    for path in sorted(folder.iterdir()):
        for equalise in (False, True):
            mode = "equalised" if equalise else "plain"
            if path.suffix == ".jpg":
                img = cv2.imread(str(path))
                if img is None:
                    raise SystemExit(f"cannot read {path}")
                h, w = img.shape[:2]
                found = faces(img, equalise)
                sizes = "; ".join(f"{fw * fh / (w * h):.0%} of the area, {fw / w:.0%} of the width, centre "
                                  f"({(x + fw / 2) / w:.2f}, {(y + fh / 2) / h:.2f})" for x, y, fw, fh in found)
                print(f"{path.name} [{mode}]: {len(found)} face(s) {sizes}")
            elif path.suffix == ".mp4":
                cap = cv2.VideoCapture(str(path))
                counts: dict[int, int] = {}
                total = 0
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    n = len(faces(frame, equalise))
                    counts[n] = counts.get(n, 0) + 1
                    total += 1
                cap.release()
                some = total - counts.get(0, 0)
                spread = ", ".join(f"{n} box(es): {c}" for n, c in sorted(counts.items()))
                print(f"{path.name} [{mode}]: {total} frames, a face in {some} ({some / total:.0%}); {spread}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("astronaut", type=Path, help="skimage/data/astronaut.png")
    parser.add_argument("camera", type=Path, help="skimage/data/camera.png")
    parser.add_argument("hopper", type=Path, help="matplotlib/mpl-data/sample_data/grace_hopper.jpg")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    parser.add_argument("--check", action="store_true", help="print Haar face detection rates afterwards")
    args = parser.parse_args(argv)

    for name in ("astronaut", "camera", "hopper"):
        digest = sha256(getattr(args, name))
        if SOURCES[name] and digest != SOURCES[name]:
            print(f"warning: {getattr(args, name)} is not the file the committed media were made from "
                  f"(sha256 {digest})", file=sys.stderr)
    astronaut, camera, hopper = load(args.astronaut), load(args.camera), load(args.hopper)
    if astronaut.size != (512, 512) or camera.size != (512, 512) or hopper.size != (512, 600):
        raise SystemExit("unexpected source sizes: the framings below are for 512x512, 512x512 and 512x600")

    args.out.mkdir(parents=True, exist_ok=True)
    for name, img in stills(astronaut, camera, hopper).items():
        img.save(args.out / name, quality=90, optimize=True)
    encode(film_cuts_fade(astronaut, camera, hopper), args.out / "film_cuts_fade.mp4")
    encode(two_faces(astronaut, hopper), args.out / "two_faces.mp4")
    encode(camera_pan(astronaut), args.out / "camera_pan.mp4")
    for path in sorted(args.out.iterdir()):
        print(f"{path.name}: {path.stat().st_size // 1024} KB")
    if args.check:
        check(args.out)


if __name__ == "__main__":
    main()
