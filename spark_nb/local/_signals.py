"""Per-frame control signals: how loud the speech is, when the eyes blink, how a talking head sways."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from .. import _procs
from .._ffmpeg import ffmpeg_exe, ffmpeg_input
from ._tracking import Pose

SAMPLE_RATE = 16000
BLINK_PROFILE = (0.35, 0.8, 1.0, 0.9, 0.55, 0.2)  # eye closure over six frames at 25 fps (~240 ms)


def decode_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The audio of path as mono float32 samples in [-1, 1], decoded by the bundled ffmpeg."""
    cmd = [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", ffmpeg_input(path), "-vn", "-ac", "1", "-ar", str(sample_rate),
           "-f", "s16le", "-"]
    proc = _procs.run(cmd, timeout=120)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.decode(errors="replace")[-300:])
    return np.frombuffer(proc.stdout, dtype=np.int16).astype(np.float32) / 32768.0


def smooth(values: np.ndarray, attack: float = 0.7, release: float = 0.35) -> np.ndarray:
    """Follow values quickly upwards and more slowly downwards (no jitter, no lag on syllable onsets)."""
    out = np.empty_like(values)
    level = 0.0
    for i, value in enumerate(values):
        level += (attack if value > level else release) * (value - level)
        out[i] = level
    return out


def loudness_envelope(samples: np.ndarray, count: int, fps: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mouth opening per video frame (0..1) from the speech's loudness: RMS in dB, normalised, smoothed."""
    hop = sample_rate / fps
    rms = np.zeros(count, dtype=np.float32)
    for i in range(count):
        window = samples[int(i * hop):int((i + 1) * hop)]
        rms[i] = math.sqrt(float(np.mean(window * window))) if window.size else 0.0
    db = 20 * np.log10(rms + 1e-5)
    floor, peak = np.percentile(db, 20), np.percentile(db, 97)
    opening = np.clip((db - floor - 3.0) / max(peak - floor - 3.0, 6.0), 0.0, 1.0)
    return smooth(opening)


def blinks(count: int, fps: int, seed: int = 7) -> np.ndarray:
    """Eye closure per frame: a natural blink every 2.5-5.5 s."""
    rng = random.Random(seed)
    closure = np.zeros(count, dtype=np.float32)
    frame = int(fps * rng.uniform(1.0, 2.5))
    while frame < count:
        for k, value in enumerate(BLINK_PROFILE):
            if frame + k < count:
                closure[frame + k] = value
        frame += int(fps * rng.uniform(2.5, 5.5))
    return closure


def sway(index: int, fps: int, opening: float) -> Pose:
    """A talking head's idle motion: a slow sway and tilt, and a small nod with emphasis."""
    t = index / fps
    return Pose(
        dx=0.025 * math.sin(2 * math.pi * t / 4.3),
        dy=0.012 * math.sin(2 * math.pi * t / 3.7) + 0.02 * opening,
        scale=1.0 + 0.012 * math.sin(2 * math.pi * t / 5.9),
        angle=math.radians(2.0 * math.sin(2 * math.pi * t / 3.1)),
    )
