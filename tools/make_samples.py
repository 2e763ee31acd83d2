"""Rebuild spark_nb/samples/: a portrait, a speech clip and a driving video (all synthetic or public domain).

    python tools/make_samples.py ASTRONAUT_PNG

ASTRONAUT_PNG is skimage/data/astronaut.png from a scikit-image wheel (NASA, public domain). The speech
comes from espeak-ng (apt install espeak-ng). The driving video is a drawn face animated by spark_nb's own
engine along a scripted head path, its mouth following a second espeak-ng phrase.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from spark_nb._ffmpeg import ffmpeg_exe
from spark_nb.local import _signals as signals
from spark_nb.local._animate import Animator
from spark_nb.local._engine import FPS, VideoEncoder
from spark_nb.local._tracking import Pose, analyse

SAMPLES = Path(__file__).resolve().parent.parent / "spark_nb" / "samples"
SPEECH = "Hello! I am a Spark avatar. I can talk with any voice you give me."
DRIVER_SPEECH = ("Watch me move. I look to the left, and now to the right. I lean in close, then I step back. "
                 "A little nod, a tilt of the head, and we are done.")


def speak(text: str, out: Path, speed: int = 150) -> None:
    """espeak-ng speech as 16 kHz mono wav."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(speed), "-w", str(raw), text], check=True)
        subprocess.run([ffmpeg_exe(), "-y", "-v", "error", "-i", str(raw), "-ac", "1", "-ar", "16000", str(out)],
                       check=True)


def portrait(source: Path, out: Path) -> None:
    """Head and shoulders from the NASA astronaut photo, 384x480."""
    with Image.open(source) as img:
        img.convert("RGB").crop((96, 0, 352, 320)).resize((384, 480), Image.Resampling.LANCZOS).save(out, quality=90)


def drawn_face(size: tuple[int, int] = (320, 400)) -> np.ndarray:
    """A drawn, shaded frontal face (a different character from the portrait)."""
    w, h = size
    img = Image.new("RGB", size, (92, 120, 150))
    d = ImageDraw.Draw(img)
    d.ellipse((w * 0.16, h * 0.05, w * 0.84, h * 0.55), fill=(60, 40, 30))  # hair
    d.rectangle((w * 0.38, h * 0.7, w * 0.62, h * 0.95), fill=(205, 165, 140))  # neck
    d.ellipse((w * 0.05, h * 0.88, w * 0.95, h * 1.3), fill=(40, 90, 60))  # shoulders
    d.ellipse((w * 0.22, h * 0.14, w * 0.78, h * 0.78), fill=(226, 188, 160))  # face
    for cx in (0.38, 0.62):
        d.ellipse((w * (cx - 0.07), h * 0.38, w * (cx + 0.07), h * 0.45), fill=(250, 250, 250))
        d.ellipse((w * (cx - 0.03), h * 0.385, w * (cx + 0.03), h * 0.445), fill=(60, 45, 30))
        d.line((w * (cx - 0.08), h * 0.34, w * (cx + 0.08), h * 0.33), fill=(60, 40, 30), width=5)
    d.polygon([(w * 0.5, h * 0.45), (w * 0.45, h * 0.57), (w * 0.55, h * 0.57)], fill=(205, 160, 135))
    d.ellipse((w * 0.4, h * 0.63, w * 0.6, h * 0.68), fill=(170, 70, 70))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1.2)))


def head_path(t: float, duration: float) -> Pose:
    """Look left, look right, lean in, step back, nod, tilt."""
    phase = t / duration
    return Pose(
        dx=0.22 * math.sin(2 * math.pi * phase * 1.5),
        dy=0.08 * math.sin(2 * math.pi * phase * 4.0),
        scale=1.0 + 0.12 * math.sin(2 * math.pi * phase),
        angle=math.radians(7.0 * math.sin(2 * math.pi * phase * 2.5)),
    )


def driving_video(out: Path, speech: Path) -> None:
    """The drawn face speaking speech while moving its head, as an mp4 with the speech."""
    face = drawn_face()
    layout = analyse(face)
    if layout is None:
        raise SystemExit("the drawn face is not detected; adjust drawn_face()")
    samples = signals.decode_audio(speech)
    count = round(len(samples) / signals.SAMPLE_RATE * FPS)
    mouth = signals.mouth_shapes(samples, count, FPS)
    closure = signals.blinks(count, FPS, seed=3)
    animator = Animator(face, layout)
    with VideoEncoder(out, face.shape[1], face.shape[0], count, speech) as encoder:
        for i in range(count):
            encoder.write(animator.frame(mouth[i], closure[i], head_path(i / FPS, count / FPS)))


def main(astronaut: str) -> None:
    """Write all three samples."""
    SAMPLES.mkdir(exist_ok=True)
    portrait(Path(astronaut), SAMPLES / "portrait.jpg")
    speak(SPEECH, SAMPLES / "speech.wav")
    with tempfile.TemporaryDirectory() as tmp:
        driver_speech = Path(tmp) / "driver.wav"
        speak(DRIVER_SPEECH, driver_speech, speed=135)
        driving_video(SAMPLES / "driving.mp4", driver_speech)
    for path in sorted(SAMPLES.iterdir()):
        print(f"{path.name}: {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(sys.argv[1])
